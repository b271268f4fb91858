//! Native CPU latency of one 224×224 image through EfficientNet-Lite0 (a report, not a test).
//!
//! `cargo run --release --example bench_cpu -- MODEL.safetensors [RUNS] [--whole]`; set
//! RAYON_NUM_THREADS to choose the thread count; `--whole` skips the per-layer timings (for a
//! profiler). Prints one JSON line: whole-model median/min/p90 after warm-up,
//! and the depthwise layers timed with this crate's kernel against candle's grouped conv2d.

use std::time::Instant;

use candle_core::{Device, Tensor};
use skinlens_core::model::workers::in_worker;
use skinlens_core::model::{EfficientNetLite, FoldedNetwork};
use skinlens_core::nn::depthwise::depthwise_grouped_reference;
use skinlens_core::nn::{same_output, Activation, DepthwiseConv2d, PointwiseConv};

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

    // Each depthwise layer on an input of its real shape, on the pool as a pass runs it.
    let (mut fast_total, mut grouped_total) = (0.0, 0.0);
    // Each 1×1 convolution (expand, project, head) on an input of its real shape; per-layer
    // GMAC/s on stderr with SKINLENS_BENCH_LAYERS=1.
    let (mut pointwise_total, mut pointwise_macs) = (0.0, 0.0);
    let verbose = std::env::var_os("SKINLENS_BENCH_LAYERS").is_some();
    let mut hw = same_output(size, 2);
    let mut pointwise_layers = Vec::new();
    for block in &net.blocks {
        if let Some(expand) = &block.expand {
            pointwise_layers.push((expand, hw));
        }
        pointwise_layers.push((&block.project, same_output(hw, block.spec.stride)));
        hw = same_output(hw, block.spec.stride);
    }
    pointwise_layers.push((&net.head, hw));
    for (conv, hw) in pointwise_layers {
        let (c_out, c_in) = (conv.weight.dim(0)?, conv.weight.dim(1)?);
        let input = Tensor::randn(0f32, 1.0, (1, c_in, hw, hw), &Device::Cpu)?;
        let layer = PointwiseConv::new(&conv.weight, &conv.bias, Activation::Relu6)?;
        let ms = median_ms(in_worker(|| time(runs, 3, || layer.forward(&input).unwrap()))).0;
        let macs = (c_in * c_out * hw * hw) as f64;
        if verbose {
            eprintln!("pointwise {c_in:>4} -> {c_out:>4} at {hw:>3}x{hw:<3} {ms:>7.3} ms {:>6.1} GMAC/s", macs / ms / 1e6);
        }
        pointwise_total += ms;
        pointwise_macs += macs;
    }
    let mut hw = same_output(size, 2);
    for block in &net.blocks {
        let c = block.spec.mid_channels();
        let input = Tensor::randn(0f32, 1.0, (1, c, hw, hw), &Device::Cpu)?;
        let (w, b, s) = (&block.depthwise.weight, &block.depthwise.bias, block.spec.stride);
        let kernel = DepthwiseConv2d::new(w, b, s, Activation::Relu6)?;
        let ms = median_ms(in_worker(|| time(runs, 3, || kernel.forward(&input).unwrap()))).0;
        if verbose {
            eprintln!("depthwise {c:>4} k{} s{s} at {hw:>3}x{hw:<3} {ms:>7.3} ms", block.spec.kernel);
        }
        fast_total += ms;
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
            "pointwise_kernel_ms": pointwise_total, "pointwise_gmac_per_s": pointwise_macs / pointwise_total / 1e6,
        })
    );
    Ok(())
}
