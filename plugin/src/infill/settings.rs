//! weftinfill's properties: the model's (`common`), `replace-duplicates`
//! (`dups.rs`), `max-gap` and `scene-threshold`.

use gst::glib;
use gst::prelude::*;

use crate::common::{self, ModelSettings};

use super::dups;

const DEFAULT_MAX_GAP: u32 = 30;
const DEFAULT_SCENE_THRESHOLD: f64 = weft::analysis::DEFAULT_SCENE_THRESHOLD;

#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub(super) model: ModelSettings,
    pub(super) max_gap: u32,
    pub(super) scene_threshold: f64,
    pub(super) dups: dups::DupSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: ModelSettings::default(),
            max_gap: DEFAULT_MAX_GAP,
            scene_threshold: DEFAULT_SCENE_THRESHOLD,
            dups: dups::DupSettings::default(),
        }
    }
}

/// The element's property specs.
pub(super) fn properties() -> Vec<glib::ParamSpec> {
    let mut v = common::model_properties();
    v.extend(dups::properties());
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
}

/// Sets property `name`.
pub(super) fn set_property(s: &mut Settings, name: &str, value: &glib::Value) {
    if common::set_model_property(&mut s.model, name, value) || dups::set_property(&mut s.dups, name, value) {
        return;
    }
    match name {
        "max-gap" => s.max_gap = value.get().expect("type checked"),
        "scene-threshold" => s.scene_threshold = value.get().expect("type checked"),
        other => unreachable!("unknown property {other}"),
    }
}

/// The value of property `name`.
pub(super) fn property(s: &Settings, name: &str) -> glib::Value {
    if let Some(v) = common::model_property(&s.model, name).or_else(|| dups::property(&s.dups, name)) {
        return v;
    }
    match name {
        "max-gap" => s.max_gap.to_value(),
        "scene-threshold" => s.scene_threshold.to_value(),
        other => unreachable!("unknown property {other}"),
    }
}
