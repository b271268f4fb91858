//! Weights: read from safetensors, checked tensor by tensor, BatchNorm folded once at load.
//!
//! Two layouts are accepted, both with the key names of the PyPI `efficientnet_lite_pytorch`
//! state dict (`_conv_stem`, `_blocks.N._expand_conv`, …):
//! * **raw** — convolutions without bias plus their BatchNorm tensors (`_bn0.weight`, …), as the
//!   ImageNet reference and the trainer's checkpoints store them;
//! * **folded** — each convolution with `.weight` and `.bias`, BatchNorm already folded in,
//!   metadata `skinlens.batchnorm = folded` (what `skinlens export` writes; f16 or f32).
//!
//! The class order travels in the metadata (`skinlens.classes = akiec,bcc,…`); a model without
//! it is read in alphabetical HAM10000 order when it has seven outputs.

use std::collections::HashMap;

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;

use super::{BlockSpec, ModelConfig};
use crate::labels::HAM10000_CLASSES;
use crate::nn::BatchNormParams;
use crate::tta::TestTimeAugmentation;
use crate::{Error, Result};

/// Metadata keys skinlens reads and writes.
pub mod keys {
    pub const ARCH: &str = "skinlens.arch";
    pub const CLASSES: &str = "skinlens.classes";
    pub const BATCHNORM: &str = "skinlens.batchnorm";
    pub const UNTRAINED: &str = "skinlens.untrained";
    pub const TEMPERATURE: &str = "skinlens.temperature";
    pub const INPUT_SIZE: &str = "skinlens.input_size";
    pub const TTA: &str = "skinlens.tta";
}

/// A convolution with BatchNorm folded in.
#[derive(Debug, Clone)]
pub struct FoldedConv {
    /// `[C_out, C_in / groups, k, k]`.
    pub weight: Tensor,
    /// `[C_out]`.
    pub bias: Tensor,
}

#[derive(Debug, Clone)]
pub struct FoldedBlock {
    pub spec: BlockSpec,
    pub expand: Option<FoldedConv>,
    pub depthwise: FoldedConv,
    pub project: FoldedConv,
}

/// What a model file says about itself beyond its tensors.
#[derive(Debug, Clone)]
pub struct ModelMetadata {
    pub classes: Vec<String>,
    /// A head that was never trained (random init): every UI must say so.
    pub untrained: bool,
    /// Softmax temperature fitted on validation (1.0 when not calibrated).
    pub temperature: f32,
    /// The views every answer averages over (chosen on validation at export).
    pub tta: TestTimeAugmentation,
    /// Every metadata entry of the file, for model cards.
    pub raw: HashMap<String, String>,
}

/// The whole network as plain folded tensors: what the CPU model and the GPU engine build from.
#[derive(Debug, Clone)]
pub struct FoldedNetwork {
    pub config: ModelConfig,
    pub metadata: ModelMetadata,
    pub stem: FoldedConv,
    pub blocks: Vec<FoldedBlock>,
    pub head: FoldedConv,
    /// `[classes, head_channels]`.
    pub fc_weight: Tensor,
    /// `[classes]`.
    pub fc_bias: Tensor,
}

/// Typed, shape-checked access to the tensors of one safetensors file.
struct TensorSource<'a> {
    file: SafeTensors<'a>,
    device: Device,
}

impl TensorSource<'_> {
    fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_ok()
    }

    fn get(&self, name: &str, expected: &[usize]) -> Result<Tensor> {
        let view = self.file.tensor(name).map_err(|_| Error::MissingTensor {
            name: name.into(),
            expected: expected.to_vec(),
        })?;
        if view.shape() != expected {
            return Err(Error::TensorShape {
                name: name.into(),
                found: view.shape().to_vec(),
                expected: expected.to_vec(),
            });
        }
        Ok(view.load(&self.device)?.to_dtype(DType::F32)?)
    }

    fn batch_norm(&self, prefix: &str, channels: usize) -> Result<BatchNormParams> {
        let get = |leaf: &str| self.get(&format!("{prefix}.{leaf}"), &[channels]);
        Ok(BatchNormParams {
            weight: get("weight")?,
            bias: get("bias")?,
            running_mean: get("running_mean")?,
            running_var: get("running_var")?,
        })
    }

    /// A convolution `conv` followed by BatchNorm `bn` (raw) or its folded form.
    fn conv(&self, conv: &str, bn: &str, shape: [usize; 4], folded: bool) -> Result<FoldedConv> {
        let weight = self.get(&format!("{conv}.weight"), &shape)?;
        if folded {
            let bias = self.get(&format!("{conv}.bias"), &shape[..1])?;
            return Ok(FoldedConv { weight, bias });
        }
        let (weight, bias) = self.batch_norm(bn, shape[0])?.fold_into(&weight)?;
        Ok(FoldedConv { weight, bias })
    }
}

impl FoldedNetwork {
    /// Read a model from safetensors bytes (raw or folded, f32 or f16).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::Weights(format!("not a safetensors file: {e}")))?;
        let raw: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Weights(format!("not a safetensors file: {e}")))?;
        let source = TensorSource { file, device: Device::Cpu };

        let arch = raw.get(keys::ARCH).map(String::as_str).unwrap_or("efficientnet-lite0");
        let mut config = ModelConfig::from_name(arch)
            .ok_or_else(|| Error::Weights(format!("unknown architecture `{arch}` in metadata")))?;
        if let Some(size) = raw.get(keys::INPUT_SIZE) {
            config.input_size = size
                .parse()
                .map_err(|_| Error::Weights(format!("bad {}: `{size}`", keys::INPUT_SIZE)))?;
        }
        let folded = raw.get(keys::BATCHNORM).map(String::as_str) == Some("folded")
            || (!source.has("_bn0.weight") && source.has("_conv_stem.bias"));

        let classes = Self::class_names(&raw, &source)?;
        let metadata = ModelMetadata {
            untrained: raw.get(keys::UNTRAINED).is_some_and(|v| v == "true"),
            temperature: match raw.get(keys::TEMPERATURE) {
                Some(t) => t
                    .parse()
                    .ok()
                    .filter(|t: &f32| t.is_finite() && *t > 0.0)
                    .ok_or_else(|| Error::Weights(format!("bad {}: `{t}`", keys::TEMPERATURE)))?,
                None => 1.0,
            },
            tta: match raw.get(keys::TTA) {
                Some(v) => TestTimeAugmentation::parse(v)
                    .ok_or_else(|| Error::Weights(format!("bad {}: `{v}` (expected none or flips)", keys::TTA)))?,
                None => TestTimeAugmentation::None,
            },
            classes,
            raw,
        };

        let stem_c = config.stem_channels;
        let stem = source.conv("_conv_stem", "_bn0", [stem_c, 3, 3, 3], folded)?;
        let mut blocks = Vec::with_capacity(config.blocks.len());
        for (i, spec) in config.blocks.iter().enumerate() {
            let p = format!("_blocks.{i}");
            let (cin, cmid, cout, k) = (spec.in_channels, spec.mid_channels(), spec.out_channels, spec.kernel);
            let expand = spec
                .has_expand()
                .then(|| source.conv(&format!("{p}._expand_conv"), &format!("{p}._bn0"), [cmid, cin, 1, 1], folded))
                .transpose()?;
            let depthwise = source.conv(&format!("{p}._depthwise_conv"), &format!("{p}._bn1"), [cmid, 1, k, k], folded)?;
            let project = source.conv(&format!("{p}._project_conv"), &format!("{p}._bn2"), [cout, cmid, 1, 1], folded)?;
            blocks.push(FoldedBlock { spec: *spec, expand, depthwise, project });
        }
        let last = config.blocks.last().map_or(stem_c, |b| b.out_channels);
        let head = source.conv("_conv_head", "_bn1", [config.head_channels, last, 1, 1], folded)?;
        let n = metadata.classes.len();
        let fc_weight = source.get("_fc.weight", &[n, config.head_channels])?;
        let fc_bias = source.get("_fc.bias", &[n])?;
        Ok(Self { config, metadata, stem, blocks, head, fc_weight, fc_bias })
    }

    fn class_names(raw: &HashMap<String, String>, source: &TensorSource) -> Result<Vec<String>> {
        if let Some(list) = raw.get(keys::CLASSES) {
            let classes: Vec<String> = list.split(',').map(|c| c.trim().to_string()).collect();
            if classes.iter().any(String::is_empty) {
                return Err(Error::Weights(format!("bad {}: `{list}`", keys::CLASSES)));
            }
            return Ok(classes);
        }
        let n = source
            .file
            .tensor("_fc.bias")
            .map_err(|_| Error::MissingTensor { name: "_fc.bias".into(), expected: vec![HAM10000_CLASSES.len()] })?
            .shape()
            .first()
            .copied()
            .unwrap_or(0);
        Ok(if n == HAM10000_CLASSES.len() {
            HAM10000_CLASSES.iter().map(|c| c.to_string()).collect()
        } else {
            (0..n).map(|i| i.to_string()).collect()
        })
    }

    pub fn num_classes(&self) -> usize {
        self.metadata.classes.len()
    }

    /// Every folded tensor under its key name, in network order.
    pub fn named_tensors(&self) -> Vec<(String, &Tensor)> {
        fn conv<'a>(out: &mut Vec<(String, &'a Tensor)>, name: &str, c: &'a FoldedConv) {
            out.push((format!("{name}.weight"), &c.weight));
            out.push((format!("{name}.bias"), &c.bias));
        }
        let mut out = Vec::new();
        conv(&mut out, "_conv_stem", &self.stem);
        for (i, b) in self.blocks.iter().enumerate() {
            if let Some(e) = &b.expand {
                conv(&mut out, &format!("_blocks.{i}._expand_conv"), e);
            }
            conv(&mut out, &format!("_blocks.{i}._depthwise_conv"), &b.depthwise);
            conv(&mut out, &format!("_blocks.{i}._project_conv"), &b.project);
        }
        conv(&mut out, "_conv_head", &self.head);
        out.push(("_fc.weight".into(), &self.fc_weight));
        out.push(("_fc.bias".into(), &self.fc_bias));
        out
    }

    /// Serialise as a folded model (what `skinlens export` ships), in f16 or f32, with metadata.
    pub fn to_safetensors(&self, dtype: DType, extra: &HashMap<String, String>) -> Result<Vec<u8>> {
        let mut info = self.metadata.raw.clone();
        info.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        info.insert(keys::ARCH.into(), self.config.name.clone());
        info.insert(keys::INPUT_SIZE.into(), self.config.input_size.to_string());
        info.insert(keys::CLASSES.into(), self.metadata.classes.join(","));
        info.insert(keys::BATCHNORM.into(), "folded".into());
        info.insert(keys::TEMPERATURE.into(), self.metadata.temperature.to_string());
        info.insert(keys::UNTRAINED.into(), self.metadata.untrained.to_string());
        info.insert(keys::TTA.into(), self.metadata.tta.as_str().into());
        let tensors = self
            .named_tensors()
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_dtype(dtype)?)))
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(tensors, Some(info)).map_err(|e| Error::Weights(e.to_string()))
    }
}
