//! The CPU model against the PyTorch reference activations in `../shared/reference/tensors`.
//! Bounds from ARCH.md: logits max-abs ≤ 1e-3, activations ≤ 1e-4 × the tensor's abs-max.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use skinlens_core::model::{EfficientNetLite, FoldedNetwork, Storage};
use skinlens_core::preprocess::{centre_square, input_tensor, resize_bilinear_u8};

fn imagenet() -> EfficientNetLite {
    let bytes = read_bytes(reference("effnet_lite0.safetensors"));
    EfficientNetLite::new(&FoldedNetwork::from_safetensors(&bytes).expect("load")).expect("build")
}

fn input(name: &str) -> Tensor {
    Tensor::from_vec(tensor_f32(name), (1, 3, 224, 224), &Device::Cpu).unwrap()
}

fn assert_activation(name: &str, got: &Tensor) {
    let expected = tensor_f32(name);
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = max_abs_diff(&got, &expected);
    let bound = 1e-4 * max_abs(&expected);
    println!("{name:>16}: max|Δ| = {diff:.3e}  (bound {bound:.3e}, {:.3} of it)", diff / bound);
    assert!(diff <= bound, "{name}: max|Δ| {diff} > {bound}");
}

#[test]
fn preprocessing_is_bit_exact() {
    let orig = tensor_u8("chelsea_orig_u8_hwc");
    let image = image::RgbImage::from_raw(451, 300, orig).expect("300×451×3");
    let resized = resize_bilinear_u8(&centre_square(&image), 224, 224);
    let expected = tensor_u8("chelsea_u8_hwc");
    let differing = resized.as_raw().iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0, "{differing} of {} bytes differ", expected.len());

    let tensor = input_tensor(&[&resized], &Device::Cpu).unwrap();
    let values = tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(values, tensor_f32("chelsea_input"), "normalised input differs");
}

#[test]
fn every_layer_matches_the_reference() {
    let model = imagenet();
    let trace = model.forward_trace(&input("chelsea_input")).unwrap();
    assert_activation("chelsea_stem", &trace.stem);
    for (i, block) in trace.blocks.iter().enumerate() {
        assert_activation(&format!("chelsea_block{i:02}"), block);
    }
    assert_activation("chelsea_head", &trace.head);
    assert_activation("chelsea_pooled", &trace.pooled);
    let logits = trace.logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = max_abs_diff(&logits, &tensor_f32("chelsea_logits"));
    println!("  chelsea_logits: max|Δ| = {diff:.3e}  (bound 1e-3)");
    assert!(diff <= 1e-3, "logits max|Δ| {diff}");
}

fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut ranked: Vec<(usize, f32)> = exp.iter().map(|e| e / sum).enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    ranked
}

#[test]
fn chelsea_top5_and_coffee_top1() {
    let model = imagenet();
    let chelsea = model.forward(&input("chelsea_input")).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let top5 = top_k(&chelsea, 5);
    let classes: Vec<usize> = top5.iter().map(|t| t.0).collect();
    assert_eq!(classes, [285, 282, 281, 287, 904], "chelsea top-5 {top5:?}");
    for ((_, p), expected) in top5.iter().zip([0.405, 0.331, 0.158, 0.026, 0.002]) {
        assert!((p - expected).abs() < 1e-3, "chelsea top-5 {top5:?}");
    }
    let coffee = model.forward(&input("coffee_input")).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = max_abs_diff(&coffee, &tensor_f32("coffee_logits"));
    assert!(diff <= 1e-3, "coffee logits max|Δ| {diff}");
    let top1 = top_k(&coffee, 1)[0];
    assert_eq!(top1.0, 967, "coffee top-1 {top1:?}");
    assert!((top1.1 - 0.941).abs() < 1e-3);
}

#[test]
fn seven_class_head_matches_reference() {
    let bytes = read_bytes(shared().join("peers/models/effnet_lite0_7cls.safetensors"));
    let net = FoldedNetwork::from_safetensors(&bytes).unwrap();
    assert_eq!(net.metadata.classes, ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]);
    let model = EfficientNetLite::new(&net).unwrap();
    for name in ["chelsea", "coffee"] {
        let logits = model.forward(&input(&format!("{name}_input"))).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let diff = max_abs_diff(&logits, &tensor_f32(&format!("{name}_logits_7cls")));
        println!("{name} 7-class logits max|Δ| = {diff:.3e}");
        assert!(diff <= 1e-3);
    }
}

#[test]
fn folded_export_round_trips_in_every_storage() {
    let net = FoldedNetwork::from_safetensors(&read_bytes(reference("effnet_lite0.safetensors"))).unwrap();
    let reference_logits = tensor_f32("chelsea_logits");
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    for (storage, bound) in [(Storage::F32, 1e-3f32), (Storage::F16, 0.1), (Storage::Int8, 0.5)] {
        let bytes = net.to_safetensors(storage, &Default::default()).unwrap();
        let back = FoldedNetwork::from_safetensors(&bytes).unwrap();
        let logits = EfficientNetLite::new(&back).unwrap().forward(&input("chelsea_input")).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let diff = max_abs_diff(&logits, &reference_logits);
        println!("folded {}: {} bytes, logits max|Δ| = {diff:.3e}", storage.as_str(), bytes.len());
        assert!(diff <= bound, "{}: {diff}", storage.as_str());
        assert_eq!(argmax(&logits), argmax(&reference_logits), "{}: the ImageNet answer changed", storage.as_str());
    }
}

/// int8 keeps every weight of every layer within half a quantisation step of its run (f16 where
/// a weight is too small or its rows too short for int8): a wrong scale, run or sign shows here
/// before it shows in the logits.
#[test]
fn int8_weights_stay_within_half_a_step_of_their_run() {
    use skinlens_core::model::storage::{is_int8_weight, run_length, runs_for, INT8_GROUP};
    let net = FoldedNetwork::from_safetensors(&read_bytes(reference("effnet_lite0.safetensors"))).unwrap();
    let back = FoldedNetwork::from_safetensors(&net.to_safetensors(Storage::Int8, &Default::default()).unwrap()).unwrap();
    let (before, after) = (net.named_tensors(), back.named_tensors());
    assert_eq!(before.len(), after.len());
    let mut quantised = 0;
    for ((name, w), (_, q)) in before.iter().zip(&after) {
        let exact = w.rank() == 1; // biases are stored as f32
        let int8 = !exact && is_int8_weight(w.dims());
        let (w, q) = (w.flatten_from(1).unwrap_or_else(|_| w.unsqueeze(1).unwrap()), q.flatten_from(1).unwrap_or_else(|_| q.unsqueeze(1).unwrap()));
        let (w, q) = (w.to_vec2::<f32>().unwrap(), q.to_vec2::<f32>().unwrap());
        let len = w[0].len();
        quantised += usize::from(int8);
        let run = run_length(len, runs_for(len, INT8_GROUP));
        for (row_w, row_q) in w.iter().zip(&q) {
            for (run_w, run_q) in row_w.chunks(run).zip(row_q.chunks(run)) {
                let step = run_w.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                for (a, b) in run_w.iter().zip(run_q) {
                    // f16: relative rounding 2^-11, absolute 2^-25 below its normal range.
                    let bound = if exact { 0.0 } else if int8 { step * 0.5 + a.abs() * 2f32.powi(-20) } else { a.abs() * 2f32.powi(-11) + 2f32.powi(-25) };
                    assert!((a - b).abs() <= bound, "{name}: {a} read back as {b} (bound {bound})");
                }
            }
        }
    }
    // ImageNet Lite0: the 1×1 convolutions of blocks 6–15 (20), the head and the 1,000-class
    // classifier; blocks 0–5's are under 32,768 values and stay f16.
    assert_eq!(quantised, 22, "tensors stored as int8");
}
