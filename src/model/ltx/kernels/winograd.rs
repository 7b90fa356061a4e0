//! The VAE's 3x3x3 convolutions with Winograd's minimal filtering F(2x2, 3x3)
//! over the two spatial taps and direct sums over the three temporal ones.
//!
//! Per output frame, each 2x2 block of outputs ("tile") of every output
//! channel is `A^T [sum over dt, c of U(dt, c) . V(t + dt, c)] A`, with `V =
//! B^T d B` the transform of the tile's 4x4 input patch `d` and `U = G g G^T`
//! that of the 3x3 kernel `g`: 16 products per tile and input channel instead
//! of 36, i.e. for each of the 16 transform positions one GEMM `[tiles, C] x
//! [C, O]` per temporal tap, on the f32 AVX-512 GEMM kernel. The multiply
//! count of the spatial part falls by 2.25x; the transforms are additions.
//! The rounding differs from the direct sum by a few ulps of the inputs'
//! scale (the transforms' coefficients are 0, +-1 and 1/2).
//!
//! Memory: the transformed weights are made per call (48 C O floats: 50 MB
//! at 512 x 512, hence the size limit in [`fits`]) and the transformed input
//! of three frames at a time, by bands of about 16 MB each (the output is
//! made band by band, every frame of a band in turn), so that the extra
//! memory grows with neither the clip nor the frame.

use candle_core::{Result, Tensor, bail};
use rayon::prelude::*;

use super::{
    F32_ROWS, Geom, OutVec, Prologue, ResSrc, SCRATCH, Scatter, SendPtr, epilogue_row, f32_gemm_raw, padded_input, with_buf,
    with_scratch, zeroed,
};

/// Output tiles per task (a multiple of the GEMM kernel's 12 rows).
const GROUP: usize = 12 * 12;
/// Output channel panels (of 32) per task.
const TASK_PANELS: usize = 4;
/// Floats of one frame's transformed input band (16 MB), and its least
/// task groups (enough tasks for the cores); the unit tests take one group
/// per band, so that their small frames make several bands.
#[cfg(not(test))]
const BAND_FLOATS: usize = 4 << 20;
#[cfg(not(test))]
const BAND_MIN_GROUPS: usize = 4;
#[cfg(test)]
const BAND_FLOATS: usize = 0;
#[cfg(test)]
const BAND_MIN_GROUPS: usize = 1;

/// Whether the Winograd path is worth it for `cin -> cout` on `h x w`
/// frames: transformed weights of at most 512 x 512 channels (at 1024 the
/// per-call weight transform costs more than it saves, and the direct kernel
/// is at its best), and enough tiles for the GEMMs: one task group up to 256
/// x 256 channels, two above (on 20 x 32 frames, 512 channels gain nothing).
pub(super) fn fits(cin: usize, cout: usize, h: usize, w: usize) -> bool {
    let tiles = h.div_ceil(2) * w.div_ceil(2);
    let least = if cin * cout > 256 * 256 { 2 * GROUP } else { GROUP };
    cin * cout <= 512 * 512 && tiles >= least && cin >= 16 && std::env::var_os("WEFT_LTX_NO_WINOGRAD").is_none()
}

/// `U = G g G^T` of one 3x3 kernel `g` (row-major), as 16 values.
#[inline]
fn transform_kernel(g: &[f32; 9]) -> [f32; 16] {
    // G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
    let col = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    let mut t = [[0f32; 3]; 4]; // G g: 4 x 3
    for j in 0..3 {
        let v = col(g[j], g[3 + j], g[6 + j]);
        for i in 0..4 {
            t[i][j] = v[i];
        }
    }
    let mut u = [0f32; 16];
    for i in 0..4 {
        let v = col(t[i][0], t[i][1], t[i][2]);
        u[i * 4..i * 4 + 4].copy_from_slice(&v);
    }
    u
}

/// `V = B^T d B` of one 4x4 patch (row-major), in place.
#[inline]
fn transform_patch(d: &mut [f32; 16]) {
    // B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
    let bt = |x: [f32; 4]| [x[0] - x[2], x[1] + x[2], x[2] - x[1], x[1] - x[3]];
    for j in 0..4 {
        let v = bt([d[j], d[4 + j], d[8 + j], d[12 + j]]);
        for i in 0..4 {
            d[i * 4 + j] = v[i];
        }
    }
    for i in 0..4 {
        let r = [d[i * 4], d[i * 4 + 1], d[i * 4 + 2], d[i * 4 + 3]];
        d[i * 4..i * 4 + 4].copy_from_slice(&bt(r));
    }
}

impl super::Conv3d {
    /// `x` `[B, C, T, H, W]` -> `[B, O, T, H, W]` (plain layout only), as
    /// [`super::Conv3d::forward`] with the weights `w(o, c, tap)` of a 3x3x3
    /// kernel.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_winograd(
        &self, w: &(dyn Fn(usize, usize, usize) -> f32 + Sync), x: &Tensor, causal: bool, pro: Prologue,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, c, t, h, wd) = x.dims5()?;
        if self.k != 3 {
            bail!("conv3d: the Winograd path takes 3x3x3 kernels, not {}", self.k);
        }
        let o_n = self.cout;
        let (th, tw) = (h.div_ceil(2), wd.div_ceil(2));
        let tiles = th * tw;
        // Padded input [B][T][hq][C][wq]: one zero row / column before, and
        // enough after for whole tiles.
        let (hq, wq) = (2 * th + 2, 2 * tw + 2);
        let row_len = c * wq;
        let q = padded_input(x, hq, wq, 1, pro)?;
        // Transformed weights, per (temporal tap, position): 32-column panels
        // `[panel][c][32]` (columns past O zero), as the GEMM's right operand.
        let panels = o_n.div_ceil(32);
        let plane = panels * c * 32;
        let mut u = zeroed::<f32>(48 * plane);
        {
            let up = SendPtr(u.as_mut_ptr());
            (0..3 * panels).into_par_iter().for_each(|job| {
                #[allow(clippy::redundant_locals)]
                let up = up;
                let (dt, p) = (job / panels, job % panels);
                for j in 0..32.min(o_n - p * 32) {
                    let o = p * 32 + j;
                    for ci in 0..c {
                        let g: [f32; 9] = std::array::from_fn(|s| w(o, ci, dt * 9 + s));
                        let v = transform_kernel(&g);
                        for (xi, &val) in v.iter().enumerate() {
                            // SAFETY: (dt, xi, p) planes are written by this job only.
                            unsafe { *up.0.add((dt * 16 + xi) * plane + (p * c + ci) * 32 + j) = val };
                        }
                    }
                }
            });
        }
        // Bands of whole task groups, so that the three frames' transformed
        // inputs stay small (about BAND_FLOATS each) whatever the frame size.
        let band_groups = (BAND_FLOATS / (16 * c * GROUP)).max(BAND_MIN_GROUPS).min(tiles.div_ceil(GROUP));
        let band_tiles = band_groups * GROUP;
        let n_bands = tiles.div_ceil(band_tiles);
        // Transformed input of one band of one frame: [position][group of 12
        // tiles][c][12] (tiles past the frame repeat its last one).
        let g12 = band_tiles / F32_ROWS;
        let vlen = 16 * g12 * c * F32_ROWS;
        let transform_band = |bi: usize, band: usize, st: usize, v: &mut [f32]| {
            let vp = SendPtr(v.as_mut_ptr());
            let first = band * band_tiles;
            let live = (tiles - first).min(band_tiles).div_ceil(F32_ROWS);
            (0..live).into_par_iter().for_each(|tg| {
                #[allow(clippy::redundant_locals)]
                let vp = vp;
                let base = (bi * t + st) * hq * row_len;
                for r in 0..F32_ROWS {
                    let tile = (first + tg * F32_ROWS + r).min(tiles - 1);
                    let (ty, tx) = (tile / tw, tile % tw);
                    for ci in 0..c {
                        let at = base + 2 * ty * row_len + ci * wq + 2 * tx;
                        let mut d: [f32; 16] = std::array::from_fn(|s| q[at + (s / 4) * row_len + s % 4]);
                        transform_patch(&mut d);
                        for (xi, &val) in d.iter().enumerate() {
                            // SAFETY: tile group tg's slots belong to this task.
                            unsafe { *vp.0.add(((xi * g12 + tg) * c + ci) * F32_ROWS + r) = val };
                        }
                    }
                }
            });
        };
        let dims = (b, o_n, t, h, wd);
        let g = Geom { cin: c, cout: o_n, t, h, w: wd, scatter: Scatter::Plain };
        let residual = residual.map(|r| r.contiguous()).transpose()?;
        if let Some(r) = &residual
            && r.dims5()? != dims
        {
            bail!("conv3d: residual {:?}, output {dims:?}", r.dims());
        }
        let mut out = OutVec::new(x.dtype(), b * o_n * t * h * wd)?;
        let optr = out.ptr();
        let left = if causal { 2 } else { 1 };
        let n_chunks = panels.div_ceil(TASK_PANELS);
        // Three frames' transforms of the band at a time, by input frame.
        type Slots = Vec<(Option<usize>, Vec<f32>)>;
        let mut slots: Slots = (0..3).map(|_| (None, zeroed(vlen))).collect();
        let run = |res: &ResSrc, slots: &mut Slots| {
            for bi in 0..b {
                for band in 0..n_bands {
                    let first = band * band_tiles;
                    let n_groups = (tiles - first).min(band_tiles).div_ceil(GROUP);
                    slots.iter_mut().for_each(|s| s.0 = None);
                    for to in 0..t {
                        let src: [usize; 3] = std::array::from_fn(|dt| (to + dt).saturating_sub(left).min(t - 1));
                        for &st in &src {
                            if slots.iter().any(|s| s.0 == Some(st)) {
                                continue;
                            }
                            let free = slots
                                .iter()
                                .position(|s| !s.0.is_some_and(|sf| src.contains(&sf)))
                                .expect("three slots for three taps");
                            let slot = &mut slots[free];
                            transform_band(bi, band, st, &mut slot.1);
                            slot.0 = Some(st);
                        }
                        let vs: [&[f32]; 3] = std::array::from_fn(|dt| {
                            &slots.iter().find(|s| s.0 == Some(src[dt])).expect("transformed frame").1[..]
                        });
                        (0..n_groups * n_chunks).into_par_iter().for_each(|task| {
                            let (gi, pc) = (task % n_groups, task / n_groups);
                            let t0 = first + gi * GROUP;
                            let rows = GROUP.min(tiles - t0);
                            let p0 = pc * TASK_PANELS;
                            let np = TASK_PANELS.min(panels - p0);
                            let sw = np * 32;
                            with_scratch(&SCRATCH, 16 * rows * sw, |acc| {
                                for xi in 0..16 {
                                    for (dt, v) in vs.iter().enumerate() {
                                        // SAFETY: AVX-512F (the caller's path); the group's
                                        // packed rows and panels p0.. p0 + np of plane (dt, xi)
                                        // exist; acc holds 16 x rows x sw floats.
                                        unsafe {
                                            f32_gemm_raw(
                                                v.as_ptr().add((xi * g12 + gi * GROUP / F32_ROWS) * c * F32_ROWS),
                                                rows,
                                                u.as_ptr().add((dt * 16 + xi) * plane + p0 * c * 32),
                                                c,
                                                np,
                                                acc.as_mut_ptr().add(xi * rows * sw),
                                                sw,
                                                32,
                                                dt > 0,
                                            )
                                        };
                                    }
                                }
                                self.winograd_epilogue(acc, rows, sw, t0, tw, (bi, to), p0 * 32, &g, optr, res);
                            });
                        });
                    }
                }
            }
        };
        match &residual {
            Some(r) => with_buf(r, |rb| {
                run(&ResSrc::Out(rb), &mut slots);
                Ok(())
            })?,
            None => run(&ResSrc::None, &mut slots),
        }
        Ok(out.into_tensor(dims))
    }

    /// `Y = A^T M A` for the tiles `t0..t0 + rows` and output channels `o0..`
    /// of one task (`acc` = M as `[position][tile][sw]`), then bias, residual
    /// and store by output row segments.
    #[allow(clippy::too_many_arguments)]
    fn winograd_epilogue(
        &self, acc: &[f32], rows: usize, sw: usize, t0: usize, tw: usize, (bi, to): (usize, usize), o0: usize,
        g: &Geom, optr: super::OutPtr, res: &ResSrc,
    ) {
        let on = (self.cout - o0).min(sw);
        let (h, w) = (g.h, g.w);
        // Runs of tiles in one tile row: (first tile, count).
        let mut runs = Vec::new();
        let mut tl = t0;
        while tl < t0 + rows {
            let n = (tw - tl % tw).min(t0 + rows - tl);
            runs.push((tl, n));
            tl += n;
        }
        with_scratch(&super::ROW, 2 * 2 * tw * on, |stage| {
            for &(first, n) in &runs {
                let (ty, tx0) = (first / tw, first % tw);
                // stage[o][i][x]: the two output rows of the run.
                let len = 2 * n;
                for r in 0..n {
                    let tr = first - t0 + r;
                    let m = |xi: usize| &acc[(xi * rows + tr) * sw..][..on];
                    let mm: [&[f32]; 16] = std::array::from_fn(m);
                    // The same channel of 16 slices and a strided store: an index loop.
                    #[allow(clippy::needless_range_loop)]
                    for o in 0..on {
                        let v = |a: usize, bb: usize| mm[a * 4 + bb][o];
                        // Rows of A^T M: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3.
                        let s0: [f32; 4] = std::array::from_fn(|bb| v(0, bb) + v(1, bb) + v(2, bb));
                        let s1: [f32; 4] = std::array::from_fn(|bb| v(1, bb) - v(2, bb) - v(3, bb));
                        let at = o * 2 * len + 2 * r;
                        stage[at] = s0[0] + s0[1] + s0[2];
                        stage[at + 1] = s0[1] - s0[2] - s0[3];
                        stage[at + len] = s1[0] + s1[1] + s1[2];
                        stage[at + len + 1] = s1[1] - s1[2] - s1[3];
                    }
                }
                let x0 = 2 * tx0;
                let xn = len.min(w - x0);
                for o in 0..on {
                    for i in 0..2 {
                        let y = 2 * ty + i;
                        if y >= h {
                            continue;
                        }
                        let vals = &mut stage[o * 2 * len + i * len..][..xn];
                        epilogue_row(g, optr, res, self.bias[o0 + o], bi, o0 + o, to, y, x0, vals);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_invert_on_one_tile() {
        // A 4x4 patch against a 3x3 kernel: A^T (U . V) A is the valid 2x2
        // correlation.
        let d: [f32; 16] = std::array::from_fn(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3);
        let g: [f32; 9] = std::array::from_fn(|i| ((i * 5 % 7) as f32 - 3.0) * 0.2);
        let mut v = d;
        transform_patch(&mut v);
        let u = transform_kernel(&g);
        let m: [f32; 16] = std::array::from_fn(|i| u[i] * v[i]);
        let s0: [f32; 4] = std::array::from_fn(|b| m[b] + m[4 + b] + m[8 + b]);
        let s1: [f32; 4] = std::array::from_fn(|b| m[4 + b] - m[8 + b] - m[12 + b]);
        let y = [s0[0] + s0[1] + s0[2], s0[1] - s0[2] - s0[3], s1[0] + s1[1] + s1[2], s1[1] - s1[2] - s1[3]];
        for i in 0..2 {
            for j in 0..2 {
                let want: f32 = (0..3).flat_map(|a| (0..3).map(move |b| (a, b))).map(|(a, b)| d[(i + a) * 4 + j + b] * g[a * 3 + b]).sum();
                assert!((y[i * 2 + j] - want).abs() < 1e-5, "({i}, {j}): {} vs {want}", y[i * 2 + j]);
            }
        }
    }
}
