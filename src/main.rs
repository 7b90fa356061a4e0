//! The `weft` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use weft::{Config, Model};

#[derive(Parser)]
#[command(name = "weft", version, about = "Fill in video with a spacetime-patch diffusion transformer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, inspect and check model directories (config.json + model.safetensors).
    #[command(subcommand)]
    Model(ModelCmd),
}

#[derive(Clone, Copy, ValueEnum)]
enum Size {
    /// The default architecture (~4.2 M parameters).
    Default,
    /// A very small architecture for tests.
    Tiny,
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Write a randomly initialised (untrained) model to DIR.
    Init {
        dir: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value = "default")]
        size: Size,
        /// Refuse nothing: replace an existing model in DIR.
        #[arg(long)]
        overwrite: bool,
    },
    /// Load a model (DIR, or the embedded one) and print its config and size.
    Info { dir: Option<PathBuf> },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Model(ModelCmd::Init { dir, seed, size, overwrite }) => {
            if dir.join("model.safetensors").exists() && !overwrite {
                anyhow::bail!("{} already holds a model (use --overwrite to replace it)", dir.display());
            }
            let cfg = match size {
                Size::Default => Config::default(),
                Size::Tiny => Config::tiny(),
            };
            let model = Model::untrained(&cfg, seed, &candle_core::Device::Cpu)?;
            model.save(&dir)?;
            println!("wrote untrained model ({} parameters) to {}", model.num_parameters(), dir.display());
        }
        Command::Model(ModelCmd::Info { dir }) => {
            let model = match dir {
                Some(d) => Model::load(d)?,
                None => Model::embedded()?,
            };
            println!("{}", serde_json::to_string_pretty(model.config())?);
            println!("parameters: {}", model.num_parameters());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft: {e:#}");
            ExitCode::FAILURE
        }
    }
}
