//! `weft plan`, `weft join` and `weft infill --plan P --shard K`: the
//! filling of gaps cut into shards that run on any machine, joined into the
//! file a single run writes.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use weft::pipeline::{self, Encoding, PlanOptions, Progress, Report, ShardPlan};

use super::video::{Common, say_done};

#[derive(Subcommand)]
pub enum ShardCmd {
    /// Cut the filling of gaps of videos (or folders of videos) into shards
    /// that run anywhere (`weft infill --plan PLAN --shard K`, each writing
    /// one segment), and write the plan (JSON). Cuts fall between real
    /// frames, clear of every gap, at scene cuts where one is near.
    #[command(after_help = "Example:\n  weft plan film.mkv --shards 8 -o film.plan.json --codec ffv1\n  \
        weft infill --plan film.plan.json --shard 0      # ... one per shard, on any machine\n  \
        weft join film.plan.json -o film-filled.mkv")]
    Plan {
        /// Input videos, or folders of them.
        #[arg(required = true, value_name = "IN")]
        inputs: Vec<PathBuf>,
        /// Shards wanted in all (at least one per input).
        #[arg(long, value_name = "N")]
        shards: usize,
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
        /// Scene-cut threshold (as `weft infill`).
        #[arg(long, value_name = "X", default_value_t = pipeline::DEFAULT_SCENE_THRESHOLD)]
        scene_threshold: f64,
        /// Real frames kept between every cut and the nearest gap, on each side.
        #[arg(long, value_name = "N", default_value_t = pipeline::shard::DEFAULT_MARGIN)]
        margin: i64,
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

/// `--plan PLAN --shard K` of the video commands (only `infill` runs shards).
#[derive(Args)]
#[command(next_help_heading = "Shards (weft plan)")]
pub struct ShardArgs {
    /// Run one shard of a plan made by `weft plan` (infill only): the input,
    /// frame range, gap options, encoding and segment file come from the plan.
    #[arg(long, value_name = "PLAN", requires = "shard")]
    pub plan: Option<PathBuf>,
    /// The shard to run, 0-based (with --plan).
    #[arg(long, value_name = "K", requires = "plan")]
    pub shard: Option<usize>,
}

impl ShardArgs {
    /// An error for a command that cannot run a shard exactly.
    pub fn refuse(&self, cmd: &str, why: &str) -> anyhow::Result<()> {
        if self.plan.is_some() {
            anyhow::bail!("weft {cmd} cannot run a shard ({why}); only `weft infill` (filling gaps) is sharded");
        }
        Ok(())
    }
}

/// `weft infill --plan PLAN --shard K`.
pub fn run_infill(plan_path: &Path, k: usize, common: &Common) -> anyhow::Result<()> {
    let plan = ShardPlan::load(plan_path)?;
    let shard = plan.shard(k)?;
    pipeline::check_input(&plan.inputs[shard.input].path)?;
    let (model, opts, progress) = common.load()?;
    let s = pipeline::run_shard(&model, &plan, plan_path, k, &opts, &progress)?;
    say_done(common.quiet, &plan.segment_path(plan_path, k), &s);
    Ok(())
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
            inputs, shards, output, json, codec, crf, preset, max_gap, scene_threshold, margin, overwrite, quiet,
        } => {
            if output.exists() && !overwrite {
                anyhow::bail!("{}: already exists (use --overwrite to replace it)", output.display());
            }
            let progress = Progress::new(if quiet { Report::Quiet } else { Report::Auto }, "weft plan");
            let opts = PlanOptions { shards, margin, scene_threshold, max_gap, encoding: Encoding { codec, crf, preset } };
            let plan = pipeline::make_plan(&inputs, &output, &opts, &progress)?;
            clear_segments(&output, overwrite)?;
            plan.save(&output, overwrite)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
                return Ok(());
            }
            println!("{}: {} shard(s) over {} input(s)", output.display(), plan.shards.len(), plan.inputs.len());
            for s in &plan.shards {
                let input = &plan.inputs[s.input];
                let name = input.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                println!("shard {}: {name} frames {}..{} ({} missing) -> {}", s.index, s.start, s.end, s.missing, s.segment.display());
            }
            if plan.shards.len() < shards {
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
