//! Native latency of the GPU engine (a report, not a test): one real image, warm-up runs, then
//! ITERS timed runs of `GpuEngine::classify` (upload → dispatches → probabilities mapped back),
//! with the CPU path on the same input for comparison. Prints one JSON line.
//!
//! cargo run --release -p skinlens-gpu --example gpu_bench -- [MODEL] [IMAGE]
//! env: ITERS (20), WARMUP (3)

use std::time::Instant;

use skinlens_core::{preprocess, Classifier, FoldedNetwork};
use skinlens_gpu::GpuEngine;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    let median = if ms.len() % 2 == 1 { ms[ms.len() / 2] } else { (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0 };
    let p90 = ms[((ms.len() as f64 * 0.9) as usize).min(ms.len() - 1)];
    format!(r#"{{"n":{},"median_ms":{median:.2},"min_ms":{:.2},"p90_ms":{p90:.2},"max_ms":{:.2}}}"#, ms.len(), ms[0], ms[ms.len() - 1])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().cloned().unwrap_or_else(|| "models/skinlens.safetensors".into());
    let image = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "../shared/data/ham10000/fullres_600x450/ISIC_0024306.jpg".into());
    let (iters, warmup) = (env_usize("ITERS", 20).max(1), env_usize("WARMUP", 3));

    let bytes = std::fs::read(&model).map_err(|e| format!("{model}: {e}"))?;
    let net = FoldedNetwork::from_safetensors(&bytes).map_err(|e| format!("{model}: {e}"))?;
    let classifier = Classifier::from_network(&net)?;
    let prepared = preprocess::prepare(&std::fs::read(&image).map_err(|e| format!("{image}: {e}"))?, net.config.input_size as u32)?;
    let input = classifier.input(&prepared)?;
    let input_values = input.flatten_all()?.to_vec1::<f32>()?;

    let t0 = Instant::now();
    let engine = pollster::block_on(GpuEngine::new(&net))?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let info = engine.context().adapter_info().clone();

    let time_gpu = |n: usize| -> Result<Vec<f64>, skinlens_gpu::GpuError> {
        (0..n)
            .map(|_| {
                let t = Instant::now();
                pollster::block_on(engine.classify(&input_values))?;
                Ok(t.elapsed().as_secs_f64() * 1e3)
            })
            .collect()
    };
    let first_ms = time_gpu(1)?[0];
    time_gpu(warmup)?;
    let gpu = time_gpu(iters)?;

    let time_cpu = |n: usize| -> Result<Vec<f64>, skinlens_core::Error> {
        (0..n)
            .map(|_| {
                let t = Instant::now();
                classifier.classify_view(&input)?;
                Ok(t.elapsed().as_secs_f64() * 1e3)
            })
            .collect()
    };
    time_cpu(warmup)?;
    let cpu = time_cpu(iters)?;

    let gpu_out = pollster::block_on(engine.classify(&input_values))?;
    let cpu_out = classifier.classify_view(&input)?.remove(0);
    let max_diff = gpu_out.probabilities.iter().zip(&cpu_out.probabilities).fold(0f32, |m, (a, b)| m.max((a - b).abs()));

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        r#"{{"adapter":"{}","backend":"{:?}","driver":"{}","model":"{model}","image":"{image}","load_ms":{load_ms:.1},"first_ms":{first_ms:.1},"gpu":{},"cpu_candle":{},"max_abs_dprob_vs_cpu":{max_diff:.3e},"dispatches":{},"loadavg":"{}"}}"#,
        info.name,
        info.backend,
        info.driver_info,
        summary(gpu),
        summary(cpu),
        engine.num_dispatches(),
        load.trim()
    );
    Ok(())
}
