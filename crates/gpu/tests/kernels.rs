//! Every GPU kernel against the CPU layer it replaces (skinlens-core's `nn`), on random
//! shapes chosen to hit the edges: odd sizes, sizes below and just above the tile sizes,
//! 1×1 images, stride 1 and 2, kernels 3 and 5 (and 1 and 7 for the generic pipelines), with and
//! without ReLU6.

mod common;

use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use common::*;
use skinlens_core::nn::{self, Activation};
use skinlens_gpu::layers::{
    Conv2dSame, DepthwiseConv2d, FeatureShape, GlobalAvgPool, Kernels, Linear, PointwiseConv, ResidualAdd, Softmax,
};

fn kernels() -> &'static Kernels {
    static KERNELS: OnceLock<Kernels> = OnceLock::new();
    KERNELS.get_or_init(|| Kernels::new(gpu()))
}

const ACTIVATIONS: [Activation; 2] = [Activation::Identity, Activation::Relu6];

/// Random values scaled so that ReLU6 clips a good share of them on both sides.
fn activations_like(shape: &[usize]) -> Tensor {
    (randn(shape) * 4.0).expect("scale")
}

#[test]
fn dense_conv_matches_cpu() {
    // (C_in, H, W, C_out, k, stride)
    let cases = [
        (3, 224, 224, 32, 3, 2), // the stem
        (3, 17, 23, 8, 3, 2),
        (3, 16, 16, 5, 3, 2),
        (2, 9, 7, 4, 5, 1),
        (4, 6, 11, 3, 5, 2),
        (1, 1, 1, 2, 3, 2),
        (3, 5, 5, 7, 3, 1),
        (2, 9, 8, 3, 7, 2), // no specialised pipeline for k = 7: the generic one
    ];
    for (c_in, h, w, c_out, k, s) in cases {
        let x = activations_like(&[1, c_in, h, w]);
        let weight = randn(&[c_out, c_in, k, k]);
        let bias = randn(&[c_out]);
        for act in ACTIVATIONS {
            let cpu = nn::Conv2dSame::new(weight.clone(), &bias, s, act).unwrap().forward(&x).unwrap();
            let shape = FeatureShape::new(c_in, h, w);
            let layer = Conv2dSame::new(gpu(), kernels(), "conv", &weight, &bias, s, act, &upload(&values(&x)), shape).unwrap();
            assert_eq!(cpu.dims()[1..], [layer.output_shape.channels, layer.output_shape.height, layer.output_shape.width]);
            let got = run_and_read(layer.dispatch(), &layer.output, layer.output_shape.len());
            assert_close(&format!("conv c{c_in}→{c_out} {h}×{w} k{k} s{s} {act:?}"), &got, &values(&cpu));
        }
    }
}

#[test]
fn depthwise_conv_matches_cpu() {
    // (C, H, W, k, stride)
    let cases = [
        (32, 112, 112, 3, 1),
        (96, 112, 112, 3, 2),
        (144, 56, 56, 5, 2),
        (240, 28, 28, 3, 2),
        (672, 14, 14, 5, 2),
        (7, 13, 9, 3, 1),
        (5, 13, 9, 5, 1),
        (3, 7, 6, 3, 2),
        (4, 9, 10, 5, 2),
        (2, 1, 1, 5, 2),
        (1, 2, 3, 3, 1),
        (3, 9, 11, 7, 2), // no specialised pipeline for k = 7: the generic one
        (2, 6, 5, 1, 1),
    ];
    for (c, h, w, k, s) in cases {
        let x = activations_like(&[1, c, h, w]);
        let weight = randn(&[c, 1, k, k]);
        let bias = randn(&[c]);
        for act in ACTIVATIONS {
            let cpu = nn::DepthwiseConv2d::new(&weight, &bias, s, act).unwrap().forward(&x).unwrap();
            let layer = DepthwiseConv2d::new(
                gpu(), kernels(), "depthwise", &weight, &bias, s, act, &upload(&values(&x)), FeatureShape::new(c, h, w),
            )
            .unwrap();
            assert_eq!(cpu.dims()[1..], [layer.output_shape.channels, layer.output_shape.height, layer.output_shape.width]);
            let got = run_and_read(layer.dispatch(), &layer.output, layer.output_shape.len());
            assert_close(&format!("depthwise c{c} {h}×{w} k{k} s{s} {act:?}"), &got, &values(&cpu));
        }
    }
}

#[test]
fn pointwise_conv_matches_cpu() {
    // (C_in, C_out, H, W): tile edges (64 rows/columns, 16 deep) crossed and missed.
    let cases = [
        (16, 96, 112, 112),
        (144, 24, 56, 56),
        (1152, 320, 7, 7),
        (320, 1280, 7, 7),
        (17, 65, 9, 11),
        (64, 64, 8, 8),
        (1, 1, 1, 1),
        (3, 130, 1, 5),
        (33, 7, 13, 1),
    ];
    for (c_in, c_out, h, w) in cases {
        let x = activations_like(&[1, c_in, h, w]);
        let weight = (randn(&[c_out, c_in, 1, 1]) / (c_in as f64).sqrt()).unwrap();
        let bias = randn(&[c_out]);
        for act in ACTIVATIONS {
            let cpu = nn::PointwiseConv::new(&weight, &bias, act).unwrap().forward(&x).unwrap();
            let layer = PointwiseConv::new(
                gpu(), kernels(), "pointwise", &weight, &bias, act, &upload(&values(&x)), FeatureShape::new(c_in, h, w),
            )
            .unwrap();
            let got = run_and_read(layer.dispatch(), &layer.output, layer.output_shape.len());
            assert_close(&format!("pointwise {c_in}→{c_out} {h}×{w} {act:?}"), &got, &values(&cpu));
        }
    }
}

#[test]
fn residual_add_matches_cpu() {
    // The last length needs more than 65,535 workgroups of 64: the grid wraps into a second
    // dimension (no layer of Lite0 at 224 is that large, so only this test covers it).
    for len in [1, 63, 64, 65, 24 * 56 * 56, 192 * 7 * 7, 65_535 * 64 + 100] {
        let (skip, projected) = (randn(&[len]), randn(&[len]));
        let output = upload(&values(&projected));
        let layer = ResidualAdd::new(gpu(), kernels(), "residual", &upload(&values(&skip)), &output, len).unwrap();
        let got = run_and_read(layer.dispatch(), &output, len);
        let cpu = (&projected + &skip).unwrap();
        assert_close(&format!("residual add {len}"), &got, &values(&cpu));
    }
}

#[test]
fn global_average_pool_matches_cpu() {
    for (c, h, w) in [(1280, 7, 7), (3, 1, 1), (5, 13, 11), (2, 224, 224)] {
        let x = activations_like(&[1, c, h, w]);
        let layer = GlobalAvgPool::new(gpu(), kernels(), "pool", &upload(&values(&x)), FeatureShape::new(c, h, w)).unwrap();
        let got = run_and_read(layer.dispatch(), &layer.output, c);
        assert_close(&format!("average pool c{c} {h}×{w}"), &got, &values(&x.mean((2, 3)).unwrap()));
    }
}

#[test]
fn linear_matches_cpu() {
    for (inputs, outputs) in [(1280, 7), (1280, 1000), (1, 1), (65, 3), (100, 130)] {
        let x = randn(&[1, inputs]);
        let weight = randn(&[outputs, inputs]);
        let bias = randn(&[outputs]);
        let cpu = x.matmul(&weight.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
        let layer = Linear::new(gpu(), kernels(), "fc", &weight, &bias, &upload(&values(&x)), inputs).unwrap();
        let got = run_and_read(layer.dispatch(), &layer.output, outputs);
        assert_close(&format!("linear {inputs}→{outputs}"), &got, &values(&cpu));
    }
}

#[test]
fn softmax_matches_cpu() {
    for (classes, temperature) in [(7, 1.0f32), (7, 1.7), (1000, 1.0), (1, 1.0), (65, 0.5), (3, 30.0)] {
        // Spread wide enough that exp() would overflow without the max shift.
        let logits = (randn(&[classes]) * 40.0).unwrap();
        let layer = Softmax::new(gpu(), kernels(), "softmax", &upload(&values(&logits)), classes, temperature).unwrap();
        let got = run_and_read(layer.dispatch(), &layer.output, classes);
        // Reference in f64.
        let scaled: Vec<f64> = values(&logits).iter().map(|&v| f64::from(v) / f64::from(temperature)).collect();
        let max = scaled.iter().cloned().fold(f64::MIN, f64::max);
        let total: f64 = scaled.iter().map(|v| (v - max).exp()).sum();
        let expected: Vec<f32> = scaled.iter().map(|v| ((v - max).exp() / total) as f32).collect();
        let diff = max_abs_diff(&got, &expected);
        println!("softmax {classes} T={temperature}: max|Δ| = {diff:.3e}");
        assert!(diff <= 1e-6, "softmax {classes} T={temperature}: max|Δ| {diff:.3e}");
        let sum: f32 = got.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");
    }
}

#[test]
fn mismatched_weights_are_an_error_not_a_panic() {
    let x = upload(&[0.0; 2 * 3 * 3]);
    let shape = FeatureShape::new(2, 3, 3);
    let wrong = Tensor::zeros((4, 3, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    let bias = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = PointwiseConv::new(gpu(), kernels(), "bad", &wrong, &bias, Activation::Identity, &x, shape).unwrap_err();
    assert!(err.to_string().contains("bad"), "{err}");
}
