//! `skinlens predict` end to end: real images, a batch full of bad ones, and the CSV format.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

fn shared_images() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ham10000/fullres_600x450")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skinlens-predict-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn encode(image: RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(image).write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn skinlens(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skinlens")).args(args).output().expect("run skinlens")
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

fn a_real_image() -> PathBuf {
    let mut all: Vec<_> = std::fs::read_dir(shared_images()).expect("../shared beside the project").map(|e| e.unwrap().path()).collect();
    all.sort();
    all.remove(0)
}

#[test]
fn bad_files_are_named_and_the_rest_completes() {
    let dir = scratch("bad");
    let real = std::fs::read(a_real_image()).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    write("a_zero_bytes.jpg", &[]);
    write("b_truncated.jpg", &real[..real.len() / 3]);
    let mut corrupt = real[..64].to_vec();
    corrupt.extend((0..4096u32).map(|i| (i * 7919 % 251) as u8));
    write("c_corrupt.jpg", &corrupt);
    write("d_not_an_image.png", b"just some text pretending to be a PNG");
    write("e_vector.gif", b"<svg xmlns='http://www.w3.org/2000/svg'/>");
    write("f_one_pixel.png", &encode(RgbImage::from_pixel(1, 1, Rgb([120, 80, 60])), ImageFormat::Png));
    write("g_camera_6000x4000.jpg", &encode(RgbImage::from_fn(6000, 4000, |x, y| Rgb([(x / 24) as u8, (y / 16) as u8, 90])), ImageFormat::Jpeg));
    write("h_real.jpg", &real);
    // A PNG header declaring 50,000 × 50,000 pixels (7.5 GB of RGB).
    let mut bomb = encode(RgbImage::from_pixel(1, 1, Rgb([0, 0, 0])), ImageFormat::Png);
    bomb[16..20].copy_from_slice(&50_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&50_000u32.to_be_bytes());
    let crc = crc32fast::hash(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    write("i_bomb.png", &bomb);

    let out = skinlens(&["predict", "--json", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "some files failed, so the exit code must say so");
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 9, "one line per file:\n{lines:#?}");
    let by_name = |name: &str| lines.iter().find(|l| l["file"].as_str().unwrap().ends_with(name)).unwrap();
    for bad in ["a_zero_bytes.jpg", "b_truncated.jpg", "c_corrupt.jpg", "d_not_an_image.png", "e_vector.gif", "i_bomb.png"] {
        let reason = by_name(bad)["error"].as_str().unwrap_or_else(|| panic!("{bad} should fail"));
        assert!(stderr.contains(bad), "stderr names {bad}:\n{stderr}");
        assert!(!reason.is_empty());
    }
    assert!(by_name("a_zero_bytes.jpg")["error"].as_str().unwrap().contains("empty"));
    assert!(by_name("i_bomb.png")["error"].as_str().unwrap().contains("limit"));
    for good in ["f_one_pixel.png", "g_camera_6000x4000.jpg", "h_real.jpg"] {
        let probabilities = by_name(good)["probabilities"].as_object().unwrap_or_else(|| panic!("{good} should work"));
        let sum: f64 = probabilities.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-5, "{good}: sum {sum}");
        assert_eq!(probabilities.len(), 7);
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn answers_and_their_order_do_not_depend_on_batch_size_or_threads() {
    let dir = scratch("order");
    let mut all: Vec<_> = std::fs::read_dir(shared_images()).unwrap().map(|e| e.unwrap().path()).collect();
    all.sort();
    // Eleven real images with unreadable files among them, so passes are uneven and some
    // batches hold failures.
    for (i, path) in all.iter().take(11).enumerate() {
        std::fs::copy(path, dir.join(format!("{i:02}.jpg"))).unwrap();
        if i % 4 == 1 {
            std::fs::write(dir.join(format!("{i:02}b_broken.jpg")), b"not a JPEG").unwrap();
        }
    }
    let run = |threads: &str, batch: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_skinlens"))
            .env("RAYON_NUM_THREADS", threads)
            .args(["predict", "--json", "--batch", batch, dir.to_str().unwrap()])
            .output()
            .unwrap();
        json_lines(&out.stdout)
    };
    let one_by_one = run("1", "1");
    assert_eq!(one_by_one.len(), 14);
    let names: Vec<&str> = one_by_one.iter().map(|l| l["file"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "input order");
    for (threads, batch) in [("2", "1"), ("2", "3"), ("3", "4")] {
        let other = run(threads, batch);
        assert_eq!(other.len(), one_by_one.len(), "{threads} threads, batch {batch}");
        for (a, b) in one_by_one.iter().zip(&other) {
            assert_eq!(a["file"], b["file"], "{threads} threads, batch {batch}: order");
            assert_eq!(a.get("error").is_some(), b.get("error").is_some(), "{}", a["file"]);
            if let (Some(p), Some(q)) = (a["probabilities"].as_object(), b["probabilities"].as_object()) {
                for (class, v) in p {
                    let diff = (v.as_f64().unwrap() - q[class].as_f64().unwrap()).abs();
                    assert!(diff < 1e-5, "{} {class}: {diff} ({threads} threads, batch {batch})", a["file"]);
                }
            }
        }
    }
}

#[test]
fn csv_is_in_isic_2018_order_and_matches_json() {
    let dir = scratch("csv");
    let csv_path = dir.join("submission.csv");
    let image = a_real_image();
    let out = skinlens(&["predict", "--json", "--csv", csv_path.to_str().unwrap(), image.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = &json_lines(&out.stdout)[0];
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"));
    let row: Vec<&str> = rows.next().unwrap().split(',').collect();
    assert_eq!(row[0], Path::new(&image).file_stem().unwrap().to_str().unwrap());
    for (column, code) in row[1..].iter().zip(["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]) {
        let from_json = json["probabilities"][code].as_f64().unwrap();
        assert!((column.parse::<f64>().unwrap() - from_json).abs() < 1e-6, "{code}");
    }
}

#[test]
fn ensemble_of_a_model_with_itself_and_tta_stay_normalised() {
    let image = a_real_image();
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/skinlens.safetensors");
    let spec_a = format!("{}:0.6", model.display());
    let spec_b = format!("{}:0.4", model.display());
    let single = json_lines(&skinlens(&["predict", "--json", image.to_str().unwrap()]).stdout)[0].clone();
    let pair = json_lines(&skinlens(&["predict", "--json", "--model", &spec_a, "--model", &spec_b, image.to_str().unwrap()]).stdout)[0].clone();
    for code in ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"] {
        let (a, b) = (single["probabilities"][code].as_f64().unwrap(), pair["probabilities"][code].as_f64().unwrap());
        assert!((a - b).abs() < 1e-6, "{code}: a model averaged with itself is itself");
    }
    let tta = json_lines(&skinlens(&["predict", "--json", "--tta", image.to_str().unwrap()]).stdout)[0].clone();
    let sum: f64 = tta["probabilities"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-5);
}

#[test]
fn a_missing_model_file_is_a_clear_error() {
    let out = skinlens(&["predict", "--model", "/nonexistent/model.safetensors", a_real_image().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/model.safetensors") && stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn a_model_declaring_flip_views_answers_as_forced_flips_do() {
    let image = a_real_image();
    let mut net = shipped_network();
    let dir = scratch("tta");
    let write = |net: &skinlens_core::FoldedNetwork, name: &str| {
        let path = dir.join(name);
        std::fs::write(&path, net.to_safetensors(skinlens_core::model::Storage::F32, &Default::default()).unwrap()).unwrap();
        path
    };
    net.metadata.tta = skinlens_core::TestTimeAugmentation::None;
    let one_pass = write(&net, "one-pass.safetensors");
    net.metadata.tta = skinlens_core::TestTimeAugmentation::Flips;
    let declares_flips = write(&net, "flips.safetensors");
    let answer = |args: &[&str]| -> serde_json::Value {
        let out = skinlens(&[&["predict", "--json"], args, &[image.to_str().unwrap()]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json_lines(&out.stdout)[0]["probabilities"].clone()
    };
    let declared = answer(&["--model", declares_flips.to_str().unwrap()]);
    let forced = answer(&["--model", one_pass.to_str().unwrap(), "--tta"]);
    let plain = answer(&["--model", declares_flips.to_str().unwrap(), "--tta=none"]);
    let mut differs = 0.0f64;
    for code in ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"] {
        let (d, f, p) = (declared[code].as_f64().unwrap(), forced[code].as_f64().unwrap(), plain[code].as_f64().unwrap());
        assert!((d - f).abs() < 1e-6, "{code}: declared flips {d} vs --tta {f}");
        differs = differs.max((d - p).abs());
    }
    assert!(differs > 1e-6, "four views should not give exactly the one-pass answer");
}

#[test]
fn a_folder_walk_names_the_files_it_skipped() {
    let dir = scratch("skipped");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::copy(a_real_image(), dir.join("lesion.jpg")).unwrap();
    std::fs::write(dir.join("drawing.svg"), b"<svg xmlns='http://www.w3.org/2000/svg'/>").unwrap();
    std::fs::write(dir.join("sub/notes.txt"), b"not an image").unwrap();
    let out = skinlens(&["predict", "--tta=none", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("1 of 1 images classified"), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("skipped")).unwrap_or_else(|| panic!("no skipped line: {stderr}"));
    assert!(line.starts_with("skipped 2 files"), "{line}");
    assert!(line.contains("drawing.svg") && line.contains("notes.txt"), "{line}");

    // Without anything to skip there is no such line.
    let out = skinlens(&["predict", "--tta=none", dir.join("lesion.jpg").to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("skipped"));
}

#[test]
fn version_names_the_binary_and_the_built_in_model() {
    let out = skinlens(&["--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/skinlens.card.json")).unwrap()).unwrap();
    let expected = format!("skinlens {} (built-in model {})", env!("CARGO_PKG_VERSION"), card["version"].as_str().unwrap());
    assert_eq!(text.trim(), expected);
}

/// The shipped model's (first) network, alone.
fn shipped_network() -> skinlens_core::FoldedNetwork {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/skinlens.safetensors");
    let file = skinlens_core::model::ModelFile::from_safetensors(&std::fs::read(&shipped).unwrap()).unwrap();
    file.members.into_iter().next().unwrap().network
}

/// The shipped network and a changed copy (32 px larger, shifted bias, another temperature,
/// colour constancy), as two one-network files and as one two-member file (0.7 / 0.3).
fn member_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use skinlens_core::model::{Member, ModelFile};
    let a = shipped_network();
    let mut b = a.clone();
    b.config.input_size = a.config.input_size + 32;
    b.fc_bias = (&b.fc_bias + candle_core::Tensor::new(&[0.4f32, -0.3, 0.2, 0.0, -0.5, 0.1, 0.3], &candle_core::Device::Cpu).unwrap()).unwrap();
    b.metadata.temperature = 1.7;
    b.metadata.colour_constancy = skinlens_core::preprocess::ColourConstancy::ShadesOfGray { p: 6 };
    let write = |name: &str, file: ModelFile| {
        let path = dir.join(name);
        std::fs::write(&path, file.to_safetensors(skinlens_core::model::Storage::F32, &Default::default()).unwrap()).unwrap();
        path
    };
    let both = ModelFile { members: vec![Member { name: "a".into(), weight: 0.7, network: a.clone() }, Member { name: "b".into(), weight: 0.3, network: b.clone() }] };
    (write("a.safetensors", ModelFile::single(a)), write("b.safetensors", ModelFile::single(b)), write("ab.safetensors", both))
}

#[test]
fn a_two_member_file_answers_the_weighted_mean_of_its_members() {
    let dir = scratch("members");
    let (a, b, both) = member_files(&dir);
    let images: Vec<PathBuf> = {
        let mut all: Vec<_> = std::fs::read_dir(shared_images()).unwrap().map(|e| e.unwrap().path()).collect();
        all.sort();
        all.truncate(3);
        all
    };
    let answers = |model: &Path| -> Vec<serde_json::Value> {
        let mut args = vec!["predict", "--json", "--model", model.to_str().unwrap()];
        args.extend(images.iter().map(|p| p.to_str().unwrap()));
        let out = skinlens(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json_lines(&out.stdout)
    };
    let (pa, pb, pab) = (answers(&a), answers(&b), answers(&both));
    let mut largest = 0f64;
    for i in 0..images.len() {
        for code in ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"] {
            let p = |v: &[serde_json::Value]| v[i]["probabilities"][code].as_f64().unwrap();
            largest = largest.max((p(&pab) - (0.7 * p(&pa) + 0.3 * p(&pb))).abs());
        }
    }
    println!("two-member file vs 0.7 · a + 0.3 · b: max |Δp| = {largest:.2e}");
    assert!(largest <= 1e-6, "max |Δp| {largest}");
}

#[test]
fn a_member_file_with_bad_weights_is_refused_naming_the_file() {
    let dir = scratch("bad-members");
    let (_, _, both) = member_files(&dir);
    let bytes = std::fs::read(&both).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    meta.insert("skinlens.member.a.weight".into(), "0.9".into());
    let tensors = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu).unwrap();
    let bad = dir.join("bad-weights.safetensors");
    std::fs::write(&bad, safetensors::serialize(tensors.iter().map(|(k, v)| (k.clone(), v)), Some(meta)).unwrap()).unwrap();
    let out = skinlens(&["predict", "--model", bad.to_str().unwrap(), a_real_image().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad-weights.safetensors") && stderr.contains("not 1"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
