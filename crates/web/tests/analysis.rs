//! The browser path in plain Rust: same numbers as the core classifier, clear errors on bad input.

use std::path::PathBuf;

use skinlens_core::Classifier;
use skinlens_web::{analyse, begin_analysis, classify_passes, pass_count, warm_up, Clock};

/// Tests don't need real time; a counter makes every step take 1 "ms".
struct TickingClock(std::cell::Cell<f64>);

impl Clock for TickingClock {
    fn now_ms(&self) -> f64 {
        self.0.set(self.0.get() + 1.0);
        self.0.get()
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shipped model when it exists, else the shared seven-class network (tests may read ../shared).
fn classifier() -> Classifier {
    let shipped = repo_root().join("models/skinlens.safetensors");
    let shared = repo_root().join("../shared/peers/models/effnet_lite0_7cls.safetensors");
    let path = if shipped.exists() { shipped } else { shared };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Classifier::from_safetensors(&bytes).expect("model loads")
}

fn ham10000_image() -> Vec<u8> {
    let path = repo_root().join("../shared/data/ham10000/fullres_600x450/ISIC_0024306.jpg");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn png(width: u32, height: u32, pixel: image::Rgba<u8>) -> Vec<u8> {
    let image = image::RgbaImage::from_pixel(width, height, pixel);
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

#[test]
fn matches_the_core_classifier_exactly() {
    let classifier = classifier();
    let bytes = ham10000_image();
    let clock = TickingClock(Default::default());
    let analysis = analyse(&classifier, &bytes, &clock).unwrap();
    let reference = classifier.classify_bytes(&bytes).unwrap();

    let ours: Vec<f32> = analysis.probabilities.0.iter().map(|(_, p)| *p).collect();
    assert_eq!(ours, reference.probabilities, "split pipeline must equal classify_bytes bit for bit");
    assert_eq!(analysis.top, reference.classes[reference.top()]);
    let sum: f32 = ours.iter().sum();
    assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");

    assert_eq!((analysis.original_width, analysis.original_height), (600, 450));
    // The model's own input size (the shipped model says it in its metadata) and feature map.
    let size = classifier.input_size();
    let features = classifier.model().config().feature_size(size as usize);
    assert_eq!(analysis.model_view.dimensions(), (size, size));
    assert_eq!((analysis.cam.width, analysis.cam.height, analysis.cam.values.len()), (features, features, features * features));
    assert_eq!(analysis.cam.class, analysis.top);
    assert_eq!(analysis.ranked[0].label.code, analysis.top);
    assert!(analysis.ranked.windows(2).all(|w| w[0].probability >= w[1].probability));
    assert_eq!(analysis.timings.inference_ms, 1.0);
}

/// The page's worker pool: passes spread over workers (a lead that keeps the activation map's
/// features, helpers that answer the others) must give the one-worker answer bit for bit.
#[test]
fn passes_spread_over_workers_equal_one_worker() {
    let classifier = classifier();
    let bytes = ham10000_image();
    let clock = TickingClock(Default::default());
    let whole = analyse(&classifier, &bytes, &clock).unwrap();
    let passes = pass_count(&classifier);
    for workers in 1..=passes + 1 {
        // Pass p goes to worker p % workers; worker 0 leads.
        let share = |w: usize| (0..passes).filter(|p| p % workers == w).collect::<Vec<_>>();
        let helpers: Vec<_> = (1..workers).flat_map(|w| classify_passes(&classifier, &bytes, &share(w)).unwrap()).collect();
        let spread = begin_analysis(&classifier, &bytes, &share(0), &clock).unwrap().finish(&classifier, helpers, &clock).unwrap();
        assert_eq!(spread.probabilities.0, whole.probabilities.0, "{workers} workers");
        assert_eq!(spread.logits.0, whole.logits.0, "{workers} workers");
        assert_eq!(spread.cam.values, whole.cam.values, "{workers} workers");
        assert_eq!(spread.top, whole.top);
    }
    // Every pass exactly once, or a clear error.
    if passes > 1 {
        let missing = begin_analysis(&classifier, &bytes, &[0], &clock).unwrap().finish(&classifier, Vec::new(), &clock);
        assert!(missing.err().unwrap().to_string().contains("never answered"));
        let twice = classify_passes(&classifier, &bytes, &[1, 1]).unwrap();
        let all: Vec<usize> = (0..passes).collect();
        let doubled = begin_analysis(&classifier, &bytes, &all, &clock).unwrap().finish(&classifier, twice, &clock);
        assert!(doubled.err().unwrap().to_string().contains("answered twice"));
    }
    let beyond = classify_passes(&classifier, &bytes, &[passes]);
    assert!(beyond.err().unwrap().to_string().contains("runs"));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let classifier = classifier();
    let clock = TickingClock(Default::default());
    let mut truncated = ham10000_image();
    truncated.truncate(2_000);
    for (what, bytes) in [
        ("empty", Vec::new()),
        ("text", b"this is not an image".to_vec()),
        ("truncated JPEG", truncated),
        ("PNG signature only", b"\x89PNG\r\n\x1a\n".to_vec()),
    ] {
        let error = analyse(&classifier, &bytes, &clock).err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(!error.to_string().is_empty(), "{what}: empty message");
    }
}

#[test]
fn tiny_and_transparent_images_are_classified() {
    let classifier = classifier();
    let clock = TickingClock(Default::default());
    for bytes in [png(1, 1, image::Rgba([200, 120, 90, 255])), png(40, 30, image::Rgba([200, 120, 90, 0]))] {
        let analysis = analyse(&classifier, &bytes, &clock).unwrap();
        let sum: f32 = analysis.probabilities.0.iter().map(|(_, p)| p).sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }
    // A fully transparent image is composited onto the core's black background.
    let transparent = analyse(&classifier, &png(40, 30, image::Rgba([200, 120, 90, 0])), &clock).unwrap();
    assert!(transparent.model_view.pixels().all(|p| p.0 == skinlens_core::preprocess::decode::ALPHA_BACKGROUND));
    assert!(warm_up(&classifier, &clock).unwrap() > 0.0);
}

#[test]
fn a_two_member_model_gives_the_core_classifiers_answer() {
    use skinlens_core::model::{Member, ModelFile};
    let mut a = skinlens_core::ModelFile::from_safetensors(&std::fs::read(repo_root().join("models/skinlens.safetensors")).unwrap()).unwrap().members.remove(0).network;
    // "a" is plain whatever the shipped member uses (1.6.0's first member has Shades of Gray).
    a.metadata.colour_constancy = skinlens_core::preprocess::ColourConstancy::None;
    let mut b = a.clone();
    b.config.input_size = a.config.input_size + 32;
    b.metadata.colour_constancy = skinlens_core::preprocess::ColourConstancy::ShadesOfGray { p: 6 };
    let file = ModelFile { members: vec![Member { name: "a".into(), weight: 0.5, network: a }, Member { name: "b".into(), weight: 0.5, network: b }] };
    let classifier = Classifier::from_safetensors(&file.to_safetensors(skinlens_core::model::Storage::F32, &Default::default()).unwrap()).unwrap();
    let bytes = ham10000_image();
    let analysis = analyse(&classifier, &bytes, &TickingClock(Default::default())).unwrap();
    let reference = classifier.classify_bytes(&bytes).unwrap();
    let ours: Vec<f32> = analysis.probabilities.0.iter().map(|(_, p)| *p).collect();
    assert_eq!(ours, reference.probabilities, "the page's CPU path is the core's, bit for bit");
    let described = skinlens_web::describe_members(&classifier);
    assert_eq!(described.iter().map(|m| (m.input_size, m.colour_constancy.as_str())).collect::<Vec<_>>(), [(classifier.input_size(), "none"), (classifier.input_size() + 32, "shades_of_gray:6")]);
    // Same network 32 px larger: its pass costs more by the pixel ratio (within 5 %: padding).
    let (small, large) = (described[0].multiply_adds as f64, described[1].multiply_adds as f64);
    let pixels = ((classifier.input_size() + 32) as f64 / classifier.input_size() as f64).powi(2);
    assert!((large / small / pixels - 1.0).abs() < 0.05, "{small} vs {large} multiply-adds, pixel ratio {pixels}");
}

/// The familiarity check the shipped model carries: the pooled features it reads are the ones the
/// linear layer reads, a real lesion passes, a flat colour is flagged.
#[test]
fn the_familiarity_check_reads_the_classifiers_own_features() {
    let path = repo_root().join("models/skinlens.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let Some(check) = skinlens_core::FamiliarityCheck::from_safetensors(&bytes).expect("a readable check") else {
        panic!("{} carries no familiarity check: run `skinlens fit-familiarity` (models/TRAINING.md)", path.display());
    };
    let classifier = Classifier::from_safetensors(&bytes).unwrap();
    let clock = TickingClock(Default::default());

    let mut lesion = analyse(&classifier, &ham10000_image(), &clock).unwrap();
    assert!(lesion.familiarity.is_none(), "no verdict until the check runs");
    // The pooled features are the first view's: through the linear layer they give its logits.
    let network = skinlens_core::ModelFile::from_safetensors(&bytes).unwrap().members.remove(0).network;
    let weights = network.fc_weight.to_vec2::<f32>().unwrap();
    let bias = network.fc_bias.to_vec1::<f32>().unwrap();
    let prepared = classifier.prepare(&ham10000_image()).unwrap();
    let first_view = classifier.classify_view(&classifier.input_tensors(&[&prepared]).unwrap()[0]).unwrap();
    for (class, expected) in first_view[0].logits.iter().enumerate() {
        let from_features: f32 = weights[class].iter().zip(&lesion.pooled_features).map(|(w, x)| w * x).sum::<f32>() + bias[class];
        assert!((from_features - expected).abs() < 1e-3, "class {class}: {from_features} vs {expected}");
    }
    lesion.assess_familiarity(Some(&check)).unwrap();
    let verdict = lesion.familiarity.expect("a verdict");
    assert!(!verdict.unusual, "a HAM10000 lesion flagged: score {} > {}", verdict.score, verdict.threshold);

    let mut flat = analyse(&classifier, &png(64, 48, image::Rgba([200, 150, 120, 255])), &clock).unwrap();
    flat.assess_familiarity(Some(&check)).unwrap();
    let verdict = flat.familiarity.expect("a verdict");
    assert!(verdict.unusual, "a flat colour passed: score {} ≤ {}", verdict.score, verdict.threshold);
}
