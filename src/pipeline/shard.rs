//! Cutting jobs into shards that run on any machine, in any order.
//!
//! A plan (`weft plan`, JSON) records the job (which frames are generated:
//! [`PlanJob`]), its input files and, for each, the holes in its timeline,
//! the present frames the job regenerates (`--range`, `--dups`) and the
//! points where it is cut. A cut falls between two real frames with at
//! least `margin` real frames on each side before the nearest hole or
//! regenerated frame (at a scene cut where one is near), so no model window
//! crosses it: every generated frame depends only on the real frames around
//! its own run, and its noise seed on its position. A shard is a run of
//! frame positions of one input; running it (`weft infill --plan P --shard
//! K`) encodes exactly the output frames of those positions into its own
//! segment file (a fresh encode, so it starts on a keyframe), written under
//! a temporary name and renamed: a retried shard rewrites the same file.
//! `join` puts the segments back together without re-encoding.
//!
//! `extend` and `animate` plans have one shard per input file (an
//! extension continues from its clip's end, an animation from its one
//! still: there is nothing to cut). Such a shard writes the whole output
//! for its file (audio included) as its segment, and `join` remuxes it to
//! the output name.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::timeline::{FrameRange, Grid, Ratio};
use super::{Error, InfillOptions, OutputOptions, Progress, Result, Select, Summary, input_err};
use crate::model::Model;
use crate::tasks::GenerateOptions;

/// The plan format this weft writes. Version 1 plans (filling gaps, no
/// `job`) are read too; a weft that reads only version 1 refuses version 2
/// rather than run a `--range` plan as a filling of gaps.
pub const PLAN_VERSION: u32 = 2;

/// Real frames kept between a cut and the nearest hole, on each side: the
/// most context frames the embedded interpolator's estimator choice reads,
/// plus one.
pub const DEFAULT_MARGIN: i64 = crate::tasks::MAX_VALIDATION_CONTEXT as i64 + 1;

/// Container of the segments (lossless FFV1 and every other encoder fit).
const SEGMENT_EXT: &str = "mkv";

/// How the segments are encoded: fixed by the plan, so that every shard,
/// wherever it runs, encodes alike.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Encoding {
    pub codec: Option<String>,
    pub crf: Option<u32>,
    pub preset: Option<String>,
}

/// A run of missing frame positions.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub count: i64,
}

/// What the shards of a plan do: the job options that decide which frames
/// are generated, fixed by the plan so that every shard plans alike.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PlanJob {
    /// `weft infill`: fill every hole.
    #[default]
    Gaps,
    /// `weft infill --range A..B`: regenerate the frames in the range (and
    /// fill the holes that touch it; other holes are left).
    Range { range: String },
    /// `weft infill --dups --dup-tolerance X`: replace repeated frames (and
    /// fill the holes next to them; other holes are left).
    Dups { tolerance: f64 },
    /// `weft infill --fps RATE`: convert to constant frame rate RATE.
    Fps { rate: Ratio },
    /// `weft extend`: one shard per file, each adding `frames` (or
    /// `seconds` at the file's rate) after it, or before it.
    Extend { frames: Option<usize>, seconds: Option<f64>, backward: bool },
    /// `weft animate`: one shard per still, each a clip at `fps`.
    Animate { frames: Option<usize>, seconds: Option<f64>, fps: Ratio },
}

impl PlanJob {
    /// Whether each input file is one shard (nothing is cut).
    pub fn per_file(&self) -> bool {
        matches!(self, PlanJob::Extend { .. } | PlanJob::Animate { .. })
    }

    /// The weft command that runs a shard of this job.
    pub fn command(&self) -> &'static str {
        match self {
            PlanJob::Extend { .. } => "extend",
            PlanJob::Animate { .. } => "animate",
            _ => "infill",
        }
    }

    /// The job as the options of its command (for messages).
    pub fn describe(&self) -> String {
        let len = |frames: &Option<usize>, seconds: &Option<f64>| match (frames, seconds) {
            (Some(n), _) => format!("--frames {n}"),
            (None, Some(s)) => format!("--seconds {s}"),
            (None, None) => "no length".into(),
        };
        match self {
            PlanJob::Gaps => "weft infill (filling gaps: no --range, --dups or --fps)".into(),
            PlanJob::Range { range } => format!("weft infill --range {range}"),
            PlanJob::Dups { tolerance } => format!("weft infill --dups --dup-tolerance {tolerance}"),
            PlanJob::Fps { rate } => format!("weft infill --fps {rate}"),
            PlanJob::Extend { frames, seconds, backward } => {
                format!("weft extend {}{}", len(frames, seconds), if *backward { " --backward" } else { "" })
            }
            PlanJob::Animate { frames, seconds, fps } => format!("weft animate {} --fps {fps}", len(frames, seconds)),
        }
    }

    /// The frames `infill` selects, for the jobs `infill` runs alone.
    fn select(&self) -> Result<Option<Select>> {
        Ok(match self {
            PlanJob::Gaps => Some(Select::Gaps),
            PlanJob::Range { range } => Some(Select::Range(range.parse::<FrameRange>()?)),
            PlanJob::Dups { tolerance } => Some(Select::Dups { tolerance: *tolerance }),
            _ => None,
        })
    }

    /// Checks the options on their own (before any input is read).
    fn check(&self) -> Result<()> {
        match self {
            PlanJob::Gaps | PlanJob::Range { .. } => {
                self.select()?;
            }
            PlanJob::Dups { tolerance } => {
                if !(0.0..=255.0).contains(tolerance) {
                    return Err(args(format!("duplicate tolerance must be in 0..=255, got {tolerance}")));
                }
            }
            PlanJob::Fps { rate } => {
                if rate.den <= 0 || rate.num <= 0 || rate.as_f64() > 1000.0 {
                    return Err(args(format!("--fps must be in (0, 1000], got {rate}")));
                }
            }
            PlanJob::Extend { frames, seconds, .. } | PlanJob::Animate { frames, seconds, .. } => {
                let cmd = self.command();
                match (frames, seconds) {
                    (Some(0), _) => return Err(args("--frames must be at least 1")),
                    (Some(_), Some(_)) => return Err(args("give --frames or --seconds, not both")),
                    (None, None) => return Err(args(format!("a {cmd} plan needs --frames N or --seconds S"))),
                    (None, Some(s)) if !(s.is_finite() && *s > 0.0) => {
                        return Err(args(format!("--seconds must be positive, got {s}")));
                    }
                    _ => {}
                }
                if let PlanJob::Animate { fps, .. } = self
                    && (fps.num <= 0 || fps.den <= 0 || fps.as_f64() > 1000.0)
                {
                    return Err(args(format!("frame rate must be in (0, 1000], got {fps}")));
                }
            }
        }
        Ok(())
    }
}

/// One input file of a plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanInput {
    /// Absolute path.
    pub path: PathBuf,
    /// Its size when planned: a shard refuses a file that changed since.
    pub bytes: u64,
    /// Its frame grid (first frame's timestamp, time base, frame rate);
    /// none for the inputs of a per-file plan (extend, animate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<Grid>,
    /// Frames decoded, and slots from the first frame to the last (0 in a
    /// per-file plan: its inputs are not read ahead).
    #[serde(default)]
    pub frames: u64,
    #[serde(default)]
    pub slots: i64,
    #[serde(default)]
    pub gaps: Vec<Span>,
    /// Present frames the job regenerates (`--range`, `--dups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<Span>,
    #[serde(default)]
    pub scene_cuts: Vec<i64>,
    /// The joined file's name when a plan of several inputs is joined into a folder.
    pub name: String,
}

/// One unit of work: frame positions `start..end` of input `input` (with
/// `--fps`, the output frames from the time of `start` to that of `end`);
/// in a per-file plan (`frames` set) the whole file, `start` and `end` 0.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub input: usize,
    pub start: i64,
    pub end: i64,
    /// Missing and regenerated frames inside (the frames it generates,
    /// unless `max_gap` or the selection leaves some holes).
    pub missing: i64,
    /// A per-file shard's frames to make: added by `extend`, the clip's
    /// length for `animate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<usize>,
    /// Its segment file, relative to the plan file's folder.
    pub segment: PathBuf,
}

/// A sharded job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardPlan {
    pub version: u32,
    /// What the shards do (version 1 plans: filling gaps).
    #[serde(default)]
    pub job: PlanJob,
    pub margin: i64,
    pub scene_threshold: f64,
    pub max_gap: Option<i64>,
    pub encoding: Encoding,
    pub inputs: Vec<PlanInput>,
    pub shards: Vec<Shard>,
}

/// What `make_plan` is asked for.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Shards wanted in all (at least one per input; fewer when a file has
    /// too few places to cut). Per-file jobs have one shard per input.
    pub shards: usize,
    pub margin: i64,
    pub scene_threshold: f64,
    pub max_gap: Option<i64>,
    pub encoding: Encoding,
    pub job: PlanJob,
}

fn args(msg: impl Into<String>) -> Error {
    Error::Args(msg.into())
}

/// The input files: files as given, folders replaced by the files in them
/// (sorted by name, hidden ones skipped), all made absolute.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        let abs = std::fs::canonicalize(p).map_err(|e| input_err(p, format!("cannot read: {e}")))?;
        if abs.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&abs)
                .map_err(|e| input_err(p, format!("cannot list: {e}")))?
                .filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .filter(|f| f.is_file())
                .collect();
            if files.is_empty() {
                return Err(input_err(p, "is a folder with no files in it"));
            }
            files.sort();
            out.extend(files);
        } else {
            out.push(abs);
        }
    }
    if out.is_empty() {
        return Err(args("no input files"));
    }
    Ok(out)
}

/// Splits `total` shards over inputs of `slots` frames each: at least one
/// each, otherwise in proportion to length (largest remainders).
fn share(total: usize, slots: &[i64]) -> Vec<usize> {
    let n = slots.len();
    let total = total.max(n);
    let sum: i64 = slots.iter().map(|s| (*s).max(1)).sum();
    // Largest remainder over the whole total, at least one shard per input.
    let exact: Vec<f64> = slots.iter().map(|s| total as f64 * (*s).max(1) as f64 / sum as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| (e.floor() as usize).max(1)).collect();
    let mut used: usize = counts.iter().sum();
    while used > total {
        // Raised to one elsewhere: take back from the most over-served input.
        let i = (0..n)
            .filter(|&i| counts[i] > 1)
            .max_by(|&a, &b| (counts[a] as f64 - exact[a]).total_cmp(&(counts[b] as f64 - exact[b])).then(b.cmp(&a)))
            .expect("total >= inputs, so some input has more than one");
        counts[i] -= 1;
        used -= 1;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| (exact[b] - counts[b] as f64).total_cmp(&(exact[a] - counts[a] as f64)).then(a.cmp(&b)));
    for i in order.into_iter().cycle().take(total - used) {
        counts[i] += 1;
    }
    counts
}

/// Where to cut a file of `slots` frame positions into `n` shards: cuts `c`
/// with no missing frame in `c - margin .. c + margin`, each the scene cut
/// nearest its even share point when one lies within a quarter shard, else
/// the allowed cut nearest it. Fewer cuts when there are not enough places.
pub fn cut_points(slots: i64, gaps: &[Span], scene_cuts: &[i64], n: usize, margin: i64) -> Vec<i64> {
    if n <= 1 || slots < 2 {
        return Vec::new();
    }
    let margin = margin.max(1);
    // allowed[c]: cutting before frame c keeps `margin` real frames on each side.
    let mut allowed = vec![true; slots as usize + 1];
    allowed[0] = false;
    allowed[slots as usize] = false;
    for g in gaps {
        let lo = (g.start - margin + 1).max(0);
        let hi = (g.start + g.count + margin - 1).min(slots);
        for c in lo..=hi {
            allowed[c as usize] = false;
        }
    }
    let ok = |c: i64| c > 0 && c < slots && allowed[c as usize];
    let step = slots as f64 / n as f64;
    let mut cuts: Vec<i64> = Vec::new();
    for i in 1..n {
        let ideal = (i as f64 * step).round() as i64;
        let floor = cuts.last().copied().unwrap_or(0);
        let near = |c: i64| c > floor && ok(c);
        let reach = (step / 4.0).round() as i64;
        let scene = scene_cuts.iter().copied().filter(|&c| near(c) && (c - ideal).abs() <= reach).min_by_key(|&c| (c - ideal).abs());
        let pick = scene.or_else(|| {
            (0..slots).flat_map(|d| [ideal - d, ideal + d]).find(|&c| near(c))
        });
        if let Some(c) = pick
            && c < slots
        {
            cuts.push(c);
        }
    }
    cuts
}

/// Merges runs of positions (gaps and regenerated frames) into sorted,
/// disjoint, non-adjacent runs.
fn merge_spans(spans: impl IntoIterator<Item = Span>) -> Vec<Span> {
    let mut v: Vec<Span> = spans.into_iter().filter(|s| s.count > 0).collect();
    v.sort_by_key(|s| s.start);
    let mut out: Vec<Span> = Vec::new();
    for s in v {
        match out.last_mut() {
            Some(l) if s.start <= l.start + l.count => l.count = l.count.max(s.start + s.count - l.start),
            _ => out.push(s),
        }
    }
    out
}

/// Runs of consecutive positions.
fn runs(positions: impl IntoIterator<Item = i64>) -> Vec<Span> {
    merge_spans(positions.into_iter().map(|p| Span { start: p, count: 1 }))
}

/// The present frames `job` regenerates in a clip of `slots` positions with
/// holes `gaps` (`dups`: the repeated frames the scan found).
fn replaced_frames(job: &PlanJob, path: &Path, grid: Grid, slots: i64, gaps: &[Span], dups: &[i64]) -> Result<Vec<Span>> {
    match job {
        PlanJob::Range { range } => {
            let (a, b) = range.parse::<FrameRange>()?.positions(grid.rate)?;
            let last = slots - 1;
            if b <= 0 || a > last {
                return Err(input_err(
                    path,
                    format!(
                        "--range selects frames {a}..{} but the clip has frames 0..={last}, {:.2} s to {:.2} s: nothing to regenerate",
                        b - 1,
                        grid.seconds(0),
                        grid.seconds(last)
                    ),
                ));
            }
            let missing = |p: i64| gaps.iter().any(|g| g.start <= p && p < g.start + g.count);
            Ok(runs((a.max(0)..b.min(slots)).filter(|&p| !missing(p))))
        }
        PlanJob::Dups { .. } => Ok(runs(dups.iter().copied())),
        _ => Ok(Vec::new()),
    }
}

/// Reads every input's timeline and cuts the job into shards (per-file
/// jobs: one shard per input). `plan_path`: where the plan will be saved
/// (segments go in `PLAN.segments/`).
pub fn make_plan(inputs: &[PathBuf], plan_path: &Path, opts: &PlanOptions, progress: &Progress) -> Result<ShardPlan> {
    opts.job.check()?;
    if opts.shards == 0 {
        return Err(args("--shards must be at least 1"));
    }
    if opts.margin < 1 {
        return Err(args(format!("--margin must be at least 1, got {}", opts.margin)));
    }
    if opts.max_gap.is_some_and(|m| m < 1) {
        return Err(args("--max-gap must be at least 1"));
    }
    super::check_threshold(opts.scene_threshold)?;
    let files = expand_inputs(inputs)?;
    let mut plan_inputs: Vec<PlanInput> = Vec::new();
    let mut lengths = Vec::new();
    for f in &files {
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let name = format!("{stem}.{SEGMENT_EXT}");
        if let Some(other) = plan_inputs.iter().find(|i| i.name == name) {
            return Err(args(format!(
                "{} and {} would both join to {name}: rename one",
                other.path.display(),
                f.display()
            )));
        }
        let mut input = PlanInput {
            path: f.clone(),
            bytes: 0,
            grid: None,
            frames: 0,
            slots: 0,
            gaps: Vec::new(),
            replaced: Vec::new(),
            scene_cuts: Vec::new(),
            name,
        };
        match &opts.job {
            PlanJob::Extend { frames, seconds, .. } => {
                let rate = super::frame_rate(f)?;
                let n = match (frames, seconds) {
                    (Some(n), _) => *n,
                    (None, s) => super::frames_for_seconds(s.expect("checked"), rate)?,
                };
                super::check_new_frames(n, "extending by", rate)?;
                lengths.push(Some(n));
            }
            PlanJob::Animate { frames, seconds, fps } => {
                super::check_input(f)?;
                let n = match (frames, seconds) {
                    (Some(n), _) => *n,
                    (None, s) => super::frames_for_seconds(s.expect("checked"), *fps)?,
                };
                super::check_new_frames(n, "animating", *fps)?;
                lengths.push(Some(n));
            }
            job => {
                let dups = match job {
                    PlanJob::Dups { tolerance } => Some(*tolerance),
                    _ => None,
                };
                let (r, grid, dup_frames) = super::scan(f, opts.scene_threshold, dups, progress)?;
                if let PlanJob::Fps { rate } = job {
                    super::retime::check_rates(grid.rate, *rate)?;
                }
                input.gaps = r.gaps.iter().map(|g| Span { start: g.start, count: g.count }).collect();
                input.replaced = replaced_frames(job, f, grid, r.slots, &input.gaps, &dup_frames)?;
                input.grid = Some(grid);
                input.frames = r.frames;
                input.slots = r.slots;
                input.scene_cuts = r.scene_cuts.iter().map(|c| c.frame).collect();
                lengths.push(None);
            }
        }
        input.bytes = std::fs::metadata(f).map_err(|e| input_err(f, format!("cannot read: {e}")))?.len();
        plan_inputs.push(input);
    }
    let seg_dir = segments_dir_name(plan_path);
    let segment = |index: usize| seg_dir.join(format!("shard-{index:05}.{SEGMENT_EXT}"));
    let mut shards = Vec::new();
    if opts.job.per_file() {
        for (i, n) in lengths.into_iter().enumerate() {
            shards.push(Shard { index: i, input: i, start: 0, end: 0, missing: 0, frames: n, segment: segment(i) });
        }
    } else {
        let counts = share(opts.shards, &plan_inputs.iter().map(|i| i.slots).collect::<Vec<_>>());
        for (i, (input, n)) in plan_inputs.iter().zip(counts).enumerate() {
            // Cuts keep clear of every run the job generates or leaves.
            let holes = merge_spans(input.gaps.iter().chain(&input.replaced).copied());
            let cuts = cut_points(input.slots, &holes, &input.scene_cuts, n, opts.margin);
            let mut bounds = vec![0];
            bounds.extend(cuts);
            bounds.push(input.slots);
            for w in bounds.windows(2) {
                let (start, end) = (w[0], w[1]);
                let missing = holes.iter().filter(|g| g.start >= start && g.start < end).map(|g| g.count).sum();
                let index = shards.len();
                shards.push(Shard { index, input: i, start, end, missing, frames: None, segment: segment(index) });
            }
        }
    }
    Ok(ShardPlan {
        version: PLAN_VERSION,
        job: opts.job.clone(),
        margin: opts.margin,
        scene_threshold: opts.scene_threshold,
        max_gap: opts.max_gap,
        encoding: opts.encoding.clone(),
        inputs: plan_inputs,
        shards,
    })
}

/// `plan.json` -> `plan.json.segments` (relative to the plan's folder).
fn segments_dir_name(plan_path: &Path) -> PathBuf {
    let name = plan_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "plan".into());
    PathBuf::from(format!("{name}.segments"))
}

/// The folder paths in the plan are relative to.
fn plan_dir(plan_path: &Path) -> PathBuf {
    match plan_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl ShardPlan {
    /// Reads a plan written by `weft plan`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| input_err(path, format!("cannot read the plan: {e}")))?;
        let plan: ShardPlan = serde_json::from_str(&text)
            .map_err(|e| input_err(path, format!("not a weft shard plan (make one with `weft plan`): {e}")))?;
        if !(1..=PLAN_VERSION).contains(&plan.version) || (plan.version == 1 && plan.job != PlanJob::Gaps) {
            return Err(input_err(path, format!("plan version {} (this weft reads versions 1 to {PLAN_VERSION})", plan.version)));
        }
        if plan.shards.is_empty() {
            return Err(input_err(path, "the plan has no shards"));
        }
        plan.job.check().map_err(|e| input_err(path, format!("the plan's job is damaged: {e}")))?;
        let per_file = plan.job.per_file();
        for (k, s) in plan.shards.iter().enumerate() {
            let input = plan.inputs.get(s.input);
            let fits = |i: &PlanInput| match per_file {
                true => s.frames.is_some_and(|n| n >= 1) && plan.shards_of(s.input).count() == 1,
                false => i.grid.is_some() && s.frames.is_none() && s.start >= 0 && s.start < s.end && s.end <= i.slots,
            };
            if s.index != k || !input.is_some_and(fits) {
                return Err(input_err(path, format!("shard {k} is damaged (its input or frame range is not in the plan)")));
            }
        }
        Ok(plan)
    }

    /// Writes the plan to `path` (a temporary file renamed into place).
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<()> {
        let out_err = |reason: String| Error::Output { path: path.to_path_buf(), reason };
        if path.exists() && !overwrite {
            return Err(out_err("already exists (use --overwrite to replace it)".into()));
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| out_err(e.to_string()))? + "\n";
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "plan".into());
        let tmp = crate::interrupt::TempPath::new(plan_dir(path).join(format!(".{name}.weft-{}.part", std::process::id())));
        std::fs::write(tmp.path(), text).map_err(|e| out_err(format!("cannot write: {e}")))?;
        tmp.commit(|t| std::fs::rename(t, path).map_err(|e| out_err(format!("cannot move the plan into place: {e}"))))
    }

    /// Shard `k`, or an error naming the plan's range.
    pub fn shard(&self, k: usize) -> Result<&Shard> {
        self.shards.get(k).ok_or_else(|| {
            args(format!("--shard {k}: the plan has {} shard(s), numbered 0..={}", self.shards.len(), self.shards.len() - 1))
        })
    }

    /// Where shard `k`'s segment is, for a plan at `plan_path`.
    pub fn segment_path(&self, plan_path: &Path, k: usize) -> PathBuf {
        plan_dir(plan_path).join(&self.shards[k].segment)
    }

    /// The shards of input `i`, in frame order.
    pub fn shards_of(&self, i: usize) -> impl Iterator<Item = &Shard> {
        self.shards.iter().filter(move |s| s.input == i)
    }

    pub fn output_options(&self) -> OutputOptions {
        OutputOptions { codec: self.encoding.codec.clone(), crf: self.encoding.crf, preset: self.encoding.preset.clone(), overwrite: true }
    }
}

/// Removes what an earlier attempt at a segment left when it was killed
/// (`.shard-NNNNN.mkv.weft-PID.part`; a clean failure removes its own).
pub fn remove_stale_parts(segment: &Path) -> std::io::Result<usize> {
    let Some(dir) = segment.parent() else { return Ok(0) };
    let Some(name) = segment.file_name() else { return Ok(0) };
    let prefix = format!(".{}.weft-", name.to_string_lossy());
    let mut n = 0;
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(0) };
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if f.starts_with(&prefix) && f.ends_with(".part") {
            std::fs::remove_file(e.path())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Runs shard `k` of the plan at `plan_path`. A shard of a cut job fills
/// the runs in its frame range, each from the same real frames as one run
/// over the whole file (decoding from a keyframe `margin` frames before the
/// shard, or from the start when the model reads more context than that),
/// and writes its video as the segment; a per-file shard writes its file's
/// whole output (all streams) as the segment.
pub fn run_shard(
    model: &Model,
    plan: &ShardPlan,
    plan_path: &Path,
    k: usize,
    genopts: &GenerateOptions,
    progress: &Progress,
) -> Result<Summary> {
    let shard = plan.shard(k)?;
    let input = &plan.inputs[shard.input];
    let bytes = std::fs::metadata(&input.path).map_err(|e| input_err(&input.path, format!("cannot read: {e}")))?.len();
    if bytes != input.bytes {
        return Err(input_err(
            &input.path,
            format!("changed since the plan was made ({} bytes, the plan says {}): make the plan again", bytes, input.bytes),
        ));
    }
    let segment = plan.segment_path(plan_path, k);
    let dir = segment.parent().expect("segments are in a folder");
    let made_dir = !dir.exists();
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Output { path: segment.clone(), reason: format!("cannot create {}: {e}", dir.display()) })?;
    remove_stale_parts(&segment)
        .map_err(|e| Error::Output { path: segment.clone(), reason: format!("cannot remove an earlier attempt's file: {e}") })?;
    let result = run_segment(model, plan, k, &segment, genopts, progress);
    if result.is_err() && made_dir {
        // The first shard here failed: no empty PLAN.segments/ left behind
        // (remove_dir leaves a folder another shard has written into).
        let _ = std::fs::remove_dir(dir);
    }
    result
}

/// The job of shard `k` of `plan`, written to `segment`.
fn run_segment(
    model: &Model,
    plan: &ShardPlan,
    k: usize,
    segment: &Path,
    genopts: &GenerateOptions,
    progress: &Progress,
) -> Result<Summary> {
    let shard = plan.shard(k)?;
    let input = &plan.inputs[shard.input];
    let out = plan.output_options();
    let part = |grid: Option<Grid>| super::Part {
        start: shard.start,
        end: shard.end,
        grid: grid.expect("checked when the plan was loaded"),
        margin: plan.margin,
    };
    match &plan.job {
        PlanJob::Extend { backward, .. } => {
            let dir = if *backward { crate::Direction::Backward } else { crate::Direction::Forward };
            let n = shard.frames.expect("checked when the plan was loaded");
            super::extend(model, &input.path, segment, n, dir, &out, genopts, progress)
        }
        PlanJob::Animate { fps, .. } => {
            let n = shard.frames.expect("checked when the plan was loaded");
            super::animate(model, &input.path, segment, n, *fps, &out, genopts, progress)
        }
        PlanJob::Fps { rate } => {
            let ro = super::RetimeOptions { rate: *rate, scene_threshold: plan.scene_threshold };
            super::retime::retime_part(model, &input.path, segment, &ro, &out, genopts, progress, Some(part(input.grid)))
        }
        job => {
            let select = job.select()?.expect("an infill job");
            let io = InfillOptions { select, max_gap: plan.max_gap, scene_threshold: plan.scene_threshold };
            super::infill_part(model, &input.path, segment, &io, &out, genopts, progress, Some(part(input.grid)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_input_in_proportion() {
        assert_eq!(share(4, &[100]), vec![4]);
        assert_eq!(share(1, &[100, 100, 100]), vec![1, 1, 1]);
        assert_eq!(share(6, &[100, 100, 400]), vec![1, 1, 4]);
        assert_eq!(share(7, &[10, 10, 10]).iter().sum::<usize>(), 7);
        assert_eq!(share(3, &[1, 1, 1000]), vec![1, 1, 1]);
        assert_eq!(share(5, &[1, 1000]), vec![1, 4]);
    }

    #[test]
    fn regenerated_runs_merge_and_cuts_keep_clear_of_them() {
        let spans = [Span { start: 5, count: 2 }, Span { start: 7, count: 1 }, Span { start: 1, count: 1 }, Span { start: 9, count: 0 }];
        assert_eq!(merge_spans(spans), vec![Span { start: 1, count: 1 }, Span { start: 5, count: 3 }]);
        assert_eq!(runs([30, 31, 32, 33, 140, 141]), vec![Span { start: 30, count: 4 }, Span { start: 140, count: 2 }]);
        let holes = merge_spans([Span { start: 12, count: 1 }, Span { start: 30, count: 4 }]);
        for c in cut_points(100, &holes, &[], 4, 10) {
            assert!(c <= 20 || c >= 44, "cut {c} within 10 frames of the repeated frames 30..34");
        }
    }

    #[test]
    fn plan_jobs_are_checked_and_old_plans_fill_gaps() {
        let fps = PlanJob::Fps { rate: Ratio { num: 50, den: 1 } };
        let json = serde_json::to_value(&fps).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "fps", "rate": {"num": 50, "den": 1}}));
        assert_eq!(serde_json::from_value::<PlanJob>(json).unwrap(), fps);
        assert_eq!(fps.command(), "infill");
        assert!(!fps.per_file());
        let ext = PlanJob::Extend { frames: Some(5), seconds: None, backward: true };
        assert_eq!((ext.command(), ext.per_file(), ext.describe().as_str()), ("extend", true, "weft extend --frames 5 --backward"));
        assert!(PlanJob::Extend { frames: None, seconds: None, backward: false }.check().is_err());
        assert!(PlanJob::Extend { frames: Some(0), seconds: None, backward: false }.check().is_err());
        assert!(PlanJob::Animate { frames: None, seconds: Some(1.0), fps: Ratio { num: 0, den: 1 } }.check().is_err());
        assert!(PlanJob::Dups { tolerance: 300.0 }.check().is_err());
        assert!(PlanJob::Range { range: "5..x".into() }.check().is_err());
        assert!(PlanJob::Range { range: "5..=9".into() }.check().is_ok());
        // A version 1 plan (no job) fills gaps; a version 1 plan with
        // another job, or a later version, is refused.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("p.json");
        let shard = r#"{"index": 0, "input": 0, "start": 0, "end": 10, "missing": 0, "segment": "s.mkv"}"#;
        let input = r#"{"path": "/x.mkv", "bytes": 1, "grid": {"t0": 0, "time_base": {"num": 1, "den": 25}, "rate": {"num": 25, "den": 1}},
            "frames": 10, "slots": 10, "gaps": [], "scene_cuts": [], "name": "x.mkv"}"#;
        let plan = |version: u32, job: &str| {
            format!(
                r#"{{"version": {version}, {job} "margin": 10, "scene_threshold": 0.3, "max_gap": null, "encoding": {{}}, "inputs": [{input}], "shards": [{shard}]}}"#
            )
        };
        std::fs::write(&p, plan(1, "")).unwrap();
        assert_eq!(ShardPlan::load(&p).unwrap().job, PlanJob::Gaps);
        std::fs::write(&p, plan(1, r#""job": {"kind": "dups", "tolerance": 0.5},"#)).unwrap();
        assert!(ShardPlan::load(&p).unwrap_err().to_string().contains("plan version 1"));
        std::fs::write(&p, plan(3, "")).unwrap();
        assert!(ShardPlan::load(&p).is_err());
        std::fs::write(&p, plan(2, r#""job": {"kind": "fps", "rate": {"num": 50, "den": 1}},"#)).unwrap();
        assert_eq!(ShardPlan::load(&p).unwrap().job, fps);
        // A per-file job's shard names its frame count and covers its file alone.
        std::fs::write(&p, plan(2, r#""job": {"kind": "extend", "frames": 3, "backward": false},"#)).unwrap();
        assert!(ShardPlan::load(&p).unwrap_err().to_string().contains("shard 0 is damaged"));
    }

    #[test]
    fn cuts_keep_clear_of_gaps_and_prefer_scene_cuts() {
        let gaps = [Span { start: 20, count: 3 }, Span { start: 60, count: 1 }];
        let cuts = cut_points(250, &gaps, &[30, 76, 137, 187, 242], 4, 10);
        assert_eq!(cuts.len(), 3);
        for &c in &cuts {
            for g in &gaps {
                assert!(c <= g.start - 10 || c >= g.start + g.count + 10, "cut {c} too near {g:?}");
            }
        }
        // Share points 63, 125, 188: each has a scene cut within a quarter shard (16).
        assert_eq!(cuts, vec![76, 137, 187]);
        // Without scene cuts: the allowed cut nearest each share point (71 is
        // the first one 10 frames clear of the gap at 60).
        assert_eq!(cut_points(250, &gaps, &[], 4, 10), vec![71, 125, 188]);
        assert!(cuts.windows(2).all(|w| w[0] < w[1]));
        // No room: a clip that is all gaps has no cut.
        assert!(cut_points(30, &[Span { start: 1, count: 28 }], &[], 4, 10).is_empty());
        assert!(cut_points(250, &gaps, &[], 1, 10).is_empty());
    }
}
