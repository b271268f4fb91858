//! Percentile bootstrap confidence intervals, resampling lesions (not images): images of one
//! lesion are correlated, so they enter and leave a resample together.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// 95 % intervals of every statistic `statistics` returns, over `rounds` lesion resamples.
/// `statistics(indices)` gets the image indices of one resample (with repeats).
pub fn lesion_bootstrap(
    lesion_of: &[String],
    rounds: usize,
    seed: u64,
    statistics: impl Fn(&[usize]) -> Vec<f64>,
) -> Vec<Interval> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in lesion_of.iter().enumerate() {
        groups.entry(l.as_str()).or_default().push(i);
    }
    let groups: Vec<Vec<usize>> = groups.into_values().collect();
    let all: Vec<usize> = (0..lesion_of.len()).collect();
    let estimates = statistics(&all);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); estimates.len()];
    for _ in 0..rounds {
        let mut indices = Vec::with_capacity(lesion_of.len());
        for _ in 0..groups.len() {
            indices.extend_from_slice(&groups[rng.random_range(0..groups.len())]);
        }
        for (s, v) in samples.iter_mut().zip(statistics(&indices)) {
            if v.is_finite() {
                s.push(v);
            }
        }
    }
    estimates
        .into_iter()
        .zip(samples)
        .map(|(estimate, mut s)| {
            s.sort_by(f64::total_cmp);
            let at = |q: f64| if s.is_empty() { f64::NAN } else { s[((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)] };
            Interval { estimate, low: at(0.025), high: at(0.975) }
        })
        .collect()
}
