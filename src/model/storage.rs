//! How a model file stores its folded tensors: f32, f16, or int8 weights.
//!
//! **int8** stores each weight of at least [`INT8_MIN_ELEMENTS`] values whose output channel sums
//! at least [`INT8_MIN_ROW`] inputs (the larger 1×1 convolutions: nearly all of the bytes) as
//! `I8` under the weight's own name, symmetric, in runs of at most [`INT8_GROUP`] inputs along
//! each output channel's row, each run with its own scale: `q = round(w / s)` in −127…127,
//! `s = max |w| / 127` over the run. The scales are an f32 tensor `NAME_scale`, `[C_out, runs]`.
//! Everything else stays f16 (biases f32): the depthwise and stem filters (9–27 taps per
//! channel), and the small 1×1 convolutions of the first stages and the classifier, which carry
//! most of int8's error per byte. Measured on the ImageNet Lite0 (chelsea's 1,000 logits against
//! f32): one scale per channel for every weight 0.234, with the short filters in f16 0.217, in runs
//! of 32 0.133, and so with the weights under 32,768 values in f16 0.093 (f16 throughout: 0.010;
//! the int8 file is 5.5 MB, f16 9.3 MB). On 64 HAM10000 images through trained members (mean
//! |Δ logit|), keeping the weights under 32,768 values in f16 (2.5–2.9 % of the weights) cut the
//! error from 0.022 / 0.022 / 0.047 (Lite0 / Lite1 / Lite2) to 0.009 / 0.007 / 0.006, and the mean
//! KL divergence from f32 5.5 / 8 / 94 times; runs of 16 instead of 32 helped less (0.016 / 0.024 /
//! 0.022) at twice the scales.
//! Loading multiplies back (`q · s`), so every engine (CPU, WebGPU, native and wasm) runs the
//! same f32 weights. It halves an f16 file, which is what lets the page hold more members within
//! its download budget; `skinlens export` measures what it costs on validation before choosing it.

use std::borrow::Cow;

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, TensorView, View};

use crate::{Error, Result};

/// The shortest weight row (inputs summed per output channel) stored as int8.
pub const INT8_MIN_ROW: usize = 32;

/// The smallest weight (values in all) stored as int8; smaller ones stay f16 (see the module docs).
pub const INT8_MIN_ELEMENTS: usize = 32_768;

/// Whether int8 storage quantises a weight of this shape (rank ≥ 2, large enough, long rows).
pub fn is_int8_weight(dims: &[usize]) -> bool {
    let elements: usize = dims.iter().product();
    dims.len() >= 2 && dims[0] > 0 && elements >= INT8_MIN_ELEMENTS && elements / dims[0] >= INT8_MIN_ROW
}

/// Suffix of the scale tensor of an int8 weight (`_conv_head.weight_scale`: `[C_out, runs]`).
pub const SCALE_SUFFIX: &str = "_scale";

/// Storage type of a written model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    F32,
    F16,
    /// Weights that [`is_int8_weight`] int8, in runs of at most [`INT8_GROUP`] inputs per output
    /// channel with f32 scales; other weights f16; biases f32.
    Int8,
}

impl Storage {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "f32" => Some(Self::F32),
            "f16" => Some(Self::F16),
            "int8" => Some(Self::Int8),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Int8 => "int8",
        }
    }

    /// `tensor` under `name` as this storage writes it: one tensor, or an int8 weight and its
    /// scales. Rank-1 tensors (biases) are never quantised.
    pub(crate) fn encode(self, name: String, tensor: &Tensor) -> Result<Vec<(String, StoredTensor)>> {
        let float = |dtype: DType| -> Result<Vec<(String, StoredTensor)>> { Ok(vec![(name.clone(), StoredTensor::from_tensor(&tensor.to_dtype(dtype)?)?)]) };
        match self {
            Self::F32 => float(DType::F32),
            Self::F16 => float(DType::F16),
            Self::Int8 if tensor.rank() < 2 => float(DType::F32),
            Self::Int8 if !is_int8_weight(tensor.dims()) => float(DType::F16),
            Self::Int8 => {
                let shape = tensor.dims().to_vec();
                let rows = tensor.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
                let (quantised, scales, groups) = quantise_rows(&rows, INT8_GROUP);
                let scale_name = format!("{name}{SCALE_SUFFIX}");
                let bytes = quantised.iter().map(|&q| q as u8).collect();
                Ok(vec![
                    (name, StoredTensor { dtype: Dtype::I8, shape, data: bytes }),
                    (scale_name, StoredTensor::from_tensor(&Tensor::from_vec(scales, (rows.len(), groups), &Device::Cpu)?)?),
                ])
            }
        }
    }
}

/// Longest run of inputs sharing one int8 scale: a row (one output channel) is cut into
/// `ceil(len / INT8_GROUP)` runs of equal length (the last may be shorter).
pub const INT8_GROUP: usize = 32;

/// The run length of a row of `len` values cut into `groups` runs: what the reader derives from
/// the scales' shape, so the writer must cut exactly so.
pub fn run_length(len: usize, groups: usize) -> usize {
    len.div_ceil(groups.max(1))
}

/// How many runs a row of `len` values is cut into, each at most `group` long. The reader gets
/// the same cut back from this count alone: with `g = ceil(len / group)` runs of
/// `r = ceil(len / g) ≤ group`, `len > (g − 1)·group ≥ (g − 1)·r`, so exactly `g` runs of `r`
/// cover the row.
pub fn runs_for(len: usize, group: usize) -> usize {
    len.div_ceil(group.max(1)).max(1)
}

/// Symmetric int8 in runs of at most `group` values along each (equally long) row: each run's
/// largest magnitude maps to ±127. An all-zero run gets scale 0 and stays zero. Returns the
/// values, the scales row-major, and the runs per row.
pub fn quantise_rows(rows: &[Vec<f32>], group: usize) -> (Vec<i8>, Vec<f32>, usize) {
    let len = rows.first().map_or(0, Vec::len);
    let groups = runs_for(len, group);
    let run = run_length(len, groups);
    let mut quantised = Vec::with_capacity(rows.iter().map(Vec::len).sum());
    let mut scales = Vec::new();
    for row in rows {
        for run in row.chunks(run) {
            let scale = run.iter().fold(0f32, |m, w| m.max(w.abs())) / 127.0;
            scales.push(scale);
            quantised.extend(run.iter().map(|&w| if scale > 0.0 { (w / scale).round().clamp(-127.0, 127.0) as i8 } else { 0 }));
        }
    }
    (quantised, scales, groups)
}

/// An int8 tensor read back to f32: `q · scale`, with `groups` scales per row (the first
/// dimension), each for a run of `ceil(row / groups)` values.
pub(crate) fn dequantise(view: &TensorView, scales: &[f32], groups: usize, name: &str) -> Result<Tensor> {
    let shape = view.shape();
    let row_len: usize = shape[1..].iter().product();
    let group = run_length(row_len, groups);
    if groups == 0 || row_len.div_ceil(group) != groups || scales.len() != shape[0] * groups || scales.iter().any(|s| !s.is_finite() || *s < 0.0) {
        return Err(Error::Weights(format!("`{name}{SCALE_SUFFIX}`: expected finite, non-negative scales, a whole number of runs per row of {row_len}")));
    }
    let values: Vec<f32> = view.data().iter().enumerate().map(|(i, &b)| f32::from(b as i8) * scales[(i / row_len) * groups + (i % row_len) / group]).collect();
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// A tensor ready to serialise: candle has no int8 type, so this holds the bytes itself.
pub struct StoredTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl StoredTensor {
    /// A copy of a tensor as read from a file, in whatever type it has there.
    pub fn from_view(view: &TensorView) -> Self {
        Self { dtype: view.dtype(), shape: view.shape().to_vec(), data: view.data().to_vec() }
    }

    /// An f32 or f16 candle tensor.
    pub fn from_tensor(tensor: &Tensor) -> Result<Self> {
        let data = match tensor.dtype() {
            DType::F32 => tensor.flatten_all()?.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::F16 => tensor.flatten_all()?.to_vec1::<half::f16>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            other => return Err(Error::Weights(format!("cannot store a {other:?} tensor"))),
        };
        let dtype = if tensor.dtype() == DType::F32 { Dtype::F32 } else { Dtype::F16 };
        Ok(Self { dtype, shape: tensor.dims().to_vec(), data })
    }
}

impl View for StoredTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_quantise_to_their_own_scale() {
        let rows = vec![vec![0.5, -1.0, 0.25], vec![0.0, 0.0, 0.0], vec![100.0, -3.0, 50.0]];
        let (q, s, groups) = quantise_rows(&rows, 3);
        assert_eq!(groups, 1);
        assert_eq!(s, vec![1.0 / 127.0, 0.0, 100.0 / 127.0]);
        assert_eq!(q, vec![64, -127, 32, 0, 0, 0, 127, -4, 64]);
        // Every value comes back within half a step of its row's scale.
        for (r, row) in rows.iter().enumerate() {
            for (c, w) in row.iter().enumerate() {
                assert!((f32::from(q[r * 3 + c]) * s[r] - w).abs() <= s[r] / 2.0 + 1e-6);
            }
        }
    }
}
