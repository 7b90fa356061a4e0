//! weftanimate: takes the first image buffer, pushes it unchanged as frame 0
//! of a clip at `framerate` (the property, else what downstream prefers),
//! generates the remaining frames on the src task, then sends EOS.

use std::sync::Mutex;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use once_cell::sync::Lazy;

use crate::common::{self, CAT, FillJob, Item, ModelSettings};
use crate::element::{self, Core, WeftElementImpl};

const DEFAULT_FRAMES: u32 = 50;
const FALLBACK_FPS: gst::Fraction = gst::Fraction::from_integer(25);

#[derive(Clone, Debug)]
struct Settings {
    model: ModelSettings,
    frames: u32,
    duration: Option<gst::ClockTime>,
    framerate: gst::Fraction,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: ModelSettings::default(),
            frames: DEFAULT_FRAMES,
            duration: None,
            framerate: gst::Fraction::new(0, 1),
        }
    }
}

#[derive(Default)]
struct State {
    /// Output caps' info (the input's with the output frame rate).
    out_info: Option<gst_video::VideoInfo>,
    /// The still has been taken; the clip and its EOS are queued.
    done: bool,
}

pub struct WeftAnimate {
    core: Core,
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

impl WeftAnimate {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        element::lock(&self.state)
    }

    fn settings(&self) -> Settings {
        element::lock(&self.settings).clone()
    }

    /// The output caps for input `caps`: same format and size, the frame rate
    /// from the property or fixated against downstream (nearest 25/1).
    fn output_caps(&self, caps: &gst::Caps) -> Option<gst::Caps> {
        let settings = self.settings();
        let mut out = caps.clone();
        if settings.framerate.numer() > 0 {
            out.make_mut().set("framerate", settings.framerate);
            return Some(out);
        }
        out.make_mut().set(
            "framerate",
            gst::FractionRange::new(gst::Fraction::new(1, i32::MAX), gst::Fraction::new(i32::MAX, 1)),
        );
        let mut peer = self.core.srcpad.peer_query_caps(Some(&out));
        if peer.is_empty() {
            return None;
        }
        if peer.is_any() {
            peer = out;
        }
        peer.truncate();
        {
            let p = peer.make_mut();
            if let Some(s) = p.structure_mut(0) {
                if s.has_field("framerate") {
                    s.fixate_field_nearest_fraction("framerate", FALLBACK_FPS);
                } else {
                    s.set("framerate", FALLBACK_FPS);
                }
            }
        }
        peer.fixate();
        // A clip needs a frame rate (downstream may only take still images).
        let fps = peer.structure(0)?.get::<gst::Fraction>("framerate").ok()?;
        (fps.numer() > 0).then_some(peer)
    }
}

impl WeftElementImpl for WeftAnimate {
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
        let items = {
            let mut st = self.lock_state();
            if st.done {
                gst::debug!(CAT, imp = self, "clip already made: dropping a further image");
                return Err(gst::FlowError::Eos);
            }
            let Some(info) = st.out_info.clone() else {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("received an image before caps"));
                return Err(gst::FlowError::NotNegotiated);
            };
            let Some(dur) = common::frame_duration(&info, None) else {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("output caps without a frame rate"));
                return Err(gst::FlowError::NotNegotiated);
            };
            let total = common::frame_count(settings.duration, settings.frames, dur).max(1);
            st.done = true;
            // Same memory, clip timestamps.
            {
                let b = buffer.make_mut();
                b.set_pts(gst::ClockTime::ZERO);
                b.set_dts(gst::ClockTime::NONE);
                b.set_duration(dur);
            }
            let mut items = vec![Item::Buffer(buffer.clone())];
            if total > 1 {
                let Some(model) = self.core.model() else {
                    gst::element_imp_error!(self, gst::CoreError::StateChange, ("no model loaded"));
                    return Err(gst::FlowError::Error);
                };
                gst::info!(
                    CAT,
                    imp = self,
                    "animating a {}x{} still into {} frame(s) of {}",
                    info.width(),
                    info.height(),
                    total,
                    dur
                );
                items.push(Item::Fill(Box::new(FillJob {
                    model,
                    opts: common::generate_options(&settings.model),
                    info,
                    before: vec![buffer],
                    after: Vec::new(),
                    want_after: 0,
                    start: dur,
                    dur,
                    n: (total - 1) as usize,
                    scene_threshold: None,
                    reason: "animate",
                })));
            }
            items.push(Item::Event(gst::event::Eos::new()));
            items
        };
        for item in items {
            self.core.worker.enqueue(item)?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "handling {:?}", event);
        // Streaming, not in a state change: NLE drops a child's ERROR there.
        if let gst::EventView::Caps(_) = event.view()
            && let Some(nle) = common::editing_timeline(self.obj().upcast_ref())
        {
            gst::element_imp_error!(
                self,
                gst::CoreError::NotImplemented,
                ("weftanimate cannot be a clip effect in a GES timeline (GStreamer Editing Services, \
                 Pitivi; it is inside a {}): it ends the stream after its own frames while the timeline \
                 sets how long the clip plays. Make the clip instead (weft animate STILL -o OUT --frames \
                 N) and import it",
                    nle)
            );
            return false;
        }
        let event = match event.view() {
            EventView::FlushStart(_) => {
                return self.core.handle_flush(self.obj().upcast_ref(), event);
            }
            EventView::FlushStop(_) => {
                self.lock_state().done = false;
                return self.core.handle_flush(self.obj().upcast_ref(), event);
            }
            EventView::StreamStart(_) => {
                self.lock_state().done = false;
                event
            }
            EventView::Caps(c) => {
                let Some(out) = self.output_caps(&c.caps_owned()) else {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        (
                            "downstream accepts no video with a frame rate like {} (set the framerate property?)",
                            c.caps()
                        )
                    );
                    return false;
                };
                let info = match gst_video::VideoInfo::from_caps(&out) {
                    Ok(i) => i,
                    Err(e) => {
                        gst::element_imp_error!(self, gst::CoreError::Negotiation, ("unsupported caps {}: {}", out, e));
                        return false;
                    }
                };
                gst::debug!(CAT, imp = self, "output caps {}", out);
                self.lock_state().out_info = Some(info);
                gst::event::Caps::builder(&out).seqnum(event.seqnum()).build()
            }
            EventView::Segment(_) => {
                // The clip has its own timeline from 0.
                let seg = gst::FormattedSegment::<gst::ClockTime>::new();
                gst::event::Segment::builder(&seg).seqnum(event.seqnum()).build()
            }
            EventView::Gap(_) => return true,
            EventView::Eos(_) => {
                if self.lock_state().done {
                    // Ours is queued behind the clip.
                    return true;
                }
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("weftanimate got EOS before an image to animate")
                );
                event
            }
            _ => event,
        };
        self.core.forward_event(event)
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Caps(q) => {
                // Any input frame rate; the rest as downstream accepts it.
                let templ = pad.pad_template_caps();
                let mut peer = self.core.srcpad.peer_query_caps(None);
                {
                    let p = peer.make_mut();
                    for s in p.iter_mut() {
                        s.remove_field("framerate");
                    }
                }
                let mut caps = templ.intersect_with_mode(&peer, gst::CapsIntersectMode::First);
                if let Some(filter) = q.filter() {
                    caps = filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First);
                }
                q.set_result(&caps);
                true
            }
            _ => self.core.sink_query(self.obj().upcast_ref(), pad, query),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for WeftAnimate {
    const NAME: &'static str = "GstWeftAnimate";
    type Type = super::WeftAnimate;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        // No proxying: the output frame rate is the element's own.
        Self {
            core: Core::new::<Self>(klass, gst::PadFlags::empty()),
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
        }
    }
}

impl ObjectImpl for WeftAnimate {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
            let mut v = common::model_properties();
            v.push(common::frames_property(
                "Frames in the clip, the still included (ignored when duration is set)",
                1,
                DEFAULT_FRAMES,
            ));
            v.push(common::duration_property(
                "Length of the clip in nanoseconds, rounded up to whole frames; overrides frames \
                 (GST_CLOCK_TIME_NONE = unset: use frames)",
            ));
            v.push(
                gst::ParamSpecFraction::builder("framerate")
                    .nick("Frame rate")
                    .blurb("Frame rate of the clip (0/1 = as downstream prefers, nearest 25/1)")
                    .minimum(gst::Fraction::new(0, 1))
                    .maximum(gst::Fraction::new(1000, 1))
                    .default_value(gst::Fraction::new(0, 1))
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
            "framerate" => s.framerate = value.get().expect("type checked"),
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
            "framerate" => s.framerate.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.core.add_pads(self.obj().upcast_ref());
    }
}

impl GstObjectImpl for WeftAnimate {}

impl ElementImpl for WeftAnimate {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Weft image animation",
                "Filter/Effect/Video",
                "Turns a still image into a clip with weft's diffusion transformer: the image \
                 unchanged as the first frame, then generated frames (with a WeftGeneratedMeta) \
                 at the chosen frame rate, then EOS",
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
