//! LTX-Video (Lightricks): a pretrained spacetime-patch diffusion
//! transformer over the latents of a causal video VAE, conditioned on T5
//! text embeddings, sampled with flow-matching Euler steps. Ported from
//! diffusers 0.42.1 (`LTXVideoTransformer3DModel`, `AutoencoderKLLTXVideo`,
//! `FlowMatchEulerDiscreteScheduler`); parameter names mirror diffusers'
//! so that checkpoints load without a renaming table.

pub mod condition;
pub mod generate;
pub mod kernels;
pub mod pipeline;
pub mod profile;
pub mod load;
pub mod scheduler;
pub mod text;
pub mod transformer;
pub mod vae;

pub use load::{Layout, LtxVersion, LtxVideo};
