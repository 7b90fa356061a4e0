//! Fill jobs: a run of frames to generate, run on the src-pad task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gst::prelude::*;

use super::*;

/// A run of `n` frames to generate at `start`, `start + dur`, ... with the
/// known buffers around it as conditioning. Runs on the src-pad task.
pub struct FillJob {
    pub model: Arc<LazyModel>,
    pub opts: weft::GenerateOptions,
    pub info: gst_video::VideoInfo,
    /// Known buffers before the run (their PTS place them on the frame grid).
    pub before: Vec<gst::Buffer>,
    /// Known buffers after the run; filled in by the task from the buffers
    /// queued behind the job when `want_after > 0`.
    pub after: Vec<gst::Buffer>,
    pub want_after: usize,
    pub start: gst::ClockTime,
    pub dur: gst::ClockTime,
    pub n: usize,
    /// Hold the nearest frame instead of generating when the frames on
    /// either side score above this (a scene cut).
    pub scene_threshold: Option<f64>,
    pub reason: &'static str,
}

/// Why a fill stopped early.
pub(crate) enum Stop {
    Flow(gst::FlowError),
    Failed(String),
}

/// A generation failure inside `run_plan` stops the fill with its message.
impl From<weft::WeftError> for Stop {
    fn from(e: weft::WeftError) -> Self {
        Stop::Failed(e.to_string())
    }
}

impl FillJob {
    /// Position of `pts` on the job's frame grid (0 = first generated frame).
    fn position(&self, pts: gst::ClockTime) -> i64 {
        let d = self.dur.nseconds() as i128;
        let off = pts.nseconds() as i128 - self.start.nseconds() as i128;
        (if off >= 0 { (off + d / 2) / d } else { -((-off + d / 2) / d) }) as i64
    }

    pub(crate) fn run(
        self,
        element: &gst::Element,
        srcpad: &gst::Pad,
        cancel: &AtomicBool,
    ) -> Result<gst::FlowSuccess, TaskError> {
        let t0 = Instant::now();
        match self.run_inner(element, srcpad, cancel) {
            Ok(method) => {
                let method = method.as_str();
                let secs = t0.elapsed().as_secs_f64();
                gst::info!(
                    CAT,
                    obj = element,
                    "{}: {} {} frame(s) at {} in {:.3} s ({:.3} s/frame)",
                    self.reason,
                    if method == "hold" { "held" } else { "generated" },
                    self.n,
                    self.start,
                    secs,
                    secs / self.n.max(1) as f64
                );
                post_fill_message(element, self.start, self.n, method, self.reason, self.dur, Some(secs));
                Ok(gst::FlowSuccess::Ok)
            }
            Err(Stop::Flow(f)) => Err(TaskError { flow: f, message: None }),
            Err(Stop::Failed(msg)) => Err(TaskError {
                flow: gst::FlowError::Error,
                message: Some(format!(
                    "weft could not generate {} frame(s) at {} ({}): {}",
                    self.n, self.start, self.reason, msg
                )),
            }),
        }
    }

    fn run_inner(&self, element: &gst::Element, srcpad: &gst::Pad, cancel: &AtomicBool) -> Result<String, Stop> {
        let model = self.model.get(element).map_err(Stop::Failed)?;
        let conv = Converter::new(&self.info).map_err(Stop::Failed)?;
        let n = self.n as i64;
        // Known buffers on the grid, nearest side first; none inside the run.
        let place = |bufs: &[gst::Buffer]| -> Vec<(i64, gst::Buffer)> {
            bufs.iter()
                .filter_map(|b| b.pts().map(|p| (self.position(p), b.clone())))
                .filter(|(p, _)| *p < 0 || *p >= n)
                .collect()
        };
        let mut known = place(&self.before);
        known.extend(place(&self.after));
        known.sort_by_key(|(p, _)| *p);
        known.dedup_by_key(|(p, _)| *p);
        if known.is_empty() {
            return Err(Stop::Failed("no known frame to condition on".into()));
        }
        let nearest_before = known.iter().rev().find(|(p, _)| *p < 0);
        let nearest_after = known.iter().find(|(p, _)| *p >= n);

        let frames: Vec<(i64, weft::Frame)> = known
            .iter()
            .map(|(p, b)| conv.to_frame(b).map(|f| (*p, f)))
            .collect::<Result<_, _>>()
            .map_err(Stop::Failed)?;

        let push = |buffer: gst::Buffer| -> Result<(), Stop> {
            if cancel.load(Ordering::SeqCst) {
                return Err(Stop::Flow(gst::FlowError::Flushing));
            }
            pushing(|| srcpad.push(buffer)).map(|_| ()).map_err(Stop::Flow)
        };

        // Scene cut across the gap: hold the last frame before it.
        if let (Some(th), Some((pb, bb)), Some((pa, _))) = (self.scene_threshold, nearest_before, nearest_after) {
            let fb = &frames.iter().find(|(p, _)| p == pb).expect("converted").1;
            let fa = &frames.iter().find(|(p, _)| p == pa).expect("converted").1;
            let score = weft::analysis::scene_score(fb, fa);
            gst::debug!(
                CAT,
                obj = element,
                "scene score across the gap at {}: {:.3} (threshold {:.3})",
                self.start,
                score,
                th
            );
            if score > th {
                gst::info!(
                    CAT,
                    obj = element,
                    "scene cut at {} (score {:.3}): holding the last frame",
                    self.start,
                    score
                );
                for i in 0..self.n {
                    // A new buffer sharing the held frame's memory.
                    let mut b = bb.copy();
                    mark_generated(b.make_mut(), self.start + self.dur * i as u64, self.dur, "hold", i);
                    push(b)?;
                }
                return Ok("hold".into());
            }
        }

        let mut plan = weft::Plan::new();
        for (p, f) in &frames {
            plan = plan.known(*p, f);
        }
        for p in 0..n {
            plan = plan.generate(p);
        }
        let streaming = nearest_before.is_some();
        // The stream's frame rate reaches a generative model's time coordinates.
        let mut opts = self.opts.clone().at_rate(1e9 / self.dur.nseconds().max(1) as f64);
        // Different noise for every fill, reproducible for the same stream.
        opts.seed = opts.seed.wrapping_add(self.start.nseconds() / self.dur.nseconds().max(1));
        let buffer = |pos: i64, frame: weft::Frame| -> Result<(usize, gst::Buffer), Stop> {
            let mut b = conv.from_frame(&frame).map_err(Stop::Failed)?;
            mark_generated(
                b.get_mut().expect("new buffer is writable"),
                self.start + self.dur * pos as u64,
                self.dur,
                "generate",
                pos as usize,
            );
            gst::trace!(CAT, obj = element, "generated frame {} of the fill at {}", pos, self.start);
            Ok((pos as usize, b))
        };
        generate_and_push(&model, &plan, &opts, cancel, streaming, buffer, push)
    }
}

thread_local! {
    /// Time this thread spent in pushes of fill jobs (downstream, e.g. a
    /// sink waiting for the clock), so the worker can leave it out of a
    /// fill's generation time.
    static PUSHING: std::cell::Cell<std::time::Duration> = const { std::cell::Cell::new(std::time::Duration::ZERO) };
}

fn pushing<T>(f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let r = f();
    PUSHING.with(|p| p.set(p.get() + t0.elapsed()));
    r
}

/// The time this thread spent pushing fill frames since the last call.
pub(crate) fn take_push_time() -> std::time::Duration {
    PUSHING.with(|p| p.replace(std::time::Duration::ZERO))
}

/// Runs `plan` and pushes every generated frame as the buffer `buffer`
/// makes of it (with its place in the output order): at once when the run
/// is generated in order (`streaming`), else sorted by that place at the
/// end. Stops when `cancel` is set. Returns the methods that made the frames.
fn generate_and_push(
    model: &weft::Model,
    plan: &weft::Plan<'_>,
    opts: &weft::GenerateOptions,
    cancel: &AtomicBool,
    streaming: bool,
    mut buffer: impl FnMut(i64, weft::Frame) -> Result<(usize, gst::Buffer), Stop>,
    push: impl Fn(gst::Buffer) -> Result<(), Stop>,
) -> Result<String, Stop> {
    let mut held: Vec<(usize, gst::Buffer)> = Vec::new();
    let report = weft::run_plan(model, plan, opts, |pos, frame| -> Result<(), Stop> {
        if cancel.load(Ordering::SeqCst) {
            return Err(Stop::Flow(gst::FlowError::Flushing));
        }
        let (order, b) = buffer(pos, frame)?;
        if streaming {
            push(b)
        } else {
            held.push((order, b));
            Ok(())
        }
    })?;
    held.sort_by_key(|(i, _)| *i);
    for (_, b) in held {
        push(b)?;
    }
    Ok(report.method_names())
}

/// One frame a [`PlanJob`] generates: its plan position and the timestamps
/// of its buffer.
#[derive(Clone, Copy, Debug)]
pub struct PlanSlot {
    pub pos: i64,
    pub pts: gst::ClockTime,
    pub duration: gst::ClockTime,
}

/// A run of frames to generate laid out on any integer grid: known buffers
/// at plan positions, slots at plan positions with their own timestamps
/// (weftinfill's frame-rate conversion, whose positions are ticks of a grid
/// holding the frame times of both rates). Complete when queued: it waits
/// for nothing queued behind it.
pub struct PlanJob {
    pub model: Arc<LazyModel>,
    /// The generation options, seed included (the caller varies it per run).
    pub opts: weft::GenerateOptions,
    pub info: gst_video::VideoInfo,
    /// Known buffers and their plan positions, none at a slot's.
    pub known: Vec<(i64, gst::Buffer)>,
    /// The frames to generate, in time order, all on one side of each known
    /// frame or between two of them.
    pub slots: Vec<PlanSlot>,
    /// Hold the nearest known frame before the slots instead of generating
    /// when it and the nearest after them score above this (a scene cut).
    pub scene_threshold: Option<f64>,
    /// Hold the nearest known frame before the slots whatever they are.
    pub hold: bool,
    pub reason: &'static str,
    /// The frame duration the fill message reports.
    pub dur: gst::ClockTime,
}

impl PlanJob {
    pub(crate) fn run(
        self,
        element: &gst::Element,
        srcpad: &gst::Pad,
        cancel: &AtomicBool,
    ) -> Result<gst::FlowSuccess, TaskError> {
        let t0 = Instant::now();
        let (start, n) = (self.slots.first().map_or(gst::ClockTime::ZERO, |s| s.pts), self.slots.len());
        match self.run_inner(element, srcpad, cancel) {
            Ok(method) => {
                let secs = t0.elapsed().as_secs_f64();
                gst::info!(
                    CAT,
                    obj = element,
                    "{}: {} {} frame(s) at {} in {:.3} s",
                    self.reason,
                    if method == "hold" { "held" } else { "generated" },
                    n,
                    start,
                    secs
                );
                post_fill_message(element, start, n, &method, self.reason, self.dur, Some(secs));
                Ok(gst::FlowSuccess::Ok)
            }
            Err(Stop::Flow(f)) => Err(TaskError { flow: f, message: None }),
            Err(Stop::Failed(msg)) => Err(TaskError {
                flow: gst::FlowError::Error,
                message: Some(format!(
                    "weft could not generate {} frame(s) at {} ({}): {}",
                    n, start, self.reason, msg
                )),
            }),
        }
    }

    fn run_inner(&self, element: &gst::Element, srcpad: &gst::Pad, cancel: &AtomicBool) -> Result<String, Stop> {
        let (Some(first), Some(last)) = (self.slots.first(), self.slots.last()) else { return Ok("none".into()) };
        let mut known = self.known.clone();
        known.sort_by_key(|(p, _)| *p);
        known.dedup_by_key(|(p, _)| *p);
        let nearest_before = known.iter().rev().find(|(p, _)| *p < first.pos).cloned();
        let nearest_after = known.iter().find(|(p, _)| *p > last.pos).cloned();
        let push = |buffer: gst::Buffer| -> Result<(), Stop> {
            if cancel.load(Ordering::SeqCst) {
                return Err(Stop::Flow(gst::FlowError::Flushing));
            }
            pushing(|| srcpad.push(buffer)).map(|_| ()).map_err(Stop::Flow)
        };
        let hold = |held: &gst::Buffer| -> Result<String, Stop> {
            for (i, s) in self.slots.iter().enumerate() {
                // A new buffer sharing the held frame's memory.
                let mut b = held.copy();
                mark_generated(b.make_mut(), s.pts, s.duration, "hold", i);
                push(b)?;
            }
            Ok("hold".into())
        };
        if self.hold {
            let held = nearest_before.or(nearest_after).ok_or_else(|| Stop::Failed("no frame to hold".into()))?;
            return hold(&held.1);
        }
        if known.is_empty() {
            return Err(Stop::Failed("no known frame to condition on".into()));
        }
        let model = self.model.get(element).map_err(Stop::Failed)?;
        let conv = Converter::new(&self.info).map_err(Stop::Failed)?;
        let frames: Vec<(i64, weft::Frame)> = known
            .iter()
            .map(|(p, b)| conv.to_frame(b).map(|f| (*p, f)))
            .collect::<Result<_, _>>()
            .map_err(Stop::Failed)?;
        let frame_at = |pos: i64| &frames.iter().find(|(p, _)| *p == pos).expect("converted").1;

        // Scene cut across the slots: hold the frame before them.
        if let (Some(th), Some((pb, bb)), Some((pa, _))) = (self.scene_threshold, &nearest_before, &nearest_after) {
            let score = weft::analysis::scene_score(frame_at(*pb), frame_at(*pa));
            gst::debug!(CAT, obj = element, "scene score across {}: {:.3} (threshold {:.3})", first.pts, score, th);
            if score > th {
                gst::info!(
                    CAT,
                    obj = element,
                    "scene cut at {} (score {:.3}): holding the frame before it",
                    first.pts,
                    score
                );
                return hold(bb);
            }
        }

        let mut plan = weft::Plan::new();
        for (p, f) in &frames {
            plan = plan.known(*p, f);
        }
        for s in &self.slots {
            plan = plan.generate(s.pos);
        }
        let index: std::collections::HashMap<i64, (usize, PlanSlot)> =
            self.slots.iter().enumerate().map(|(i, s)| (s.pos, (i, *s))).collect();
        // Runs before a known frame are generated in order; backward ones
        // (nothing known before) nearest first, so they are pushed sorted.
        let streaming = nearest_before.is_some();
        let buffer = |pos: i64, frame: weft::Frame| -> Result<(usize, gst::Buffer), Stop> {
            let (i, s) =
                *index.get(&pos).ok_or_else(|| Stop::Failed(format!("a frame at unplanned position {pos}")))?;
            let mut b = conv.from_frame(&frame).map_err(Stop::Failed)?;
            mark_generated(b.get_mut().expect("new buffer is writable"), s.pts, s.duration, "generate", i);
            Ok((i, b))
        };
        generate_and_push(&model, &plan, &self.opts, cancel, streaming, buffer, push)
    }
}

