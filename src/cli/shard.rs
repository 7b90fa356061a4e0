//! `weft plan`, `weft join` and `weft infill|extend|animate --plan P
//! --shard K`: a job cut into shards that run on any machine, joined into
//! the file (or files) a single run writes.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use weft::pipeline::{self, Encoding, FrameRange, PlanJob, PlanOptions, Progress, Ratio, Report, ShardPlan};

use super::video::{Common, say_done};

// Parsed once per run: the size of the `plan` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ShardCmd {
    /// Cut a job over videos (or folders of videos) into shards that run
    /// anywhere (`weft infill --plan PLAN --shard K`, each writing one
    /// segment), and write the plan (JSON). An infill job (filling gaps,
    /// --range, --dups or --fps) is cut between real frames, clear of every
    /// gap and regenerated frame, at scene cuts where one is near; an extend
    /// or animate job has one shard per input file.
    #[command(after_help = "Examples:\n  weft plan film.mkv --shards 8 -o film.plan.json --codec ffv1\n  \
        weft infill --plan film.plan.json --shard 0      # ... one per shard, on any machine\n  \
        weft join film.plan.json -o film-filled.mkv\n  \
        weft plan film.mkv --shards 8 --fps 50 -o film50.plan.json --codec ffv1\n  \
        weft plan clips/ --job extend --frames 25 -o ext.plan.json   # then weft extend --plan ext.plan.json --shard K")]
    Plan {
        /// Input videos (images for --job animate), or folders of them.
        #[arg(required = true, value_name = "IN")]
        inputs: Vec<PathBuf>,
        /// Shards wanted in all (at least one per input); not for extend or
        /// animate, which have one shard per input file.
        #[arg(long, value_name = "N")]
        shards: Option<usize>,
        /// The command whose job is planned (its shards run as `weft JOB --plan PLAN --shard K`).
        #[arg(long, value_enum, default_value = "infill")]
        job: JobArg,
        /// infill: regenerate the frames in A..B or A..=B (as `weft infill --range`).
        #[arg(long, value_name = "A..B", conflicts_with = "dups")]
        range: Option<String>,
        /// infill: replace frames that repeat the one before (as `weft infill --dups`).
        #[arg(long)]
        dups: bool,
        /// infill --dups: largest mean difference still a repeat (default 0.5).
        #[arg(long, value_name = "X", requires = "dups")]
        dup_tolerance: Option<f64>,
        /// infill: convert to constant frame rate RATE (as `weft infill
        /// --fps`); animate: the clip's frame rate (default 25).
        #[arg(long, value_name = "RATE", conflicts_with_all = ["range", "dups"])]
        fps: Option<String>,
        /// extend, animate: frames added (extend) or in the clip (animate).
        #[arg(long, value_name = "N")]
        frames: Option<usize>,
        /// extend, animate: length in seconds instead of frames.
        #[arg(long, value_name = "S", conflicts_with = "frames")]
        seconds: Option<f64>,
        /// extend: add the frames before the first one.
        #[arg(long)]
        backward: bool,
        /// The plan file; segments go in the folder PLAN.segments next to it.
        #[arg(short, long, value_name = "PLAN")]
        output: PathBuf,
        /// Print the plan (JSON) instead of a summary.
        #[arg(long)]
        json: bool,
        /// Video encoder of the segments (as `weft infill --codec`; ffv1 for lossless).
        #[arg(long)]
        codec: Option<String>,
        #[arg(long)]
        crf: Option<u32>,
        #[arg(long)]
        preset: Option<String>,
        /// Leave gaps longer than N frames as they are.
        #[arg(long, value_name = "N")]
        max_gap: Option<i64>,
        /// infill: scene-cut threshold (as `weft infill`; default 0.25).
        #[arg(long, value_name = "X")]
        scene_threshold: Option<f64>,
        /// infill: real frames kept between every cut and the nearest gap, on
        /// each side (default 10).
        #[arg(long, value_name = "N")]
        margin: Option<i64>,
        /// Replace PLAN (and remove the segments of the plan it replaces).
        #[arg(long)]
        overwrite: bool,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Join the segments of a plan into OUT without re-encoding; audio and
    /// other streams are copied from the input once. A plan of several inputs
    /// is joined into the folder OUT, one file per input.
    Join {
        plan: PathBuf,
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Replace existing output files.
        #[arg(long)]
        overwrite: bool,
        #[arg(short, long)]
        quiet: bool,
    },
}

/// `weft plan --job`.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum JobArg {
    Infill,
    Extend,
    Animate,
}

/// `--plan PLAN --shard K` of the video commands.
#[derive(Args)]
#[command(next_help_heading = "Shards (weft plan)")]
pub struct ShardArgs {
    /// Run one shard of a plan made by `weft plan` (with the command the plan
    /// was made for): the input, frame range, job options, encoding and
    /// segment file come from the plan; job options given as well must match it.
    #[arg(long, value_name = "PLAN", requires = "shard")]
    pub plan: Option<PathBuf>,
    /// The shard to run, 0-based (with --plan).
    #[arg(long, value_name = "K", requires = "plan")]
    pub shard: Option<usize>,
}

/// The job options a shard's command line gave (each must match the plan's;
/// one left out is the plan's).
#[derive(Default)]
pub struct Given {
    pub range: Option<String>,
    pub dups: bool,
    pub dup_tolerance: Option<f64>,
    pub fps: Option<String>,
    pub frames: Option<usize>,
    pub seconds: Option<f64>,
    pub backward: bool,
}

fn same_rate(a: Ratio, b: Ratio) -> bool {
    a.num as i128 * b.den as i128 == b.num as i128 * a.den as i128
}

/// Refuses a shard command line that is not the plan's job: another
/// command, or a job option with another value (the error names it).
fn check_given(plan: &ShardPlan, plan_path: &Path, k: usize, cmd: &str, g: &Given) -> anyhow::Result<()> {
    let job = &plan.job;
    if job.command() != cmd {
        anyhow::bail!(
            "{}: the plan's job is `{}`: run its shards with `weft {} --plan {} --shard {k}`",
            plan_path.display(),
            job.describe(),
            job.command(),
            plan_path.display()
        );
    }
    let differs = |opt: String| -> anyhow::Result<()> {
        anyhow::bail!("{opt} differs from the plan's job (`{}` in {}): make a plan with it", job.describe(), plan_path.display())
    };
    let shard = plan.shard(k)?;
    let input = &plan.inputs[shard.input];
    if let Some(r) = &g.range {
        // The same frames (20..26 is 20..=25), at the input's frame rate.
        let want = r.parse::<FrameRange>()?;
        let same = match (job, input.grid) {
            (PlanJob::Range { range }, Some(grid)) => {
                let planned = range.parse::<FrameRange>()?;
                want.positions(grid.rate)? == planned.positions(grid.rate)?
            }
            _ => false,
        };
        if !same {
            differs(format!("--range {r}"))?;
        }
    }
    if g.dups && !matches!(job, PlanJob::Dups { .. }) {
        differs("--dups".into())?;
    }
    if let Some(t) = g.dup_tolerance {
        match job {
            PlanJob::Dups { tolerance } if *tolerance == t => {}
            _ => differs(format!("--dup-tolerance {t}"))?,
        }
    }
    if let Some(f) = &g.fps {
        let (rate, planned) = match job {
            PlanJob::Animate { fps, .. } => (pipeline::parse_rate(f)?, Some(*fps)),
            PlanJob::Fps { rate } => (pipeline::parse_fps(f)?, Some(*rate)),
            _ => (pipeline::parse_fps(f)?, None),
        };
        if !planned.is_some_and(|p| same_rate(p, rate)) {
            differs(format!("--fps {f}"))?;
        }
    }
    if let Some(n) = g.frames
        && shard.frames != Some(n)
    {
        differs(format!("--frames {n}"))?;
    }
    if let Some(s) = g.seconds {
        let rate = match job {
            PlanJob::Animate { fps, .. } => *fps,
            _ => pipeline::frame_rate(&input.path)?,
        };
        if shard.frames != Some(pipeline::frames_for_seconds(s, rate)?) {
            differs(format!("--seconds {s}"))?;
        }
    }
    if g.backward && !matches!(job, PlanJob::Extend { backward: true, .. }) {
        differs("--backward".into())?;
    }
    Ok(())
}

/// `weft CMD --plan PLAN --shard K` (CMD: infill, extend or animate).
pub fn run_shard(cmd: &str, plan_path: &Path, k: usize, given: &Given, common: &Common) -> anyhow::Result<()> {
    let plan = ShardPlan::load(plan_path)?;
    let shard = plan.shard(k)?;
    pipeline::check_input(&plan.inputs[shard.input].path)?;
    check_given(&plan, plan_path, k, cmd, given)?;
    let (model, opts, progress) = common.load()?;
    let s = pipeline::run_shard(&model, &plan, plan_path, k, &opts, &progress)?;
    say_done(common.quiet, &plan.segment_path(plan_path, k), &s);
    Ok(())
}

/// The job `weft plan` is asked for, from its options (each checked
/// against the job it belongs to).
#[allow(clippy::too_many_arguments)]
fn plan_job(
    job: JobArg,
    range: Option<String>,
    dups: bool,
    dup_tolerance: Option<f64>,
    fps: Option<String>,
    frames: Option<usize>,
    seconds: Option<f64>,
    backward: bool,
    max_gap: Option<i64>,
) -> anyhow::Result<PlanJob> {
    let name = match job {
        JobArg::Infill => "infill",
        JobArg::Extend => "extend",
        JobArg::Animate => "animate",
    };
    let not_for = |opt: &str, for_: &str| anyhow::anyhow!("{opt} is for --job {for_}, not --job {name}");
    if job != JobArg::Infill {
        if range.is_some() {
            return Err(not_for("--range", "infill"));
        }
        if dups {
            return Err(not_for("--dups", "infill"));
        }
        if max_gap.is_some() {
            return Err(not_for("--max-gap", "infill"));
        }
        if frames.is_none() && seconds.is_none() {
            anyhow::bail!("--job {name} needs --frames N or --seconds S");
        }
    }
    Ok(match job {
        JobArg::Infill => {
            if frames.is_some() {
                return Err(not_for("--frames", "extend or animate"));
            }
            if seconds.is_some() {
                return Err(not_for("--seconds", "extend or animate"));
            }
            if backward {
                return Err(not_for("--backward", "extend"));
            }
            match (range, dups, fps) {
                (Some(range), _, _) => PlanJob::Range { range },
                (None, true, _) => PlanJob::Dups { tolerance: dup_tolerance.unwrap_or(0.5) },
                (None, false, Some(f)) => {
                    if max_gap.is_some() {
                        anyhow::bail!("--max-gap cannot be used with --fps (as with `weft infill --fps`)");
                    }
                    PlanJob::Fps { rate: pipeline::parse_fps(&f)?.reduced() }
                }
                (None, false, None) => PlanJob::Gaps,
            }
        }
        JobArg::Extend => {
            if fps.is_some() {
                return Err(not_for("--fps", "infill or animate"));
            }
            PlanJob::Extend { frames, seconds, backward }
        }
        JobArg::Animate => {
            if backward {
                return Err(not_for("--backward", "extend"));
            }
            let fps = pipeline::parse_rate(fps.as_deref().unwrap_or("25"))?.reduced();
            PlanJob::Animate { frames, seconds, fps }
        }
    })
}

/// Removes the segments of the plan at `plan_path` (before it is replaced).
fn clear_segments(plan_path: &Path, overwrite: bool) -> anyhow::Result<()> {
    let name = plan_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = plan_path.with_file_name(format!("{name}.segments"));
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    let files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    if files.is_empty() {
        return Ok(());
    }
    if !overwrite {
        anyhow::bail!("{}: holds the segments of an earlier plan (use --overwrite to replace the plan and remove them)", dir.display());
    }
    for f in files {
        let n = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if (n.starts_with("shard-") && n.ends_with(".mkv")) || (n.starts_with(".shard-") && n.ends_with(".part")) {
            std::fs::remove_file(&f).map_err(|e| anyhow::anyhow!("{}: cannot remove: {e}", f.display()))?;
        }
    }
    Ok(())
}

pub fn run(cmd: ShardCmd) -> anyhow::Result<()> {
    match cmd {
        ShardCmd::Plan {
            inputs,
            shards,
            job,
            range,
            dups,
            dup_tolerance,
            fps,
            frames,
            seconds,
            backward,
            output,
            json,
            codec,
            crf,
            preset,
            max_gap,
            scene_threshold,
            margin,
            overwrite,
            quiet,
        } => {
            if output.exists() && !overwrite {
                anyhow::bail!("{}: already exists (use --overwrite to replace it)", output.display());
            }
            let job = plan_job(job, range, dups, dup_tolerance, fps, frames, seconds, backward, max_gap)?;
            if job.per_file() {
                let cut = [("--scene-threshold", scene_threshold.is_some()), ("--margin", margin.is_some())];
                if let Some((flag, _)) = cut.iter().find(|(_, given)| *given) {
                    anyhow::bail!("{flag}: `weft {}` plans have one shard per input file and cut nothing", job.command());
                }
            }
            let scene_threshold = scene_threshold.unwrap_or(pipeline::DEFAULT_SCENE_THRESHOLD);
            let margin = margin.unwrap_or(pipeline::shard::DEFAULT_MARGIN);
            let shards = match (shards, job.per_file()) {
                (Some(_), true) => anyhow::bail!("--shards: `weft {}` plans have one shard per input file", job.command()),
                (None, true) => 1,
                (Some(n), false) => n,
                (None, false) => anyhow::bail!("--shards N is needed (the shards wanted in all)"),
            };
            let progress = Progress::new(if quiet { Report::Quiet } else { Report::Auto }, "weft plan");
            let opts = PlanOptions { shards, margin, scene_threshold, max_gap, encoding: Encoding { codec, crf, preset }, job };
            let plan = pipeline::make_plan(&inputs, &output, &opts, &progress)?;
            clear_segments(&output, overwrite)?;
            plan.save(&output, overwrite)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
                return Ok(());
            }
            println!(
                "{}: {} shard(s) over {} input(s), job `{}`",
                output.display(),
                plan.shards.len(),
                plan.inputs.len(),
                plan.job.describe()
            );
            for s in &plan.shards {
                let input = &plan.inputs[s.input];
                let name = input.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                match s.frames {
                    Some(n) => println!("shard {}: {name}, the whole file ({n} frames to make) -> {}", s.index, s.segment.display()),
                    None => println!(
                        "shard {}: {name} frames {}..{} ({} to generate) -> {}",
                        s.index,
                        s.start,
                        s.end,
                        s.missing,
                        s.segment.display()
                    ),
                }
            }
            if !plan.job.per_file() && plan.shards.len() < shards {
                println!("({shards} asked for: the inputs have no more places to cut clear of their gaps)");
            }
        }
        ShardCmd::Join { plan: plan_path, output, overwrite, quiet } => {
            let plan = ShardPlan::load(&plan_path)?;
            let progress = Progress::new(if quiet { Report::Quiet } else { Report::Auto }, "weft join");
            let written = pipeline::join(&plan, &plan_path, &output, overwrite, &progress)?;
            if !quiet {
                for (path, frames) in written {
                    eprintln!("weft: wrote {} ({frames} frames joined from the segments, no re-encoding)", path.display());
                }
            }
        }
    }
    Ok(())
}
