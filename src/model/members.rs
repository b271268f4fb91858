//! A model file as a whole: one network (today's format) or several weighted members.
//!
//! A file without `skinlens.members` is one network, read exactly as before. A file with it is
//! an ensemble (see `weights::keys`): `skinlens.arch = ensemble`, `skinlens.members = a,b,…`,
//! file-wide classes, BatchNorm layout, untrained flag and test-time views; per member
//! `skinlens.member.NAME.{arch,input_size,temperature,weight[,colour_constancy,train_size]}`,
//! and the member's tensors under the reference names prefixed `NAME/` (file-wide extra tensors
//! are named `skinlens.…`). The answer is the
//! weighted mean of the members' calibrated probabilities (`Classifier`).

use std::collections::{HashMap, HashSet};

use super::Storage;

use super::weights::{keys, open, MetadataView, TensorSource};
use super::FoldedNetwork;
use crate::{Error, Result};

/// Longest accepted member name.
const MAX_NAME: usize = 32;
/// How far the member weights may sum from 1 (they are written as decimals).
const WEIGHT_SUM_TOLERANCE: f32 = 1e-3;

/// One network of a model file and its share of the answer.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    /// Its share of the average; the shares of a file sum to 1.
    pub weight: f32,
    /// Its input size is the size it runs at; its metadata carries its temperature and colour
    /// constancy, and the file-wide classes, views and untrained flag.
    pub network: FoldedNetwork,
}

/// Everything a model file holds.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub members: Vec<Member>,
}

/// `[a-z0-9][a-z0-9_-]*`, at most 32 characters: safe in keys, tensor names and file names.
pub fn is_valid_member_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

impl ModelFile {
    /// One network, the whole answer.
    pub fn single(network: FoldedNetwork) -> Self {
        Self { members: vec![Member { name: "model".into(), weight: 1.0, network }] }
    }

    /// Read either layout; every inconsistency is an error that names the key or tensor.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let (file, raw) = open(bytes)?;
        let Some(list) = raw.get(keys::MEMBERS) else {
            return Ok(Self::single(FoldedNetwork::from_safetensors(bytes)?));
        };
        let names = member_names(list)?;
        check_file_keys(&raw, &names)?;
        let listed: HashSet<&str> = names.iter().map(String::as_str).collect();
        for name in file.names() {
            match name.split_once('/') {
                Some((member, _)) if listed.contains(member) => {}
                Some((member, _)) => {
                    return Err(Error::Weights(format!("tensor `{name}` belongs to member `{member}`, which {} (`{list}`) does not list", keys::MEMBERS)))
                }
                // File-wide extras (e.g. the familiarity check's `skinlens.familiarity.*`).
                None if name.starts_with("skinlens.") => {}
                None => return Err(Error::Weights(format!("tensor `{name}` has no member prefix (NAME/) in a file with {}", keys::MEMBERS))),
            }
        }
        let mut source = TensorSource { file, prefix: String::new() };
        let mut members = Vec::with_capacity(names.len());
        for name in names {
            let weight_key = keys::member(&name, keys::WEIGHT);
            let weight = raw
                .get(&weight_key)
                .ok_or_else(|| Error::Weights(format!("member `{name}` has no {weight_key}")))?
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|w| w.is_finite() && *w > 0.0)
                .ok_or_else(|| Error::Weights(format!("bad {weight_key}: `{}` (expected a positive number)", raw[&weight_key])))?;
            source.prefix = format!("{name}/");
            let network = FoldedNetwork::read(&source, &MetadataView { raw: &raw, member: Some(&name) })?;
            members.push(Member { name, weight, network });
        }
        let sum: f32 = members.iter().map(|m| m.weight).sum();
        if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
            let listed = members.iter().map(|m| format!("{} {}", m.name, m.weight)).collect::<Vec<_>>().join(", ");
            return Err(Error::Weights(format!("the member weights ({listed}) sum to {sum}, not 1")));
        }
        Ok(Self { members })
    }

    /// Serialise: one member is written as today's one-network file (its name and weight are not
    /// stored); several as an ensemble. Members must share classes, views and untrained flag,
    /// have valid distinct names and weights summing to 1.
    pub fn to_safetensors(&self, storage: Storage, extra: &HashMap<String, String>) -> Result<Vec<u8>> {
        self.to_safetensors_stored(&vec![storage; self.members.len()], extra)
    }

    /// [`Self::to_safetensors`] with each member in its own storage (`storages[i]` for member i):
    /// a reader tells int8, f16 and f32 apart tensor by tensor.
    pub fn to_safetensors_stored(&self, storages: &[Storage], extra: &HashMap<String, String>) -> Result<Vec<u8>> {
        if storages.len() != self.members.len() {
            return Err(Error::Model(format!("{} storage types for {} members", storages.len(), self.members.len())));
        }
        let first = match self.members.as_slice() {
            [] => return Err(Error::Model("a model file needs at least one network".into())),
            [only] => return only.network.to_safetensors(storages[0], extra),
            [first, ..] => &first.network,
        };
        let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
        member_names(&names.join(","))?;
        let sum: f32 = self.members.iter().map(|m| m.weight).sum();
        if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE || self.members.iter().any(|m| m.weight.is_nan() || m.weight <= 0.0) {
            return Err(Error::Model(format!("member weights must be positive and sum to 1 (they sum to {sum})")));
        }
        let meta = &first.metadata;
        for m in &self.members[1..] {
            let other = &m.network.metadata;
            if other.classes != meta.classes || other.tta != meta.tta || other.untrained != meta.untrained {
                return Err(Error::Model(format!("member `{}` differs from `{}` in classes, views or untrained flag", m.name, self.members[0].name)));
            }
        }
        let mut info = extra.clone();
        info.insert(keys::ARCH.into(), keys::ENSEMBLE_ARCH.into());
        info.insert(keys::MEMBERS.into(), names.join(","));
        info.insert(keys::CLASSES.into(), meta.classes.join(","));
        info.insert(keys::BATCHNORM.into(), "folded".into());
        info.insert(keys::UNTRAINED.into(), meta.untrained.to_string());
        info.insert(keys::TTA.into(), meta.tta.as_str().into());
        let mut tensors = Vec::new();
        for (m, &storage) in self.members.iter().zip(storages) {
            info.extend(m.network.member_metadata(Some(&m.name)));
            info.insert(keys::member(&m.name, keys::WEIGHT), m.weight.to_string());
            tensors.extend(m.network.stored_tensors(storage, &format!("{}/", m.name))?);
        }
        safetensors::serialize(tensors, Some(info)).map_err(|e| Error::Weights(e.to_string()))
    }
}

/// The names of `skinlens.members`, checked.
fn member_names(list: &str) -> Result<Vec<String>> {
    let names: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
    let mut seen = HashSet::new();
    for name in &names {
        if !is_valid_member_name(name) {
            return Err(Error::Weights(format!(
                "bad member name `{name}` in {} (`{list}`): use a-z, 0-9, _ and -, starting with a letter or digit, at most {MAX_NAME} characters",
                keys::MEMBERS
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::Weights(format!("member `{name}` is listed twice in {} (`{list}`)", keys::MEMBERS)));
        }
    }
    Ok(names)
}

/// In a file with members, per-network keys belong under a member, and every member key names a
/// listed member.
fn check_file_keys(raw: &HashMap<String, String>, names: &[String]) -> Result<()> {
    for key in keys::PER_MEMBER {
        match raw.get(key) {
            Some(v) if key == keys::ARCH && v == keys::ENSEMBLE_ARCH => {}
            Some(v) => {
                return Err(Error::Weights(format!(
                    "{key} = `{v}` describes one network; in a file with {} it goes under each member ({})",
                    keys::MEMBERS,
                    keys::member("NAME", key)
                )))
            }
            None => {}
        }
    }
    for key in raw.keys() {
        if let Some(rest) = key.strip_prefix(keys::MEMBER_PREFIX) {
            let name = rest.split('.').next().unwrap_or_default();
            if !names.iter().any(|n| n == name) {
                return Err(Error::Weights(format!("metadata key `{key}` names member `{name}`, which {} (`{}`) does not list", keys::MEMBERS, names.join(","))));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "lite0_192", "m-2", "0"] {
            assert!(is_valid_member_name(good), "{good}");
        }
        for bad in ["", "_a", "A", "a.b", "a/b", "a b", &"x".repeat(33)] {
            assert!(!is_valid_member_name(bad), "{bad}");
        }
        assert_eq!(keys::member("a", keys::INPUT_SIZE), "skinlens.member.a.input_size");
    }
}
