//! Shared helpers for tests that read `../shared/reference` (present on CI beside the project).

#![allow(dead_code)]

use std::path::PathBuf;

pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

pub fn reference(name: &str) -> PathBuf {
    shared().join("reference").join(name)
}

pub fn read_bytes(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (tests need ../shared beside the project)", path.display()))
}

/// A headerless little-endian f32 tensor from `reference/tensors/NAME.bin`.
pub fn tensor_f32(name: &str) -> Vec<f32> {
    read_bytes(reference(&format!("tensors/{name}.bin")))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub fn tensor_u8(name: &str) -> Vec<u8> {
    read_bytes(reference(&format!("tensors/{name}.bin")))
}

pub fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs()))
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}
