//! The hand-written backward pass against candle's autograd on the same batch.

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{Device, Tensor};
use skinlens_core::ModelConfig;

use super::loss::{loss, LossConfig};
use super::network::TrainableNetwork;

/// Random backbone tensors of the real shape (candle's CPU `randn` is unseeded: build once).
pub(super) fn random_tensors() -> Result<HashMap<String, Tensor>> {
    let config = ModelConfig::lite0();
    let mut tensors = HashMap::new();
    let names = super::network::layout_for_tests(&config);
    for (name, shape) in names {
        let positive = name.ends_with("running_var") || ["_bn0.weight", "_bn1.weight", "_bn2.weight"].iter().any(|s| name.ends_with(s));
        let t = if positive {
            Tensor::rand(0.5f32, 1.5, shape, &Device::Cpu)?
        } else {
            (Tensor::randn(0f32, 1.0, shape, &Device::Cpu)? * 0.3)?
        };
        tensors.insert(name, t);
    }
    Ok(tensors)
}

pub(super) fn network(tensors: &HashMap<String, Tensor>) -> Result<TrainableNetwork> {
    let classes: Vec<String> = (0..3).map(|i| i.to_string()).collect();
    TrainableNetwork::from_base(tensors, ModelConfig::lite0(), classes, 7, &Device::Cpu)
}

#[test]
fn manual_backward_matches_autograd() -> Result<()> {
    let size = 32;
    let n = 2;
    let rows = crate::data::batch::rows_per_image(size);
    let x = Tensor::randn(0f32, 1.0, (n * rows, 27), &Device::Cpu)?;
    let labels = vec![0usize, 2];
    let mask = Tensor::from_vec((0..n * 1280).map(|i| if i % 5 == 0 { 0.0f32 } else { 1.25 }).collect::<Vec<_>>(), (n, 1280), &Device::Cpu)?;
    let config = LossConfig { label_smoothing: 0.1, class_weights: Some(vec![1.0, 2.0, 0.5]), focal_gamma: Some(2.0) };
    let tensors = random_tensors()?;
    let mut a = network(&tensors)?;
    let mut b = network(&tensors)?;
    let logits = a.forward_train(&x, n, size, Some(&mask))?;
    let reference_loss = loss(&logits, &labels, &config)?;
    let reference = a.grads_by_name(&reference_loss.backward()?);
    let (manual_loss, _, manual) = b.forward_backward(&x, n, size, Some(&mask), |l| loss(l, &labels, &config))?;
    let (l1, l2) = (reference_loss.to_scalar::<f32>()?, manual_loss);
    let pa: Vec<f32> = logits.flatten_all()?.to_vec1()?;
    assert!((l1 - l2).abs() < 1e-4 * l1.abs().max(1.0), "loss {l1} vs {l2}, logits {pa:?}");
    assert_eq!(reference.len(), manual.len());
    for (name, r) in &reference {
        let m = &manual[name];
        let scale = r.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-3);
        let diff = (r - m)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff / scale < 2e-3, "{name}: max diff {diff} (scale {scale})");
    }
    // Both passes update the running statistics the same way.
    for (name, r) in &a.buffers {
        let diff = (r - &b.buffers[name])?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{name}: {diff}");
    }
    Ok(())
}
