//! What the three elements share: the debug category, the model properties
//! and their loading, pixel conversion to and from weft's packed RGB, the
//! queue between the sink pad and the src-pad task, and the fill job that
//! generates a run of frames and pushes them.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst_video::prelude::*;
use once_cell::sync::Lazy;

/// Debug category of every weft element: `GST_DEBUG=weft:5`.
pub static CAT: Lazy<gst::DebugCategory> =
    Lazy::new(|| gst::DebugCategory::new("weft", gst::DebugColorFlags::empty(), Some("weft video generation")));

/// Name of the custom meta (`gst_buffer_get_custom_meta (buf, "WeftGeneratedMeta")`)
/// on every buffer a weft element generated. Its structure holds `method`
/// (`generate` or `hold`) and `index` (position of the frame within its fill).
/// Original buffers never carry it.
pub const GENERATED_META: &str = "WeftGeneratedMeta";

/// Name of the element message posted for each fill. Fields: `start`
/// (guint64, PTS of the first generated frame, ns), `count` (guint, frames),
/// `method` (what made the frames: `hold` at a scene cut, `skip`, or the
/// generation method, e.g. `flow-interpolation`, `block-matching`,
/// `cross-fade`, `motion-continued`, `camera-push-in`, `weft-transformer`,
/// several joined by `+`), `reason` (`gap`, `end-gap`, `retime` (frame-rate
/// conversion), `extend-forward`, `extend-backward`, `animate`), `frame-duration` (guint64
/// ns) and, except for `skip`, `seconds` (gdouble, wall time of the fill).
pub const FILL_MESSAGE: &str = "weft-fill";

/// Known frames a fill conditions on, on each side of the generated run.
pub const CONTEXT: usize = 2;

/// Known frames an extension conditions on: one more than [`CONTEXT`], so
/// the default model's motion prior can check on the third whether
/// continuing the motion beats holding the last frame.
pub const EXTEND_CONTEXT: usize = 3;

/// Buffers, events and fills queued between the sink pad and the src task.
const MAX_ITEMS: usize = 32;

pub fn register_meta() {
    if !gst::meta::CustomMeta::is_registered(GENERATED_META) {
        gst::meta::CustomMeta::register(GENERATED_META, &[]);
    }
}

/// The pixel formats every element accepts (and outputs unchanged).
pub fn video_caps() -> gst::Caps {
    use gst_video::VideoFormat::*;
    gst_video::VideoCapsBuilder::new().format_list([Rgb, Rgba, Bgrx, Bgra, I420, Nv12]).build()
}

// ---------------------------------------------------------------------------
// Model properties

pub const DEFAULT_STEPS: u32 = weft::tasks::DEFAULT_STEPS as u32;
pub const DEFAULT_SEED: u64 = 0;
pub const DEFAULT_DEVICE: &str = "cpu";

/// The properties every element has: which model, where, how many steps.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSettings {
    pub model_path: String,
    pub steps: u32,
    pub seed: u64,
    pub device: String,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self { model_path: String::new(), steps: DEFAULT_STEPS, seed: DEFAULT_SEED, device: DEFAULT_DEVICE.into() }
    }
}

pub fn model_properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("model-path")
            .nick("Model path")
            .blurb(
                "Directory holding config.json and model.safetensors of a weft model; \
                 empty uses the model embedded in the library",
            )
            .default_value(Some(""))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("steps")
            .nick("Steps")
            .blurb("Sampler steps per generated window (more is slower and finer)")
            .minimum(1)
            .maximum(1000)
            .default_value(DEFAULT_STEPS)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt64::builder("seed")
            .nick("Seed")
            .blurb("Seed of the sampling noise: the same seed and input give the same frames")
            .default_value(DEFAULT_SEED)
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("device")
            .nick("Device")
            .blurb("Where the model runs: cpu, cuda or cuda:N (CUDA needs a weft built with CUDA)")
            .default_value(Some(DEFAULT_DEVICE))
            .mutable_ready()
            .build(),
    ]
}

/// Sets one of the [`model_properties`]; false when `name` is not one.
pub fn set_model_property(s: &mut ModelSettings, name: &str, value: &glib::Value) -> bool {
    match name {
        "model-path" => s.model_path = value.get::<Option<String>>().expect("type checked").unwrap_or_default(),
        "steps" => s.steps = value.get().expect("type checked"),
        "seed" => s.seed = value.get().expect("type checked"),
        "device" => {
            s.device = value
                .get::<Option<String>>()
                .expect("type checked")
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_DEVICE.into())
        }
        _ => return false,
    }
    true
}

pub fn model_property(s: &ModelSettings, name: &str) -> Option<glib::Value> {
    Some(match name {
        "model-path" => s.model_path.to_value(),
        "steps" => s.steps.to_value(),
        "seed" => s.seed.to_value(),
        "device" => s.device.to_value(),
        _ => return None,
    })
}

/// The `frames` property of the elements that generate a set number of
/// frames: at least `minimum`, default `default`; overridden by `duration`.
pub fn frames_property(blurb: &str, minimum: u32, default: u32) -> glib::ParamSpec {
    glib::ParamSpecUInt::builder("frames")
        .nick("Frames")
        .blurb(blurb)
        .minimum(minimum)
        .maximum(100_000)
        .default_value(default)
        .mutable_ready()
        .build()
}

/// The `duration` property that overrides `frames`: nanoseconds, with
/// GST_CLOCK_TIME_NONE (the default) for unset.
pub fn duration_property(blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecUInt64::builder("duration")
        .nick("Duration")
        .blurb(blurb)
        .minimum(0)
        .maximum(u64::MAX)
        .default_value(u64::MAX)
        .mutable_ready()
        .build()
}

/// The value of a [`duration_property`]: `None` when unset.
pub fn duration_from_value(value: &glib::Value) -> Option<gst::ClockTime> {
    let ns: u64 = value.get().expect("type checked");
    (ns != u64::MAX).then(|| gst::ClockTime::from_nseconds(ns))
}

/// `duration` as the value of a [`duration_property`].
pub fn duration_to_value(duration: Option<gst::ClockTime>) -> glib::Value {
    duration.map_or(u64::MAX, |d| d.nseconds()).to_value()
}

/// The model of an element: checked when the element starts (device, model
/// directory, or the embedded model), its weights loaded on first use, on the
/// src task, so a stream that never needs a frame generated never pays for it.
pub struct LazyModel {
    path: String,
    device: candle_core::Device,
    model: std::sync::OnceLock<Result<Arc<weft::Model>, String>>,
}

impl LazyModel {
    /// The model, loading it on the first call.
    pub fn get(&self, element: &gst::Element) -> Result<Arc<weft::Model>, String> {
        self.model
            .get_or_init(|| {
                let t0 = Instant::now();
                let m = weft::Model::load_on(&self.path, &self.device)
                    .map_err(|e| format!("could not load the weft model from model-path {}: {e}", self.path))?;
                gst::info!(
                    CAT,
                    obj = element,
                    "loaded model {} ({} parameters) in {:.3} s",
                    self.path,
                    m.num_parameters(),
                    t0.elapsed().as_secs_f64()
                );
                Ok(Arc::new(m))
            })
            .clone()
    }
}

/// An element's model and the settings it was made for.
pub struct Engine {
    pub key: (String, String),
    pub model: Arc<LazyModel>,
}

/// Checks the model settings when an element starts (READY to PAUSED), reusing
/// `cached` when they did not change. On failure posts an ERROR message naming
/// the problem: an unknown device, no embedded model, a model-path that is not
/// a model directory.
pub fn load_engine(
    element: &gst::Element,
    s: &ModelSettings,
    cached: Option<&Engine>,
) -> Result<Engine, gst::StateChangeError> {
    let key = (s.model_path.clone(), s.device.clone());
    if let Some(e) = cached.filter(|e| e.key == key) {
        return Ok(Engine { key, model: e.model.clone() });
    }
    let device = match weft::model::parse_device(&s.device) {
        Ok(d) => d,
        Err(e) => {
            gst::element_error!(element, gst::LibraryError::Settings, ("Bad device property: {}", e));
            return Err(gst::StateChangeError);
        }
    };
    let lazy = LazyModel { path: s.model_path.clone(), device: device.clone(), model: std::sync::OnceLock::new() };
    if s.model_path.is_empty() {
        let embedded = weft::Model::embedded()
            .and_then(|m| if device.same_device(m.device()) { Ok(m) } else { m.to_device(&device) });
        match embedded {
            Ok(m) => {
                let _ = lazy.model.set(Ok(Arc::new(m)));
            }
            Err(e) => {
                gst::element_error!(
                    element,
                    gst::ResourceError::NotFound,
                    ("Could not load the weft model: model-path is empty and {}", e),
                    ["set model-path to a model directory (config.json + model.safetensors)"]
                );
                return Err(gst::StateChangeError);
            }
        }
    } else {
        let dir = std::path::Path::new(&s.model_path);
        let problem = if !dir.is_dir() {
            Some("no such directory".to_string())
        } else {
            ["config.json", "model.safetensors"]
                .iter()
                .find(|f| !dir.join(f).is_file())
                .map(|f| format!("{f} is missing (a weft model directory holds config.json and model.safetensors)"))
        };
        if let Some(problem) = problem {
            gst::element_error!(
                element,
                gst::ResourceError::NotFound,
                ("Could not load the weft model from model-path {}: {}", s.model_path, problem)
            );
            return Err(gst::StateChangeError);
        }
    }
    Ok(Engine { key, model: Arc::new(lazy) })
}

pub fn generate_options(s: &ModelSettings) -> weft::GenerateOptions {
    weft::GenerateOptions {
        steps: s.steps as usize,
        seed: s.seed,
        device: None,
        window: None,
        context: CONTEXT,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// Timing helpers

/// Duration of one frame: from the caps' frame rate, else from the buffer.
pub fn frame_duration(info: &gst_video::VideoInfo, buffer: Option<&gst::BufferRef>) -> Option<gst::ClockTime> {
    let fps = info.fps();
    if fps.numer() > 0 && fps.denom() > 0 {
        gst::ClockTime::SECOND.mul_div_round(fps.denom() as u64, fps.numer() as u64).filter(|d| !d.is_zero())
    } else {
        buffer.and_then(|b| b.duration()).filter(|d| !d.is_zero())
    }
}

/// Duration of one frame of a stream: from the caps' frame rate, else
/// `last`, the one its buffers had.
pub fn stream_frame_duration(
    info: Option<&gst_video::VideoInfo>,
    last: Option<gst::ClockTime>,
) -> Option<gst::ClockTime> {
    info.and_then(|i| frame_duration(i, None)).or(last)
}

/// Frames of `dur` to generate: `duration` rounded up to whole frames when
/// set, else `frames`.
pub fn frame_count(duration: Option<gst::ClockTime>, frames: u32, dur: gst::ClockTime) -> u64 {
    match duration {
        Some(d) => d.nseconds().div_ceil(dur.nseconds()),
        None => frames as u64,
    }
}

/// Latency a fill adds by waiting for its context: all but one of
/// [`CONTEXT`] frames of `dur` (nothing when the frame duration is unknown).
pub fn context_latency(dur: Option<gst::ClockTime>) -> gst::ClockTime {
    dur.unwrap_or(gst::ClockTime::ZERO) * (CONTEXT as u64 - 1)
}

/// Number of whole frames of `dur` in `span`, rounded to nearest.
pub fn frames_in(span: gst::ClockTime, dur: gst::ClockTime) -> u64 {
    (span.nseconds() + dur.nseconds() / 2) / dur.nseconds()
}

pub fn post_fill_message(
    element: &gst::Element,
    start: gst::ClockTime,
    count: usize,
    method: &str,
    reason: &str,
    dur: gst::ClockTime,
    seconds: Option<f64>,
) {
    let mut s = gst::Structure::builder(FILL_MESSAGE)
        .field("start", start.nseconds())
        .field("count", count as u32)
        .field("method", method)
        .field("reason", reason)
        .field("frame-duration", dur.nseconds())
        .build();
    if let Some(secs) = seconds {
        s.set("seconds", secs);
    }
    let _ = element.post_message(gst::message::Element::builder(s).src(element).build());
}

// ---------------------------------------------------------------------------
// Pixel conversion

/// Converts between the negotiated format and weft's packed RGB.
pub struct Converter {
    info: gst_video::VideoInfo,
    rgb: gst_video::VideoInfo,
    to_rgb: gst_video::VideoConverter,
    from_rgb: gst_video::VideoConverter,
}

impl Converter {
    pub fn new(info: &gst_video::VideoInfo) -> Result<Self, String> {
        let rgb = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, info.width(), info.height())
            .fps(info.fps())
            .par(info.par())
            .interlace_mode(info.interlace_mode())
            .build()
            .map_err(|e| format!("no RGB layout for {}x{}: {e}", info.width(), info.height()))?;
        let to_rgb = gst_video::VideoConverter::new(info, &rgb, None)
            .map_err(|e| format!("cannot convert {:?} to RGB: {e}", info.format()))?;
        let from_rgb = gst_video::VideoConverter::new(&rgb, info, None)
            .map_err(|e| format!("cannot convert RGB to {:?}: {e}", info.format()))?;
        Ok(Self { info: info.clone(), rgb, to_rgb, from_rgb })
    }

    /// The frame in `buffer` as packed RGB.
    pub fn to_frame(&self, buffer: &gst::BufferRef) -> Result<weft::Frame, String> {
        let src = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &self.info)
            .map_err(|e| format!("cannot map a {:?} buffer of {} bytes: {e}", self.info.format(), buffer.size()))?;
        let mut out = gst::Buffer::with_size(self.rgb.size()).map_err(|e| e.to_string())?;
        let (w, h) = (self.info.width() as usize, self.info.height() as usize);
        let mut packed = Vec::with_capacity(w * h * 3);
        {
            let out = out.get_mut().expect("new buffer is writable");
            let mut dst =
                gst_video::VideoFrameRef::from_buffer_ref_writable(out, &self.rgb).map_err(|e| e.to_string())?;
            self.to_rgb.frame_ref(&src, &mut dst);
            let stride = dst.plane_stride()[0] as usize;
            let data = dst.plane_data(0).map_err(|e| e.to_string())?;
            for y in 0..h {
                packed.extend_from_slice(&data[y * stride..y * stride + w * 3]);
            }
        }
        weft::Frame::from_rgb(w, h, packed).map_err(|e| e.to_string())
    }

    /// A new buffer in the negotiated format holding `frame`.
    pub fn from_frame(&self, frame: &weft::Frame) -> Result<gst::Buffer, String> {
        let (w, h) = (self.info.width() as usize, self.info.height() as usize);
        if (frame.width(), frame.height()) != (w, h) {
            return Err(format!("generated frame is {}x{}, the stream is {w}x{h}", frame.width(), frame.height()));
        }
        let mut rgb = gst::Buffer::with_size(self.rgb.size()).map_err(|e| e.to_string())?;
        {
            let rgb = rgb.get_mut().expect("new buffer is writable");
            let mut f =
                gst_video::VideoFrameRef::from_buffer_ref_writable(rgb, &self.rgb).map_err(|e| e.to_string())?;
            let stride = f.plane_stride()[0] as usize;
            let data = f.plane_data_mut(0).map_err(|e| e.to_string())?;
            for (y, row) in frame.data().chunks_exact(w * 3).enumerate() {
                data[y * stride..y * stride + w * 3].copy_from_slice(row);
            }
        }
        let mut out = gst::Buffer::with_size(self.info.size()).map_err(|e| e.to_string())?;
        {
            let src = gst_video::VideoFrameRef::from_buffer_ref_readable(rgb.as_ref(), &self.rgb)
                .map_err(|e| e.to_string())?;
            let out = out.get_mut().expect("new buffer is writable");
            let mut dst =
                gst_video::VideoFrameRef::from_buffer_ref_writable(out, &self.info).map_err(|e| e.to_string())?;
            self.from_rgb.frame_ref(&src, &mut dst);
        }
        Ok(out)
    }
}

/// Marks a generated buffer: custom meta, timestamps.
fn mark_generated(buffer: &mut gst::BufferRef, pts: gst::ClockTime, dur: gst::ClockTime, method: &str, index: usize) {
    buffer.set_pts(pts);
    buffer.set_dts(gst::ClockTime::NONE);
    buffer.set_duration(dur);
    buffer.set_offset(gst::ffi::GST_BUFFER_OFFSET_NONE);
    buffer.set_offset_end(gst::ffi::GST_BUFFER_OFFSET_NONE);
    buffer.unset_flags(gst::BufferFlags::DISCONT | gst::BufferFlags::DELTA_UNIT | gst::BufferFlags::HEADER);
    if let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, GENERATED_META) {
        let s = meta.mut_structure();
        s.set("method", method);
        s.set("index", index as u32);
    }
}

/// True when `buffer` was generated by a weft element.
pub fn is_generated(buffer: &gst::BufferRef) -> bool {
    gst::meta::CustomMeta::from_buffer(buffer, GENERATED_META).is_ok()
}

// ---------------------------------------------------------------------------
// Fill jobs

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
enum Stop {
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

    fn run(
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
            srcpad.push(buffer).map(|_| ()).map_err(Stop::Flow)
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
        let mut held: Vec<(i64, gst::Buffer)> = Vec::new();
        let mut opts = self.opts.clone();
        // Different noise for every fill, reproducible for the same stream.
        opts.seed = opts.seed.wrapping_add(self.start.nseconds() / self.dur.nseconds().max(1));
        let report = weft::run_plan(&model, &plan, &opts, |pos, frame| -> Result<(), Stop> {
            if cancel.load(Ordering::SeqCst) {
                return Err(Stop::Flow(gst::FlowError::Flushing));
            }
            let mut b = conv.from_frame(&frame).map_err(Stop::Failed)?;
            mark_generated(
                b.get_mut().expect("new buffer is writable"),
                self.start + self.dur * pos as u64,
                self.dur,
                "generate",
                pos as usize,
            );
            gst::trace!(CAT, obj = element, "generated frame {} of the fill at {}", pos, self.start);
            if streaming {
                push(b)?;
            } else {
                held.push((pos, b));
            }
            Ok(())
        })?;
        held.sort_by_key(|(p, _)| *p);
        for (_, b) in held {
            push(b)?;
        }
        Ok(report.method_names())
    }
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
    fn run(
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
            srcpad.push(buffer).map(|_| ()).map_err(Stop::Flow)
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
        let mut held: Vec<(usize, gst::Buffer)> = Vec::new();
        let report = weft::run_plan(&model, &plan, &self.opts, |pos, frame| -> Result<(), Stop> {
            if cancel.load(Ordering::SeqCst) {
                return Err(Stop::Flow(gst::FlowError::Flushing));
            }
            let (i, s) =
                *index.get(&pos).ok_or_else(|| Stop::Failed(format!("a frame at unplanned position {pos}")))?;
            let mut b = conv.from_frame(&frame).map_err(Stop::Failed)?;
            mark_generated(b.get_mut().expect("new buffer is writable"), s.pts, s.duration, "generate", i);
            if streaming {
                push(b)?;
            } else {
                held.push((i, b));
            }
            Ok(())
        })?;
        held.sort_by_key(|(i, _)| *i);
        for (_, b) in held {
            push(b)?;
        }
        Ok(report.method_names())
    }
}

// ---------------------------------------------------------------------------
// The queue between the sink pad and the src-pad task

pub enum Item {
    Buffer(gst::Buffer),
    Event(gst::Event),
    Fill(Box<FillJob>),
    Plan(Box<PlanJob>),
}

/// How a src-task item failed: the flow return handed back upstream and,
/// for a failed fill (or a panic), the error to post. The flow return is
/// recorded before posting, so whoever sees the error message and pushes
/// again is refused with it.
struct TaskError {
    flow: gst::FlowError,
    message: Option<String>,
}

struct Queue {
    items: VecDeque<Item>,
    flushing: bool,
    /// Last flow return of the src task, handed back to upstream.
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// The task is working on an item it took off the queue.
    busy: bool,
    /// Someone waits for the queue to drain: fills stop waiting for context.
    draining: usize,
}

/// Items flow from the sink pad's streaming thread to the src-pad task in
/// order; generation runs on the task so upstream is never blocked by it
/// (beyond the queue's bound).
pub struct Worker {
    queue: Mutex<Queue>,
    cond: Condvar,
    cancel: AtomicBool,
}

impl Default for Worker {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                flushing: true,
                flow: Ok(gst::FlowSuccess::Ok),
                busy: false,
                draining: 0,
            }),
            cond: Condvar::new(),
            cancel: AtomicBool::new(true),
        }
    }
}

impl Worker {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an item for the src task, waiting while the queue is full.
    /// Returns the task's last flow error, if any.
    pub fn enqueue(&self, item: Item) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut q = self.lock();
        loop {
            if q.flushing {
                return Err(gst::FlowError::Flushing);
            }
            q.flow?;
            if q.items.len() < MAX_ITEMS {
                break;
            }
            q = self.cond.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.items.push_back(item);
        self.cond.notify_all();
        Ok(gst::FlowSuccess::Ok)
    }

    /// FLUSH_START / deactivation: drop everything queued, wake everyone,
    /// make a running fill stop at its next frame.
    pub fn start_flushing(&self) {
        let mut q = self.lock();
        q.flushing = true;
        q.items.clear();
        self.cancel.store(true, Ordering::SeqCst);
        self.cond.notify_all();
    }

    /// FLUSH_STOP / activation: an empty queue accepting data again.
    pub fn stop_flushing(&self) {
        let mut q = self.lock();
        q.flushing = false;
        q.items.clear();
        q.flow = Ok(gst::FlowSuccess::Ok);
        self.cancel.store(false, Ordering::SeqCst);
        self.cond.notify_all();
    }

    /// Waits until everything queued has been pushed (serialized queries).
    pub fn wait_drained(&self) {
        let mut q = self.lock();
        q.draining += 1;
        self.cond.notify_all();
        while (!q.items.is_empty() || q.busy) && !q.flushing && q.flow.is_ok() {
            q = self.cond.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.draining -= 1;
    }

    /// Starts the src-pad task that empties the queue.
    pub fn start_task(self: &Arc<Self>, element: &gst::Element, srcpad: &gst::Pad) -> Result<(), glib::BoolError> {
        let worker = self.clone();
        let element = element.downgrade();
        let pad = srcpad.downgrade();
        srcpad.start_task(move || {
            let (Some(element), Some(pad)) = (element.upgrade(), pad.upgrade()) else { return };
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| worker.iterate(&element, &pad)));
            if r.is_err() {
                let failed = TaskError {
                    flow: gst::FlowError::Error,
                    message: Some("weft: internal error (panic) in the src task".into()),
                };
                worker.item_done(&element, &pad, Err(failed));
            }
        })
    }

    /// One iteration of the src task: takes one item and pushes it.
    fn iterate(&self, element: &gst::Element, srcpad: &gst::Pad) {
        let item = {
            let mut q = self.lock();
            loop {
                if q.flushing {
                    drop(q);
                    let _ = srcpad.pause_task();
                    return;
                }
                if let Some(Item::Fill(job)) = q.items.front() {
                    let want = job.want_after;
                    if want > 0 {
                        let mut have = 0;
                        let mut closed = q.draining > 0 || q.items.len() >= MAX_ITEMS;
                        for it in q.items.iter().skip(1) {
                            if let Item::Buffer(_) = it {
                                have += 1;
                                if have >= want {
                                    break;
                                }
                            } else {
                                closed = true;
                                break;
                            }
                        }
                        if have < want && !closed {
                            q = self.cond.wait(q).unwrap_or_else(|e| e.into_inner());
                            continue;
                        }
                        let after: Vec<gst::Buffer> = q
                            .items
                            .iter()
                            .skip(1)
                            .map_while(|it| if let Item::Buffer(b) = it { Some(b.clone()) } else { None })
                            .take(want)
                            .collect();
                        if let Some(Item::Fill(job)) = q.items.front_mut() {
                            job.after = after;
                        }
                    }
                }
                if let Some(item) = q.items.pop_front() {
                    q.busy = true;
                    self.cond.notify_all();
                    break item;
                }
                q = self.cond.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };

        let res = match item {
            Item::Buffer(b) => srcpad.push(b).map_err(|flow| TaskError { flow, message: None }),
            Item::Event(e) => {
                let is_eos = e.type_() == gst::EventType::Eos;
                if !srcpad.push_event(e) && is_eos {
                    gst::debug!(CAT, obj = element, "EOS not handled downstream");
                }
                Ok(gst::FlowSuccess::Ok)
            }
            Item::Fill(job) => job.run(element, srcpad, &self.cancel),
            Item::Plan(job) => job.run(element, srcpad, &self.cancel),
        };
        self.item_done(element, srcpad, res);
    }

    /// The task is done with an item. On failure the flow return is recorded
    /// for upstream first; only then is the error posted and the task paused.
    fn item_done(&self, element: &gst::Element, srcpad: &gst::Pad, res: Result<gst::FlowSuccess, TaskError>) {
        let mut q = self.lock();
        q.busy = false;
        if let Err(TaskError { flow: err, message }) = res {
            let flushing = q.flushing;
            q.flow = Err(err);
            self.cond.notify_all();
            drop(q);
            gst::debug!(CAT, obj = element, "src task pausing: {:?}", err);
            if let Some(msg) = message {
                gst::element_error!(element, gst::StreamError::Failed, ("{}", msg));
            } else if !flushing && matches!(err, gst::FlowError::NotLinked | gst::FlowError::NotNegotiated) {
                gst::element_error!(
                    element,
                    gst::StreamError::Failed,
                    ("Internal data stream error."),
                    ["streaming stopped, reason {:?}", err]
                );
                let _ = srcpad.push_event(gst::event::Eos::new());
            }
            let _ = srcpad.pause_task();
        } else {
            self.cond.notify_all();
        }
    }
}

/// Shared src-pad activation: start the task on activation, stop and join it
/// on deactivation.
pub fn activate_src(
    worker: &Arc<Worker>,
    element: &gst::Element,
    pad: &gst::Pad,
    mode: gst::PadMode,
    active: bool,
) -> Result<(), gst::LoggableError> {
    if mode != gst::PadMode::Push {
        return Err(gst::loggable_error!(CAT, "weft elements only work in push mode"));
    }
    if active {
        worker.stop_flushing();
        worker.start_task(element, pad).map_err(|e| gst::loggable_error!(CAT, "cannot start the src task: {}", e))
    } else {
        worker.start_flushing();
        pad.stop_task().map_err(|e| gst::loggable_error!(CAT, "cannot stop the src task: {}", e))
    }
}

/// Shared FLUSH_START / FLUSH_STOP handling. Returns whether the event was
/// forwarded downstream.
pub fn handle_flush(worker: &Arc<Worker>, element: &gst::Element, srcpad: &gst::Pad, event: gst::Event) -> bool {
    match event.view() {
        gst::EventView::FlushStart(_) => {
            worker.start_flushing();
            let ret = srcpad.push_event(event);
            let _ = srcpad.pause_task();
            ret
        }
        gst::EventView::FlushStop(_) => {
            worker.stop_flushing();
            let ret = srcpad.push_event(event);
            if let Err(e) = worker.start_task(element, srcpad) {
                gst::error!(CAT, obj = element, "cannot restart the src task: {}", e);
                return false;
            }
            ret
        }
        _ => unreachable!("handle_flush called with {:?}", event.type_()),
    }
}

/// LATENCY query on a src pad: upstream's latency plus `added`.
pub fn query_latency(sinkpad: &gst::Pad, query: &mut gst::QueryRef, added: gst::ClockTime) -> bool {
    let gst::QueryViewMut::Latency(q) = query.view_mut() else { return false };
    let mut upstream = gst::query::Latency::new();
    if !sinkpad.peer_query(&mut upstream) {
        return false;
    }
    let (live, min, max) = upstream.result();
    q.set(live, min + added, max.map(|m| m + added));
    true
}
