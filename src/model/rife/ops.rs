//! The two image operations IFNet needs that candle lacks: backward warping
//! by a flow field (PyTorch's `grid_sample`, bilinear, border padding,
//! `align_corners=True`) and bilinear resizing (`interpolate`, bilinear,
//! `align_corners=False`, no antialiasing).
//!
//! Both run as CPU custom ops over contiguous f32 `[1, C, H, W]` tensors,
//! rows split over threads; on other devices the same arithmetic is built
//! from candle ops (gathers), so `--features cuda` builds and runs.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Raw output pointer shared by threads that write disjoint parts.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: each thread writes only its own rows (see the callers).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// Bilinear source position along one axis: the two indices and the weight
/// of the second, for a coordinate clamped to `[0, n - 1]`.
#[inline]
fn axis(v: f32, n: usize) -> (usize, usize, f32) {
    let v = v.clamp(0.0, (n - 1) as f32);
    let i0 = v as usize; // truncation is floor for v >= 0
    (i0, (i0 + 1).min(n - 1), v - i0 as f32)
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{what}: tensor must be contiguous");
    };
    Ok(&s.as_slice::<f32>()?[a..b])
}

/// Backward warp: `out(x, y) = in(x + u, y + v)` (bilinear, clamped).
struct Warp;

impl CustomOp2 for Warp {
    fn name(&self) -> &'static str {
        "weft-warp"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = l1.shape().dims4()?;
        let src = contiguous_f32(s1, l1, "warp input")?;
        let flow = contiguous_f32(s2, l2, "warp flow")?;
        let hw = h * w;
        let mut out = vec![0f32; c * hw];
        let ptr = Out(out.as_mut_ptr());
        // Rows over threads; each output pixel's sample point is computed
        // once and applied to every channel.
        (0..h).into_par_iter().for_each(|y| {
            // The whole Send wrapper moves into the closure, not its raw field.
            #[allow(clippy::redundant_locals)]
            let ptr = ptr;
            for x in 0..w {
                let i = y * w + x;
                let (x0, x1, fx) = axis(x as f32 + flow[i], w);
                let (y0, y1, fy) = axis(y as f32 + flow[hw + i], h);
                let (i00, i01, i10, i11) = (y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1);
                for ch in 0..c {
                    let p = &src[ch * hw..(ch + 1) * hw];
                    let top = p[i00] + fx * (p[i01] - p[i00]);
                    let bot = p[i10] + fx * (p[i11] - p[i10]);
                    // SAFETY: pixel (y, x) of channel `ch` is written by this row's thread only.
                    unsafe { *ptr.0.add(ch * hw + i) = top + fy * (bot - top) };
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((1, c, h, w))))
    }
}

/// Bilinear resize to `(oh, ow)`, PyTorch's `align_corners=False` mapping.
struct Resize {
    oh: usize,
    ow: usize,
}

/// Source coordinate of output index `o` for a scale `in / out`.
#[inline]
fn source_coord(o: usize, scale: f32) -> f32 {
    ((o as f32 + 0.5) * scale - 0.5).max(0.0)
}

impl CustomOp1 for Resize {
    fn name(&self) -> &'static str {
        "weft-resize-bilinear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = l.shape().dims4()?;
        let src = contiguous_f32(s, l, "resize input")?;
        let (oh, ow) = (self.oh, self.ow);
        let (sy, sx) = (h as f32 / oh as f32, w as f32 / ow as f32);
        // Separable: the column taps once, then per output row the two
        // source rows blended (each interpolated along x).
        let xs: Vec<(usize, usize, f32)> = (0..ow).map(|x| axis(source_coord(x, sx), w)).collect();
        let ys: Vec<(usize, usize, f32)> = (0..oh).map(|y| axis(source_coord(y, sy), h)).collect();
        let mut out = vec![0f32; c * oh * ow];
        out.par_chunks_mut(ow).enumerate().for_each(|(r, row)| {
            let (ch, y) = (r / oh, r % oh);
            let (y0, y1, fy) = ys[y];
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            let (r0, r1) = (&plane[y0 * w..(y0 + 1) * w], &plane[y1 * w..(y1 + 1) * w]);
            for (o, &(x0, x1, fx)) in row.iter_mut().zip(&xs) {
                let top = r0[x0] + fx * (r0[x1] - r0[x0]);
                let bot = r1[x0] + fx * (r1[x1] - r1[x0]);
                *o = top + fy * (bot - top);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((1, c, oh, ow))))
    }
}

/// Device-generic bilinear gather of `x` `[1, C, H, W]` at pixel coordinates
/// `px`, `py` (`[OH, OW]` f32, already clamped to the image).
fn gather_bilinear(x: &Tensor, px: &Tensor, py: &Tensor) -> candle_core::Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let (oh, ow) = px.dims2()?;
    let (x0, y0) = (px.floor()?, py.floor()?);
    let (fx, fy) = ((px - &x0)?, (py - &y0)?);
    let x1 = (&x0 + 1.0)?.clamp(0f32, (w - 1) as f32)?;
    let y1 = (&y0 + 1.0)?.clamp(0f32, (h - 1) as f32)?;
    let flat = x.reshape((c, h * w))?;
    let pick = |xx: &Tensor, yy: &Tensor| -> candle_core::Result<Tensor> {
        let idx = ((yy * w as f64)? + xx)?.to_dtype(DType::U32)?.flatten_all()?;
        flat.index_select(&idx, 1)?.reshape((1, c, oh, ow))
    };
    let one = |t: &Tensor| t.affine(-1.0, 1.0);
    let w00 = (one(&fx)? * one(&fy)?)?;
    let w01 = (&fx * one(&fy)?)?;
    let w10 = (one(&fx)? * &fy)?;
    let w11 = (&fx * &fy)?;
    let mut acc = pick(&x0, &y0)?.broadcast_mul(&w00.reshape((1, 1, oh, ow))?)?;
    acc = (acc + pick(&x1, &y0)?.broadcast_mul(&w01.reshape((1, 1, oh, ow))?)?)?;
    acc = (acc + pick(&x0, &y1)?.broadcast_mul(&w10.reshape((1, 1, oh, ow))?)?)?;
    acc + pick(&x1, &y1)?.broadcast_mul(&w11.reshape((1, 1, oh, ow))?)?
}

/// Backward-warps `x` `[1, C, H, W]` by `flow` `[1, 2, H, W]` (pixels; channel
/// 0 horizontal, 1 vertical): each output pixel is `x` sampled bilinearly at
/// (x + u, y + v), the point clamped to the image (PyTorch `grid_sample`
/// with `padding_mode="border"`, `align_corners=True`).
pub fn warp(x: &Tensor, flow: &Tensor) -> candle_core::Result<Tensor> {
    let (b, _, h, w) = x.dims4()?;
    if b != 1 || flow.dims4()? != (1, 2, h, w) {
        candle_core::bail!("warp: input {:?} and flow {:?} do not match", x.dims(), flow.dims());
    }
    let (x, flow) = (x.to_dtype(DType::F32)?.contiguous()?, flow.to_dtype(DType::F32)?.contiguous()?);
    if x.device().is_cpu() {
        return x.apply_op2_no_bwd(&flow, &Warp);
    }
    let dev = x.device();
    let gx = Tensor::arange(0u32, w as u32, dev)?.to_dtype(DType::F32)?.reshape((1, w))?.broadcast_as((h, w))?;
    let gy = Tensor::arange(0u32, h as u32, dev)?.to_dtype(DType::F32)?.reshape((h, 1))?.broadcast_as((h, w))?;
    let px = (gx + flow.get(0)?.get(0)?)?.clamp(0f32, (w - 1) as f32)?;
    let py = (gy + flow.get(0)?.get(1)?)?.clamp(0f32, (h - 1) as f32)?;
    gather_bilinear(&x, &px, &py)
}

/// Bilinear resize of `x` `[1, C, H, W]` to `(oh, ow)` (PyTorch `interpolate`,
/// `mode="bilinear"`, `align_corners=False`, no antialiasing). The same size
/// returns `x` itself.
pub fn resize(x: &Tensor, oh: usize, ow: usize) -> candle_core::Result<Tensor> {
    let (b, _, h, w) = x.dims4()?;
    if b != 1 || oh == 0 || ow == 0 {
        candle_core::bail!("resize: cannot resize {:?} to {oh}x{ow}", x.dims());
    }
    if (h, w) == (oh, ow) {
        return Ok(x.clone());
    }
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    if x.device().is_cpu() {
        return x.apply_op1_no_bwd(&Resize { oh, ow });
    }
    let dev = x.device();
    let coords = |n: usize, src: usize| -> candle_core::Result<Tensor> {
        let s = src as f32 / n as f32;
        let v: Vec<f32> = (0..n).map(|o| source_coord(o, s).min((src - 1) as f32)).collect();
        Tensor::from_vec(v, n, dev)
    };
    let px = coords(ow, w)?.reshape((1, ow))?.broadcast_as((oh, ow))?.contiguous()?;
    let py = coords(oh, h)?.reshape((oh, 1))?.broadcast_as((oh, ow))?.contiguous()?;
    gather_bilinear(&x, &px, &py)
}

/// `[1, C * r * r, H, W]` -> `[1, C, H * r, W * r]` (PyTorch `PixelShuffle`).
pub fn pixel_shuffle(x: &Tensor, r: usize) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if c % (r * r) != 0 {
        candle_core::bail!("pixel_shuffle: {c} channels is not a multiple of {}", r * r);
    }
    let oc = c / (r * r);
    x.reshape(&[b, oc, r, r, h, w][..])?.permute([0, 1, 4, 2, 5, 3])?.reshape((b, oc, h * r, w * r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn ramp(c: usize, h: usize, w: usize) -> Tensor {
        let v: Vec<f32> = (0..c * h * w).map(|i| ((i * 37) % 101) as f32 / 7.0).collect();
        Tensor::from_vec(v, (1, c, h, w), &Device::Cpu).unwrap()
    }

    #[test]
    fn zero_flow_is_identity_and_integer_flow_shifts() {
        let x = ramp(3, 5, 7);
        let zero = Tensor::zeros((1, 2, 5, 7), DType::F32, &Device::Cpu).unwrap();
        let y = warp(&x, &zero).unwrap();
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), x.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        // u = +1: out(x, y) = in(x + 1, y), the last column clamped (border).
        let mut f = vec![0f32; 2 * 35];
        f[..35].fill(1.0);
        let flow = Tensor::from_vec(f, (1, 2, 5, 7), &Device::Cpu).unwrap();
        let y = warp(&x, &flow).unwrap().squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        let xs = x.squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        for c in 0..3 {
            for r in 0..5 {
                for col in 0..7 {
                    assert_eq!(y[c][r][col], xs[c][r][(col + 1).min(6)]);
                }
            }
        }
    }

    #[test]
    fn cpu_ops_match_the_device_generic_path() {
        let x = ramp(4, 16, 24);
        let fv: Vec<f32> = (0..2 * 16 * 24).map(|i| ((i * 13) % 29) as f32 / 2.5 - 6.0).collect();
        let flow = Tensor::from_vec(fv, (1, 2, 16, 24), &Device::Cpu).unwrap();
        let fast = warp(&x, &flow).unwrap();
        let gx = Tensor::arange(0u32, 24, &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap().reshape((1, 24)).unwrap().broadcast_as((16, 24)).unwrap();
        let gy = Tensor::arange(0u32, 16, &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap().reshape((16, 1)).unwrap().broadcast_as((16, 24)).unwrap();
        let px = (gx + flow.get(0).unwrap().get(0).unwrap()).unwrap().clamp(0f32, 23f32).unwrap();
        let py = (gy + flow.get(0).unwrap().get(1).unwrap()).unwrap().clamp(0f32, 15f32).unwrap();
        let slow = gather_bilinear(&x, &px, &py).unwrap();
        let d = (fast - slow).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-4, "warp paths differ by {d}");

        for (oh, ow) in [(8, 12), (1, 2), (32, 48), (48, 72)] {
            let fast = resize(&x, oh, ow).unwrap();
            let s = |n: usize, src: usize| -> Vec<f32> {
                (0..n).map(|o| source_coord(o, src as f32 / n as f32).min((src - 1) as f32)).collect()
            };
            let px = Tensor::from_vec(s(ow, 24), (1, ow), &Device::Cpu).unwrap().broadcast_as((oh, ow)).unwrap().contiguous().unwrap();
            let py = Tensor::from_vec(s(oh, 16), (oh, 1), &Device::Cpu).unwrap().broadcast_as((oh, ow)).unwrap().contiguous().unwrap();
            let slow = gather_bilinear(&x, &px, &py).unwrap();
            let d = (fast - slow).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-4, "resize to {oh}x{ow} differs by {d}");
        }
    }

    #[test]
    fn halving_averages_pixel_pairs() {
        // align_corners=False at exactly 1/2: each output is the mean of a 2x2 block.
        let x = ramp(1, 4, 4);
        let y = resize(&x, 2, 2).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mean = |a: usize, b: usize, c: usize, d: usize| (v[a] + v[b] + v[c] + v[d]) / 4.0;
        let want = [mean(0, 1, 4, 5), mean(2, 3, 6, 7), mean(8, 9, 12, 13), mean(10, 11, 14, 15)];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-5);
        }
    }

    #[test]
    fn pixel_shuffle_places_channels_in_sub_pixels() {
        let x = Tensor::arange(0f32, 8.0, &Device::Cpu).unwrap().reshape((1, 8, 1, 1)).unwrap();
        let y = pixel_shuffle(&x, 2).unwrap().squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(y, vec![vec![vec![0.0, 1.0], vec![2.0, 3.0]], vec![vec![4.0, 5.0], vec![6.0, 7.0]]]);
    }
}
