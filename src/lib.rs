//! weft: fill in video with a spacetime-patch diffusion transformer.
//!
//! Four rooms, arrows pointing down:
//! * [`model`] — the transformer, its config and its weights (knows nothing of
//!   video files or GStreamer);
//! * [`tasks`] — the conditioning plan (frame slots, each known or to
//!   generate), the flow-matching sampler and the windowing of long jobs:
//!   `infill`, `extend` and `animate` are plans over the same code;
//! * the ffmpeg pipeline and the GStreamer plugin are thin adapters on top.

pub mod analysis;
pub mod error;
pub mod eval;
pub mod frame;
pub mod model;
#[cfg(feature = "ffmpeg")]
pub mod pipeline;
pub mod runtime;
pub mod tasks;
pub mod train;

pub use error::{Result, WeftError};
pub use frame::Frame;
pub use model::{Config, Model};
pub use tasks::{Direction, GenerateOptions, Plan, Slot, animate, extend, generate, infill, run_plan, schedule};
