//! Lesion-grouped, class-stratified train / validation / test splits.
//!
//! Several HAM10000 images show the same lesion; if they landed on both sides of a split the
//! numbers would leak. So lesions, not images, are dealt out: per class, the lesions are
//! shuffled (seeded) and cut into test, validation and train. With k folds the test part stays
//! fixed and the rest is cut into k parts, one of which validates.

use std::collections::{BTreeMap, HashSet};

use anyhow::{bail, ensure, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::records::Record;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitPlan {
    pub seed: u64,
    pub val_fraction: f64,
    pub test_fraction: f64,
    /// `Some((fold, folds))`: cross-validation fold `fold` of `folds` (val replaces the fraction).
    pub fold: Option<(usize, usize)>,
}

impl Default for SplitPlan {
    /// The origin write-up's 64 / 16 / 20.
    fn default() -> Self {
        Self { seed: 0, val_fraction: 0.16, test_fraction: 0.20, fold: None }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Split {
    pub train: Vec<Record>,
    pub val: Vec<Record>,
    pub test: Vec<Record>,
}

/// Deal lesions into train / val / test. Fails, naming it, on a lesion with two labels or a
/// class that ends up with no lesion in some part.
pub fn split(records: &[Record], classes: &[String], plan: &SplitPlan) -> Result<Split> {
    ensure!(plan.val_fraction >= 0.0 && plan.test_fraction >= 0.0 && plan.val_fraction + plan.test_fraction < 1.0, "split fractions must be ≥ 0 and leave room for training");
    // lesion → label, checking every image of a lesion agrees.
    let mut lesion_label: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        if let Some(&l) = lesion_label.get(r.lesion_id.as_str()) {
            if l != r.label {
                bail!("lesion {} has images labelled both {} and {}", r.lesion_id, classes[l], classes[r.label]);
            }
        }
        lesion_label.insert(&r.lesion_id, r.label);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let (mut train, mut val, mut test) = (HashSet::new(), HashSet::new(), HashSet::new());
    for (class, class_name) in classes.iter().enumerate() {
        // BTreeMap order: the same lesions in the same order on every run, then a seeded shuffle.
        let mut lesions: Vec<&str> = lesion_label.iter().filter(|(_, &l)| l == class).map(|(id, _)| *id).collect();
        if lesions.is_empty() {
            bail!("class {class_name} has no images");
        }
        lesions.shuffle(&mut rng);
        let n = lesions.len();
        let n_test = (n as f64 * plan.test_fraction).round() as usize;
        let (test_part, rest) = lesions.split_at(n_test.min(n));
        test.extend(test_part.iter().copied());
        match plan.fold {
            Some((fold, folds)) => {
                ensure!(folds >= 2 && fold < folds, "fold {fold} of {folds}: need 2 ≤ folds and fold < folds");
                for (i, id) in rest.iter().enumerate() {
                    // Contiguous cuts of the shuffled list: fold f holds [f·m/k, (f+1)·m/k).
                    if i * folds / rest.len() == fold { val.insert(*id) } else { train.insert(*id) };
                }
            }
            None => {
                let n_val = (n as f64 * plan.val_fraction).round() as usize;
                let (val_part, train_part) = rest.split_at(n_val.min(rest.len()));
                val.extend(val_part.iter().copied());
                train.extend(train_part.iter().copied());
            }
        }
    }
    let pick = |set: &HashSet<&str>| -> Vec<Record> { records.iter().filter(|r| set.contains(r.lesion_id.as_str())).cloned().collect() };
    let out = Split { train: pick(&train), val: pick(&val), test: pick(&test) };
    for (name, part, wanted) in [("train", &out.train, true), ("val", &out.val, plan.val_fraction > 0.0 || plan.fold.is_some()), ("test", &out.test, plan.test_fraction > 0.0)] {
        if !wanted {
            continue;
        }
        for (c, class) in classes.iter().enumerate() {
            if !part.iter().any(|r| r.label == c) {
                bail!("class {class} has no lesion in the {name} split (too few lesions for these fractions)");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> (Vec<Record>, Vec<String>) {
        let classes = vec!["a".to_string(), "b".to_string()];
        let mut records = Vec::new();
        for l in 0..50 {
            for i in 0..(1 + l % 3) {
                records.push(Record { image_id: format!("img{l}_{i}"), lesion_id: format!("les{l}"), label: usize::from(l % 5 == 0) });
            }
        }
        (records, classes)
    }

    #[test]
    fn lesions_never_straddle_and_folds_partition() -> Result<()> {
        let (records, classes) = toy();
        let mut val_union = HashSet::new();
        let mut tests = Vec::new();
        for fold in 0..3 {
            let s = split(&records, &classes, &SplitPlan { fold: Some((fold, 3)), ..Default::default() })?;
            let ids = |p: &[Record]| p.iter().map(|r| r.lesion_id.clone()).collect::<HashSet<_>>();
            let (tr, va, te) = (ids(&s.train), ids(&s.val), ids(&s.test));
            assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
            assert_eq!(s.train.len() + s.val.len() + s.test.len(), records.len());
            assert!(val_union.is_disjoint(&va), "folds overlap");
            val_union.extend(va);
            tests.push(te);
        }
        assert!(tests.windows(2).all(|w| w[0] == w[1]), "test part must not depend on the fold");
        Ok(())
    }

    #[test]
    fn a_conflicting_lesion_is_an_error() {
        let (mut records, classes) = toy();
        records[1].label = 1 - records[0].label;
        records[1].lesion_id = records[0].lesion_id.clone();
        let err = split(&records, &classes, &SplitPlan::default()).unwrap_err().to_string();
        assert!(err.contains("les0"), "{err}");
    }

    /// On the real HAM10000 metadata (../shared), default split and every fold of a 5-fold plan:
    /// no lesion in two parts, every image somewhere, every class in every part.
    #[test]
    fn real_metadata_never_puts_a_lesion_in_two_parts() -> Result<()> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ham10000/HAM10000_metadata.csv");
        if !path.is_file() {
            eprintln!("skipped: {} not found", path.display());
            return Ok(());
        }
        let classes: Vec<String> = skinlens_core::HAM10000_CLASSES.iter().map(|c| c.to_string()).collect();
        let (records, skips) = crate::data::records::read_ham_metadata(&path, &classes)?;
        assert_eq!((records.len(), skips.by_reason.len()), (10_015, 0));
        let plans = std::iter::once(SplitPlan::default()).chain((0..5).map(|f| SplitPlan { fold: Some((f, 5)), seed: 7, ..Default::default() }));
        for plan in plans {
            let s = split(&records, &classes, &plan)?;
            let ids = |p: &[Record]| p.iter().map(|r| r.lesion_id.clone()).collect::<HashSet<_>>();
            let (tr, va, te) = (ids(&s.train), ids(&s.val), ids(&s.test));
            assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te), "{plan:?}");
            assert_eq!(s.train.len() + s.val.len() + s.test.len(), records.len());
            assert_eq!(tr.len() + va.len() + te.len(), 7_470);
        }
        // 64 / 16 / 20 of the lesions, per class, within rounding.
        let s = split(&records, &classes, &SplitPlan::default())?;
        let lesions = |p: &[Record]| p.iter().map(|r| r.lesion_id.clone()).collect::<HashSet<_>>().len() as f64 / 7_470.0;
        assert!((lesions(&s.test) - 0.20).abs() < 0.005 && (lesions(&s.val) - 0.16).abs() < 0.005);
        Ok(())
    }
}
