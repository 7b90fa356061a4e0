//! What the three elements share: the debug category, the model properties
//! and their loading (with the context frames the model asks for), pixel
//! conversion to and from weft's packed RGB, the queue between the sink pad
//! and the src-pad task, and the fill job that generates a run of frames and
//! pushes them.

use once_cell::sync::Lazy;

/// Debug category of every weft element: `GST_DEBUG=weft:5`.
pub static CAT: Lazy<gst::DebugCategory> =
    Lazy::new(|| gst::DebugCategory::new("weft", gst::DebugColorFlags::empty(), Some("weft video generation")));

/// Name of the custom meta (`gst_buffer_get_custom_meta (buf, "WeftGeneratedMeta")`)
/// on every buffer a weft element generated. Its structure holds `method`
/// (`generate` or `hold`) and `index` (position of the frame within its fill).
/// Original buffers never carry it.
pub const GENERATED_META: &str = "WeftGeneratedMeta";

/// Name of the element message posted for each fill. Fields: `start`
/// (guint64, PTS of the first generated frame, ns), `count` (guint, frames),
/// `method` (what made the frames: `hold` at a scene cut, `skip`, or the
/// generation method, e.g. `flow-interpolation`, `block-matching`,
/// `cross-fade`, `motion-continued`, `camera-push-in`, `weft-transformer`,
/// several joined by `+`), `reason` (`gap`, `end-gap`, `retime` (frame-rate
/// conversion), `extend-forward`, `extend-backward`, `animate`), `frame-duration` (guint64
/// ns) and, except for `skip`, `seconds` (gdouble, wall time of the fill).
pub const FILL_MESSAGE: &str = "weft-fill";

pub fn register_meta() {
    if !gst::meta::CustomMeta::is_registered(GENERATED_META) {
        gst::meta::CustomMeta::register(GENERATED_META, &[]);
    }
}

/// The pixel formats every element accepts (and outputs unchanged).
pub fn video_caps() -> gst::Caps {
    use gst_video::VideoFormat::*;
    gst_video::VideoCapsBuilder::new().format_list([Rgb, Rgba, Bgrx, Bgra, I420, Nv12]).build()
}

mod convert;
mod editing;
mod engine;
mod fill;
mod settings;
mod timing;
mod worker;

pub use convert::*;
pub use editing::*;
pub use engine::*;
pub use fill::*;
pub use settings::*;
pub use timing::*;
pub use worker::*;
