//! weftextend: passes the stream through; at EOS (forward) generates more
//! frames after the last one before forwarding EOS; at the first buffer
//! (backward) generates frames before it and shifts the originals' times by
//! the prepended duration.

use std::collections::VecDeque;
use std::sync::Mutex;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use once_cell::sync::Lazy;

use super::ExtendDirection;
use crate::common::{self, CAT, FillJob, Item, ModelSettings};
use crate::element::{self, Core, WeftElementImpl};

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
        common::frame_count(self.duration, self.frames, dur)
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
    core: Core,
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

impl WeftExtend {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        element::lock(&self.state)
    }

    fn settings(&self) -> Settings {
        element::lock(&self.settings).clone()
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
        let model = self.core.model()?;
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
}

impl WeftElementImpl for WeftExtend {
    fn core(&self) -> &Core {
        &self.core
    }

    fn model_settings(&self) -> ModelSettings {
        self.settings().model
    }

    fn reset_state(&self) {
        *self.lock_state() = State::default();
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
                            let want = self.core.context().extend;
                            fill = self.job(&settings, &info, Vec::new(), want, pts, dur, n, "extend-backward");
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
                while st.history.len() > self.core.context().extend {
                    st.history.pop_front();
                }
            }
        }
        if let Some(fill) = fill {
            self.core.worker.enqueue(fill)?;
        }
        self.core.worker.enqueue(Item::Buffer(buffer))
    }

    fn sink_event(&self, pad: &gst::Pad, mut event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "handling {:?}", event);
        // Streaming, not in a state change: NLE drops a child's ERROR there.
        if let gst::EventView::Caps(_) = event.view()
            && let Some(nle) = common::editing_timeline(self.obj().upcast_ref())
        {
            gst::element_imp_error!(
                self,
                gst::CoreError::NotImplemented,
                ("weftextend cannot lengthen a clip in a GES timeline (GStreamer Editing Services, Pitivi; \
                 it is inside a {}): a clip plays no longer than its media, so the frames it adds would \
                 be cut. Extend the file instead (weft extend IN -o OUT --seconds N) and import the \
                 longer file",
                    nle)
            );
            return false;
        }
        let mut replace = None;
        match event.view() {
            EventView::FlushStart(_) => {
                return self.core.handle_flush(self.obj().upcast_ref(), event);
            }
            EventView::FlushStop(_) => {
                {
                    let mut st = self.lock_state();
                    st.history.clear();
                    st.next_pts = None;
                }
                return self.core.handle_flush(self.obj().upcast_ref(), event);
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
                    && self.core.worker.enqueue(fill).is_err()
                {
                    return false;
                }
            }
            _ => {}
        }
        if let Some(e) = replace {
            event = e;
        }
        self.core.forward_event(event)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(_) = query.view_mut() {
            // Backward: the first originals wait for the frames put before
            // them, which wait for the model's context for an extension.
            let added = if self.settings().backward() {
                let st = self.lock_state();
                let dur = common::stream_frame_duration(st.info.as_ref(), st.dur);
                common::context_latency(dur, self.core.context().extend)
            } else {
                gst::ClockTime::ZERO
            };
            return common::query_latency(&self.core.sinkpad, query, added);
        }
        if let gst::QueryViewMut::Duration(_) = query.view_mut() {
            // Upstream's duration plus what is generated.
            if !self.core.sinkpad.peer_query(query) {
                return false;
            }
            let settings = self.settings();
            let dur = {
                let st = self.lock_state();
                common::stream_frame_duration(st.info.as_ref(), st.dur)
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
        Self {
            core: Core::new::<Self>(klass, gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION),
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
        }
    }
}

impl ObjectImpl for WeftExtend {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
            let mut v = common::model_properties();
            v.push(common::frames_property(
                "Frames to generate at each extended end (ignored when duration is set)",
                0,
                DEFAULT_FRAMES,
            ));
            v.push(common::duration_property(
                "Time to generate at each extended end in nanoseconds, rounded up to whole \
                 frames; overrides frames (GST_CLOCK_TIME_NONE = unset: use frames)",
            ));
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
        let mut s = element::lock(&self.settings);
        if common::set_model_property(&mut s.model, pspec.name(), value) {
            return;
        }
        match pspec.name() {
            "frames" => s.frames = value.get().expect("type checked"),
            "duration" => s.duration = common::duration_from_value(value),
            "direction" => s.direction = value.get().expect("type checked"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = element::lock(&self.settings);
        if let Some(v) = common::model_property(&s.model, pspec.name()) {
            return v;
        }
        match pspec.name() {
            "frames" => s.frames.to_value(),
            "duration" => common::duration_to_value(s.duration),
            "direction" => s.direction.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.core.add_pads(self.obj().upcast_ref());
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
        static TEMPLATES: Lazy<Vec<gst::PadTemplate>> = Lazy::new(element::pad_templates);
        TEMPLATES.as_ref()
    }

    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        self.weft_change_state(transition)
    }
}
