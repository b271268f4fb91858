//! One input plane laid out for a TF-'SAME' k×k convolution with stride s, so that every
//! filter tap reads a single contiguous run.
//!
//! The plane is copied once, zero-padded (the 'SAME' borders), and split into `s × s` phases
//! (even/odd rows × even/odd columns for stride 2). Output pixel `(oy, ox)` of tap `(ky, kx)`
//! then reads phase `(ky % s, kx % s)` at row `oy + ky / s`, column `ox + kx / s`: for a fixed
//! tap, consecutive outputs at the phase's row pitch are consecutive values. A whole output
//! plane is one run of `oh · pitch` sums ([`super::tap_sum`]); the few columns past `ow` are
//! scratch, dropped by [`PhaseLayout::copy_out`]. Long runs vectorise even for 7×7 planes,
//! where a row-by-row loop would run 7 elements at a time.

use std::mem::MaybeUninit;

use super::{same_output, same_padding};

#[derive(Debug, Clone, Copy)]
pub struct PhaseLayout {
    height: usize,
    width: usize,
    kernel: usize,
    stride: usize,
    top: usize,
    left: usize,
    /// Row pitch of a phase, which is also the output's pitch in the run.
    pitch: usize,
    /// One phase's length, with slack so the last tap's run may read past its final row.
    phase_len: usize,
}

impl PhaseLayout {
    pub fn new(height: usize, width: usize, kernel: usize, stride: usize) -> Self {
        let (top, bottom) = same_padding(height, kernel, stride);
        let (left, right) = same_padding(width, kernel, stride);
        let phase_rows = (height + top + bottom).div_ceil(stride);
        let pitch = (width + left + right).div_ceil(stride);
        Self { height, width, kernel, stride, top, left, pitch, phase_len: phase_rows * pitch + kernel }
    }

    /// Values of one laid-out plane.
    pub fn len(&self) -> usize {
        self.stride * self.stride * self.phase_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(oh, ow)` of the convolution.
    pub fn output(&self) -> (usize, usize) {
        (same_output(self.height, self.stride), same_output(self.width, self.stride))
    }

    /// Length of the run that holds the whole output plane (`oh · pitch`).
    pub fn run_len(&self) -> usize {
        self.output().0 * self.pitch
    }

    /// Where each tap's run starts in a laid-out plane, taps in `(ky, kx)` row-major order.
    pub fn tap_starts(&self) -> impl Iterator<Item = usize> + '_ {
        let (k, s) = (self.kernel, self.stride);
        (0..k * k).map(move |t| {
            let (ky, kx) = (t / k, t % k);
            ((ky % s) * s + kx % s) * self.phase_len + (ky / s) * self.pitch + kx / s
        })
    }

    /// Lay out the `height × width` plane `input` into `out` (`len()` values; all written).
    pub fn fill(&self, input: &[f32], out: &mut [f32]) {
        assert_eq!(out.len(), self.len(), "laid-out plane has the wrong length");
        out.fill(0.0);
        self.copy_interior(input, out);
    }

    /// Write only the plane's own values into `out`; the rest (the 'SAME' border, the spare
    /// columns of each pitch, the slack) is left as it is, zero from an earlier [`Self::fill`]
    /// of this layout. A layer's planes all share one layout, so a buffer zeroed once serves
    /// every plane: zeroing the border again for each of 1,152 planes of 7×7 cost as much as
    /// their arithmetic.
    pub fn copy_interior(&self, input: &[f32], out: &mut [f32]) {
        let (h, w, s, top, left, pitch, phase_len) =
            (self.height, self.width, self.stride, self.top, self.left, self.pitch, self.phase_len);
        assert_eq!(input.len(), h * w, "plane is not {h}×{w}");
        assert_eq!(out.len(), self.len(), "laid-out plane has the wrong length");
        // Padded row py lands in row py / s of the s phases of row phase py % s, which sit
        // next to each other; padded column px in column px / s of column phase px % s.
        for (y, source) in input.chunks_exact(w).enumerate() {
            let py = y + top;
            let (row_phase, j) = (py % s, py / s);
            let group = &mut out[row_phase * s * phase_len..(row_phase + 1) * s * phase_len];
            if s == 1 {
                group[j * pitch + left..j * pitch + left + w].copy_from_slice(source);
            } else if s == 2 {
                // Even and odd input columns go to the two column phases: one de-interleaving
                // pass the compiler vectorises.
                let (even, odd) = group.split_at_mut(phase_len);
                let (first, second) = if left % 2 == 0 { (even, odd) } else { (odd, even) };
                let (c0, c1, pairs) = (j * pitch + left / 2, j * pitch + left.div_ceil(2), w / 2);
                let targets = first[c0..c0 + pairs].iter_mut().zip(&mut second[c1..c1 + pairs]);
                for ((a, b), pair) in targets.zip(source.chunks_exact(2)) {
                    *a = pair[0];
                    *b = pair[1];
                }
                if w % 2 == 1 {
                    first[c0 + pairs] = source[w - 1];
                }
            } else {
                // (column phase, column) of padded column left + x, stepped without a
                // division per pixel.
                let (mut q, mut col) = (left % s, j * pitch + left / s);
                for &v in source {
                    group[q * phase_len + col] = v;
                    q += 1;
                    if q == s {
                        q = 0;
                        col += 1;
                    }
                }
            }
        }
    }

    /// The `oh × ow` output plane from its run (`run_len()` values).
    /// Writes every value of `output` (which may be uninitialised: see [`super::output`]).
    pub fn copy_out(&self, run: &[f32], output: &mut [MaybeUninit<f32>]) {
        let ow = self.output().1;
        assert_eq!(output.len(), self.output().0 * ow, "output plane has the wrong length");
        for (out_row, run_row) in output.chunks_exact_mut(ow).zip(run.chunks_exact(self.pitch)) {
            out_row.write_copy_of_slice(&run_row[..ow]);
        }
    }
}
