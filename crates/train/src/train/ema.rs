//! An exponential moving average of the weights (and BatchNorm running statistics), updated
//! after every optimiser step. Validation, `best.safetensors` and so export use the average;
//! training continues on the raw weights. The average is checkpointed beside them
//! (`last.ema.safetensors`), so `--resume` continues it exactly.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};

use super::network::TrainableNetwork;

pub struct Ema {
    /// The long-run decay; the decay used at step t is min(decay, (1 + t) / (10 + t)), so the
    /// first steps do not stay anchored to the ImageNet starting point.
    pub decay: f64,
    /// Averaged tensors by key name (parameters and running statistics), flat f32 on the CPU.
    values: BTreeMap<String, Vec<f32>>,
}

/// Every tensor of a network (parameters and buffers) as flat f32 vectors by name.
fn flat_tensors(net: &TrainableNetwork) -> Result<BTreeMap<String, Vec<f32>>> {
    net.named_tensors()?.into_iter().map(|(k, t)| Ok((k, t.flatten_all()?.to_vec1::<f32>()?))).collect()
}

impl Ema {
    /// Start the average at the network's current weights.
    pub fn new(net: &TrainableNetwork, decay: f64) -> Result<Self> {
        Ok(Self { decay, values: flat_tensors(net)? })
    }

    /// The decay applied at (1-based) optimiser step `step`.
    pub fn decay_at(&self, step: u64) -> f64 {
        self.decay.min((1.0 + step as f64) / (10.0 + step as f64))
    }

    /// average ← d·average + (1 − d)·current, after optimiser step `step`.
    pub fn update(&mut self, net: &TrainableNetwork, step: u64) -> Result<()> {
        let d = self.decay_at(step) as f32;
        for (name, current) in flat_tensors(net)? {
            let average = self.values.get_mut(&name).with_context(|| format!("the average lacks `{name}`"))?;
            anyhow::ensure!(average.len() == current.len(), "`{name}` changed size");
            for (a, c) in average.iter_mut().zip(&current) {
                *a = d * *a + (1.0 - d) * c;
            }
        }
        Ok(())
    }

    /// The averaged tensors under their key names, shaped like the network's.
    pub fn tensors(&self, net: &TrainableNetwork) -> Result<HashMap<String, Tensor>> {
        net.named_tensors()?
            .into_iter()
            .map(|(name, t)| {
                let values = self.values.get(&name).with_context(|| format!("the average lacks `{name}`"))?;
                Ok((name, Tensor::from_vec(values.clone(), t.shape(), &Device::Cpu)?))
            })
            .collect()
    }

    /// The averaged weights as a network of their own (what is validated and saved as best).
    pub fn network(&self, net: &TrainableNetwork) -> Result<TrainableNetwork> {
        TrainableNetwork::from_tensors(&self.tensors(net)?, net.config.clone(), net.classes.clone(), &Device::Cpu)
    }

    /// Safetensors bytes of the average (for `last.ema.safetensors`).
    pub fn to_safetensors(&self, net: &TrainableNetwork) -> Result<Vec<u8>> {
        let tensors: Vec<(String, Tensor)> = self.tensors(net)?.into_iter().collect();
        Ok(safetensors::serialize(tensors, None)?)
    }

    /// Read an average saved by `to_safetensors` for this network.
    pub fn load(bytes: &[u8], net: &TrainableNetwork, decay: f64) -> Result<Self> {
        let file = safetensors::SafeTensors::deserialize(bytes).context("not a safetensors file")?;
        let mut values = BTreeMap::new();
        for (name, t) in net.named_tensors()? {
            let view = file.tensor(&name).with_context(|| format!("the saved average lacks `{name}`"))?;
            anyhow::ensure!(view.shape() == t.dims() && view.dtype() == safetensors::Dtype::F32, "saved average `{name}` has the wrong shape or type");
            let data: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            values.insert(name, data);
        }
        Ok(Self { decay, values })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skinlens_core::model::ModelConfig;

    fn tiny_network(fill: f32) -> TrainableNetwork {
        let mut config = ModelConfig::lite0();
        config.blocks.truncate(2);
        let classes: Vec<String> = (0..3).map(|i| format!("c{i}")).collect();
        let mut tensors = HashMap::new();
        for (name, shape) in super::super::network::layout_for_tests(&config) {
            let n: usize = shape.iter().product();
            tensors.insert(name, Tensor::from_vec(vec![fill; n], shape, &Device::Cpu).unwrap());
        }
        tensors.insert("_fc.weight".into(), Tensor::from_vec(vec![fill; 3 * config.head_channels], (3, config.head_channels), &Device::Cpu).unwrap());
        tensors.insert("_fc.bias".into(), Tensor::from_vec(vec![fill; 3], 3, &Device::Cpu).unwrap());
        TrainableNetwork::from_tensors(&tensors, config, classes, &Device::Cpu).unwrap()
    }

    fn value(net: &TrainableNetwork, name: &str) -> f32 {
        let t = net.params.get(name).map(|v| v.as_tensor().clone()).unwrap_or_else(|| net.buffers[name].clone());
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
    }

    #[test]
    fn the_average_follows_the_weights_at_the_warmed_up_decay() {
        let start = tiny_network(1.0);
        let mut ema = Ema::new(&start, 0.9).unwrap();
        assert!((ema.decay_at(1) - 2.0 / 11.0).abs() < 1e-12, "warm-up decay (1+t)/(10+t)");
        assert_eq!(ema.decay_at(1000), 0.9);
        let moved = tiny_network(3.0);
        ema.update(&moved, 1).unwrap();
        ema.update(&moved, 1000).unwrap();
        // After step 1: 2/11·1 + 9/11·3; after step 1000: 0.9·that + 0.1·3.
        let after_one = 2.0 / 11.0 + 9.0 / 11.0 * 3.0;
        let expected = 0.9 * after_one + 0.1 * 3.0;
        let averaged = ema.network(&moved).unwrap();
        for name in ["_conv_stem.weight", "_blocks.1._bn1.running_var", "_fc.bias", "_bn1.weight"] {
            let got = value(&averaged, name);
            assert!((got - expected as f32).abs() < 1e-5, "{name}: {got} vs {expected}");
            assert_eq!(value(&moved, name), 3.0, "the raw weights stay as trained");
        }
        // Saved and read back, the average is the same bit for bit.
        let bytes = ema.to_safetensors(&moved).unwrap();
        let back = Ema::load(&bytes, &moved, 0.9).unwrap();
        assert_eq!(back.values, ema.values);
    }
}
