//! GStreamer Editing Services (GES, Pitivi's engine) wrap every clip and
//! clip effect in NLE objects (`nlesource`, `nleoperation` inside an
//! `nlecomposition`) that decide how long each clip plays.

use gst::prelude::*;

/// The type of the GES/NLE object `element` sits in, if any.
pub fn editing_timeline(element: &gst::Element) -> Option<String> {
    let mut parent = element.parent();
    while let Some(p) = parent {
        let name = p.type_().name();
        if name.starts_with("Nle") || name.starts_with("GES") {
            return Some(name.to_string());
        }
        parent = p.parent();
    }
    None
}
