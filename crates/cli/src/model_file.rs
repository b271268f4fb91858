//! Which model a command runs: a file the user names, or the one shipped in `models/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use skinlens_core::ModelFile;

/// The default model, built into the binary so `skinlens` works from anywhere.
const SHIPPED_MODEL: &[u8] = include_bytes!("../../../models/skinlens.safetensors");

/// A loaded model file (one network or several members) and where it came from (for messages).
pub struct LoadedModel {
    pub file: ModelFile,
    pub source: String,
}

pub fn load(path: Option<&Path>) -> Result<LoadedModel> {
    match path {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read the model", path.display()))?;
            let file = ModelFile::from_safetensors(&bytes).with_context(|| format!("{}: not a usable model", path.display()))?;
            Ok(LoadedModel { file, source: path.display().to_string() })
        }
        None => Ok(LoadedModel {
            file: ModelFile::from_safetensors(SHIPPED_MODEL).context("the built-in model")?,
            source: "built-in models/skinlens.safetensors".into(),
        }),
    }
}

/// Parse `PATH` or `PATH:WEIGHT` (ensemble members).
pub fn parse_weighted(spec: &str) -> Result<(PathBuf, f32)> {
    match spec.rsplit_once(':') {
        Some((path, weight)) if !path.is_empty() && weight.parse::<f32>().is_ok() => {
            let weight: f32 = weight.parse()?;
            anyhow::ensure!(weight.is_finite() && weight > 0.0, "{spec}: the weight must be positive");
            Ok((PathBuf::from(path), weight))
        }
        _ => Ok((PathBuf::from(spec), 1.0)),
    }
}
