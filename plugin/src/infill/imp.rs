//! weftinfill: compares each buffer's PTS with where the negotiated frame rate
//! says the next frame should be; a hole of up to `max-gap` frames becomes a
//! fill job queued in front of the buffer after the hole. The src-pad task
//! waits for a second frame after the hole (context), generates the missing
//! frames, pushes them, then the queued originals.

use std::collections::VecDeque;
use std::sync::Mutex;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use once_cell::sync::Lazy;

use crate::common::{self, CAT, FillJob, Item, ModelSettings};
use crate::element::{self, Core, WeftElementImpl};

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
    core: Core,
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

impl WeftInfill {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        element::lock(&self.state)
    }

    fn settings(&self) -> Settings {
        element::lock(&self.settings).clone()
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
        let Some(model) = self.core.model() else {
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
}

impl WeftElementImpl for WeftInfill {
    fn core(&self) -> &Core {
        &self.core
    }

    fn model_settings(&self) -> ModelSettings {
        self.settings().model
    }

    fn reset_state(&self) {
        *self.lock_state() = State::default();
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
            self.core.worker.enqueue(fill)?;
        }
        self.core.worker.enqueue(Item::Buffer(buffer))
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "handling {:?}", event);
        match event.view() {
            EventView::FlushStart(_) => {
                return self.core.handle_flush(self.obj().upcast_ref(), event);
            }
            EventView::FlushStop(_) => {
                {
                    let mut st = self.lock_state();
                    st.history.clear();
                    st.next_pts = None;
                    st.gap_end = None;
                }
                return self.core.handle_flush(self.obj().upcast_ref(), event);
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
                    && self.core.worker.enqueue(fill).is_err()
                {
                    return false;
                }
                let mut st = self.lock_state();
                st.gap_end = None;
            }
            _ => {}
        }
        self.core.forward_event(event)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(_) = query.view_mut() {
            // A fill waits for one more frame after the hole before it runs.
            let added = {
                let st = self.lock_state();
                common::context_latency(common::stream_frame_duration(st.info.as_ref(), st.dur))
            };
            let ret = common::query_latency(&self.core.sinkpad, query, added);
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
        Self {
            core: Core::new::<Self>(klass, gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION),
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
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
        let mut s = element::lock(&self.settings);
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
        let s = element::lock(&self.settings);
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
        self.core.add_pads(self.obj().upcast_ref());
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
        static TEMPLATES: Lazy<Vec<gst::PadTemplate>> = Lazy::new(element::pad_templates);
        TEMPLATES.as_ref()
    }

    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::trace!(CAT, imp = self, "changing state {:?}", transition);
        self.weft_change_state(transition)
    }
}
