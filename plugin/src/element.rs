//! The element plumbing the three elements share: an always sink pad whose
//! data goes through a [`Worker`] queue to the task of an always src pad,
//! the model [`Engine`] checked on READY to PAUSED, and the default handling
//! of flushes, serialized events and queries, and state changes.
//!
//! An element implements [`WeftElementImpl`] (its own chain function, sink
//! events and state) and keeps a [`Core`] built by [`Core::new`].

use std::sync::{Arc, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::common::{self, CAT, Engine, Item, LazyModel, ModelSettings, Worker};

/// Locks `mutex`, ignoring poisoning: a panic elsewhere is already reported
/// as an element error and the data is still usable.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What an element adds to the shared plumbing of [`Core`].
pub trait WeftElementImpl: ElementImpl {
    /// The element's pads, model and queue.
    fn core(&self) -> &Core;

    /// The element's current model properties.
    fn model_settings(&self) -> ModelSettings;

    /// Forgets everything about the stream (READY to PAUSED, PAUSED to READY).
    fn reset_state(&self);

    /// Chain function of the sink pad.
    fn sink_chain(&self, pad: &gst::Pad, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError>;

    /// Event function of the sink pad; [`Core::handle_flush`] and
    /// [`Core::forward_event`] do the usual part.
    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool;

    /// Query function of the sink pad: by default [`Core::sink_query`].
    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        self.core().sink_query(self.obj().upcast_ref(), pad, query)
    }

    /// Query function of the src pad: by default the default handling.
    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    /// Checks the model when the element starts, resets the stream state when
    /// it starts and stops, and drops the model when it shuts down.
    fn weft_change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        let core = self.core();
        if transition == gst::StateChange::ReadyToPaused {
            let settings = self.model_settings();
            let mut engine = lock(&core.engine);
            let loaded = common::load_engine(self.obj().upcast_ref(), &settings, engine.as_ref())?;
            *engine = Some(loaded);
            // Streaming code takes the stream state, then the engine: never
            // the other way round.
            drop(engine);
            self.reset_state();
        }
        let ret = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::PausedToReady => self.reset_state(),
            gst::StateChange::ReadyToNull => *lock(&core.engine) = None,
            _ => {}
        }
        Ok(ret)
    }
}

/// The pads, model and src-task queue of a weft element.
pub struct Core {
    pub sinkpad: gst::Pad,
    pub srcpad: gst::Pad,
    engine: Mutex<Option<Engine>>,
    pub worker: Arc<Worker>,
}

impl Core {
    /// Builds the pads from the class's `sink` and `src` templates, both with
    /// `flags`, their functions calling into `T`.
    pub fn new<T: WeftElementImpl>(klass: &glib::Class<T::Type>, flags: gst::PadFlags) -> Self {
        let templ = klass.pad_template("sink").expect("sink template");
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                T::catch_panic_pad_function(parent, || Err(gst::FlowError::Error), |imp| imp.sink_chain(pad, buffer))
            })
            .event_function(|pad, parent, event| {
                T::catch_panic_pad_function(parent, || false, |imp| imp.sink_event(pad, event))
            })
            .query_function(|pad, parent, query| {
                T::catch_panic_pad_function(parent, || false, |imp| imp.sink_query(pad, query))
            })
            .flags(flags)
            .build();
        let templ = klass.pad_template("src").expect("src template");
        let srcpad = gst::Pad::builder_from_template(&templ)
            .activatemode_function(|pad, parent, mode, active| {
                T::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "panic activating the src pad")),
                    |imp| common::activate_src(&imp.core().worker, imp.obj().upcast_ref(), pad, mode, active),
                )
            })
            .query_function(|pad, parent, query| {
                T::catch_panic_pad_function(parent, || false, |imp| imp.src_query(pad, query))
            })
            .flags(flags)
            .build();
        Self { sinkpad, srcpad, engine: Mutex::new(None), worker: Arc::new(Worker::default()) }
    }

    /// Adds both pads to `element` (from `constructed`).
    pub fn add_pads(&self, element: &gst::Element) {
        element.add_pad(&self.sinkpad).expect("add sink pad");
        element.add_pad(&self.srcpad).expect("add src pad");
    }

    /// The model checked when the element started, if it did.
    pub fn model(&self) -> Option<Arc<LazyModel>> {
        lock(&self.engine).as_ref().map(|e| e.model.clone())
    }

    /// The real frames the model conditions on with the element's settings
    /// (asked of the model when the element started; before that, weft's
    /// own models'): how many the element holds before a gap, waits for
    /// after it, and holds for an extension.
    pub fn context(&self) -> weft::tasks::ContextFrames {
        lock(&self.engine).as_ref().map(|e| e.context).unwrap_or_default()
    }

    /// FLUSH_START / FLUSH_STOP: see [`common::handle_flush`].
    pub fn handle_flush(&self, element: &gst::Element, event: gst::Event) -> bool {
        common::handle_flush(&self.worker, element, &self.srcpad, event)
    }

    /// Sink query: a serialized one waits until everything queued before it
    /// has been pushed, then every one gets the default handling.
    pub fn sink_query(&self, element: &gst::Element, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if query.is_serialized() {
            self.worker.wait_drained();
        }
        gst::Pad::query_default(pad, Some(element), query)
    }

    /// Sends a sink event on: serialized ones in order with the data through
    /// the queue, others straight downstream.
    pub fn forward_event(&self, event: gst::Event) -> bool {
        if event.is_serialized() {
            self.worker.enqueue(Item::Event(event)).is_ok()
        } else {
            self.srcpad.push_event(event)
        }
    }
}

/// The pad templates of every element: `src` and `sink`, always, [`common::video_caps`].
pub fn pad_templates() -> Vec<gst::PadTemplate> {
    let caps = common::video_caps();
    vec![
        gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).expect("src"),
        gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps).expect("sink"),
    ]
}
