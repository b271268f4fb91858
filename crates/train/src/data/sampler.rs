//! Which training images an epoch visits, in what order: class-rebalanced by oversampling.
//!
//! `over_rate` r gives every image of class c the weight n_c^(−r): 0 keeps the natural class
//! mix, 1 draws every class equally often, 0.5 is the 1/√n the PyTorch yardstick used. An epoch
//! has as many draws as the training set has images; minority images therefore repeat (each
//! time with fresh random transforms) and majority images are visited less than once. Within a
//! class, images are drawn by cycling through seeded shuffles, so no image repeats before
//! every image of its class has been seen.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Indices into the training set for one epoch.
pub fn epoch_order(labels: &[usize], num_classes: usize, over_rate: f64, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(epoch as u64));
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mass: Vec<f64> = by_class.iter().map(|v| if v.is_empty() { 0.0 } else { (v.len() as f64).powf(1.0 - over_rate) }).collect();
    let total_mass: f64 = mass.iter().sum();
    let draws = labels.len();
    // Largest-remainder rounding, so the epoch length is exactly `draws`.
    let exact: Vec<f64> = mass.iter().map(|m| m / total_mass * draws as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut remainders: Vec<(usize, f64)> = exact.iter().enumerate().map(|(c, e)| (c, e - e.floor())).collect();
    remainders.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    for (c, _) in remainders.into_iter().take(draws - counts.iter().sum::<usize>()) {
        counts[c] += 1;
    }
    let mut order = Vec::with_capacity(draws);
    for (class, &count) in counts.iter().enumerate() {
        let pool = &by_class[class];
        let mut taken = 0;
        while taken < count {
            let mut cycle = pool.clone();
            cycle.shuffle(&mut rng);
            let take = (count - taken).min(cycle.len());
            order.extend_from_slice(&cycle[..take]);
            taken += take;
        }
    }
    order.shuffle(&mut rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_rate_moves_the_class_mix() {
        let labels: Vec<usize> = (0..1000).map(|i| usize::from(i % 10 == 0)).collect();
        let share = |r: f64| epoch_order(&labels, 2, r, 1, 0).iter().filter(|&&i| labels[i] == 1).count();
        assert_eq!(share(0.0), 100);
        assert_eq!(share(1.0), 500);
        let half = share(0.5);
        assert!((240..=260).contains(&half), "{half}");
        assert_eq!(epoch_order(&labels, 2, 0.5, 1, 3), epoch_order(&labels, 2, 0.5, 1, 3));
        assert_ne!(epoch_order(&labels, 2, 0.5, 1, 3), epoch_order(&labels, 2, 0.5, 1, 4));
    }
}
