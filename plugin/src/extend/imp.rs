//! weftextend: passes the stream through; at EOS (forward) generates more
//! frames after the last one before forwarding EOS; at the first buffer
//! (backward) generates frames before it and shifts the originals' times by
//! the prepended duration.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use once_cell::sync::Lazy;

use super::ExtendDirection;
use crate::common::{self, CAT, Engine, FillJob, Item, ModelSettings, Worker};

const DEFAULT_FRAMES: u32 = 25;

#[derive(Clone, Debug)]
struct Settings {
    model: ModelSettings,
    frames: u32,
    duration: Option<gst::ClockTime>,
    direction: ExtendDirection,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: ModelSettings::default(),
            frames: DEFAULT_FRAMES,
            duration: None,
            direction: ExtendDirection::Forward,
        }
    }
}

impl Settings {
    /// Frames to generate at each extended end.
    fn count(&self, dur: gst::ClockTime) -> u64 {
        match self.duration {
            Some(d) => d.nseconds().div_ceil(dur.nseconds()),
            None => self.frames as u64,
        }
    }
    fn backward(&self) -> bool {
        matches!(self.direction, ExtendDirection::Backward | ExtendDirection::Both)
    }
    fn forward(&self) -> bool {
        matches!(self.direction, ExtendDirection::Forward | ExtendDirection::Both)
    }
}

#[derive(Default)]
struct State {
    info: Option<gst_video::VideoInfo>,
    /// The last few (shifted) originals: context for the forward extension.
    history: VecDeque<gst::Buffer>,
    next_pts: Option<gst::ClockTime>,
    dur: Option<gst::ClockTime>,
    /// The backward extension has been queued (or was not wanted).
    backward_done: bool,
    /// How much later originals are pushed (backward extension).
    shift: gst::ClockTime,
}

pub struct WeftExtend {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    engine: Mutex<Option<Engine>>,
    worker: Arc<Worker>,
}

impl WeftExtend {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settings(&self) -> Settings {
        self.settings.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[allow(clippy::too_many_arguments)]
    fn job(
        &self,
        settings: &Settings,
        info: &gst_video::VideoInfo,
        before: Vec<gst::Buffer>,
        want_after: usize,
        start: gst::ClockTime,
        dur: gst::ClockTime,
        n: u64,
        reason: &'static str,
    ) -> Option<Item> {
        let model = self.engine.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|e| e.model.clone())?;
        gst::info!(CAT, imp = self, "{}: {} frame(s) at {}", reason, n, start);
        Some(Item::Fill(Box::new(FillJob {
            model,
            opts: common::generate_options(&settings.model),
            info: info.clone(),
            before,
            after: Vec::new(),
            want_after,
            start,
            dur,
            n: n as usize,
            scene_threshold: None,
            reason,
        })))
    }

    fn sink_chain(&self, _pad: &gst::Pad, mut buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings();
        let mut fill = None;
        {
            let mut st = self.lock_state();
            let Some(info) = st.info.clone() else {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("received a buffer before caps"));
                return Err(gst::FlowError::NotNegotiated);
            };
            let dur = common::frame_duration(&info, Some(&buffer));
            if let (Some(pts), Some(dur)) = (buffer.pts(), dur) {
                if !st.backward_done {
                    st.backward_done = true;
                    if settings.backward() {
                        let n = settings.count(dur);
                        if n > 0 {
                            st.shift = dur * n;
                            fill =
                                self.job(&settings, &info, Vec::new(), common::CONTEXT, pts, dur, n, "extend-backward");
                        }
                    }
                }
                st.dur = Some(dur);
            }
            if !st.shift.is_zero() {
                // Same memory, later timestamps.
                let shift = st.shift;
                let b = buffer.make_mut();
                if let Some(p) = b.pts() {
                    b.set_pts(p + shift);
                }
                if let Some(d) = b.dts() {
                    b.set_dts(d + shift);
                }
            }
            if let (Some(pts), Some(dur)) = (buffer.pts(), st.dur) {
                st.next_pts = Some(st.next_pts.map_or(pts + dur, |n| n.max(pts + dur)));
                st.history.push_back(buffer.clone());
                while st.history.len() > common::CONTEXT {
                    st.history.pop_front();
                }
            }
        }
        if let Some(fill) = fill {
            self.worker.enqueue(fill)?;
        }
        self.worker.enqueue(Item::Buffer(buffer))
    }

    fn sink_event(&self, pad: &gst::Pad, mut event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "handling {:?}", event);
        let mut replace = None;
        match event.view() {
            EventView::FlushStart(_) => {
                return common::handle_flush(&self.worker, self.obj().upcast_ref(), &self.srcpad, event);
            }
            EventView::FlushStop(_) => {
                {
                    let mut st = self.lock_state();
                    st.history.clear();
                    st.next_pts = None;
                }
                return common::handle_flush(&self.worker, self.obj().upcast_ref(), &self.srcpad, event);
            }
            EventView::StreamStart(_) => {
                let mut st = self.lock_state();
                let info = st.info.take();
                *st = State { info, ..State::default() };
            }
            EventView::Caps(c) => match gst_video::VideoInfo::from_caps(c.caps()) {
                Ok(info) => {
                    let mut st = self.lock_state();
                    st.history.clear();
                    st.info = Some(info);
                }
                Err(e) => {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        ("unsupported caps {}: {}", c.caps(), e)
                    );
                    return false;
                }
            },
            EventView::Segment(s) => {
                let settings = self.settings();
                let Ok(mut seg) = s.segment().clone().downcast::<gst::ClockTime>() else {
                    gst::element_imp_error!(self, gst::StreamError::Format, ("weftextend needs a TIME segment"));
                    return false;
                };
                // A bounded segment grows by what is added at both ends.
                let st = self.lock_state();
                let dur = st.info.as_ref().and_then(|i| common::frame_duration(i, None));
                if let (Some(stop), Some(dur)) = (seg.stop(), dur) {
                    let mut add = gst::ClockTime::ZERO;
                    if settings.backward() {
                        add += dur * settings.count(dur);
                    }
                    if settings.forward() {
                        add += dur * settings.count(dur);
                    }
                    seg.set_stop(stop + add);
                    if let Some(d) = seg.duration() {
                        seg.set_duration(d + add);
                    }
                    replace = Some(gst::event::Segment::builder(&seg).seqnum(event.seqnum()).build());
                }
            }
            EventView::Eos(_) => {
                let settings = self.settings();
                let fill = {
                    let st = self.lock_state();
                    match (settings.forward(), st.info.as_ref(), st.next_pts, st.dur) {
                        (true, Some(info), Some(next), Some(dur)) => {
                            let n = settings.count(dur);
                            if n > 0 {
                                self.job(
                                    &settings,
                                    info,
                                    st.history.iter().cloned().collect(),
                                    0,
                                    next,
                                    dur,
                                    n,
                                    "extend-forward",
                                )
                            } else {
                                None
                            }
                        }
                        (true, ..) => {
                            gst::warning!(CAT, imp = self, "EOS before any timestamped frame: nothing to extend");
                            None
                        }
                        _ => None,
                    }
                };
                if let Some(fill) = fill
                    && self.worker.enqueue(fill).is_err()
                {
                    return false;
                }
            }
            _ => {}
        }
        if let Some(e) = replace {
            event = e;
        }
        if event.is_serialized() {
            self.worker.enqueue(Item::Event(event)).is_ok()
        } else {
            self.srcpad.push_event(event)
        }
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if query.is_serialized() {
            self.worker.wait_drained();
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(_) = query.view_mut() {
            // Backward: the first originals wait for the frames put before them.
            let added = if self.settings().backward() {
                let st = self.lock_state();
                st.info
                    .as_ref()
                    .and_then(|i| common::frame_duration(i, None))
                    .or(st.dur)
                    .unwrap_or(gst::ClockTime::ZERO)
                    * (common::CONTEXT as u64 - 1)
            } else {
                gst::ClockTime::ZERO
            };
            return common::query_latency(&self.sinkpad, query, added);
        }
        if let gst::QueryViewMut::Duration(_) = query.view_mut() {
            // Upstream's duration plus what is generated.
            if !self.sinkpad.peer_query(query) {
                return false;
            }
            let settings = self.settings();
            let dur = {
                let st = self.lock_state();
                st.info.as_ref().and_then(|i| common::frame_duration(i, None)).or(st.dur)
            };
            if let (gst::QueryViewMut::Duration(q), Some(dur)) = (query.view_mut(), dur)
                && let gst::GenericFormattedValue::Time(Some(d)) = q.result()
            {
                let ends = settings.backward() as u64 + settings.forward() as u64;
                q.set(d + dur * (settings.count(dur) * ends));
            }
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for WeftExtend {
    const NAME: &'static str = "GstWeftExtend";
    type Type = super::WeftExtend;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").expect("sink template");
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                WeftExtend::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                WeftExtend::catch_panic_pad_function(parent, || false, |imp| imp.sink_event(pad, event))
            })
            .query_function(|pad, parent, query| {
                WeftExtend::catch_panic_pad_function(parent, || false, |imp| imp.sink_query(pad, query))
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        let templ = klass.pad_template("src").expect("src template");
        let srcpad = gst::Pad::builder_from_template(&templ)
            .activatemode_function(|pad, parent, mode, active| {
                WeftExtend::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "panic activating the src pad")),
                    |imp| common::activate_src(&imp.worker, imp.obj().upcast_ref(), pad, mode, active),
                )
            })
            .query_function(|pad, parent, query| {
                WeftExtend::catch_panic_pad_function(parent, || false, |imp| imp.src_query(pad, query))
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        Self {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            engine: Mutex::new(None),
            worker: Arc::new(Worker::default()),
        }
    }
}

impl ObjectImpl for WeftExtend {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
            let mut v = common::model_properties();
            v.push(
                glib::ParamSpecUInt::builder("frames")
                    .nick("Frames")
                    .blurb("Frames to generate at each extended end (ignored when duration is set)")
                    .minimum(0)
                    .maximum(100_000)
                    .default_value(DEFAULT_FRAMES)
                    .mutable_ready()
                    .build(),
            );
            v.push(
                glib::ParamSpecUInt64::builder("duration")
                    .nick("Duration")
                    .blurb(
                        "Time to generate at each extended end in nanoseconds, rounded up to whole \
                         frames; overrides frames (GST_CLOCK_TIME_NONE = unset: use frames)",
                    )
                    .minimum(0)
                    .maximum(u64::MAX)
                    .default_value(u64::MAX)
                    .mutable_ready()
                    .build(),
            );
            v.push(
                glib::ParamSpecEnum::builder_with_default("direction", ExtendDirection::Forward)
                    .nick("Direction")
                    .blurb(
                        "Which end to extend: forward generates after the last frame before EOS, \
                         backward before the first one and shifts the originals' times by the \
                         prepended duration, both does both",
                    )
                    .mutable_ready()
                    .build(),
            );
            v
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        if common::set_model_property(&mut s.model, pspec.name(), value) {
            return;
        }
        match pspec.name() {
            "frames" => s.frames = value.get().expect("type checked"),
            "duration" => {
                let ns: u64 = value.get().expect("type checked");
                s.duration = (ns != u64::MAX).then(|| gst::ClockTime::from_nseconds(ns));
            }
            "direction" => s.direction = value.get().expect("type checked"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = common::model_property(&s.model, pspec.name()) {
            return v;
        }
        match pspec.name() {
            "frames" => s.frames.to_value(),
            "duration" => s.duration.map_or(u64::MAX, |d| d.nseconds()).to_value(),
            "direction" => s.direction.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("add sink pad");
        obj.add_pad(&self.srcpad).expect("add src pad");
    }
}

impl GstObjectImpl for WeftExtend {}

impl ElementImpl for WeftExtend {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Weft clip extension",
                "Filter/Effect/Video",
                "Passes a video stream through and generates more frames after its end (before \
                 EOS) and/or before its start with weft's diffusion transformer. Generated \
                 buffers carry a WeftGeneratedMeta",
                "weft developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: Lazy<Vec<gst::PadTemplate>> = Lazy::new(|| {
            let caps = common::video_caps();
            vec![
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).expect("src"),
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps).expect("sink"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            let settings = self.settings();
            let mut engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
            let loaded = common::load_engine(self.obj().upcast_ref(), &settings.model, engine.as_ref())?;
            *engine = Some(loaded);
            *self.lock_state() = State::default();
        }
        let ret = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::PausedToReady => *self.lock_state() = State::default(),
            gst::StateChange::ReadyToNull => *self.engine.lock().unwrap_or_else(|e| e.into_inner()) = None,
            _ => {}
        }
        Ok(ret)
    }
}
