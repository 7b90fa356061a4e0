//! `train` and `eval`: argument parsing and I/O only; the work is in
//! `weft::train` and `weft::eval`.

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
        size: super::model::Size,
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
                    super::model::Size::Default => Config::default(),
                    super::model::Size::Tiny => Config::tiny(),
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
