//! The ISIC 2018 Task 3 metrics, computed the way the official scorer
//! (PyPI `isic-challenge-scoring`) computes them.
//!
//! * The predicted class is the argmax of the probabilities; an image whose maximum is shared
//!   by two or more classes counts as wrong for every class (the scorer's tie rule).
//! * Balanced multiclass accuracy is the mean per-class recall of that argmax (the ranking metric).
//! * The per-class binary metrics (sensitivity, specificity, precision = PPV, NPV, F1 = Dice,
//!   accuracy) threshold each class's probability at > 0.5, as the official scorer does; the
//!   argmax recall is reported beside them as `recall`.
//! * ROC AUC is one-vs-rest per class (Mann–Whitney, ties counted half), macro = mean.
//! * Average precision is scikit-learn's: Σ (Rₙ − Rₙ₋₁) Pₙ over distinct score thresholds.

use serde::Serialize;

/// The predicted class, or `None` when the maximum is tied (never right).
pub fn argmax_strict(p: &[f32]) -> Option<usize> {
    let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut hits = p.iter().enumerate().filter(|(_, v)| **v == max);
    let first = hits.next()?.0;
    if hits.next().is_some() {
        None
    } else {
        Some(first)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassMetrics {
    pub class: String,
    pub support: usize,
    /// Recall of the argmax prediction (its mean over classes is the balanced accuracy).
    pub recall: f64,
    /// Precision of the argmax prediction.
    pub argmax_precision: f64,
    /// Binary metrics of `probability > 0.5` (the official scorer's per-category metrics).
    pub sensitivity: f64,
    pub specificity: f64,
    pub precision: f64,
    pub npv: f64,
    pub f1: f64,
    pub accuracy: f64,
    pub auc: f64,
    pub average_precision: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub images: usize,
    pub balanced_accuracy: f64,
    pub accuracy: f64,
    pub mcc: f64,
    pub macro_auc: f64,
    pub mean_average_precision: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]`; a tied prediction is counted in an extra last column.
    pub confusion: Vec<Vec<usize>>,
    /// Mean cross-entropy of the probabilities (natural log).
    pub log_loss: f64,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// One-vs-rest ROC AUC of `scores` for the positives in `positive` (NaN if one side is empty).
pub fn roc_auc(scores: &[f32], positive: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks over ties (1-based).
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return f64::NAN;
    }
    let rank_sum: f64 = ranks.iter().zip(positive).filter(|(_, &p)| p).map(|(r, _)| r).sum();
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// scikit-learn's `average_precision_score` for one class.
pub fn average_precision(scores: &[f32], positive: &[bool]) -> f64 {
    let n_pos = positive.iter().filter(|&&p| p).count();
    if n_pos == 0 {
        return f64::NAN;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0f64, 0f64);
    let mut i = 0;
    while i < idx.len() {
        // Every sample at this threshold enters together.
        let threshold = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == threshold {
            if positive[idx[i]] { tp += 1 } else { fp += 1 }
            i += 1;
        }
        let recall = tp as f64 / n_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - last_recall) * precision;
        last_recall = recall;
    }
    ap
}

/// Multiclass Matthews correlation (scikit-learn's `matthews_corrcoef`); tied predictions
/// count as a class of their own that no image truly belongs to.
fn mcc(confusion: &[Vec<usize>]) -> f64 {
    let k = confusion.len();
    let cols = confusion[0].len();
    let total: f64 = confusion.iter().flatten().sum::<usize>() as f64;
    let correct: f64 = (0..k).map(|i| confusion[i][i] as f64).sum();
    let true_counts: Vec<f64> = (0..cols).map(|c| if c < k { confusion[c].iter().sum::<usize>() as f64 } else { 0.0 }).collect();
    let pred_counts: Vec<f64> = (0..cols).map(|c| confusion.iter().map(|row| row[c]).sum::<usize>() as f64).collect();
    let tp: f64 = true_counts.iter().zip(&pred_counts).map(|(t, p)| t * p).sum();
    let num = correct * total - tp;
    let den = ((total * total - pred_counts.iter().map(|p| p * p).sum::<f64>()) * (total * total - true_counts.iter().map(|t| t * t).sum::<f64>())).sqrt();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// Every metric of one set of predictions. `probabilities[i]` sums to 1 over the classes.
pub fn evaluate(probabilities: &[Vec<f32>], labels: &[usize], classes: &[String]) -> Report {
    let k = classes.len();
    let mut confusion = vec![vec![0usize; k + 1]; k];
    let mut log_loss = 0f64;
    for (p, &y) in probabilities.iter().zip(labels) {
        confusion[y][argmax_strict(p).unwrap_or(k)] += 1;
        log_loss -= f64::from(p[y].max(1e-15)).ln();
    }
    let n = labels.len();
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c];
            let support: usize = confusion[c].iter().sum();
            let predicted: usize = confusion.iter().map(|row| row[c]).sum();
            let scores: Vec<f32> = probabilities.iter().map(|p| p[c]).collect();
            let positive: Vec<bool> = labels.iter().map(|&y| y == c).collect();
            // The official per-category confusion: probability > 0.5 against the truth.
            let (mut btp, mut bfp, mut btn, mut bfn) = (0, 0, 0, 0);
            for (&s, &pos) in scores.iter().zip(&positive) {
                match (s > 0.5, pos) {
                    (true, true) => btp += 1,
                    (true, false) => bfp += 1,
                    (false, false) => btn += 1,
                    (false, true) => bfn += 1,
                }
            }
            let (sensitivity, precision) = (ratio(btp, btp + bfn), ratio(btp, btp + bfp));
            ClassMetrics {
                class: classes[c].clone(),
                support,
                recall: ratio(tp, support),
                argmax_precision: ratio(tp, predicted),
                sensitivity,
                specificity: ratio(btn, btn + bfp),
                precision,
                npv: ratio(btn, btn + bfn),
                f1: if btp + bfp + bfn > 0 { 2.0 * btp as f64 / (2 * btp + bfp + bfn) as f64 } else { 0.0 },
                accuracy: ratio(btp + btn, n),
                auc: roc_auc(&scores, &positive),
                average_precision: average_precision(&scores, &positive),
            }
        })
        .collect();
    let mean = |f: &dyn Fn(&ClassMetrics) -> f64| per_class.iter().map(f).sum::<f64>() / k as f64;
    Report {
        images: n,
        balanced_accuracy: mean(&|m| m.recall),
        accuracy: ratio((0..k).map(|c| confusion[c][c]).sum(), n),
        mcc: mcc(&confusion),
        macro_auc: mean(&|m| m.auc),
        mean_average_precision: mean(&|m| m.average_precision),
        per_class,
        confusion,
        log_loss: log_loss / n.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_values() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let probs = vec![vec![0.8, 0.1, 0.1], vec![0.2, 0.7, 0.1], vec![0.5, 0.5, 0.0], vec![0.1, 0.2, 0.7], vec![0.6, 0.3, 0.1]];
        let labels = vec![0, 1, 1, 2, 2];
        let r = evaluate(&probs, &labels, &classes);
        // a: 1/1, b: 1/2 (the tie is wrong), c: 1/2.
        assert!((r.balanced_accuracy - (1.0 + 0.5 + 0.5) / 3.0).abs() < 1e-12);
        assert_eq!(r.confusion[1][3], 1);
        assert!((r.accuracy - 0.6).abs() < 1e-12);
        // AUC of class a: positive 0.8 vs negatives 0.2, 0.5, 0.1, 0.6 → 1.0.
        assert!((r.per_class[0].auc - 1.0).abs() < 1e-12);
        // Thresholded at 0.5, class a has one true (0.8) and one false (0.6) positive.
        assert_eq!((r.per_class[0].sensitivity, r.per_class[0].precision), (1.0, 0.5));
        assert!((r.per_class[0].specificity - 0.75).abs() < 1e-12);
        // AUC with a tie: scores [0.5, 0.5] pos/neg → 0.5.
        assert!((roc_auc(&[0.5, 0.5], &[true, false]) - 0.5).abs() < 1e-12);
        // AP: ranking pos, neg, pos → (1·1 + 0.5·2/3) = 0.8333.
        assert!((average_precision(&[0.9, 0.8, 0.7], &[true, false, true]) - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-12);
        assert_eq!(argmax_strict(&[0.5, 0.5, 0.0]), None);
    }
}
