//! weftinfill: compares each buffer's PTS with where the negotiated frame rate
//! says the next frame should be; a hole of up to `max-gap` frames becomes a
//! fill job queued in front of the buffer after the hole. The src-pad task
//! waits for a second frame after the hole (context), generates the missing
//! frames, pushes them, then the queued originals.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use once_cell::sync::Lazy;

use crate::common::{self, CAT, Engine, FillJob, Item, ModelSettings, Worker};

const DEFAULT_MAX_GAP: u32 = 30;
const DEFAULT_SCENE_THRESHOLD: f64 = weft::analysis::DEFAULT_SCENE_THRESHOLD;

#[derive(Clone, Debug)]
struct Settings {
    model: ModelSettings,
    max_gap: u32,
    scene_threshold: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { model: ModelSettings::default(), max_gap: DEFAULT_MAX_GAP, scene_threshold: DEFAULT_SCENE_THRESHOLD }
    }
}

/// Sink-side view of the stream.
struct State {
    info: Option<gst_video::VideoInfo>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// The last few original buffers (context before a gap).
    history: VecDeque<gst::Buffer>,
    /// Where the next frame should start.
    next_pts: Option<gst::ClockTime>,
    /// End of the last GAP event.
    gap_end: Option<gst::ClockTime>,
    /// Frame duration of the last buffer.
    dur: Option<gst::ClockTime>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            info: None,
            segment: gst::FormattedSegment::new(),
            history: VecDeque::new(),
            next_pts: None,
            gap_end: None,
            dur: None,
        }
    }
}

pub struct WeftInfill {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    engine: Mutex<Option<Engine>>,
    worker: Arc<Worker>,
}

impl WeftInfill {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settings(&self) -> Settings {
        self.settings.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn model(&self) -> Option<Arc<common::LazyModel>> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|e| e.model.clone())
    }

    /// A fill for `n` frames from `start`, or a report when it is too long.
    #[allow(clippy::too_many_arguments)]
    fn gap_job(
        &self,
        settings: &Settings,
        info: &gst_video::VideoInfo,
        history: &VecDeque<gst::Buffer>,
        start: gst::ClockTime,
        dur: gst::ClockTime,
        n: u64,
        at_end: bool,
    ) -> Option<Item> {
        let reason = if at_end { "end-gap" } else { "gap" };
        if n > settings.max_gap as u64 {
            gst::warning!(
                CAT,
                imp = self,
                "{} of {} frame(s) at {} is longer than max-gap {}: passing it through",
                reason,
                n,
                start,
                settings.max_gap
            );
            common::post_fill_message(self.obj().upcast_ref(), start, n as usize, "skip", reason, dur, None);
            return None;
        }
        let Some(model) = self.model() else {
            gst::element_imp_error!(self, gst::CoreError::StateChange, ("no model loaded"));
            return None;
        };
        gst::info!(CAT, imp = self, "{}: {} frame(s) missing at {}", reason, n, start);
        Some(Item::Fill(Box::new(FillJob {
            model,
            opts: common::generate_options(&settings.model),
            info: info.clone(),
            before: history.iter().cloned().collect(),
            after: Vec::new(),
            want_after: if at_end { 0 } else { common::CONTEXT },
            start,
            dur,
            n: n as usize,
            scene_threshold: Some(settings.scene_threshold),
            reason,
        })))
    }

    fn sink_chain(&self, _pad: &gst::Pad, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings();
        let mut fill = None;
        {
            let mut st = self.lock_state();
            let Some(info) = st.info.clone() else {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("received a buffer before caps"));
                return Err(gst::FlowError::NotNegotiated);
            };
            // Without a nominal frame rate (0/1), the shortest buffer
            // duration seen so far: a buffer before a hole may span it.
            let dur = common::frame_duration(&info, None)
                .or_else(|| buffer.duration().filter(|d| !d.is_zero()).map(|d| st.dur.map_or(d, |s| s.min(d))));
            match (buffer.pts(), dur) {
                (Some(pts), Some(dur)) if st.segment.rate() > 0.0 => {
                    // The first buffer of a segment should sit at its start.
                    let expected = st.next_pts.or(st.segment.start());
                    if let Some(exp) = expected.filter(|e| pts > *e) {
                        let n = common::frames_in(pts - exp, dur);
                        if n > 0 {
                            gst::debug!(
                                CAT,
                                imp = self,
                                "buffer at {} expected at {}: {} frame(s) missing",
                                pts,
                                exp,
                                n
                            );
                            fill = self.gap_job(&settings, &info, &st.history, exp, dur, n, false);
                        }
                    }
                    st.next_pts = Some(st.next_pts.map_or(pts + dur, |n| n.max(pts + dur)));
                    st.dur = Some(dur);
                    st.history.push_back(buffer.clone());
                    while st.history.len() > common::CONTEXT {
                        st.history.pop_front();
                    }
                }
                _ => {
                    gst::log!(CAT, imp = self, "buffer without PTS or frame duration: passed through");
                }
            }
        }
        if let Some(fill) = fill {
            self.worker.enqueue(fill)?;
        }
        self.worker.enqueue(Item::Buffer(buffer))
    }

    /// At EOS: fill up to the end of the last GAP event.
    fn end_fill(&self) -> Option<Item> {
        let settings = self.settings();
        let st = self.lock_state();
        let (Some(gap_end), Some(info)) = (st.gap_end, st.info.as_ref()) else { return None };
        let dur = common::frame_duration(info, None).or(st.dur)?;
        let Some(next) = st.next_pts else {
            gst::warning!(CAT, imp = self, "GAP events but no frame to generate from: nothing filled");
            return None;
        };
        if gap_end <= next {
            return None;
        }
        let n = common::frames_in(gap_end - next, dur);
        if n == 0 {
            return None;
        }
        self.gap_job(&settings, info, &st.history, next, dur, n, true)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "handling {:?}", event);
        match event.view() {
            EventView::FlushStart(_) => {
                return common::handle_flush(&self.worker, self.obj().upcast_ref(), &self.srcpad, event);
            }
            EventView::FlushStop(_) => {
                {
                    let mut st = self.lock_state();
                    st.history.clear();
                    st.next_pts = None;
                    st.gap_end = None;
                }
                return common::handle_flush(&self.worker, self.obj().upcast_ref(), &self.srcpad, event);
            }
            EventView::StreamStart(_) => {
                let mut st = self.lock_state();
                st.history.clear();
                st.next_pts = None;
                st.gap_end = None;
            }
            EventView::Caps(c) => {
                let info = match gst_video::VideoInfo::from_caps(c.caps()) {
                    Ok(i) => i,
                    Err(e) => {
                        gst::element_imp_error!(
                            self,
                            gst::CoreError::Negotiation,
                            ("unsupported caps {}: {}", c.caps(), e)
                        );
                        return false;
                    }
                };
                gst::debug!(
                    CAT,
                    imp = self,
                    "caps {:?} {}x{} at {}",
                    info.format(),
                    info.width(),
                    info.height(),
                    info.fps()
                );
                let mut st = self.lock_state();
                // Frames of the old caps cannot condition frames of the new ones.
                st.history.clear();
                st.dur = None;
                st.info = Some(info);
            }
            EventView::Segment(s) => {
                let Ok(seg) = s.segment().clone().downcast::<gst::ClockTime>() else {
                    gst::element_imp_error!(self, gst::StreamError::Format, ("weftinfill needs a TIME segment"));
                    return false;
                };
                let mut st = self.lock_state();
                st.segment = seg;
                st.history.clear();
                st.next_pts = None;
                st.gap_end = None;
            }
            EventView::Gap(g) => {
                // Replaced by generated frames: holes show up in the next
                // buffer's PTS, or at EOS for a gap at the end.
                let (ts, d) = g.get();
                if let Some(d) = d {
                    let mut st = self.lock_state();
                    st.gap_end = Some(st.gap_end.map_or(ts + d, |e| e.max(ts + d)));
                    gst::debug!(CAT, imp = self, "GAP event {} + {}", ts, d);
                }
                return true;
            }
            EventView::Eos(_) => {
                if let Some(fill) = self.end_fill()
                    && self.worker.enqueue(fill).is_err()
                {
                    return false;
                }
                let mut st = self.lock_state();
                st.gap_end = None;
            }
            _ => {}
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
            // A fill waits for one more frame after the hole before it runs.
            let added = {
                let st = self.lock_state();
                st.info
                    .as_ref()
                    .and_then(|i| common::frame_duration(i, None))
                    .or(st.dur)
                    .unwrap_or(gst::ClockTime::ZERO)
                    * (common::CONTEXT as u64 - 1)
            };
            let ret = common::query_latency(&self.sinkpad, query, added);
            gst::debug!(CAT, imp = self, "latency query: added {} -> {:?}", added, query);
            return ret;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for WeftInfill {
    const NAME: &'static str = "GstWeftInfill";
    type Type = super::WeftInfill;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").expect("sink template");
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                WeftInfill::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                WeftInfill::catch_panic_pad_function(parent, || false, |imp| imp.sink_event(pad, event))
            })
            .query_function(|pad, parent, query| {
                WeftInfill::catch_panic_pad_function(parent, || false, |imp| imp.sink_query(pad, query))
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        let templ = klass.pad_template("src").expect("src template");
        let srcpad = gst::Pad::builder_from_template(&templ)
            .activatemode_function(|pad, parent, mode, active| {
                WeftInfill::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "panic activating the src pad")),
                    |imp| common::activate_src(&imp.worker, imp.obj().upcast_ref(), pad, mode, active),
                )
            })
            .query_function(|pad, parent, query| {
                WeftInfill::catch_panic_pad_function(parent, || false, |imp| imp.src_query(pad, query))
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

impl ObjectImpl for WeftInfill {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
            let mut v = common::model_properties();
            v.push(
                glib::ParamSpecUInt::builder("max-gap")
                    .nick("Maximum gap")
                    .blurb(
                        "Longest run of missing frames to generate; longer gaps pass through \
                         untouched and are reported in a weft-fill message with method=skip \
                         (0 = never generate)",
                    )
                    .minimum(0)
                    .maximum(100_000)
                    .default_value(DEFAULT_MAX_GAP)
                    .mutable_playing()
                    .build(),
            );
            v.push(
                glib::ParamSpecDouble::builder("scene-threshold")
                    .nick("Scene-cut threshold")
                    .blurb(
                        "Scene score (0 = same picture, 1 = unrelated) of the frames around a gap \
                         above which the gap is a cut: the last frame is held instead of \
                         generating across it (1 = never hold)",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_SCENE_THRESHOLD)
                    .mutable_playing()
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
            "max-gap" => s.max_gap = value.get().expect("type checked"),
            "scene-threshold" => s.scene_threshold = value.get().expect("type checked"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = common::model_property(&s.model, pspec.name()) {
            return v;
        }
        match pspec.name() {
            "max-gap" => s.max_gap.to_value(),
            "scene-threshold" => s.scene_threshold.to_value(),
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

impl GstObjectImpl for WeftInfill {}

impl ElementImpl for WeftInfill {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Weft frame infill",
                "Filter/Effect/Video",
                "Generates the frames missing from a video stream (holes in its timestamps or GAP \
                 events) with weft's diffusion transformer, so the output runs at a constant rate. \
                 Original buffers pass through unchanged; generated ones carry a WeftGeneratedMeta",
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
        gst::trace!(CAT, imp = self, "changing state {:?}", transition);
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
