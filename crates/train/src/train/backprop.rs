//! The CPU training step with a hand-written backward pass.
//!
//! candle's autograd adds, for every edge of the graph, a zero-filled gradient buffer and an
//! addition into it, and runs its element-wise ops on a spinning thread pool; on a network of
//! 130 large activations that made the backward pass five times the forward one. The layers
//! here are few and their gradients textbook, so the step keeps what each layer needs and
//! walks back through them directly: matrix multiplies (gemm via candle), the fused BatchNorm
//! and the depthwise kernels of `ops`. The candle-autograd forward in `network.rs` stays as the
//! reference this is tested against, and as the path for non-CPU devices.

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::{Tensor, Var};

use super::network::TrainableNetwork;
use super::ops::batch_norm::{backward_slices, forward_slices, BatchStats};
use super::ops::depthwise::{with_cpu_f32, DepthwiseGeometry};

/// What BatchNorm's backward needs (its input and the batch statistics), and its output, which
/// the next layer's backward needs.
struct SavedNorm {
    prefix: String,
    input: Tensor,
    output: Tensor,
    stats: BatchStats,
    relu6: bool,
}

struct SavedBlock {
    index: usize,
    input: Tensor,
    expand: Option<SavedNorm>,
    depthwise_input: Tensor,
    geometry: DepthwiseGeometry,
    depthwise_norm: SavedNorm,
    project_norm: SavedNorm,
    residual: bool,
    batch: usize,
}

/// Time spent per layer kind when SKINLENS_PROFILE is set (printed by the bench).
pub static PROFILE: std::sync::Mutex<Vec<(&'static str, f64)>> = std::sync::Mutex::new(Vec::new());

fn timed<R>(what: &'static str, f: impl FnOnce() -> R) -> R {
    if std::env::var_os("SKINLENS_PROFILE").is_none() {
        return f();
    }
    let t = std::time::Instant::now();
    let r = f();
    let dt = t.elapsed().as_secs_f64();
    let mut p = PROFILE.lock().unwrap_or_else(|e| e.into_inner());
    match p.iter_mut().find(|(k, _)| *k == what) {
        Some(e) => e.1 += dt,
        None => p.push((what, dt)),
    }
    r
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

impl TrainableNetwork {
    fn weight(&self, name: &str) -> Result<Tensor> {
        Ok(self.params.get(name).with_context(|| format!("no parameter `{name}`"))?.as_tensor().detach())
    }

    /// `[C_out, C_in]` view of a 1×1 (or stem) conv weight.
    fn weight_2d(&self, name: &str) -> Result<Tensor> {
        let w = self.weight(name)?;
        let c_out = w.dim(0)?;
        let rest = w.elem_count() / c_out;
        Ok(w.reshape((c_out, rest))?)
    }

    fn norm_forward(&mut self, prefix: &str, x: Tensor, relu6: bool) -> Result<(Tensor, SavedNorm)> {
        let gamma = to_vec(&self.weight(&format!("{prefix}.weight"))?)?;
        let beta = to_vec(&self.weight(&format!("{prefix}.bias"))?)?;
        let (y, stats) = timed("bn forward", || with_cpu_f32(&x, |xs| Ok(forward_slices(xs, &gamma, &beta, relu6))))?;
        self.update_running_stats(prefix, &stats)?;
        let y = Tensor::from_vec(y, x.shape(), x.device())?;
        Ok((y.clone(), SavedNorm { prefix: prefix.to_string(), input: x, output: y, stats, relu6 }))
    }

    fn update_running_stats(&mut self, prefix: &str, stats: &BatchStats) -> Result<()> {
        let unbiased = stats.rows as f32 / (stats.rows.max(2) - 1) as f32;
        let momentum = super::network::BN_MOMENTUM as f32;
        for (leaf, batch, factor) in [("running_mean", &stats.mean, 1.0), ("running_var", &stats.variance, unbiased)] {
            let key = format!("{prefix}.{leaf}");
            let old = to_vec(self.buffers.get(&key).with_context(|| format!("no buffer `{key}`"))?)?;
            let new: Vec<f32> = old.iter().zip(batch).map(|(o, b)| (1.0 - momentum) * o + momentum * b * factor).collect();
            let n = new.len();
            self.buffers.insert(key, Tensor::from_vec(new, n, &self.device)?);
        }
        Ok(())
    }

    fn norm_backward(&self, saved: &SavedNorm, grad: &Tensor, grads: &mut HashMap<String, Tensor>) -> Result<Tensor> {
        let gamma = to_vec(&self.weight(&format!("{}.weight", saved.prefix))?)?;
        let beta = to_vec(&self.weight(&format!("{}.bias", saved.prefix))?)?;
        let (dx, dgamma, dbeta) = timed("bn backward", || {
            with_cpu_f32(&saved.input, |x| with_cpu_f32(grad, |g| Ok(backward_slices(x, g, &gamma, &beta, &saved.stats, saved.relu6))))
        })?;
        let c = gamma.len();
        grads.insert(format!("{}.weight", saved.prefix), Tensor::from_vec(dgamma, c, &self.device)?);
        grads.insert(format!("{}.bias", saved.prefix), Tensor::from_vec(dbeta, c, &self.device)?);
        Ok(Tensor::from_vec(dx, saved.input.shape(), &self.device)?)
    }

    /// Gradient of `y = x · Wᵀ` with respect to `x`, recording the weight's gradient.
    fn pointwise_backward(&self, name: &str, x: &Tensor, grad_y: &Tensor, grads: &mut HashMap<String, Tensor>) -> Result<Tensor> {
        let w = self.weight(&format!("{name}.weight"))?;
        let w2 = w.reshape((w.dim(0)?, w.elem_count() / w.dim(0)?))?;
        let gw = timed("matmul backward weight", || grad_y.t()?.matmul(x))?;
        grads.insert(format!("{name}.weight"), gw.reshape(w.shape())?);
        Ok(timed("matmul backward input", || grad_y.matmul(&w2))?)
    }

    /// One training step's forward and backward pass. `loss_of` turns logits into the scalar
    /// loss (candle autograd on the small `[N, classes]` tensor gives its gradient). Returns
    /// the loss, the logits and the gradient of every parameter by key name.
    pub fn forward_backward(
        &mut self,
        stem_columns: &Tensor,
        n: usize,
        size: usize,
        dropout_keep: Option<&Tensor>,
        loss_of: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<(f32, Tensor, HashMap<String, Tensor>)> {
        let stem_size = skinlens_core::nn::same_output(size, skinlens_core::model::STEM_STRIDE);
        anyhow::ensure!(stem_columns.dims() == [n * stem_size * stem_size, 27], "stem input is {:?}", stem_columns.dims());
        // Forward, keeping what the backward pass needs.
        let z = stem_columns.matmul(&self.weight_2d("_conv_stem.weight")?.t()?)?;
        let (mut x, stem_norm) = self.norm_forward("_bn0", z, true)?;
        let (mut h, mut w) = (stem_size, stem_size);
        let mut saved_blocks = Vec::with_capacity(self.config.blocks.len());
        for (i, spec) in self.config.blocks.clone().into_iter().enumerate() {
            let p = format!("_blocks.{i}");
            let cmid = spec.mid_channels();
            let input = x.clone();
            let (depthwise_input, expand) = if spec.has_expand() {
                let we = self.weight_2d(&format!("{p}._expand_conv.weight"))?;
                let z = timed("matmul forward", || x.matmul(&we.t()?))?;
                let (a, saved) = self.norm_forward(&format!("{p}._bn0"), z, true)?;
                (a, Some(saved))
            } else {
                (x.clone(), None)
            };
            let geometry = DepthwiseGeometry { height: h, width: w, channels: cmid, kernel: spec.kernel, stride: spec.stride };
            let dw_weight = to_vec(&self.weight(&format!("{p}._depthwise_conv.weight"))?)?;
            let z = timed("depthwise forward", || with_cpu_f32(&depthwise_input, |xs| Ok(geometry.forward_cpu(xs, &dw_weight, n))))?;
            let (oh, ow) = geometry.output();
            let z = Tensor::from_vec(z, (n * oh * ow, cmid), &self.device)?;
            let (a, depthwise_norm) = self.norm_forward(&format!("{p}._bn1"), z, true)?;
            let wp = self.weight_2d(&format!("{p}._project_conv.weight"))?;
            let z = timed("matmul forward", || a.matmul(&wp.t()?))?;
            let (mut out, project_norm) = self.norm_forward(&format!("{p}._bn2"), z, false)?;
            if spec.has_residual() {
                out = timed("residual", || out + &input)?;
            }
            saved_blocks.push(SavedBlock { index: i, input, expand, depthwise_input, geometry, depthwise_norm, project_norm, residual: spec.has_residual(), batch: n });
            x = out;
            (h, w) = (oh, ow);
        }
        let head_input = x;
        let z = head_input.matmul(&self.weight_2d("_conv_head.weight")?.t()?)?;
        let (head, head_norm) = self.norm_forward("_bn1", z, true)?;
        let c_head = self.config.head_channels;
        let pooled = head.reshape((n, h * w, c_head))?.mean(1)?;
        let dropped = match dropout_keep {
            Some(mask) => pooled.mul(mask)?,
            None => pooled,
        };
        let fc_w = self.weight("_fc.weight")?;
        let logits = dropped.matmul(&fc_w.t()?)?.broadcast_add(&self.weight("_fc.bias")?)?;

        // The loss and its gradient with respect to the logits.
        let logits_var = Var::from_tensor(&logits)?;
        let loss = loss_of(logits_var.as_tensor())?;
        let loss_value = loss.to_scalar::<f32>()?;
        let grad_logits = loss.backward()?.get(&logits_var).context("the loss does not depend on the logits")?.clone();

        // Backward.
        let mut grads = HashMap::new();
        grads.insert("_fc.weight".to_string(), grad_logits.t()?.matmul(&dropped)?);
        grads.insert("_fc.bias".to_string(), grad_logits.sum(0)?);
        let mut grad_pooled = grad_logits.matmul(&fc_w)?;
        if let Some(mask) = dropout_keep {
            grad_pooled = grad_pooled.mul(mask)?;
        }
        // Mean pooling spreads each gradient evenly over the h·w positions.
        let grad_head = (grad_pooled.unsqueeze(1)?.broadcast_as((n, h * w, c_head))? / (h * w) as f64)?.reshape((n * h * w, c_head))?.contiguous()?;
        let grad_z = self.norm_backward(&head_norm, &grad_head, &mut grads)?;
        let mut grad_x = self.pointwise_backward("_conv_head", &head_input, &grad_z, &mut grads)?;
        for saved in saved_blocks.iter().rev() {
            let p = format!("_blocks.{}", saved.index);
            let grad_out = grad_x;
            let grad_z = self.norm_backward(&saved.project_norm, &grad_out, &mut grads)?;
            let grad_a = self.pointwise_backward(&format!("{p}._project_conv"), &saved.depthwise_norm.output, &grad_z, &mut grads)?;
            let grad_z = self.norm_backward(&saved.depthwise_norm, &grad_a, &mut grads)?;
            let g = saved.geometry;
            let dw_name = format!("{p}._depthwise_conv.weight");
            let dw_weight = self.weight(&dw_name)?;
            let dw_values = to_vec(&dw_weight)?;
            let grad_in = timed("depthwise backward input", || with_cpu_f32(&grad_z, |gz| Ok(g.grad_input_cpu(gz, &dw_values, saved.batch))))?;
            let grad_w = timed("depthwise backward weight", || with_cpu_f32(&grad_z, |gz| with_cpu_f32(&saved.depthwise_input, |xin| Ok(g.grad_weight_cpu(gz, xin, saved.batch)))))?;
            grads.insert(dw_name, Tensor::from_vec(grad_w, dw_weight.shape(), &self.device)?);
            let grad_in = Tensor::from_vec(grad_in, saved.depthwise_input.shape(), &self.device)?;
            let grad_block_input = match &saved.expand {
                Some(norm) => {
                    let grad_z = self.norm_backward(norm, &grad_in, &mut grads)?;
                    self.pointwise_backward(&format!("{p}._expand_conv"), &saved.input, &grad_z, &mut grads)?
                }
                None => grad_in,
            };
            grad_x = if saved.residual { (grad_block_input + grad_out)? } else { grad_block_input };
        }
        let grad_z = self.norm_backward(&stem_norm, &grad_x, &mut grads)?;
        let stem_w = self.weight("_conv_stem.weight")?;
        grads.insert("_conv_stem.weight".to_string(), grad_z.t()?.matmul(stem_columns)?.reshape(stem_w.shape())?);
        Ok((loss_value, logits, grads))
    }
}
