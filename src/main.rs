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
}

#[derive(Clone, Copy, ValueEnum)]
enum Size {
    /// The default architecture (~4.2 M parameters).
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
    /// Load a model (DIR, or the embedded one) and print its config and size.
    Info { dir: Option<PathBuf> },
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
            println!("wrote untrained model ({} parameters) to {}", model.num_parameters(), dir.display());
        }
        Command::Model(ModelCmd::Info { dir }) => {
            let model = match dir {
                Some(d) => Model::load(d)?,
                None => Model::embedded()?,
            };
            println!("{}", serde_json::to_string_pretty(model.config())?);
            println!("parameters: {}", model.num_parameters());
        }
        #[cfg(feature = "ffmpeg")]
        Command::Video(cmd) => video::run(cmd)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The video commands (`gaps`, `infill`, `extend`, `animate`): argument
/// parsing only; the work is in `weft::pipeline`.
#[cfg(feature = "ffmpeg")]
mod video {
    use std::path::PathBuf;

    use clap::{Args, Subcommand};
    use weft::pipeline::{self, FrameRange, InfillOptions, OutputOptions, Progress, Report, Select, Summary};
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
        /// Model directory (config.json + model.safetensors); default: the
        /// model embedded in weft.
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// Sampler steps per frame window.
        #[arg(long, default_value_t = 12)]
        steps: usize,
        /// Noise seed (same seed, same output).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Device: cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// No progress, no messages (errors still print).
        #[arg(short, long)]
        quiet: bool,
    }

    impl Common {
        fn load(&self) -> anyhow::Result<(Model, GenerateOptions, Progress)> {
            let device = weft::model::parse_device(&self.device)?;
            let model = match &self.model {
                Some(dir) => Model::load_on(dir, &device)?,
                None => Model::embedded()?,
            };
            let opts = GenerateOptions { steps: self.steps, seed: self.seed, device: Some(device), ..Default::default() };
            if opts.steps == 0 || opts.steps > 1000 {
                anyhow::bail!("--steps must be in 1..=1000, got {}", opts.steps);
            }
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
            VideoCmd::Infill { input, out, range, dups, dup_tolerance, max_gap, scene_threshold, common } => {
                let select = match (range, dups) {
                    (Some(r), _) => Select::Range(r.parse::<FrameRange>()?),
                    (None, true) => Select::Dups { tolerance: dup_tolerance },
                    (None, false) => Select::Gaps,
                };
                let (model, opts, progress) = common.load()?;
                let io = InfillOptions { select, max_gap, scene_threshold };
                let s = pipeline::infill(&model, &input, &out.output, &io, &out_opts(&out), &opts, &progress)?;
                say_done(common.quiet, &out.output, &s);
            }
            VideoCmd::Extend { input, out, len, backward, common } => {
                let n = frames(&len, || pipeline::frame_rate(&input))?;
                let (model, opts, progress) = common.load()?;
                let dir = if backward { Direction::Backward } else { Direction::Forward };
                let s = pipeline::extend(&model, &input, &out.output, n, dir, &out_opts(&out), &opts, &progress)?;
                say_done(common.quiet, &out.output, &s);
            }
            VideoCmd::Animate { image, out, len, fps, common } => {
                let rate = pipeline::parse_rate(&fps)?;
                let n = frames(&len, || Ok(rate))?;
                let (model, opts, progress) = common.load()?;
                let s = pipeline::animate(&model, &image, &out.output, n, rate, &out_opts(&out), &opts, &progress)?;
                say_done(common.quiet, &out.output, &s);
            }
        }
        Ok(())
    }
}
