//! `weftextend`: generates frames after the end and/or before the start of a stream.

use gst::glib;
use gst::prelude::*;

mod imp;

/// Which end(s) of the stream `weftextend` extends.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstWeftExtendDirection")]
pub enum ExtendDirection {
    #[default]
    #[enum_value(name = "Forward: new frames after the last one", nick = "forward")]
    Forward = 0,
    #[enum_value(name = "Backward: new frames before the first one (originals shift later)", nick = "backward")]
    Backward = 1,
    #[enum_value(name = "Both: new frames before and after", nick = "both")]
    Both = 2,
}

glib::wrapper! {
    pub struct WeftExtend(ObjectSubclass<imp::WeftExtend>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "weftextend", gst::Rank::NONE, WeftExtend::static_type())
}
