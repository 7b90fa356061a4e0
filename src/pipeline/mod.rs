//! The ffmpeg pipeline: read any video FFmpeg reads, find the holes in its
//! timeline, fill them (or regenerate a range, or replace frozen frames),
//! convert the frame rate (`retime`), extend a clip or animate a still, and
//! write the result.
//!
//! * Streams through: frames are decoded, written and dropped as they go;
//!   only the model's context (a few frames on each side of a gap) and the
//!   encoder's own look-ahead are held, whatever the clip's length.
//! * Frames that were present are encoded from the decoded originals (never
//!   through RGB): with a lossless codec (`ffv1`) they decode byte-identical.
//!   Only generated frames are converted from the model's RGB with swscale.
//! * Audio and every other stream are copied as packets.
//! * The output is written to a temporary file next to it and renamed only
//!   when everything succeeded: a failure never leaves a partial file.
//!
//! Positions are frame numbers on the stream's grid: the first frame is 0 and
//! a frame at time `t` after it is at `round(t * rate)`, the stream's rate
//! being its `r_frame_rate`.

pub mod condition;
mod convert;
mod extend;
mod input;
mod join;
mod output;
mod progress;
mod retime;
pub mod shard;
pub mod timeline;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use ffmpeg_next as ff;
use ff::util::frame::Video;

use crate::analysis::{is_duplicate, scene_score};
use crate::error::WeftError;
use crate::frame::Frame;
use crate::model::Model;
use crate::tasks::{GenerateOptions, Plan, run_plan};
use crate::Direction;

use convert::{Colour, Converter};
use input::{Decoded, Event, Reader};
use output::{VideoSpec, Writer};
pub use extend::{animate, extend};
pub use progress::{Progress, Report};
pub use join::join;
pub use retime::{RetimeOptions, parse_fps, retime};
pub use shard::{Encoding, PlanJob, PlanOptions, ShardPlan, make_plan, run_shard};
pub use timeline::{FrameRange, Gap, Grid, Ratio};

/// Errors of the pipeline. Each names the file or argument at fault and
/// prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {reason}", path.display())]
    Input { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
    #[error("{0}")]
    Args(String),
    #[error(transparent)]
    Weft(#[from] WeftError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Initialises FFmpeg once (and keeps its own log quiet: problems are
/// reported by weft, once, in its own words), and tunes malloc before the
/// first decoder starts its threads (see [`crate::runtime::tune_allocator`]).
pub(crate) fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        crate::runtime::tune_allocator();
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
}

/// How the output is encoded.
#[derive(Clone, Debug, Default)]
pub struct OutputOptions {
    /// Video encoder (`libx264`, `ffv1`, `h264`, `vp9`, ...); `None`: libx264
    /// for .mp4/.mkv/.mov, else the container's default.
    pub codec: Option<String>,
    /// Constant rate factor for encoders that have one (libx264 default 18).
    pub crf: Option<u32>,
    /// Encoder preset for libx264/libx265 (default `medium`).
    pub preset: Option<String>,
    /// Replace an existing output file.
    pub overwrite: bool,
}

pub use crate::analysis::DEFAULT_SCENE_THRESHOLD;

/// Width at which `gaps` scores every pair of frames for scene cuts.
const SCAN_WIDTH: u32 = 160;

// ---------------------------------------------------------------- gaps

/// A scene cut: `frame` starts a new scene.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SceneCut {
    pub frame: i64,
    pub time: f64,
    pub score: f64,
}

/// A hole in the timeline.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GapInfo {
    /// First missing frame position.
    pub start: i64,
    /// Number of missing frames.
    pub count: i64,
    /// Time of the first missing frame, seconds from the first frame.
    pub time: f64,
    /// Whether a scene cut falls across the gap.
    pub at_scene_cut: bool,
}

/// What `gaps` found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GapsReport {
    pub file: PathBuf,
    pub width: u32,
    pub height: u32,
    pub pix_fmt: String,
    /// Frame rate as `num/den`.
    pub rate: String,
    pub fps: f64,
    /// Frames decoded.
    pub frames: u64,
    /// Frame slots from the first to the last frame.
    pub slots: i64,
    pub duration: f64,
    pub gaps: Vec<GapInfo>,
    pub missing: i64,
    pub scene_cuts: Vec<SceneCut>,
    /// Places where corrupt data was skipped.
    pub corrupt: u64,
}

fn pix_fmt_name(fmt: ff::format::Pixel) -> String {
    unsafe {
        let p = ff::ffi::av_get_pix_fmt_name(fmt.into());
        if p.is_null() { format!("{fmt:?}") } else { std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned() }
    }
}

fn scan_size(w: u32, h: u32) -> (u32, u32) {
    if w <= SCAN_WIDTH {
        (w, h)
    } else {
        (SCAN_WIDTH, ((h as u64 * SCAN_WIDTH as u64 + w as u64 / 2) / w as u64).max(1) as u32)
    }
}

/// Reads the video stream of `input` and reports the holes in its timeline
/// and its scene cuts (`scene_score` above `scene_threshold`).
pub fn gaps(input: &Path, scene_threshold: f64, progress: &Progress) -> Result<GapsReport> {
    scan(input, scene_threshold, None, progress).map(|(r, _, _)| r)
}

/// [`gaps`], the frame grid the positions are on, and with `dups` (a
/// tolerance) the frames `infill --dups` would replace, found as it finds
/// them (each decoded frame against the one before, at full size).
fn scan(input: &Path, scene_threshold: f64, dups: Option<f64>, progress: &Progress) -> Result<(GapsReport, Grid, Vec<i64>)> {
    check_threshold(scene_threshold)?;
    let mut dup_conv = Converter::new();
    let mut prev_rgb: Option<Frame> = None;
    let mut dup_frames = Vec::new();
    let mut reader = Reader::open(input, false)?;
    progress.set_total(reader.estimated_frames());
    let mut conv = Converter::new();
    let mut prev: Option<(i64, Frame)> = None;
    let mut report = GapsReport {
        file: input.to_path_buf(),
        width: 0,
        height: 0,
        pix_fmt: String::new(),
        rate: reader.rate.to_string(),
        fps: reader.rate.as_f64(),
        frames: 0,
        slots: 0,
        duration: 0.0,
        gaps: Vec::new(),
        missing: 0,
        scene_cuts: Vec::new(),
        corrupt: 0,
    };
    while let Some(ev) = reader.next(progress)? {
        let Event::Frame(Decoded { pos, frame }) = ev else { continue };
        let grid = reader.grid().expect("set with the first frame");
        if report.frames == 0 {
            report.width = frame.width();
            report.height = frame.height();
            report.pix_fmt = pix_fmt_name(frame.format());
        }
        let (sw, sh) = scan_size(frame.width(), frame.height());
        let small = conv.rgb_scaled_of(&frame, sw, sh).map_err(|e| input_err(input, e))?;
        if let Some(tolerance) = dups {
            let this = dup_conv.rgb_of(&frame).map_err(|e| input_err(input, e))?;
            if prev_rgb.as_ref().is_some_and(|p| is_duplicate(p, &this, tolerance)) {
                dup_frames.push(pos);
            }
            prev_rgb = Some(this);
        }
        let mut cut = false;
        if let Some((ppos, p)) = &prev {
            let score = scene_score(p, &small);
            if score > scene_threshold {
                cut = true;
                report.scene_cuts.push(SceneCut { frame: pos, time: grid.seconds(pos), score });
            }
            if pos > ppos + 1 {
                let g = GapInfo { start: ppos + 1, count: pos - ppos - 1, time: grid.seconds(ppos + 1), at_scene_cut: cut };
                report.missing += g.count;
                report.gaps.push(g);
            }
        }
        report.frames += 1;
        report.slots = pos + 1;
        prev = Some((pos, small));
        progress.set_done(report.frames);
    }
    reader.finish(progress)?;
    report.duration = reader.grid().map(|g| g.seconds(report.slots)).unwrap_or(0.0);
    report.corrupt = reader.corrupt_events();
    progress.finish();
    Ok((report, reader.grid().expect("finish checked that a frame was decoded"), dup_frames))
}

fn input_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Input { path: path.to_path_buf(), reason: reason.into() }
}

fn check_threshold(t: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&t) {
        return Err(Error::Args(format!("scene threshold must be in 0..=1, got {t}")));
    }
    Ok(())
}

// ---------------------------------------------------------------- infill

/// Which frames `infill` generates.
#[derive(Clone, Debug, PartialEq)]
pub enum Select {
    /// Every hole in the timeline.
    Gaps,
    /// The frames in a range (present or not), e.g. damaged ones.
    Range(FrameRange),
    /// Frames that repeat the one before (frozen or duplicated), at a mean
    /// absolute difference of at most `tolerance` 8-bit levels.
    Dups { tolerance: f64 },
}

/// Options of [`infill`].
#[derive(Clone, Debug)]
pub struct InfillOptions {
    pub select: Select,
    /// Longer holes are left as they are (and reported). `None`: every hole
    /// is filled, up to [`MAX_HOLE_SECONDS`] long (a longer one is an error).
    pub max_gap: Option<i64>,
    /// A hole across a scene cut is filled by holding the frame before it.
    pub scene_threshold: f64,
}

impl Default for InfillOptions {
    fn default() -> Self {
        Self { select: Select::Gaps, max_gap: None, scene_threshold: DEFAULT_SCENE_THRESHOLD }
    }
}

/// What a job did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    /// Frames decoded from the input.
    pub frames_in: u64,
    /// Frames written.
    pub frames_out: u64,
    /// Frames the model generated.
    pub generated: u64,
    /// Frames filled by repeating the frame before a scene cut.
    pub held: u64,
    /// Holes filled.
    pub filled: Vec<Gap>,
    /// Holes left as they were (too long, or not selected).
    pub left: Vec<Gap>,
    /// Frames of the input dropped on purpose (--range, --dups) and regenerated.
    pub replaced: u64,
    /// The video encoder used.
    pub codec: String,
    /// What made the generated frames.
    pub methods: crate::tasks::RunReport,
}

impl serde::Serialize for Gap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Gap", 2)?;
        st.serialize_field("start", &self.start)?;
        st.serialize_field("count", &self.count)?;
        st.end()
    }
}

/// A decoded frame kept for context, with its RGB once needed.
struct Held {
    pos: i64,
    frame: Video,
    rgb: Option<Frame>,
}

impl Held {
    fn rgb(&mut self, conv: &mut Converter, path: &Path) -> Result<&Frame> {
        if self.rgb.is_none() {
            self.rgb = Some(conv.rgb_of(&self.frame).map_err(|e| input_err(path, e))?);
        }
        Ok(self.rgb.as_ref().expect("set"))
    }
}

fn spec_for(frame: &Video, grid: Grid, shift: i64) -> VideoSpec {
    VideoSpec {
        width: frame.width(),
        height: frame.height(),
        format: frame.format(),
        colour: Colour::of(frame),
        aspect: frame.aspect_ratio(),
        grid,
        shift,
    }
}

/// Streams frames to the writer; runs model plans into it.
struct Job<'a> {
    input: &'a Path,
    output: &'a Path,
    model: &'a Model,
    /// The caller's options, with the clip's frame rate for the model.
    genopts: GenerateOptions,
    out_opts: &'a OutputOptions,
    progress: &'a Progress,
    reader: Reader,
    writer: Option<Writer>,
    /// Packets read before the writer existed.
    pending: Vec<ff::Packet>,
    conv: Converter,
    shift: i64,
    /// Writing one shard's segment: the video alone (`join` copies the
    /// other streams once).
    segment: bool,
    /// Stopped before the end of the input (a shard's range ended).
    stopped_early: bool,
    summary: Summary,
}

impl<'a> Job<'a> {
    /// A job reading `reader` into `output`; `shift` delays every written
    /// position (frames prepended by a backward extension).
    #[allow(clippy::too_many_arguments)]
    fn new(
        input: &'a Path,
        output: &'a Path,
        model: &'a Model,
        genopts: &GenerateOptions,
        out_opts: &'a OutputOptions,
        progress: &'a Progress,
        reader: Reader,
        shift: i64,
    ) -> Self {
        let genopts = genopts.clone().at_rate(reader.rate.as_f64());
        Job {
            input,
            output,
            model,
            genopts,
            out_opts,
            progress,
            reader,
            writer: None,
            pending: Vec::new(),
            conv: Converter::new(),
            shift,
            segment: false,
            stopped_early: false,
            summary: Summary::default(),
        }
    }

    /// The next decoded frame; copies other streams' packets on the way.
    fn next_frame(&mut self) -> Result<Option<Decoded>> {
        loop {
            match self.reader.next(self.progress)? {
                None => return Ok(None),
                Some(Event::Packet(p)) => match &mut self.writer {
                    Some(w) => w.write_packet(p)?,
                    None => self.pending.push(p),
                },
                Some(Event::Frame(d)) => {
                    if self.writer.is_none() {
                        let grid = self.reader.grid().expect("set with the first frame");
                        let spec = spec_for(&d.frame, grid, self.shift);
                        let streams = (!self.segment).then_some((&self.reader.ictx, self.reader.video));
                        let mut w = Writer::create(self.output, self.out_opts, &spec, streams, self.progress)?;
                        for p in self.pending.drain(..) {
                            w.write_packet(p)?;
                        }
                        self.summary.codec = w.codec_name.clone();
                        self.writer = Some(w);
                    }
                    self.summary.frames_in += 1;
                    return Ok(Some(d));
                }
            }
        }
    }

    fn write_original(&mut self, pos: i64, frame: &Video) -> Result<()> {
        let w = self.writer.as_mut().expect("created with the first frame");
        w.write_original(pos, frame, self.progress)?;
        self.progress.set_done(w.frames);
        Ok(())
    }

    /// Runs `plan`, writing generated frames in position order. Forward
    /// runs arrive in order; otherwise they are gathered first.
    fn generate(&mut self, plan: &Plan<'_>, in_order: bool) -> Result<()> {
        let mut gathered = BTreeMap::new();
        let writer = self.writer.as_mut().expect("created with the first frame");
        let progress = self.progress;
        let mut count = 0u64;
        let report = run_plan(self.model, plan, &self.genopts, |pos, f| -> Result<()> {
            count += 1;
            if in_order {
                writer.write_rgb(pos, &f)?;
                progress.set_done(writer.frames);
            } else {
                gathered.insert(pos, f);
            }
            Ok(())
        })?;
        for (pos, f) in gathered {
            writer.write_rgb(pos, &f)?;
            progress.set_done(writer.frames);
        }
        self.summary.generated += count;
        self.summary.methods.merge(&report);
        Ok(())
    }

    fn finish(mut self) -> Result<Summary> {
        if !self.stopped_early {
            self.reader.finish(self.progress)?;
        }
        let w = self.writer.take().expect("a frame was decoded");
        self.summary.frames_out = w.frames;
        w.finish()?;
        self.progress.finish();
        Ok(self.summary)
    }
}

/// Up to `k` frames from `frames` (nearest first) that are not separated
/// from the gap by a scene cut.
fn same_scene<'f>(frames: &[(i64, &'f Frame)], threshold: f64) -> Vec<(i64, &'f Frame)> {
    let mut out: Vec<(i64, &Frame)> = Vec::new();
    for &(p, f) in frames {
        if let Some(&(_, last)) = out.last()
            && scene_score(last, f) > threshold
        {
            break;
        }
        out.push((p, f));
    }
    out
}

/// Fills the holes of `input` (or regenerates selected frames) and writes
/// `output`. Present frames are encoded from the decoded originals.
pub fn infill(
    model: &Model,
    input: &Path,
    output: &Path,
    opts: &InfillOptions,
    out_opts: &OutputOptions,
    genopts: &GenerateOptions,
    progress: &Progress,
) -> Result<Summary> {
    infill_part(model, input, output, opts, out_opts, genopts, progress, None)
}

/// One shard of an infill job (see [`shard`]).
#[derive(Clone, Copy, Debug)]
struct Part {
    /// Frame positions `start..end` are written; no hole crosses either end.
    start: i64,
    end: i64,
    /// The input's grid (as a reader from its start sets it).
    grid: Grid,
    /// Real frames between each end and the nearest hole.
    margin: i64,
}

/// [`infill`], or with `part` (the gaps selection only) one shard of it,
/// video only. Decoding starts at the keyframe at or before `margin` frames
/// before the shard when the model reads no more than `margin` context
/// frames a side (every hole inside then sees the same frames as in a run
/// over the whole file), else at the input's start.
#[allow(clippy::too_many_arguments)]
fn infill_part(
    model: &Model,
    input: &Path,
    output: &Path,
    opts: &InfillOptions,
    out_opts: &OutputOptions,
    genopts: &GenerateOptions,
    progress: &Progress,
    part: Option<Part>,
) -> Result<Summary> {
    check_threshold(opts.scene_threshold)?;
    if opts.max_gap.is_some_and(|m| m < 1) {
        return Err(Error::Args("--max-gap must be at least 1".into()));
    }
    if let Select::Dups { tolerance } = opts.select
        && !(0.0..=255.0).contains(&tolerance)
    {
        return Err(Error::Args(format!("duplicate tolerance must be in 0..=255, got {tolerance}")));
    }
    output::check_output_path(output, out_opts.overwrite)?;
    let k = crate::tasks::known_context(model, genopts, crate::tasks::MAX_VALIDATION_CONTEXT).max(1);
    let reader = match part {
        Some(p) if k as i64 <= p.margin => Reader::open_at(input, p.grid, p.start - p.margin)?,
        Some(_) => Reader::open(input, false)?,
        None => Reader::open(input, true)?,
    };
    let range = match &opts.select {
        Select::Range(r) => Some(r.positions(reader.rate)?),
        _ => None,
    };
    progress.set_total(match part {
        Some(p) => Some((p.end - p.start) as u64),
        None => reader.estimated_frames(),
    });
    let mut job = Job::new(input, output, model, genopts, out_opts, progress, reader, 0);
    job.segment = part.is_some();
    let inside = |pos: i64| part.is_none_or(|p| p.start <= pos && pos < p.end);
    let mut marked: BTreeSet<i64> = BTreeSet::new();
    let mut queue: VecDeque<Held> = VecDeque::new();
    let mut history: VecDeque<Held> = VecDeque::new();
    let mut prev_rgb: Option<Frame> = None;
    let mut dup_conv = Converter::new();
    let mut eof = false;
    let mut span: Option<(i64, i64)> = None;
    loop {
        while !eof && queue.len() < k + 1 {
            let Some(d) = job.next_frame()? else {
                eof = true;
                break;
            };
            span = Some(span.map_or((d.pos, d.pos), |(a, _)| (a, d.pos)));
            let mut rgb = None;
            let drop = match &opts.select {
                Select::Gaps => false,
                Select::Range(_) => {
                    let (a, b) = range.expect("resolved");
                    (a..b).contains(&d.pos)
                }
                Select::Dups { tolerance } => {
                    let this = dup_conv.rgb_of(&d.frame).map_err(|e| input_err(input, e))?;
                    let dup = prev_rgb.as_ref().is_some_and(|p| is_duplicate(p, &this, *tolerance));
                    prev_rgb = Some(this.clone());
                    rgb = Some(this);
                    dup
                }
            };
            if drop {
                marked.insert(d.pos);
                if inside(d.pos) {
                    job.summary.replaced += 1;
                }
            } else {
                queue.push_back(Held { pos: d.pos, frame: d.frame, rgb });
            }
        }
        let Some(mut item) = queue.pop_front() else { break };
        let hole_start = match history.back() {
            Some(h) => h.pos + 1,
            // Selected frames at the very start: a hole before the first kept frame.
            None => marked.first().copied().filter(|&m| m < item.pos).unwrap_or(item.pos),
        };
        if item.pos > hole_start {
            let gap = Gap { start: hole_start, count: item.pos - hole_start };
            if inside(gap.start) != inside(gap.end() - 1) {
                return Err(input_err(
                    input,
                    format!(
                        "frames {}..{} are missing across the edge of the shard: the input is not the one planned (make the plan again)",
                        gap.start,
                        gap.end()
                    ),
                ));
            }
            if inside(gap.start) {
                fill_gap(&mut job, opts, &marked, gap, &mut history, &mut item, &mut queue, k)?;
            }
        }
        if let Some(p) = part
            && item.pos >= p.end
        {
            job.stopped_early = true;
            break;
        }
        marked = marked.split_off(&item.pos);
        if inside(item.pos) {
            job.write_original(item.pos, &item.frame)?;
        }
        history.push_back(item);
        if history.len() > k {
            history.pop_front();
        }
    }
    // (A shard's range was checked against the whole clip by the plan.)
    if let (Some((a, b)), Some((first, last)), None) = (range, span, part) {
        let grid = job.reader.grid().expect("a frame was decoded");
        let clip = format!("frames {first}..={last}, {:.2} s to {:.2} s", grid.seconds(first), grid.seconds(last));
        if b <= first || a > last {
            return Err(Error::Args(format!(
                "--range selects frames {a}..{} but the clip has {clip}: nothing to regenerate",
                b - 1
            )));
        }
        if b > last + 1 {
            progress.note(&format!(
                "--range reaches past the clip's last frame ({clip}): frames after it are not made (that is `weft extend`)"
            ));
        }
    }
    // Selected frames at the very end: generate forward from the last kept
    // frame (not in a shard that stopped before the end: they are another's).
    if let (Some(&last_marked), Some(last), false) = (marked.last(), history.back().map(|h| h.pos), job.stopped_early)
        && last_marked > last
    {
        let gap = Gap { start: last + 1, count: last_marked - last };
        let before: Vec<(i64, Frame)> = history
            .iter_mut()
            .map(|h| { let p = h.pos; h.rgb(&mut job.conv, input).map(|f| (p, f.clone())) })
            .collect::<Result<_>>()?;
        let refs: Vec<(i64, &Frame)> = before.iter().rev().map(|(p, f)| (*p, f)).collect();
        let ctx = same_scene(&refs, opts.scene_threshold);
        let mut plan = Plan::new();
        for (p, f) in &ctx {
            plan = plan.known(*p, f);
        }
        for p in gap.start..gap.end() {
            plan = plan.generate(p);
        }
        job.generate(&plan, true)?;
        job.summary.filled.push(gap);
        progress.note(&format!("regenerated {} frame(s) at the end from {}", gap.count, gap.start));
    }
    if job.writer.is_none() {
        // No frame at all: let the reader name the problem.
        job.reader.finish(progress)?;
        return Err(input_err(input, "the video stream has no frames"));
    }
    if let Some(p) = part
        && job.writer.as_ref().is_some_and(|w| w.frames == 0)
    {
        return Err(input_err(input, format!("no frame in the shard's range {}..{}: the input is not the one planned", p.start, p.end)));
    }
    job.finish()
}

#[allow(clippy::too_many_arguments)]
fn fill_gap(
    job: &mut Job<'_>,
    opts: &InfillOptions,
    marked: &BTreeSet<i64>,
    gap: Gap,
    history: &mut VecDeque<Held>,
    item: &mut Held,
    queue: &mut VecDeque<Held>,
    k: usize,
) -> Result<()> {
    let grid = job.reader.grid().expect("a frame was decoded");
    let at = grid.seconds(gap.start);
    let selected = match &opts.select {
        Select::Gaps => true,
        // A range selects the missing frames in it too.
        Select::Range(r) => {
            let (a, b) = r.positions(job.reader.rate)?;
            marked.range(gap.start..gap.end()).next().is_some() || (a < gap.end() && gap.start < b)
        }
        Select::Dups { .. } => marked.range(gap.start..gap.end()).next().is_some(),
    };
    if !selected {
        job.summary.left.push(gap);
        return Ok(());
    }
    if let Some(m) = opts.max_gap
        && gap.count > m
    {
        job.progress.note(&format!(
            "gap of {} frame(s) at {at:.2} s (frame {}) is longer than --max-gap {m}: left as it is",
            gap.count, gap.start
        ));
        job.summary.left.push(gap);
        return Ok(());
    }
    if opts.max_gap.is_none() {
        check_hole(job.input, gap, grid, "--max-gap N fills holes up to N frames and leaves longer ones")?;
    }
    let input = job.input;
    // Context after the hole: the next frame and those contiguous with it.
    let mut after_rgb: Vec<(i64, Frame)> = vec![(item.pos, item.rgb(&mut job.conv, input)?.clone())];
    for q in queue.iter_mut() {
        if after_rgb.len() >= k || q.pos != after_rgb.last().expect("non-empty").0 + 1 {
            break;
        }
        after_rgb.push((q.pos, q.rgb(&mut job.conv, input)?.clone()));
    }
    let mut before_rgb: Vec<(i64, Frame)> = Vec::new();
    for h in history.iter_mut().rev() {
        before_rgb.push((h.pos, h.rgb(&mut job.conv, input)?.clone()));
    }
    let before_refs: Vec<(i64, &Frame)> = before_rgb.iter().map(|(p, f)| (*p, f)).collect();
    let after_refs: Vec<(i64, &Frame)> = after_rgb.iter().map(|(p, f)| (*p, f)).collect();

    if let Some(&(_, last)) = before_refs.first() {
        let score = scene_score(last, after_refs[0].1);
        if score > opts.scene_threshold {
            job.progress.note(&format!(
                "gap of {} frame(s) at {at:.2} s (frame {}) is at a scene cut (score {score:.2}): held the frame before it",
                gap.count, gap.start
            ));
            let held = history.back().expect("before context").frame.clone();
            for p in gap.start..gap.end() {
                job.write_original(p, &held)?;
            }
            job.summary.held += gap.count as u64;
            job.summary.filled.push(gap);
            return Ok(());
        }
    }
    let before = same_scene(&before_refs, opts.scene_threshold);
    let after = same_scene(&after_refs, opts.scene_threshold);
    let mut plan = Plan::new();
    for (p, f) in before.iter().chain(after.iter()) {
        plan = plan.known(*p, f);
    }
    for p in gap.start..gap.end() {
        plan = plan.generate(p);
    }
    // With frames before, runs are generated (and written) in order.
    job.generate(&plan, !before.is_empty())?;
    job.summary.filled.push(gap);
    Ok(())
}

/// The longest hole filled unless `--max-gap` says otherwise, in seconds. A
/// longer one is nearly always a damaged timestamp (a frame stamped hours
/// late), whose filling would run for hours and write as much video.
pub const MAX_HOLE_SECONDS: f64 = 600.0;

fn check_hole(input: &Path, gap: Gap, grid: Grid, hint: &str) -> Result<()> {
    let secs = gap.count as f64 / grid.rate.as_f64();
    if secs > MAX_HOLE_SECONDS {
        return Err(input_err(
            input,
            format!(
                "a hole of {} frames ({secs:.0} s) after {:.2} s: longer than {MAX_HOLE_SECONDS:.0} s, which is more likely a \
                 damaged timestamp than missing footage (`weft gaps` lists the holes; {hint})",
                gap.count,
                grid.seconds(gap.start - 1)
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- extend

/// Decodes up to `max_frames` frames of a video (or an image) as RGB, in
/// decode order, scaled down so that the longer side is at most `max_side`
/// (keeping the aspect ratio; never scaled up). For training and evaluation,
/// where whole short clips are needed in memory.
pub fn decode_rgb(path: &Path, max_frames: Option<usize>, max_side: Option<usize>) -> Result<Vec<Frame>> {
    let mut reader = Reader::open(path, false)?;
    let mut conv = Converter::new();
    let quiet = Progress::quiet();
    let mut out = Vec::new();
    while max_frames.is_none_or(|m| out.len() < m) {
        let Some(event) = reader.next(&quiet)? else { break };
        let Event::Frame(d) = event else { continue };
        let (w, h) = (d.frame.width() as usize, d.frame.height() as usize);
        let scale = max_side.map_or(1.0, |m| (m as f64 / w.max(h) as f64).min(1.0));
        let (sw, sh) = (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
        out.push(conv.rgb_scaled_of(&d.frame, sw, sh).map_err(|e| input_err(path, e))?);
    }
    if out.is_empty() {
        return Err(input_err(path, "no video frames"));
    }
    Ok(out)
}

/// Frames in `seconds` at `rate` (at least 1).
pub fn frames_for_seconds(seconds: f64, rate: Ratio) -> Result<usize> {
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(Error::Args(format!("--seconds must be positive, got {seconds}")));
    }
    Ok(((seconds * rate.as_f64()).round() as usize).max(1))
}

/// Checks that `input` opens and has a video stream (or a picture), without
/// decoding it: commands call this before loading a model, so that a bad
/// input is what the user hears about.
pub fn check_input(input: &Path) -> Result<()> {
    Reader::open(input, false).map(|_| ())
}

/// The most frames one `extend` or `animate` run writes (over four days at
/// 25 fps): a bound that keeps every timestamp within any container's time
/// base and catches a mistyped count before minutes are spent.
pub const MAX_NEW_FRAMES: usize = 10_000_000;

fn check_new_frames(n: usize, what: &str, rate: Ratio) -> Result<()> {
    if n > MAX_NEW_FRAMES {
        return Err(Error::Args(format!(
            "{what} {n} frames is more than one run writes (at most {MAX_NEW_FRAMES}, {:.1} hours at {rate} fps)",
            MAX_NEW_FRAMES as f64 / rate.as_f64() / 3600.0
        )));
    }
    Ok(())
}

/// The frame rate of `input`'s video stream (for `--seconds`).
pub fn frame_rate(input: &Path) -> Result<Ratio> {
    Ok(Reader::open(input, false)?.rate)
}

/// Parses a frame rate: `25`, `29.97`, `30000/1001`.
pub fn parse_rate(s: &str) -> Result<Ratio> {
    let bad = || Error::Args(format!("frame rate `{s}`: expected a number like 25, 29.97 or 30000/1001"));
    let r = if let Some((a, b)) = s.split_once('/') {
        Ratio::new(a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?).ok_or_else(bad)?
    } else {
        let v: f64 = s.trim().parse().map_err(|_| bad())?;
        if !v.is_finite() {
            return Err(bad());
        }
        let den = 1000;
        Ratio::new((v * den as f64).round() as i64, den).ok_or_else(bad)?
    };
    if r.num <= 0 || r.as_f64() > 1000.0 {
        return Err(bad());
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("25").unwrap().as_f64(), 25.0);
        assert_eq!(parse_rate("30000/1001").unwrap(), Ratio { num: 30000, den: 1001 });
        assert!((parse_rate("29.97").unwrap().as_f64() - 29.97).abs() < 1e-9);
        for bad in ["0", "-5", "abc", "1/0", "5000", "nan"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(frames_for_seconds(2.0, parse_rate("25").unwrap()).unwrap(), 50);
        assert!(frames_for_seconds(0.0, parse_rate("25").unwrap()).is_err());
    }

    #[test]
    fn scene_context_stops_at_a_cut() {
        let a = Frame::filled(8, 8, [10, 10, 10]).unwrap();
        let b = Frame::filled(8, 8, [12, 10, 10]).unwrap();
        let c = Frame::filled(8, 8, [250, 240, 5]).unwrap();
        let v = vec![(5, &a), (4, &b), (3, &c)];
        let kept = same_scene(&v, DEFAULT_SCENE_THRESHOLD);
        assert_eq!(kept.iter().map(|x| x.0).collect::<Vec<_>>(), vec![5, 4]);
        assert_eq!(same_scene(&v, f64::INFINITY).len(), 3);
    }
}
