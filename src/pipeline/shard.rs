//! Cutting infill jobs into shards that run on any machine, in any order.
//!
//! A plan (`weft plan`, JSON) lists its input files and, for each, the
//! holes in its timeline and the points where it is cut. A cut falls
//! between two real frames with at least `margin` real frames on each side
//! before the nearest hole (at a scene cut where one is near), so no model
//! window crosses it: every generated frame depends only on the real frames
//! around its own hole, and its noise seed on its position. A shard is a
//! run of frame positions of one input; running it (`weft infill --plan P
//! --shard K`) encodes exactly those frames into its own segment file (a
//! fresh encode, so it starts on a keyframe), written under a temporary name
//! and renamed: a retried shard rewrites the same file. `join` puts the
//! segments back together without re-encoding.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::timeline::Grid;
use super::{Error, InfillOptions, OutputOptions, Progress, Result, Select, Summary, input_err};
use crate::model::Model;
use crate::tasks::GenerateOptions;

/// The plan format this weft writes and reads.
pub const PLAN_VERSION: u32 = 1;

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

/// One input file of a plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanInput {
    /// Absolute path.
    pub path: PathBuf,
    /// Its size when planned: a shard refuses a file that changed since.
    pub bytes: u64,
    /// Its frame grid (first frame's timestamp, time base, frame rate).
    pub grid: Grid,
    /// Frames decoded, and slots from the first frame to the last.
    pub frames: u64,
    pub slots: i64,
    pub gaps: Vec<Span>,
    pub scene_cuts: Vec<i64>,
    /// The joined file's name when a plan of several inputs is joined into a folder.
    pub name: String,
}

/// One unit of work: frame positions `start..end` of input `input`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub input: usize,
    pub start: i64,
    pub end: i64,
    /// Missing frames inside (the frames it generates, unless `max_gap` leaves some).
    pub missing: i64,
    /// Its segment file, relative to the plan file's folder.
    pub segment: PathBuf,
}

/// A sharded infill job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardPlan {
    pub version: u32,
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
    /// too few places to cut).
    pub shards: usize,
    pub margin: i64,
    pub scene_threshold: f64,
    pub max_gap: Option<i64>,
    pub encoding: Encoding,
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

/// Reads every input's timeline and cuts the job into shards. `plan_path`:
/// where the plan will be saved (segments go in `PLAN.segments/`).
pub fn make_plan(inputs: &[PathBuf], plan_path: &Path, opts: &PlanOptions, progress: &Progress) -> Result<ShardPlan> {
    if opts.shards == 0 {
        return Err(args("--shards must be at least 1"));
    }
    if opts.margin < 1 {
        return Err(args(format!("--margin must be at least 1, got {}", opts.margin)));
    }
    if opts.max_gap.is_some_and(|m| m < 1) {
        return Err(args("--max-gap must be at least 1"));
    }
    let files = expand_inputs(inputs)?;
    let mut plan_inputs = Vec::new();
    for f in &files {
        let (r, grid) = super::gaps_on_grid(f, opts.scene_threshold, progress)?;
        let bytes = std::fs::metadata(f).map_err(|e| input_err(f, format!("cannot read: {e}")))?.len();
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let name = format!("{stem}.{SEGMENT_EXT}");
        if let Some(other) = plan_inputs.iter().find(|i: &&PlanInput| i.name == name) {
            return Err(args(format!(
                "{} and {} would both join to {name}: rename one",
                other.path.display(),
                f.display()
            )));
        }
        plan_inputs.push(PlanInput {
            path: f.clone(),
            bytes,
            grid,
            frames: r.frames,
            slots: r.slots,
            gaps: r.gaps.iter().map(|g| Span { start: g.start, count: g.count }).collect(),
            scene_cuts: r.scene_cuts.iter().map(|c| c.frame).collect(),
            name,
        });
    }
    let counts = share(opts.shards, &plan_inputs.iter().map(|i| i.slots).collect::<Vec<_>>());
    let seg_dir = segments_dir_name(plan_path);
    let mut shards = Vec::new();
    for (i, (input, n)) in plan_inputs.iter().zip(counts).enumerate() {
        let cuts = cut_points(input.slots, &input.gaps, &input.scene_cuts, n, opts.margin);
        let mut bounds = vec![0];
        bounds.extend(cuts);
        bounds.push(input.slots);
        for w in bounds.windows(2) {
            let (start, end) = (w[0], w[1]);
            let missing = input.gaps.iter().filter(|g| g.start >= start && g.start < end).map(|g| g.count).sum();
            let index = shards.len();
            shards.push(Shard {
                index,
                input: i,
                start,
                end,
                missing,
                segment: seg_dir.join(format!("shard-{index:05}.{SEGMENT_EXT}")),
            });
        }
    }
    Ok(ShardPlan {
        version: PLAN_VERSION,
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
        if plan.version != PLAN_VERSION {
            return Err(input_err(path, format!("plan version {} (this weft reads version {PLAN_VERSION})", plan.version)));
        }
        if plan.shards.is_empty() {
            return Err(input_err(path, "the plan has no shards"));
        }
        for (k, s) in plan.shards.iter().enumerate() {
            let input = plan.inputs.get(s.input);
            if s.index != k || input.is_none_or(|i| s.start < 0 || s.start >= s.end || s.end > i.slots) {
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

/// Runs shard `k` of the plan at `plan_path`: fills the holes in its frame
/// range, each from the same real frames as one run over the whole file
/// (decoding from a keyframe `margin` frames before the shard, or from the
/// start when the model reads more context than that), and writes its
/// segment.
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
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Output { path: segment.clone(), reason: format!("cannot create {}: {e}", dir.display()) })?;
    remove_stale_parts(&segment)
        .map_err(|e| Error::Output { path: segment.clone(), reason: format!("cannot remove an earlier attempt's file: {e}") })?;
    let io = InfillOptions { select: Select::Gaps, max_gap: plan.max_gap, scene_threshold: plan.scene_threshold };
    let part = super::Part { start: shard.start, end: shard.end, grid: input.grid, margin: plan.margin };
    super::infill_part(model, &input.path, &segment, &io, &plan.output_options(), genopts, progress, Some(part))
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
