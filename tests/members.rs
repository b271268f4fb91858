//! Model files with several members: the answer is the weighted mean of each member's own
//! answer, the one-network format is unchanged, and bad metadata is refused with the key named.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::*;
use skinlens_core::model::{keys, Member, ModelFile, Storage};
use skinlens_core::preprocess::{self, ColourConstancy};
use skinlens_core::{Classifier, FoldedNetwork, TestTimeAugmentation};

fn shipped_bytes() -> Vec<u8> {
    read_bytes(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/skinlens.safetensors"))
}

fn images() -> Vec<Vec<u8>> {
    ["ISIC_0024306", "ISIC_0024310"].iter().map(|id| read_bytes(shared().join(format!("data/ham10000/fullres_600x450/{id}.jpg")))).collect()
}

/// The shipped network, and a different member made from it: another input size, a shifted
/// bias (as a decision rule would), another temperature, colour constancy.
fn two_members() -> ModelFile {
    two_members_from(0)
}

/// [`two_members`] from the shipped file's member `index`.
fn two_members_from(index: usize) -> ModelFile {
    let mut a = skinlens_core::ModelFile::from_safetensors(&shipped_bytes()).unwrap().members.remove(index).network;
    // "base" is plain whatever the shipped member uses (1.6.0's first member has Shades of Gray).
    a.metadata.colour_constancy = ColourConstancy::None;
    let mut b = a.clone();
    b.config.input_size = a.config.input_size + 32;
    b.fc_bias = (&b.fc_bias + Tensor::new(&[0.4f32, -0.3, 0.2, 0.0, -0.5, 0.1, 0.3], &Device::Cpu).unwrap()).unwrap();
    b.metadata.temperature = 1.7;
    b.metadata.colour_constancy = ColourConstancy::ShadesOfGray { p: 6 };
    b.metadata.train_size = Some(a.config.input_size);
    ModelFile { members: vec![Member { name: "base".into(), weight: 0.7, network: a }, Member { name: "big-sog".into(), weight: 0.3, network: b }] }
}

#[test]
fn the_answer_is_the_weighted_mean_of_each_members_own_answer() {
    let file = two_members();
    let bytes = file.to_safetensors(Storage::F32, &HashMap::new()).unwrap();
    let ensemble = Classifier::from_safetensors(&bytes).unwrap();
    assert_eq!(ensemble.members().len(), 2);
    assert_eq!(ensemble.input_specs().len(), 2, "two sizes, two inputs");
    let own: Vec<Classifier> = file.members.iter().map(|m| Classifier::from_network(&m.network).unwrap()).collect();
    for image in images() {
        let whole = ensemble.classify_bytes(&image).unwrap();
        let parts: Vec<_> = own.iter().map(|c| c.classify_bytes(&image).unwrap()).collect();
        let mut largest = 0f32;
        for k in 0..whole.probabilities.len() {
            let expected = 0.7 * parts[0].probabilities[k] + 0.3 * parts[1].probabilities[k];
            largest = largest.max((whole.probabilities[k] - expected).abs());
        }
        println!("ensemble vs weighted mean of the members' own answers: max |Δp| = {largest:.2e}");
        assert!(largest <= 1e-6, "max |Δp| {largest}");
        // The members really differ, so the test can tell a wrong weight or a dropped member.
        let gap = parts[0].probabilities.iter().zip(&parts[1].probabilities).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(gap > 1e-2, "members answer alike ({gap})");
    }
}

/// `w` moved by up to half an int8 step of its largest value, differently for each weight (a
/// golden-ratio sequence), so that no run stays on its int8 grid.
fn off_the_grid(w: &Tensor) -> Tensor {
    let values = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let step = values.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
    let moved: Vec<f32> = values.iter().enumerate().map(|(i, v)| v + step * (((i as f32 * 0.618_034) % 1.0) - 0.5)).collect();
    Tensor::from_vec(moved, w.dims(), &Device::Cpu).unwrap()
}

/// int8 storage, members prefixed: each weight finds its own scales, and the answers stay near
/// the f32 file's (the export measures the cost on validation before it chooses int8).
#[test]
fn an_int8_file_answers_like_its_f32_self() {
    // Weights off the int8 grid: an int8 member written as int8 again reads back exactly, which
    // would test nothing here. A shipped member stored in f16 is off it; where every member is
    // int8 (1.5.0), the first one's 1×1 weights are moved off it by a deterministic fraction of a
    // step, as an f32 network's would be.
    let shipped_file = shipped_bytes();
    let shipped = ModelFile::from_safetensors(&shipped_file).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&shipped_file).unwrap();
    let stored = |m: &Member| tensors.tensor(&format!("{}/_conv_head.weight", m.name)).map(|t| t.dtype()).ok();
    let file = match shipped.members.iter().position(|m| stored(m) != Some(safetensors::Dtype::I8)) {
        Some(index) => two_members_from(index),
        None => {
            let mut file = two_members_from(0);
            for member in &mut file.members {
                let net = &mut member.network;
                for block in &mut net.blocks {
                    if let Some(expand) = block.expand.as_mut() {
                        expand.weight = off_the_grid(&expand.weight);
                    }
                    block.project.weight = off_the_grid(&block.project.weight);
                }
                net.head.weight = off_the_grid(&net.head.weight);
            }
            file
        }
    };
    let answers = |storage: Storage| {
        let bytes = file.to_safetensors(storage, &HashMap::new()).unwrap();
        let classifier = Classifier::from_safetensors(&bytes).unwrap();
        (bytes.len(), images().iter().map(|image| classifier.classify_bytes(image).unwrap().probabilities).collect::<Vec<_>>())
    };
    let ((f32_bytes, exact), (int8_bytes, quantised)) = (answers(Storage::F32), answers(Storage::Int8));
    let largest = exact.iter().flatten().zip(quantised.iter().flatten()).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("int8 file {int8_bytes} bytes (f32 {f32_bytes}); max |Δp| against f32 = {largest:.2e}");
    assert!(int8_bytes * 3 < f32_bytes, "int8 should be about a quarter of f32");
    assert!(largest > 0.0 && largest <= 0.05, "max |Δp| {largest}");
    // Already on the grid: the shipped int8 member, written as int8 again, reads back exactly.
    if let Some(on_grid) = shipped.members.iter().find(|m| stored(m) == Some(safetensors::Dtype::I8)) {
        let again = skinlens_core::FoldedNetwork::from_safetensors(&on_grid.network.to_safetensors(Storage::Int8, &HashMap::new()).unwrap()).unwrap();
        let head = |n: &skinlens_core::FoldedNetwork| n.head.weight.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(head(&again), head(&on_grid.network), "re-quantising an int8 member changed it");
    }
    // Each member in its own storage: the reader tells them apart tensor by tensor.
    let mixed = file.to_safetensors_stored(&[Storage::Int8, Storage::F32], &HashMap::new()).unwrap();
    let back = ModelFile::from_safetensors(&mixed).unwrap();
    let int8_alone = file.members[0].network.to_safetensors(Storage::Int8, &HashMap::new()).unwrap();
    let head = |n: &skinlens_core::FoldedNetwork| n.head.weight.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(head(&back.members[0].network), head(&skinlens_core::FoldedNetwork::from_safetensors(&int8_alone).unwrap()));
    assert_eq!(head(&back.members[1].network), head(&file.members[1].network));
    assert!(file.to_safetensors_stored(&[Storage::Int8], &HashMap::new()).is_err(), "one storage for two members");
}

#[test]
fn members_keep_their_settings_through_the_file() {
    let bytes = two_members().to_safetensors(Storage::F16, &HashMap::new()).unwrap();
    let back = ModelFile::from_safetensors(&bytes).unwrap();
    let names: Vec<&str> = back.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["base", "big-sog"]);
    let (a, b) = (&back.members[0], &back.members[1]);
    assert_eq!((a.weight, b.weight), (0.7, 0.3));
    assert_eq!(b.network.config.input_size, a.network.config.input_size + 32);
    assert_eq!(b.network.metadata.temperature, 1.7);
    assert_eq!(b.network.metadata.colour_constancy, ColourConstancy::ShadesOfGray { p: 6 });
    assert_eq!(a.network.metadata.colour_constancy, ColourConstancy::None);
    assert_eq!(b.network.metadata.train_size, Some(a.network.config.input_size));
    // The keys as documented.
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta[keys::MEMBERS], "base,big-sog");
    assert_eq!(meta[keys::ARCH], "ensemble");
    assert_eq!(meta["skinlens.member.big-sog.colour_constancy"], "shades_of_gray:6");
    assert!(!meta.contains_key(keys::TEMPERATURE), "per-member keys live under the members");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(tensors.tensor("big-sog/_blocks.3._expand_conv.weight").is_ok());
    // One network on its own cannot be read from it by mistake.
    let error = FoldedNetwork::from_safetensors(&bytes).unwrap_err().to_string();
    assert!(error.contains(keys::MEMBERS), "{error}");
}

/// A one-network file: the shipped file's first network written alone, declaring the flip views
/// (whatever the shipped model declares: 1.3.0 has none), so the view averaging is exercised.
fn one_network_bytes() -> Vec<u8> {
    let mut file = ModelFile::from_safetensors(&shipped_bytes()).unwrap();
    let mut network = file.members.remove(0).network;
    network.metadata.tta = TestTimeAugmentation::Flips;
    network.to_safetensors(Storage::F16, &HashMap::new()).unwrap()
}

#[test]
fn a_one_network_file_keeps_todays_format_and_answers() {
    let bytes = one_network_bytes();
    let file = ModelFile::from_safetensors(&bytes).unwrap();
    assert_eq!(file.members.len(), 1);
    // Written back, it has exactly the original's keys (nothing added, no member keys).
    let net = &file.members[0].network;
    let dtype = safetensors::SafeTensors::deserialize(&bytes).unwrap().tensor("_fc.weight").unwrap().dtype();
    let storage = if dtype == safetensors::Dtype::F16 { Storage::F16 } else { Storage::F32 };
    let again = file.to_safetensors(storage, &HashMap::new()).unwrap();
    let metadata_of = |b: &[u8]| safetensors::SafeTensors::read_metadata(b).unwrap().1.metadata().clone().unwrap_or_default();
    assert_eq!(metadata_of(&again), metadata_of(&bytes), "the same keys and values as the shipped file");
    let (old, new) = (safetensors::SafeTensors::deserialize(&bytes).unwrap(), safetensors::SafeTensors::deserialize(&again).unwrap());
    // Every network tensor, unchanged; only file-wide extras (the familiarity check) are not kept.
    for (name, view) in old.tensors() {
        match new.tensor(&name) {
            Ok(again) => assert_eq!(view.data(), again.data(), "{name}"),
            Err(_) => assert!(name.starts_with("skinlens."), "{name} was dropped"),
        }
    }
    assert!(new.len() >= 100, "{} tensors", new.len());
    // The classifier's answer is one network's: its views, its temperature, nothing else.
    let classifier = Classifier::from_safetensors(&bytes).unwrap();
    let model = skinlens_core::EfficientNetLite::new(net).unwrap();
    for image in images() {
        // As the classifier prepares it: the network's own size and colour constancy.
        let rgb = preprocess::decode_rgb8(&image, &preprocess::DecodeLimits::default()).unwrap();
        let prepared = preprocess::prepare_decoded_as(&rgb, preprocess::InputSpec { size: net.config.input_size as u32, colour: net.metadata.colour_constancy });
        let x = preprocess::input_tensor(&[&prepared.model_view], &Device::Cpu).unwrap();
        let views = net.metadata.tta.views(&x).unwrap();
        let mut mean = [0f32; 7];
        for v in &views {
            let logits = (model.forward(v).unwrap() / f64::from(net.metadata.temperature)).unwrap();
            let p = candle_nn::ops::softmax_last_dim(&logits).unwrap().to_vec2::<f32>().unwrap().remove(0);
            mean.iter_mut().zip(p).for_each(|(m, p)| *m += p);
        }
        let mean: Vec<f32> = mean.iter().map(|m| m / views.len() as f32).collect();
        assert_eq!(classifier.classify_bytes(&image).unwrap().probabilities, mean, "bit for bit");
    }
    assert_eq!(classifier.members().len(), 1);
    assert_eq!(net.metadata.tta, TestTimeAugmentation::Flips, "the file declares its views, and they are averaged");
}

#[test]
fn a_declared_colour_constancy_is_applied_before_the_resize() {
    let mut net = skinlens_core::ModelFile::from_safetensors(&shipped_bytes()).unwrap().members.remove(0).network;
    net.metadata.colour_constancy = ColourConstancy::ShadesOfGray { p: 6 };
    let classifier = Classifier::from_network(&net).unwrap();
    let image = &images()[0];
    let decoded = preprocess::decode_rgb8(image, &preprocess::DecodeLimits::default()).unwrap();
    let mut square = preprocess::centre_square(&decoded);
    ColourConstancy::ShadesOfGray { p: 6 }.apply(&mut square);
    let size = net.config.input_size as u32;
    let expected = preprocess::resize_bilinear_u8(&square, size, size);
    assert_eq!(classifier.prepare(image).unwrap().inputs[0], expected);
    assert_ne!(expected, preprocess::prepare(image, size).unwrap().model_view, "the correction changes the view");
}

/// A valid two-member file's tensors and metadata, to break one thing at a time.
fn parts() -> (HashMap<String, Tensor>, HashMap<String, String>) {
    let bytes = two_members().to_safetensors(Storage::F32, &HashMap::new()).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    (candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap(), meta)
}

fn error_of(tensors: &HashMap<String, Tensor>, meta: &HashMap<String, String>) -> String {
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.clone(), v)), Some(meta.clone())).unwrap();
    let error = ModelFile::from_safetensors(&bytes).unwrap_err().to_string();
    assert!(Classifier::from_safetensors(&bytes).is_err());
    error
}

#[test]
fn bad_member_metadata_is_refused_by_name() {
    let (tensors, meta) = parts();
    let with = |key: &str, value: &str| {
        let mut m = meta.clone();
        m.insert(key.into(), value.into());
        m
    };
    let cases: Vec<(HashMap<String, String>, &[&str])> = vec![
        (with("skinlens.member.ghost.weight", "0.5"), &["ghost", "does not list"]),
        (with(keys::MEMBERS, "base,big-sog,base"), &["base", "twice"]),
        (with(keys::MEMBERS, "base,Big"), &["Big", "bad member name"]),
        (with("skinlens.member.base.weight", "0.9"), &["base 0.9", "big-sog 0.3", "not 1"]),
        (with("skinlens.member.base.weight", "-1"), &["skinlens.member.base.weight", "-1"]),
        (with(keys::TEMPERATURE, "1.2"), &["skinlens.temperature", "skinlens.member.NAME.temperature"]),
        (with("skinlens.member.big-sog.colour_constancy", "grey_world"), &["skinlens.member.big-sog.colour_constancy", "grey_world"]),
        (with("skinlens.member.big-sog.arch", "efficientnet-b7"), &["efficientnet-b7", "skinlens.member.big-sog.arch"]),
    ];
    for (meta, needles) in cases {
        let error = error_of(&tensors, &meta);
        for needle in needles {
            assert!(error.contains(needle), "`{needle}` not in: {error}");
        }
    }
    let mut missing_weight = meta.clone();
    missing_weight.remove("skinlens.member.base.weight");
    assert!(error_of(&tensors, &missing_weight).contains("skinlens.member.base.weight"));

    // Tensors: a stray member, a tensor outside any member, a wrong shape.
    let mut stray = tensors.clone();
    stray.insert("ghost/_fc.bias".into(), Tensor::zeros(7, DType::F32, &Device::Cpu).unwrap());
    let error = error_of(&stray, &meta);
    assert!(error.contains("ghost/_fc.bias") && error.contains("does not list"), "{error}");
    let mut loose = tensors.clone();
    loose.insert("_fc.bias".into(), Tensor::zeros(7, DType::F32, &Device::Cpu).unwrap());
    assert!(error_of(&loose, &meta).contains("no member prefix"));
    // File-wide extras (the familiarity check's tensors) are allowed.
    let mut extras = tensors.clone();
    extras.insert("skinlens.familiarity.mean".into(), Tensor::zeros(1280, DType::F32, &Device::Cpu).unwrap());
    let bytes = safetensors::serialize(extras.iter().map(|(k, v)| (k.clone(), v)), Some(meta.clone())).unwrap();
    assert_eq!(ModelFile::from_safetensors(&bytes).unwrap().members.len(), 2);
    let mut misshaped = tensors.clone();
    misshaped.insert("big-sog/_fc.weight".into(), Tensor::zeros((7, 1000), DType::F32, &Device::Cpu).unwrap());
    let error = error_of(&misshaped, &meta);
    assert!(error.contains("big-sog/_fc.weight") && error.contains("[7, 1000]") && error.contains("[7, 1280]"), "{error}");
}
