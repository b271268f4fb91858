//! The trainer end to end on small real subsets of HAM10000 (../shared): it learns, a resumed
//! run is the same run, and an exported model gives the trainer's own validation answers.
//! Skipped (with a message) where ../shared is absent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

fn shared() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    root.join("data/ham10000/HAM10000_metadata.csv").is_file().then_some(root)
}

fn skinlens(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_skinlens")).args(args).output().expect("run skinlens");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "skinlens {args:?} failed:\n{text}");
    text
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skinlens-trainer-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).expect("valid JSON")
}

/// Train a small run: `lesions` per class at `size` px for `epochs`, extra flags appended.
fn train(shared: &Path, out: &Path, lesions: usize, size: usize, epochs: usize, extra: &[&str]) {
    train_from(shared, "effnet_lite0.safetensors", out, lesions, size, epochs, extra);
}

/// `train` from the ImageNet weights `base` in ../shared/reference.
fn train_from(shared: &Path, base: &str, out: &Path, lesions: usize, size: usize, epochs: usize, extra: &[&str]) {
    let data = shared.join("data/ham10000");
    let base = shared.join("reference").join(base);
    let (lesions, size, epochs) = (lesions.to_string(), size.to_string(), epochs.to_string());
    let mut args = vec![
        "train", "--data", data.to_str().unwrap(), "--base", base.to_str().unwrap(), "--out", out.to_str().unwrap(),
        "--max-lesions-per-class", &lesions, "--size", &size, "--epochs", &epochs, "--batch", "16", "--seed", "3",
        "--lr", "2e-3", "--warmup-epochs", "0.5",
    ];
    args.extend_from_slice(extra);
    skinlens(&args);
}

/// The export flags every test here takes unless it is about them: f32 storage, one pass,
/// few bootstrap draws.
const QUICK: [&str; 6] = ["--dtype", "f32", "--tta", "none", "--bootstrap", "20"];

/// `skinlens export --run RUN --out MODEL --card CARD` with `extra` appended.
fn export(run: &Path, model: &Path, card: &Path, extra: &[&str]) {
    let mut args = vec!["export", "--run", run.to_str().unwrap(), "--out", model.to_str().unwrap(), "--card", card.to_str().unwrap()];
    args.extend_from_slice(extra);
    skinlens(&args);
}

/// The same export, expected to be refused before anything is written: its error text.
fn export_refused(run: &Path, model: &Path, card: &Path, extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_skinlens"))
        .args(["export", "--run", run.to_str().unwrap(), "--out", model.to_str().unwrap(), "--card", card.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "export was not refused: {text}");
    assert!(!model.exists() && !card.exists(), "nothing written on a refusal");
    text
}

/// One shared learning run (the most expensive part), trained once per test binary.
fn learned_run() -> Option<&'static PathBuf> {
    static RUN: OnceLock<Option<PathBuf>> = OnceLock::new();
    RUN.get_or_init(|| {
        let shared = shared()?;
        let out = scratch("learn");
        train(&shared, &out, 40, 64, 4, &[]);
        Some(out)
    })
    .as_ref()
}

#[test]
fn loss_falls_and_validation_beats_chance() {
    let Some(run) = learned_run() else { return eprintln!("skipped: ../shared/data/ham10000 not found") };
    let state = json(&run.join("state.json"));
    let history = state["history"].as_array().expect("history");
    assert_eq!(history.len(), 4);
    let loss = |i: usize| history[i]["train_loss"].as_f64().unwrap();
    assert!(loss(3) < loss(0) - 0.1, "training loss did not fall: {} → {}", loss(0), loss(3));
    let best = state["best_balanced_accuracy"].as_f64().unwrap();
    // Seven classes: chance is 1/7 ≈ 0.143.
    assert!(best > 0.30, "best validation balanced accuracy {best} is too close to chance");
    // The split is lesion-grouped.
    let split = json(&run.join("split.json"));
    let ids = |k: &str| split[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect::<Vec<_>>();
    let lesion_of = lesion_map(&shared().unwrap());
    let lesions = |k: &str| ids(k).iter().map(|i| lesion_of[i].clone()).collect::<std::collections::HashSet<_>>();
    assert!(lesions("train").is_disjoint(&lesions("val")) && lesions("train").is_disjoint(&lesions("test")) && lesions("val").is_disjoint(&lesions("test")));
}

fn lesion_map(shared: &Path) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(shared.join("data/ham10000/HAM10000_metadata.csv")).unwrap();
    text.lines().skip(1).filter_map(|l| {
        let mut f = l.split(',');
        let lesion = f.next()?.to_string();
        Some((f.next()?.to_string(), lesion))
    }).collect()
}

#[test]
fn a_resumed_run_is_the_same_run() {
    let Some(shared) = shared() else { return eprintln!("skipped: ../shared/data/ham10000 not found") };
    let straight = scratch("straight");
    let resumed = scratch("resumed");
    train(&shared, &straight, 8, 48, 2, &[]);
    train(&shared, &resumed, 8, 48, 2, &["--stop-after", "1"]);
    assert_eq!(json(&resumed.join("state.json"))["epoch"], 1, "--stop-after 1 should leave one epoch done");
    skinlens(&["train", "--out", resumed.to_str().unwrap(), "--resume"]);
    let (a, b) = (std::fs::read(straight.join("last.safetensors")).unwrap(), std::fs::read(resumed.join("last.safetensors")).unwrap());
    let (a, b) = (safetensors::SafeTensors::deserialize(&a).unwrap(), safetensors::SafeTensors::deserialize(&b).unwrap());
    let mut names = a.names();
    names.sort();
    assert_eq!(names.len(), b.names().len());
    for name in names {
        // Bit for bit: every random draw is keyed by (seed, epoch, batch), every sum has a fixed order.
        assert!(a.tensor(name).unwrap().data() == b.tensor(name).unwrap().data(), "{name} differs after resuming");
    }
    let history = |d: &Path| json(&d.join("state.json"))["history"].as_array().unwrap().iter().map(|h| h["val_balanced_accuracy"].clone()).collect::<Vec<_>>();
    assert_eq!(history(&straight), history(&resumed));
}

fn tensors_equal(a: &Path, b: &Path) -> bool {
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let (a, b) = (safetensors::SafeTensors::deserialize(&a).unwrap(), safetensors::SafeTensors::deserialize(&b).unwrap());
    let mut names = a.names();
    names.sort();
    names.len() == b.names().len() && names.iter().all(|n| b.tensor(n).is_ok_and(|t| t.data() == a.tensor(n).unwrap().data()))
}

#[test]
fn a_resumed_lite1_run_with_ema_and_every_augmentation_is_the_same_run() {
    let Some(shared) = shared() else { return eprintln!("skipped: ../shared/data/ham10000 not found") };
    let options = [
        "--arch", "lite1", "--ema", "0.9", "--saturation", "0.3", "--erase-prob", "0.5", "--mixup", "0.4", "--cutmix", "1.0", "--min-crop-area", "0.35",
    ];
    let straight = scratch("options-straight");
    let resumed = scratch("options-resumed");
    train_from(&shared, "effnet_lite1.safetensors", &straight, 8, 48, 2, &options);
    train_from(&shared, "effnet_lite1.safetensors", &resumed, 8, 48, 2, &[&options[..], &["--stop-after", "1"]].concat());
    // After one epoch, best is that epoch: the weights' average, not the raw weights.
    let (best, last, average) = (resumed.join("best.safetensors"), resumed.join("last.safetensors"), resumed.join("last.ema.safetensors"));
    assert!(tensors_equal(&best, &average), "best.safetensors should be the moving average");
    assert!(!tensors_equal(&best, &last), "the average should differ from the raw weights");
    let bytes = std::fs::read(&best).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(header.metadata().as_ref().unwrap()["skinlens.arch"], "efficientnet-lite1");
    skinlens(&["train", "--out", resumed.to_str().unwrap(), "--resume"]);
    for file in ["last.safetensors", "last.ema.safetensors", "last.optimizer.safetensors"] {
        assert!(tensors_equal(&straight.join(file), &resumed.join(file)), "{file} differs after resuming");
    }
    let history = |d: &Path| json(&d.join("state.json"))["history"].as_array().unwrap().iter().map(|h| (h["train_loss"].clone(), h["val_balanced_accuracy"].clone())).collect::<Vec<_>>();
    assert_eq!(history(&straight), history(&resumed));
}

#[test]
fn an_exported_model_gives_the_trainers_validation_probabilities() {
    let Some(run) = learned_run() else { return eprintln!("skipped: ../shared/data/ham10000 not found") };
    let shared = shared().unwrap();
    let out = scratch("export");
    std::fs::create_dir_all(&out).unwrap();
    let model = out.join("model.safetensors");
    export(run, &model, &out.join("card.json"), &[&QUICK[..], &["--prior-correction", "0"]].concat());
    let card = json(&out.join("card.json"));
    assert_eq!(card["untrained"], false);
    assert_eq!(card["test_time_augmentation"]["views"], "none", "one pass, as the trainer validates");
    assert!(card["metrics"]["test"]["metrics"]["balanced_accuracy"].as_f64().is_some());
    let temperature = card["calibration"]["temperature"].as_f64().unwrap();
    // The trainer's own validation probabilities (temperature 1) of the checkpoint exported.
    let saved = json(&run.join("best.val.json"));
    let ids: Vec<&str> = saved["image_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let files: Vec<String> = ids.iter().map(|id| {
        let crop = shared.join(format!("data/ham10000/images_224/{id}.jpg"));
        if crop.is_file() { crop } else { shared.join(format!("data/ham10000/images_200x150/{id}.jpg")) }.display().to_string()
    }).collect();
    let mut args = vec!["predict", "--json", "--model", model.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    let lines = skinlens(&args);
    let classes: Vec<String> = saved["classes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let mut compared = 0;
    for (line, trainer) in lines.lines().filter(|l| l.starts_with('{')).zip(saved["probabilities"].as_array().unwrap()) {
        let answer: Value = serde_json::from_str(line).unwrap();
        // softmax(log p / T) = softmax(logits / T): the trainer's answer at the exported temperature.
        let logp: Vec<f64> = trainer.as_array().unwrap().iter().map(|v| v.as_f64().unwrap().max(1e-30).ln() / temperature).collect();
        let max = logp.iter().cloned().fold(f64::MIN, f64::max);
        let sum: f64 = logp.iter().map(|l| (l - max).exp()).sum();
        for (c, l) in classes.iter().zip(&logp) {
            let expected = (l - max).exp() / sum;
            let got = answer["probabilities"][c].as_f64().unwrap();
            assert!((expected - got).abs() < 2e-4, "{}: {c} trainer {expected} vs predict {got}", answer["image"]);
        }
        compared += 1;
    }
    assert_eq!(compared, ids.len());
}

#[test]
fn an_export_with_two_members_writes_both_and_lists_each_on_the_card() {
    let Some(run) = learned_run() else { return eprintln!("skipped: ../shared/data/ham10000 not found") };
    let out = scratch("export-members");
    std::fs::create_dir_all(&out).unwrap();
    let model = out.join("model.safetensors");
    let second = run.join("last.safetensors");
    export(run, &model, &out.join("card.json"), &[
        "--ensemble-with", second.to_str().unwrap(), "--weights", "equal", "--size", "auto", "--size-factors", "1.0,1.25",
        "--dtype", "int8", "--tta", "none", "--bootstrap", "20",
    ]);
    let card = json(&out.join("card.json"));
    let members = card["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    // The weights were chosen on the members' int8 answers: the mix's validation figure is the
    // written file's own (one pass per image), not its f32 members'.
    let (mixed, written) = (card["ensemble"]["validation_balanced_accuracy"].as_f64().unwrap(), card["test_time_augmentation"]["validation_balanced_accuracy"]["one_pass"].as_f64().unwrap());
    assert!((mixed - written).abs() < 1e-9, "the mix read {mixed} on validation, the written file {written}");
    for m in members {
        assert_eq!(m["weight"].as_f64().unwrap(), 0.5);
        assert!([64, 80].contains(&m["input_size"].as_u64().unwrap()), "{m}");
        assert_eq!(m["validation_balanced_accuracy_by_size"].as_array().unwrap().len(), 2);
        assert!(m["test"]["balanced_accuracy"].as_f64().is_some(), "{m}");
        assert!(m["validation"]["balanced_accuracy"].as_f64().is_some());
    }
    // The file holds both, and predict runs them.
    let bytes = std::fs::read(&model).unwrap();
    let file = skinlens_core::ModelFile::from_safetensors(&bytes).unwrap();
    assert_eq!(file.members.len(), 2);
    let sizes: Vec<u64> = members.iter().map(|m| m["input_size"].as_u64().unwrap()).collect();
    assert_eq!(file.members.iter().map(|m| m.network.config.input_size as u64).collect::<Vec<_>>(), sizes);
    let image = shared().unwrap().join("data/ham10000/images_200x150").read_dir().unwrap().next().unwrap().unwrap().path();
    let text = skinlens(&["predict", "--json", "--model", model.to_str().unwrap(), image.to_str().unwrap()]);
    assert!(text.contains("\"probabilities\""), "{text}");
}

#[test]
fn an_exported_model_joins_an_ensemble_as_it_was_exported() {
    let Some(run) = learned_run() else { return eprintln!("skipped: ../shared/data/ham10000 not found") };
    let out = scratch("export-exported");
    std::fs::create_dir_all(&out).unwrap();
    // An earlier release: one network at 80 px, its decision rule and temperature fixed at its export.
    let earlier = out.join("earlier.safetensors");
    let last = run.join("last.safetensors");
    export(run, &earlier, &out.join("earlier.card.json"), &[&QUICK[..], &["--checkpoint", last.to_str().unwrap(), "--size", "80"]].concat());
    let model = out.join("model.safetensors");
    export(run, &model, &out.join("model.card.json"), &[&QUICK[..], &["--ensemble-with", earlier.to_str().unwrap(), "--weights", "0.7,0.3"]].concat());
    let card = json(&out.join("model.card.json"));
    let members = card["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[1]["as_exported"], true, "{}", members[1]);
    assert!(members[1]["run"].is_null());
    let earlier_card = json(&out.join("earlier.card.json"));
    assert_eq!(members[1]["temperature"].as_f64().unwrap() as f32, earlier_card["calibration"]["temperature"].as_f64().unwrap() as f32);
    // The second member is the earlier file's network, tensor for tensor, at its size.
    let read = |p: &Path| skinlens_core::ModelFile::from_safetensors(&std::fs::read(p).unwrap()).unwrap();
    let (before, after) = (read(&earlier), read(&model));
    let (was, now) = (&before.members[0].network, &after.members[1].network);
    assert_eq!(now.config.input_size, 80);
    assert_eq!(now.metadata.temperature, was.metadata.temperature);
    assert_eq!(now.fc_bias.to_vec1::<f32>().unwrap(), was.fc_bias.to_vec1::<f32>().unwrap());
    assert_eq!(now.head.weight.flatten_all().unwrap().to_vec1::<f32>().unwrap(), was.head.weight.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    assert!((after.members[0].weight - 0.7).abs() < 1e-6 && (after.members[1].weight - 0.3).abs() < 1e-6);

    // A two-network file joins network by network, each with its own card entry (decision rule,
    // epochs, minutes), not the file-wide values of its card.
    let again = out.join("again.safetensors");
    export(run, &again, &out.join("again.card.json"), &[&QUICK[..], &["--ensemble-with", model.to_str().unwrap(), "--weights", "0,0.5,0.5"]].concat());
    let again_card = json(&out.join("again.card.json"));
    let joined = again_card["members"].as_array().unwrap();
    assert_eq!(joined.len(), 3);
    for (now, was) in joined[1..].iter().zip(members) {
        for key in ["decision_rule_tau", "epochs_run", "checkpoint_epoch", "training_minutes"] {
            assert_eq!(now[key], was[key], "{key}: {now} vs {was}");
        }
    }
    let shipped_minutes: f64 = members.iter().map(|m| m["training_minutes"].as_f64().unwrap()).sum();
    assert!((again_card["training"]["wall_time_minutes"].as_f64().unwrap() - shipped_minutes).abs() < 1e-9, "the shipped networks' minutes only");

    // A card from another split is refused, naming the file.
    let mut other = earlier_card.clone();
    other["training"]["split"]["seed"] = 99.into();
    let stray = out.join("stray.safetensors");
    std::fs::copy(&earlier, &stray).unwrap();
    std::fs::write(out.join("stray.card.json"), other.to_string()).unwrap();
    let (no, no_card) = (out.join("no.safetensors"), out.join("no.card.json"));
    let text = export_refused(run, &no, &no_card, &["--ensemble-with", stray.to_str().unwrap()]);
    assert!(text.contains("stray.safetensors") && text.contains("split"), "{text}");
    // Without its card, too.
    std::fs::remove_file(out.join("stray.card.json")).unwrap();
    let text = export_refused(run, &no, &no_card, &["--ensemble-with", stray.to_str().unwrap()]);
    assert!(text.contains("stray.card.json"), "{text}");
}

#[test]
fn a_later_stage_counts_the_minutes_of_the_stage_it_started_from() {
    let Some(run) = learned_run() else { return eprintln!("skipped: ../shared/data/ham10000 not found") };
    let shared = shared().unwrap();
    let out = scratch("stage");
    // Progressive resizing: one epoch at 80 px from the learned run's best checkpoint.
    let (data, base) = (shared.join("data/ham10000"), run.join("best.safetensors"));
    let stage = out.join("run");
    skinlens(&[
        "train", "--data", data.to_str().unwrap(), "--base", base.to_str().unwrap(), "--out", stage.to_str().unwrap(),
        "--max-lesions-per-class", "40", "--size", "80", "--epochs", "1", "--batch", "16", "--seed", "3", "--lr", "5e-4", "--warmup-epochs", "0.5",
    ]);
    export(&stage, &out.join("model.safetensors"), &out.join("model.card.json"), &QUICK);
    let minutes = |dir: &Path| json(&dir.join("state.json"))["elapsed_s"].as_f64().unwrap() / 60.0;
    let card = json(&out.join("model.card.json"));
    let member = card["members"][0]["training_minutes"].as_f64().unwrap();
    assert!((member - (minutes(&stage) + minutes(run))).abs() < 1e-9, "{member} min: this stage {} + the earlier one {}", minutes(&stage), minutes(run));
    assert!((card["training"]["wall_time_minutes"].as_f64().unwrap() - member).abs() < 1e-9);
}

#[test]
fn a_left_out_run_member_does_not_describe_the_file_and_the_member_budget_holds() {
    let Some(run) = learned_run() else { return eprintln!("skipped: ../shared/data/ham10000 not found") };
    let out = scratch("export-budget");
    std::fs::create_dir_all(&out).unwrap();
    let (model, card_path) = (out.join("model.safetensors"), out.join("model.card.json"));
    let second = run.join("last.safetensors");
    // The --run member gets weight 0: the file holds the other one, and the card's one-value
    // fields (temperature, decision rule) are that member's.
    export(run, &model, &card_path, &[&QUICK[..], &["--ensemble-with", second.to_str().unwrap(), "--weights", "0,1", "--max-members", "1"]].concat());
    let card = json(&card_path);
    let members = card["members"].as_array().unwrap();
    assert_eq!(members.iter().map(|m| m["shipped"] == true).collect::<Vec<_>>(), [false, true]);
    assert_eq!(card["calibration"]["temperature"], members[1]["temperature"], "{}", card["calibration"]);
    assert_eq!(card["weights"]["temperature"], members[1]["temperature"]);
    assert_eq!(card["decision_rule"]["tau"], members[1]["decision_rule_tau"]);
    let file = skinlens_core::ModelFile::from_safetensors(&std::fs::read(&model).unwrap()).unwrap();
    assert_eq!(file.members.len(), 1);
    assert!((file.members[0].network.metadata.temperature - members[1]["temperature"].as_f64().unwrap() as f32).abs() < 1e-6);

    // More members with a weight than --max-members allows is refused before anything is written.
    let extra = ["--ensemble-with", second.to_str().unwrap(), "--weights", "equal", "--max-members", "1", "--tta", "none"];
    let text = export_refused(run, &out.join("no.safetensors"), &out.join("no.card.json"), &extra);
    assert!(text.contains("--max-members"), "{text}");
}
