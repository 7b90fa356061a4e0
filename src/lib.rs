//! weft: fill in video with a spacetime-patch diffusion transformer.
//!
//! Four rooms, arrows pointing down:
//! * [`model`] — the transformer, its config and its weights (knows nothing of
//!   video files or GStreamer);
//! * [`tasks`] — the conditioning plan (frame slots, each known or to
//!   generate), the flow-matching sampler and the windowing of long jobs:
//!   `infill`, `extend` and `animate` are plans over the same code;
//! * the ffmpeg pipeline and the GStreamer plugin are thin adapters on top.
//!
//! ```
//! use weft::{Config, Direction, Frame, GenerateOptions, Model};
//! # fn main() -> weft::Result<()> {
//! // A small untrained model (real code: Model::load(dir) or Model::embedded()).
//! let model = Model::untrained(&Config::tiny(), 0, &candle_core::Device::Cpu)?;
//! let a = Frame::filled(32, 24, [200, 40, 40])?;
//! let b = Frame::filled(32, 24, [40, 40, 200])?;
//! let opts = GenerateOptions { steps: 2, seed: 7, ..Default::default() };
//!
//! let missing = weft::infill(&model, &[a.clone()], &[b.clone()], 3, &opts)?;
//! assert_eq!(missing.len(), 3);
//! let more = weft::extend(&model, &[a.clone(), b.clone()], 4, Direction::Forward, &opts)?;
//! assert_eq!(more.len(), 4);
//! let clip = weft::animate(&model, &a, 5, &opts)?;
//! assert_eq!(clip[0], a); // known frames come back unchanged
//! // Same seed, same output.
//! assert_eq!(missing, weft::infill(&model, &[a], &[b], 3, &opts)?);
//! # Ok(())
//! # }
//! ```

pub mod analysis;
pub mod error;
pub mod eval;
pub mod frame;
pub mod model;
#[cfg(feature = "ffmpeg")]
pub mod pipeline;
pub mod interrupt;
pub mod runtime;
pub mod tasks;
pub mod train;

pub use error::{Result, WeftError};
pub use frame::Frame;
pub use model::{Config, Model, Prior, WeightDtype};
pub use tasks::{Direction, GenerateOptions, Plan, Slot, animate, extend, generate, infill, run_plan, schedule};
