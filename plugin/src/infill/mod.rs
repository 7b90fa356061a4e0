//! `weftinfill`: generates the frames missing from a stream's timeline.

use gst::glib;
use gst::prelude::*;

mod caps;
mod dups;
mod holes;
mod imp;
mod retime;
mod settings;

glib::wrapper! {
    pub struct WeftInfill(ObjectSubclass<imp::WeftInfill>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "weftinfill", gst::Rank::NONE, WeftInfill::static_type())
}
