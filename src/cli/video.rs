//! The video commands (`gaps`, `infill`, `extend`, `animate`): argument
//! parsing only; the work is in `weft::pipeline`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use weft::pipeline::{self, FrameRange, InfillOptions, OutputOptions, Progress, Report, RetimeOptions, Select, Summary};
use weft::model::ltx::generate::{LtxPreset, LtxSettings};
use weft::{Direction, GenerateOptions, Model};

use super::shard::{Given, ShardArgs};

#[derive(Subcommand)]
pub enum VideoCmd {
    /// Print where frames are missing from a video (holes in its timeline at
    /// the stream's frame rate) and its scene cuts.
    Gaps {
        /// Input video (anything FFmpeg reads).
        input: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Scene-cut threshold on weft's scene score (0..1).
        #[arg(long, default_value_t = pipeline::DEFAULT_SCENE_THRESHOLD)]
        scene_threshold: f64,
        /// No progress and no warnings.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Fill the gaps of a video (default), regenerate a range of frames, or
    /// replace duplicated (frozen) frames. Output is constant frame rate at
    /// the stream's rate; present frames are encoded from the decoded
    /// originals and audio/other streams are copied unchanged.
    #[command(after_help = "Examples:\n  weft infill in.mp4 -o out.mp4 --model models/m\n  \
        weft infill in.mkv -o out.mkv --codec ffv1 --range 120..=130\n  weft infill in.mp4 -o out.mp4 --dups")]
    Infill {
        /// Input video (not with --plan: the plan names it).
        #[arg(required_unless_present = "plan", conflicts_with = "plan")]
        input: Option<PathBuf>,
        #[command(flatten)]
        out: OutArgs,
        /// Regenerate the frames in A..B (B excluded) or A..=B: frame numbers
        /// (12) or times from the first frame (1.5s, 0:01.5).
        /// With --plan: must be the plan's (`weft plan --range`).
        #[arg(long, conflicts_with = "dups")]
        range: Option<String>,
        /// Replace frames that repeat the one before (frozen / duplicated).
        #[arg(long)]
        dups: bool,
        /// With --dups: largest mean difference (8-bit levels) still a repeat
        /// (default 0.5).
        #[arg(long, value_name = "X", requires = "dups")]
        dup_tolerance: Option<f64>,
        /// Leave gaps longer than N frames as they are (and report them).
        #[arg(long, value_name = "N", conflicts_with = "plan")]
        max_gap: Option<i64>,
        /// Never generate across a scene cut (score above X, 0..1): a gap at a
        /// cut is filled by holding the frame before it.
        #[arg(long, value_name = "X", default_value_t = pipeline::DEFAULT_SCENE_THRESHOLD, conflicts_with = "plan")]
        scene_threshold: f64,
        /// Convert to constant frame rate RATE (60, 50, 30000/1001): slots on
        /// which an original sits pass it unchanged, the others are generated
        /// at their own time; holes are filled on the way.
        #[arg(long, value_name = "RATE", conflicts_with_all = ["range", "dups", "max_gap"])]
        fps: Option<String>,
        #[command(flatten)]
        shard: ShardArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Write the video with N generated frames after it (or before it with
    /// --backward). Audio and other streams are kept as they were: the video
    /// gets longer, the audio does not (with --backward it is delayed to stay
    /// in sync with the original frames).
    Extend {
        /// Input video (not with --plan: the plan names it).
        #[arg(required_unless_present = "plan", conflicts_with = "plan")]
        input: Option<PathBuf>,
        #[command(flatten)]
        out: OutArgs,
        #[command(flatten)]
        len: Length,
        /// Add the frames before the first one instead of after the last.
        #[arg(long)]
        backward: bool,
        #[command(flatten)]
        shard: ShardArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Turn a still image into a clip whose first frame is the image.
    Animate {
        /// Input image (PNG, JPEG, ... anything FFmpeg reads; not with
        /// --plan: the plan names it).
        #[arg(required_unless_present = "plan", conflicts_with = "plan")]
        image: Option<PathBuf>,
        #[command(flatten)]
        out: OutArgs,
        #[command(flatten)]
        len: Length,
        /// Frame rate of the clip (25, 29.97, 30000/1001; default 25).
        #[arg(long, value_name = "RATE")]
        fps: Option<String>,
        #[command(flatten)]
        shard: ShardArgs,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
pub struct OutArgs {
    /// Output file; the container comes from the extension (.mp4, .mkv, ...).
    /// Not with --plan: a shard writes the segment the plan names.
    #[arg(short, long, value_name = "OUT", required_unless_present = "plan", conflicts_with = "plan")]
    output: Option<PathBuf>,
    /// Video encoder: libx264 (default for .mp4/.mkv/.mov), ffv1 (lossless,
    /// use .mkv), libx265, libvpx-vp9, or any FFmpeg encoder name.
    #[arg(long, conflicts_with = "plan")]
    codec: Option<String>,
    /// Quality for libx264/libx265/vp9 (lower is better; libx264 default 18).
    #[arg(long, conflicts_with = "plan")]
    crf: Option<u32>,
    /// Encoder preset for libx264/libx265 (default medium).
    #[arg(long, conflicts_with = "plan")]
    preset: Option<String>,
    /// Replace OUT if it exists.
    #[arg(long, conflicts_with = "plan")]
    overwrite: bool,
}

/// --frames or --seconds (one of them; with --plan, the plan's unless given).
#[derive(Args)]
pub struct Length {
    /// Number of frames (extend: frames added; animate: frames in the clip).
    #[arg(long, value_name = "N", required_unless_present_any = ["seconds", "plan"])]
    frames: Option<usize>,
    /// Length in seconds instead of frames.
    #[arg(long, value_name = "S", conflicts_with = "frames")]
    seconds: Option<f64>,
}

#[derive(Args)]
pub struct Common {
    /// Model: a weft model directory (config.json + model.safetensors), an
    /// LTX-Video diffusers snapshot (a folder with model_index.json) or an
    /// LTX-Video single-file checkpoint (.safetensors); default: the model
    /// embedded in weft.
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Sampler steps per frame window: weft transformers default to 4,
    /// LTX-Video to its recipe's (30 dev; a distilled checkpoint's fixed
    /// 8 timesteps give way to N evenly shifted ones; ignored with
    /// --timesteps).
    #[arg(long, value_name = "N")]
    steps: Option<usize>,
    /// In-between estimator of a flow-interpolator model: auto (per gap,
    /// the one that best predicts the real frames around it), flow,
    /// motion (block matching) or blend (cross-fade).
    #[arg(long, default_value = "auto", value_parser = ["auto", "flow", "motion", "blend", "fuse"])]
    estimator: String,
    /// Noise seed (same seed, same output).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress, no messages (errors still print).
    #[arg(short, long)]
    pub(super) quiet: bool,
    #[command(flatten)]
    ltx: LtxArgs,
}

/// The options of a generative LTX-Video model (`--model` a snapshot or
/// single file); an error with any other model.
#[derive(Args)]
#[command(next_help_heading = "LTX-Video (generative models)")]
pub struct LtxArgs {
    /// What the generated frames should show (default: no prompt).
    #[arg(long, value_name = "TEXT")]
    prompt: Option<String>,
    /// What they should not show (with guidance only; default: none).
    #[arg(long, value_name = "TEXT")]
    negative_prompt: Option<String>,
    /// Classifier-free guidance scale in [1, 50], 1 = off. Default: the
    /// recipe's (3.0 dev, 1.0 distilled).
    #[arg(long, value_name = "G", allow_negative_numbers = true)]
    guidance: Option<f64>,
    /// Sampling recipe: dev (guidance 3, 30 steps) or distilled (no
    /// guidance, the fixed timesteps 1000,993,987,981,975,909,725,0.03,
    /// no noise on conditioning frames). Default: distilled when the
    /// checkpoint's name says "distilled" or its metadata lists fixed
    /// inference steps, else dev.
    #[arg(long, value_enum, value_name = "RECIPE")]
    ltx_preset: Option<LtxPresetArg>,
    /// Short side of the size generated at, in pixels (32..=2048; the
    /// frames are scaled to it and back). Default 512.
    #[arg(long, value_name = "PX", allow_negative_numbers = true)]
    gen_size: Option<usize>,
    /// T5 text encoder: a folder with text_encoder/ and tokenizer/ (e.g. a
    /// diffusers snapshot) or a T5 folder itself; needed by single-file
    /// checkpoints, replaces a snapshot's own.
    #[arg(long, value_name = "DIR")]
    text_encoder: Option<PathBuf>,
    /// Compute dtype of the transformer and text encoder (the VAE runs in
    /// f32). Default f32 on the CPU, bf16 on CUDA.
    #[arg(long, value_enum, value_name = "DTYPE")]
    dtype: Option<LtxDtype>,
    /// Explicit denoising timesteps in (0, 1000], comma-separated and
    /// decreasing (a distilled checkpoint's list); replaces --steps.
    #[arg(long, value_name = "LIST")]
    timesteps: Option<String>,
    /// Blur the frames that condition the generation (not the frames
    /// written) with a 3x3 Gaussian of this sigma in (0, 10] at the
    /// generation size, as LTX-Video's official inference does (1.0).
    /// Default: none.
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true)]
    condition_blur: Option<f64>,
    /// Send the conditioning frames through libx264 at this CRF (1..=51;
    /// after --condition-blur), as the official inference does (29).
    /// Default: none.
    #[arg(long, value_name = "CRF")]
    condition_crf: Option<u32>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LtxPresetArg {
    Dev,
    Distilled,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LtxDtype {
    F32,
    Bf16,
}

impl LtxArgs {
    /// The LTX-only options given, by name.
    fn given(&self) -> Vec<&'static str> {
        let opts = [
            ("--prompt", self.prompt.is_some()),
            ("--negative-prompt", self.negative_prompt.is_some()),
            ("--guidance", self.guidance.is_some()),
            ("--ltx-preset", self.ltx_preset.is_some()),
            ("--gen-size", self.gen_size.is_some()),
            ("--text-encoder", self.text_encoder.is_some()),
            ("--dtype", self.dtype.is_some()),
            ("--timesteps", self.timesteps.is_some()),
            ("--condition-blur", self.condition_blur.is_some()),
            ("--condition-crf", self.condition_crf.is_some()),
        ];
        opts.into_iter().filter(|o| o.1).map(|o| o.0).collect()
    }

    /// An error naming the first LTX-only option given, for a model that
    /// is not LTX-Video (`which`: what it is).
    fn refuse(&self, which: &str) -> anyhow::Result<()> {
        let Some(opt) = self.given().into_iter().next() else { return Ok(()) };
        let cannot = match opt {
            "--prompt" | "--negative-prompt" => "cannot follow a prompt",
            "--guidance" => "has no prompt to guide by",
            "--ltx-preset" => "has no sampling recipe",
            "--gen-size" => "works at the clip's own size",
            "--text-encoder" => "has no use for a text encoder",
            "--dtype" => "computes in its own dtype",
            "--condition-blur" | "--condition-crf" => "takes its conditioning frames as they are",
            _ => "samples no timesteps",
        };
        anyhow::bail!("{opt} needs a generative model (LTX-Video); {which} {cannot}")
    }

    /// The settings for the LTX-Video model at `path`, each option checked
    /// on its own (the error names it), then together.
    fn settings(&self, path: &std::path::Path, steps: Option<usize>) -> anyhow::Result<LtxSettings> {
        let preset = match self.ltx_preset {
            Some(LtxPresetArg::Dev) => LtxPreset::Dev,
            Some(LtxPresetArg::Distilled) => LtxPreset::Distilled,
            None => weft::model::ltx::load::detect_preset(path),
        };
        let base = preset.settings();
        let timesteps = self.timesteps.as_deref().map(parse_timesteps).transpose()?;
        let mut s = base.clone();
        let apply: [(&str, Setter); 8] = [
            ("--prompt", &|s| s.prompt = self.prompt.clone().unwrap_or_default()),
            ("--negative-prompt", &|s| s.negative_prompt = self.negative_prompt.clone()),
            ("--guidance", &|s| s.guidance = self.guidance.unwrap_or(s.guidance)),
            ("--gen-size", &|s| s.gen_size = self.gen_size.unwrap_or(s.gen_size)),
            ("--steps", &|s| {
                if let Some(n) = steps {
                    s.steps = n;
                    s.timesteps = None;
                }
            }),
            ("--timesteps", &|s| {
                if timesteps.is_some() {
                    s.timesteps = timesteps.clone()
                }
            }),
            ("--condition-blur", &|s| s.condition_blur = self.condition_blur.unwrap_or(s.condition_blur)),
            ("--condition-crf", &|s| {
                if let Some(crf) = self.condition_crf {
                    s.condition_crf = crf;
                    s.condition_codec = Some(weft::pipeline::condition::libx264());
                }
            }),
        ];
        for (name, f) in apply {
            let mut one = base.clone();
            f(&mut one);
            one.check().map_err(|e| anyhow::anyhow!("{name}: {}", bad_options(e)))?;
            f(&mut s);
        }
        s.check().map_err(|e| anyhow::anyhow!("{}", bad_options(e)))?;
        Ok(s)
    }

    fn dtype(&self, device: &candle_core::Device) -> candle_core::DType {
        match self.dtype {
            Some(LtxDtype::F32) => candle_core::DType::F32,
            Some(LtxDtype::Bf16) => candle_core::DType::BF16,
            None if device.is_cpu() => candle_core::DType::F32,
            None => candle_core::DType::BF16,
        }
    }
}

/// Sets one option on the settings.
type Setter<'a> = &'a dyn Fn(&mut LtxSettings);

/// The message of a [`weft::WeftError::BadOptions`], without its prefix.
fn bad_options(e: weft::WeftError) -> String {
    match e {
        weft::WeftError::BadOptions(m) => m,
        e => e.to_string(),
    }
}

/// `--timesteps 1000,993,987,...`: numbers in (0, 1000], decreasing.
pub fn parse_timesteps(list: &str) -> anyhow::Result<Vec<f64>> {
    let t: Vec<f64> = list
        .split(',')
        .map(|v| {
            let v = v.trim();
            v.parse::<f64>().map_err(|_| anyhow::anyhow!("--timesteps: {v:?} is not a number (give a comma-separated list)"))
        })
        .collect::<anyhow::Result<_>>()?;
    if let Some(bad) = t.iter().find(|v| !(v.is_finite() && **v > 0.0 && **v <= 1000.0)) {
        anyhow::bail!("--timesteps: {bad} is outside (0, 1000]");
    }
    if t.windows(2).any(|w| w[1] >= w[0]) {
        anyhow::bail!("--timesteps must decrease (the first is the noisiest), got {list}");
    }
    Ok(t)
}

/// Prints LTX-Video progress (window, denoising step, ETA) at most every
/// two seconds, and at the end of each window.
fn step_printer() -> weft::tasks::Observer {
    let last = std::sync::Mutex::new(None::<std::time::Instant>);
    weft::tasks::Observer(std::sync::Arc::new(move |e: &weft::tasks::StepEvent| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if e.step < e.steps && last.is_some_and(|t| t.elapsed().as_secs_f64() < 2.0) {
            return;
        }
        *last = Some(std::time::Instant::now());
        let eta = e.eta.round() as u64;
        eprintln!(
            "weft: LTX-Video window {}/{}, step {}/{}, {:.0} s so far, ETA {}m{:02}s",
            e.window,
            e.windows,
            e.step,
            e.steps,
            e.elapsed,
            eta / 60,
            eta % 60
        );
    }))
}

impl Common {
    pub(super) fn load(&self) -> anyhow::Result<(Model, GenerateOptions, Progress)> {
        use weft::model::ltx::load::{TextStatus, is_ltx_path};
        let device = weft::model::parse_device(&self.device)?;
        let estimator = weft::tasks::EstimateRule::parse(&self.estimator).expect("clap checked the value");
        let mut opts = GenerateOptions { seed: self.seed, device: Some(device.clone()), estimator, ..Default::default() };
        let model = match self.model.as_deref() {
            Some(path) if is_ltx_path(path) => {
                opts.ltx = self.ltx.settings(path, self.steps)?;
                if let Some(te) = &self.ltx.text_encoder
                    && !te.is_dir()
                {
                    anyhow::bail!("--text-encoder {}: no such folder", te.display());
                }
                let model = Model::load_ltx(path, self.ltx.text_encoder.as_deref(), self.ltx.dtype(&device), &device)?;
                let ltx = model.ltx().expect("loaded as LTX-Video");
                if let TextStatus::Missing(why) = ltx.text.status() {
                    match self.ltx.prompt {
                        Some(_) => anyhow::bail!("--prompt needs a T5 text encoder and {} has none: {why}", path.display()),
                        None => anyhow::bail!(
                            "{} has no T5 text encoder, and LTX-Video needs one even without --prompt: {why}",
                            path.display()
                        ),
                    }
                }
                if !self.quiet {
                    opts.observer = Some(step_printer());
                }
                model
            }
            path => {
                let which = match path {
                    Some(p) => format!("the weft model in {}", p.display()),
                    None => "the embedded interpolator".into(),
                };
                self.ltx.refuse(&which)?;
                opts.steps = self.steps.unwrap_or(weft::tasks::DEFAULT_STEPS);
                if opts.steps == 0 || opts.steps > 1000 {
                    anyhow::bail!("--steps must be in 1..=1000, got {}", opts.steps);
                }
                match path {
                    Some(dir) => Model::load_on(dir, &device)?,
                    None => Model::embedded()?,
                }
            }
        };
        Ok((model, opts, Progress::new(report(self.quiet), "weft")))
    }
}

fn report(quiet: bool) -> Report {
    if quiet { Report::Quiet } else { Report::Auto }
}

impl OutArgs {
    /// OUT (clap requires it unless --plan, which every command checks first).
    fn path(&self) -> &std::path::Path {
        self.output.as_deref().expect("clap requires -o without --plan")
    }
}

fn out_opts(o: &OutArgs) -> OutputOptions {
    OutputOptions { codec: o.codec.clone(), crf: o.crf, preset: o.preset.clone(), overwrite: o.overwrite }
}

fn frames(len: &Length, rate: impl FnOnce() -> pipeline::Result<pipeline::Ratio>) -> anyhow::Result<usize> {
    match (len.frames, len.seconds) {
        (Some(0), _) => anyhow::bail!("--frames must be at least 1"),
        (Some(n), _) => Ok(n),
        (None, Some(s)) => Ok(pipeline::frames_for_seconds(s, rate()?)?),
        (None, None) => unreachable!("clap requires one without --plan"),
    }
}

pub(super) fn say_done(quiet: bool, out: &std::path::Path, s: &Summary) {
    if quiet {
        return;
    }
    let mut line = format!("weft: wrote {} ({} frames, {} generated", out.display(), s.frames_out, s.generated);
    if s.held > 0 {
        line += &format!(", {} held at scene cuts", s.held);
    }
    if s.replaced > 0 {
        line += &format!(", {} replaced", s.replaced);
    }
    if !s.left.is_empty() {
        line += &format!(", {} gap(s) left", s.left.len());
    }
    finish_wrote_line(line, &s.codec, &s.methods);
}

/// Ends a "weft: wrote ..." line with the codec and the methods that made
/// the frames, prints it and, with WEFT_LTX_PROFILE=1, where an LTX-Video
/// job's time went.
fn finish_wrote_line(mut line: String, codec: &str, methods: &weft::tasks::RunReport) {
    line += &format!(", {codec})");
    if !methods.methods.is_empty() {
        line += &format!("; made by {}", methods.describe());
    }
    eprintln!("{line}");
    let prof = weft::model::ltx::profile::report();
    if !prof.is_empty() {
        let parts: Vec<String> = prof.iter().map(|(l, s, n)| format!("{l} {s:.1} s ({n}x)")).collect();
        eprintln!("weft: profile: {}", parts.join(", "));
    }
}

pub fn run(cmd: VideoCmd) -> anyhow::Result<()> {
    match cmd {
        VideoCmd::Gaps { input, json, scene_threshold, quiet } => {
            let progress = Progress::new(report(quiet), "weft gaps");
            let r = pipeline::gaps(&input, scene_threshold, &progress)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!(
                "{}: {}x{} {}, {} fps, {} frames in {} slots ({:.2} s)",
                r.file.display(),
                r.width,
                r.height,
                r.pix_fmt,
                r.rate,
                r.frames,
                r.slots,
                r.duration
            );
            for g in &r.gaps {
                let frames = if g.count == 1 { format!("frame {}", g.start) } else { format!("frames {}..={}", g.start, g.start + g.count - 1) };
                let cut = if g.at_scene_cut { " (at a scene cut)" } else { "" };
                println!("gap: {frames} missing ({} frame{}) at {:.3} s{cut}", g.count, if g.count == 1 { "" } else { "s" }, g.time);
            }
            println!("{} gap(s), {} frame(s) missing", r.gaps.len(), r.missing);
            if r.corrupt > 0 {
                println!("corrupt data skipped in {} place(s)", r.corrupt);
            }
            if r.scene_cuts.is_empty() {
                println!("no scene cuts");
            } else {
                let cuts: Vec<String> = r.scene_cuts.iter().map(|c| format!("frame {} ({:.2} s, score {:.2})", c.frame, c.time, c.score)).collect();
                println!("scene cuts: {}", cuts.join(", "));
            }
        }
        VideoCmd::Infill { shard: ShardArgs { plan: Some(plan), shard: Some(k) }, range, dups, dup_tolerance, fps, common, .. } => {
            let given = Given { range, dups, dup_tolerance, fps, ..Default::default() };
            super::shard::run_shard("infill", &plan, k, &given, &common)?;
        }
        VideoCmd::Infill { input: Some(input), out, fps: Some(fps), scene_threshold, common, .. } => {
            let rate = pipeline::parse_fps(&fps)?;
            let shown = {
                let (mut a, mut b) = (rate.num, rate.den);
                while b != 0 {
                    (a, b) = (b, a % b);
                }
                pipeline::Ratio { num: rate.num / a, den: rate.den / a }
            };
            pipeline::check_input(&input)?;
            let (model, opts, progress) = common.load()?;
            let ro = RetimeOptions { rate, scene_threshold };
            let s = pipeline::retime(&model, &input, out.path(), &ro, &out_opts(&out), &opts, &progress)?;
            if !common.quiet {
                let mut line = format!(
                    "weft: wrote {} ({} frames at {shown} fps, {} generated, {} originals",
                    out.path().display(),
                    s.frames_out,
                    s.generated,
                    s.frames_out - s.generated - s.held
                );
                if s.held > 0 {
                    line += &format!(", {} held", s.held);
                }
                if !s.filled.is_empty() {
                    line += &format!(", {} hole(s) filled", s.filled.len());
                }
                finish_wrote_line(line, &s.codec, &s.methods);
            }
        }
        VideoCmd::Infill { input: Some(input), out, range, dups, dup_tolerance, max_gap, scene_threshold, common, fps: None, .. } => {
            let select = match (range, dups) {
                (Some(r), _) => Select::Range(r.parse::<FrameRange>()?),
                (None, true) => Select::Dups { tolerance: dup_tolerance.unwrap_or(0.5) },
                (None, false) => Select::Gaps,
            };
            pipeline::check_input(&input)?;
            let (model, opts, progress) = common.load()?;
            let io = InfillOptions { select, max_gap, scene_threshold };
            let s = pipeline::infill(&model, &input, out.path(), &io, &out_opts(&out), &opts, &progress)?;
            say_done(common.quiet, out.path(), &s);
        }
        VideoCmd::Infill { .. } => unreachable!("clap requires IN or --plan, and --shard with --plan"),
        VideoCmd::Extend { shard: ShardArgs { plan: Some(plan), shard: Some(k) }, len, backward, common, .. } => {
            let given = Given { frames: len.frames, seconds: len.seconds, backward, ..Default::default() };
            super::shard::run_shard("extend", &plan, k, &given, &common)?;
        }
        VideoCmd::Animate { shard: ShardArgs { plan: Some(plan), shard: Some(k) }, len, fps, common, .. } => {
            let given = Given { frames: len.frames, seconds: len.seconds, fps, ..Default::default() };
            super::shard::run_shard("animate", &plan, k, &given, &common)?;
        }
        VideoCmd::Extend { input: Some(input), out, len, backward, common, .. } => {
            pipeline::check_input(&input)?;
            let n = frames(&len, || pipeline::frame_rate(&input))?;
            let (model, opts, progress) = common.load()?;
            let dir = if backward { Direction::Backward } else { Direction::Forward };
            let s = pipeline::extend(&model, &input, out.path(), n, dir, &out_opts(&out), &opts, &progress)?;
            say_done(common.quiet, out.path(), &s);
        }
        VideoCmd::Animate { image: Some(image), out, len, fps, common, .. } => {
            let rate = pipeline::parse_rate(fps.as_deref().unwrap_or("25"))?;
            let n = frames(&len, || Ok(rate))?;
            pipeline::check_input(&image)?;
            let (model, opts, progress) = common.load()?;
            let s = pipeline::animate(&model, &image, out.path(), n, rate, &out_opts(&out), &opts, &progress)?;
            say_done(common.quiet, out.path(), &s);
        }
        VideoCmd::Extend { .. } | VideoCmd::Animate { .. } => unreachable!("clap requires IN or --plan, and --shard with --plan"),
    }
    Ok(())
}
