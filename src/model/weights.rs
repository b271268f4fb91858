//! Weights: read from safetensors, checked tensor by tensor, BatchNorm folded once at load.
//!
//! Two layouts are accepted, both with the key names of the PyPI `efficientnet_lite_pytorch`
//! state dict (`_conv_stem`, `_blocks.N._expand_conv`, …):
//! * **raw** — convolutions without bias plus their BatchNorm tensors (`_bn0.weight`, …), as the
//!   ImageNet reference and the trainer's checkpoints store them;
//! * **folded** — each convolution with `.weight` and `.bias`, BatchNorm already folded in,
//!   metadata `skinlens.batchnorm = folded` (what `skinlens export` writes; f32, f16, or int8
//!   weights with a scale per run of inputs: see `storage`).
//!
//! The class order travels in the metadata (`skinlens.classes = akiec,bcc,…`); a model without
//! it is read in alphabetical HAM10000 order when it has seven outputs.

use std::collections::HashMap;

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;

use super::storage::{dequantise, StoredTensor, SCALE_SUFFIX};
use super::{BlockSpec, ModelConfig, Storage};
use crate::labels::HAM10000_CLASSES;
use crate::nn::BatchNormParams;
use crate::preprocess::ColourConstancy;
use crate::tta::TestTimeAugmentation;
use crate::{Error, Result};

/// Metadata keys skinlens reads and writes.
///
/// A file without [`MEMBERS`] holds one network: every key below applies to it and its tensors
/// carry the reference names. A file with [`MEMBERS`] holds several (see `model::members`):
/// [`CLASSES`], [`BATCHNORM`], [`UNTRAINED`] and [`TTA`] stay file-wide, while the member keys
/// ([`ARCH`], [`INPUT_SIZE`], [`TEMPERATURE`], [`COLOUR_CONSTANCY`], [`TRAIN_SIZE`], [`WEIGHT`]) are
/// written once per member as [`member`]`(name, key)`, and the member's tensors are prefixed `name/`.
pub mod keys {
    /// `efficientnet-lite0` …; `ensemble` on a multi-member file.
    pub const ARCH: &str = "skinlens.arch";
    pub const CLASSES: &str = "skinlens.classes";
    pub const BATCHNORM: &str = "skinlens.batchnorm";
    pub const UNTRAINED: &str = "skinlens.untrained";
    pub const TEMPERATURE: &str = "skinlens.temperature";
    /// The size the network runs at (its declared test-time size, which may differ from
    /// [`TRAIN_SIZE`]: the FixRes effect).
    pub const INPUT_SIZE: &str = "skinlens.input_size";
    /// The views every answer averages over: `none` or `flips`.
    pub const TTA: &str = "skinlens.tta";
    /// `none` (the default) or `shades_of_gray:P`; see `preprocess::colour`.
    pub const COLOUR_CONSTANCY: &str = "skinlens.colour_constancy";
    /// The size the network was trained at (informative; written when known).
    pub const TRAIN_SIZE: &str = "skinlens.train_size";
    /// A member's share of the average (multi-member files only; the shares sum to 1).
    pub const WEIGHT: &str = "skinlens.weight";
    /// Member names in order, comma-separated; the first one's features feed the activation map.
    pub const MEMBERS: &str = "skinlens.members";
    /// [`ARCH`] of a multi-member file (so that older readers fail on it by name).
    pub const ENSEMBLE_ARCH: &str = "ensemble";
    /// The keys that describe one network rather than the whole file.
    pub const PER_MEMBER: [&str; 6] = [ARCH, INPUT_SIZE, TEMPERATURE, COLOUR_CONSTANCY, TRAIN_SIZE, WEIGHT];
    /// Keys of one member begin with this, then the member's name.
    pub const MEMBER_PREFIX: &str = "skinlens.member.";

    /// The key under which member `name` stores `key` (e.g. `skinlens.member.a.input_size`).
    pub fn member(name: &str, key: &str) -> String {
        format!("{MEMBER_PREFIX}{name}.{}", key.strip_prefix("skinlens.").unwrap_or(key))
    }
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
    /// Applied to the centre square before the resize (off unless the file says so).
    pub colour_constancy: ColourConstancy,
    /// The size the network was trained at, when the file says (the size it runs at is
    /// `ModelConfig::input_size`).
    pub train_size: Option<usize>,
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

/// Typed, shape-checked access to the tensors of one safetensors file (of one member's part of
/// it, when `prefix` is `name/`).
pub(crate) struct TensorSource<'a> {
    pub(crate) file: SafeTensors<'a>,
    pub(crate) prefix: String,
}

impl TensorSource<'_> {
    fn has(&self, name: &str) -> bool {
        self.file.tensor(&format!("{}{name}", self.prefix)).is_ok()
    }

    fn get(&self, name: &str, expected: &[usize]) -> Result<Tensor> {
        let name = &format!("{}{name}", self.prefix);
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
        if view.dtype() == safetensors::Dtype::I8 {
            let scale_name = format!("{name}{SCALE_SUFFIX}");
            let scales = self.file.tensor(&scale_name).map_err(|_| Error::MissingTensor { name: scale_name.clone(), expected: expected[..1].to_vec() })?;
            // [C_out] (one scale a row) or [C_out, runs].
            let groups = match scales.shape() {
                [rows] if *rows == expected[0] => 1,
                [rows, groups] if *rows == expected[0] => *groups,
                found => return Err(Error::TensorShape { name: scale_name, found: found.to_vec(), expected: vec![expected[0], 1] }),
            };
            if scales.dtype() != safetensors::Dtype::F32 {
                return Err(Error::Weights(format!("`{scale_name}`: scales must be f32")));
            }
            let scales = scales.load(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
            return dequantise(&view, &scales, groups, name);
        }
        Ok(view.load(&Device::Cpu)?.to_dtype(DType::F32)?)
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

/// Where one network's metadata lives: the file's own keys, or a member's.
pub(crate) struct MetadataView<'a> {
    pub(crate) raw: &'a HashMap<String, String>,
    pub(crate) member: Option<&'a str>,
}

impl MetadataView<'_> {
    /// A member key (arch, input size, temperature, colour constancy, …) for this network.
    fn member_key(&self, key: &str) -> String {
        match self.member {
            Some(name) => keys::member(name, key),
            None => key.to_string(),
        }
    }

    fn get(&self, key: &str) -> Option<(String, &str)> {
        let key = self.member_key(key);
        let value = self.raw.get(&key)?;
        Some((key, value.as_str()))
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<Option<T>> {
        self.get(key)
            .map(|(key, v)| v.trim().parse().map_err(|_| Error::Weights(format!("bad {key}: `{v}` (expected {what})"))))
            .transpose()
    }
}

/// Read the safetensors header: the parsed file and its metadata.
pub(crate) fn open(bytes: &[u8]) -> Result<(SafeTensors<'_>, HashMap<String, String>)> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| Error::Weights(format!("not a safetensors file: {e}")))?;
    let raw: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    let file = SafeTensors::deserialize(bytes).map_err(|e| Error::Weights(format!("not a safetensors file: {e}")))?;
    Ok((file, raw))
}

impl FoldedNetwork {
    /// Read a one-network model from safetensors bytes (raw or folded, f32 or f16). A file with
    /// several members is refused by name: read it with `ModelFile::from_safetensors`.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let (file, raw) = open(bytes)?;
        if let Some(members) = raw.get(keys::MEMBERS) {
            return Err(Error::Weights(format!(
                "this file holds several networks ({} = `{members}`); load it as a whole model (ModelFile / Classifier)",
                keys::MEMBERS
            )));
        }
        let source = TensorSource { file, prefix: String::new() };
        Self::read(&source, &MetadataView { raw: &raw, member: None })
    }

    /// One network: its tensors from `source`, its metadata from `meta`.
    pub(crate) fn read(source: &TensorSource, meta: &MetadataView) -> Result<Self> {
        let raw = meta.raw;
        let (arch_key, arch) = meta.get(keys::ARCH).unwrap_or_else(|| (meta.member_key(keys::ARCH), "efficientnet-lite0"));
        let mut config = ModelConfig::from_name(arch)
            .ok_or_else(|| Error::Weights(format!("unknown architecture `{arch}` in {arch_key}")))?;
        if let Some(size) = meta.parse::<usize>(keys::INPUT_SIZE, "a size in pixels")? {
            if !(16..=1024).contains(&size) {
                return Err(Error::Weights(format!("{}: {size} px is outside 16–1024", meta.member_key(keys::INPUT_SIZE))));
            }
            config.input_size = size;
        }
        let folded = raw.get(keys::BATCHNORM).map(String::as_str) == Some("folded")
            || (!source.has("_bn0.weight") && source.has("_conv_stem.bias"));

        let classes = Self::class_names(raw, source)?;
        let metadata = ModelMetadata {
            untrained: raw.get(keys::UNTRAINED).is_some_and(|v| v == "true"),
            temperature: match meta.get(keys::TEMPERATURE) {
                Some((key, t)) => t
                    .parse()
                    .ok()
                    .filter(|t: &f32| t.is_finite() && *t > 0.0)
                    .ok_or_else(|| Error::Weights(format!("bad {key}: `{t}`")))?,
                None => 1.0,
            },
            tta: match raw.get(keys::TTA) {
                Some(v) => TestTimeAugmentation::parse(v)
                    .ok_or_else(|| Error::Weights(format!("bad {}: `{v}` (expected none or flips)", keys::TTA)))?,
                None => TestTimeAugmentation::None,
            },
            colour_constancy: match meta.get(keys::COLOUR_CONSTANCY) {
                Some((key, v)) => ColourConstancy::parse(v)
                    .ok_or_else(|| Error::Weights(format!("bad {key}: `{v}` (expected none or shades_of_gray:P, P in 1–8)")))?,
                None => ColourConstancy::None,
            },
            train_size: meta.parse(keys::TRAIN_SIZE, "a size in pixels")?,
            classes,
            raw: raw.clone(),
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
        let fc_bias = format!("{}_fc.bias", source.prefix);
        let n = source
            .file
            .tensor(&fc_bias)
            .map_err(|_| Error::MissingTensor { name: fc_bias.clone(), expected: vec![HAM10000_CLASSES.len()] })?
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

    /// Serialise as a folded one-network model (what `skinlens export` ships), in f32, f16 or
    /// int8 weights, with metadata.
    pub fn to_safetensors(&self, storage: Storage, extra: &HashMap<String, String>) -> Result<Vec<u8>> {
        // Keys of a multi-member file this network may have been read from do not describe it.
        let mut info: HashMap<String, String> = self
            .metadata
            .raw
            .iter()
            .filter(|(k, _)| {
                k.as_str() != keys::MEMBERS && !k.starts_with(keys::MEMBER_PREFIX) && !keys::PER_MEMBER.contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        info.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        info.insert(keys::CLASSES.into(), self.metadata.classes.join(","));
        info.insert(keys::BATCHNORM.into(), "folded".into());
        info.insert(keys::UNTRAINED.into(), self.metadata.untrained.to_string());
        info.insert(keys::TTA.into(), self.metadata.tta.as_str().into());
        info.extend(self.member_metadata(None));
        let tensors = self.stored_tensors(storage, "")?;
        safetensors::serialize(tensors, Some(info)).map_err(|e| Error::Weights(e.to_string()))
    }

    /// The keys that describe this network alone (architecture, size, temperature, …), under
    /// member `name`'s prefix or, with `None`, as a one-network file writes them. Optional keys
    /// are written only when they say something, so a plain model's file is unchanged.
    pub(crate) fn member_metadata(&self, name: Option<&str>) -> Vec<(String, String)> {
        let key = |k: &str| name.map_or_else(|| k.to_string(), |n| keys::member(n, k));
        let mut out = vec![
            (key(keys::ARCH), self.config.name.clone()),
            (key(keys::INPUT_SIZE), self.config.input_size.to_string()),
            (key(keys::TEMPERATURE), self.metadata.temperature.to_string()),
        ];
        if !self.metadata.colour_constancy.is_none() {
            out.push((key(keys::COLOUR_CONSTANCY), self.metadata.colour_constancy.as_string()));
        }
        if let Some(size) = self.metadata.train_size {
            out.push((key(keys::TRAIN_SIZE), size.to_string()));
        }
        out
    }

    /// Every folded tensor as `storage` writes it, its key prefixed by `prefix`.
    pub(crate) fn stored_tensors(&self, storage: Storage, prefix: &str) -> Result<Vec<(String, StoredTensor)>> {
        let mut out = Vec::new();
        for (k, t) in self.named_tensors() {
            out.extend(storage.encode(format!("{prefix}{k}"), t)?);
        }
        Ok(out)
    }
}
