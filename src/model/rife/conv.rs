//! Fast CPU convolutions for RIFE's IFNet.
//!
//! candle's CPU `conv2d` lowers every convolution to a full im2col buffer and one
//! matmul; for IFNet's 3x3 convolutions that costs 1.2-3.5x PyTorch's time. This
//! module computes the few convolution shapes IFNet uses directly:
//!
//! * the input is copied once into a zero-padded channels-last (NHWC) buffer;
//! * a 3x3 convolution is then 3 GEMMs (one per kernel row `ky`) whose left
//!   operand is a strided view of that buffer: for output pixel `q` (flat index over
//!   padded-width rows), the three taps `kx` of row `ky` and all input channels are
//!   `3 * C_in` consecutive floats starting at `(q + ky * Wp) * C_in`, so no im2col
//!   buffer is needed (the two pad columns of each output row are computed and
//!   discarded);
//! * stride 2 uses the same trick on a buffer whose even and odd padded rows are
//!   stored as two separate planes (left-operand row stride `2 * C_in`);
//! * the 4x4 stride-2 transposed convolution is four 2x2 sub-pixel convolutions,
//!   one per output parity (2 GEMMs each), which also makes a following
//!   `PixelShuffle(2)` free;
//! * the work is split into bands of output rows run in parallel on rayon's pool;
//!   each band's GEMMs accumulate into a small cache-resident buffer and a final
//!   pass adds the bias (and for ResConv the per-channel scale and the residual),
//!   applies the LeakyReLU and writes the NCHW output.
//!
//! Anything else (non-CPU tensors, other kernel geometries) falls back to candle's
//! own `conv2d` / `conv_transpose2d` with the same semantics.

use std::cell::RefCell;

use candle_core::{DType, Result, Storage, Tensor, bail};
use gemm::Parallelism;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// 3x3, stride 1, padding 1.
    S1,
    /// 3x3, stride 2, padding 1.
    S2,
    /// Transposed 4x4, stride 2, padding 1.
    Up,
}

/// Weights rearranged for the GEMMs (f32, CPU).
struct Prepared {
    kind: Kind,
    /// `S1`/`S2`: `[ky][kx * cin + i][o]`; `Up`: `[ry * 2 + rx][dy][dx * cin + i][o]`.
    w: Vec<f32>,
    b: Vec<f32>,
    /// `S1`/`S2` on AVX-512: channel-block width `16 * V` and the weights as
    /// `[o / (16 V)][ky][kx * cin + i][16 V]` for [`avx512::tile`].
    panel: Option<(usize, Vec<f32>)>,
}

impl Prepared {
    fn new(kind: Kind, w: Vec<f32>, b: Vec<f32>, cin: usize, cout: usize) -> Self {
        let panel = if kind != Kind::Up && avx512::available() {
            [2usize, 1].into_iter().find(|v| cout.is_multiple_of(16 * v)).map(|v| {
                let (k, nb) = (3 * cin, 16 * v);
                let mut panel = vec![0f32; w.len()];
                for ob in 0..cout / nb {
                    for t in 0..3 {
                        for kk in 0..k {
                            let src = &w[(t * k + kk) * cout + ob * nb..][..nb];
                            panel[((ob * 3 + t) * k + kk) * nb..][..nb].copy_from_slice(src);
                        }
                    }
                }
                (v, panel)
            })
        } else {
            None
        };
        Self { kind, w, b, panel }
    }
}

/// A convolution (or transposed convolution) with prepared weights.
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
    transposed: bool,
    cin: usize,
    cout: usize,
    fast: Option<Prepared>,
}

/// What the final pass does with `acc = conv(x)` (without bias).
#[derive(Clone, Copy)]
enum Epilogue<'a> {
    /// `act(acc + b)`.
    Plain(Option<f32>),
    /// `leaky(( acc + b) * beta + x, slope)`.
    Residual { beta: &'a [f32], x: &'a [f32], slope: f32 },
}

#[inline(always)]
fn leaky(v: f32, slope: f32) -> f32 {
    if v >= 0.0 { v } else { v * slope }
}

fn tensor_f32_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

impl Conv {
    /// `weight` `[O, I, kh, kw]`, `bias` `[O]` (any float dtype, any device).
    pub fn conv2d(weight: &Tensor, bias: &Tensor, stride: usize, padding: usize) -> Result<Self> {
        let (cout, cin, kh, kw) = weight.dims4()?;
        if bias.elem_count() != cout {
            bail!("conv2d: bias has {} elements, expected {cout}", bias.elem_count());
        }
        let kind = match (kh, kw, stride, padding) {
            (3, 3, 1, 1) => Some(Kind::S1),
            (3, 3, 2, 1) => Some(Kind::S2),
            _ => None,
        };
        let fast = match kind {
            Some(kind) if weight.device().is_cpu() => {
                let src = tensor_f32_vec(weight)?;
                let k = 3 * cin;
                let mut w = vec![0f32; 3 * k * cout];
                for o in 0..cout {
                    for i in 0..cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                w[(ky * k + kx * cin + i) * cout + o] =
                                    src[((o * cin + i) * 3 + ky) * 3 + kx];
                            }
                        }
                    }
                }
                Some(Prepared::new(kind, w, tensor_f32_vec(bias)?, cin, cout))
            }
            _ => None,
        };
        Ok(Self {
            weight: weight.clone(),
            bias: bias.clone(),
            stride,
            padding,
            transposed: false,
            cin,
            cout,
            fast,
        })
    }

    /// `weight` `[I, O, kh, kw]` (PyTorch's ConvTranspose2d layout), `bias` `[O]`.
    pub fn conv_transpose2d(
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let (cin, cout, kh, kw) = weight.dims4()?;
        if bias.elem_count() != cout {
            bail!("conv_transpose2d: bias has {} elements, expected {cout}", bias.elem_count());
        }
        let fast = if (kh, kw, stride, padding) == (4, 4, 2, 1) && weight.device().is_cpu() {
            let src = tensor_f32_vec(weight)?;
            let k = 2 * cin;
            let mut w = vec![0f32; 8 * k * cout];
            // Output row 2m + ry takes padded input rows m + ry + dy (dy in 0..2) with
            // kernel row ky = 3 - 2 dy - ry; the same for columns.
            for ry in 0..2 {
                for rx in 0..2 {
                    for dy in 0..2 {
                        for dx in 0..2 {
                            let ky = 3 - 2 * dy - ry;
                            let kx = 3 - 2 * dx - rx;
                            for i in 0..cin {
                                for o in 0..cout {
                                    w[(((ry * 2 + rx) * 2 + dy) * k + dx * cin + i) * cout + o] =
                                        src[((i * cout + o) * 4 + ky) * 4 + kx];
                                }
                            }
                        }
                    }
                }
            }
            Some(Prepared::new(Kind::Up, w, tensor_f32_vec(bias)?, cin, cout))
        } else {
            None
        };
        Ok(Self {
            weight: weight.clone(),
            bias: bias.clone(),
            stride,
            padding,
            transposed: true,
            cin,
            cout,
            fast,
        })
    }

    /// `x`: `[N, I, H, W]`. `act`: LeakyReLU slope to fuse.
    pub fn forward(&self, x: &Tensor, act: Option<f32>) -> Result<Tensor> {
        match self.fast_for(x) {
            Some(p) => self.forward_fast(p, x, Epilogue::Plain(act), false),
            None => {
                let y = self.reference(x)?;
                match act {
                    Some(s) => leaky_t(&y, s),
                    None => Ok(y),
                }
            }
        }
    }

    /// The convolution of the channel concatenation of `parts` (each
    /// `[1, C_k, H, W]`), with `act` fused, without building the
    /// concatenated tensor.
    pub fn forward_cat(&self, parts: &[&Tensor], act: Option<f32>) -> Result<Tensor> {
        let cin: usize = parts.iter().map(|t| t.dim(1).unwrap_or(0)).sum();
        let fast = match &self.fast {
            Some(p) if cin == self.cin && parts.iter().all(|t| t.device().is_cpu() && t.rank() == 4 && t.dim(0).ok() == Some(1)) => Some(p),
            _ => None,
        };
        let Some(p) = fast else {
            return self.forward(&Tensor::cat(parts, 1)?, act);
        };
        let (_, _, h, w) = parts[0].dims4()?;
        let f32s = parts.iter().map(|t| t.to_dtype(DType::F32)?.contiguous()).collect::<Result<Vec<_>>>()?;
        if f32s.iter().any(|t| t.dims()[2..] != [h, w]) {
            bail!("forward_cat: parts differ in size");
        }
        let guards: Vec<_> = f32s.iter().map(|t| t.storage_and_layout()).collect();
        let mut planes: Vec<&[f32]> = Vec::with_capacity(cin);
        for ((storage, layout), t) in guards.iter().zip(&f32s) {
            let Storage::Cpu(cpu) = &**storage else { bail!("expected a CPU tensor") };
            planes.extend(cpu.as_slice::<f32>()?[layout.start_offset()..][..t.elem_count()].chunks_exact(h * w));
        }
        let g = Geometry::new(p.kind, self.cin, h, w);
        let mut out = vec![0f32; self.cout * g.ho * g.wo];
        run(p, &g, self.cout, &planes, Epilogue::Plain(act), false, &mut out);
        let (ho, wo) = (g.ho, g.wo);
        drop(planes);
        drop(guards);
        Tensor::from_vec(out, (1, self.cout, ho, wo), parts[0].device())
    }

    /// Transposed convolution followed by `PixelShuffle(2)`: `[N, O / 4, 4H, 4W]`.
    pub fn forward_shuffled(&self, x: &Tensor) -> Result<Tensor> {
        if !self.transposed || !self.cout.is_multiple_of(4) {
            bail!("forward_shuffled needs a transposed convolution with C_out % 4 == 0");
        }
        match self.fast_for(x) {
            Some(p) => self.forward_fast(p, x, Epilogue::Plain(None), true),
            None => {
                let y = self.reference(x)?;
                let (n, c, h, w) = y.dims4()?;
                y.reshape((n, c / 4, 2, 2, h, w))?
                    .permute((0, 1, 4, 2, 5, 3))?
                    .reshape((n, c / 4, h * 2, w * 2))
            }
        }
    }

    /// `leaky(conv(x) * beta + x, slope)`: IFNet's ResConv. `beta`: `[1, C, 1, 1]`.
    pub fn forward_residual(&self, x: &Tensor, beta: &Tensor, slope: f32) -> Result<Tensor> {
        if self.transposed || self.stride != 1 || self.cin != self.cout {
            bail!("forward_residual needs a stride-1 convolution with C_in == C_out");
        }
        if beta.elem_count() != self.cout {
            bail!("forward_residual: beta has {} elements, expected {}", beta.elem_count(), self.cout);
        }
        match self.fast_for(x) {
            Some(p) => {
                let beta = tensor_f32_vec(beta)?;
                let xs = x.to_dtype(DType::F32)?.contiguous()?;
                let (storage, layout) = xs.storage_and_layout();
                let Storage::Cpu(cpu) = &*storage else { bail!("expected a CPU tensor") };
                let xv = &cpu.as_slice::<f32>()?[layout.start_offset()..][..xs.elem_count()];
                let epi = Epilogue::Residual { beta: &beta, x: xv, slope };
                let y = self.forward_fast(p, &xs, epi, false)?;
                y.to_dtype(x.dtype())
            }
            None => {
                let beta = beta.reshape((1, self.cout, 1, 1))?.to_dtype(x.dtype())?;
                let y = self.reference(x)?.broadcast_mul(&beta)?.add(x)?;
                leaky_t(&y, slope)
            }
        }
    }

    fn fast_for(&self, x: &Tensor) -> Option<&Prepared> {
        match &self.fast {
            Some(p) if x.device().is_cpu() && x.rank() == 4 && x.dims()[1] == self.cin => Some(p),
            _ => None,
        }
    }

    /// candle's convolution plus bias.
    fn reference(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.to_dtype(x.dtype())?;
        let b = self.bias.to_dtype(x.dtype())?.reshape((1, self.cout, 1, 1))?;
        let y = if self.transposed {
            x.conv_transpose2d(&w, self.padding, 0, self.stride, 1)?
        } else {
            x.conv2d(&w, self.padding, self.stride, 1, 1)?
        };
        y.broadcast_add(&b)
    }

    fn forward_fast(&self, p: &Prepared, x: &Tensor, epi: Epilogue, shuffle: bool) -> Result<Tensor> {
        let dtype = x.dtype();
        let (n, c, h, w) = x.dims4()?;
        debug_assert_eq!(c, self.cin);
        let xs = x.to_dtype(DType::F32)?.contiguous()?;
        let (storage, layout) = xs.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else { bail!("expected a CPU tensor") };
        let xv = &cpu.as_slice::<f32>()?[layout.start_offset()..][..xs.elem_count()];
        let g = Geometry::new(p.kind, self.cin, h, w);
        let (ho, wo) = (g.ho, g.wo);
        let per_out = self.cout * ho * wo;
        let mut out = vec![0f32; n * per_out];
        let per_in = c * h * w;
        for b in 0..n {
            let xb: Vec<&[f32]> = xv[b * per_in..][..per_in].chunks_exact(h * w).collect();
            let epi_b = match epi {
                Epilogue::Plain(a) => Epilogue::Plain(a),
                Epilogue::Residual { beta, x, slope } => {
                    Epilogue::Residual { beta, x: &x[b * per_in..][..per_in], slope }
                }
            };
            run(p, &g, self.cout, &xb, epi_b, shuffle, &mut out[b * per_out..][..per_out]);
        }
        drop(storage);
        let shape = if shuffle {
            (n, self.cout / 4, ho * 2, wo * 2)
        } else {
            (n, self.cout, ho, wo)
        };
        let y = Tensor::from_vec(out, shape, x.device())?;
        if dtype == DType::F32 { Ok(y) } else { y.to_dtype(dtype) }
    }
}

fn leaky_t(y: &Tensor, slope: f32) -> Result<Tensor> {
    // max(y, slope * y) == leaky_relu(y) for 0 <= slope <= 1; the general form otherwise.
    if (0.0..=1.0).contains(&slope) {
        y.maximum(&(y * slope as f64)?)
    } else {
        let pos = y.relu()?;
        let neg = (y - &pos)?;
        pos + (neg * slope as f64)?
    }
}

/// Layout of the padded NHWC input buffer and of the GEMMs over it.
struct Geometry {
    kind: Kind,
    cin: usize,
    h: usize,
    w: usize,
    /// Output (for `Up`: per-parity output = input) rows and columns.
    ho: usize,
    wo: usize,
    /// Rows iterated in bands (output rows; for `Up`, input rows).
    rows: usize,
    /// Valid columns per band row.
    cols: usize,
    /// Padded buffer: pixels per row.
    wp: usize,
    /// Left-operand pixels per band row (`q` pitch) and floats per `q` step.
    pitch: usize,
    lrs: usize,
    /// GEMM depth.
    k: usize,
}

impl Geometry {
    fn new(kind: Kind, cin: usize, h: usize, w: usize) -> Self {
        match kind {
            Kind::S1 => Self {
                kind, cin, h, w, ho: h, wo: w, rows: h, cols: w,
                wp: w + 2, pitch: w + 2, lrs: cin, k: 3 * cin,
            },
            Kind::S2 => {
                let ho = h.div_ceil(2);
                let wo = w.div_ceil(2);
                Self {
                    kind, cin, h, w, ho, wo, rows: ho, cols: wo,
                    wp: 2 * (wo + 1), pitch: wo + 1, lrs: 2 * cin, k: 3 * cin,
                }
            }
            Kind::Up => Self {
                kind, cin, h, w, ho: 2 * h, wo: 2 * w, rows: h, cols: w,
                wp: w + 2, pitch: w + 2, lrs: cin, k: 2 * cin,
            },
        }
    }

    /// Rows of the band-local padded buffer for a band of `n` rows.
    fn band_rows(&self, n: usize) -> usize {
        match self.kind {
            Kind::S2 => 2 * (n + 1),
            _ => n + 2,
        }
    }

    /// Input row stored at local buffer row `j` of the band starting at row `y0`
    /// whose buffer has `rp` rows (`None`: a zero row). For `S2` the even padded
    /// rows come first, then the odd ones.
    fn src_row(&self, j: usize, y0: usize, rp: usize) -> Option<usize> {
        let r = match self.kind {
            Kind::S2 => {
                let half = rp / 2;
                if j < half { 2 * (y0 + j) } else { 2 * (y0 + j - half) + 1 }
            }
            _ => y0 + j,
        };
        if r >= 1 && r <= self.h { Some(r - 1) } else { None }
    }

    /// Local buffer offsets (floats) of the GEMM left operands for band row 0, and
    /// the index of each one's weight block.
    fn taps(&self, rp: usize) -> Vec<(usize, usize)> {
        let row = self.wp * self.cin;
        match self.kind {
            Kind::S1 => (0..3).map(|ky| (ky * row, ky)).collect(),
            Kind::S2 => vec![(0, 0), (rp / 2 * row, 1), (row, 2)],
            Kind::Up => {
                let mut t = Vec::with_capacity(8);
                for par in 0..4 {
                    let (ry, rx) = (par / 2, par % 2);
                    for dy in 0..2 {
                        t.push((((ry + dy) * self.wp + rx) * self.cin, par * 2 + dy));
                    }
                }
                t
            }
        }
    }
}

thread_local! {
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static ACC: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Target size (floats) of one band's accumulator (fits L2 with its operands).
const BAND_ACC: usize = 48 << 10;

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// NCHW input -> the band's zero-padded NHWC rows.
fn fill_padded(g: &Geometry, x: &[&[f32]], y0: usize, rp: usize, buf: &mut [f32]) {
    let (cin, h, w) = (g.cin, g.h, g.w);
    let row = g.wp * cin;
    let (rows, tail) = buf.split_at_mut(rp * row);
    tail.fill(0.0);
    for (j, dst) in rows.chunks_exact_mut(row).enumerate() {
        match g.src_row(j, y0, rp) {
            None => dst.fill(0.0),
            Some(y) => {
                dst[..cin].fill(0.0);
                dst[(w + 1) * cin..].fill(0.0);
                let interior = &mut dst[cin..(w + 1) * cin];
                let _ = h;
                for (c, plane) in x.iter().enumerate() {
                    let src = &plane[y * w..][..w];
                    for (px, &v) in src.iter().enumerate() {
                        interior[px * cin + c] = v;
                    }
                }
            }
        }
    }
}

/// Accumulator strides (per pixel `q`, per output channel `o`): `[q][o]`.
#[inline(always)]
fn qo_strides(_m: usize, cout: usize) -> (usize, usize) {
    (cout, 1)
}

/// `x`: the input's channel planes (`cin` slices of `h * w`).
fn run(p: &Prepared, g: &Geometry, cout: usize, x: &[&[f32]], epi: Epilogue, shuffle: bool, out: &mut [f32]) {
    let n_par = if g.kind == Kind::Up { 4 } else { 1 };
    let threads = rayon::current_num_threads().max(1);
    let per_row = g.pitch * cout * n_par;
    let mut band = (BAND_ACC / per_row).max(1);
    // At least two bands per thread when there are enough rows.
    band = band.min(g.rows.div_ceil(2 * threads)).max(1);
    let n_bands = g.rows.div_ceil(band);
    let out_ptr = SendPtr(out.as_mut_ptr());
    let out_len = out.len();
    (0..n_bands).into_par_iter().for_each(|bi| {
        // The whole Send wrapper moves into the closure, not its raw field.
        #[allow(clippy::redundant_locals)]
        let out_ptr = out_ptr;
        let y0 = bi * band;
        let y1 = (y0 + band).min(g.rows);
        let m = (y1 - y0 - 1) * g.pitch + g.cols;
        let rp = g.band_rows(y1 - y0);
        let taps = g.taps(rp);
        let len = rp * g.wp * g.cin + 4 * g.cin;
        PADDED.with(|pcell| ACC.with(|cell| {
            let mut pad = pcell.borrow_mut();
            if pad.len() < len {
                pad.resize(len, 0.0);
            }
            let buf = &mut pad[..len];
            fill_padded(g, x, y0, rp, buf);
            let buf = &*buf;
            let mut acc = cell.borrow_mut();
            if acc.len() < m * cout * n_par {
                acc.resize(m * cout * n_par, 0.0);
            }
            let acc = &mut acc[..m * cout * n_par];
            if let Some((v, panel)) = &p.panel
                && avx512::conv_band(*v, panel, g, &taps, buf, 0, m, cout, acc)
            {
                let out = unsafe { std::slice::from_raw_parts_mut(out_ptr.0, out_len) };
                epilogue(p, g, cout, acc, m, y0, y1, epi, shuffle, out);
                return;
            }
            let kw = g.k * cout;
            for (t, &(off, wi)) in taps.iter().enumerate() {
                let (par, first) = match g.kind {
                    Kind::Up => (t / 2, t % 2 == 0),
                    _ => (0, t == 0),
                };
                let lhs = &buf[off..];
                // Bounds of the strided left operand.
                assert!((m - 1) * g.lrs + g.k <= lhs.len());
                let rhs = &p.w[wi * kw..][..kw];
                let dst = &mut acc[par * m * cout..][..m * cout];
                // SAFETY: dst is m x cout (row stride cout), lhs is m x k with row stride
                // lrs inside `lhs` (checked above), rhs is k x cout contiguous.
                unsafe {
                    gemm::gemm(
                        m, cout, g.k,
                        dst.as_mut_ptr(), qo_strides(m, cout).1 as isize, qo_strides(m, cout).0 as isize,
                        !first,
                        lhs.as_ptr(), 1, g.lrs as isize,
                        rhs.as_ptr(), 1, cout as isize,
                        1.0, 1.0, false, false, false,
                        Parallelism::None,
                    );
                }
            }
            // SAFETY: each band writes only output rows derived from its own band rows.
            let out = unsafe { std::slice::from_raw_parts_mut(out_ptr.0, out_len) };
            epilogue(p, g, cout, acc, m, y0, y1, epi, shuffle, out);
        }));
    });
}

/// A register-blocked 3-tap kernel for AVX-512 (used for `S1`/`S2` when
/// `C_out % 16 == 0`): each call accumulates a tile of `R` output pixels times
/// `16 V` output channels over all 9 taps in registers, so the accumulator is
/// written once, with the weights streamed from a per-channel-block panel.
mod avx512 {
    use super::Geometry;

    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Pixels per tile for channel-block width `16 V`.
    const fn rows(v: usize) -> usize {
        match v {
            4 => 6,
            2 => 12,
            _ => 24,
        }
    }

    /// Accumulates the band into `acc` (`[m][cout]`); `false` when the band is too
    /// small for a tile (the caller then uses gemm).
    #[allow(clippy::too_many_arguments)]
    pub fn conv_band(
        v: usize, panel: &[f32], g: &Geometry, taps: &[(usize, usize)], buf: &[f32], base: usize,
        m: usize, cout: usize, acc: &mut [f32],
    ) -> bool {
        let r = rows(v);
        if m < r || taps.len() != 3 || !available() {
            return false;
        }
        let nb = 16 * v;
        let offs = [taps[0].0, taps[1].0, taps[2].0];
        // Every tile reads rows q..q + r of each tap: bounds for the last one.
        let last = base + offs.iter().max().unwrap() + (m - 1) * g.lrs + g.k;
        assert!(last <= buf.len() && acc.len() >= m * cout && panel.len() >= cout * 3 * g.k);
        for ob in 0..cout / nb {
            let w = &panel[ob * 3 * g.k * nb..][..3 * g.k * nb];
            let mut q = 0;
            while q < m {
                let q0 = q.min(m - r);
                // SAFETY: AVX-512F is available (checked); the tile reads rows
                // q0..q0 + r < m of each tap (bounds checked above), w holds 3 k nb
                // floats and the tile writes acc[(q0 + i) * cout + ob * nb..][..nb].
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    let a = buf.as_ptr().add(base + q0 * g.lrs);
                    let d = acc.as_mut_ptr().add(q0 * cout + ob * nb);
                    match v {
                        4 => tile::<4, 6>(a, &offs, g.lrs, g.k, w.as_ptr(), d, cout),
                        2 => tile::<2, 12>(a, &offs, g.lrs, g.k, w.as_ptr(), d, cout),
                        _ => tile::<1, 24>(a, &offs, g.lrs, g.k, w.as_ptr(), d, cout),
                    }
                }
                q += r;
            }
        }
        true
    }

    /// `dst[i * ld + j] = sum_t sum_kk a[offs[t] + i * lrs + kk] * w[(t * k + kk) * 16 V + j]`
    /// for `i < R`, `j < 16 V`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const V: usize, const R: usize>(
        a: *const f32, offs: &[usize; 3], lrs: usize, k: usize, w: *const f32, dst: *mut f32, ld: usize,
    ) {
        use std::arch::x86_64::*;
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for (t, &off) in offs.iter().enumerate() {
            // SAFETY (whole block): bounds are the caller's (see conv_band).
            unsafe {
                let ap = a.add(off);
                let wp = w.add(t * k * 16 * V);
                for kk in 0..k {
                    let mut wv = [_mm512_setzero_ps(); V];
                    for (j, x) in wv.iter_mut().enumerate() {
                        *x = _mm512_loadu_ps(wp.add((kk * V + j) * 16));
                    }
                    for (i, row) in acc.iter_mut().enumerate() {
                        let av = _mm512_set1_ps(*ap.add(i * lrs + kk));
                        for (x, &wj) in row.iter_mut().zip(wv.iter()) {
                            *x = _mm512_fmadd_ps(av, wj, *x);
                        }
                    }
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, x) in row.iter().enumerate() {
                // SAFETY: the caller's tile bounds.
                unsafe { _mm512_storeu_ps(dst.add(i * ld + 16 * j), *x) };
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn epilogue(
    p: &Prepared, g: &Geometry, cout: usize, acc: &[f32], m: usize, y0: usize, y1: usize,
    epi: Epilogue, shuffle: bool, out: &mut [f32],
) {
    let (ho, wo) = (g.ho, g.wo);
    match g.kind {
        Kind::S1 | Kind::S2 => {
            let (qs, os) = qo_strides(m, cout);
            for o in 0..cout {
                let b = p.b[o];
                for y in y0..y1 {
                    let src = &acc[(y - y0) * g.pitch * qs + o * os..];
                    let dst = &mut out[(o * ho + y) * wo..][..wo];
                    match epi {
                        Epilogue::Plain(None) => {
                            for (xx, d) in dst.iter_mut().enumerate() {
                                *d = src[xx * qs] + b;
                            }
                        }
                        Epilogue::Plain(Some(s)) => {
                            for (xx, d) in dst.iter_mut().enumerate() {
                                *d = leaky(src[xx * qs] + b, s);
                            }
                        }
                        Epilogue::Residual { beta, x, slope } => {
                            let be = beta[o];
                            let res = &x[(o * ho + y) * wo..][..wo];
                            for (xx, d) in dst.iter_mut().enumerate() {
                                *d = leaky((src[xx * qs] + b) * be + res[xx], slope);
                            }
                        }
                    }
                }
            }
        }
        Kind::Up => {
            let act = match epi {
                Epilogue::Plain(a) => a,
                Epilogue::Residual { .. } => unreachable!(),
            };
            let (qs, os) = qo_strides(m, cout);
            let (w_in, oc) = (g.w, if shuffle { cout / 4 } else { cout });
            let (oh, ow) = if shuffle { (2 * ho, 2 * wo) } else { (ho, wo) };
            for o in 0..cout {
                let b = p.b[o];
                // Destination plane and sub-pixel offset of channel o.
                let (plane, sy, sx, step) = if shuffle {
                    (o / 4, (o / 2) % 2, o % 2, 2)
                } else {
                    (o, 0, 0, 1)
                };
                debug_assert!(plane < oc);
                for yy in y0..y1 {
                    for ry in 0..2 {
                        let oy = (2 * yy + ry) * step + sy;
                        let row = &mut out[(plane * oh + oy) * ow..][..ow];
                        for rx in 0..2 {
                            let src = &acc[(ry * 2 + rx) * m * cout + (yy - y0) * g.pitch * qs + o * os..];
                            for xx in 0..w_in {
                                let mut v = src[xx * qs] + b;
                                if let Some(s) = act {
                                    v = leaky(v, s);
                                }
                                row[(2 * xx + rx) * step + sx] = v;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn rand(shape: &[usize], scale: f64, seed: u64) -> Tensor {
        // Deterministic xorshift values in [-scale, scale].
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * scale as f32
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn check(got: &Tensor, want: &Tensor, what: &str) {
        assert_eq!(got.dims(), want.dims(), "{what}: shape");
        let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
        let err = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(err <= 1e-4 * scale, "{what}: max abs error {err} (scale {scale})");
    }

    fn reference_leaky(y: &Tensor, s: f32) -> Tensor {
        let pos = y.relu().unwrap();
        let neg = (y - &pos).unwrap();
        (pos + (neg * s as f64).unwrap()).unwrap()
    }

    const SIZES: [(usize, usize); 4] = [(7, 5), (13, 11), (8, 10), (1, 1)];

    #[test]
    fn conv3x3_stride1_residual_and_plain() {
        let mut seed = 1;
        for &c in &[192usize, 32, 16, 5] {
            for &(h, w) in &SIZES {
                seed += 1;
                let wt = rand(&[c, c, 3, 3], 0.1, seed);
                let bias = rand(&[c], 0.5, seed + 100);
                let beta = rand(&[1, c, 1, 1], 1.0, seed + 200);
                let x = rand(&[1, c, h, w], 1.0, seed + 300);
                let conv = Conv::conv2d(&wt, &bias, 1, 1).unwrap();
                let y = x.conv2d(&wt, 1, 1, 1, 1).unwrap().broadcast_add(&bias.reshape((1, c, 1, 1)).unwrap()).unwrap();
                check(&conv.forward(&x, None).unwrap(), &y, &format!("s1 c{c} {h}x{w}"));
                check(&conv.forward(&x, Some(0.2)).unwrap(), &reference_leaky(&y, 0.2), &format!("s1 leaky c{c} {h}x{w}"));
                let r = reference_leaky(&(y.broadcast_mul(&beta).unwrap() + &x).unwrap(), 0.2);
                check(&conv.forward_residual(&x, &beta, 0.2).unwrap(), &r, &format!("resconv c{c} {h}x{w}"));
            }
        }
    }

    #[test]
    fn conv3x3_stride2() {
        let mut seed = 1000;
        for &(ci, co) in &[(15usize, 96usize), (96, 192), (28, 16), (16, 32), (3, 16)] {
            for &(h, w) in &SIZES {
                seed += 1;
                let wt = rand(&[co, ci, 3, 3], 0.1, seed);
                let bias = rand(&[co], 0.5, seed + 100);
                let x = rand(&[1, ci, h, w], 1.0, seed + 300);
                let conv = Conv::conv2d(&wt, &bias, 2, 1).unwrap();
                let y = x.conv2d(&wt, 1, 2, 1, 1).unwrap().broadcast_add(&bias.reshape((1, co, 1, 1)).unwrap()).unwrap();
                check(&conv.forward(&x, None).unwrap(), &y, &format!("s2 {ci}->{co} {h}x{w}"));
                check(&conv.forward(&x, Some(0.2)).unwrap(), &reference_leaky(&y, 0.2), &format!("s2 leaky {ci}->{co} {h}x{w}"));
            }
        }
    }

    #[test]
    fn conv_transpose4x4_stride2() {
        let mut seed = 2000;
        for &(ci, co) in &[(192usize, 52usize), (32, 52), (16, 4), (7, 8)] {
            for &(h, w) in &SIZES {
                seed += 1;
                let wt = rand(&[ci, co, 4, 4], 0.1, seed);
                let bias = rand(&[co], 0.5, seed + 100);
                let x = rand(&[1, ci, h, w], 1.0, seed + 300);
                let conv = Conv::conv_transpose2d(&wt, &bias, 2, 1).unwrap();
                let y = x.conv_transpose2d(&wt, 1, 0, 2, 1).unwrap().broadcast_add(&bias.reshape((1, co, 1, 1)).unwrap()).unwrap();
                check(&conv.forward(&x, None).unwrap(), &y, &format!("up {ci}->{co} {h}x{w}"));
                check(&conv.forward(&x, Some(0.2)).unwrap(), &reference_leaky(&y, 0.2), &format!("up leaky {ci}->{co} {h}x{w}"));
                if co % 4 == 0 {
                    let (n, c, hh, ww) = y.dims4().unwrap();
                    let shuffled = y
                        .reshape((n, c / 4, 2, 2, hh, ww)).unwrap()
                        .permute((0, 1, 4, 2, 5, 3)).unwrap()
                        .reshape((n, c / 4, hh * 2, ww * 2)).unwrap();
                    check(&conv.forward_shuffled(&x).unwrap(), &shuffled, &format!("up+shuffle {ci}->{co} {h}x{w}"));
                }
            }
        }
    }

    #[test]
    fn batch_dtype_and_fallback_paths() {
        let wt = rand(&[8, 6, 3, 3], 0.1, 7);
        let bias = rand(&[8], 0.5, 8);
        let x = rand(&[2, 6, 9, 7], 1.0, 9);
        let conv = Conv::conv2d(&wt, &bias, 1, 1).unwrap();
        let y = x.conv2d(&wt, 1, 1, 1, 1).unwrap().broadcast_add(&bias.reshape((1, 8, 1, 1)).unwrap()).unwrap();
        check(&conv.forward(&x, None).unwrap(), &y, "batch 2");
        // A geometry without a fast path (padding 0) goes through candle.
        let conv0 = Conv::conv2d(&wt, &bias, 1, 0).unwrap();
        assert!(conv0.fast.is_none());
        let y0 = x.conv2d(&wt, 0, 1, 1, 1).unwrap().broadcast_add(&bias.reshape((1, 8, 1, 1)).unwrap()).unwrap();
        check(&conv0.forward(&x, None).unwrap(), &y0, "fallback");
        // Non-contiguous input.
        let xt = rand(&[1, 6, 7, 9], 1.0, 10).transpose(2, 3).unwrap();
        let yt = xt.conv2d(&wt, 1, 1, 1, 1).unwrap().broadcast_add(&bias.reshape((1, 8, 1, 1)).unwrap()).unwrap();
        check(&conv.forward(&xt, None).unwrap(), &yt, "non-contiguous");
        // f16 weights are converted once.
        let conv16 = Conv::conv2d(&wt.to_dtype(DType::F16).unwrap(), &bias, 1, 1).unwrap();
        let got = conv16.forward(&x, None).unwrap();
        let want = x.conv2d(&wt.to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap(), 1, 1, 1, 1).unwrap()
            .broadcast_add(&bias.reshape((1, 8, 1, 1)).unwrap()).unwrap();
        check(&got, &want, "f16 weights");
    }
}
