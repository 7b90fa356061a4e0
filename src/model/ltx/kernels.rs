//! CPU kernels for the LTX-Video transformer (speed and memory; the model code
//! in [`super::transformer`] falls back to plain candle ops off the CPU).
//!
//! * [`attention`]: `softmax(q k^T / sqrt(d) + bias) v` per head, computed over
//!   chunks of queries so that each thread only holds a `[chunk, L]` f32 score
//!   buffer (at most [`SCORE_BUDGET`] floats; no `[B, H, S, L]` tensor). The
//!   scale is folded into the first GEMM and bias + softmax are one fused
//!   pass (AVX-512 `exp`); the normalisation is applied to the `[chunk, d]`
//!   output rather than to the probabilities. Heads are read in place from the
//!   `[B, S, H * d]` projections (strided GEMM operands, no transposes).
//! * [`Linear`]: `y = x W^T + b`, optionally followed by GELU(tanh), with bias
//!   and activation fused. f32: `gemm` (as candle uses) with the bias as the
//!   initial accumulator and a parallel vectorised GELU. bf16 (see
//!   [`Bf16Matmul`]): weights repacked once at load into VNNI pairs and
//!   multiplied with AMX (`tdpbf16ps`, 32x32 f32 tiles) or AVX-512 BF16
//!   (`vdpbf16ps`), accumulating in f32, with bias/GELU/rounding to bf16 fused
//!   in the epilogue; without either, the bf16 weights are converted to f32
//!   just-in-time per call.
//! * Row-wise fused ops: RMSNorm + adaLN shift/scale ([`rms_norm_modulate`]),
//!   q/k RMSNorm + rotary embedding ([`qk_norm_rope`]), gated residual
//!   ([`gated_residual`]); f32 arithmetic, one rounding to the output dtype.

use std::cell::RefCell;
use std::sync::OnceLock;

use candle_core::op::BackpropOp;
use candle_core::{CpuStorage, DType, Result, Shape, Storage, Tensor, bail};
use gemm::Parallelism;
use rayon::prelude::*;

// ---------------------------------------------------------------- dispatch

/// How bf16 matrix products run on the CPU (`WEFT_LTX_BF16` = `amx`,
/// `avx512bf16`, `f32` or `candle` overrides the choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Matmul {
    /// Intel AMX tiles (Sapphire Rapids and later).
    Amx,
    /// AVX-512 BF16 dot products (Cooper Lake, Zen 4 and later).
    Avx512Bf16,
    /// bf16 weights converted to f32 per call, f32 GEMM.
    F32,
    /// candle's own bf16 matmul (unfused; for comparison).
    Candle,
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
}
#[cfg(not(target_arch = "x86_64"))]
fn has_avx512() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn has_avx512_bf16() -> bool {
    std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
}
#[cfg(not(target_arch = "x86_64"))]
fn has_avx512_bf16() -> bool {
    false
}

/// AMX-BF16 present and the kernel lets this process use the tile data.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[allow(unused_unsafe)]
fn amx_usable() -> bool {
    // CPUID.(EAX=7, ECX=0):EDX bit 22 = AMX-BF16, bit 24 = AMX-TILE.
    let l7 = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
    if (l7.edx >> 22) & 1 == 0 || (l7.edx >> 24) & 1 == 0 || !has_avx512_bf16() {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call; it only changes this process' XSAVE permissions.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn amx_usable() -> bool {
    false
}

/// The bf16 matmul used by [`Linear`] (detected once).
pub fn bf16_matmul() -> Bf16Matmul {
    static MODE: OnceLock<Bf16Matmul> = OnceLock::new();
    *MODE.get_or_init(|| {
        let amx = amx_usable();
        let avx = has_avx512_bf16();
        // AMX first where the CPU has it and the kernel grants the tile
        // state (its kernels are checked against f32 by the tests below on
        // such a machine; elsewhere those tests run the AVX-512 BF16 path).
        let best = if amx {
            Bf16Matmul::Amx
        } else if avx {
            Bf16Matmul::Avx512Bf16
        } else {
            Bf16Matmul::F32
        };
        match std::env::var("WEFT_LTX_BF16").as_deref() {
            Ok("amx") if amx => Bf16Matmul::Amx,
            Ok("avx512bf16") if avx => Bf16Matmul::Avx512Bf16,
            Ok("f32") => Bf16Matmul::F32,
            Ok("candle") => Bf16Matmul::Candle,
            _ => best,
        }
    })
}

// ---------------------------------------------------------------- tensor access

/// A contiguous CPU float buffer.
enum Buf<'a> {
    F32(&'a [f32]),
    /// bf16 as raw bits.
    Bf16(&'a [u16]),
}

impl Buf<'_> {
    #[inline]
    fn load(&self, start: usize, dst: &mut [f32]) {
        match self {
            Buf::F32(s) => dst.copy_from_slice(&s[start..start + dst.len()]),
            Buf::Bf16(s) => {
                let n = dst.len();
                for (d, &b) in dst.iter_mut().zip(&s[start..start + n]) {
                    *d = bf16_to_f32(b);
                }
            }
        }
    }
}

/// Runs `f` on the contiguous CPU data of `t` (F32 or BF16).
fn with_buf<R>(t: &Tensor, f: impl FnOnce(Buf) -> Result<R>) -> Result<R> {
    if !t.is_contiguous() {
        bail!("ltx kernels: expected a contiguous tensor");
    }
    let (storage, layout) = t.storage_and_layout();
    let off = layout.start_offset();
    let n = t.elem_count();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => f(Buf::F32(&v[off..off + n])),
        Storage::Cpu(CpuStorage::BF16(v)) => {
            let s = &v[off..off + n];
            // SAFETY: half::bf16 is a transparent u16.
            let bits = unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u16, n) };
            f(Buf::Bf16(bits))
        }
        _ => bail!("ltx kernels: expected an f32 or bf16 CPU tensor"),
    }
}

fn f32_tensor(v: Vec<f32>, shape: impl Into<Shape>) -> Tensor {
    Tensor::from_storage(
        Storage::Cpu(CpuStorage::F32(v)),
        shape,
        BackpropOp::none(),
        false,
    )
}

fn bf16_tensor(v: Vec<u16>, shape: impl Into<Shape>) -> Tensor {
    let mut v = std::mem::ManuallyDrop::new(v);
    let (p, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    // SAFETY: half::bf16 is a transparent u16 (same size and alignment), so the
    // allocation is reinterpreted in place.
    let v = unsafe { Vec::from_raw_parts(p as *mut _, len, cap) };
    Tensor::from_storage(
        Storage::Cpu(CpuStorage::BF16(v)),
        shape,
        BackpropOp::none(),
        false,
    )
}

/// An output buffer in `dtype` (F32 or BF16).
enum OutVec {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

/// A zeroed vector whose large allocations are backed by transparent huge
/// pages where the kernel allows it (`madvise` mode): the zeroed allocation is
/// not yet touched, so its first writes fault 2 MiB pages instead of 512 times
/// as many 4 KiB ones (page faults cost ~10% of a step otherwise).
pub(crate) fn zeroed<T: Copy + Default>(n: usize) -> Vec<T> {
    let v = vec![T::default(); n];
    crate::runtime::advise_huge(v.as_ptr() as *mut u8, n * std::mem::size_of::<T>());
    v
}

/// A zeroed buffer (as [`zeroed`]) whose first element sits on a 64-byte
/// cache-line boundary: the packed operands' vector loads are whole lines,
/// where a 16-byte-aligned heap block would split every 64-byte load in two.
pub(crate) struct LineAligned<T> {
    buf: Vec<T>,
    off: usize,
    len: usize,
}

impl<T: Copy + Default> LineAligned<T> {
    pub(crate) fn zeroed(len: usize) -> Self {
        let per_line = (64 / std::mem::size_of::<T>()).max(1);
        let buf = zeroed::<T>(len + per_line);
        let off = (buf.as_ptr() as usize).next_multiple_of(64) - buf.as_ptr() as usize;
        let off = off / std::mem::size_of::<T>();
        Self { buf, off, len }
    }
}

impl<T> std::ops::Deref for LineAligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[self.off..self.off + self.len]
    }
}

impl<T> std::ops::DerefMut for LineAligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

impl OutVec {
    fn new(dtype: DType, n: usize) -> Result<Self> {
        Ok(match dtype {
            DType::F32 => OutVec::F32(zeroed(n)),
            DType::BF16 => OutVec::Bf16(zeroed(n)),
            d => bail!("ltx kernels: unsupported dtype {d:?}"),
        })
    }
    fn ptr(&mut self) -> OutPtr {
        match self {
            OutVec::F32(v) => OutPtr::F32(v.as_mut_ptr()),
            OutVec::Bf16(v) => OutPtr::Bf16(v.as_mut_ptr()),
        }
    }
    fn into_tensor(self, shape: impl Into<Shape>) -> Tensor {
        match self {
            OutVec::F32(v) => f32_tensor(v, shape),
            OutVec::Bf16(v) => bf16_tensor(v, shape),
        }
    }
}

/// A raw output pointer shared by tasks writing disjoint ranges.
#[derive(Clone, Copy)]
enum OutPtr {
    F32(*mut f32),
    Bf16(*mut u16),
}
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Writes `src` at element offset `start`.
    ///
    /// # Safety
    /// `start + src.len()` is within the buffer and no other task writes there.
    #[inline]
    unsafe fn store(self, start: usize, src: &[f32]) {
        match self {
            OutPtr::F32(p) => unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), p.add(start), src.len())
            },
            OutPtr::Bf16(p) => {
                let dst = unsafe { std::slice::from_raw_parts_mut(p.add(start), src.len()) };
                f32_to_bf16_slice(src, dst);
            }
        }
    }
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

#[inline]
fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Round to nearest even (as `half` / torch), NaN kept NaN.
#[inline]
pub(crate) fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

fn f32_to_bf16_slice(src: &[f32], dst: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512_bf16() {
        // SAFETY: features checked; equal lengths.
        unsafe { simd::to_bf16(src, dst) };
        return;
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32_to_bf16(s);
    }
}

thread_local! {
    static ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn with_scratch<R>(cell: &'static std::thread::LocalKey<RefCell<Vec<f32>>>, n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    cell.with(|c| f(line_aligned(&mut c.borrow_mut(), n)))
}

/// `n` elements of the thread's scratch `v` starting on a cache line (grown
/// as needed), so that the vector and tile loads from it are not split.
fn line_aligned<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    let per_line = 64 / std::mem::size_of::<T>();
    if v.len() < n + per_line {
        v.resize(n + per_line, T::default());
    }
    let addr = v.as_ptr() as usize;
    let off = (addr.next_multiple_of(64) - addr) / std::mem::size_of::<T>();
    &mut v[off..off + n]
}

// ---------------------------------------------------------------- vector math

/// `exp` on 16 lanes (Cephes' single-precision polynomial; ~1 ulp), and the
/// slice helpers built on it.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// Below this, [`exp`] is 0: e^-80 = 1.8e-35 is far below the f32
    /// resolution of any sum it joins (softmax terms are relative to the
    /// row's max, 1), and such values times O(1e-3) operands would be
    /// subnormal, which the FMA units handle by microcode assists (a masked
    /// text token, bias -1e4, made the cross-attention's `p v` product ~40x
    /// slower). PyTorch's softmax gives exactly 0 there too.
    pub const EXP_FLUSH: f32 = -80.0;

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn exp(x: __m512) -> __m512 {
        let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(EXP_FLUSH));
        _mm512_maskz_mov_ps(keep, exp_unflushed(x))
    }

    /// e^x for x in [-87.3, 88.4] (clamped outside).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn exp_unflushed(x: __m512) -> __m512 {
        let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.336_55)), _mm512_set1_ps(88.376_26));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
            x,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.398_199_9e-3));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.333_452e-3));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.166_579_6e-2));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.166_666_65));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5));
        let r2 = _mm512_mul_ps(r, r);
        let y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
        _mm512_scalef_ps(y, n)
    }

    /// GELU(tanh) as `x * sigmoid(2 u)`, `u = sqrt(2/pi) (x + 0.044715 x^3)`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn gelu(x: __m512) -> __m512 {
        let x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
        let u = _mm512_mul_ps(
            _mm512_fmadd_ps(x3, _mm512_set1_ps(0.044_715), x),
            _mm512_set1_ps(-2.0 * 0.797_884_6),
        );
        // Where e^u passes e^-EXP_FLUSH the result (|x| e^-u) is flushed to 0,
        // as `0.5 x (1 + tanh)` rounds to 0 in PyTorch (and keeps the next
        // product free of subnormals).
        let keep = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(u, _mm512_set1_ps(-EXP_FLUSH));
        _mm512_maskz_div_ps(keep, x, _mm512_add_ps(_mm512_set1_ps(1.0), exp_unflushed(u)))
    }

    #[inline]
    fn mask(n: usize) -> __mmask16 {
        if n >= 16 { 0xffff } else { ((1u32 << n) - 1) as __mmask16 }
    }

    /// `x[i] = gelu(x[i] + bias[i % n])` (bias optional).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_slice(x: &mut [f32]) {
        let mut i = 0;
        while i < x.len() {
            let m = mask(x.len() - i);
            // SAFETY: masked to the slice.
            unsafe {
                let p = x.as_mut_ptr().add(i);
                let v = _mm512_maskz_loadu_ps(m, p);
                _mm512_mask_storeu_ps(p, m, gelu(v));
            }
            i += 16;
        }
    }

    /// One key block of an online softmax over the rows of a `[n][32]`
    /// panel: `x = exp(x * scale + bias[row] - m_new)` with the running max
    /// `m` and sum `sum` updated; returns `exp(m_old - m_new)`, the factor for
    /// what was accumulated with the old max.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_columns_online(
        p: &mut [f32], bias: Option<&[f32]>, scale: f32, m: &mut [f32; 32], sum: &mut [f32; 32],
    ) -> [f32; 32] {
        let n = p.len() / 32;
        let sc = _mm512_set1_ps(scale);
        // SAFETY (whole body): rows 0..n of 32 floats; bias has n values.
        unsafe {
            let (old0, old1) = (_mm512_loadu_ps(m.as_ptr()), _mm512_loadu_ps(m.as_ptr().add(16)));
            let (mut m0, mut m1) = (old0, old1);
            for r in 0..n {
                let q = p.as_mut_ptr().add(r * 32);
                let bb = _mm512_set1_ps(bias.map_or(0.0, |b| *b.get_unchecked(r)));
                let v0 = _mm512_fmadd_ps(_mm512_loadu_ps(q), sc, bb);
                let v1 = _mm512_fmadd_ps(_mm512_loadu_ps(q.add(16)), sc, bb);
                _mm512_storeu_ps(q, v0);
                _mm512_storeu_ps(q.add(16), v1);
                m0 = _mm512_max_ps(m0, v0);
                m1 = _mm512_max_ps(m1, v1);
            }
            let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for r in 0..n {
                let q = p.as_mut_ptr().add(r * 32);
                let e0 = exp(_mm512_sub_ps(_mm512_loadu_ps(q), m0));
                let e1 = exp(_mm512_sub_ps(_mm512_loadu_ps(q.add(16)), m1));
                _mm512_storeu_ps(q, e0);
                _mm512_storeu_ps(q.add(16), e1);
                s0 = _mm512_add_ps(s0, e0);
                s1 = _mm512_add_ps(s1, e1);
            }
            // exp(-inf - m) = 0 on the first block (old max -inf).
            let a0 = exp(_mm512_sub_ps(old0, m0));
            let a1 = exp(_mm512_sub_ps(old1, m1));
            let (ps0, ps1) = (_mm512_loadu_ps(sum.as_ptr()), _mm512_loadu_ps(sum.as_ptr().add(16)));
            _mm512_storeu_ps(sum.as_mut_ptr(), _mm512_fmadd_ps(ps0, a0, s0));
            _mm512_storeu_ps(sum.as_mut_ptr().add(16), _mm512_fmadd_ps(ps1, a1, s1));
            _mm512_storeu_ps(m.as_mut_ptr(), m0);
            _mm512_storeu_ps(m.as_mut_ptr().add(16), m1);
            let mut alpha = [0f32; 32];
            _mm512_storeu_ps(alpha.as_mut_ptr(), a0);
            _mm512_storeu_ps(alpha.as_mut_ptr().add(16), a1);
            alpha
        }
    }

    /// `x = x / (1 + exp(-x))`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn silu_slice(x: &mut [f32]) {
        let mut i = 0;
        while i < x.len() {
            let m = mask(x.len() - i);
            // SAFETY: masked to the slice.
            unsafe {
                let p = x.as_mut_ptr().add(i);
                let v = _mm512_maskz_loadu_ps(m, p);
                let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), v));
                _mm512_mask_storeu_ps(p, m, _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0), e)));
            }
            i += 16;
        }
    }

    /// One softmax row in place: `x = exp(x * scale + bias - max)`; returns the sum.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_row(x: &mut [f32], bias: Option<&[f32]>, scale: f32) -> f32 {
        let n = x.len();
        let sc = _mm512_set1_ps(scale);
        let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < n {
            let m = mask(n - i);
            // SAFETY: masked to the slices (bias has n elements).
            unsafe {
                let p = x.as_mut_ptr().add(i);
                let mut v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p), sc);
                if let Some(b) = bias {
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b.as_ptr().add(i)));
                }
                _mm512_mask_storeu_ps(p, m, v);
                vmax = _mm512_mask_max_ps(vmax, m, vmax, v);
            }
            i += 16;
        }
        let mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
        let mut vsum = _mm512_setzero_ps();
        let mut i = 0;
        while i < n {
            let m = mask(n - i);
            // SAFETY: masked to the slice.
            unsafe {
                let p = x.as_mut_ptr().add(i);
                let v = _mm512_maskz_loadu_ps(m, p);
                let e = _mm512_maskz_mov_ps(m, exp(_mm512_sub_ps(v, mx)));
                vsum = _mm512_add_ps(vsum, e);
                _mm512_mask_storeu_ps(p, m, e);
            }
            i += 16;
        }
        _mm512_reduce_add_ps(vsum)
    }

    /// f32 -> bf16 bits, round to nearest even.
    #[target_feature(enable = "avx512f,avx512bf16,avx512vl")]
    pub unsafe fn to_bf16(src: &[f32], dst: &mut [u16]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: in bounds.
            unsafe {
                let v = _mm512_loadu_ps(src.as_ptr().add(i));
                let b: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
                _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, b);
            }
            i += 16;
        }
        for j in i..n {
            dst[j] = super::f32_to_bf16(src[j]);
        }
    }
}

fn gelu_scalar(x: f32) -> f32 {
    let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    0.5 * x * (1.0 + u.tanh())
}

fn gelu_inplace(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: feature checked.
        unsafe { simd::gelu_slice(x) };
        return;
    }
    for v in x {
        *v = gelu_scalar(*v);
    }
}

/// `x = exp(x + bias - max)` in place; returns the sum.
fn softmax_row(x: &mut [f32], bias: Option<&[f32]>, scale: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: feature checked; bias (when given) has x.len() elements.
        return unsafe { simd::softmax_row(x, bias, scale) };
    }
    for (i, v) in x.iter_mut().enumerate() {
        *v = *v * scale + bias.map_or(0.0, |b| b[i]);
    }
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    s
}

// ---------------------------------------------------------------- attention

/// Keys per block of the f32 flash-style attention, in 12-key tiles (1512;
/// measured against 504, 1008 and 2688 at 2688 keys: 0.34-0.36 s against
/// 0.37-0.44 s for one self-attention of the 2B model).
const KEY_BLOCK_TILES: usize = 126;

/// Most score floats live at once, summed over threads (256 MiB).
pub const SCORE_BUDGET: usize = 64 << 20;

/// Queries per attention task for `l` keys on `threads` threads.
fn query_chunk(l: usize, threads: usize) -> usize {
    let per_thread = SCORE_BUDGET / threads.max(1);
    // Keep each thread's buffer near L2 size when possible (1M floats), never
    // beyond the budget.
    let cap = (per_thread.min(1 << 20) / l.max(1)).max(1);
    cap.clamp(1, 256)
}

/// Multi-head attention on the CPU. `q` `[B, S, H*d]`, `k`/`v` `[B, L, H*d]`
/// (f32 or bf16, any layout), `bias` additive `[B, L]` f32 or `None`. Returns
/// `[B, S, H*d]` in `q`'s dtype; computes in f32.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, bias: Option<&Tensor>) -> Result<Tensor> {
    let (b, s, dm) = q.dims3()?;
    let (bk, l, dk) = k.dims3()?;
    if bk != b || dk != dm || v.dims3()? != (b, l, dm) || dm % heads != 0 {
        bail!("attention: shapes q {:?} k {:?} v {:?}", q.dims(), k.dims(), v.dims());
    }
    let dtype = q.dtype();
    let d = dm / heads;
    let scale = 1.0 / (d as f32).sqrt();
    if dtype == DType::BF16 && bf16_matmul() == Bf16Matmul::Amx && d.is_multiple_of(32) {
        return attention_amx(q, k, v, heads, bias);
    }
    let qf = q.to_dtype(DType::F32)?.contiguous()?;
    let kf = k.to_dtype(DType::F32)?.contiguous()?;
    let vf = v.to_dtype(DType::F32)?.contiguous()?;
    let biasf = match bias {
        Some(t) => {
            if t.dims2()? != (b, l) {
                bail!("attention: bias {:?}, expected [{b}, {l}]", t.dims());
            }
            Some(t.to_dtype(DType::F32)?.contiguous()?.flatten_all()?.to_vec1::<f32>()?)
        }
        None => None,
    };
    let threads = rayon::current_num_threads().max(1);
    let chunk = query_chunk(l, threads);
    let n_chunks = s.div_ceil(chunk);
    let mut out = zeroed::<f32>(b * s * dm);
    let out_ptr = SendPtr(out.as_mut_ptr());
    with_buf(&qf, |qb| {
        with_buf(&kf, |kb| {
            with_buf(&vf, |vb| {
                let (Buf::F32(qs), Buf::F32(ks), Buf::F32(vs)) = (qb, kb, vb) else {
                    bail!("attention: f32 expected")
                };
                if has_avx512() {
                    // Transposed products, so that nothing large is repacked per
                    // task: S^T = K_h Q^T (K_h packed once per head as the left
                    // operand, the query chunk as right panels), written straight
                    // into 32-query panels [L][32]; a column softmax in place makes
                    // them the right operand of O^T = V_h^T P^T (V_h^T packed once).
                    let tiles_l = l.div_ceil(F32_ROWS);
                    let tiles_d = d.div_ceil(F32_ROWS);
                    let kpk: Vec<Vec<f32>> = (0..b * heads)
                        .into_par_iter()
                        .map(|bh| {
                            let (bi, h) = (bh / heads, bh % heads);
                            let mut v = vec![0f32; tiles_l * d * F32_ROWS];
                            for ti in 0..tiles_l {
                                // SAFETY: rows (keys) of batch bi, head h columns.
                                unsafe {
                                    pack_a_tile(ks.as_ptr().add(bi * l * dm + h * d), dm, l, ti, &mut v[ti * d * F32_ROWS..(ti + 1) * d * F32_ROWS])
                                };
                            }
                            v
                        })
                        .collect();
                    let vpk: Vec<Vec<f32>> = (0..b * heads)
                        .into_par_iter()
                        .map(|bh| {
                            let (bi, h) = (bh / heads, bh % heads);
                            let mut v = vec![0f32; tiles_d * l * F32_ROWS];
                            for ti in 0..tiles_d {
                                let t = &mut v[ti * l * F32_ROWS..(ti + 1) * l * F32_ROWS];
                                for li in 0..l {
                                    for i in 0..F32_ROWS {
                                        let dd = (ti * F32_ROWS + i).min(d - 1);
                                        t[li * F32_ROWS + i] = vs[(bi * l + li) * dm + h * d + dd];
                                    }
                                }
                            }
                            v
                        })
                        .collect();
                    // Flash-style over blocks of keys (online softmax), one
                    // 32-query panel at a time through a block, so that its
                    // scores stay in L2 between the two products and the softmax.
                    let blk = (KEY_BLOCK_TILES * F32_ROWS).min(l);
                    (0..b * heads * n_chunks).into_par_iter().for_each(|task| {
                        // The whole Send wrapper moves into the closure, not its raw field.
                        #[allow(clippy::redundant_locals)]
                        let out_ptr = out_ptr;
                        let bi = task / (heads * n_chunks);
                        let h = (task / n_chunks) % heads;
                        let s0 = (task % n_chunks) * chunk;
                        let cq = chunk.min(s - s0);
                        let np = cq.div_ceil(32);
                        let bias = biasf.as_ref().map(|v| &v[bi * l..(bi + 1) * l]);
                        let (kh, vh) = (&kpk[bi * heads + h], &vpk[bi * heads + h]);
                        // [np][d][32] query panels, [blk][32] scores (one panel's
                        // at a time), [d][32 np] output.
                        with_scratch(&SCRATCH, np * 32 * d + blk * 32 + d * np * 32, |buf| {
                            let (qpan, rest) = buf.split_at_mut(np * 32 * d);
                            let (st, ot) = rest.split_at_mut(blk * 32);
                            for pi in 0..np {
                                for dd in 0..d {
                                    for j in 0..32 {
                                        let qi = pi * 32 + j;
                                        qpan[(pi * d + dd) * 32 + j] =
                                            if qi < cq { qs[(bi * s + s0 + qi) * dm + h * d + dd] } else { 0.0 };
                                    }
                                }
                            }
                            let mut mx = [f32::NEG_INFINITY; 256];
                            let mut sum = [0f32; 256];
                            // One 32-query panel at a time through a key block:
                            // its scores ([bn][32]) stay in L1 between the two
                            // products and the softmax.
                            for l0 in (0..l).step_by(blk) {
                                let bn = blk.min(l - l0);
                                for pi in 0..np {
                                    let panel = &mut st[..bn * 32];
                                    // SAFETY: AVX-512F checked; K tiles l0/12.. (blk is a
                                    // multiple of 12); query panel pi of [d][32].
                                    unsafe {
                                        f32_gemm_raw(kh.as_ptr().add(l0 / F32_ROWS * d * F32_ROWS), bn,
                                            qpan.as_ptr().add(pi * d * 32), d, 1, panel.as_mut_ptr(), 32, bn * 32, false);
                                    }
                                    let (m32, s32): (&mut [f32; 32], &mut [f32; 32]) = (
                                        (&mut mx[pi * 32..pi * 32 + 32]).try_into().expect("32"),
                                        (&mut sum[pi * 32..pi * 32 + 32]).try_into().expect("32"),
                                    );
                                    // SAFETY: AVX-512F; panel is [bn][32].
                                    let alpha = unsafe { simd::softmax_columns_online(panel, bias.map(|b| &b[l0..l0 + bn]), scale, m32, s32) };
                                    if l0 > 0 {
                                        for dd in 0..d {
                                            let row = &mut ot[dd * np * 32 + pi * 32..dd * np * 32 + pi * 32 + 32];
                                            for (x, &a) in row.iter_mut().zip(alpha.iter()) {
                                                *x *= a;
                                            }
                                        }
                                    }
                                    // SAFETY: as above; V^T tiles are l long, window
                                    // l0..l0+bn; output panel pi of [d][32 np].
                                    unsafe {
                                        f32_gemm_raw_s(vh.as_ptr().add(l0 * F32_ROWS), l * F32_ROWS, d, panel.as_ptr(), bn, 1,
                                            ot.as_mut_ptr().add(pi * 32), np * 32, 32, l0 > 0);
                                    }
                                }
                            }
                            for qi in 0..cq {
                                let inv = 1.0 / sum[qi];
                                // SAFETY: this task's output block (rows s0.., head h).
                                let dst = unsafe {
                                    std::slice::from_raw_parts_mut(out_ptr.0.add((bi * s + s0 + qi) * dm + h * d), d)
                                };
                                for (dd, x) in dst.iter_mut().enumerate() {
                                    *x = ot[dd * np * 32 + qi] * inv;
                                }
                            }
                        });
                    });
                    return Ok(());
                }
                (0..b * heads * n_chunks).into_par_iter().for_each(|task| {
                    // The whole Send wrapper moves into the closure, not its raw field.
                    #[allow(clippy::redundant_locals)]
                    let out_ptr = out_ptr;
                    let bi = task / (heads * n_chunks);
                    let h = (task / n_chunks) % heads;
                    let c = task % n_chunks;
                    let s0 = c * chunk;
                    let cq = chunk.min(s - s0);
                    let bias = biasf.as_ref().map(|v| &v[bi * l..(bi + 1) * l]);
                    with_scratch(&SCRATCH, cq * l + cq, |buf| {
                        let (scores, inv) = buf.split_at_mut(cq * l);
                        let qp = qs[(bi * s + s0) * dm + h * d..].as_ptr();
                        let kp = ks[bi * l * dm + h * d..].as_ptr();
                        let vp = vs[bi * l * dm + h * d..].as_ptr();
                        // SAFETY: q rows s0..s0+cq, k/v rows 0..l of batch bi,
                        // columns h*d..h*d+d are inside the buffers; the output
                        // block (rows s0.., columns h*d..) is this task's alone.
                        unsafe {
                            gemm::gemm(
                                cq, l, d,
                                scores.as_mut_ptr(), 1, l as isize,
                                false,
                                qp, 1, dm as isize,
                                kp, dm as isize, 1,
                                0.0, scale,
                                false, false, false,
                                Parallelism::None,
                            );
                        }
                        for (i, row) in scores.chunks_exact_mut(l).enumerate() {
                            inv[i] = 1.0 / softmax_row(row, bias, 1.0);
                        }
                        let op = unsafe { out_ptr.0.add((bi * s + s0) * dm + h * d) };
                        unsafe {
                            gemm::gemm(
                                cq, d, l,
                                op, 1, dm as isize,
                                false,
                                scores.as_ptr(), 1, l as isize,
                                vp, 1, dm as isize,
                                0.0, 1.0,
                                false, false, false,
                                Parallelism::None,
                            );
                            for (i, &f) in inv.iter().enumerate() {
                                let row = std::slice::from_raw_parts_mut(op.add(i * dm), d);
                                for x in row {
                                    *x *= f;
                                }
                            }
                        }
                    });
                });
                Ok(())
            })
        })
    })?;
    let t = f32_tensor(out, (b, s, dm));
    if dtype == DType::F32 { Ok(t) } else { t.to_dtype(dtype) }
}

/// [`attention`] for bf16 on AMX: `q k^T` and `p v` on tiles (bf16 operands,
/// f32 accumulation; the unnormalised probabilities rounded to bf16 for the
/// second product, as PyTorch's CPU flash attention does), softmax in f32.
fn attention_amx(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, bias: Option<&Tensor>) -> Result<Tensor> {
    let (b, s, dm) = q.dims3()?;
    let l = k.dim(1)?;
    let d = dm / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let biasf = match bias {
        Some(t) => Some(t.to_dtype(DType::F32)?.contiguous()?.flatten_all()?.to_vec1::<f32>()?),
        None => None,
    };
    // One 32-query block per task: its [32, L] f32 scores and bf16
    // probabilities stay in L2 (at 2688 keys, 256 queries a task took twice
    // as long: 0.35 s against 0.17 s for one self-attention of the 2B model).
    let chunk = 32;
    let n_chunks = s.div_ceil(chunk);
    let lp = l.div_ceil(32) * 32;
    let mut out = zeroed::<u16>(b * s * dm);
    let out_ptr = SendPtr(out.as_mut_ptr());
    with_buf(&q, |qb| {
        with_buf(&k, |kb| {
            with_buf(&v, |vb| {
                let (Buf::Bf16(qs), Buf::Bf16(ks), Buf::Bf16(vs)) = (qb, kb, vb) else {
                    bail!("attention: bf16 expected")
                };
                // K_h (as the [L, d] weight of q k^T) and V_h^T (the [d, L] weight
                // of p v, L padded with zeros) per (batch, head).
                let kp: Vec<Packed> = (0..b * heads)
                    .into_par_iter()
                    .map(|bh| {
                        let (bi, h) = (bh / heads, bh % heads);
                        Packed::from_fn(l, d, |li, kk| ks[(bi * l + li) * dm + h * d + kk])
                    })
                    .collect();
                let vp: Vec<Packed> = (0..b * heads)
                    .into_par_iter()
                    .map(|bh| {
                        let (bi, h) = (bh / heads, bh % heads);
                        Packed::from_fn(d, lp, |dd, li| if li < l { vs[(bi * l + li) * dm + h * d + dd] } else { 0 })
                    })
                    .collect();
                (0..b * heads * n_chunks).into_par_iter().for_each(|task| {
                    // The whole Send wrapper moves into the closure, not its raw field.
                    #[allow(clippy::redundant_locals)]
                    let out_ptr = out_ptr;
                    let bi = task / (heads * n_chunks);
                    let h = (task / n_chunks) % heads;
                    let s0 = (task % n_chunks) * chunk;
                    let cq = chunk.min(s - s0);
                    let cqp = cq.div_ceil(32) * 32;
                    let bias = biasf.as_ref().map(|v| &v[bi * l..(bi + 1) * l]);
                    let (kh, vh) = (&kp[bi * heads + h], &vp[bi * heads + h]);
                    // [cqp x lp] scores, then [cqp x d] output (f32); q rows and
                    // probabilities as bf16 bits (two halves of one u16 buffer).
                    with_scratch(&SCRATCH, cqp * lp + cqp * d, |buf| {
                        let (scores, o) = buf.split_at_mut(cqp * lp);
                        let mut inv = [0f32; 256];
                        BF16_SCRATCH.with(|cell| {
                            let mut hb = cell.borrow_mut();
                            let (qrows, probs) = line_aligned(&mut hb, cqp * d + cqp * lp).split_at_mut(cqp * d);
                            for i in 0..cqp {
                                let dst = &mut qrows[i * d..(i + 1) * d];
                                if i < cq {
                                    let src = (bi * s + s0 + i) * dm + h * d;
                                    dst.copy_from_slice(&qs[src..src + d]);
                                } else {
                                    dst.fill(0);
                                }
                            }
                            #[cfg(target_arch = "x86_64")]
                            // SAFETY: AMX usable (bf16_matmul); all blocks are whole
                            // 32-row / 32-column tiles inside the buffers above.
                            unsafe {
                                amx::load_config();
                                for pi in 0..lp / 32 {
                                    for mb in (0..cqp).step_by(32) {
                                        amx::block(
                                            qrows.as_ptr().add(mb * d), d, kh.tile(2 * pi, 0), kh.tile(2 * pi + 1, 0),
                                            d / 32, scores.as_mut_ptr().add(mb * lp + pi * 32), lp, false,
                                        );
                                    }
                                }
                            }
                            for i in 0..cqp {
                                let prow = &mut probs[i * lp..(i + 1) * lp];
                                if i < cq {
                                    let row = &mut scores[i * lp..i * lp + l];
                                    inv[i] = 1.0 / softmax_row(row, bias, scale);
                                    f32_to_bf16_slice(row, &mut prow[..l]);
                                    prow[l..].fill(0);
                                } else {
                                    prow.fill(0);
                                }
                            }
                            #[cfg(target_arch = "x86_64")]
                            // SAFETY: as above.
                            unsafe {
                                for pi in 0..d / 32 {
                                    for mb in (0..cqp).step_by(32) {
                                        amx::block(
                                            probs.as_ptr().add(mb * lp), lp, vh.tile(2 * pi, 0), vh.tile(2 * pi + 1, 0),
                                            lp / 32, o.as_mut_ptr().add(mb * d + pi * 32), d, false,
                                        );
                                    }
                                }
                                amx::release();
                            }
                        });
                        for i in 0..cq {
                            let row = &mut o[i * d..(i + 1) * d];
                            for x in row.iter_mut() {
                                *x *= inv[i];
                            }
                            // SAFETY: this task's output block (rows s0.., head h).
                            unsafe { OutPtr::Bf16(out_ptr.0).store((bi * s + s0 + i) * dm + h * d, row) };
                        }
                    });
                });
                Ok(())
            })
        })
    })?;
    Ok(bf16_tensor(out, (b, s, dm)))
}

thread_local! {
    static BF16_SCRATCH: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

// ---------------------------------------------------------------- linear layers

/// Activation fused after a [`Linear`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    GeluTanh,
}

/// bf16 weights `[N, K]` repacked for `tdpbf16ps` / `vdpbf16ps`: 16-column
/// tiles (N padded to a multiple of 32), each a run of `K / 32` 1 KiB tiles of
/// 16 rows (pairs of k) x 16 columns x 2 (the pair).
struct Packed {
    n: usize,
    k: usize,
    data: LineAligned<u16>,
}

impl Packed {
    fn new(w: &[f32], n: usize, k: usize) -> Self {
        Self::from_fn(n, k, |row, kk| f32_to_bf16(w[row * k + kk]))
    }

    /// From `at(n, k)` = the bf16 bits of `W[n, k]` (`k % 32 == 0`).
    fn from_fn(n: usize, k: usize, at: impl Fn(usize, usize) -> u16 + Sync) -> Self {
        let np = n.div_ceil(32) * 2; // 16-column tiles
        let kb = k / 32;
        let mut data = LineAligned::<u16>::zeroed(np * kb * 512);
        data.par_chunks_mut(kb * 512).enumerate().for_each(|(t, tile_col)| {
            for kbi in 0..kb {
                let tile = &mut tile_col[kbi * 512..][..512];
                for nn in 0..16 {
                    let row = t * 16 + nn;
                    if row >= n {
                        continue;
                    }
                    for kp in 0..16 {
                        tile[kp * 32 + nn * 2] = at(row, kbi * 32 + 2 * kp);
                        tile[kp * 32 + nn * 2 + 1] = at(row, kbi * 32 + 2 * kp + 1);
                    }
                }
            }
        });
        Self { n, k, data }
    }

    /// Start of 16-column tile `t` at k block `kb`.
    #[inline]
    fn tile(&self, t: usize, kb: usize) -> *const u16 {
        self.data[(t * (self.k / 32) + kb) * 512..].as_ptr()
    }
}

/// A linear layer (`y = x W^T + b`) with CPU fast paths (see the module doc).
#[derive(Clone)]
pub struct Linear {
    /// `[N, K]`; absent when only the packed copy is kept.
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    bias_f32: Option<std::sync::Arc<Vec<f32>>>,
    packed: Option<std::sync::Arc<Packed>>,
    /// f32 weights in AVX-512 panels (the original dropped).
    packed_f32: Option<std::sync::Arc<PackedF32>>,
    in_dim: usize,
    out_dim: usize,
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linear")
            .field("in", &self.in_dim)
            .field("out", &self.out_dim)
            .field("packed", &self.packed.is_some())
            .finish()
    }
}

impl Linear {
    /// `weight` `[out, in]`, `bias` `[out]`. bf16 CPU weights are repacked
    /// (and the original dropped) when [`bf16_matmul`] is AMX / AVX-512 BF16.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let _pack = super::profile::scope("load.pack");
        let cpu = weight.device().is_cpu();
        let bias_f32 = match &bias {
            Some(b) if cpu => Some(std::sync::Arc::new(b.to_dtype(DType::F32)?.to_vec1::<f32>()?)),
            _ => None,
        };
        let pack = cpu
            && weight.dtype() == DType::BF16
            && in_dim % 32 == 0
            && matches!(bf16_matmul(), Bf16Matmul::Amx | Bf16Matmul::Avx512Bf16);
        // Packed straight from the loaded storage: no f32 round trip or copy of
        // the whole matrix first.
        if pack {
            let w = weight.contiguous()?;
            let packed = with_buf(&w, |b| match b {
                Buf::Bf16(bits) => Ok(Packed::from_fn(out_dim, in_dim, |n, k| bits[n * in_dim + k])),
                Buf::F32(_) => bail!("linear: bf16 weight stored as f32"),
            })?;
            return Ok(Self {
                weight: None,
                bias,
                bias_f32,
                packed: Some(std::sync::Arc::new(packed)),
                packed_f32: None,
                in_dim,
                out_dim,
            });
        }
        if cpu && weight.dtype() == DType::F32 && has_avx512() && !weight.stride().contains(&0) {
            let w = weight.contiguous()?;
            let packed = with_buf(&w, |b| match b {
                Buf::F32(v) => Ok(PackedF32::from_fn(out_dim, in_dim, |n, k| v[n * in_dim + k])),
                Buf::Bf16(_) => bail!("linear: f32 weight stored as bf16"),
            })?;
            return Ok(Self {
                weight: None,
                bias,
                bias_f32,
                packed: None,
                packed_f32: Some(std::sync::Arc::new(packed)),
                in_dim,
                out_dim,
            });
        }
        Ok(Self {
            weight: Some(weight.contiguous()?),
            bias,
            bias_f32,
            packed: None,
            packed_f32: None,
            in_dim,
            out_dim,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, Act::None)
    }

    /// `act(x W^T + b)` for `x` `[..., in]`.
    pub fn forward_act(&self, x: &Tensor, act: Act) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let Some((&k, lead)) = dims.split_last() else { bail!("linear: scalar input") };
        if k != self.in_dim {
            bail!("linear: input width {k}, expected {}", self.in_dim);
        }
        let m: usize = lead.iter().product();
        let mut out_shape = lead.to_vec();
        out_shape.push(self.out_dim);
        if let Some(p) = &self.packed {
            let x = x.to_dtype(DType::BF16)?.contiguous()?;
            let y = with_buf(&x, |b| {
                let Buf::Bf16(xs) = b else { bail!("linear: bf16 expected") };
                let mut out = OutVec::new(DType::BF16, m * self.out_dim)?;
                packed_matmul(xs, m, p, self.bias_f32.as_deref().map(|v| &v[..]), act, out.ptr());
                Ok(out)
            })?;
            return Ok(y.into_tensor(out_shape));
        }
        if let Some(p) = &self.packed_f32 {
            let dtype = x.dtype();
            let x = x.to_dtype(DType::F32)?.contiguous()?;
            let y = with_buf(&x, |b| {
                let Buf::F32(xs) = b else { bail!("linear: f32 expected") };
                let mut out = OutVec::new(DType::F32, m * self.out_dim)?;
                packed_matmul_f32(xs, m, p, self.bias_f32.as_deref().map(|v| &v[..]), act, out.ptr());
                Ok(out)
            })?;
            let y = y.into_tensor(out_shape);
            return if dtype == DType::F32 { Ok(y) } else { y.to_dtype(dtype) };
        }
        let w = self.weight.as_ref().expect("unpacked linear keeps its weight");
        let fast = x.device().is_cpu()
            && (x.dtype() == DType::F32
                || (x.dtype() == DType::BF16 && bf16_matmul() != Bf16Matmul::Candle));
        if !fast {
            let y = x.broadcast_matmul(&w.t()?)?;
            let y = match &self.bias {
                Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?)?,
                None => y,
            };
            return match act {
                Act::None => Ok(y),
                Act::GeluTanh => y.gelu(),
            };
        }
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?.contiguous()?;
        // bf16 weights: converted just-in-time (and dropped after the call).
        let wf = w.to_dtype(DType::F32)?.contiguous()?;
        if has_avx512() {
            let p = with_buf(&wf, |wb| {
                let Buf::F32(ws) = wb else { bail!("linear: f32 expected") };
                Ok(PackedF32::from_fn(self.out_dim, k, |n, kk| ws[n * k + kk]))
            })?;
            drop(wf);
            let y = with_buf(&xf, |b| {
                let Buf::F32(xs) = b else { bail!("linear: f32 expected") };
                let mut out = OutVec::new(dtype, m * self.out_dim)?;
                packed_matmul_f32(xs, m, &p, self.bias_f32.as_deref().map(|v| &v[..]), act, out.ptr());
                Ok(out)
            })?;
            return Ok(y.into_tensor(out_shape));
        }
        let mut y = zeroed::<f32>(m * self.out_dim);
        with_buf(&xf, |xb| {
            with_buf(&wf, |wb| {
                let (Buf::F32(xs), Buf::F32(ws)) = (xb, wb) else { bail!("linear: f32 expected") };
                gemm_f32(xs, ws, self.bias_f32.as_deref().map(|v| &v[..]), m, k, self.out_dim, &mut y);
                Ok(())
            })
        })?;
        if act == Act::GeluTanh {
            y.par_chunks_mut(1 << 14).for_each(gelu_inplace);
        }
        let t = f32_tensor(y, out_shape);
        if dtype == DType::F32 { Ok(t) } else { t.to_dtype(dtype) }
    }
}

/// `y[m, n] = sum_k x[m, k] w[n, k] + bias[n]` (f32, row-major), on rayon's pool.
fn gemm_f32(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize, y: &mut [f32]) {
    if let Some(b) = bias {
        y.par_chunks_mut(n * 64).for_each(|rows| {
            for r in rows.chunks_exact_mut(n) {
                r.copy_from_slice(b);
            }
        });
    }
    let threads = rayon::current_num_threads().max(1);
    // SAFETY: x is m x k, w is n x k (read as the k x n matrix W^T), y is m x n.
    unsafe {
        gemm::gemm(
            m, n, k,
            y.as_mut_ptr(), 1, n as isize,
            bias.is_some(),
            x.as_ptr(), 1, k as isize,
            w.as_ptr(), k as isize, 1,
            1.0, 1.0,
            false, false, false,
            if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None },
        );
    }
}

/// Rows per task group and 32-column panels per task of [`packed_matmul`],
/// and k blocks (of 32) per pass over the group (32: one pass's A and B
/// tiles, 64 KiB each, stay near L1; AMX at 640x2048x8192 reached 1.09-1.15
/// TFLOP/s against 0.79-0.94 with 64 blocks).
const GROUP_ROWS: usize = 128;
const TASK_PANELS: usize = 4;
const K_BLOCKS: usize = 32;

/// Task `t` of `groups x pchunks` as (row group, panel chunk), panel chunk
/// major: rayon hands each thread a run of consecutive tasks, which then
/// share one chunk of weight panels (hot in L2) across all row groups instead
/// of streaming every panel from memory once per row group (the weights are
/// far larger than the caches). Measured at 640x2048x8192 with 8 cold weight
/// copies (`LTX_BENCH_COLD=8`): AMX median 790 against 626 GFLOP/s, f32 201
/// against 171.
fn task_cell(t: usize, groups: usize) -> (usize, usize) {
    (t % groups, t / groups)
}

/// `out = act(x W^T + b)` with `x` `[m, K]` bf16 bits, `W` packed.
fn packed_matmul(x: &[u16], m: usize, p: &Packed, bias: Option<&[f32]>, act: Act, out: OutPtr) {
    let amx = bf16_matmul() == Bf16Matmul::Amx;
    let k = p.k;
    let kb = k / 32;
    // AMX: the rows packed once into 1 KiB tiles (16 rows x 32 k, rows past m
    // zero) `[row block][k block]`, so that each tile load reads 1 KiB of
    // consecutive memory (rows 4 KiB apart would share L1 sets) and whole
    // 32-row blocks exist.
    let mp = if amx { m.div_ceil(32) * 32 } else { m };
    let tiles_a = if amx {
        let mut v = LineAligned::<u16>::zeroed(mp / 16 * kb * 512);
        v.par_chunks_mut(kb * 512).enumerate().for_each(|(mb, blk)| {
            for r in 0..16 {
                let row = mb * 16 + r;
                if row >= m {
                    break;
                }
                for kbi in 0..kb {
                    blk[kbi * 512 + r * 32..kbi * 512 + r * 32 + 32]
                        .copy_from_slice(&x[row * k + kbi * 32..row * k + kbi * 32 + 32]);
                }
            }
        });
        v
    } else {
        LineAligned::zeroed(0)
    };
    // AVX-512 BF16: the kernel reads 12 rows of x at once, 4 bytes each per
    // step; rows a multiple of 4 KiB apart (K = 2048, 8192) would share L1
    // sets, so those are read from one copy with a padded stride, made once
    // per product. (A copy per task, repeated for every chunk of weight
    // panels, was 13% of the time at 4160 x 2048 x 8192 on a Zen 4: 365-378
    // GFLOP/s, now 424-440; rows read in place at stride K: 391-404.)
    let mut pad: Vec<u16> = Vec::new();
    let (xa, lda) = if amx || !(k * 2).is_multiple_of(4096) {
        (x.as_ptr() as usize, k)
    } else {
        let lda = k + 32;
        // Reused between products (fresh pages cost more than the copy).
        pad = XPAD.with(|c| std::mem::take(&mut *c.borrow_mut()));
        if pad.len() < m * lda {
            drop(std::mem::take(&mut pad));
            pad = vec![0u16; m * lda];
        }
        pad[..m * lda].par_chunks_mut(lda).zip(x.par_chunks(k)).for_each(|(d, s)| d[..k].copy_from_slice(s));
        (pad.as_ptr() as usize, lda)
    };

    let panels = p.n.div_ceil(32);
    let group_rows = GROUP_ROWS;
    let groups = mp.div_ceil(group_rows);
    let pchunks = panels.div_ceil(TASK_PANELS);
    (0..groups * pchunks).into_par_iter().for_each(|task| {
        let (g, pc) = task_cell(task, groups);
        let r0 = g * group_rows;
        let rows = group_rows.min(mp - r0);
        let p0 = pc * TASK_PANELS;
        let np = TASK_PANELS.min(panels - p0);
        let sw = np * 32; // scratch row width
        with_scratch(&SCRATCH, rows * sw, |acc| {
            #[cfg(target_arch = "x86_64")]
            {
                if amx {
                    // SAFETY: AMX is usable (bf16_matmul checked it); every block
                    // reads rows r0.. r0+rows (< mp, padded) of x and whole packed
                    // tiles, and writes inside `acc`.
                    unsafe {
                        amx::load_config();
                        for kc in (0..kb).step_by(K_BLOCKS) {
                            let kn = K_BLOCKS.min(kb - kc);
                            for pi in 0..np {
                                let t = 2 * (p0 + pi);
                                for mb in (0..rows).step_by(32) {
                                    let blk = (r0 + mb) / 16;
                                    amx::block_packed(
                                        tiles_a.as_ptr().add((blk * kb + kc) * 512),
                                        tiles_a.as_ptr().add(((blk + 1) * kb + kc) * 512),
                                        p.tile(t, kc),
                                        p.tile(t + 1, kc),
                                        kn,
                                        acc.as_mut_ptr().add(mb * sw + pi * 32),
                                        sw,
                                        kc > 0,
                                    );
                                }
                            }
                        }
                        amx::release();
                    }
                } else {
                    let xa = xa as *const u16;
                    for kc in (0..kb).step_by(K_BLOCKS) {
                        let kn = K_BLOCKS.min(kb - kc);
                        for pi in 0..np {
                            let t = 2 * (p0 + pi);
                            let mut mb = 0;
                            while mb < rows {
                                let r = dp::ROWS.min(rows - mb);
                                // SAFETY: AVX-512 BF16 available (bf16_matmul); rows
                                // r0 + mb.. r0 + mb + r (< m) of the left operand at
                                // stride lda; packed tiles in bounds.
                                unsafe {
                                    dp::block(
                                        r,
                                        xa.add((r0 + mb) * lda + kc * 32),
                                        lda,
                                        p.tile(t, kc),
                                        p.tile(t + 1, kc),
                                        kn * 16,
                                        acc.as_mut_ptr().add(mb * sw + pi * 32),
                                        sw,
                                        kc > 0,
                                    );
                                }
                                mb += r;
                            }
                        }
                    }
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = (xa, lda, kb, amx);
                unreachable!("packed weights need x86_64");
            }
            // Epilogue: bias, activation, rounding, for the valid rows/columns.
            let c0 = p0 * 32;
            let c1 = ((p0 + np) * 32).min(p.n);
            let valid_rows = rows.min(m.saturating_sub(r0));
            for r in 0..valid_rows {
                let row = &mut acc[r * sw..r * sw + (c1 - c0)];
                if let Some(b) = bias {
                    for (v, &bb) in row.iter_mut().zip(&b[c0..c1]) {
                        *v += bb;
                    }
                }
                if act == Act::GeluTanh {
                    gelu_inplace(row);
                }
                // SAFETY: row r0+r < m, columns c0..c1 < n: this task's block.
                unsafe { out.store((r0 + r) * p.n + c0, row) };
            }
        });
    });
    if pad.len() <= PAD_KEEP {
        XPAD.with(|c| *c.borrow_mut() = pad);
    }
}

/// The largest padded copy of x kept for the next product, in values (96
/// MiB: the 2B transformer's feed-forward input at 4160 tokens is 68 MiB).
const PAD_KEEP: usize = 48 << 20;

thread_local! {
    static XPAD: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

#[cfg(target_arch = "x86_64")]
mod amx {
    use std::arch::asm;

    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    /// Palette 1; tmm0..7 all 16 rows x 64 bytes.
    static CONFIG: TileConfig = {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = 16;
            t += 1;
        }
        TileConfig(c)
    };

    /// # Safety
    /// AMX is usable in this process.
    #[inline]
    pub unsafe fn load_config() {
        unsafe { asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly)) };
    }

    /// # Safety
    /// AMX is usable in this process.
    #[inline]
    pub unsafe fn release() {
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }

    /// [`block`] with the left operand in packed 1 KiB tiles: `a0` / `a1` the
    /// runs of `kbn` tiles of the two 16-row blocks.
    ///
    /// # Safety
    /// As [`block`].
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub unsafe fn block_packed(
        a0: *const u16, a1: *const u16, b0: *const u16, b1: *const u16, kbn: usize, c: *mut f32, ldc: usize,
        accumulate: bool,
    ) {
        unsafe { block_strided(a0, a1, 64, 1024, b0, b1, kbn, c, ldc, accumulate) }
    }

    /// `c[32 x 32]` (f32, row stride `ldc`) `(+)= a[32 x 32 kbn]` (bf16, row
    /// stride `lda`) times the two 16-column tile runs `b0`, `b1` (`kbn` 1 KiB
    /// tiles each).
    ///
    /// # Safety
    /// The tile configuration is loaded; all operands are in bounds.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub unsafe fn block(
        a: *const u16, lda: usize, b0: *const u16, b1: *const u16, kbn: usize, c: *mut f32, ldc: usize,
        accumulate: bool,
    ) {
        unsafe { block_strided(a, a.add(16 * lda), lda * 2, 64, b0, b1, kbn, c, ldc, accumulate) }
    }

    /// The tile loop: left rows `a0` (rows 0-15) and `a1` (rows 16-31),
    /// `row_bytes` apart within a tile, advancing `step_bytes` per k block.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn block_strided(
        a0: *const u16, a1: *const u16, row_bytes: usize, step_bytes: usize, b0: *const u16, b1: *const u16,
        kbn: usize, c: *mut f32, ldc: usize, accumulate: bool,
    ) {
        debug_assert!(kbn > 0);
        let ldcb = ldc * 4;
        unsafe {
            let c2 = c.add(16 * ldc);
            if accumulate {
                asm!(
                    "tileloadd tmm0, [{c} + {s}*1]",
                    "tileloadd tmm1, [{c} + {s}*1 + 64]",
                    "tileloadd tmm2, [{c2} + {s}*1]",
                    "tileloadd tmm3, [{c2} + {s}*1 + 64]",
                    c = in(reg) c, c2 = in(reg) c2, s = in(reg) ldcb,
                    options(nostack, readonly),
                );
            } else {
                asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
            }
            asm!(
                "2:",
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {s64}*1]",
                "tileloadd tmm7, [{b1} + {s64}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, {step}",
                "add {a1}, {step}",
                "add {b0}, 1024",
                "add {b1}, 1024",
                "dec {n}",
                "jnz 2b",
                a0 = inout(reg) a0 => _,
                a1 = inout(reg) a1 => _,
                sa = in(reg) row_bytes,
                step = in(reg) step_bytes,
                b0 = inout(reg) b0 => _,
                b1 = inout(reg) b1 => _,
                s64 = in(reg) 64usize,
                n = inout(reg) kbn => _,
                options(nostack, readonly),
            );
            asm!(
                "tilestored [{c} + {s}*1], tmm0",
                "tilestored [{c} + {s}*1 + 64], tmm1",
                "tilestored [{c2} + {s}*1], tmm2",
                "tilestored [{c2} + {s}*1 + 64], tmm3",
                c = in(reg) c, c2 = in(reg) c2, s = in(reg) ldcb,
                options(nostack),
            );
        }
    }
}

/// AVX-512 BF16 micro-kernel over the same packed tiles.
#[cfg(target_arch = "x86_64")]
mod dp {
    use std::arch::x86_64::*;

    /// Rows per register tile (2 x 16 columns each: 24 accumulators).
    pub const ROWS: usize = 12;

    /// `c[r x 32] (+)= a[r x 2 kpn] * b` for `r <= ROWS`; `b0`/`b1`: the two
    /// 16-column tile runs, one 64-byte row per pair of k.
    ///
    /// # Safety
    /// AVX-512 BF16 available; operands in bounds.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn block(
        r: usize, a: *const u16, lda: usize, b0: *const u16, b1: *const u16, kpn: usize, c: *mut f32,
        ldc: usize, accumulate: bool,
    ) {
        macro_rules! go {
            ($($n:literal)*) => {
                match r {
                    $($n => unsafe { tile::<$n>(a, lda, b0, b1, kpn, c, ldc, accumulate) },)*
                    _ => unreachable!(),
                }
            };
        }
        go!(1 2 3 4 5 6 7 8 9 10 11 12)
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn tile<const R: usize>(
        a: *const u16, lda: usize, b0: *const u16, b1: *const u16, kpn: usize, c: *mut f32, ldc: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        unsafe {
            if accumulate {
                for (i, row) in acc.iter_mut().enumerate() {
                    row[0] = _mm512_loadu_ps(c.add(i * ldc));
                    row[1] = _mm512_loadu_ps(c.add(i * ldc + 16));
                }
            }
            for kp in 0..kpn {
                let w0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b0.add(kp * 32) as *const _));
                let w1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b1.add(kp * 32) as *const _));
                for (i, row) in acc.iter_mut().enumerate() {
                    let pair = (a.add(i * lda + 2 * kp) as *const i32).read_unaligned();
                    let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                    row[0] = _mm512_dpbf16_ps(row[0], av, w0);
                    row[1] = _mm512_dpbf16_ps(row[1], av, w1);
                }
            }
            for (i, row) in acc.iter().enumerate() {
                _mm512_storeu_ps(c.add(i * ldc), row[0]);
                _mm512_storeu_ps(c.add(i * ldc + 16), row[1]);
            }
        }
    }
}

// ---------------------------------------------------------------- f32 AVX-512 GEMM

/// f32 right-hand operand `[K, N]` (given as `W [N, K]`) in 32-column panels:
/// `data[(p * K + k) * 32 + j] = W[32 p + j, k]` (zero past N).
pub(crate) struct PackedF32 {
    n: usize,
    k: usize,
    data: LineAligned<f32>,
}

impl PackedF32 {
    /// From `w[n * k_stride + kk]` (row-major `[N, K]` when `k_stride == K`),
    /// or, with `transposed`, from `w[kk * n_stride + n]` (`[K, N]`).
    fn from_fn(n: usize, k: usize, at: impl Fn(usize, usize) -> f32 + Sync) -> Self {
        let np = n.div_ceil(32);
        let mut data = LineAligned::<f32>::zeroed(np * k * 32);
        // In k blocks of 64: the block's 8 KiB of the panel stays in L1 while
        // its 32 rows are read in 256-byte runs (one pass of 32 rows over a
        // whole panel at stride 128 bytes took 3x as long).
        const KB: usize = 64;
        data.par_chunks_mut(k * 32).enumerate().for_each(|(p, panel)| {
            let rows = 32.min(n - p * 32);
            for k0 in (0..k).step_by(KB) {
                let k1 = (k0 + KB).min(k);
                for j in 0..rows {
                    let nn = p * 32 + j;
                    for kk in k0..k1 {
                        panel[kk * 32 + j] = at(nn, kk);
                    }
                }
            }
        });
        Self { n, k, data }
    }

    #[inline]
    fn panel(&self, p: usize) -> *const f32 {
        self.data[p * self.k * 32..].as_ptr()
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(32)
    }
}

/// Rows per register tile and k per pass of the f32 kernel.
const F32_ROWS: usize = 12;
const F32_KC: usize = 128;

/// Copies rows `0..m` of `a` (row stride `lda`, `k` values each) into
/// 12-row tiles laid out `[tile][k][12]` (rows past `m` repeat the last one),
/// the left-operand layout of [`fk::block`].
///
/// # Safety
/// Rows `0..m` of `a` have `k` readable values; `dst` has `tiles * k * 12` floats.
unsafe fn pack_a_tile(a: *const f32, lda: usize, m: usize, ti: usize, dst: &mut [f32]) {
    let rows = F32_ROWS.min(m - ti * F32_ROWS);
    let src: [*const f32; F32_ROWS] =
        std::array::from_fn(|i| unsafe { a.add((ti * F32_ROWS + i.min(rows - 1)) * lda) });
    for (kk, d) in dst.chunks_exact_mut(F32_ROWS).enumerate() {
        for (i, v) in d.iter_mut().enumerate() {
            *v = unsafe { *src[i].add(kk) };
        }
    }
}

/// `acc[m x 32 np]` (row stride `ldc`) `(+)=` the packed left operand
/// (`[tile][K][12]`) times panels `p0..p0 + np` of `b`, single-threaded.
///
/// # Safety
/// AVX-512F available; `acc` has `m` rows of `ldc >= 32 np` floats; `ap` holds `ceil(m / 12)` packed tiles of `b.k`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn f32_gemm_packed(
    ap: *const f32, m: usize, b: &PackedF32, p0: usize, np: usize, acc: *mut f32, ldc: usize, accumulate: bool,
) {
    unsafe { f32_gemm_raw(ap, m, b.panel(p0), b.k, np, acc, ldc, 32, accumulate) }
}

/// The kernel loop on raw operands: `ap` packed tiles (`[tile][k][12]`),
/// `np` right panels of `[k][32]` from `bp` (consecutive), output panel `pi`
/// at `acc + pi * acc_panel` with row stride `ldc`.
///
/// # Safety
/// As [`f32_gemm_packed`], with `bp0` holding `np` panels of `k` rows.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn f32_gemm_raw(
    ap: *const f32, m: usize, bp0: *const f32, k: usize, np: usize, acc: *mut f32, ldc: usize, acc_panel: usize,
    accumulate: bool,
) {
    unsafe { f32_gemm_raw_s(ap, k * F32_ROWS, m, bp0, k, np, acc, ldc, acc_panel, accumulate) }
}

/// [`f32_gemm_raw`] with left tiles `a_tile` floats apart (a window of k
/// values inside longer packed tiles).
///
/// # Safety
/// As [`f32_gemm_raw`].
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn f32_gemm_raw_s(
    ap: *const f32, a_tile: usize, m: usize, bp0: *const f32, k: usize, np: usize, acc: *mut f32, ldc: usize,
    acc_panel: usize, accumulate: bool,
) {
    let tiles = m.div_ceil(F32_ROWS);
    for kc in (0..k).step_by(F32_KC) {
        let kn = F32_KC.min(k - kc);
        for pi in 0..np {
            let bp = unsafe { bp0.add(pi * k * 32 + kc * 32) };
            for ti in 0..tiles {
                let r0 = ti * F32_ROWS;
                let r = F32_ROWS.min(m - r0);
                unsafe {
                    fk::block(
                        r,
                        ap.add(ti * a_tile + kc * F32_ROWS),
                        bp,
                        kn,
                        acc.add(r0 * ldc + pi * acc_panel),
                        ldc,
                        accumulate || kc > 0,
                    )
                };
            }
        }
    }
}


#[cfg(target_arch = "x86_64")]
mod fk {
    use std::arch::x86_64::*;

    /// `c[r x 32] (+)= a[r x kn] * b[kn x 32]`, `a` laid out `[kn][12]`.
    ///
    /// # Safety
    /// See [`super::f32_gemm_packed`].
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn block(r: usize, a: *const f32, b: *const f32, kn: usize, c: *mut f32, ldc: usize, accumulate: bool) {
        macro_rules! go {
            ($($n:literal)*) => {
                match r {
                    $($n => unsafe { tile::<$n>(a, b, kn, c, ldc, accumulate) },)*
                    _ => unreachable!(),
                }
            };
        }
        go!(1 2 3 4 5 6 7 8 9 10 11 12)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize>(a: *const f32, b: *const f32, kn: usize, c: *mut f32, ldc: usize, accumulate: bool) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        unsafe {
            if accumulate {
                for (i, row) in acc.iter_mut().enumerate() {
                    row[0] = _mm512_loadu_ps(c.add(i * ldc));
                    row[1] = _mm512_loadu_ps(c.add(i * ldc + 16));
                }
            }
            let mut ap = a;
            let mut bp = b;
            for _ in 0..kn {
                let w0 = _mm512_loadu_ps(bp);
                let w1 = _mm512_loadu_ps(bp.add(16));
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*ap.add(i));
                    row[0] = _mm512_fmadd_ps(av, w0, row[0]);
                    row[1] = _mm512_fmadd_ps(av, w1, row[1]);
                }
                ap = ap.add(super::F32_ROWS);
                bp = bp.add(32);
            }
            for (i, row) in acc.iter().enumerate() {
                _mm512_storeu_ps(c.add(i * ldc), row[0]);
                _mm512_storeu_ps(c.add(i * ldc + 16), row[1]);
            }
        }
    }
}

/// `out = act(x W^T + b)` with `x` `[m, K]` f32, `W` packed, on rayon's pool.
fn packed_matmul_f32(x: &[f32], m: usize, p: &PackedF32, bias: Option<&[f32]>, act: Act, out: OutPtr) {
    const GROUP_ROWS: usize = 12 * 12;
    const TASK_PANELS: usize = 4;
    let k = p.k;
    let panels = p.panels();
    // The left operand packed once, in parallel, for all tasks.
    let tiles = m.div_ceil(F32_ROWS);
    let mut ap = zeroed::<f32>(tiles * k * F32_ROWS);
    ap.par_chunks_mut(k * F32_ROWS).enumerate().for_each(|(ti, dst)| {
        // SAFETY: x is m x k.
        unsafe { pack_a_tile(x.as_ptr(), k, m, ti, dst) };
    });
    let groups = m.div_ceil(GROUP_ROWS);
    let pchunks = panels.div_ceil(TASK_PANELS);
    (0..groups * pchunks).into_par_iter().for_each(|task| {
        let (g, pc) = task_cell(task, groups);
        let r0 = g * GROUP_ROWS;
        let rows = GROUP_ROWS.min(m - r0);
        let p0 = pc * TASK_PANELS;
        let np = TASK_PANELS.min(panels - p0);
        let sw = np * 32;
        with_scratch(&SCRATCH, rows * sw, |acc| {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F checked by the caller; the group's tiles start at
            // tile r0 / 12 (GROUP_ROWS is a multiple of 12).
            unsafe {
                f32_gemm_packed(ap.as_ptr().add(r0 / F32_ROWS * k * F32_ROWS), rows, p, p0, np, acc.as_mut_ptr(), sw, false)
            };
            let c0 = p0 * 32;
            let c1 = ((p0 + np) * 32).min(p.n);
            for r in 0..rows {
                let row = &mut acc[r * sw..r * sw + (c1 - c0)];
                if let Some(b) = bias {
                    for (v, &bb) in row.iter_mut().zip(&b[c0..c1]) {
                        *v += bb;
                    }
                }
                if act == Act::GeluTanh {
                    gelu_inplace(row);
                }
                // SAFETY: this task's block.
                unsafe { out.store((r0 + r) * p.n + c0, row) };
            }
        });
    });
}

// ---------------------------------------------------------------- row-wise fused ops

/// The sum of squares of `row` in 16 lanes (a single running sum would be a
/// serial chain of adds, ~4x slower than the rest of a row pass).
#[inline(always)]
fn sum_sq(row: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v * v;
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Runs `f` compiled for AVX-512 where the CPU has it: `f` is inlined into
/// this function, so the plain row loops it holds are vectorised 16 wide
/// (the crate is built for baseline x86-64, 4 wide).
#[inline(always)]
fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the features were checked.
        return unsafe { avx512(f) };
    }
    f()
}

/// Runs `f(row_index, out_row)` over the `rows` rows of width `d` of a new
/// `dtype` tensor, in parallel; `f` fills an f32 row.
fn map_rows(rows: usize, d: usize, dtype: DType, shape: &[usize], f: impl Fn(usize, &mut [f32]) + Sync) -> Result<Tensor> {
    let mut out = OutVec::new(dtype, rows * d)?;
    let ptr = out.ptr();
    let per_task = (16384 / d.max(1)).max(1);
    (0..rows.div_ceil(per_task)).into_par_iter().for_each(|t| {
        with_scratch(&ROW, d, |row| {
            wide(|| {
                for r in t * per_task..((t + 1) * per_task).min(rows) {
                    f(r, row);
                    // SAFETY: row r is written by this task only.
                    unsafe { ptr.store(r * d, row) };
                }
            })
        });
    });
    Ok(out.into_tensor(shape.to_vec()))
}

/// `rms_norm(x) * (1 + ada[rows[r], scale_idx, :]) + ada[rows[r], shift_idx, :]`
/// for every token `r` of `x` `[B, S, D]`, with `ada` `[U, 6, D]` f32
/// contiguous (the modulation of the distinct timesteps) and `rows` `[B * S]`;
/// the result in `x`'s dtype.
pub fn rms_norm_modulate(x: &Tensor, ada: &Tensor, rows: &[u32], shift_idx: usize, scale_idx: usize, eps: f64) -> Result<Tensor> {
    let (b, s, d) = x.dims3()?;
    let (u, six, _) = ada.dims3()?;
    check_rows(rows, b * s, u)?;
    let x = x.contiguous()?;
    with_buf(&x, |xb| {
        with_buf(ada, |ab| {
            let Buf::F32(a) = ab else { bail!("rms_norm_modulate: f32 ada expected") };
            map_rows(b * s, d, x.dtype(), &[b, s, d], |r, row| {
                xb.load(r * d, row);
                let ss = sum_sq(row) / d as f32;
                let inv = 1.0 / (ss + eps as f32).sqrt();
                let base = rows[r] as usize * six * d;
                let shift = &a[base + shift_idx * d..][..d];
                let scale = &a[base + scale_idx * d..][..d];
                for ((v, &sh), &sc) in row.iter_mut().zip(shift).zip(scale) {
                    *v = *v * inv * (1.0 + sc) + sh;
                }
            })
        })
    })
}

/// `rows` has one entry per token, each below `u`.
fn check_rows(rows: &[u32], tokens: usize, u: usize) -> Result<()> {
    if rows.len() != tokens || rows.iter().any(|&r| r as usize >= u) {
        bail!("modulation: {} token rows for {tokens} tokens and {u} distinct timesteps", rows.len());
    }
    Ok(())
}

/// The modulation of a transformer block as f32 `[U, 6, D]`: diffusers'
/// `scale_shift_table[None, None] + temb.reshape(.., 6, D)` for `temb`
/// `[U, 6D]` (f32 or bf16; one row per distinct timestep) and the table's
/// `6D` values in `temb`'s dtype, the sum rounded to bf16 as diffusers' bf16
/// add rounds it. (candle's bf16 broadcast add and conversion took 0.8 s a
/// block at T = 1440 tokens.)
pub fn ada_modulation(temb: &Tensor, table: &[f32]) -> Result<Tensor> {
    let (u, sd) = temb.dims2()?;
    if table.len() != sd || sd % 6 != 0 {
        bail!("ada_modulation: temb {:?}, table of {}", temb.dims(), table.len());
    }
    let temb = temb.contiguous()?;
    let round = temb.dtype() == DType::BF16;
    with_buf(&temb, |tb| {
        map_rows(u, sd, DType::F32, &[u, 6, sd / 6], |r, row| {
            tb.load(r * sd, row);
            for (v, &s) in row.iter_mut().zip(table) {
                let x = *v + s;
                *v = if round { bf16_to_f32(f32_to_bf16(x)) } else { x };
            }
        })
    })
}

/// `x + h` (`[B, S, D]` each), f32 arithmetic, in `x`'s dtype.
pub fn residual_add(x: &Tensor, h: &Tensor) -> Result<Tensor> {
    residual(x, h, None)
}

/// `x + h * ada[rows[r], gate_idx, :]` (`x`, `h` `[B, S, D]`, `ada` and
/// `rows` as [`rms_norm_modulate`]), in `x`'s dtype.
pub fn gated_residual(x: &Tensor, h: &Tensor, ada: &Tensor, rows: &[u32], gate_idx: usize) -> Result<Tensor> {
    residual(x, h, Some((ada, rows, gate_idx)))
}

/// `x + h (* gate)`, the gate of token `r` row `rows[r]` of `ada` `[U, 6, D]`.
fn residual(x: &Tensor, h: &Tensor, gate: Option<(&Tensor, &[u32], usize)>) -> Result<Tensor> {
    let (b, s, d) = x.dims3()?;
    if h.dims3()? != (b, s, d) {
        bail!("residual: {:?} + {:?}", x.dims(), h.dims());
    }
    let x = x.contiguous()?;
    let h = h.to_dtype(x.dtype())?.contiguous()?;
    // (ada values, token rows, 6, gate index)
    let run = |gates: Option<(&[f32], &[u32], usize, usize)>| {
        with_buf(&x, |xb| {
            with_buf(&h, |hb| {
                map_rows(b * s, d, x.dtype(), &[b, s, d], |r, row| {
                    xb.load(r * d, row);
                    with_scratch_row2(d, |hr| {
                        hb.load(r * d, hr);
                        match gates {
                            None => row.iter_mut().zip(hr.iter()).for_each(|(v, &hv)| *v += hv),
                            Some((a, rows, six, idx)) => {
                                let base = rows[r] as usize * six * d;
                                let g = &a[base + idx * d..][..d];
                                for ((v, &hv), &gv) in row.iter_mut().zip(hr.iter()).zip(g) {
                                    *v += hv * gv;
                                }
                            }
                        }
                    });
                })
            })
        })
    };
    match gate {
        None => run(None),
        Some((ada, rows, idx)) => {
            let (u, six, _) = ada.dims3()?;
            check_rows(rows, b * s, u)?;
            with_buf(ada, |ab| {
                let Buf::F32(a) = ab else { bail!("gated_residual: f32 ada expected") };
                run(Some((a, rows, six, idx)))
            })
        }
    }
}

thread_local! {
    static ROW2: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn with_scratch_row2<R>(n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_scratch(&ROW2, n, f)
}

/// RMSNorm over the last dimension times `weight` (f32 `[D]`), then, with
/// `rope` = (cos, sin) f32 `[B, S, D]`, the rotary embedding of (even, odd)
/// channel pairs; `x` `[B, S, D]`, result in `x`'s dtype.
pub fn qk_norm_rope(x: &Tensor, weight: &Tensor, eps: f64, rope: Option<(&Tensor, &Tensor)>) -> Result<Tensor> {
    let (b, s, d) = x.dims3()?;
    let x = x.contiguous()?;
    let w = weight.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    if w.len() != d {
        bail!("qk_norm_rope: weight of {} for width {d}", w.len());
    }
    let norm = |xb: &Buf, r: usize, row: &mut [f32]| {
        xb.load(r * d, row);
        let ss = sum_sq(row) / d as f32;
        let inv = 1.0 / (ss + eps as f32).sqrt();
        for (v, &wv) in row.iter_mut().zip(&w) {
            *v = *v * inv * wv;
        }
    };
    with_buf(&x, |xb| match rope {
        None => map_rows(b * s, d, x.dtype(), &[b, s, d], |r, row| norm(&xb, r, row)),
        Some((cos, sin)) => {
            if cos.dims3()? != (b, s, d) || sin.dims3()? != (b, s, d) {
                bail!("qk_norm_rope: rope tables {:?}, expected [{b}, {s}, {d}]", cos.dims());
            }
            with_buf(cos, |cb| {
                with_buf(sin, |sb| {
                    let (Buf::F32(c), Buf::F32(sn)) = (cb, sb) else { bail!("qk_norm_rope: f32 tables expected") };
                    map_rows(b * s, d, x.dtype(), &[b, s, d], |r, row| {
                        norm(&xb, r, row);
                        // diffusers rounds the normed q/k to the model dtype before
                        // the rotation (`x.float() * cos + rotated.float() * sin`).
                        if let Buf::Bf16(_) = xb {
                            for v in row.iter_mut() {
                                *v = bf16_to_f32(f32_to_bf16(*v));
                            }
                        }
                        let c = &c[r * d..][..d];
                        let sn = &sn[r * d..][..d];
                        for i in (0..d).step_by(2) {
                            let (re, im) = (row[i], row[i + 1]);
                            row[i] = re * c[i] - im * sn[i];
                            row[i + 1] = im * c[i + 1] + re * sn[i + 1];
                        }
                    })
                })
            })
        }
    })
}

// ---------------------------------------------------------------- 3-D convolution

/// What the convolution applies to each input pixel (across its channels)
/// while copying the input into its padded channels-last buffer.
#[derive(Clone, Copy)]
pub enum Prologue<'a> {
    None,
    /// `silu(rms_norm_c(x) * (1 + scale[b, c]) + shift[b, c])`; `modulation`
    /// = (shift, scale), each `[B * C]` f32.
    RmsNormSilu { eps: f32, modulation: Option<(&'a [f32], &'a [f32])> },
    /// LayerNorm over the channels with affine `weight`, `bias` (`[C]`).
    LayerNorm { eps: f32, weight: &'a [f32], bias: &'a [f32] },
}

/// Prepared weights of a stride-1 `k x k x k` (k = 1 or 3) 3-D convolution
/// with zero spatial padding `k / 2` and replicate temporal padding, computed
/// as `k * k` GEMMs per output frame over a padded channels-last copy of the
/// input (left operand rows = output pixels, row stride `C`, `k * C`
/// contiguous values: the `kx` taps), so that no im2col buffer exists.
pub struct Conv3d {
    cin: usize,
    cout: usize,
    k: usize,
    /// f32: `[tap = kt * k + ky][kx * cin + c][cout]`.
    w: Option<Vec<f32>>,
    /// bf16 (AMX / AVX-512 BF16): one packed `[cout, k * cin]` matrix per tap.
    packed: Option<Vec<Packed>>,
    /// f32 on AVX-512, for the direct path: `[tile of 12 outputs][cin][tap][12]`.
    direct: Option<DirectWeights>,
    bias: Vec<f32>,
}

/// The direct kernel's f32 weights: every tile of 12 output channels as
/// `[cin][tap][12]`. The whole tiles are rearranged inside the `[O, I, k, k,
/// k]` weight's own storage (a 12 x n -> n x 12 transpose per tile, `n = I
/// k^3`); the last `O % 12` outputs, zero-padded to 12, are a small copy.
struct DirectWeights {
    full: Tensor,
    tail: Vec<f32>,
    /// Floats per tile: `12 n`.
    tile: usize,
}

impl DirectWeights {
    /// `w` contiguous from offset 0, and this weight's alone.
    fn new(w: Tensor, cout: usize, n: usize) -> Result<Self> {
        let whole = cout / DC_R;
        let mut tail = vec![0f32; if cout.is_multiple_of(DC_R) { 0 } else { DC_R * n }];
        with_buf(&w, |b| {
            let Buf::F32(src) = b else { bail!("conv3d: f32 weight expected") };
            for (i, row) in src[whole * DC_R * n..cout * n].chunks_exact(n).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    tail[j * DC_R + i] = v;
                }
            }
            Ok(())
        })?;
        w.inplace_op1(&TileInPlace { tiles: whole, n })?;
        Ok(Self { full: w, tail, tile: DC_R * n })
    }
}

/// The in-place rearrangement of [`DirectWeights`].
struct TileInPlace {
    tiles: usize,
    n: usize,
}

impl candle_core::InplaceOp1 for TileInPlace {
    fn name(&self) -> &'static str {
        "conv3d-direct-tiles"
    }

    fn cpu_fwd(&self, storage: &mut candle_core::CpuStorage, layout: &candle_core::Layout) -> Result<()> {
        let candle_core::CpuStorage::F32(v) = storage else { bail!("conv3d: f32 weight expected") };
        let len = self.tiles * DC_R * self.n;
        if !layout.is_contiguous() || layout.start_offset() != 0 || v.len() < len {
            bail!("conv3d: the weight to rearrange is not contiguous from its start");
        }
        let n = self.n;
        v[..len].par_chunks_mut(DC_R * n).for_each(|tile| {
            with_scratch(&SCRATCH, DC_R * n, |rows| {
                rows.copy_from_slice(tile);
                for (j, dst) in tile.chunks_exact_mut(DC_R).enumerate() {
                    for (i, d) in dst.iter_mut().enumerate() {
                        *d = rows[i * n + j];
                    }
                }
            })
        });
        Ok(())
    }
}

impl std::fmt::Debug for Conv3d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conv3d({} -> {}, k {}, {})", self.cin, self.cout, self.k, if self.packed.is_some() { "bf16 packed" } else { "f32" })
    }
}

/// Output channels per task.
const CONV_OC: usize = 256;
/// Accumulator floats per task (256 KiB).
const CONV_ACC: usize = 64 << 10;

impl Conv3d {
    /// `weight` `[O, I, k, k, k]`, `bias` `[O]` on the CPU; `None` when the
    /// geometry or storage is not supported (the caller keeps candle's path).
    pub fn new(weight: &Tensor, bias: &Tensor) -> Result<Option<Self>> {
        Self::build(weight, bias, false)
    }

    /// [`Self::new`] that may rearrange `weight`'s own storage into the
    /// direct kernel's order instead of copying it (the VAE's weights are
    /// gigabytes, read just before): when it returns `Some`, nothing may read
    /// `weight`, or another handle to its storage, again.
    pub fn new_reusing(weight: &Tensor, bias: &Tensor) -> Result<Option<Self>> {
        Self::build(weight, bias, true)
    }

    fn build(weight: &Tensor, bias: &Tensor, reuse: bool) -> Result<Option<Self>> {
        let (cout, cin, kt, kh, kw) = weight.dims5()?;
        if !weight.device().is_cpu()
            || !(kt == kh && kh == kw && (kt == 1 || kt == 3))
            || weight.stride().contains(&0)
            || !matches!(weight.dtype(), DType::F32 | DType::BF16)
        {
            return Ok(None);
        }
        let _pack = super::profile::scope("load.pack_conv");
        let k = kt;
        let kk = k * cin;
        let pack = weight.dtype() == DType::BF16
            && kk % 32 == 0
            && matches!(bf16_matmul(), Bf16Matmul::Amx | Bf16Matmul::Avx512Bf16);
        if !pack && has_avx512() {
            // A bf16 weight converts into new storage, which is this one's own.
            let own = reuse || weight.dtype() != DType::F32;
            let w32 = weight.to_dtype(DType::F32)?;
            let in_place = own && w32.is_contiguous() && w32.layout().start_offset() == 0;
            let w32 = if in_place { w32 } else { Tensor::from_vec(w32.flatten_all()?.to_vec1::<f32>()?, w32.shape(), &candle_core::Device::Cpu)? };
            let direct = DirectWeights::new(w32, cout, k * k * kk)?;
            let bias = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            return Ok(Some(Self { cin, cout, k, w: None, packed: None, direct: Some(direct), bias }));
        }
        let w32 = weight.to_dtype(DType::F32)?.contiguous()?;
        with_buf(&w32, |b| {
            let Buf::F32(src) = b else { bail!("conv3d: f32 weight expected") };
            Self::from_weights(src, bias, pack, (cout, cin, k))
        })
        .map(Some)
    }

    /// [`Self::new`] from the f32 weights `src` `[O, I, k, k, k]` (row-major):
    /// packed bf16 tiles when `pack`, else the portable GEMM layout.
    fn from_weights(src: &[f32], bias: &Tensor, pack: bool, (cout, cin, k): (usize, usize, usize)) -> Result<Self> {
        let bias = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let kk = k * cin;
        let at = |o: usize, c: usize, t: usize, y: usize, x: usize| src[(((o * cin + c) * k + t) * k + y) * k + x];
        if pack {
            let packed = (0..k * k)
                .map(|tap| {
                    let (t, y) = (tap / k, tap % k);
                    let mut m = vec![0f32; cout * kk];
                    for o in 0..cout {
                        for x in 0..k {
                            for c in 0..cin {
                                m[o * kk + x * cin + c] = at(o, c, t, y, x);
                            }
                        }
                    }
                    Packed::new(&m, cout, kk)
                })
                .collect();
            return Ok(Self { cin, cout, k, w: None, packed: Some(packed), direct: None, bias });
        }
        let mut w = vec![0f32; k * k * kk * cout];
        for tap in 0..k * k {
            let (t, y) = (tap / k, tap % k);
            for x in 0..k {
                for c in 0..cin {
                    let row = &mut w[(tap * kk + x * cin + c) * cout..][..cout];
                    for (o, v) in row.iter_mut().enumerate() {
                        *v = at(o, c, t, y, x);
                    }
                }
            }
        }
        Ok(Self { cin, cout, k, w: Some(w), packed: None, direct: None, bias })
    }

    /// `x` `[B, C, T, H, W]` (f32 or bf16) -> `[B, O, T, H, W]` in `x`'s dtype:
    /// `conv(prologue(x)) + bias (+ residual)`; `causal`: the first frame is
    /// repeated `k - 1` times before (else `(k - 1) / 2` on both sides).
    pub fn forward(&self, x: &Tensor, causal: bool, pro: Prologue, residual: Option<&Tensor>) -> Result<Tensor> {
        self.forward_scatter(x, causal, pro, residual, Scatter::Plain)
    }

    /// [`Self::forward`] writing the output through `scatter` (`residual`:
    /// only with [`Scatter::Plain`]).
    pub fn forward_scatter(
        &self, x: &Tensor, causal: bool, pro: Prologue, residual: Option<&Tensor>, scatter: Scatter,
    ) -> Result<Tensor> {
        let (b, c, t, h, w) = x.dims5()?;
        if c != self.cin {
            bail!("conv3d: {c} input channels, expected {}", self.cin);
        }
        let dtype = x.dtype();
        let x = x.contiguous()?;
        if scatter == Scatter::Plain
            && let Some(y) = self.winograd(&x, causal, pro, residual, false)?
        {
            return Ok(y);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(wd) = &self.direct {
            return with_buf(&wd.full, |b| {
                let Buf::F32(full) = b else { bail!("conv3d: f32 direct weights expected") };
                self.forward_direct(full, &wd.tail, wd.tile, &x, causal, pro, residual, scatter)
            });
        }
        let g = Geom { cin: c, cout: self.cout, t, h, w, scatter };
        let dims = g.out_dims(b)?;
        let residual = match residual {
            Some(r) => {
                if scatter != Scatter::Plain || r.dims5()? != dims {
                    bail!("conv3d: residual {:?}", r.dims());
                }
                Some(r.contiguous()?)
            }
            None => None,
        };
        let k = self.k;
        let pad = k / 2;
        let (hp, wp) = (h + 2 * pad, w + 2 * pad);
        let bf = self.packed.is_some();
        // Padded channels-last input, plus slack for whole 32-row AMX tiles.
        let plen = b * t * hp * wp * c + (64 + k) * c;
        let mut pf: Vec<f32> = if bf { Vec::new() } else { zeroed(plen) };
        let mut pb: Vec<u16> = if bf { zeroed(plen) } else { Vec::new() };
        with_buf(&x, |xb| {
            let pf_ptr = SendPtr(pf.as_mut_ptr());
            let pb_ptr = SendPtr(pb.as_mut_ptr());
            (0..b * t * h).into_par_iter().for_each(|row| {
                let (pf_ptr, pb_ptr) = (pf_ptr, pb_ptr);
                let (bi, ti, yi) = (row / (t * h), (row / h) % t, row % h);
                with_scratch(&ROW, w * c, |tmp| {
                    // Blocks of 16 channels: 16 source rows, then 16 contiguous
                    // values per pixel.
                    with_scratch_row2(16 * w, |lines| {
                        for c0 in (0..c).step_by(16) {
                            let cn = 16.min(c - c0);
                            for j in 0..cn {
                                xb.load((((bi * c + c0 + j) * t + ti) * h + yi) * w, &mut lines[j * w..(j + 1) * w]);
                            }
                            for xi in 0..w {
                                let dst = &mut tmp[xi * c + c0..xi * c + c0 + cn];
                                for (j, d) in dst.iter_mut().enumerate() {
                                    *d = lines[j * w + xi];
                                }
                            }
                        }
                    });
                    for px in tmp.chunks_exact_mut(c) {
                        apply_prologue(px, bi, pro);
                    }
                    let start = ((bi * t + ti) * hp + yi + pad) * wp * c + pad * c;
                    // SAFETY: each task writes the interior of its own padded row.
                    unsafe {
                        if bf {
                            f32_to_bf16_slice(tmp, std::slice::from_raw_parts_mut(pb_ptr.0.add(start), w * c));
                        } else {
                            std::ptr::copy_nonoverlapping(tmp.as_ptr(), pf_ptr.0.add(start), w * c);
                        }
                    }
                });
            });
            Ok(())
        })?;
        let left = if causal { k - 1 } else { (k - 1) / 2 };
        let kk = k * c;
        let ocw = if self.w.is_none() { CONV_OC.min(self.cout.div_ceil(32) * 32) } else { CONV_OC.min(self.cout) };
        let n_oc = self.cout.div_ceil(ocw);
        // Rows per band: the accumulator (band rows x padded width) x ocw.
        let m_target = (CONV_ACC / ocw).max(32);
        let band = if wp >= m_target { 1 } else { ((m_target - w) / wp + 1).clamp(1, h) };
        let n_band = h.div_ceil(band);
        let mut out = OutVec::new(dtype, dims.0 * dims.1 * dims.2 * dims.3 * dims.4)?;
        let optr = out.ptr();
        let amx = bf && bf16_matmul() == Bf16Matmul::Amx;
        let res_buf = residual.as_ref();
        let run = |res: ResSrc| {
            (0..b * t * n_band * n_oc).into_par_iter().for_each(|task| {
                let oc = task % n_oc;
                let band_i = (task / n_oc) % n_band;
                let to = (task / (n_oc * n_band)) % t;
                let bi = task / (n_oc * n_band * t);
                let (y0, y1) = (band_i * band, ((band_i + 1) * band).min(h));
                let m = (y1 - y0 - 1) * wp + w;
                let mp = if bf { m.div_ceil(32) * 32 } else { m };
                let o0 = oc * ocw;
                let on = ocw.min(self.cout - o0);
                with_scratch(&SCRATCH, mp * ocw, |acc| {
                    for tap in 0..k * k {
                        let (dt, dy) = (tap / k, tap % k);
                        let src_t = (to + dt).saturating_sub(left).min(t - 1);
                        let base = ((bi * t + src_t) * hp + y0 + dy) * wp * c;
                        if let Some(wt) = &self.w {
                            // SAFETY: rows 0..m of stride c and width k c from `base`
                            // stay inside the padded frame; acc is m x ocw.
                            unsafe {
                                gemm::gemm(
                                    m, on, kk,
                                    acc.as_mut_ptr(), 1, ocw as isize,
                                    tap > 0,
                                    pf.as_ptr().add(base), 1, c as isize,
                                    wt.as_ptr().add(tap * kk * self.cout + o0), 1, self.cout as isize,
                                    1.0, 1.0,
                                    false, false, false,
                                    Parallelism::None,
                                );
                            }
                            continue;
                        }
                        #[cfg(target_arch = "x86_64")]
                        {
                            let pk = &self.packed.as_ref().expect("packed")[tap];
                            let p0 = o0 / 32;
                            for pi in 0..on.div_ceil(32) {
                                let tt = 2 * (p0 + pi);
                                // SAFETY: AMX / AVX-512 BF16 checked by bf16_matmul; rows
                                // up to mp (< m + 32) of stride c from base stay within
                                // the buffer's slack; packed tiles in bounds (N padded).
                                unsafe {
                                    let a = pb.as_ptr().add(base);
                                    if amx {
                                        if tap == 0 && pi == 0 {
                                            amx::load_config();
                                        }
                                        for mb in (0..mp).step_by(32) {
                                            amx::block(
                                                a.add(mb * c), c, pk.tile(tt, 0), pk.tile(tt + 1, 0), kk / 32,
                                                acc.as_mut_ptr().add(mb * ocw + pi * 32), ocw, tap > 0,
                                            );
                                        }
                                    } else {
                                        let mut mb = 0;
                                        while mb < m {
                                            let r = dp::ROWS.min(m - mb);
                                            dp::block(
                                                r, a.add(mb * c), c, pk.tile(tt, 0), pk.tile(tt + 1, 0), kk / 2,
                                                acc.as_mut_ptr().add(mb * ocw + pi * 32), ocw, tap > 0,
                                            );
                                            mb += r;
                                        }
                                    }
                                }
                            }
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    if amx {
                        // SAFETY: AMX in use on this thread.
                        unsafe { amx::release() };
                    }
                    // Epilogue: bias (+ residual), NCTHW.
                    // Blocks of 16 output channels: 16 contiguous values per pixel
                    // into 16 output rows.
                    with_scratch_row2(16 * w, |lines| {
                        for y in y0..y1 {
                            let arow = &acc[(y - y0) * wp * ocw..];
                            for ob in (0..on).step_by(16) {
                                let n16 = 16.min(on - ob);
                                for xi in 0..w {
                                    let src = &arow[xi * ocw + ob..xi * ocw + ob + n16];
                                    for (j, &v) in src.iter().enumerate() {
                                        lines[j * w + xi] = v;
                                    }
                                }
                                for j in 0..n16 {
                                    let o = o0 + ob + j;
                                    let line = &mut lines[j * w..(j + 1) * w];
                                    epilogue_row(&g, optr, &res, self.bias[o], bi, o, to, y, 0, line);
                                }
                            }
                        }
                    });
                });
            });
        };
        match (res_buf, scatter) {
            (Some(r), _) => with_buf(r, |rb| {
                run(ResSrc::Out(rb));
                Ok(())
            })?,
            (None, Scatter::DepthToSpace { residual: true, .. }) => with_buf(&x, |xb| {
                run(ResSrc::Input(xb));
                Ok(())
            })?,
            (None, _) => run(ResSrc::None),
        }
        Ok(out.into_tensor(dims))
    }
}

impl Conv3d {
    /// The Winograd F(2x2, 3x3) path ([`winograd`]) for a 3x3x3 kernel with
    /// direct weights, where it [fits](winograd::fits) (`force`: wherever
    /// it applies); `None`: not taken.
    fn winograd(&self, x: &Tensor, causal: bool, pro: Prologue, residual: Option<&Tensor>, force: bool) -> Result<Option<Tensor>> {
        #[cfg(target_arch = "x86_64")]
        if let Some(wd) = &self.direct
            && self.k == 3
        {
            let (_, c, _, h, w) = x.dims5()?;
            if force || winograd::fits(c, self.cout, h, w) {
                return with_buf(&wd.full, |b| {
                    let Buf::F32(full) = b else { bail!("conv3d: f32 direct weights expected") };
                    let at = |o: usize, ci: usize, tap: usize| {
                        direct_tile(full, &wd.tail, wd.tile, self.cout, o / DC_R)[(ci * 27 + tap) * DC_R + o % DC_R]
                    };
                    self.forward_winograd(&at, x, causal, pro, residual).map(Some)
                });
            }
        }
        let _ = (x, causal, pro, residual, force);
        Ok(None)
    }
}

#[cfg(target_arch = "x86_64")]
mod winograd;

thread_local! {
    static ROW3: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Where a convolution writes its output (fused reshapes of the VAE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scatter {
    /// `[B, O, T, H, W]`.
    Plain,
    /// `LTXVideoUpsampler3d`: depth-to-space by (2, 2, 2) (`[B, O / 8, 2T -
    /// drop, 2H, 2W]`, the first `drop` frames dropped), plus, with
    /// `residual`, the depth-to-space of the input repeated over channels.
    DepthToSpace { drop: usize, residual: bool },
    /// The decoder's un-patchify: channel `(c, p1, q)` to pixel
    /// `[y * p + q][x * p + p1]` (`[B, O / p^2, T, H p, W p]`).
    Unpatchify { p: usize },
}

/// Output geometry of a convolution with a [`Scatter`].
#[derive(Clone, Copy)]
struct Geom {
    cin: usize,
    cout: usize,
    t: usize,
    h: usize,
    w: usize,
    scatter: Scatter,
}

impl Geom {
    fn out_dims(&self, b: usize) -> Result<(usize, usize, usize, usize, usize)> {
        let Geom { cout, t, h, w, .. } = *self;
        Ok(match self.scatter {
            Scatter::Plain => (b, cout, t, h, w),
            Scatter::DepthToSpace { drop, residual } => {
                if cout % 8 != 0 || drop > 2 * t || (residual && (!self.cin.is_multiple_of(8) || (cout / 8) % (self.cin / 8) != 0)) {
                    bail!("conv3d: depth-to-space of {cout} channels (input {})", self.cin);
                }
                (b, cout / 8, 2 * t - drop, 2 * h, 2 * w)
            }
            Scatter::Unpatchify { p } => {
                if cout % (p * p) != 0 {
                    bail!("conv3d: un-patchify of {cout} channels by {p}");
                }
                (b, cout / (p * p), t, h * p, w * p)
            }
        })
    }

    /// Output start index and pixel stride of row `(b, o, to, y)`; `None`
    /// for a dropped frame.
    #[inline]
    fn dest(&self, b: usize, o: usize, to: usize, y: usize) -> Option<(usize, usize)> {
        let (_, oc, ot, oh, ow) = self.out_dims(b + 1).ok()?;
        match self.scatter {
            Scatter::Plain => Some(((((b * oc + o) * ot + to) * oh + y) * ow, 1)),
            Scatter::DepthToSpace { drop, .. } => {
                let (cc, sub) = (o / 8, o % 8);
                let tf = 2 * to + sub / 4;
                if tf < drop {
                    return None;
                }
                Some(((((b * oc + cc) * ot + tf - drop) * oh + 2 * y + (sub / 2) % 2) * ow + sub % 2, 2))
            }
            Scatter::Unpatchify { p } => {
                let (cc, p1, q) = (o / (p * p), (o / p) % p, o % p);
                Some(((((b * oc + cc) * ot + to) * oh + y * p + q) * ow + p1, p))
            }
        }
    }

    /// Start of the input row added to output row `(b, o, to, y)` by the
    /// depth-to-space residual.
    #[inline]
    fn d2s_residual(&self, b: usize, o: usize, to: usize, y: usize) -> usize {
        let ch = ((o / 8) % (self.cin / 8)) * 8 + o % 8;
        (((b * self.cin + ch) * self.t + to) * self.h + y) * self.w
    }
}

/// Writes `vals` at `start`, `start + stride`, ...
///
/// # Safety
/// In bounds, and no other task writes these elements.
#[inline]
unsafe fn store_strided(out: OutPtr, start: usize, stride: usize, vals: &[f32]) {
    if stride == 1 {
        return unsafe { out.store(start, vals) };
    }
    match out {
        OutPtr::F32(p) => {
            for (i, &v) in vals.iter().enumerate() {
                unsafe { *p.add(start + i * stride) = v };
            }
        }
        OutPtr::Bf16(p) => {
            for (i, &v) in vals.iter().enumerate() {
                unsafe { *p.add(start + i * stride) = f32_to_bf16(v) };
            }
        }
    }
}

/// The residual source of a convolution's epilogue.
enum ResSrc<'a> {
    None,
    /// Same layout as the (plain) output.
    Out(Buf<'a>),
    /// The depth-to-space residual from the input.
    Input(Buf<'a>),
}

/// Bias, residual and store of one output row segment (`vals` = pixels
/// `x0..x0 + vals.len()` of row `(b, o, to, y)`).
#[inline]
#[allow(clippy::too_many_arguments)]
fn epilogue_row(g: &Geom, out: OutPtr, res: &ResSrc, bias: f32, b: usize, o: usize, to: usize, y: usize, x0: usize, vals: &mut [f32]) {
    let Some((start, stride)) = g.dest(b, o, to, y) else { return };
    for v in vals.iter_mut() {
        *v += bias;
    }
    let n = vals.len();
    let add = |src: &Buf, at: usize, vals: &mut [f32]| {
        with_scratch(&ROW3, n, |rl| {
            src.load(at, rl);
            for (v, &r) in vals.iter_mut().zip(rl.iter()) {
                *v += r;
            }
        })
    };
    match res {
        ResSrc::None => {}
        ResSrc::Out(r) => add(r, start + x0, vals),
        ResSrc::Input(r) => add(r, g.d2s_residual(b, o, to, y) + x0, vals),
    }
    // SAFETY: each (o, to, y, x) belongs to one task.
    unsafe { store_strided(out, start + x0 * stride, stride, vals) };
}

/// Output channels per register tile of the direct f32 convolution.
const DC_R: usize = 12;

/// Tile `tile` (outputs `12 tile..`, `[tap][C][12]`) of [`DirectWeights`]
/// (`full` its rearranged storage, `tail` the last partial tile).
#[inline]
fn direct_tile<'a>(full: &'a [f32], tail: &'a [f32], tile_len: usize, cout: usize, tile: usize) -> &'a [f32] {
    if tile < cout / DC_R { &full[tile * tile_len..][..tile_len] } else { tail }
}
/// Input channels per pass (the weights of a tile and the input rows of a
/// band stay in L2).
const DC_CK: usize = 256;

impl Conv3d {
    /// The direct f32 path: input padded as `[B][T][H + 2p][C][W + 2p]`, each
    /// micro-kernel call accumulating 12 output channels x 32 pixels (two
    /// 16-pixel vectors of a row or of two rows) over all taps and a chunk of
    /// input channels, weights broadcast (`[tile][tap][C][12]`), input vectors
    /// loaded in place (the `kx` shift is an offset): no im2col and no
    /// transposes; the epilogue writes output rows directly.
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    fn forward_direct(
        &self, full: &[f32], tail: &[f32], tile_len: usize, x: &Tensor, causal: bool, pro: Prologue, residual: Option<&Tensor>, scatter: Scatter,
    ) -> Result<Tensor> {
        let (b, c, t, h, w) = x.dims5()?;
        let k = self.k;
        let pad = k / 2;
        let (hp, wq) = (h + 2 * pad, w + 2 * pad);
        let g = Geom { cin: c, cout: self.cout, t, h, w, scatter };
        let dims = g.out_dims(b)?;
        let row_len = c * wq; // one padded row of all channels
        let q = padded_input(x, hp, wq, pad, pro)?;
        let left = if causal { k - 1 } else { (k - 1) / 2 };
        // 16-pixel vectors of an output frame, paired into strips.
        let per_row = w.div_ceil(16);
        let band = (8usize.div_ceil(per_row)).clamp(1, h);
        let n_band = h.div_ceil(band);
        let tiles = self.cout.div_ceil(DC_R);
        let group = 8.min(tiles);
        let n_group = tiles.div_ceil(group);
        let mut out = OutVec::new(x.dtype(), dims.0 * dims.1 * dims.2 * dims.3 * dims.4)?;
        let optr = out.ptr();
        let kw = k * k * k;
        let residual = residual.map(|r| r.contiguous()).transpose()?;
        if let (Some(r), Scatter::Plain) = (&residual, scatter)
            && r.dims5()? != dims
        {
            bail!("conv3d: residual {:?}, output {dims:?}", r.dims());
        }
        let run = |res: ResSrc| {
            (0..b * t * n_band * n_group).into_par_iter().for_each(|task| {
                let gi = task % n_group;
                let band_i = (task / n_group) % n_band;
                let to = (task / (n_group * n_band)) % t;
                let bi = task / (n_group * n_band * t);
                let (y0, y1) = (band_i * band, ((band_i + 1) * band).min(h));
                // Vectors (y, x0, lanes) of the band, then strips of two.
                let mut vecs: Vec<(usize, usize, usize)> = Vec::with_capacity((y1 - y0) * per_row + 1);
                for y in y0..y1 {
                    for x0 in (0..w).step_by(16) {
                        vecs.push((y, x0, 16.min(w - x0)));
                    }
                }
                if vecs.len() % 2 == 1 {
                    let last = *vecs.last().expect("one vector");
                    vecs.push((last.0, last.1, 0));
                }
                let strips = vecs.len() / 2;
                // Offsets (in q) of the (kt, ky) input rows for this output
                // frame, relative to (y, x0) = (0, 0); kx is a further +dx.
                let mut rows = [0usize; 9];
                for dt in 0..k {
                    let st = (to + dt).saturating_sub(left).min(t - 1);
                    for dy in 0..k {
                        rows[dt * k + dy] = ((bi * t + st) * hp + dy) * row_len;
                    }
                }
                let t0 = gi * group;
                let tn = group.min(tiles - t0);
                let acc_len = tn * strips * DC_R * 32;
                with_scratch(&SCRATCH, acc_len, |acc| {
                    for c0 in (0..c).step_by(DC_CK) {
                        let cn = DC_CK.min(c - c0);
                        for ti in 0..tn {
                            let tile = t0 + ti;
                            let wt = direct_tile(full, tail, tile_len, self.cout, tile);
                            for si in 0..strips {
                                let (ya, xa, ma) = vecs[2 * si];
                                let (yb, xb, mb) = vecs[2 * si + 1];
                                let base = ya * row_len + xa + c0 * wq;
                                let off1 = (yb * row_len + xb) as isize - (ya * row_len + xa) as isize;
                                // SAFETY: AVX-512F (direct weights exist only then);
                                // masked loads stay inside padded rows of q; wt holds
                                // the tile's [tap][C][12] weights; acc is sized above.
                                unsafe {
                                    dc::tile(
                                        q.as_ptr().add(base), &rows[..k * k], k, off1, ma, mb, cn, wq,
                                        wt.as_ptr().add(c0 * kw * DC_R),
                                        acc.as_mut_ptr().add((ti * strips + si) * DC_R * 32), c0 > 0,
                                    );
                                }
                            }
                        }
                    }
                    for ti in 0..tn {
                        for si in 0..strips {
                            let a = &mut acc[(ti * strips + si) * DC_R * 32..][..DC_R * 32];
                            for i in 0..DC_R {
                                let o = (t0 + ti) * DC_R + i;
                                if o >= self.cout {
                                    break;
                                }
                                for v in 0..2 {
                                    let (y, x0, m) = vecs[2 * si + v];
                                    if m == 0 {
                                        continue;
                                    }
                                    let vals = &mut a[i * 32 + v * 16..i * 32 + v * 16 + m];
                                    epilogue_row(&g, optr, &res, self.bias[o], bi, o, to, y, x0, vals);
                                }
                            }
                        }
                    }
                });
            });
        };
        match (&residual, scatter) {
            (Some(r), Scatter::Plain) => with_buf(r, |rb| {
                run(ResSrc::Out(rb));
                Ok(())
            })?,
            (_, Scatter::DepthToSpace { residual: true, .. }) => with_buf(x, |xb| {
                run(ResSrc::Input(xb));
                Ok(())
            })?,
            (Some(_), _) => bail!("conv3d: a residual tensor needs the plain output layout"),
            (None, _) => run(ResSrc::None),
        }
        Ok(out.into_tensor(dims))
    }
}

/// `x` `[B, C, T, H, W]` as zero-padded rows `[B][T][hq][C][wq]`, pixel
/// `(y, x)` at row `y + pad`, column `x + pad` (`hq >= H + pad`, `wq >= W +
/// pad`: the padding after may be wider), with the prologue applied.
fn padded_input(x: &Tensor, hq: usize, wq: usize, pad: usize, pro: Prologue) -> Result<Vec<f32>> {
    let (b, c, t, h, w) = x.dims5()?;
    let row_len = c * wq;
    let mut q = zeroed::<f32>(b * t * hq * row_len);
    with_buf(x, |xb| {
        let qp = SendPtr(q.as_mut_ptr());
        (0..b * t * h).into_par_iter().for_each(|row| {
            // The whole Send wrapper moves into the closure, not its raw field.
            #[allow(clippy::redundant_locals)]
            let qp = qp;
            let (bi, ti, yi) = (row / (t * h), (row / h) % t, row % h);
            let start = ((bi * t + ti) * hq + yi + pad) * row_len;
            // SAFETY: each task fills its own padded row.
            let block = unsafe { std::slice::from_raw_parts_mut(qp.0.add(start), row_len) };
            for ci in 0..c {
                xb.load((((bi * c + ci) * t + ti) * h + yi) * w, &mut block[ci * wq + pad..ci * wq + pad + w]);
            }
            prologue_rows(block, c, wq, pad, w, bi, pro);
        });
        Ok(())
    })?;
    Ok(q)
}

/// The prologue over one padded row block `[C][wq]` (pixels `pad..pad + w`).
fn prologue_rows(block: &mut [f32], c: usize, wq: usize, pad: usize, w: usize, b: usize, pro: Prologue) {
    let px = |ci: usize| ci * wq + pad..ci * wq + pad + w;
    match pro {
        Prologue::None => {}
        Prologue::RmsNormSilu { eps, modulation } => {
            with_scratch_row2(w, |inv| {
                inv.fill(0.0);
                for ci in 0..c {
                    for (s, &v) in inv.iter_mut().zip(&block[px(ci)]) {
                        *s += v * v;
                    }
                }
                for s in inv.iter_mut() {
                    *s = 1.0 / (*s / c as f32 + eps).sqrt();
                }
                for ci in 0..c {
                    let (sh, sc) = match modulation {
                        Some((shift, scale)) => (shift[b * c + ci], 1.0 + scale[b * c + ci]),
                        None => (0.0, 1.0),
                    };
                    let row = &mut block[px(ci)];
                    for (v, &iv) in row.iter_mut().zip(inv.iter()) {
                        *v = *v * iv * sc + sh;
                    }
                    silu_inplace(row);
                }
            });
        }
        Prologue::LayerNorm { eps, weight, bias } => {
            with_scratch_row2(2 * w, |st| {
                let (mean, inv) = st.split_at_mut(w);
                mean.fill(0.0);
                inv.fill(0.0);
                for ci in 0..c {
                    for (m, &v) in mean.iter_mut().zip(&block[px(ci)]) {
                        *m += v;
                    }
                }
                for m in mean.iter_mut() {
                    *m /= c as f32;
                }
                for ci in 0..c {
                    for ((s, &v), &m) in inv.iter_mut().zip(&block[px(ci)]).zip(mean.iter()) {
                        *s += (v - m) * (v - m);
                    }
                }
                for s in inv.iter_mut() {
                    *s = 1.0 / (*s / c as f32 + eps).sqrt();
                }
                for ci in 0..c {
                    let (wv, bv) = (weight[ci], bias[ci]);
                    for ((v, &m), &iv) in block[px(ci)].iter_mut().zip(mean.iter()).zip(inv.iter()) {
                        *v = (*v - m) * iv * wv + bv;
                    }
                }
            });
        }
    }
}

fn silu_inplace(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: feature checked.
        unsafe { simd::silu_slice(x) };
        return;
    }
    for v in x {
        *v = silu(*v);
    }
}

#[cfg(target_arch = "x86_64")]
mod dc {
    use std::arch::x86_64::*;

    use super::DC_R;

    #[inline]
    fn mask(n: usize) -> __mmask16 {
        if n >= 16 { 0xffff } else { ((1u32 << n) - 1) as __mmask16 }
    }

    /// `acc[12][32] (+)= sum over channels, (kt, ky) rows, kx of
    /// w[ch][tap][12] x input`: vector 0 = `m0` pixels at `q + row + kx + ch *
    /// cs`, vector 1 the same at `+ off1`. Channels outermost, so that the
    /// `kx` shifts and neighbouring rows reuse the cache lines just loaded.
    ///
    /// # Safety
    /// AVX-512F; all (masked) reads in bounds; acc holds 384 floats.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile(
        q: *const f32, rows: &[usize], kx: usize, off1: isize, m0: usize, m1: usize, cn: usize, cs: usize,
        w: *const f32, acc: *mut f32, accumulate: bool,
    ) {
        let (k0, k1) = (mask(m0), mask(m1));
        let mut a = [[_mm512_setzero_ps(); 2]; DC_R];
        unsafe {
            if accumulate {
                for (i, r) in a.iter_mut().enumerate() {
                    r[0] = _mm512_loadu_ps(acc.add(i * 32));
                    r[1] = _mm512_loadu_ps(acc.add(i * 32 + 16));
                }
            }
            let mut wp = w;
            let mut qc = q;
            for _ in 0..cn {
                for &row in rows {
                    let p = qc.add(row);
                    for dx in 0..kx {
                        let x0 = _mm512_maskz_loadu_ps(k0, p.add(dx));
                        let x1 = _mm512_maskz_loadu_ps(k1, p.add(dx).offset(off1));
                        for (i, r) in a.iter_mut().enumerate() {
                            let wv = _mm512_set1_ps(*wp.add(i));
                            r[0] = _mm512_fmadd_ps(wv, x0, r[0]);
                            r[1] = _mm512_fmadd_ps(wv, x1, r[1]);
                        }
                        wp = wp.add(DC_R);
                    }
                }
                qc = qc.add(cs);
            }
            for (i, r) in a.iter().enumerate() {
                _mm512_storeu_ps(acc.add(i * 32), r[0]);
                _mm512_storeu_ps(acc.add(i * 32 + 16), r[1]);
            }
        }
    }
}


#[inline]
fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

fn apply_prologue(px: &mut [f32], b: usize, pro: Prologue) {
    let c = px.len();
    match pro {
        Prologue::None => {}
        Prologue::RmsNormSilu { eps, modulation } => {
            let ms = px.iter().map(|v| v * v).sum::<f32>() / c as f32;
            let inv = 1.0 / (ms + eps).sqrt();
            match modulation {
                Some((shift, scale)) => {
                    let (sh, sc) = (&shift[b * c..][..c], &scale[b * c..][..c]);
                    for ((v, &s0), &s1) in px.iter_mut().zip(sh).zip(sc) {
                        *v = silu(*v * inv * (1.0 + s1) + s0);
                    }
                }
                None => {
                    for v in px.iter_mut() {
                        *v = silu(*v * inv);
                    }
                }
            }
        }
        Prologue::LayerNorm { eps, weight, bias } => {
            let mean = px.iter().sum::<f32>() / c as f32;
            let var = px.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, &wv), &bv) in px.iter_mut().zip(weight).zip(bias) {
                *v = (*v - mean) * inv * wv + bv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device};

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_err(a: &Tensor, b: &Tensor) -> f32 {
        let a = a.to_dtype(DType::F32).unwrap();
        let b = b.to_dtype(DType::F32).unwrap();
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    fn reference_attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, bias: Option<&Tensor>) -> Tensor {
        let (b, s, dm) = q.dims3().unwrap();
        let l = k.dim(1).unwrap();
        let d = dm / heads;
        let split = |t: &Tensor, n: usize| t.reshape((b, n, heads, d)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
        let (q, k, v) = (split(q, s), split(k, l), split(v, l));
        let mut w = (q.matmul(&k.t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
        if let Some(bias) = bias {
            w = w.broadcast_add(&bias.reshape((b, 1, 1, l)).unwrap()).unwrap();
        }
        let p = candle_nn::ops::softmax_last_dim(&w).unwrap();
        p.matmul(&v).unwrap().transpose(1, 2).unwrap().reshape((b, s, dm)).unwrap()
    }

    #[test]
    fn attention_matches_reference() {
        for &(b, s, l, heads, d) in &[(2usize, 37usize, 37usize, 4usize, 8usize), (1, 300, 19, 2, 64), (1, 5, 1000, 3, 16)] {
            let q = (rand(&[b, s, heads * d], 1) * 3.0).unwrap();
            let k = rand(&[b, l, heads * d], 2);
            let v = rand(&[b, l, heads * d], 3);
            let mask: Vec<f32> = (0..b * l).map(|i| if i % 7 == 3 { -10000.0 } else { 0.0 }).collect();
            let bias = Tensor::from_vec(mask, (b, l), &Device::Cpu).unwrap();
            for bias in [None, Some(&bias)] {
                let got = attention(&q, &k, &v, heads, bias).unwrap();
                let want = reference_attention(&q, &k, &v, heads, bias);
                let e = max_err(&got, &want);
                assert!(e < 2e-5, "attention {b}x{s}x{l} h{heads} d{d}: {e}");
            }
        }
    }

    #[test]
    fn bf16_attention_close_to_f32() {
        for &(b, s, l, heads, d) in &[(1usize, 70usize, 70usize, 2usize, 64usize), (2, 5, 300, 3, 32)] {
            let q = (rand(&[b, s, heads * d], 4) * 3.0).unwrap().to_dtype(DType::BF16).unwrap();
            let k = rand(&[b, l, heads * d], 5).to_dtype(DType::BF16).unwrap();
            let v = rand(&[b, l, heads * d], 6).to_dtype(DType::BF16).unwrap();
            let mask: Vec<f32> = (0..b * l).map(|i| if i % 5 == 1 { -10000.0 } else { 0.0 }).collect();
            let bias = Tensor::from_vec(mask, (b, l), &Device::Cpu).unwrap();
            let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
            let got = attention(&q, &k, &v, heads, Some(&bias)).unwrap();
            assert_eq!(got.dtype(), DType::BF16);
            let want = reference_attention(&f(&q), &f(&k), &f(&v), heads, Some(&bias));
            let e = max_err(&got, &want);
            assert!(e < 2e-2, "bf16 attention {b}x{s}x{l}: {e} ({:?})", bf16_matmul());
        }
    }

    #[test]
    fn chunk_bounds_the_score_buffer() {
        for l in [1, 128, 640, 2688, 6144, 100_000] {
            let c = query_chunk(l, 2);
            assert!(c >= 1 && c * l * 2 <= SCORE_BUDGET.max(2 * l), "l {l}: chunk {c}");
        }
    }

    fn reference_linear(x: &Tensor, w: &Tensor, b: &Tensor, act: Act) -> Tensor {
        let y = x.to_dtype(DType::F32).unwrap().broadcast_matmul(&w.to_dtype(DType::F32).unwrap().t().unwrap()).unwrap();
        let y = y.broadcast_add(&b.to_dtype(DType::F32).unwrap()).unwrap();
        match act {
            Act::None => y,
            Act::GeluTanh => y.gelu().unwrap(),
        }
    }

    #[test]
    fn linear_f32_and_bf16_paths() {
        for &(m, k, n) in &[(70usize, 64usize, 80usize), (33, 96, 32), (1, 32, 17), (5, 8, 3), (130, 2048, 48)] {
            let x = rand(&[1, m, k], 10);
            let w = (rand(&[n, k], 11) * 0.2).unwrap();
            let b = rand(&[n], 12);
            for act in [Act::None, Act::GeluTanh] {
                let lin = Linear::new(w.clone(), Some(b.clone())).unwrap();
                let got = lin.forward_act(&x, act).unwrap();
                let e = max_err(&got, &reference_linear(&x, &w, &b, act));
                assert!(e < 1e-4, "f32 linear {m}x{k}x{n}: {e}");
                // bf16: weights and inputs rounded; the reference uses the rounded values.
                let (wb, xb) = (w.to_dtype(DType::BF16).unwrap(), x.to_dtype(DType::BF16).unwrap());
                let lin = Linear::new(wb.clone(), Some(b.clone())).unwrap();
                let got = lin.forward_act(&xb, act).unwrap();
                assert_eq!(got.dtype(), DType::BF16);
                let want = reference_linear(&xb, &wb, &b, act);
                let scale = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
                let e = max_err(&got, &want);
                assert!(e <= 8e-3 * scale.max(1.0), "bf16 linear {m}x{k}x{n} ({:?}): {e}", bf16_matmul());
            }
        }
    }

    /// Direct 3-D convolution with replicate temporal / zero spatial padding.
    fn naive_conv3d(x: &Tensor, w: &Tensor, b: &Tensor, causal: bool) -> Tensor {
        let (bn, c, t, h, wd) = x.dims5().unwrap();
        let (o, _, k, _, _) = w.dims5().unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let wv = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bv = b.to_vec1::<f32>().unwrap();
        let left = if causal { k - 1 } else { (k - 1) / 2 } as isize;
        let p = (k / 2) as isize;
        let mut out = vec![0f32; bn * o * t * h * wd];
        for bi in 0..bn {
            for oo in 0..o {
                for ti in 0..t {
                    for yi in 0..h {
                        for xi in 0..wd {
                            let mut acc = bv[oo];
                            for ci in 0..c {
                                for dt in 0..k {
                                    let st = (ti as isize + dt as isize - left).clamp(0, t as isize - 1) as usize;
                                    for dy in 0..k {
                                        let sy = yi as isize + dy as isize - p;
                                        if sy < 0 || sy >= h as isize { continue; }
                                        for dx in 0..k {
                                            let sx = xi as isize + dx as isize - p;
                                            if sx < 0 || sx >= wd as isize { continue; }
                                            let xval = xv[(((bi * c + ci) * t + st) * h + sy as usize) * wd + sx as usize];
                                            acc += xval * wv[(((oo * c + ci) * k + dt) * k + dy) * k + dx];
                                        }
                                    }
                                }
                            }
                            out[(((bi * o + oo) * t + ti) * h + yi) * wd + xi] = acc;
                        }
                    }
                }
            }
        }
        Tensor::from_vec(out, (bn, o, t, h, wd), &Device::Cpu).unwrap()
    }

    /// The block modulation equals candle's broadcast add in the same dtype,
    /// bit for bit (bf16: rounded as the bf16 add rounds).
    #[test]
    fn ada_modulation_matches_broadcast_add() {
        let (u, d) = (5, 24);
        for dt in [DType::F32, DType::BF16] {
            let temb = (rand(&[u, 6 * d], 3) * 3.0).unwrap().to_dtype(dt).unwrap();
            let table = rand(&[6, d], 4).to_dtype(dt).unwrap();
            let want = temb
                .reshape((u, 6, d))
                .unwrap()
                .broadcast_add(&table.reshape((1, 6, d)).unwrap())
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            let tv = table.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let got = ada_modulation(&temb, &tv).unwrap();
            assert_eq!(got.dims(), &[u, 6, d]);
            let bits = |x: &Tensor| -> Vec<u32> {
                x.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
            };
            assert_eq!(bits(&got), bits(&want), "{dt:?}");
        }
    }

    #[test]
    fn conv3d_matches_direct_convolution() {
        for &(bn, c, o, t, h, w, k) in &[(1usize, 32usize, 40usize, 3usize, 5usize, 7usize, 3usize), (2, 8, 5, 2, 4, 3, 3), (1, 64, 33, 2, 3, 4, 1), (1, 32, 64, 1, 13, 2, 3), (1, 32, 300, 2, 3, 3, 1)] {
            let x = rand(&[bn, c, t, h, w], 30);
            let wt = (rand(&[o, c, k, k, k], 31) * 0.1).unwrap();
            let b = rand(&[o], 32);
            let res = rand(&[bn, o, t, h, w], 33);
            let shift: Vec<f32> = (0..bn * c).map(|i| (i as f32 * 0.37).sin() * 0.3).collect();
            let scale: Vec<f32> = (0..bn * c).map(|i| (i as f32 * 0.11).cos() * 0.2).collect();
            // The prologue's effect, by candle ops.
            let sh = Tensor::from_slice(&shift, (bn, c, 1, 1, 1), &Device::Cpu).unwrap();
            let sc = Tensor::from_slice(&scale, (bn, c, 1, 1, 1), &Device::Cpu).unwrap();
            let rms = x.broadcast_div(&(x.sqr().unwrap().mean_keepdim(1).unwrap() + 1e-8).unwrap().sqrt().unwrap()).unwrap();
            let pre = rms.broadcast_mul(&(sc + 1.0).unwrap()).unwrap().broadcast_add(&sh).unwrap().silu().unwrap();
            for dtype in [DType::F32, DType::BF16] {
                let conv = Conv3d::new(&wt.to_dtype(dtype).unwrap(), &b).unwrap().unwrap();
                let wr = wt.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
                let tol = if dtype == DType::F32 { 1e-4 } else { 0.05 };
                for causal in [true, false] {
                    let xin = x.to_dtype(dtype).unwrap();
                    let got = conv.forward(&xin, causal, Prologue::None, None).unwrap();
                    let want = naive_conv3d(&xin.to_dtype(DType::F32).unwrap(), &wr, &b, causal);
                    let e = max_err(&got, &want);
                    assert!(e < tol, "conv3d {dtype:?} {bn}x{c}->{o} {t}x{h}x{w} k{k} causal {causal}: {e}");
                    let lw: Vec<f32> = (0..c).map(|i| 1.0 + 0.01 * i as f32).collect();
                    let lb: Vec<f32> = (0..c).map(|i| 0.02 * i as f32 - 0.1).collect();
                    let lwt = Tensor::from_slice(&lw, (1, c, 1, 1, 1), &Device::Cpu).unwrap();
                    let lbt = Tensor::from_slice(&lb, (1, c, 1, 1, 1), &Device::Cpu).unwrap();
                    let xf = xin.to_dtype(DType::F32).unwrap();
                    let xc = xf.broadcast_sub(&xf.mean_keepdim(1).unwrap()).unwrap();
                    let ln = xc.broadcast_div(&(xc.sqr().unwrap().mean_keepdim(1).unwrap() + 1e-6).unwrap().sqrt().unwrap()).unwrap()
                        .broadcast_mul(&lwt).unwrap().broadcast_add(&lbt).unwrap();
                    let got = conv.forward(&xin, causal, Prologue::LayerNorm { eps: 1e-6, weight: &lw, bias: &lb }, None).unwrap();
                    let e = max_err(&got, &naive_conv3d(&ln, &wr, &b, causal));
                    assert!(e < tol * 2.0, "conv3d+layernorm {dtype:?}: {e}");
                    let pro = Prologue::RmsNormSilu { eps: 1e-8, modulation: Some((&shift, &scale)) };
                    let got = conv.forward(&xin, causal, pro, Some(&res.to_dtype(dtype).unwrap())).unwrap();
                    let want = (naive_conv3d(&pre, &wr, &b, causal) + &res).unwrap();
                    let e = max_err(&got, &want);
                    assert!(e < tol * 2.0, "conv3d+prologue {dtype:?} {bn}x{c}->{o} k{k}: {e}");
                }
            }
        }
    }

    #[test]
    fn conv3d_winograd_matches_direct_convolution() {
        // Odd sizes (partial tiles), both temporal paddings, a prologue and a
        // residual, outputs not a multiple of 12 or 32; the last frame size
        // makes two bands of tiles (one group of 144 each in unit tests).
        for &(bn, c, o, t, h, w) in &[(1usize, 16usize, 40usize, 3usize, 7usize, 9usize), (2, 24, 33, 2, 6, 5), (1, 32, 12, 4, 17, 30), (1, 16, 20, 3, 26, 25)] {
            let x = rand(&[bn, c, t, h, w], 50);
            let wt = (rand(&[o, c, 3, 3, 3], 51) * 0.1).unwrap();
            let b = rand(&[o], 52);
            let res = rand(&[bn, o, t, h, w], 53);
            let conv = Conv3d::new(&wt, &b).unwrap().unwrap();
            for causal in [true, false] {
                let Some(got) = conv.winograd(&x, causal, Prologue::None, None, true).unwrap() else {
                    return; // no AVX-512: no direct weights, no Winograd path
                };
                let e = max_err(&got, &naive_conv3d(&x, &wt, &b, causal));
                assert!(e < 1e-4, "winograd {bn}x{c}->{o} {t}x{h}x{w} causal {causal}: {e}");
                let pro = Prologue::RmsNormSilu { eps: 1e-6, modulation: None };
                let got = conv.winograd(&x, causal, pro, Some(&res), true).unwrap().unwrap();
                let rms = x.broadcast_div(&(x.sqr().unwrap().mean_keepdim(1).unwrap() + 1e-6).unwrap().sqrt().unwrap()).unwrap().silu().unwrap();
                let want = (naive_conv3d(&rms, &wt, &b, causal) + &res).unwrap();
                let e = max_err(&got, &want);
                assert!(e < 1e-4, "winograd + prologue + residual {bn}x{c}->{o}: {e}");
            }
        }
    }

    #[test]
    fn conv3d_reusing_rearranges_only_its_own_weight() {
        // 40 outputs: three whole tiles of 12 rearranged in place, 4 in the tail.
        let x = rand(&[1, 16, 3, 4, 5], 40);
        let wt = (rand(&[40, 16, 3, 3, 3], 41) * 0.1).unwrap();
        let b = rand(&[40], 42);
        let before = wt.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let copied = Conv3d::new(&wt, &b).unwrap().unwrap();
        assert_eq!(wt.flatten_all().unwrap().to_vec1::<f32>().unwrap(), before, "new must not touch the weight");
        let own = wt.copy().unwrap();
        let reused = Conv3d::new_reusing(&own, &b).unwrap().unwrap();
        let want = copied.forward(&x, true, Prologue::None, None).unwrap();
        let got = reused.forward(&x, true, Prologue::None, None).unwrap();
        assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let e = max_err(&got, &naive_conv3d(&x, &wt, &b, true));
        assert!(e < 1e-4, "reused weights: {e}");
        // A view that does not start at the storage's start is copied, not rearranged.
        let big = (rand(&[41, 16, 3, 3, 3], 43) * 0.1).unwrap();
        let view = big.narrow(0, 1, 40).unwrap();
        let all = big.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let conv = Conv3d::new_reusing(&view, &b).unwrap().unwrap();
        assert_eq!(big.flatten_all().unwrap().to_vec1::<f32>().unwrap(), all);
        let e = max_err(&conv.forward(&x, true, Prologue::None, None).unwrap(), &naive_conv3d(&x, &view, &b, true));
        assert!(e < 1e-4, "view: {e}");
    }

    #[test]
    fn conv3d_scatters_match_reshapes() {
        let (c, t, h, w) = (32usize, 3usize, 4usize, 5usize);
        let x = rand(&[1, c, t, h, w], 40);
        let o = 64;
        let wt = (rand(&[o, c, 3, 3, 3], 41) * 0.1).unwrap();
        let b = rand(&[o], 42);
        for dtype in [DType::F32, DType::BF16] {
            let tol = if dtype == DType::F32 { 1e-4 } else { 0.05 };
            let conv = Conv3d::new(&wt.to_dtype(dtype).unwrap(), &b).unwrap().unwrap();
            let xin = x.to_dtype(dtype).unwrap();
            let y = naive_conv3d(&xin.to_dtype(DType::F32).unwrap(), &wt.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap(), &b, false);
            // Upsampler: depth-to-space (2, 2, 2), drop 1, + repeated d2s(x).
            let d2s = |z: &Tensor| {
                let (bb, cc, tt, hh, ww) = z.dims5().unwrap();
                z.reshape(vec![bb, cc / 8, 2, 2, 2, tt, hh, ww]).unwrap()
                    .permute(vec![0, 1, 5, 2, 6, 3, 7, 4]).unwrap()
                    .reshape((bb, cc / 8, tt * 2, hh * 2, ww * 2)).unwrap()
            };
            let hy = d2s(&y);
            let r = d2s(&xin.to_dtype(DType::F32).unwrap()).repeat((1, o / c, 1, 1, 1)).unwrap();
            let want = (hy.narrow(2, 1, 2 * t - 1).unwrap() + r.narrow(2, 1, 2 * t - 1).unwrap()).unwrap();
            let got = conv.forward_scatter(&xin, false, Prologue::None, None, Scatter::DepthToSpace { drop: 1, residual: true }).unwrap();
            assert!(max_err(&got, &want) < tol, "d2s {dtype:?}: {}", max_err(&got, &want));
            // Un-patchify by 4 (channel order (c, p1, q)).
            let p = 4;
            let want = y.reshape(vec![1, o / 16, 1, p, p, t, h, w]).unwrap()
                .permute(vec![0, 1, 5, 2, 6, 4, 7, 3]).unwrap()
                .reshape((1, o / 16, t, h * p, w * p)).unwrap();
            let got = conv.forward_scatter(&xin, false, Prologue::None, None, Scatter::Unpatchify { p }).unwrap();
            assert!(max_err(&got, &want) < tol, "unpatchify {dtype:?}: {}", max_err(&got, &want));
        }
    }

    #[test]
    fn fused_rows_match_candle() {
        let (b, s, d) = (2usize, 9usize, 32usize);
        let x = (rand(&[b, s, d], 20) * 2.0).unwrap();
        let h = rand(&[b, s, d], 21);
        // Three distinct rows, one per sample or one per token.
        let ada = rand(&[3, 6, d], 22);
        let per_sample: Vec<u32> = (0..b * s).map(|r| (r / s) as u32 + 1).collect();
        let per_token: Vec<u32> = (0..b * s).map(|r| ((r * 7 + r / s) % 3) as u32).collect();
        for rows in [per_sample, per_token] {
            let idx = Tensor::from_vec(rows.clone(), b * s, &Device::Cpu).unwrap();
            let full = ada.index_select(&idx, 0).unwrap().reshape((b, s, 6, d)).unwrap();
            let p = |i: usize| full.narrow(2, i, 1).unwrap().squeeze(2).unwrap();
            let rms = x.broadcast_div(&(x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + 1e-6).unwrap().sqrt().unwrap()).unwrap();
            let want = rms.broadcast_mul(&(p(1) + 1.0).unwrap()).unwrap().broadcast_add(&p(0)).unwrap();
            assert!(max_err(&rms_norm_modulate(&x, &ada, &rows, 0, 1, 1e-6).unwrap(), &want) < 1e-5);
            let want = (&x + h.broadcast_mul(&p(2)).unwrap()).unwrap();
            assert!(max_err(&gated_residual(&x, &h, &ada, &rows, 2).unwrap(), &want) < 1e-6);
        }
        // A token row past the table, or a row count that is not the token count.
        assert!(rms_norm_modulate(&x, &ada, &vec![3; b * s], 0, 1, 1e-6).is_err());
        assert!(gated_residual(&x, &h, &ada, &vec![0; b * s - 1], 2).is_err());
        assert!(max_err(&residual_add(&x, &h).unwrap(), &(&x + &h).unwrap()) < 1e-6);
        assert!(residual_add(&x, &h.narrow(1, 0, 1).unwrap()).is_err());
        let w = rand(&[d], 23);
        let cos = rand(&[b, s, d], 24);
        let sin = rand(&[b, s, d], 25);
        let rms = x.broadcast_div(&(x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + 1e-5).unwrap().sqrt().unwrap()).unwrap();
        let normed = rms.broadcast_mul(&w).unwrap();
        assert!(max_err(&qk_norm_rope(&x, &w, 1e-5, None).unwrap(), &normed) < 1e-5);
        let pairs = normed.reshape((b, s, d / 2, 2)).unwrap();
        let re = pairs.narrow(3, 0, 1).unwrap();
        let im = pairs.narrow(3, 1, 1).unwrap();
        let rot = Tensor::cat(&[im.neg().unwrap(), re], 3).unwrap().reshape((b, s, d)).unwrap();
        let want = (normed.mul(&cos).unwrap() + rot.mul(&sin).unwrap()).unwrap();
        assert!(max_err(&qk_norm_rope(&x, &w, 1e-5, Some((&cos, &sin))).unwrap(), &want) < 1e-5);
    }
}
