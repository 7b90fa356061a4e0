//! The `weft` command line: the clap definitions and, per group of
//! subcommands, the functions that run them.

use clap::{Parser, Subcommand};

#[cfg(feature = "ffmpeg")]
mod learn;
mod model;
#[cfg(feature = "ffmpeg")]
mod shard;
#[cfg(feature = "ffmpeg")]
mod video;

#[derive(Parser)]
#[command(name = "weft", version, about = "Fill in video with a spacetime-patch diffusion transformer")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Create, inspect and check model directories (config.json + model.safetensors).
    #[command(subcommand)]
    Model(model::ModelCmd),
    #[cfg(feature = "ffmpeg")]
    #[command(flatten)]
    Video(video::VideoCmd),
    #[cfg(feature = "ffmpeg")]
    #[command(flatten)]
    Shard(shard::ShardCmd),
    #[cfg(feature = "ffmpeg")]
    #[command(flatten)]
    Learn(learn::LearnCmd),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Model(cmd) => model::run(cmd),
        #[cfg(feature = "ffmpeg")]
        Command::Video(cmd) => video::run(cmd),
        #[cfg(feature = "ffmpeg")]
        Command::Shard(cmd) => shard::run(cmd),
        #[cfg(feature = "ffmpeg")]
        Command::Learn(cmd) => learn::run(cmd),
    }
}
