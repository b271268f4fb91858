//! Where the GPU time goes (natively): each dispatch of one image run alone, waited for, and
//! timed on the host, summed by kernel. A report for tuning, not a test.
//!
//! cargo run --release -p skinlens-gpu --example gpu_profile -- [MODEL]      env: ROUNDS (3)

use std::collections::BTreeMap;
use std::time::Instant;

use skinlens_core::FoldedNetwork;
use skinlens_gpu::{self_check_input, GpuEngine};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "models/skinlens.safetensors".into());
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let net = FoldedNetwork::from_safetensors(&std::fs::read(&model).map_err(|e| format!("{model}: {e}"))?)?;
    let engine = pollster::block_on(GpuEngine::new(&net))?;
    let ctx = engine.context();
    engine.write_input(&self_check_input(engine.input_size()))?;
    // One untimed pass compiles everything.
    pollster::block_on(engine.classify(&self_check_input(engine.input_size())))?;

    let mut per_dispatch = vec![f64::MAX; engine.dispatches().len()];
    for _ in 0..rounds {
        for (i, dispatch) in engine.dispatches().iter().enumerate() {
            let t = Instant::now();
            pollster::block_on(ctx.run(&[dispatch]))?;
            ctx.wait_idle()?;
            per_dispatch[i] = per_dispatch[i].min(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut by_kernel: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for (dispatch, ms) in engine.dispatches().iter().zip(&per_dispatch) {
        println!("{:>22} {ms:8.2} ms", dispatch.label());
        let kernel = dispatch.label().rsplit('.').next().unwrap_or("").to_string();
        let entry = by_kernel.entry(kernel).or_default();
        entry.0 += 1;
        entry.1 += ms;
    }
    println!("-- best of {rounds}, by kernel ({}):", ctx.adapter_name());
    for (kernel, (count, ms)) in &by_kernel {
        println!("{kernel:>22} {count:3}× {ms:8.2} ms");
    }
    println!("{:>22}      {:8.2} ms", "sum", per_dispatch.iter().sum::<f64>());
    Ok(())
}
