//! Temperature scaling (one scalar T: softmax(logits / T)), fitted on validation by minimising
//! the negative log-likelihood, and the expected calibration error that says whether it helped.

/// Softmax of `logits / t`.
pub fn softmax_t(logits: &[f32], t: f64) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logits.iter().map(|&l| ((f64::from(l) - f64::from(max)) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| (v / s) as f32).collect()
}

/// Mean negative log-likelihood of the true labels at temperature `t`.
pub fn nll(logits: &[Vec<f32>], labels: &[usize], t: f64) -> f64 {
    let total: f64 = logits.iter().zip(labels).map(|(l, &y)| -f64::from(softmax_t(l, t)[y].max(1e-12)).ln()).sum();
    total / logits.len().max(1) as f64
}

/// The temperature in [0.05, 20] with the lowest validation NLL (golden-section search on
/// log T; the NLL is unimodal in T).
pub fn fit_temperature(logits: &[Vec<f32>], labels: &[usize]) -> f64 {
    let (mut lo, mut hi) = ((0.05f64).ln(), (20.0f64).ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let f = |x: f64| nll(logits, labels, x.exp());
    let (mut a, mut b) = (hi - ratio * (hi - lo), lo + ratio * (hi - lo));
    let (mut fa, mut fb) = (f(a), f(b));
    for _ in 0..60 {
        if fa < fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - ratio * (hi - lo);
            fa = f(a);
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + ratio * (hi - lo);
            fb = f(b);
        }
    }
    ((lo + hi) / 2.0).exp()
}

/// Expected calibration error of the top-class confidence over `bins` equal-width bins.
pub fn expected_calibration_error(probabilities: &[Vec<f32>], labels: &[usize], bins: usize) -> f64 {
    let mut count = vec![0usize; bins];
    let mut confidence = vec![0f64; bins];
    let mut correct = vec![0f64; bins];
    for (p, &y) in probabilities.iter().zip(labels) {
        let (top, &conf) = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("at least one class");
        let bin = ((f64::from(conf) * bins as f64) as usize).min(bins - 1);
        count[bin] += 1;
        confidence[bin] += f64::from(conf);
        correct[bin] += f64::from(u8::from(top == y));
    }
    let n = probabilities.len().max(1) as f64;
    (0..bins).filter(|&b| count[b] > 0).map(|b| (correct[b] - confidence[b]).abs() / n).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_temperature() {
        // Labels drawn so that softmax(z / 2) is the true distribution: the fit should find ≈ 2.
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        let mut state = 12345u64;
        let mut uniform = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..4000 {
            let z: Vec<f32> = (0..3).map(|_| (uniform() * 8.0 - 4.0) as f32).collect();
            let p = softmax_t(&z, 2.0);
            let u = uniform() as f32;
            let y = if u < p[0] { 0 } else if u < p[0] + p[1] { 1 } else { 2 };
            logits.push(z);
            labels.push(y);
        }
        let t = fit_temperature(&logits, &labels);
        assert!((t - 2.0).abs() < 0.25, "{t}");
        let before = expected_calibration_error(&logits.iter().map(|l| softmax_t(l, 1.0)).collect::<Vec<_>>(), &labels, 15);
        let after = expected_calibration_error(&logits.iter().map(|l| softmax_t(l, t)).collect::<Vec<_>>(), &labels, 15);
        assert!(after < before, "{before} → {after}");
    }
}
