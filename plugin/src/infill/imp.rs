//! weftinfill: compares each buffer's PTS with where the negotiated frame rate
//! says the next frame should be; a hole of up to `max-gap` frames becomes a
//! fill job queued in front of the buffer after the hole (`holes.rs`). The
//! src-pad task waits for a second frame after the hole (context), generates
//! the missing frames, pushes them, then the queued originals. When
//! downstream does not take the input's frame rate, the frames between the
//! originals are generated at downstream's (`retime.rs`, the caps picked in
//! `caps.rs`). Here: the element, its sink-side state, events and queries;
//! its properties are in `settings.rs`.

use std::collections::VecDeque;
use std::sync::Mutex;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use once_cell::sync::Lazy;

use crate::common::{self, CAT, ModelSettings};
use crate::element::{self, Core, WeftElementImpl};

use super::dups;
use super::retime::Retime;
use super::settings::{self, Settings};

/// Sink-side view of the stream.
pub(super) struct State {
    pub(super) info: Option<gst_video::VideoInfo>,
    pub(super) segment: gst::FormattedSegment<gst::ClockTime>,
    /// The last few original buffers (context before a gap).
    pub(super) history: VecDeque<gst::Buffer>,
    /// Where the next frame should start.
    pub(super) next_pts: Option<gst::ClockTime>,
    /// End of the last GAP event.
    pub(super) gap_end: Option<gst::ClockTime>,
    /// Frame duration of the last buffer.
    pub(super) dur: Option<gst::ClockTime>,
    /// Frame-rate conversion, when the src caps' rate differs.
    pub(super) retime: Option<Retime>,
    /// `replace-duplicates` detection.
    pub(super) dups: dups::Detector,
    /// The src caps picked for the sink caps.
    pub(super) out_caps: Option<gst::Caps>,
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
            retime: None,
            out_caps: None,
            dups: dups::Detector::default(),
        }
    }
}

pub struct WeftInfill {
    pub(super) core: Core,
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

impl WeftInfill {
    pub(super) fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        element::lock(&self.state)
    }

    pub(super) fn settings(&self) -> Settings {
        element::lock(&self.settings).clone()
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
        if self.core.srcpad.check_reconfigure() {
            self.renegotiate()?;
        }
        let Some(after_dups) = self.check_duplicate(&buffer)? else { return Ok(gst::FlowSuccess::Ok) };
        let retiming = {
            let st = self.lock_state();
            st.retime.is_some() && st.segment.rate() > 0.0
        };
        if retiming {
            return self.retime_chain(buffer);
        }
        self.hole_chain(buffer, after_dups)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "handling {:?}", event);
        let mut replacement = None;
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
                    st.dups.reset();
                    if let Some(rt) = st.retime.as_mut() {
                        rt.reset();
                    }
                }
                return self.core.handle_flush(self.obj().upcast_ref(), event);
            }
            EventView::StreamStart(_) => {
                if !self.retime_flush_pending(true) || !self.flush_duplicates() {
                    return false;
                }
                let mut st = self.lock_state();
                st.history.clear();
                st.next_pts = None;
                st.gap_end = None;
                st.dups.reset();
                if let Some(rt) = st.retime.as_mut() {
                    rt.reset();
                }
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
                match self.negotiate(&c.caps_owned(), info) {
                    Some(out) if out != *c.caps() => {
                        replacement = Some(gst::event::Caps::builder(&out).seqnum(event.seqnum()).build());
                    }
                    Some(_) => {}
                    None => return false,
                }
            }
            EventView::Segment(s) => {
                let Ok(seg) = s.segment().clone().downcast::<gst::ClockTime>() else {
                    gst::element_imp_error!(self, gst::StreamError::Format, ("weftinfill needs a TIME segment"));
                    return false;
                };
                if !self.retime_flush_pending(true) || !self.flush_duplicates() {
                    return false;
                }
                let mut st = self.lock_state();
                st.segment = seg;
                st.history.clear();
                st.next_pts = None;
                st.gap_end = None;
                st.dups.reset();
                if let Some(rt) = st.retime.as_mut() {
                    rt.reset();
                }
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
                if self.lock_state().retime.is_some() {
                    if !self.retime_flush_pending(true) {
                        return false;
                    }
                    let mut st = self.lock_state();
                    if let Some(rt) = st.retime.as_mut() {
                        rt.reset();
                    }
                } else if let Some(fill) = self.end_fill()
                    && self.core.worker.enqueue(fill).is_err()
                {
                    return false;
                }
                let mut st = self.lock_state();
                st.gap_end = None;
                st.dups.reset();
            }
            // Other serialized events go out behind the frames before them.
            _ if event.is_serialized() && !self.retime_flush_pending(false) => return false,
            _ => {}
        }
        self.core.forward_event(replacement.unwrap_or(event))
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Caps(q) = query.view_mut() {
            let caps = self.query_caps(pad, &self.core.srcpad, q.filter_owned().as_ref());
            q.set_result(&caps);
            return true;
        }
        // A serialized query (drain, allocation) comes after the frames before it.
        if query.is_serialized() && !self.retime_flush_pending(false) {
            return false;
        }
        self.core.sink_query(self.obj().upcast_ref(), pad, query)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Caps(q) = query.view_mut() {
            let caps = self.query_caps(pad, &self.core.sinkpad, q.filter_owned().as_ref());
            q.set_result(&caps);
            return true;
        }
        if let gst::QueryViewMut::Latency(_) = query.view_mut() {
            // A fill waits for the model's context after the hole (all but
            // the first frame after it: one more for weft's models and
            // LTX-Video's defaults) before it runs; a conversion run for the
            // original after it and the rest of that context, up to that many
            // input frames after the first slot it makes.
            let after = self.core.context().after;
            let added = {
                let st = self.lock_state();
                let dur = common::stream_frame_duration(st.info.as_ref(), st.dur);
                if st.retime.is_some() {
                    dur.unwrap_or(gst::ClockTime::ZERO) * after.max(1) as u64
                } else {
                    common::context_latency(dur, after)
                }
            };
            // With a live upstream, also the worst generation time of one fill.
            let ret = common::query_latency_paced(&self.core.sinkpad, query, added, &self.core.worker.pace);
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
            // Caps are the element's own: the src caps may differ in frame rate.
            core: Core::new::<Self>(klass, gst::PadFlags::PROXY_ALLOCATION),
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
        }
    }
}

impl ObjectImpl for WeftInfill {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(settings::properties);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        settings::set_property(&mut element::lock(&self.settings), pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        settings::property(&element::lock(&self.settings), pspec.name())
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.core.add_pads(self.obj().upcast_ref());
        // Fills are paced against a live stream: held when late (common::Pace).
        self.core.worker.pace.enable();
        let worker = self.core.worker.clone();
        self.core.srcpad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data
                && let gst::EventView::Latency(l) = e.view()
            {
                worker.pace.set_latency(l.latency());
            }
            gst::PadProbeReturn::Ok
        });
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
                 events) with weft's diffusion transformer, so the output runs at a constant rate; \
                 converts the frame rate to the one downstream asks for, generating the frames \
                 between the originals at their own times. Original buffers pass through \
                 unchanged; generated ones carry a WeftGeneratedMeta",
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
