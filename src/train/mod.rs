//! Training: flow matching on random conditioning plans over real footage and
//! stills made to move.
//!
//! Every step draws a batch of windows, and for each a plan covering the three
//! jobs: a gap of 1..T-2 frames inside the window (infill), a known prefix
//! (extend forward), a known suffix (extend backward), or one known first
//! frame (animate). Frames to generate are moved to a logit-normal flow time
//! on the path from their start (noise, or the prior's estimate plus a little
//! noise, computed exactly as the sampler does) to the truth; the loss is the
//! MSE of the predicted velocity on those frames only.
//!
//! Batches are drawn from an RNG seeded by (seed, step), and the optimiser
//! state, step and EMA are checkpointed, so `resume` continues a run exactly.

pub mod synth;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_distr::Distribution;
use serde::{Deserialize, Serialize};

use crate::error::{Result, WeftError};
use crate::frame::Frame;
use crate::model::{Config, Mode, Transformer, WindowBatch};
use crate::tasks::sampler::frame_to_tensor;

/// Hyper-parameters of a training run (saved in every checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch: usize,
    /// Frame slots per training window.
    pub frames: usize,
    /// Crop size (width, height) of training windows.
    pub crop: (usize, usize),
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub clip_norm: f64,
    /// EMA decay of the weights (0 disables).
    pub ema_decay: f64,
    /// Fraction of windows drawn from stills (the rest from video).
    pub still_fraction: f64,
    pub seed: u64,
    pub checkpoint_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 20_000,
            batch: 4,
            frames: 8,
            crop: (128, 128),
            lr: 3e-4,
            warmup: 500,
            weight_decay: 0.01,
            clip_norm: 1.0,
            ema_decay: 0.999,
            still_fraction: 0.4,
            seed: 0,
            checkpoint_every: 500,
        }
    }
}

/// What training windows are cut from.
#[derive(Default)]
pub struct Dataset {
    /// Decoded videos (each a list of frames).
    pub videos: Vec<Vec<Frame>>,
    /// Stills animated by synthetic camera motion.
    pub stills: Vec<Frame>,
}

impl Dataset {
    fn clip(&self, frames: usize, (w, h): (usize, usize), still_fraction: f64, rng: &mut impl Rng) -> Result<Vec<Frame>> {
        let use_still = self.videos.is_empty() || (!self.stills.is_empty() && rng.random_bool(still_fraction));
        if use_still {
            if self.stills.is_empty() {
                return Err(WeftError::BadOptions("no training data: give videos or stills".into()));
            }
            let s = &self.stills[rng.random_range(0..self.stills.len())];
            let o = &self.stills[rng.random_range(0..self.stills.len())];
            return Ok(synth::camera_clip(s, Some(o), frames, w, h, rng));
        }
        for _ in 0..100 {
            let v = &self.videos[rng.random_range(0..self.videos.len())];
            if let Some(c) = synth::video_clip(v, frames, w, h, rng) {
                return Ok(c);
            }
        }
        Err(WeftError::BadOptions(format!("no training video has {frames} frames")))
    }
}

/// Which slots of a window are known, for one training sample.
pub fn random_plan(frames: usize, rng: &mut impl Rng) -> Vec<bool> {
    let t = frames;
    let mut known = vec![false; t];
    // Infill is what the default model is measured on most: 70 % of
    // windows; extension forward 10 %, backward 5 %, animate 15 %.
    match rng.random_range(0..20) {
        // Infill: a gap with known frames on both sides.
        0..=13 if t >= 3 => {
            let gap = rng.random_range(1..=t - 2);
            let start = rng.random_range(1..=t - 1 - gap);
            for (i, k) in known.iter_mut().enumerate() {
                *k = i < start || i >= start + gap;
            }
        }
        // Extend forward: a known prefix.
        0..=15 => known[..rng.random_range(1..t)].iter_mut().for_each(|k| *k = true),
        // Extend backward: a known suffix.
        16 => {
            let n = rng.random_range(1..t);
            known[t - n..].iter_mut().for_each(|k| *k = true);
        }
        // Animate: the first frame only.
        _ => known[0] = true,
    }
    known
}

/// The flow's starting estimates for a batch of clips `[B, T, 3, H, W]`
/// (`frames[b][t]`) under plans `known`, as the sampler computes them at
/// inference (slots at time positions 0..T); zeros at known slots. `None`
/// for the noise prior.
pub fn prior_batch(model: &Transformer, frames: &[Vec<Frame>], known: &[Vec<bool>]) -> Result<Option<Tensor>> {
    let dev = model.device();
    let mut clips = Vec::with_capacity(frames.len());
    for (clip, plan) in frames.iter().zip(known) {
        let slots: Vec<(f32, Option<&Frame>)> =
            clip.iter().zip(plan).enumerate().map(|(i, (f, k))| (i as f32, k.then_some(f))).collect();
        let Some(est) = crate::tasks::prior::estimates(model.config().prior, &slots)? else { return Ok(None) };
        let mut est = est.into_iter();
        let mut ts = Vec::with_capacity(clip.len());
        for (f, k) in clip.iter().zip(plan) {
            ts.push(if *k {
                Tensor::zeros((3, f.height(), f.width()), DType::F32, dev)?
            } else {
                frame_to_tensor(&est.next().expect("one estimate per slot to generate"), dev)?
            });
        }
        clips.push(Tensor::stack(&ts, 0)?);
    }
    Ok(Some(Tensor::stack(&clips, 0)?))
}

/// Flow-matching loss of `model` on clips `[B, T, 3, H, W]` with plans `known`
/// and, for a bridge model, the prior's estimates `priors` (see
/// [`prior_batch`]). Samples are run in groups with the same number of known
/// slots (the model runs known frames as their own pass).
pub fn flow_loss(model: &Transformer, clips: &Tensor, priors: Option<&Tensor>, known: &[Vec<bool>], rng: &mut impl Rng) -> Result<Tensor> {
    let dev = model.device();
    let (b, t, c, h, w) = clips.dims5()?;
    let normal = rand_distr::StandardNormal;
    let noise: Vec<f32> = (0..b * t * c * h * w).map(|_| normal.sample(rng)).collect();
    let noise = Tensor::from_vec(noise, clips.shape(), dev)?;
    // Where each path starts (flow time 1).
    let noise = match priors {
        Some(p) => (p + (noise * model.config().prior_noise as f64)?)?,
        None => noise,
    };
    // Flow time per sample, shared by its frames to generate. From noise:
    // logit-normal. A bridge decides most at t = 1 (its first sampling step
    // starts from the estimate itself), where logit-normal draws almost
    // nothing: half the samples are put exactly there, the rest uniform.
    let bridge = priors.is_some();
    let times: Vec<f32> = (0..b)
        .map(|_| {
            if bridge {
                if rng.random_bool(0.5) { 1.0 } else { rng.random_range(0.0f32..1.0) }
            } else {
                let n: f32 = normal.sample(rng);
                1.0 / (1.0 + (-n).exp())
            }
        })
        .collect();
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, plan) in known.iter().enumerate() {
        groups.entry(plan.iter().filter(|k| **k).count()).or_default().push(i);
    }
    let mut total: Option<Tensor> = None;
    let mut n_unknown = 0usize;
    for members in groups.values() {
        let idx = Tensor::from_vec(members.iter().map(|&i| i as u32).collect::<Vec<_>>(), members.len(), dev)?;
        let x0 = clips.index_select(&idx, 0)?;
        let eps = noise.index_select(&idx, 0)?;
        let g = members.len();
        let mut tv = Vec::with_capacity(g * t);
        let mut kv = Vec::with_capacity(g * t);
        for &i in members {
            for &k in &known[i] {
                tv.push(if k { 0.0 } else { times[i] });
                kv.push(k as u32);
            }
        }
        let tt = Tensor::from_vec(tv, (g, t), dev)?;
        let kt = Tensor::from_vec(kv.clone(), (g, t), dev)?;
        let tw = tt.reshape((g, t, 1, 1, 1))?;
        let xt = (x0.broadcast_mul(&(1.0 - &tw)?)? + eps.broadcast_mul(&tw)?)?;
        let tpos = Tensor::arange(0f32, t as f32, dev)?.unsqueeze(0)?.repeat((g, 1))?;
        let v = model.forward(&WindowBatch { x: &xt, t: &tt, known: &kt, tpos: &tpos }, Mode::Train)?;
        let target = (eps - x0)?;
        let mask: Vec<f32> = kv.iter().map(|&k| (k == 0) as u8 as f32).collect();
        n_unknown += mask.iter().filter(|m| **m > 0.0).count();
        let mask = Tensor::from_vec(mask, (g, t, 1, 1, 1), dev)?;
        let se = (v - target)?.sqr()?.broadcast_mul(&mask)?.sum_all()?;
        total = Some(match total {
            Some(acc) => (acc + se)?,
            None => se,
        });
    }
    let total = total.ok_or_else(|| WeftError::BadOptions("empty batch".into()))?;
    Ok((total / (n_unknown.max(1) as f64 * (c * h * w) as f64))?)
}

/// AdamW with decoupled weight decay, state kept in tensors so it can be saved.
struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: usize,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl AdamW {
    fn new(vars: Vec<(String, Var)>) -> Result<Self> {
        let m = vars.iter().map(|(_, v)| v.zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self { vars, m, v, step: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8 })
    }

    /// One update; returns the gradient norm before clipping.
    fn step(&mut self, grads: &candle_core::backprop::GradStore, lr: f64, wd: f64, clip: f64) -> Result<f64> {
        let mut sq = 0.0f64;
        let gs: Vec<Option<Tensor>> = self.vars.iter().map(|(_, v)| grads.get(v.as_tensor()).cloned()).collect();
        for g in gs.iter().flatten() {
            sq += g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(WeftError::BadOptions(format!("gradient norm is {norm}: training diverged")));
        }
        let scale = if clip > 0.0 && norm > clip { clip / norm } else { 1.0 };
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.step as i32);
        let c2 = 1.0 - b2.powi(self.step as i32);
        for (i, g) in gs.into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = (g * scale)?;
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let mhat = (&self.m[i] / c1)?;
            let vhat = (&self.v[i] / c2)?;
            let var = &self.vars[i].1;
            let update = (mhat / (vhat.sqrt()? + self.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * wd))?;
            var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(norm)
    }
}

/// Progress of one step, for a progress bar or a log.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    pub step: usize,
    pub loss: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub samples_per_sec: f64,
}

/// A training run: model, optimiser, EMA and where checkpoints go.
pub struct Trainer {
    pub cfg: TrainConfig,
    model: Transformer,
    ema: Option<Transformer>,
    opt: AdamW,
    dir: PathBuf,
}

const STATE_FILE: &str = "state.json";
const OPT_FILE: &str = "optimizer.safetensors";

#[derive(Serialize, Deserialize)]
struct State {
    step: usize,
    train: TrainConfig,
}

impl Trainer {
    /// A new run of a fresh model (seeded from `cfg.seed`), checkpointing into `dir`.
    pub fn new(model_cfg: &Config, cfg: TrainConfig, dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let model = Transformer::untrained(model_cfg, cfg.seed, device)?;
        let ema = if cfg.ema_decay > 0.0 { Some(model.to_device(device)?) } else { None };
        let opt = AdamW::new(model.named_vars())?;
        Ok(Self { cfg, model, ema, opt, dir: dir.as_ref().to_path_buf() })
    }

    /// Continues the run checkpointed in `dir` exactly where it stopped.
    pub fn resume(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let state = read_state(dir)?;
        let model = Transformer::load_on(dir.join("model"), device)?;
        let ema = if state.train.ema_decay > 0.0 { Some(Transformer::load_on(dir.join("ema"), device)?) } else { None };
        let mut opt = AdamW::new(model.named_vars())?;
        let opt_path = dir.join(OPT_FILE);
        let saved = candle_core::safetensors::load(&opt_path, device)
            .map_err(|e| WeftError::WeightsCorrupt { path: opt_path.clone(), reason: e.to_string() })?;
        for (i, (name, _)) in opt.vars.iter().enumerate() {
            let get = |k: String| {
                saved.get(&k).cloned().ok_or(WeftError::MissingTensor { name: k })
            };
            opt.m[i] = get(format!("m.{name}"))?;
            opt.v[i] = get(format!("v.{name}"))?;
        }
        opt.step = state.step;
        Ok(Self { cfg: state.train, model, ema, opt, dir: dir.to_path_buf() })
    }

    pub fn step(&self) -> usize {
        self.opt.step
    }
    pub fn model(&self) -> &Transformer {
        &self.model
    }
    /// The weights to ship: the EMA if kept, else the raw weights.
    pub fn final_model(&self) -> &Transformer {
        self.ema.as_ref().unwrap_or(&self.model)
    }

    fn lr_at(&self, step: usize) -> f64 {
        let warm = self.cfg.warmup.max(1) as f64;
        let s = step as f64 + 1.0;
        let warmup = (s / warm).min(1.0);
        // Cosine decay to 10% after warm-up.
        let total = self.cfg.steps.max(1) as f64;
        let progress = ((s - warm) / (total - warm).max(1.0)).clamp(0.0, 1.0);
        self.cfg.lr * warmup * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
    }

    /// Draws the batch of step `step` (deterministic in seed and step).
    #[allow(clippy::type_complexity)]
    fn batch(&self, data: &Dataset, step: usize) -> Result<(Tensor, Option<Tensor>, Vec<Vec<bool>>, rand_chacha::ChaCha8Rng)> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.cfg.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let dev = self.model.device();
        let mut clips = Vec::with_capacity(self.cfg.batch);
        let mut raw = Vec::with_capacity(self.cfg.batch);
        let mut plans = Vec::with_capacity(self.cfg.batch);
        for _ in 0..self.cfg.batch {
            let clip = data.clip(self.cfg.frames, self.cfg.crop, self.cfg.still_fraction, &mut rng)?;
            let frames = clip.iter().map(|f| frame_to_tensor(f, dev)).collect::<candle_core::Result<Vec<_>>>()?;
            clips.push(Tensor::stack(&frames, 0)?);
            raw.push(clip);
            plans.push(random_plan(self.cfg.frames, &mut rng));
        }
        let priors = prior_batch(&self.model, &raw, &plans)?;
        Ok((Tensor::stack(&clips, 0)?, priors, plans, rng))
    }

    /// Runs one optimisation step.
    pub fn train_step(&mut self, data: &Dataset) -> Result<StepReport> {
        let started = std::time::Instant::now();
        let step = self.opt.step;
        let (clips, priors, plans, mut rng) = self.batch(data, step)?;
        let loss = flow_loss(&self.model, &clips, priors.as_ref(), &plans, &mut rng)?;
        let grads = loss.backward()?;
        let lr = self.lr_at(step);
        let grad_norm = self.opt.step(&grads, lr, self.cfg.weight_decay, self.cfg.clip_norm)?;
        if let Some(ema) = &self.ema {
            let d = self.cfg.ema_decay.min((1.0 + step as f64) / (10.0 + step as f64));
            for ((_, e), (_, v)) in ema.named_vars().into_iter().zip(self.model.named_vars()) {
                e.set(&((e.as_tensor() * d)? + (v.as_tensor() * (1.0 - d))?)?)?;
            }
        }
        let loss = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        Ok(StepReport {
            step: self.opt.step,
            loss,
            grad_norm,
            lr,
            samples_per_sec: self.cfg.batch as f64 / started.elapsed().as_secs_f64(),
        })
    }

    /// Writes the checkpoint (model, EMA, optimiser state, step) into the run directory.
    pub fn checkpoint(&self) -> Result<()> {
        let dir = &self.dir;
        std::fs::create_dir_all(dir).map_err(|e| WeftError::Io { path: dir.clone(), source: e })?;
        let f32_cfg = Config { weight_dtype: crate::model::WeightDtype::F32, ..self.model.config().clone() };
        save_as(&self.model, &f32_cfg, &dir.join("model"))?;
        if let Some(ema) = &self.ema {
            save_as(ema, &f32_cfg, &dir.join("ema"))?;
        }
        let mut tensors = std::collections::HashMap::new();
        for (i, (name, _)) in self.opt.vars.iter().enumerate() {
            tensors.insert(format!("m.{name}"), self.opt.m[i].clone());
            tensors.insert(format!("v.{name}"), self.opt.v[i].clone());
        }
        let tmp = crate::interrupt::TempPath::new(dir.join(format!("{OPT_FILE}.tmp")));
        candle_core::safetensors::save(&tensors, tmp.path())?;
        tmp.commit(|t| std::fs::rename(t, dir.join(OPT_FILE)).map_err(|e| WeftError::Io { path: dir.join(OPT_FILE), source: e }))?;
        // Written last, under a temporary name: a checkpoint cut short leaves
        // the previous state.json (and its step) in place.
        let state = serde_json::to_string_pretty(&State { step: self.opt.step, train: self.cfg.clone() }).expect("serialises");
        let tmp = crate::interrupt::TempPath::new(dir.join(format!("{STATE_FILE}.tmp")));
        std::fs::write(tmp.path(), state).map_err(|e| WeftError::Io { path: tmp.path().to_path_buf(), source: e })?;
        tmp.commit(|t| std::fs::rename(t, dir.join(STATE_FILE)).map_err(|e| WeftError::Io { path: dir.join(STATE_FILE), source: e }))
    }

    /// Trains until `cfg.steps`, checkpointing every `checkpoint_every` steps
    /// and at the end; `report` sees every step.
    pub fn run(&mut self, data: &Dataset, mut report: impl FnMut(&StepReport)) -> Result<()> {
        while self.opt.step < self.cfg.steps {
            let r = self.train_step(data)?;
            report(&r);
            if self.cfg.checkpoint_every > 0 && r.step % self.cfg.checkpoint_every == 0 {
                self.checkpoint()?;
            }
        }
        self.checkpoint()
    }
}

/// The step and settings of the run checkpointed in `dir`.
fn read_state(dir: &Path) -> Result<State> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| WeftError::Io { path: path.clone(), source: e })?;
    serde_json::from_str(&text).map_err(|e| WeftError::Config { path, reason: e.to_string() })
}

/// Writes the shipping model of the run checkpointed in `run` (its EMA
/// weights, or the raw ones for a run without EMA) to `out`, stored in
/// `dtype`. Returns the checkpoint's step and the model as written.
pub fn export(run: &Path, out: &Path, dtype: crate::model::WeightDtype) -> Result<(usize, Transformer)> {
    let state = read_state(run)?;
    let src = if state.train.ema_decay > 0.0 { run.join("ema") } else { run.join("model") };
    let model = Transformer::load(&src)?;
    // What a training run wrote is trained: the exported model refines its estimate.
    let cfg = Config { weight_dtype: dtype, trained: true, ..model.config().clone() };
    save_as(&model, &cfg, out)?;
    Ok((state.step, Transformer::load(out)?))
}

/// Saves `model` with another storage dtype (checkpoints keep full f32).
fn save_as(model: &Transformer, cfg: &Config, dir: &Path) -> Result<()> {
    let copy = Transformer::build(cfg, model.device())?;
    for ((_, d), (_, s)) in copy.named_vars().into_iter().zip(model.named_vars()) {
        d.set(s.as_tensor())?;
    }
    copy.save(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_every_job_and_always_condition() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let (mut infill, mut fwd, mut back, mut anim) = (0, 0, 0, 0);
        for _ in 0..400 {
            let p = random_plan(6, &mut rng);
            assert!(p.iter().any(|k| *k) && p.iter().any(|k| !*k), "{p:?}");
            let first_unknown = p.iter().position(|k| !*k).unwrap();
            let last_unknown = p.iter().rposition(|k| !*k).unwrap();
            if p.iter().filter(|k| **k).count() == 1 && p[0] {
                anim += 1;
            } else if first_unknown > 0 && last_unknown < 5 {
                infill += 1;
            } else if first_unknown > 0 {
                fwd += 1;
            } else {
                back += 1;
            }
        }
        assert!(infill > 240 && fwd > 20 && back > 8 && anim > 35, "{infill} {fwd} {back} {anim}");
    }
}
