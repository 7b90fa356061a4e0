//! `weftanimate`: turns one still image into a clip.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct WeftAnimate(ObjectSubclass<imp::WeftAnimate>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "weftanimate", gst::Rank::NONE, WeftAnimate::static_type())
}
