//! The depthwise convolution's inner loop: `out[i] = act(bias + Σ_t tap[t] · src[start[t] + i])`,
//! `act` ReLU6 or nothing.
//!
//! Every tap of a depthwise filter reads the same padded plane shifted by a fixed offset, so
//! one output run is a weighted sum of `k·k` shifted copies of one buffer. Both versions keep a
//! block of outputs in registers across all taps and store it once: the buffer-per-tap loop they
//! replace loaded and stored the whole run `k·k` times.
//!
//! x86-64 picks the AVX-512 version at run time when the CPU has AVX-512F, else the AVX2 + FMA
//! version when it has those (one portable binary; the baseline build is SSE2). Both do the same
//! fused multiply-adds in the same order, so they give the same bits. wasm32 + SIMD128 runs [`wasm`], the same blocks in explicit
//! 128-bit vectors, with `f32x4.relaxed_madd` (fused where the engine's CPU has FMA) in the
//! module built with relaxed SIMD and multiply-then-add in the plain one (the auto-vectorised
//! portable version measured 3× slower in V8). Everything else runs the portable version. They
//! differ only by FMA's single rounding.

/// Outputs per block of the portable version (four 128-bit vectors).
const PORTABLE_BLOCK: usize = 16;

/// Checks the slices once, so the kernels below can read without bounds checks.
fn check(out: &[f32], src: &[f32], starts: &[usize], taps: &[f32]) {
    assert_eq!(starts.len(), taps.len(), "one start per tap");
    let furthest = starts.iter().max().map_or(0, |s| s + out.len());
    assert!(furthest <= src.len(), "tap run ends at {furthest}, past the source's {}", src.len());
}

/// `out[i] = bias + Σ_t taps[t] · src[starts[t] + i]`, fastest version this CPU can run.
pub fn tap_sum(out: &mut [f32], src: &[f32], starts: &[usize], taps: &[f32], bias: f32, relu6: bool) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        check(out, src, starts, taps);
        // SAFETY: the CPU has AVX-512F (checked above); bounds checked by `check`.
        unsafe { avx512::tap_sum(out, src, starts, taps, bias, relu6) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        check(out, src, starts, taps);
        // SAFETY: the CPU has AVX2 and FMA (checked above); bounds checked by `check`.
        unsafe { avx2::tap_sum(out, src, starts, taps, bias, relu6) };
        return;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        check(out, src, starts, taps);
        // SAFETY: bounds checked by `check`.
        unsafe { wasm::tap_sum(out, src, starts, taps, bias, relu6) };
        return;
    }
    #[allow(unreachable_code)]
    tap_sum_portable(out, src, starts, taps, bias, relu6);
}

/// The portable version: taps in order, multiply then add (the same arithmetic on every target).
pub fn tap_sum_portable(out: &mut [f32], src: &[f32], starts: &[usize], taps: &[f32], bias: f32, relu6: bool) {
    check(out, src, starts, taps);
    let mut blocks = out.chunks_exact_mut(PORTABLE_BLOCK);
    let mut i = 0;
    for block in &mut blocks {
        let mut sum = [bias; PORTABLE_BLOCK];
        for (&tap, &start) in taps.iter().zip(starts) {
            let row: &[f32; PORTABLE_BLOCK] = src[start + i..start + i + PORTABLE_BLOCK].try_into().unwrap();
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += tap * v;
            }
        }
        for (o, &v) in block.iter_mut().zip(&sum) {
            *o = if relu6 { v.clamp(0.0, 6.0) } else { v };
        }
        i += PORTABLE_BLOCK;
    }
    for (j, o) in blocks.into_remainder().iter_mut().enumerate() {
        let mut sum = bias;
        for (&tap, &start) in taps.iter().zip(starts) {
            sum += tap * src[start + i + j];
        }
        *o = if relu6 { sum.clamp(0.0, 6.0) } else { sum };
    }
}

/// Whether [`tap_sum`] takes the AVX2 + FMA path on this CPU.
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether [`tap_sum`] takes the AVX-512 path on this CPU.
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The AVX2 + FMA version, for tests that compare it with the portable one. `None` where the
/// CPU lacks the features.
pub fn tap_sum_avx2(out: &mut [f32], src: &[f32], starts: &[usize], taps: &[f32], bias: f32, relu6: bool) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        check(out, src, starts, taps);
        // SAFETY: as in `tap_sum`.
        unsafe { avx2::tap_sum(out, src, starts, taps, bias, relu6) };
        return Some(());
    }
    let _ = (out, src, starts, taps, bias, relu6);
    None
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// 64 outputs (four 16-lane accumulators) per block, then single vectors, the last one
    /// masked: a 7×7 plane's run of 77 is one block and one masked vector, where the AVX2
    /// version ended in 5 scalar outputs per tap.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, and `starts[t] + out.len() <= src.len()` for every tap.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tap_sum(out: &mut [f32], src: &[f32], starts: &[usize], taps: &[f32], bias: f32, relu6: bool) {
        let n = out.len();
        let (src, dst) = (src.as_ptr(), out.as_mut_ptr());
        let init = _mm512_set1_ps(bias);
        let (lo, hi) = if relu6 { (0.0, 6.0) } else { (f32::NEG_INFINITY, f32::INFINITY) };
        let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        let clamp = |v| _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        let mut i = 0;
        while i + 64 <= n {
            let (mut a0, mut a1, mut a2, mut a3) = (init, init, init, init);
            for (&tap, &start) in taps.iter().zip(starts) {
                let w = _mm512_set1_ps(tap);
                let p = src.add(start + i);
                a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(p), a0);
                a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(p.add(16)), a1);
                a2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(p.add(32)), a2);
                a3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(p.add(48)), a3);
            }
            _mm512_storeu_ps(dst.add(i), clamp(a0));
            _mm512_storeu_ps(dst.add(i + 16), clamp(a1));
            _mm512_storeu_ps(dst.add(i + 32), clamp(a2));
            _mm512_storeu_ps(dst.add(i + 48), clamp(a3));
            i += 64;
        }
        while i < n {
            // Masked-off lanes are neither read nor written (AVX-512 suppresses their faults).
            let lanes = (n - i).min(16);
            let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
            let mut a = init;
            for (&tap, &start) in taps.iter().zip(starts) {
                a = _mm512_fmadd_ps(_mm512_set1_ps(tap), _mm512_maskz_loadu_ps(mask, src.add(start + i)), a);
            }
            _mm512_mask_storeu_ps(dst.add(i), mask, clamp(a));
            i += lanes;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// 32 outputs (four 8-lane accumulators) per block: 4 loads and 4 FMAs per tap, plus one
    /// broadcast, which keeps the two load ports and two FMA units about equally busy.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA, and `starts[t] + out.len() <= src.len()` for every tap.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tap_sum(out: &mut [f32], src: &[f32], starts: &[usize], taps: &[f32], bias: f32, relu6: bool) {
        let n = out.len();
        let (src, dst) = (src.as_ptr(), out.as_mut_ptr());
        let init = _mm256_set1_ps(bias);
        let (lo, hi) = if relu6 { (0.0, 6.0) } else { (f32::NEG_INFINITY, f32::INFINITY) };
        let clamp = |v| _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
        let mut i = 0;
        while i + 32 <= n {
            let (mut a0, mut a1, mut a2, mut a3) = (init, init, init, init);
            for (&tap, &start) in taps.iter().zip(starts) {
                let w = _mm256_set1_ps(tap);
                let p = src.add(start + i);
                a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(p), a0);
                a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(p.add(8)), a1);
                a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(p.add(16)), a2);
                a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(p.add(24)), a3);
            }
            _mm256_storeu_ps(dst.add(i), clamp(a0));
            _mm256_storeu_ps(dst.add(i + 8), clamp(a1));
            _mm256_storeu_ps(dst.add(i + 16), clamp(a2));
            _mm256_storeu_ps(dst.add(i + 24), clamp(a3));
            i += 32;
        }
        while i + 8 <= n {
            let mut a = init;
            for (&tap, &start) in taps.iter().zip(starts) {
                a = _mm256_fmadd_ps(_mm256_set1_ps(tap), _mm256_loadu_ps(src.add(start + i)), a);
            }
            _mm256_storeu_ps(dst.add(i), clamp(a));
            i += 8;
        }
        while i < n {
            let mut a = bias;
            for (&tap, &start) in taps.iter().zip(starts) {
                a = tap.mul_add(*src.add(start + i), a);
            }
            *dst.add(i) = a.max(lo).min(hi);
            i += 1;
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use core::arch::wasm32::*;

    use crate::nn::wasm_simd::madd;

    /// Like the AVX2 version, in 128-bit vectors: 16 outputs (four accumulators) per block.
    ///
    /// # Safety
    /// `starts[t] + out.len() <= src.len()` for every tap.
    pub unsafe fn tap_sum(out: &mut [f32], src: &[f32], starts: &[usize], taps: &[f32], bias: f32, relu6: bool) {
        let n = out.len();
        let (src, dst) = (src.as_ptr(), out.as_mut_ptr());
        let init = f32x4_splat(bias);
        let (lo, hi) = if relu6 { (0.0, 6.0) } else { (f32::NEG_INFINITY, f32::INFINITY) };
        let (lo4, hi4) = (f32x4_splat(lo), f32x4_splat(hi));
        let clamp = |v| f32x4_pmin(hi4, f32x4_pmax(lo4, v));
        let load = |p: *const f32| v128_load(p as *const v128);
        let mut i = 0;
        while i + 16 <= n {
            let (mut a0, mut a1, mut a2, mut a3) = (init, init, init, init);
            for (&tap, &start) in taps.iter().zip(starts) {
                let w = f32x4_splat(tap);
                let p = src.add(start + i);
                a0 = madd(w, load(p), a0);
                a1 = madd(w, load(p.add(4)), a1);
                a2 = madd(w, load(p.add(8)), a2);
                a3 = madd(w, load(p.add(12)), a3);
            }
            v128_store(dst.add(i) as *mut v128, clamp(a0));
            v128_store(dst.add(i + 4) as *mut v128, clamp(a1));
            v128_store(dst.add(i + 8) as *mut v128, clamp(a2));
            v128_store(dst.add(i + 12) as *mut v128, clamp(a3));
            i += 16;
        }
        while i + 4 <= n {
            let mut a = init;
            for (&tap, &start) in taps.iter().zip(starts) {
                a = madd(f32x4_splat(tap), load(src.add(start + i)), a);
            }
            v128_store(dst.add(i) as *mut v128, clamp(a));
            i += 4;
        }
        while i < n {
            let mut a = bias;
            for (&tap, &start) in taps.iter().zip(starts) {
                a += tap * *src.add(start + i);
            }
            *dst.add(i) = a.max(lo).min(hi);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no rand dependency in the core crate).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        fn below(&mut self, n: usize) -> usize {
            ((self.next() * 0.5 + 0.5) * n as f32) as usize % n.max(1)
        }
    }

    fn naive(n: usize, src: &[f32], starts: &[usize], taps: &[f32], bias: f32) -> Vec<f64> {
        (0..n).map(|i| bias as f64 + taps.iter().zip(starts).map(|(&t, &s)| t as f64 * src[s + i] as f64).sum::<f64>()).collect()
    }

    #[test]
    fn both_versions_match_a_double_precision_sum_on_random_runs() {
        let mut rng = Lcg(7);
        for case in 0..200 {
            let n = rng.below(150);
            let taps: Vec<f32> = (0..1 + rng.below(25)).map(|_| rng.next()).collect();
            let src: Vec<f32> = (0..n + 60).map(|_| rng.next() * 4.0).collect();
            let starts: Vec<usize> = taps.iter().map(|_| rng.below(61)).collect();
            let bias = rng.next();
            let relu6 = case % 2 == 1;
            let mut expected = naive(n, &src, &starts, &taps, bias);
            if relu6 {
                expected.iter_mut().for_each(|e| *e = e.clamp(0.0, 6.0));
            }
            let mut portable = vec![f32::NAN; n];
            tap_sum_portable(&mut portable, &src, &starts, &taps, bias, relu6);
            let mut dispatched = vec![f32::NAN; n];
            tap_sum(&mut dispatched, &src, &starts, &taps, bias, relu6);
            let mut avx2 = vec![f32::NAN; n];
            let has_avx2 = tap_sum_avx2(&mut avx2, &src, &starts, &taps, bias, relu6).is_some();
            for i in 0..n {
                assert!((portable[i] as f64 - expected[i]).abs() < 1e-4, "case {case} portable [{i}]");
                assert!((dispatched[i] as f64 - expected[i]).abs() < 1e-4, "case {case} dispatched [{i}]");
                if has_avx2 {
                    assert!((avx2[i] - portable[i]).abs() < 1e-4, "case {case} avx2 {} vs portable {} [{i}]", avx2[i], portable[i]);
                    // AVX-512 (dispatched where the CPU has it) fuses the same products in the
                    // same order as AVX2: the same bits.
                    if has_avx512() {
                        assert_eq!(dispatched[i].to_bits(), avx2[i].to_bits(), "case {case} avx512 vs avx2 [{i}]");
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "past the source")]
    fn a_run_past_the_source_is_refused() {
        let mut out = [0f32; 8];
        tap_sum(&mut out, &[0.0; 10], &[0, 3], &[1.0, 1.0], 0.0, false);
    }
}
