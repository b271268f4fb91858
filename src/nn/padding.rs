//! TensorFlow 'SAME' padding.
//!
//! `o = ceil(i / s)`, `pad = max((o − 1)·s + k − i, 0)`, `before = pad / 2`, `after = pad − before`.
//! With stride 2 the extra row and column land at the bottom/right; PyTorch-style symmetric
//! `k / 2` padding moves the reference logits by up to 1.55.

/// Output length of a 'SAME' convolution.
pub fn same_output(input: usize, stride: usize) -> usize {
    input.div_ceil(stride)
}

/// `(before, after)` zero padding of a 'SAME' convolution along one dimension.
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let output = same_output(input, stride);
    let pad = ((output - 1) * stride + kernel).saturating_sub(input);
    (pad / 2, pad - pad / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_table() {
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(112, 3, 1), (1, 1));
        assert_eq!(same_padding(56, 5, 2), (1, 2));
        assert_eq!(same_padding(14, 5, 2), (1, 2));
        assert_eq!(same_padding(7, 1, 1), (0, 0));
        assert_eq!(same_output(7, 2), 4);
    }
}
