//! Mixup and CutMix across a batch. The batch order is already a random draw, so slot `s` is
//! mixed with slot `n − 1 − s` (its partner); one mixing weight λ per batch, from Beta(α, α).
//! The loss is then λ·L(label) + (1 − λ)·L(partner's label).

use rand::Rng;
use rand_distr::{Beta, Distribution};

use super::augment::{random_rect, Rect};

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MixConfig {
    /// Mixup's Beta(α, α) parameter (0: off).
    pub mixup_alpha: f32,
    /// CutMix's Beta(α, α) parameter (0: off). With both on, each batch picks one at even odds.
    pub cutmix_alpha: f32,
}

impl MixConfig {
    pub fn enabled(&self) -> bool {
        self.mixup_alpha > 0.0 || self.cutmix_alpha > 0.0
    }
}

/// How a batch was mixed: each slot's weight on its own label is `lambda`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixing {
    pub lambda: f32,
    pub partners: Vec<usize>,
}

/// Slot `s`'s partner in a batch of `n`.
pub fn partner(s: usize, n: usize) -> usize {
    n - 1 - s
}

/// Mix a batch of normalised HWC views of `size`×`size` in place; `None` when mixing is off.
pub fn mix_batch(views: &mut [Vec<f32>], size: usize, config: &MixConfig, rng: &mut impl Rng) -> Option<Mixing> {
    if !config.enabled() || views.len() < 2 {
        return None;
    }
    let use_cutmix = match (config.mixup_alpha > 0.0, config.cutmix_alpha > 0.0) {
        (true, true) => rng.random_bool(0.5),
        (false, true) => true,
        _ => false,
    };
    let alpha = if use_cutmix { config.cutmix_alpha } else { config.mixup_alpha };
    let mut lambda = Beta::new(alpha, alpha).expect("α > 0").sample(rng);
    let n = views.len();
    let originals: Vec<Vec<f32>> = views.to_vec();
    if use_cutmix {
        // One box of area 1 − λ (aspect 1 as in the CutMix paper), at the same place in every
        // slot; λ becomes the exact share of pixels each slot keeps.
        let rect = random_rect(size, (1.0 - lambda).max(1e-6), 1.0, rng);
        lambda = 1.0 - (rect.w * rect.h) as f32 / (size * size) as f32;
        for (s, view) in views.iter_mut().enumerate() {
            paste_rect(view, &originals[partner(s, n)], size, rect);
        }
    } else {
        for (s, view) in views.iter_mut().enumerate() {
            for (v, p) in view.iter_mut().zip(&originals[partner(s, n)]) {
                *v = lambda * *v + (1.0 - lambda) * p;
            }
        }
    }
    Some(Mixing { lambda, partners: (0..n).map(|s| partner(s, n)).collect() })
}

fn paste_rect(view: &mut [f32], from: &[f32], size: usize, rect: Rect) {
    for row in rect.y..rect.y + rect.h {
        let span = (row * size + rect.x) * 3..(row * size + rect.x + rect.w) * 3;
        view[span.clone()].copy_from_slice(&from[span]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn batch() -> Vec<Vec<f32>> {
        (0..4).map(|s| vec![s as f32; 8 * 8 * 3]).collect()
    }

    #[test]
    fn off_by_default() {
        let mut views = batch();
        assert_eq!(mix_batch(&mut views, 8, &MixConfig::default(), &mut ChaCha8Rng::seed_from_u64(1)), None);
        assert_eq!(views, batch());
    }

    #[test]
    fn mixup_blends_each_slot_with_its_partner() {
        let mut views = batch();
        let m = mix_batch(&mut views, 8, &MixConfig { mixup_alpha: 0.4, cutmix_alpha: 0.0 }, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!(m.partners, [3, 2, 1, 0]);
        assert!(m.lambda > 0.0 && m.lambda < 1.0);
        for (s, view) in views.iter().enumerate() {
            let expected = m.lambda * s as f32 + (1.0 - m.lambda) * (3 - s) as f32;
            assert!(view.iter().all(|v| (v - expected).abs() < 1e-6), "slot {s}");
        }
    }

    #[test]
    fn cutmix_pastes_one_box_and_lambda_is_the_kept_share() {
        let mut views = batch();
        let m = mix_batch(&mut views, 8, &MixConfig { mixup_alpha: 0.0, cutmix_alpha: 1.0 }, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        for (s, view) in views.iter().enumerate() {
            let kept = view.iter().filter(|&&v| v == s as f32).count() as f32 / view.len() as f32;
            if s != 3 - s {
                assert!((kept - m.lambda).abs() < 1e-6, "slot {s}: kept {kept}, λ {}", m.lambda);
                assert!(view.iter().all(|&v| v == s as f32 || v == (3 - s) as f32));
            }
        }
    }
}
