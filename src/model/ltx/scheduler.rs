//! Flow-matching Euler sampling for LTX-Video: diffusers'
//! `FlowMatchEulerDiscreteScheduler` (0.42.1) as an LTX snapshot's
//! `scheduler/scheduler_config.json` configures it, plus the schedule and
//! per-token helpers of `LTXPipeline` / `LTXConditionPipeline`.
//!
//! Numerics follow diffusers exactly (the fixtures match to 1e-6, most values
//! bit for bit): `set_timesteps` works in float64 when it builds the schedule
//! itself (numpy `linspace`) and in float32 when it is handed `sigmas` or
//! `timesteps` (numpy arrays cast to float32, Python scalars promoted weakly);
//! both end as float32 sigmas with a trailing 0 (1 when inverted), and
//! timesteps `sigmas * num_train_timesteps` in float32 unless given explicitly.
//!
//! Per-token stepping (`LTXConditionPipeline`): every token carries its own
//! timestep `min(t, (1 - conditioning_mask) * 1000)`; the scheduler steps each
//! token from its own sigma `t_tok / 1000` down to the largest schedule sigma
//! strictly below it (by more than 1e-6; 0 when there is none), and the
//! pipeline then keeps the updated value only where
//! `t / 1000 - 1e-6 < 1 - conditioning_mask` (tokens conditioned more strongly
//! than the current noise level stay as they were). The model output the
//! pipeline passes is `-noise_pred`.

use candle_core::{DType, Device, Result, Tensor, bail};
use serde::Deserialize;

/// How `mu` shifts the schedule when `use_dynamic_shifting` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TimeShiftType {
    #[default]
    Exponential,
    Linear,
}

/// `scheduler/scheduler_config.json` of a diffusers snapshot (fields not
/// listed, such as `_class_name`, are ignored; missing ones take diffusers'
/// defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    pub num_train_timesteps: usize,
    pub shift: f64,
    pub use_dynamic_shifting: bool,
    pub base_shift: Option<f64>,
    pub max_shift: Option<f64>,
    pub base_image_seq_len: usize,
    pub max_image_seq_len: usize,
    pub invert_sigmas: bool,
    pub shift_terminal: Option<f64>,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub time_shift_type: TimeShiftType,
    pub stochastic_sampling: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            shift: 1.0,
            use_dynamic_shifting: false,
            base_shift: Some(0.5),
            max_shift: Some(1.15),
            base_image_seq_len: 256,
            max_image_seq_len: 4096,
            invert_sigmas: false,
            shift_terminal: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            time_shift_type: TimeShiftType::Exponential,
            stochastic_sampling: false,
        }
    }
}

impl SchedulerConfig {
    /// The configuration LTX-Video 0.9.x snapshots ship
    /// (diffusers' `scripts/convert_ltx_to_diffusers.py`).
    pub fn ltx_video() -> Self {
        Self {
            use_dynamic_shifting: true,
            base_shift: Some(0.95),
            max_shift: Some(2.05),
            base_image_seq_len: 1024,
            max_image_seq_len: 4096,
            shift_terminal: Some(0.1),
            ..Self::default()
        }
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| candle_core::Error::Msg(format!("scheduler config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads `<snapshot>/scheduler/scheduler_config.json` (or the file itself).
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let mut p = path.as_ref().to_path_buf();
        if p.is_dir() {
            let nested = p.join("scheduler").join("scheduler_config.json");
            p = if nested.is_file() {
                nested
            } else {
                p.join("scheduler_config.json")
            };
        }
        let text = std::fs::read_to_string(&p)
            .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", p.display())))?;
        Self::from_json(&text)
    }

    pub fn validate(&self) -> Result<()> {
        if self.use_beta_sigmas {
            bail!("scheduler config: use_beta_sigmas (scipy's beta ppf) is not supported");
        }
        if self.use_karras_sigmas && self.use_exponential_sigmas {
            bail!(
                "scheduler config: only one of use_karras_sigmas / use_exponential_sigmas can be set"
            );
        }
        if self.num_train_timesteps == 0 {
            bail!("scheduler config: num_train_timesteps must be positive");
        }
        Ok(())
    }

    /// `mu` as the LTX pipelines compute it from the latent token count
    /// (`frames * height * width` of the latent grid).
    pub fn mu_for(&self, video_seq_len: usize) -> f64 {
        calculate_shift(
            video_seq_len,
            self.base_image_seq_len,
            self.max_image_seq_len,
            self.base_shift.unwrap_or(0.5),
            self.max_shift.unwrap_or(1.15),
        )
    }
}

/// diffusers' `calculate_shift` (the linear map from sequence length to `mu`).
pub fn calculate_shift(
    image_seq_len: usize,
    base_seq_len: usize,
    max_seq_len: usize,
    base_shift: f64,
    max_shift: f64,
) -> f64 {
    let m = (max_shift - base_shift) / (max_seq_len as f64 - base_seq_len as f64);
    let b = base_shift - m * base_seq_len as f64;
    image_seq_len as f64 * m + b
}

/// numpy's `linspace(start, stop, num)` (float64, endpoint included).
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return vec![];
    }
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut y: Vec<f64> = if step == 0.0 {
        (0..num).map(|i| i as f64 / div * delta + start).collect()
    } else {
        (0..num).map(|i| i as f64 * step + start).collect()
    };
    y[num - 1] = stop;
    y
}

/// The sigmas `LTXPipeline` / `LTXImageToVideoPipeline` pass:
/// `np.linspace(1.0, 1 / n, n)`.
pub fn ltx_pipeline_sigmas(num_inference_steps: usize) -> Vec<f64> {
    linspace(1.0, 1.0 / num_inference_steps as f64, num_inference_steps)
}

/// `LTXConditionPipeline`'s default schedule `linear_quadratic_schedule(n)`
/// (float32 sigmas, without the final 0), threshold_noise 0.025.
pub fn linear_quadratic_schedule(
    num_steps: usize,
    threshold_noise: f64,
    linear_steps: Option<usize>,
) -> Vec<f32> {
    let linear_steps = linear_steps.unwrap_or(num_steps / 2);
    if num_steps < 2 {
        return vec![1.0];
    }
    let ls = linear_steps as f64;
    let mut sched: Vec<f64> = (0..linear_steps)
        .map(|i| i as f64 * threshold_noise / ls)
        .collect();
    let threshold_noise_step_diff = ls - threshold_noise * num_steps as f64;
    let quadratic_steps = (num_steps - linear_steps) as f64;
    let quadratic_coef = threshold_noise_step_diff / (ls * quadratic_steps.powi(2));
    let linear_coef =
        threshold_noise / ls - 2.0 * threshold_noise_step_diff / quadratic_steps.powi(2);
    let konst = quadratic_coef * ls.powi(2);
    for i in linear_steps..num_steps {
        let i = i as f64;
        sched.push(quadratic_coef * (i * i) + linear_coef * i + konst);
    }
    sched.iter().map(|x| (1.0 - x) as f32).collect()
}

/// The timesteps `LTXConditionPipeline` passes when none are given:
/// `linear_quadratic_schedule(n) * 1000` (float32).
pub fn condition_pipeline_timesteps(num_steps: usize) -> Vec<f32> {
    linear_quadratic_schedule(num_steps, 0.025, None)
        .into_iter()
        .map(|s| s * 1000.0)
        .collect()
}

#[inline]
fn r32(x: f64) -> f64 {
    x as f32 as f64
}

/// The scheduler state: the schedule of the last `set_timesteps` and the
/// step counter.
#[derive(Debug, Clone)]
pub struct FlowMatchEulerScheduler {
    pub config: SchedulerConfig,
    /// `num_inference_steps` timesteps, float32.
    pub timesteps: Vec<f32>,
    /// `num_inference_steps + 1` sigmas (the last 0, or 1 when inverted).
    pub sigmas: Vec<f32>,
    shift: f64,
    sigma_min: f64,
    sigma_max: f64,
    step_index: Option<usize>,
    begin_index: Option<usize>,
}

impl FlowMatchEulerScheduler {
    pub fn new(config: SchedulerConfig) -> Result<Self> {
        config.validate()?;
        let n = config.num_train_timesteps;
        let nf = n as f32;
        let shift = config.shift;
        let mut sigmas: Vec<f32> = (0..n).rev().map(|i| (i + 1) as f32 / nf).collect();
        if !config.use_dynamic_shifting {
            let (s, s1) = (shift as f32, (shift - 1.0) as f32);
            for x in sigmas.iter_mut() {
                *x = s * *x / (1.0 + s1 * *x);
            }
        }
        let timesteps: Vec<f32> = sigmas.iter().map(|s| s * nf).collect();
        Ok(Self {
            sigma_min: *sigmas.last().unwrap() as f64,
            sigma_max: sigmas[0] as f64,
            config,
            timesteps,
            sigmas,
            shift,
            step_index: None,
            begin_index: None,
        })
    }

    pub fn shift(&self) -> f64 {
        self.shift
    }
    pub fn set_shift(&mut self, shift: f64) {
        self.shift = shift;
    }
    pub fn step_index(&self) -> Option<usize> {
        self.step_index
    }
    pub fn begin_index(&self) -> Option<usize> {
        self.begin_index
    }
    pub fn set_begin_index(&mut self, begin_index: usize) {
        self.begin_index = Some(begin_index);
    }
    pub fn num_inference_steps(&self) -> usize {
        self.timesteps.len()
    }

    /// `set_timesteps(num_inference_steps, mu=mu)`.
    pub fn set_timesteps(&mut self, num_inference_steps: usize, mu: Option<f64>) -> Result<()> {
        self.set_timesteps_full(Some(num_inference_steps), None, None, mu)
    }

    /// `set_timesteps(sigmas=sigmas, mu=mu)` (LTXPipeline passes
    /// [`ltx_pipeline_sigmas`]).
    pub fn set_timesteps_sigmas(&mut self, sigmas: &[f64], mu: Option<f64>) -> Result<()> {
        self.set_timesteps_full(None, Some(sigmas), None, mu)
    }

    /// `set_timesteps(timesteps=timesteps, mu=mu)` (fixed schedules of the
    /// distilled checkpoints; LTXConditionPipeline). The timesteps are used as
    /// given; the sigmas derived from them go through the shifting.
    pub fn set_timesteps_explicit(&mut self, timesteps: &[f64], mu: Option<f64>) -> Result<()> {
        self.set_timesteps_full(None, None, Some(timesteps), mu)
    }

    /// diffusers' `set_timesteps` with every argument.
    pub fn set_timesteps_full(
        &mut self,
        num_inference_steps: Option<usize>,
        sigmas: Option<&[f64]>,
        timesteps: Option<&[f64]>,
        mu: Option<f64>,
    ) -> Result<()> {
        let cfg = self.config.clone();
        if cfg.use_dynamic_shifting && mu.is_none() {
            bail!("`mu` must be passed when `use_dynamic_shifting` is set to be `True`");
        }
        if let (Some(s), Some(t)) = (sigmas, timesteps)
            && s.len() != t.len()
        {
            bail!("`sigmas` and `timesteps` should have the same length");
        }
        let n = match num_inference_steps {
            Some(n) => {
                if sigmas.is_some_and(|s| s.len() != n) || timesteps.is_some_and(|t| t.len() != n) {
                    bail!(
                        "`sigmas` and `timesteps` should have the same length as num_inference_steps, if `num_inference_steps` is provided"
                    );
                }
                n
            }
            None => match (sigmas, timesteps) {
                (Some(s), _) => s.len(),
                (None, Some(t)) => t.len(),
                (None, None) => {
                    bail!("set_timesteps needs num_inference_steps, sigmas or timesteps")
                }
            },
        };
        if n == 0 {
            bail!("set_timesteps: zero inference steps");
        }
        let ntt = cfg.num_train_timesteps as f64;
        let given_t: Option<Vec<f64>> = timesteps.map(|t| t.iter().map(|&x| r32(x)).collect());
        // f32 mode: numpy float32 arrays (explicit sigmas or timesteps)
        let (mut s, f32mode): (Vec<f64>, bool) = match (sigmas, &given_t) {
            (Some(sg), _) => (sg.iter().map(|&x| r32(x)).collect(), true),
            (None, Some(t)) => (t.iter().map(|&x| r32(x / ntt)).collect(), true),
            (None, None) => {
                let t = linspace(self.sigma_max * ntt, self.sigma_min * ntt, n);
                (t.iter().map(|x| x / ntt).collect(), false)
            }
        };
        let rd = |x: f64| if f32mode { r32(x) } else { x };
        if cfg.use_dynamic_shifting {
            let mu = mu.unwrap();
            match cfg.time_shift_type {
                TimeShiftType::Exponential => {
                    let e = rd(mu.exp());
                    for x in s.iter_mut() {
                        let y = rd(rd(rd(1.0 / *x) - 1.0));
                        *x = rd(e / rd(e + y));
                    }
                }
                TimeShiftType::Linear => {
                    let m = rd(mu);
                    for x in s.iter_mut() {
                        let y = rd(rd(1.0 / *x) - 1.0);
                        *x = rd(m / rd(m + y));
                    }
                }
            }
        } else {
            let (sh, sh1) = (rd(self.shift), rd(self.shift - 1.0));
            for x in s.iter_mut() {
                *x = rd(rd(sh * *x) / rd(1.0 + rd(sh1 * *x)));
            }
        }
        if let Some(term) = cfg.shift_terminal.filter(|&t| t != 0.0) {
            let one_minus: Vec<f64> = s.iter().map(|&x| rd(1.0 - x)).collect();
            let scale = rd(one_minus[n - 1] / rd(1.0 - term));
            s = one_minus.iter().map(|&z| rd(1.0 - rd(z / scale))).collect();
        }
        if cfg.use_karras_sigmas || cfg.use_exponential_sigmas {
            let (smin, smax) = (s[n - 1], s[0]);
            let ramp = linspace(0.0, 1.0, n);
            s = if cfg.use_karras_sigmas {
                let rho = 7.0f64;
                let min_inv = smin.powf(1.0 / rho);
                let max_inv = smax.powf(1.0 / rho);
                ramp.iter()
                    .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
                    .collect()
            } else {
                linspace(smax.ln(), smin.ln(), n)
                    .iter()
                    .map(|x| x.exp())
                    .collect()
            };
        }
        let n = s.len();
        let ntt32 = cfg.num_train_timesteps as f32;
        let mut sig: Vec<f32> = s.iter().map(|&x| x as f32).collect();
        let mut ts: Vec<f32> = match &given_t {
            Some(t) => t.iter().map(|&x| x as f32).collect(),
            None => sig.iter().map(|x| x * ntt32).collect(),
        };
        if cfg.invert_sigmas {
            for x in sig.iter_mut() {
                *x = 1.0 - *x;
            }
            ts = sig.iter().map(|x| x * ntt32).collect();
            sig.push(1.0);
        } else {
            sig.push(0.0);
        }
        debug_assert_eq!(sig.len(), n + 1);
        self.timesteps = ts;
        self.sigmas = sig;
        self.step_index = None;
        self.begin_index = None;
        Ok(())
    }

    /// Index of `timestep` in the schedule (the second match when it occurs
    /// more than once, as diffusers does).
    pub fn index_for_timestep(&self, timestep: f32) -> Result<usize> {
        let idx: Vec<usize> = self
            .timesteps
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == timestep)
            .map(|(i, _)| i)
            .collect();
        match idx.len() {
            0 => bail!("timestep {timestep} is not in the schedule"),
            1 => Ok(idx[0]),
            _ => Ok(idx[1]),
        }
    }

    fn init_step_index(&mut self, timestep: f32) -> Result<usize> {
        if let Some(i) = self.step_index {
            return Ok(i);
        }
        let i = match self.begin_index {
            Some(b) => b,
            None => self.index_for_timestep(timestep)?,
        };
        self.step_index = Some(i);
        Ok(i)
    }

    /// The Euler step `sample + (sigma_next - sigma) * model_output` at the
    /// current step (found from `timestep` on the first call). The result has
    /// `model_output`'s dtype; the arithmetic is float32.
    pub fn step(
        &mut self,
        model_output: &Tensor,
        timestep: f32,
        sample: &Tensor,
    ) -> Result<Tensor> {
        self.step_with_noise(model_output, timestep, sample, None)
    }

    /// [`step`](Self::step); with `stochastic_sampling` the fresh noise
    /// (standard normal, `sample`'s shape) must be given:
    /// `(1 - sigma_next) * (sample - sigma * model_output) + sigma_next * noise`.
    pub fn step_with_noise(
        &mut self,
        model_output: &Tensor,
        timestep: f32,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let i = self.init_step_index(timestep)?;
        if i + 1 >= self.sigmas.len() {
            bail!("scheduler stepped past the end of its schedule (step {i})");
        }
        let (sigma, sigma_next) = (self.sigmas[i], self.sigmas[i + 1]);
        let sample = sample.to_dtype(DType::F32)?;
        let mo = model_output.to_dtype(DType::F32)?;
        let prev = if self.config.stochastic_sampling {
            let Some(noise) = noise else {
                bail!("stochastic_sampling needs the step's noise");
            };
            let x0 = (&sample - (&mo * sigma as f64)?)?;
            ((x0 * (1.0 - sigma_next) as f64)?
                + (noise.to_dtype(DType::F32)? * sigma_next as f64)?)?
        } else {
            let dt = sigma_next - sigma;
            (&sample + (&mo * dt as f64)?)?
        };
        self.step_index = Some(i + 1);
        prev.to_dtype(model_output.dtype())
    }

    /// Next sigma of every token for per-token timesteps: the largest schedule
    /// sigma below `t_tok / num_train_timesteps - 1e-6` (0 if none), together
    /// with the token's own sigma. Host-side, float32.
    pub fn per_token_sigmas(&self, per_token_timesteps: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let ntt = self.config.num_train_timesteps as f32;
        let cur: Vec<f32> = per_token_timesteps.iter().map(|t| t / ntt).collect();
        let next: Vec<f32> = cur
            .iter()
            .map(|&c| {
                let thr = c - 1e-6f32;
                self.sigmas
                    .iter()
                    .fold(0.0f32, |m, &s| if s < thr { m.max(s) } else { m })
            })
            .collect();
        (cur, next)
    }

    /// diffusers' `step(model_output, t, sample, per_token_timesteps=...)`:
    /// `sample [B, N, C]`, `per_token_timesteps [B, N]` (or `[B, 1]`);
    /// `sample + (sigma_tok - sigma_next_tok) * model_output`, float32 (not cast
    /// back). `timestep` only initialises the step counter as diffusers does.
    pub fn step_per_token(
        &mut self,
        model_output: &Tensor,
        timestep: f32,
        sample: &Tensor,
        per_token_timesteps: &Tensor,
    ) -> Result<Tensor> {
        let i = self.init_step_index(timestep)?;
        let dims = per_token_timesteps.dims().to_vec();
        let pt = per_token_timesteps
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let (cur, next) = self.per_token_sigmas(&pt);
        let dt: Vec<f32> = cur.iter().zip(&next).map(|(c, n)| c - n).collect();
        let mut shape = dims;
        shape.push(1);
        let dt = Tensor::from_vec(dt, shape, sample.device())?;
        let sample = sample.to_dtype(DType::F32)?;
        let mo = model_output.to_dtype(DType::F32)?;
        if self.config.stochastic_sampling {
            bail!("stochastic_sampling with per-token timesteps is not supported");
        }
        let prev = sample.broadcast_add(&mo.broadcast_mul(&dt)?)?;
        self.step_index = Some(i + 1);
        Ok(prev)
    }

    /// `scale_noise`: `sigma * noise + (1 - sigma) * sample` at the sigma of
    /// schedule index `index`.
    pub fn scale_noise_at(&self, sample: &Tensor, noise: &Tensor, index: usize) -> Result<Tensor> {
        let s = self.sigmas[index] as f64;
        (noise * s)? + (sample * (1.0 - s))?
    }

    /// `LTXConditionPipeline.get_timesteps`: the tail of the schedule for a
    /// `denoise_strength` < 1: returns (sigmas, timesteps, steps) from the start
    /// index on.
    pub fn strength_tail(&self, strength: f64) -> (Vec<f32>, Vec<f32>, usize) {
        let n = self.timesteps.len();
        let num_steps = ((n as f64 * strength) as usize).min(n);
        let start = n.saturating_sub(num_steps);
        (
            self.sigmas[start..].to_vec(),
            self.timesteps[start..].to_vec(),
            n - start,
        )
    }
}

/// `LTXConditionPipeline`'s per-token timesteps
/// `min(t, (1 - conditioning_mask) * 1000)`: mask `[B, N]` -> `[B, N]` float32.
pub fn conditioning_timesteps(t: f32, conditioning_mask: &Tensor) -> Result<Tensor> {
    let dims = conditioning_mask.dims().to_vec();
    let m = conditioning_mask
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let v: Vec<f32> = m.iter().map(|&m| t.min((1.0 - m) * 1000.0)).collect();
    Tensor::from_vec(v, dims, conditioning_mask.device())
}

/// Which tokens `LTXConditionPipeline` updates at timestep `t`:
/// `t / 1000 - 1e-6 < 1 - conditioning_mask` (u8 `[B, N, 1]`).
pub fn tokens_to_denoise(t: f32, conditioning_mask: &Tensor) -> Result<Tensor> {
    let mut dims = conditioning_mask.dims().to_vec();
    let m = conditioning_mask
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let thr = t / 1000.0 - 1e-6f32;
    let v: Vec<u8> = m.iter().map(|&m| u8::from(thr < 1.0 - m)).collect();
    dims.push(1);
    Tensor::from_vec(v, dims, conditioning_mask.device())
}

/// One `LTXConditionPipeline` scheduler update: per-token step of
/// `-noise_pred` (pass the guided `noise_pred` itself), then keep the old
/// value for tokens that must not be denoised at `t`. `conditioning_mask`
/// None is the unconditioned case (timestep `[B, 1]`, every token updated).
pub fn condition_step(
    scheduler: &mut FlowMatchEulerScheduler,
    noise_pred: &Tensor,
    t: f32,
    latents: &Tensor,
    conditioning_mask: Option<&Tensor>,
) -> Result<Tensor> {
    let b = latents.dim(0)?;
    match conditioning_mask {
        Some(mask) => {
            let ts = conditioning_timesteps(t, mask)?;
            let denoised = scheduler.step_per_token(&noise_pred.neg()?, t, latents, &ts)?;
            let keep = tokens_to_denoise(t, mask)?.broadcast_as(denoised.shape())?;
            keep.where_cond(&denoised, &latents.to_dtype(DType::F32)?)
        }
        None => {
            let ts = Tensor::full(t, (b, 1), &Device::Cpu)?;
            scheduler.step_per_token(&noise_pred.neg()?, t, latents, &ts)
        }
    }
}
