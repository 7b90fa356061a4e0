//! weftanimate: takes the first image buffer, pushes it unchanged as frame 0
//! of a clip at `framerate` (the property, else what downstream prefers),
//! generates the remaining frames on the src task, then sends EOS.

use std::sync::{Arc, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use once_cell::sync::Lazy;

use crate::common::{self, CAT, Engine, FillJob, Item, ModelSettings, Worker};

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
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    engine: Mutex<Option<Engine>>,
    worker: Arc<Worker>,
}

impl WeftAnimate {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settings(&self) -> Settings {
        self.settings.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
        let mut peer = self.srcpad.peer_query_caps(Some(&out));
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
            let total = match settings.duration {
                Some(d) => d.nseconds().div_ceil(dur.nseconds()).max(1),
                None => settings.frames.max(1) as u64,
            };
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
                let model = self.engine.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|e| e.model.clone());
                let Some(model) = model else {
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
            self.worker.enqueue(item)?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "handling {:?}", event);
        let event = match event.view() {
            EventView::FlushStart(_) => {
                return common::handle_flush(&self.worker, self.obj().upcast_ref(), &self.srcpad, event);
            }
            EventView::FlushStop(_) => {
                self.lock_state().done = false;
                return common::handle_flush(&self.worker, self.obj().upcast_ref(), &self.srcpad, event);
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
        if event.is_serialized() {
            self.worker.enqueue(Item::Event(event)).is_ok()
        } else {
            self.srcpad.push_event(event)
        }
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Caps(q) => {
                // Any input frame rate; the rest as downstream accepts it.
                let templ = pad.pad_template_caps();
                let mut peer = self.srcpad.peer_query_caps(None);
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
            _ => {
                if query.is_serialized() {
                    self.worker.wait_drained();
                }
                gst::Pad::query_default(pad, Some(&*self.obj()), query)
            }
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for WeftAnimate {
    const NAME: &'static str = "GstWeftAnimate";
    type Type = super::WeftAnimate;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").expect("sink template");
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                WeftAnimate::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                WeftAnimate::catch_panic_pad_function(parent, || false, |imp| imp.sink_event(pad, event))
            })
            .query_function(|pad, parent, query| {
                WeftAnimate::catch_panic_pad_function(parent, || false, |imp| imp.sink_query(pad, query))
            })
            .build();
        let templ = klass.pad_template("src").expect("src template");
        let srcpad = gst::Pad::builder_from_template(&templ)
            .activatemode_function(|pad, parent, mode, active| {
                WeftAnimate::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "panic activating the src pad")),
                    |imp| common::activate_src(&imp.worker, imp.obj().upcast_ref(), pad, mode, active),
                )
            })
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

impl ObjectImpl for WeftAnimate {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
            let mut v = common::model_properties();
            v.push(
                glib::ParamSpecUInt::builder("frames")
                    .nick("Frames")
                    .blurb("Frames in the clip, the still included (ignored when duration is set)")
                    .minimum(1)
                    .maximum(100_000)
                    .default_value(DEFAULT_FRAMES)
                    .mutable_ready()
                    .build(),
            );
            v.push(
                glib::ParamSpecUInt64::builder("duration")
                    .nick("Duration")
                    .blurb("Length of the clip in nanoseconds, rounded up to whole frames; overrides frames (GST_CLOCK_TIME_NONE = unset: use frames)")
                    .minimum(0)
                    .maximum(u64::MAX)
                    .default_value(u64::MAX)
                    .mutable_ready()
                    .build(),
            );
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
            "framerate" => s.framerate = value.get().expect("type checked"),
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
            "framerate" => s.framerate.to_value(),
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
