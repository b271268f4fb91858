//! The whole network on the GPU against the CPU path (skinlens-core), layer by layer on the
//! reference weights and probability by probability on real HAM10000 images.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use skinlens_core::model::{EfficientNetLite, FoldedNetwork};
use skinlens_core::nn::{self, Activation};
use skinlens_core::{preprocess, Classifier};
use skinlens_gpu::layers::{DepthwiseConv2d, FeatureShape, Kernels, PointwiseConv, ResidualAdd};
use skinlens_gpu::{self_check_input, GpuEngine};

/// The bound the issue sets for the two engines' probabilities.
const PROBABILITY_TOLERANCE: f32 = 1e-4;

fn network(path: std::path::PathBuf) -> FoldedNetwork {
    networks(path).remove(0)
}

/// Every network of a model file (one, or each member's).
fn networks(path: std::path::PathBuf) -> Vec<FoldedNetwork> {
    let file = skinlens_core::ModelFile::from_safetensors(&read_bytes(path.clone())).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.members.into_iter().map(|m| m.network).collect()
}

fn imagenet() -> FoldedNetwork {
    network(shared().join("reference/effnet_lite0.safetensors"))
}

fn reference_tensor(name: &str) -> Vec<f32> {
    read_bytes(shared().join(format!("reference/tensors/{name}.bin")))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn engine(net: &FoldedNetwork) -> GpuEngine {
    pollster::block_on(GpuEngine::with_context(gpu().clone(), net)).expect("GPU engine")
}

fn nchw(values: Vec<f32>, size: usize) -> Tensor {
    Tensor::from_vec(values, (1, 3, size, size), &Device::Cpu).unwrap()
}

#[test]
fn every_activation_matches_the_cpu_on_the_reference_image() {
    let net = imagenet();
    let input = reference_tensor("chelsea_input");
    let cpu = EfficientNetLite::new(&net).unwrap().forward_trace(&nchw(input.clone(), 224)).unwrap();
    let gpu_trace = pollster::block_on(engine(&net).trace(&input)).unwrap();

    assert_close("stem", &gpu_trace.stem, &values(&cpu.stem));
    assert_eq!(gpu_trace.blocks.len(), cpu.blocks.len());
    for (i, (g, c)) in gpu_trace.blocks.iter().zip(&cpu.blocks).enumerate() {
        assert_close(&format!("block {i}"), g, &values(c));
    }
    assert_close("head", &gpu_trace.head, &values(&cpu.head));
    assert_close("pooled", &gpu_trace.pooled, &values(&cpu.pooled));
    let logits = values(&cpu.logits);
    let diff = max_abs_diff(&gpu_trace.logits, &logits);
    println!("{:>40}: max|Δ| = {diff:.3e}  (bound 1e-3)", "logits");
    assert!(diff <= 1e-3, "logits max|Δ| {diff}");
    // And against PyTorch itself, with ARCH.md's bound for f32 logits.
    let torch = max_abs_diff(&gpu_trace.logits, &reference_tensor("chelsea_logits"));
    println!("{:>40}: max|Δ| = {torch:.3e}  (bound 1e-3)", "logits vs PyTorch");
    assert!(torch <= 1e-3, "GPU logits vs PyTorch max|Δ| {torch}");
}

/// Each expand, depthwise and project convolution of the reference model, fed the CPU's own
/// input to that layer, so an error cannot hide behind (or be blamed on) an earlier layer.
#[test]
fn every_real_layer_matches_the_cpu_layer() {
    let net = imagenet();
    let kernels = Kernels::new(gpu());
    let cpu = EfficientNetLite::new(&net).unwrap().forward_trace(&nchw(reference_tensor("chelsea_input"), 224)).unwrap();
    let mut x = cpu.stem.clone();
    for (i, block) in net.blocks.iter().enumerate() {
        let (_, c, h, w) = x.dims4().unwrap();
        let mut shape = FeatureShape::new(c, h, w);
        let mut h_cpu = x.clone();
        if let Some(expand) = &block.expand {
            let cpu_out = nn::PointwiseConv::new(&expand.weight, &expand.bias, Activation::Relu6).unwrap().forward(&x).unwrap();
            let layer = PointwiseConv::new(
                gpu(), &kernels, "expand", &expand.weight, &expand.bias, Activation::Relu6, &upload(&values(&x)), shape,
            )
            .unwrap();
            let got = run_and_read(layer.dispatch(), &layer.output, layer.output_shape.len());
            assert_close(&format!("block {i} expand"), &got, &values(&cpu_out));
            shape = layer.output_shape;
            h_cpu = cpu_out;
        }
        let dw = &block.depthwise;
        let cpu_dw = nn::DepthwiseConv2d::new(&dw.weight, &dw.bias, block.spec.stride, Activation::Relu6)
            .unwrap()
            .forward(&h_cpu)
            .unwrap();
        let layer = DepthwiseConv2d::new(
            gpu(), &kernels, "depthwise", &dw.weight, &dw.bias, block.spec.stride, Activation::Relu6,
            &upload(&values(&h_cpu)), shape,
        )
        .unwrap();
        let got = run_and_read(layer.dispatch(), &layer.output, layer.output_shape.len());
        assert_close(&format!("block {i} depthwise k{} s{}", block.spec.kernel, block.spec.stride), &got, &values(&cpu_dw));

        let p = &block.project;
        let cpu_project = nn::PointwiseConv::new(&p.weight, &p.bias, Activation::Identity).unwrap().forward(&cpu_dw).unwrap();
        let layer = PointwiseConv::new(
            gpu(), &kernels, "project", &p.weight, &p.bias, Activation::Identity, &upload(&values(&cpu_dw)),
            layer.output_shape,
        )
        .unwrap();
        let mut got = run_and_read(layer.dispatch(), &layer.output, layer.output_shape.len());
        assert_close(&format!("block {i} project"), &got, &values(&cpu_project));
        if block.spec.has_residual() {
            let add = ResidualAdd::new(gpu(), &kernels, "residual", &upload(&values(&x)), &layer.output, got.len()).unwrap();
            got = run_and_read(add.dispatch(), &layer.output, got.len());
        }
        assert_close(&format!("block {i} output"), &got, &values(&cpu.blocks[i]));
        x = cpu.blocks[i].clone();
    }
}

/// One image per diagnosis from the full-resolution HAM10000 sample, in file order.
fn one_image_per_class() -> Vec<(String, std::path::PathBuf)> {
    let dir = shared().join("data/ham10000");
    let labels = String::from_utf8(read_bytes(dir.join("fullres_600x450_labels.csv"))).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for line in labels.lines().skip(1) {
        let mut fields = line.split(',');
        let (Some(id), Some(dx)) = (fields.next(), fields.next()) else { continue };
        seen.entry(dx.to_string()).or_insert_with(|| dir.join(format!("fullres_600x450/{id}.jpg")));
    }
    assert_eq!(seen.len(), 7, "expected all seven HAM10000 classes in the sample");
    seen.into_iter().collect()
}

/// Both engines on the same preprocessed input; returns the largest probability difference.
fn compare_on_images(model_name: &str, net: &FoldedNetwork) -> f32 {
    let classifier = Classifier::from_network(net).unwrap();
    let gpu_engine = engine(net);
    let size = net.config.input_size as u32;
    let mut worst = 0f32;
    for (dx, path) in one_image_per_class() {
        let image = preprocess::prepare(&read_bytes(path.clone()), size).unwrap();
        let input = preprocess::input_tensor(&[&image.model_view], &Device::Cpu).unwrap();
        let cpu = classifier.classify_view(&input).unwrap().remove(0);
        let gpu_out = pollster::block_on(gpu_engine.classify(&values(&input))).unwrap();
        let diff = max_abs_diff(&gpu_out.probabilities, &cpu.probabilities);
        let logit_diff = max_abs_diff(&gpu_out.logits, &cpu.logits);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        println!("{model_name} {name} ({dx}): max|Δprob| = {diff:.3e}, max|Δlogit| = {logit_diff:.3e}, top-1 {}", cpu.top());
        assert!(diff <= PROBABILITY_TOLERANCE, "{model_name} {name}: max|Δprob| {diff:.3e} > {PROBABILITY_TOLERANCE}");
        let gpu_top = gpu_out.probabilities.iter().enumerate().fold(0, |b, (i, p)| if *p > gpu_out.probabilities[b] { i } else { b });
        assert_eq!(gpu_top, cpu.top(), "{model_name} {name}: top-1 differs");
        worst = worst.max(diff);
    }
    println!("{model_name}: worst max|Δprob| over {} images = {worst:.3e}", 7);
    worst
}

#[test]
fn probabilities_match_the_cpu_on_real_images_seven_class_model() {
    compare_on_images("effnet_lite0_7cls", &network(shared().join("peers/models/effnet_lite0_7cls.safetensors")));
}

#[test]
fn probabilities_match_the_cpu_on_real_images_shipped_model() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/skinlens.safetensors");
    // Every member of the shipped file, each alone.
    for (i, net) in networks(path).iter().enumerate() {
        compare_on_images(&format!("models/skinlens member {}", i + 1), net);
    }
}

#[test]
fn probabilities_match_the_cpu_on_real_images_imagenet_model() {
    compare_on_images("effnet_lite0 (1000 classes)", &imagenet());
}

#[test]
fn self_check_input_agrees_and_the_engine_is_reusable() {
    let net = network(shared().join("peers/models/effnet_lite0_7cls.safetensors"));
    let classifier = Classifier::from_network(&net).unwrap();
    let gpu_engine = engine(&net);
    let check = self_check_input(224);
    assert_eq!(check.len(), gpu_engine.input_len());
    let cpu = classifier.classify_view(&nchw(check.clone(), 224)).unwrap().remove(0);
    let first = pollster::block_on(gpu_engine.classify(&check)).unwrap();
    let diff = max_abs_diff(&first.probabilities, &cpu.probabilities);
    println!("self-check input: max|Δprob| = {diff:.3e}");
    assert!(diff <= PROBABILITY_TOLERANCE);

    // A different image in between must not leave anything behind.
    let other = reference_tensor("coffee_input");
    let coffee = pollster::block_on(gpu_engine.classify(&other)).unwrap();
    assert_ne!(coffee.logits, first.logits);
    let again = pollster::block_on(gpu_engine.classify(&check)).unwrap();
    assert_eq!(again, first, "the same input gave a different answer on the second run");
}

#[test]
fn a_wrong_input_length_is_an_error() {
    let net = network(shared().join("peers/models/effnet_lite0_7cls.safetensors"));
    let err = pollster::block_on(engine(&net).classify(&[0.0; 10])).unwrap_err();
    assert!(err.to_string().contains("expects 150528"), "{err}");
}

#[test]
fn head_features_come_back_with_the_probabilities() {
    let net = network(shared().join("peers/models/effnet_lite0_7cls.safetensors"));
    let input = reference_tensor("chelsea_input");
    let model = EfficientNetLite::new(&net).unwrap();
    let cpu_features = model.features(&nchw(input.clone(), 224)).unwrap();
    let gpu_engine = engine(&net);
    let (output, features) = pollster::block_on(gpu_engine.classify_with_features(&input)).unwrap();
    let shape = gpu_engine.head_shape();
    assert_eq!([shape.channels, shape.height, shape.width], [1280, 7, 7]);
    assert_close("head features", &features, &values(&cpu_features));
    let plain = pollster::block_on(gpu_engine.classify(&input)).unwrap();
    assert_eq!(plain, output);
}

/// A lost device must surface as an error the caller can fall back on, never as a panic.
#[test]
fn a_destroyed_device_is_an_error() {
    let net = network(shared().join("peers/models/effnet_lite0_7cls.safetensors"));
    // A device of its own: destroying the shared one would break the other tests.
    let ctx = pollster::block_on(skinlens_gpu::GpuContext::new()).expect("a second device");
    let gpu_engine = pollster::block_on(GpuEngine::with_context(ctx, &net)).unwrap();
    let input = self_check_input(224);
    pollster::block_on(gpu_engine.classify(&input)).unwrap();
    gpu_engine.context().destroy();
    let err = pollster::block_on(gpu_engine.classify(&input)).unwrap_err();
    println!("after destroy: {err}");
}
