//! The tiny random LTX-Video fixtures (tests/fixtures/ltx/) laid out as a
//! diffusers snapshot, for tests that need an LTX model on disk (included
//! with `#[path]`; on its own it holds no test).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::json;

pub fn ltx_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ltx").join(name)
}

/// The tiny T5: a folder holding `text_encoder/` and `tokenizer/` (what
/// `--text-encoder` takes).
pub fn tiny_t5() -> PathBuf {
    ltx_fixture("t5")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Writes the tiny fixtures into `root` as an `LTXConditionPipeline`
/// snapshot (0.9.5-style scheduler: no dynamic shift), with the tiny T5
/// when `text`.
pub fn tiny_snapshot(root: &Path, text: bool) {
    std::fs::create_dir_all(root).unwrap();
    let mut mi = json!({
        "_class_name": "LTXConditionPipeline", "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "transformer": ["diffusers", "LTXVideoTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLLTXVideo"],
    });
    if text {
        mi["text_encoder"] = json!(["transformers", "T5EncoderModel"]);
        mi["tokenizer"] = json!(["transformers", "T5TokenizerFast"]);
        copy_dir(&ltx_fixture("t5/text_encoder"), &root.join("text_encoder"));
        copy_dir(&ltx_fixture("t5/tokenizer"), &root.join("tokenizer"));
    }
    std::fs::write(root.join("model_index.json"), mi.to_string()).unwrap();
    let t = root.join("transformer");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::copy(ltx_fixture("transformer_config.json"), t.join("config.json")).unwrap();
    std::fs::copy(ltx_fixture("transformer.safetensors"), t.join("diffusion_pytorch_model.safetensors")).unwrap();
    let v = root.join("vae");
    std::fs::create_dir_all(&v).unwrap();
    // The tiny VAE compresses 16x in space (its "temporal" block does not
    // downsample in space) and 4x in time; its config says so explicitly, as
    // the released configs do (32 and 8), since diffusers' default formula
    // (patch * 2^scalings) would say 32 (as tests/ltx_tasks.rs does).
    let mut vcfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ltx_fixture("vae_config.json")).unwrap()).unwrap();
    vcfg["spatial_compression_ratio"] = json!(16);
    vcfg["temporal_compression_ratio"] = json!(4);
    std::fs::write(v.join("config.json"), vcfg.to_string()).unwrap();
    std::fs::copy(ltx_fixture("vae.safetensors"), v.join("diffusion_pytorch_model.safetensors")).unwrap();
    let s = root.join("scheduler");
    std::fs::create_dir_all(&s).unwrap();
    let sched = json!({"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0,
                       "use_dynamic_shifting": false});
    std::fs::write(s.join("scheduler_config.json"), sched.to_string()).unwrap();
}
