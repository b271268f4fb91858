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
    /// The backbone's learning rate as a fraction of the classifier's (`_fc`), which gets the
    /// scheduled rate itself.
    #[serde(default = "one")]
    pub backbone_lr_scale: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4, backbone_lr_scale: 1.0 }
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
        let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
        for (name, var, decays) in &self.params {
            let Some(g) = grads.get(name) else { continue };
            let lr32 = if name.starts_with("_fc.") { lr } else { lr * c.backbone_lr_scale } as f32;
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_backbone_learns_at_its_share_of_the_rate() {
        let var = |v: f32| Var::from_tensor(&Tensor::from_vec(vec![v; 4], (2, 2), &Device::Cpu).unwrap()).unwrap();
        let (head, backbone) = (var(1.0), var(1.0));
        let config = AdamWConfig { weight_decay: 0.0, backbone_lr_scale: 0.25, ..Default::default() };
        let mut adam = AdamW::new(vec![("_fc.weight".into(), head.clone()), ("_conv_head.weight".into(), backbone.clone())], config).unwrap();
        let g = Tensor::from_vec(vec![0.5f32; 4], (2, 2), &Device::Cpu).unwrap();
        adam.step(&HashMap::from([("_fc.weight".to_string(), g.clone()), ("_conv_head.weight".to_string(), g)]), 0.1).unwrap();
        let moved = |v: &Var| 1.0 - v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        // Adam's first step moves every value by lr (m̂/√v̂ = 1): 0.1 for the head, 0.025 for the backbone.
        assert!((moved(&head) - 0.1).abs() < 1e-5, "head moved {}", moved(&head));
        assert!((moved(&backbone) - 0.025).abs() < 1e-5, "backbone moved {}", moved(&backbone));
    }
}
