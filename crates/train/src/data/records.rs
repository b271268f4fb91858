//! Labelled images from the two label formats: the HAM10000 metadata CSV
//! (`lesion_id,image_id,dx,…`) and the ISIC 2018 Task 3 one-hot ground truth
//! (`image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub image_id: String,
    /// Images of the same lesion share this (the ISIC CSV has none: each image is its own).
    pub lesion_id: String,
    /// Index into the class list.
    pub label: usize,
}

/// Rows that could not be used, counted by reason (reported, never silently dropped).
#[derive(Debug, Default, Clone)]
pub struct Skips {
    pub by_reason: HashMap<String, Vec<String>>,
}

impl Skips {
    pub fn add(&mut self, reason: impl Into<String>, what: impl Into<String>) {
        self.by_reason.entry(reason.into()).or_default().push(what.into());
    }
    /// `reason: count (first few…)` lines.
    pub fn summary(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .by_reason
            .iter()
            .map(|(reason, items)| {
                let shown: Vec<&str> = items.iter().take(3).map(String::as_str).collect();
                format!("{reason}: {} ({}{})", items.len(), shown.join(", "), if items.len() > 3 { ", …" } else { "" })
            })
            .collect();
        out.sort();
        out
    }
}

fn column(headers: &csv::StringRecord, name: &str, path: &Path) -> Result<usize> {
    headers
        .iter()
        .position(|h| h.trim().eq_ignore_ascii_case(name))
        .with_context(|| format!("{}: no `{name}` column (found: {})", path.display(), headers.iter().collect::<Vec<_>>().join(",")))
}

/// Read `HAM10000_metadata.csv`. Rows whose `dx` is not in `classes` are skipped and counted.
pub fn read_ham_metadata(path: &Path, classes: &[String]) -> Result<(Vec<Record>, Skips)> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("{}: cannot open the metadata CSV", path.display()))?;
    let headers = reader.headers().with_context(|| format!("{}: no header row", path.display()))?.clone();
    let (lesion, image, dx) = (column(&headers, "lesion_id", path)?, column(&headers, "image_id", path)?, column(&headers, "dx", path)?);
    let mut records = Vec::new();
    let mut skips = Skips::default();
    let mut seen = HashMap::new();
    for (row, result) in reader.records().enumerate() {
        let r = result.with_context(|| format!("{}: row {} is not valid CSV", path.display(), row + 2))?;
        let (lesion_id, image_id, code) = (r.get(lesion).unwrap_or("").trim(), r.get(image).unwrap_or("").trim(), r.get(dx).unwrap_or("").trim());
        if image_id.is_empty() || lesion_id.is_empty() {
            skips.add("row without image_id or lesion_id", format!("row {}", row + 2));
            continue;
        }
        let Some(label) = classes.iter().position(|c| c.eq_ignore_ascii_case(code)) else {
            skips.add(format!("unknown label `{code}`"), image_id);
            continue;
        };
        if seen.insert(image_id.to_string(), ()).is_some() {
            skips.add("duplicate image_id", image_id);
            continue;
        }
        records.push(Record { image_id: image_id.into(), lesion_id: lesion_id.into(), label });
    }
    if records.is_empty() {
        bail!("{}: no usable rows", path.display());
    }
    Ok((records, skips))
}

/// Read an ISIC 2018 Task 3 one-hot ground-truth CSV (`image,MEL,NV,…`). Columns are matched to
/// `classes` by name, in any order; a row that is not exactly one-hot is an error naming it.
pub fn read_isic_ground_truth(path: &Path, classes: &[String]) -> Result<Vec<Record>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("{}: cannot open the ground-truth CSV", path.display()))?;
    let headers = reader.headers().with_context(|| format!("{}: no header row", path.display()))?.clone();
    let image = column(&headers, "image", path)?;
    let class_columns: Vec<usize> = classes.iter().map(|c| column(&headers, c, path)).collect::<Result<_>>()?;
    let mut records = Vec::new();
    for (row, result) in reader.records().enumerate() {
        let r = result.with_context(|| format!("{}: row {} is not valid CSV", path.display(), row + 2))?;
        let image_id = r.get(image).unwrap_or("").trim().to_string();
        let values: Vec<f64> = class_columns
            .iter()
            .map(|&i| r.get(i).unwrap_or("").trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("{}: row {} ({image_id}) has a non-numeric label", path.display(), row + 2))?;
        let ones: Vec<usize> = values.iter().enumerate().filter(|(_, v)| **v == 1.0).map(|(i, _)| i).collect();
        if ones.len() != 1 || values.iter().any(|v| *v != 0.0 && *v != 1.0) {
            bail!("{}: row {} ({image_id}) is not one-hot", path.display(), row + 2);
        }
        records.push(Record { lesion_id: image_id.clone(), image_id, label: ones[0] });
    }
    if records.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(records)
}

/// Keep the first image (in file order) of each lesion: the origin write-up's choice.
pub fn first_image_per_lesion(records: &[Record]) -> Vec<Record> {
    let mut seen = std::collections::HashSet::new();
    records.iter().filter(|r| seen.insert(r.lesion_id.clone())).cloned().collect()
}

/// Image counts per class.
pub fn class_counts(records: &[Record], num_classes: usize) -> Vec<usize> {
    let mut counts = vec![0; num_classes];
    for r in records {
        counts[r.label] += 1;
    }
    counts
}
