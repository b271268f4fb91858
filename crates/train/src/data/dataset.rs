//! Where labelled images come from, as command-line options shared by `train`, `evaluate` and
//! `fit-familiarity`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};

use skinlens_core::preprocess::ColourConstancy;

use super::records::{first_image_per_lesion, read_ham_metadata, read_isic_ground_truth, Record, Skips};

/// On the command line (the `clap` feature) the options of `train`, `evaluate` and `fit-familiarity`;
/// saved in a run's `config.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct DataArgs {
    /// HAM10000 folder: HAM10000_metadata.csv plus images (images_224/, images_200x150/, or the
    /// images themselves, e.g. the official HAM10000_images_part_1/2 given with --images).
    #[cfg_attr(feature = "clap", arg(long, value_name = "DIR"))]
    pub data: Option<PathBuf>,
    /// Metadata CSV (lesion_id,image_id,dx,…). Default: DATA/HAM10000_metadata.csv.
    #[cfg_attr(feature = "clap", arg(long, value_name = "CSV"))]
    pub metadata: Option<PathBuf>,
    /// ISIC 2018 Task 3 one-hot ground truth (image,MEL,NV,…) instead of the metadata; with
    /// --metadata as well, lesion ids come from the metadata.
    #[cfg_attr(feature = "clap", arg(long, value_name = "CSV"))]
    pub ground_truth: Option<PathBuf>,
    /// More image folders (searched after DATA; images_224/ anywhere is preferred).
    #[cfg_attr(feature = "clap", arg(long = "images", value_name = "DIR"))]
    pub image_dirs: Vec<PathBuf>,
    /// Keep only the first image of each lesion (the origin write-up's choice).
    #[cfg_attr(feature = "clap", arg(long))]
    pub first_image_per_lesion: bool,
    /// Use at most this many lesions per class (seeded choice): small runs and tests.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub max_lesions_per_class: Option<usize>,
    /// Colour constancy applied to every image's centre square as it is loaded (training):
    /// `none` or `shades_of_gray:6`. `skinlens export` declares it in the model file, so every
    /// front end applies it too.
    #[cfg_attr(feature = "clap", arg(long, default_value = "none", value_parser = parse_colour_constancy))]
    #[serde(default = "no_colour_constancy")]
    pub colour_constancy: String,
}

#[cfg(feature = "clap")]
fn parse_colour_constancy(value: &str) -> Result<String, String> {
    ColourConstancy::parse(value).map(|_| value.to_string()).ok_or_else(|| format!("`{value}`: none or shades_of_gray:P (P in 1–8)"))
}

fn no_colour_constancy() -> String {
    "none".into()
}

impl DataArgs {
    /// The colour constancy images are loaded with (an invalid value reads as none).
    pub fn colour(&self) -> ColourConstancy {
        ColourConstancy::parse(&self.colour_constancy).unwrap_or_default()
    }

    pub fn roots(&self) -> Vec<PathBuf> {
        self.data.iter().cloned().chain(self.image_dirs.iter().cloned()).collect()
    }

    /// The labelled records, after the options above, and what was skipped.
    pub fn records(&self, classes: &[String], seed: u64) -> Result<(Vec<Record>, Skips)> {
        let metadata = self.metadata.clone().or_else(|| self.data.as_ref().map(|d| d.join("HAM10000_metadata.csv")));
        let (mut records, skips) = match (&self.ground_truth, metadata) {
            (Some(gt), meta) => {
                let mut records = read_isic_ground_truth(gt, classes)?;
                if let Some(meta) = meta.filter(|m| m.is_file()) {
                    let (lesions, _) = read_ham_metadata(&meta, classes)?;
                    let by_image: BTreeMap<&str, &str> = lesions.iter().map(|r| (r.image_id.as_str(), r.lesion_id.as_str())).collect();
                    for r in &mut records {
                        if let Some(l) = by_image.get(r.image_id.as_str()) {
                            r.lesion_id = l.to_string();
                        }
                    }
                }
                (records, Skips::default())
            }
            (None, Some(meta)) => read_ham_metadata(&meta, classes)?,
            (None, None) => bail!("say where the data is: --data DIR (HAM10000 folder), --metadata CSV or --ground-truth CSV"),
        };
        if self.first_image_per_lesion {
            records = first_image_per_lesion(&records);
        }
        if let Some(limit) = self.max_lesions_per_class {
            records = limit_lesions(&records, classes.len(), limit, seed);
        }
        Ok((records, skips))
    }
}

/// At most `limit` lesions of each class, chosen by a seeded shuffle of the lesion ids.
fn limit_lesions(records: &[Record], num_classes: usize, limit: usize, seed: u64) -> Vec<Record> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut lesions: Vec<Vec<&str>> = vec![Vec::new(); num_classes];
    let mut seen = std::collections::BTreeSet::new();
    for r in records {
        if seen.insert(r.lesion_id.as_str()) {
            lesions[r.label].push(&r.lesion_id);
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x11_1111);
    let mut keep = std::collections::HashSet::new();
    for class in &mut lesions {
        class.shuffle(&mut rng);
        keep.extend(class.iter().take(limit).copied());
    }
    records.iter().filter(|r| keep.contains(r.lesion_id.as_str())).cloned().collect()
}
