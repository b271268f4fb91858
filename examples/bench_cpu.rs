//! Native CPU latency of one 224×224 image through EfficientNet-Lite0 (a report, not a test).
//!
//! `cargo run --release --example bench_cpu -- MODEL.safetensors [RUNS] [--whole]`; set
//! RAYON_NUM_THREADS to choose the thread count; `--whole` skips the per-layer timings (for a
//! profiler). Prints one JSON line: whole-model median/min/p90 after warm-up,
//! and the depthwise layers timed with this crate's kernel against candle's grouped conv2d.

use std::time::Instant;

use candle_core::{Device, Tensor};
use skinlens_core::model::{EfficientNetLite, FoldedNetwork};
use skinlens_core::nn::depthwise::depthwise_grouped_reference;
use skinlens_core::nn::{same_output, Activation, DepthwiseConv2d};

fn median_ms(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), samples[0], at(0.9))
}

fn time<T>(runs: usize, warmup: usize, mut f: impl FnMut() -> T) -> Vec<f64> {
    for _ in 0..warmup {
        std::hint::black_box(f());
    }
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map(String::as_str).unwrap_or("models/skinlens.safetensors");
    let runs: usize = args.get(2).map(|r| r.parse()).transpose()?.unwrap_or(50);
    let net = FoldedNetwork::from_safetensors(&std::fs::read(path)?)?;
    let model = EfficientNetLite::new(&net)?;
    let size = net.config.input_size;
    let x = Tensor::randn(0f32, 1.0, (1, 3, size, size), &Device::Cpu)?;
    let whole = median_ms(time(runs, 10, || model.forward(&x).unwrap()));
    if args.iter().any(|a| a == "--whole") {
        println!("{}", serde_json::json!({"median_ms": whole.0, "min_ms": whole.1, "p90_ms": whole.2}));
        return Ok(());
    }

    // Each depthwise layer on an input of its real shape.
    let (mut fast_total, mut grouped_total) = (0.0, 0.0);
    let mut hw = same_output(size, 2);
    for block in &net.blocks {
        let c = block.spec.mid_channels();
        let input = Tensor::randn(0f32, 1.0, (1, c, hw, hw), &Device::Cpu)?;
        let (w, b, s) = (&block.depthwise.weight, &block.depthwise.bias, block.spec.stride);
        let kernel = DepthwiseConv2d::new(w, b, s, Activation::Relu6)?;
        fast_total += median_ms(time(runs, 3, || kernel.forward(&input).unwrap())).0;
        grouped_total += median_ms(time(runs.min(20), 2, || depthwise_grouped_reference(&input, w, b, s, Activation::Relu6).unwrap())).0;
        hw = same_output(hw, s);
    }
    let threads = candle_core::utils::get_num_threads();
    println!(
        "{}",
        serde_json::json!({
            "engine": "skinlens-core (candle CPU)", "threads": threads, "runs": runs, "warmup": 10,
            "model": path, "input": size,
            "median_ms": whole.0, "min_ms": whole.1, "p90_ms": whole.2,
            "depthwise_kernel_ms": fast_total, "depthwise_grouped_conv2d_ms": grouped_total,
            "depthwise_speedup": grouped_total / fast_total,
        })
    );
    Ok(())
}
