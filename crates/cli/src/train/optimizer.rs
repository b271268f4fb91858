//! AdamW with its state in the open, so a checkpoint can carry it and `--resume` continues
//! exactly where training stopped (candle-nn's AdamW keeps its moments private).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use candle_core::{Tensor, Var};

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4 }
    }
}

pub struct AdamW {
    config: AdamWConfig,
    /// (name, parameter, decays): BatchNorm parameters and biases are not decayed.
    params: Vec<(String, Var, bool)>,
    first: BTreeMap<String, Tensor>,
    second: BTreeMap<String, Tensor>,
    pub step: u64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let mut first = BTreeMap::new();
        let mut second = BTreeMap::new();
        for (name, var) in &params {
            first.insert(name.clone(), var.zeros_like()?);
            second.insert(name.clone(), var.zeros_like()?);
        }
        let params = params
            .into_iter()
            .map(|(name, var)| {
                let decays = var.rank() > 1;
                (name, var, decays)
            })
            .collect();
        Ok(Self { config, params, first, second, step: 0 })
    }

    /// One update with learning rate `lr` from the gradients in `grads`. Plain loops over the
    /// values (candle's element-wise ops would make a dozen full passes per parameter).
    pub fn step(&mut self, grads: &HashMap<String, Tensor>, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let (bias1, bias2) = ((1.0 - c.beta1.powi(t)) as f32, (1.0 - c.beta2.powi(t)) as f32);
        let (b1, b2, eps, lr32) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32, lr as f32);
        for (name, var, decays) in &self.params {
            let Some(g) = grads.get(name) else { continue };
            let g: Vec<f32> = g.flatten_all()?.to_vec1()?;
            let mut theta: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
            let mut m: Vec<f32> = self.first[name].flatten_all()?.to_vec1()?;
            let mut v: Vec<f32> = self.second[name].flatten_all()?.to_vec1()?;
            let decay = if *decays { 1.0 - lr32 * c.weight_decay as f32 } else { 1.0 };
            for i in 0..theta.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let update = (m[i] / bias1) / ((v[i] / bias2).sqrt() + eps);
                theta[i] = theta[i] * decay - lr32 * update;
            }
            let (shape, device) = (var.shape().clone(), var.device().clone());
            var.set(&Tensor::from_vec(theta, &shape, &device)?)?;
            self.first.insert(name.clone(), Tensor::from_vec(m, &shape, &device)?);
            self.second.insert(name.clone(), Tensor::from_vec(v, &shape, &device)?);
        }
        Ok(())
    }

    /// Moments under `first.NAME` / `second.NAME`.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (k, t) in &self.first {
            out.push((format!("first.{k}"), t.to_device(&candle_core::Device::Cpu)?));
        }
        for (k, t) in &self.second {
            out.push((format!("second.{k}"), t.to_device(&candle_core::Device::Cpu)?));
        }
        Ok(out)
    }

    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (name, var, _) in &self.params {
            for (prefix, map) in [("first", &mut self.first), ("second", &mut self.second)] {
                let key = format!("{prefix}.{name}");
                let t = tensors.get(&key).with_context(|| format!("optimiser state lacks `{key}`"))?;
                anyhow::ensure!(t.dims() == var.dims(), "optimiser state `{key}` has the wrong shape");
                map.insert(name.clone(), t.to_device(var.device())?);
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Linear warm-up to `peak`, then cosine decay to zero at `total` steps.
pub fn learning_rate(step: u64, warmup: u64, total: u64, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}
