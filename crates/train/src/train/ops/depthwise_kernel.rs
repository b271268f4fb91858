//! The channels-last depthwise layer's three CPU kernels, one image at a time: forward,
//! gradient with respect to the input, and this image's share of the weight gradient.
//!
//! Channels-last puts a pixel's channels side by side, so every kernel works on vectors of
//! channels: a block of adjacent pixels keeps its sums in registers across all the taps that
//! reach it and is stored once (the loop it replaces loaded and stored the output for every
//! tap). The input gradient is a gather (each input pixel sums the outputs that read it) rather
//! than a scatter, so it too writes each value once, and no two threads touch the same value.
//!
//! Every kernel is one generic body over the vector width, compiled three times: AVX-512
//! (16 lanes) or AVX2 + FMA (8 lanes) when the CPU has them, picked at run time, and a
//! portable build (4 lanes, multiply then add) elsewhere. Channels past the last whole vector
//! run the same body one lane wide. Sums run in the same order on every path; they differ only
//! by the fused multiply-add's single rounding.

use std::mem::MaybeUninit;

use super::depthwise::DepthwiseGeometry;

/// Adjacent pixels summed together in registers.
const PIXELS: usize = 8;

/// One image's geometry with the 'SAME' offsets resolved.
#[derive(Debug, Clone, Copy)]
struct Plan {
    h: usize,
    w: usize,
    c: usize,
    k: usize,
    s: usize,
    oh: usize,
    ow: usize,
    top: isize,
    left: isize,
}

impl Plan {
    fn new(g: &DepthwiseGeometry) -> Self {
        let (oh, ow) = g.output();
        let (top, left) = g.pad_top_left();
        Self { h: g.height, w: g.width, c: g.channels, k: g.kernel, s: g.stride, oh, ow, top: top as isize, left: left as isize }
    }

    /// Taps `[lo, hi)` along one axis that land inside `0..len` for an output starting at `at`.
    fn taps_inside(&self, at: isize, len: usize) -> (usize, usize) {
        ((-at).max(0) as usize, (len as isize - at).clamp(0, self.k as isize) as usize)
    }

    /// Output columns `[lo, hi)` whose every tap lands inside the image.
    fn interior_columns(&self) -> (usize, usize) {
        let lo = (self.left as usize).div_ceil(self.s);
        let hi = if self.w as isize + self.left >= self.k as isize { (self.w + self.left as usize - self.k) / self.s + 1 } else { 0 };
        (lo.min(self.ow), hi.min(self.ow).max(lo.min(self.ow)))
    }
}

/// One vector of channels and the operations the kernels need on it. The bodies below are
/// generic over it and inlined into a function compiled for the matching CPU features, so the
/// intrinsics inline too (written as plain arrays, LLVM vectorised across pixels, with gathers).
trait Lanes {
    type V: Copy;
    const L: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `acc + a · b`.
    unsafe fn mul_add(a: Self::V, b: Self::V, acc: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// AVX-512F: 16 lanes, fused.
    pub struct Avx512;
    impl super::Lanes for Avx512 {
        type V = __m512;
        const L: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn mul_add(a: __m512, b: __m512, acc: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, acc)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
    }

    /// AVX2 + FMA: 8 lanes, fused.
    pub struct Avx2;
    impl super::Lanes for Avx2 {
        type V = __m256;
        const L: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn mul_add(a: __m256, b: __m256, acc: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, acc)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
    }
}

/// Portable: four lanes as an array (the baseline build vectorises it), multiply then add.
struct Portable;
impl Lanes for Portable {
    type V = [f32; 4];
    const L: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> [f32; 4] {
        [0.0; 4]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 4] {
        (p as *const [f32; 4]).read_unaligned()
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 4]) {
        (p as *mut [f32; 4]).write_unaligned(v)
    }
    #[inline(always)]
    unsafe fn mul_add(a: [f32; 4], b: [f32; 4], acc: [f32; 4]) -> [f32; 4] {
        std::array::from_fn(|j| acc[j] + a[j] * b[j])
    }
    #[inline(always)]
    unsafe fn add(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        std::array::from_fn(|j| a[j] + b[j])
    }
}

/// One channel at a time, for the channels past the last whole vector; `FUSED` matches the
/// vector path it completes.
struct Scalar<const FUSED: bool>;
impl<const FUSED: bool> Lanes for Scalar<FUSED> {
    type V = f32;
    const L: usize = 1;
    #[inline(always)]
    unsafe fn zero() -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> f32 {
        *p
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: f32) {
        *p = v
    }
    #[inline(always)]
    unsafe fn mul_add(a: f32, b: f32, acc: f32) -> f32 {
        if FUSED {
            a.mul_add(b, acc)
        } else {
            acc + a * b
        }
    }
    #[inline(always)]
    unsafe fn add(a: f32, b: f32) -> f32 {
        a + b
    }
}

/// `out[oy][ox][c] = Σ_taps in[oy·s + ky − top][ox·s + kx − left][c] · taps[ky·k + kx][c]`
/// for channels `c0..c1` (a whole number of vectors).
#[inline(always)]
unsafe fn forward_body<X: Lanes>(p: Plan, input: *const f32, taps: *const f32, out: *mut f32, c0: usize, c1: usize) {
    let (k, s, c) = (p.k, p.s, p.c);
    let (inner_lo, inner_hi) = p.interior_columns();
    for oy in 0..p.oh {
        let row0 = (oy * s) as isize - p.top;
        let (ky_lo, ky_hi) = p.taps_inside(row0, p.h);
        let out_row = out.add(oy * p.ow * c);
        for cb in (c0..c1).step_by(X::L) {
            let mut ox = 0;
            while ox < p.ow {
                let ix0 = (ox * s) as isize - p.left;
                if ox >= inner_lo && ox + PIXELS <= inner_hi {
                    forward_block::<X, PIXELS>(p, input, taps, out_row, row0, (ky_lo, ky_hi), ox, cb);
                    ox += PIXELS;
                } else if ox >= inner_lo && ox + PIXELS / 2 <= inner_hi {
                    forward_block::<X, { PIXELS / 2 }>(p, input, taps, out_row, row0, (ky_lo, ky_hi), ox, cb);
                    ox += PIXELS / 2;
                } else {
                    let (kx_lo, kx_hi) = p.taps_inside(ix0, p.w);
                    let mut acc = X::zero();
                    for ky in ky_lo..ky_hi {
                        let row = input.offset(((row0 + ky as isize) * p.w as isize + ix0) * c as isize).add(cb);
                        for kx in kx_lo..kx_hi {
                            acc = X::mul_add(X::load(row.add(kx * c)), X::load(taps.add((ky * k + kx) * c + cb)), acc);
                        }
                    }
                    X::store(out_row.add(ox * c + cb), acc);
                    ox += 1;
                }
            }
        }
    }
}

/// `N` adjacent outputs of one row whose every column tap is inside the image, summed in
/// registers over all taps.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_block<X: Lanes, const N: usize>(p: Plan, input: *const f32, taps: *const f32, out_row: *mut f32, row0: isize, (ky_lo, ky_hi): (usize, usize), ox: usize, cb: usize) {
    let (k, s, c) = (p.k, p.s, p.c);
    let ix0 = (ox * s) as isize - p.left;
    let mut acc = [X::zero(); N];
    for ky in ky_lo..ky_hi {
        let row = input.offset(((row0 + ky as isize) * p.w as isize + ix0) * c as isize).add(cb);
        for kx in 0..k {
            let weight = X::load(taps.add((ky * k + kx) * c + cb));
            for (j, a) in acc.iter_mut().enumerate() {
                *a = X::mul_add(X::load(row.add((kx + j * s) * c)), weight, *a);
            }
        }
    }
    for (j, a) in acc.iter().enumerate() {
        X::store(out_row.add((ox + j) * c + cb), *a);
    }
}

/// `grad_in[iy][ix][c] = Σ grad_out[oy][ox][c] · taps[ky·k + kx][c]` over the outputs whose
/// taps read `(iy, ix)`: `oy·s = iy + top − ky`, `ox·s = ix + left − kx`.
#[inline(always)]
unsafe fn grad_input_body<X: Lanes>(p: Plan, grad_out: *const f32, taps: *const f32, grad_in: *mut f32, c0: usize, c1: usize) {
    let (k, s, c) = (p.k, p.s, p.c);
    // Output index along one axis read by tap `t` at input `i`, if any.
    let source = |i: usize, pad: isize, t: usize, len: usize| -> Option<usize> {
        let at = i as isize + pad - t as isize;
        (at >= 0 && at % s as isize == 0 && ((at / s as isize) as usize) < len).then(|| (at / s as isize) as usize)
    };
    // An input column is whole when every tap of its stride phase reads an output: a block of
    // such columns `s` apart reads the same taps at consecutive outputs.
    let whole = |ix: usize| (0..k).filter(|kx| (ix as isize + p.left - *kx as isize).rem_euclid(s as isize) == 0).all(|kx| source(ix, p.left, kx, p.ow).is_some());
    let whole_columns: Vec<bool> = (0..p.w).map(whole).collect();
    let mut rows = Vec::with_capacity(k);
    for iy in 0..p.h {
        rows.clear();
        rows.extend((0..k).filter_map(|ky| source(iy, p.top, ky, p.oh).map(|oy| (ky, oy))));
        let in_row = grad_in.add(iy * p.w * c);
        for cb in (c0..c1).step_by(X::L) {
            for phase in 0..s.min(p.w) {
                let mut ix = phase;
                while ix < p.w {
                    let whole_run = |n: usize| ix + (n - 1) * s < p.w && whole_columns[ix] && whole_columns[ix + (n - 1) * s];
                    if whole_run(PIXELS) {
                        grad_input_block::<X, PIXELS>(p, grad_out, taps, in_row, &rows, ix, cb);
                        ix += PIXELS * s;
                    } else if whole_run(PIXELS / 2) {
                        grad_input_block::<X, { PIXELS / 2 }>(p, grad_out, taps, in_row, &rows, ix, cb);
                        ix += PIXELS / 2 * s;
                    } else {
                        let mut acc = X::zero();
                        for &(ky, oy) in &rows {
                            for kx in 0..k {
                                if let Some(ox) = source(ix, p.left, kx, p.ow) {
                                    acc = X::mul_add(X::load(grad_out.add((oy * p.ow + ox) * c + cb)), X::load(taps.add((ky * k + kx) * c + cb)), acc);
                                }
                            }
                        }
                        X::store(in_row.add(ix * c + cb), acc);
                        ix += s;
                    }
                }
            }
        }
    }
}

/// `N` whole input columns `s` apart (see `grad_input_body`): the same taps read consecutive
/// outputs, summed in registers.
#[inline(always)]
unsafe fn grad_input_block<X: Lanes, const N: usize>(p: Plan, grad_out: *const f32, taps: *const f32, in_row: *mut f32, rows: &[(usize, usize)], ix: usize, cb: usize) {
    let (k, s, c) = (p.k, p.s, p.c);
    let first_kx = (ix as isize + p.left).rem_euclid(s as isize) as usize;
    let mut acc = [X::zero(); N];
    for &(ky, oy) in rows {
        for kx in (first_kx..k).step_by(s) {
            let ox = (ix + p.left as usize - kx) / s;
            let weight = X::load(taps.add((ky * k + kx) * c + cb));
            let from = grad_out.add((oy * p.ow + ox) * c + cb);
            for (j, a) in acc.iter_mut().enumerate() {
                *a = X::mul_add(X::load(from.add(j * c)), weight, *a);
            }
        }
    }
    for (j, a) in acc.iter().enumerate() {
        X::store(in_row.add((ix + j * s) * c + cb), *a);
    }
}

/// This image's `[k·k, C]` weight gradient, `Σ_outputs grad_out[o][c] · in[i(o, tap)][c]`,
/// added to `grad_taps`. Row by row: one output row and the input rows its taps read stay in
/// L1 while every tap sums over them (tap by tap over the whole image streamed it from L2 k²
/// times).
#[inline(always)]
unsafe fn grad_weight_body<X: Lanes>(p: Plan, grad_out: *const f32, input: *const f32, grad_taps: *mut f32, c0: usize, c1: usize) {
    let (k, s, c) = (p.k, p.s, p.c);
    let (inner_lo, inner_hi) = p.interior_columns();
    for oy in 0..p.oh {
        let g_row = grad_out.add(oy * p.ow * c);
        for cb in (c0..c1).step_by(X::L) {
            for ky in 0..k {
                let iy = (oy * s) as isize + ky as isize - p.top;
                if iy < 0 || iy >= p.h as isize {
                    continue;
                }
                for kx in 0..k {
                    // Input column of output column `ox` is `ox·s + kx − left`.
                    let in_row = input.offset(iy * (p.w * c) as isize + (kx as isize - p.left) * c as isize).add(cb);
                    // Four running sums over consecutive outputs, for independent additions.
                    let mut acc = [X::zero(); 4];
                    let mut ox = 0;
                    while ox < p.ow {
                        if ox >= inner_lo && ox + 4 <= inner_hi {
                            for (j, a) in acc.iter_mut().enumerate() {
                                *a = X::mul_add(X::load(g_row.add((ox + j) * c + cb)), X::load(in_row.add((ox + j) * s * c)), *a);
                            }
                            ox += 4;
                        } else {
                            let ix = (ox * s + kx) as isize - p.left;
                            if ix >= 0 && ix < p.w as isize {
                                acc[0] = X::mul_add(X::load(g_row.add(ox * c + cb)), X::load(in_row.add(ox * s * c)), acc[0]);
                            }
                            ox += 1;
                        }
                    }
                    let tap = grad_taps.add((ky * k + kx) * c + cb);
                    X::store(tap, X::add(X::load(tap), X::add(X::add(acc[0], acc[1]), X::add(acc[2], acc[3]))));
                }
            }
        }
    }
}

/// Runs `$body` over every channel: whole vectors at the widest width this CPU has, then the
/// remaining channels one lane wide.
macro_rules! dispatch {
    ($body:ident, $plan:expr, $a:expr, $b:expr, $out:expr) => {{
        let (plan, a, b, out) = ($plan, $a, $b, $out);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                #[target_feature(enable = "avx512f")]
                unsafe fn wide(p: Plan, a: *const f32, b: *const f32, out: *mut f32) {
                    let whole = p.c / 16 * 16;
                    $body::<x86::Avx512>(p, a, b, out, 0, whole);
                    $body::<Scalar<true>>(p, a, b, out, whole, p.c);
                }
                // SAFETY: the CPU has AVX-512F; the caller checked the slices' lengths.
                return unsafe { wide(plan, a, b, out) };
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide(p: Plan, a: *const f32, b: *const f32, out: *mut f32) {
                    let whole = p.c / 8 * 8;
                    $body::<x86::Avx2>(p, a, b, out, 0, whole);
                    $body::<Scalar<true>>(p, a, b, out, whole, p.c);
                }
                // SAFETY: the CPU has AVX2 and FMA; the caller checked the slices' lengths.
                return unsafe { wide(plan, a, b, out) };
            }
        }
        let whole = plan.c / 4 * 4;
        // SAFETY: the caller checked the slices' lengths.
        unsafe {
            $body::<Portable>(plan, a, b, out, 0, whole);
            $body::<Scalar<false>>(plan, a, b, out, whole, plan.c);
        }
    }};
}

/// One image: `input [H, W, C]`, `taps [k·k, C]` → `out [oh, ow, C]`, every value written.
pub fn forward(g: &DepthwiseGeometry, input: &[f32], taps: &[f32], out: &mut [MaybeUninit<f32>]) {
    let p = Plan::new(g);
    assert_eq!((input.len(), taps.len(), out.len()), (p.h * p.w * p.c, p.k * p.k * p.c, p.oh * p.ow * p.c), "depthwise forward: slice lengths");
    dispatch!(forward_body, p, input.as_ptr(), taps.as_ptr(), out.as_mut_ptr().cast())
}

/// One image: `grad_out [oh, ow, C]`, `taps [k·k, C]` → `grad_in [H, W, C]`, every value
/// written (zero where no output reads the pixel).
pub fn grad_input(g: &DepthwiseGeometry, grad_out: &[f32], taps: &[f32], grad_in: &mut [MaybeUninit<f32>]) {
    let p = Plan::new(g);
    assert_eq!((grad_out.len(), taps.len(), grad_in.len()), (p.oh * p.ow * p.c, p.k * p.k * p.c, p.h * p.w * p.c), "depthwise input gradient: slice lengths");
    dispatch!(grad_input_body, p, grad_out.as_ptr(), taps.as_ptr(), grad_in.as_mut_ptr().cast())
}

/// One image: `grad_out [oh, ow, C]`, `input [H, W, C]` → this image's `grad_taps [k·k, C]`
/// (overwritten).
pub fn grad_weight(g: &DepthwiseGeometry, grad_out: &[f32], input: &[f32], grad_taps: &mut [f32]) {
    let p = Plan::new(g);
    assert_eq!((grad_out.len(), input.len(), grad_taps.len()), (p.oh * p.ow * p.c, p.h * p.w * p.c, p.k * p.k * p.c), "depthwise weight gradient: slice lengths");
    grad_taps.fill(0.0);
    dispatch!(grad_weight_body, p, grad_out.as_ptr(), input.as_ptr(), grad_taps.as_mut_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward loops over every (output, tap) pair: the definition the kernels must meet.
    fn reference(g: &DepthwiseGeometry, input: &[f32], taps: &[f32], grad_out: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let p = Plan::new(g);
        let (mut out, mut grad_in, mut grad_taps) = (vec![0f32; p.oh * p.ow * p.c], vec![0f32; p.h * p.w * p.c], vec![0f32; p.k * p.k * p.c]);
        for oy in 0..p.oh {
            for ox in 0..p.ow {
                for ky in 0..p.k {
                    for kx in 0..p.k {
                        let (iy, ix) = ((oy * p.s + ky) as isize - p.top, (ox * p.s + kx) as isize - p.left);
                        if iy < 0 || ix < 0 || iy >= p.h as isize || ix >= p.w as isize {
                            continue;
                        }
                        let (o, i, t) = ((oy * p.ow + ox) * p.c, (iy as usize * p.w + ix as usize) * p.c, (ky * p.k + kx) * p.c);
                        for ch in 0..p.c {
                            out[o + ch] += input[i + ch] * taps[t + ch];
                            grad_in[i + ch] += grad_out[o + ch] * taps[t + ch];
                            grad_taps[t + ch] += grad_out[o + ch] * input[i + ch];
                        }
                    }
                }
            }
        }
        (out, grad_in, grad_taps)
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5) - 1.0).collect()
    }

    fn as_uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
        // SAFETY: f32 and MaybeUninit<f32> have the same layout; the values stay initialised.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len()) }
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        // A value left unwritten (NaN) counts as infinitely wrong.
        a.iter().zip(b).map(|(x, y)| if x.is_nan() { f32::INFINITY } else { (x - y).abs() }).fold(0.0, f32::max)
    }

    /// Every vector width (the dispatched one and each body directly), on shapes with whole
    /// pixel blocks, borders on every side, both strides and channels past the last vector.
    #[test]
    fn every_width_matches_the_definition() {
        for &(h, w, c, k, s) in &[(20, 23, 37, 3, 1), (19, 26, 21, 5, 2), (12, 30, 16, 5, 1), (9, 40, 8, 3, 2), (3, 2, 19, 5, 1), (1, 1, 3, 3, 2), (30, 17, 5, 5, 2), (8, 8, 24, 5, 1), (8, 8, 17, 3, 2)] {
            let g = DepthwiseGeometry { height: h, width: w, channels: c, kernel: k, stride: s };
            let p = Plan::new(&g);
            let (input, taps, grad_out) = (values(h * w * c, 1), values(k * k * c, 2), values(p.oh * p.ow * c, 3));
            let (want_out, want_in, want_taps) = reference(&g, &input, &taps, &grad_out);
            let (mut out, mut grad_in, mut grad_taps) = (vec![f32::NAN; want_out.len()], vec![f32::NAN; want_in.len()], vec![f32::NAN; want_taps.len()]);
            forward(&g, &input, &taps, as_uninit(&mut out));
            grad_input(&g, &grad_out, &taps, as_uninit(&mut grad_in));
            grad_weight(&g, &grad_out, &input, &mut grad_taps);
            let dispatched = [max_diff(&out, &want_out), max_diff(&grad_in, &want_in), max_diff(&grad_taps, &want_taps)];
            assert!(dispatched.iter().all(|d| *d < 1e-3), "{g:?} dispatched: {dispatched:?}");
            macro_rules! width {
                ($lanes:ty, $tail:ty) => {{
                    let whole = c / <$lanes>::L * <$lanes>::L;
                    let (mut out, mut grad_in, mut grad_taps) = (vec![f32::NAN; want_out.len()], vec![f32::NAN; want_in.len()], vec![0f32; want_taps.len()]);
                    // SAFETY: lengths as the public functions check them.
                    unsafe {
                        forward_body::<$lanes>(p, input.as_ptr(), taps.as_ptr(), out.as_mut_ptr(), 0, whole);
                        forward_body::<$tail>(p, input.as_ptr(), taps.as_ptr(), out.as_mut_ptr(), whole, c);
                        grad_input_body::<$lanes>(p, grad_out.as_ptr(), taps.as_ptr(), grad_in.as_mut_ptr(), 0, whole);
                        grad_input_body::<$tail>(p, grad_out.as_ptr(), taps.as_ptr(), grad_in.as_mut_ptr(), whole, c);
                        grad_weight_body::<$lanes>(p, grad_out.as_ptr(), input.as_ptr(), grad_taps.as_mut_ptr(), 0, whole);
                        grad_weight_body::<$tail>(p, grad_out.as_ptr(), input.as_ptr(), grad_taps.as_mut_ptr(), whole, c);
                    }
                    let diffs = [max_diff(&out, &want_out), max_diff(&grad_in, &want_in), max_diff(&grad_taps, &want_taps)];
                    assert!(diffs.iter().all(|d| *d < 1e-3), "{g:?} {}: {diffs:?}", stringify!($lanes));
                }};
            }
            width!(Portable, Scalar<false>);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY (inside the macro): the CPU has AVX2 and FMA.
                width!(x86::Avx2, Scalar<true>);
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                width!(x86::Avx512, Scalar<true>);
            }
        }
    }
}
