//! The 1×1 convolution's matrix product, `out = act(W · X + b [+ residual])`, as a direct
//! AVX-512 kernel where the CPU has AVX-512F.
//!
//! `W` is `[C_out, C_in]` (constant: packed once at load into panels of [`PANEL_ROWS`] output
//! channels, each stored channel-in-major), `X` is `[C_in, H·W]` straight from the NCHW
//! activation (no packing: a column block of it stays in L1/L2 across all panels). Each tile
//! keeps [`PANEL_ROWS`] × up to 64 outputs in 16 registers over the whole `C_in` loop, starting
//! from the bias, and stores once through the residual add and ReLU6, so no pass over the
//! output is left for bias, activation or the block's skip connection.
//!
//! On wasm32 + SIMD128 the same product is a SIMD128 kernel ([`wasm`]): 4 output channels ×
//! 8 columns in registers, fused multiply-adds where the module is built with relaxed SIMD
//! (`f32x4.relaxed_madd`), multiply then add otherwise. Where the CPU lacks AVX-512 (native)
//! the layer uses the `gemm` crate instead, which picks its own AVX2/FMA kernel.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Output channels per packed weight panel.
pub const PANEL_ROWS: usize = 4;

/// Output elements below which a group of panels is not split further between threads.
const MIN_OUTPUTS_PER_TASK: usize = 8192;

/// `[C_out, C_in]` weights as `ceil(C_out / 4)` panels of `[C_in][4]`, the missing rows of the
/// last panel zero.
#[derive(Debug, Clone)]
pub struct PackedWeight {
    panels: Vec<f32>,
    c_out: usize,
    c_in: usize,
}

impl PackedWeight {
    pub fn new(weight: &[f32], c_out: usize, c_in: usize) -> Self {
        assert_eq!(weight.len(), c_out * c_in, "weight is not [C_out, C_in]");
        let panel_count = c_out.div_ceil(PANEL_ROWS);
        let mut panels = vec![0f32; panel_count * c_in * PANEL_ROWS];
        for (o, row) in weight.chunks_exact(c_in).enumerate() {
            let panel = &mut panels[(o / PANEL_ROWS) * c_in * PANEL_ROWS..][..c_in * PANEL_ROWS];
            for (i, &w) in row.iter().enumerate() {
                panel[i * PANEL_ROWS + o % PANEL_ROWS] = w;
            }
        }
        Self { panels, c_out, c_in }
    }
}

/// What happens to each output before it is stored.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// `[C_out]`, the accumulators' starting value.
    pub bias: &'a [f32],
    /// Added after the product (the MBConv skip connection), `[C_out, H·W]` like the output.
    pub residual: Option<&'a [f32]>,
    /// Clamp to [0, 6] last.
    pub relu6: bool,
}

/// Whether [`pointwise`] can run on this CPU (else the caller uses its portable product).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
    {
        false
    }
}

/// `out[o, p] = act(bias[o] + Σ_i W[o, i] · x[i, p] [+ residual[o, p]])` for one image, the
/// output channels spread over `threads` rayon workers. `None` where [`available`] is false.
pub fn pointwise(out: &mut [MaybeUninit<f32>], x: &[f32], columns: usize, weight: &PackedWeight, epilogue: Epilogue, threads: usize) -> Option<()> {
    let (c_out, c_in) = (weight.c_out, weight.c_in);
    assert_eq!(x.len(), c_in * columns, "input is not [C_in, H·W]");
    assert_eq!(out.len(), c_out * columns, "output is not [C_out, H·W]");
    assert_eq!(epilogue.bias.len(), c_out, "one bias per output channel");
    if let Some(residual) = epilogue.residual {
        assert_eq!(residual.len(), out.len(), "residual is not shaped like the output");
    }
    if !available() || columns == 0 {
        return if columns == 0 && available() { Some(()) } else { None };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        // One thread on wasm; the kernel walks column blocks itself.
        let _ = threads;
        wasm::product(out, x, columns, c_in, &weight.panels, c_out, epilogue);
        return Some(());
    }
    #[allow(unreachable_code)]
    {
        native(out, x, columns, weight, epilogue, threads);
        Some(())
    }
}

/// The AVX-512 product over column blocks × pairs of packed panels (8 output channels).
///
/// Column blocks outside, pairs inside: one block of `x` (c_in × block columns) is read from
/// memory once and then from cache by every pair. Threads take whole column blocks where
/// there are enough of them, so `x` is still read once (a split by output channels had each
/// thread stream all of `x`: the 144 → 24 projection at 56×56 ran slower on two threads than
/// on one); else groups of pairs.
#[allow(unused_variables)]
fn native(out: &mut [MaybeUninit<f32>], x: &[f32], columns: usize, weight: &PackedWeight, epilogue: Epilogue, threads: usize) {
    let (c_out, c_in) = (weight.c_out, weight.c_in);
    let pair_rows = 2 * PANEL_ROWS;
    let pairs = c_out.div_ceil(pair_rows);
    let block_columns = block_columns(c_in).min(columns);
    let blocks: Vec<std::ops::Range<usize>> = (0..columns).step_by(block_columns).map(|b| b..(b + block_columns).min(columns)).collect();
    let target = SharedOut(out.as_mut_ptr());
    // Output channels `pairs` × columns `block`.
    let run = |pairs: std::ops::Range<usize>, block: std::ops::Range<usize>| {
        for pair in pairs {
            let row0 = pair * pair_rows;
            let row_count = (c_out - row0).min(pair_rows);
            let panel = row0 / PANEL_ROWS;
            let panel_len = c_in * PANEL_ROWS;
            let weights = &weight.panels[panel * panel_len..(panel + row_count.div_ceil(PANEL_ROWS)) * panel_len];
            let residual = epilogue.residual.map(|r| &r[row0 * columns..(row0 + row_count) * columns]);
            let bias = &epilogue.bias[row0..row0 + row_count];
            // SAFETY: AVX-512F checked by `available`; rows row0..row0+row_count of the
            // `c_out × columns` output, which each task writes only in its own columns
            // (`block`) or its own rows (`pairs`), so no two tasks write the same value.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                avx512::rows(target.at(row0 * columns), x, columns, c_in, weights, bias, residual, epilogue.relu6, block.clone())
            };
        }
    };
    // As few tasks as MIN_OUTPUTS_PER_TASK allows, evened out (24 pairs in tasks of 21 would
    // leave one thread 3) and a whole number per thread (7 tasks on 2 threads is 4 against 3).
    let tasks = pairs.div_ceil(MIN_OUTPUTS_PER_TASK.div_ceil(pair_rows * columns).max(1));
    let tasks = if tasks > 1 { tasks.div_ceil(threads.max(1)) * threads.max(1) } else { tasks };
    let pairs_per_task = pairs.div_ceil(tasks.max(1));
    if threads > 1 && blocks.len() >= 2 * threads {
        // One contiguous share of the columns per thread (whole vectors, the last one shorter),
        // walked in blocks.
        let share = columns.div_ceil(threads).div_ceil(16) * 16;
        (0..threads).into_par_iter().for_each(|thread| {
            let mine = (thread * share).min(columns)..((thread + 1) * share).min(columns);
            for start in mine.clone().step_by(block_columns) {
                run(0..pairs, start..(start + block_columns).min(mine.end));
            }
        });
    } else if threads > 1 && pairs > pairs_per_task {
        (0..pairs.div_ceil(pairs_per_task)).into_par_iter().for_each(|task| {
            let mine = task * pairs_per_task..((task + 1) * pairs_per_task).min(pairs);
            for block in &blocks {
                run(mine.clone(), block.clone());
            }
        });
    } else {
        for block in &blocks {
            run(0..pairs, block.clone());
        }
    }
}

/// The output's base pointer, shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut MaybeUninit<f32>);
// SAFETY: tasks write disjoint elements (see `native`), and the buffer outlives them.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `offset` is inside the output.
    #[allow(dead_code)]
    unsafe fn at(&self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset).cast() }
    }
}

/// Output columns (pixels) per register tile of the native kernel: three 16-lane vectors. With
/// 8 output channels that is 24 accumulators, plus 3 column vectors and a broadcast weight: 28
/// of the 32 registers. Each column vector loaded serves 8 multiply-adds (4 with one panel), so
/// the stream of `x` from L2 stays under what the FMA units consume.
const TILE_COLUMNS: usize = 48;

/// Columns per block of `x` in the native kernel: about 64 KiB of `x`, in whole tiles.
fn block_columns(c_in: usize) -> usize {
    ((16 * 1024 / c_in.max(1)) / TILE_COLUMNS).max(1) * TILE_COLUMNS
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{PANEL_ROWS, TILE_COLUMNS};

    /// Up to 8 output channels (`bias.len()`; `weights` holds their one or two packed panels)
    /// over the columns `block`, in tiles of 48 columns (the last one masked).
    ///
    /// # Safety
    /// AVX-512F; `x` is `c_in × columns`, `weights` `panels × c_in × 4`, `rows` points to
    /// `r × columns` writable values and `residual` holds as many, `bias` is `r` long; no other
    /// thread writes columns `block` of those rows meanwhile.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn rows(
        rows: *mut f32,
        x: &[f32],
        columns: usize,
        c_in: usize,
        weights: &[f32],
        bias: &[f32],
        residual: Option<&[f32]>,
        relu6: bool,
        block: std::ops::Range<usize>,
    ) {
        let two_panels = bias.len() > PANEL_ROWS;
        let mut start = block.start;
        while start < block.end {
            let width = (block.end - start).min(TILE_COLUMNS);
            let args = (rows, x, columns, c_in, weights, bias, residual, relu6, start, width);
            match (two_panels, width.div_ceil(16)) {
                (true, 3) => tile::<8, 3>(args),
                (true, 2) => tile::<8, 2>(args),
                (true, _) => tile::<8, 1>(args),
                (false, 3) => tile::<4, 3>(args),
                (false, 2) => tile::<4, 2>(args),
                (false, _) => tile::<4, 1>(args),
            }
            start += width;
        }
    }

    type TileArgs<'a> = (*mut f32, &'a [f32], usize, usize, &'a [f32], &'a [f32], Option<&'a [f32]>, bool, usize, usize);

    /// `R` output channels (4: one panel, 8: two) × `V` 16-lane vectors of the columns
    /// `start..start + width`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize, const V: usize>(
        (rows, x, columns, c_in, weights, bias, residual, relu6, start, width): TileArgs,
    ) {
        // Lanes of the last vector that are inside the tile.
        let tail = width - (V - 1) * 16;
        let last_mask: __mmask16 = if tail >= 16 { 0xffff } else { (1u16 << tail) - 1 };
        let mask = |v: usize| if v + 1 == V { last_mask } else { 0xffff };
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            let b = _mm512_set1_ps(bias.get(r).copied().unwrap_or(0.0));
            *row = [b; V];
        }
        // Rows 4..8 come from the second panel, which runs alongside the first.
        let second = if R > PANEL_ROWS { c_in * PANEL_ROWS } else { 0 };
        let (mut xp, mut wp) = (x.as_ptr().add(start), weights.as_ptr());
        for _ in 0..c_in {
            let mut xv = [_mm512_setzero_ps(); V];
            for (v, value) in xv.iter_mut().enumerate() {
                *value = _mm512_maskz_loadu_ps(mask(v), xp.add(v * 16));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let at = if r < PANEL_ROWS { r } else { second + r - PANEL_ROWS };
                let w = _mm512_set1_ps(*wp.add(at));
                for (a, &xv) in row.iter_mut().zip(&xv) {
                    *a = _mm512_fmadd_ps(w, xv, *a);
                }
            }
            xp = xp.add(columns);
            wp = wp.add(PANEL_ROWS);
        }
        let (zero, six) = (_mm512_setzero_ps(), _mm512_set1_ps(6.0));
        for (r, row) in acc.iter().enumerate().take(bias.len()) {
            for (v, &a) in row.iter().enumerate() {
                let at = r * columns + start + v * 16;
                let mut a = a;
                if let Some(residual) = residual {
                    a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(mask(v), residual.as_ptr().add(at)));
                }
                if relu6 {
                    a = _mm512_min_ps(_mm512_max_ps(a, zero), six);
                }
                _mm512_mask_storeu_ps(rows.add(at), mask(v), a);
            }
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use core::arch::wasm32::*;
    use std::mem::MaybeUninit;

    use crate::nn::wasm_simd::madd;

    use super::{Epilogue, PANEL_ROWS};

    /// Columns per block: the block of `x` (`c_in` × 64 floats) stays in cache across all panels.
    const BLOCK_COLUMNS: usize = 64;

    /// The whole product for one image; slices checked by the caller (`pointwise`).
    pub fn product(out: &mut [MaybeUninit<f32>], x: &[f32], columns: usize, c_in: usize, panels: &[f32], c_out: usize, epilogue: Epilogue) {
        assert!(panels.len() >= c_out.div_ceil(PANEL_ROWS) * c_in * PANEL_ROWS);
        let mut block = 0;
        while block < columns {
            let end = (block + BLOCK_COLUMNS).min(columns);
            for panel in 0..c_out.div_ceil(PANEL_ROWS) {
                let row0 = panel * PANEL_ROWS;
                let rows = (c_out - row0).min(PANEL_ROWS);
                let weights = &panels[panel * c_in * PANEL_ROWS..(panel + 1) * c_in * PANEL_ROWS];
                let mut bias = [0f32; PANEL_ROWS];
                bias[..rows].copy_from_slice(&epilogue.bias[row0..row0 + rows]);
                let mut c = block;
                // SAFETY: columns c..c+8 (or +4) of rows row0..row0+rows are inside `x`, `out`
                // and the residual (all `[_, columns]`), `weights` is `c_in × 4`.
                unsafe {
                    while c + 8 <= end {
                        tile::<2>(out, x, columns, c_in, weights, &bias, rows, row0, c, epilogue);
                        c += 8;
                    }
                    while c + 4 <= end {
                        tile::<1>(out, x, columns, c_in, weights, &bias, rows, row0, c, epilogue);
                        c += 4;
                    }
                }
                for c in c..end {
                    for r in 0..rows {
                        let mut a = bias[r];
                        for i in 0..c_in {
                            a += weights[i * PANEL_ROWS + r] * x[i * columns + c];
                        }
                        let at = (row0 + r) * columns + c;
                        if let Some(residual) = epilogue.residual {
                            a += residual[at];
                        }
                        out[at].write(if epilogue.relu6 { a.clamp(0.0, 6.0) } else { a });
                    }
                }
            }
            block = end;
        }
    }

    /// 4 output channels (`rows` of them stored) × `V` vectors of 4 columns from column `c`.
    ///
    /// # Safety
    /// `c + 4V <= columns`, `row0 + rows <= c_out`, the slices shaped as in [`product`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const V: usize>(
        out: &mut [MaybeUninit<f32>],
        x: &[f32],
        columns: usize,
        c_in: usize,
        weights: &[f32],
        bias: &[f32; PANEL_ROWS],
        rows: usize,
        row0: usize,
        c: usize,
        epilogue: Epilogue,
    ) {
        let mut acc = [[f32x4_splat(0.0); V]; PANEL_ROWS];
        for (r, row) in acc.iter_mut().enumerate() {
            *row = [f32x4_splat(bias[r]); V];
        }
        let (mut xp, mut wp) = (x.as_ptr().add(c), weights.as_ptr());
        for _ in 0..c_in {
            let mut xv = [f32x4_splat(0.0); V];
            for (v, value) in xv.iter_mut().enumerate() {
                *value = v128_load(xp.add(4 * v) as *const v128);
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let w = v128_load32_splat(wp.add(r) as *const u32);
                for (a, &xv) in row.iter_mut().zip(&xv) {
                    *a = madd(w, xv, *a);
                }
            }
            xp = xp.add(columns);
            wp = wp.add(PANEL_ROWS);
        }
        let (zero, six) = (f32x4_splat(0.0), f32x4_splat(6.0));
        for (r, row) in acc.iter().enumerate().take(rows) {
            for (v, &a) in row.iter().enumerate() {
                let at = (row0 + r) * columns + c + 4 * v;
                let mut a = a;
                if let Some(residual) = epilogue.residual {
                    a = f32x4_add(a, v128_load(residual.as_ptr().add(at) as *const v128));
                }
                if epilogue.relu6 {
                    a = f32x4_pmin(six, f32x4_pmax(zero, a));
                }
                v128_store(out.as_mut_ptr().add(at).cast::<v128>(), a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// The shapes reach every native path on two and three threads: one task, column shares
    /// (40 × 144 × 784; 17 × 200 × 196, whose shares end inside a block) and output-pair tasks
    /// with a last pair of 3 rows (203 × 64 × 49).
    #[test]
    fn matches_a_double_precision_product_on_random_shapes() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: the portable product is tested by pointwise.rs");
            return;
        }
        for (case, &(c_out, c_in, columns)) in
            [(1, 1, 1), (3, 5, 17), (4, 16, 64), (5, 7, 65), (9, 33, 130), (24, 96, 49), (13, 3, 200), (40, 144, 784), (17, 200, 196), (203, 64, 49)].iter().enumerate()
        {
            let (w, x, b, r) = (values(c_out * c_in, 1), values(c_in * columns, 2), values(c_out, 3), values(c_out * columns, 4));
            let packed = PackedWeight::new(&w, c_out, c_in);
            for (residual, relu6, threads) in [(false, false, 1), (true, false, 2), (false, true, 2), (true, true, 1), (true, true, 3)] {
                // NaN where the kernel fails to write.
                let mut out = vec![MaybeUninit::new(f32::NAN); c_out * columns];
                let epilogue = Epilogue { bias: &b, residual: residual.then_some(&r[..]), relu6 };
                pointwise(&mut out, &x, columns, &packed, epilogue, threads).unwrap();
                // SAFETY: every element was initialised (NaN) before the call.
                let out: Vec<f32> = out.into_iter().map(|v| unsafe { v.assume_init() }).collect();
                for o in 0..c_out {
                    for p in 0..columns {
                        let mut e = b[o] as f64 + (0..c_in).map(|i| w[o * c_in + i] as f64 * x[i * columns + p] as f64).sum::<f64>();
                        if residual {
                            e += r[o * columns + p] as f64;
                        }
                        if relu6 {
                            e = e.clamp(0.0, 6.0);
                        }
                        let got = out[o * columns + p] as f64;
                        assert!((got - e).abs() < 1e-4 * (1.0 + e.abs()), "case {case} [{o}, {p}]: {got} vs {e}");
                    }
                }
            }
        }
    }
}
