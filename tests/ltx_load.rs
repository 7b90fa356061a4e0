//! Loading LTX-Video (src/model/ltx/load.rs): the tensor names weft asks for
//! against the manifests of the real checkpoints (scripts/ltx_reference/manifest.py,
//! which proves the single-file names with diffusers' own converters), the
//! tiny fixtures laid out as a diffusers snapshot (plain and sharded) and as a
//! Lightricks single file, the errors, and `weft model inspect`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::{Value, json};
use weft::Model;
use weft::model::ltx::load::{
    self, HeaderTensor, Layout, LtxVersion, LtxVideo, VaeNaming, diffusers_transformer_key, diffusers_vae_key,
    original_transformer_key, original_vae_key, transformer_tensors, vae_tensors,
};
use weft::model::ltx::text::LtxTextEncoder;
use weft::model::ltx::transformer::{self as tr, LtxVideoTransformer3DModel};
use weft::model::ltx::vae::{self, AutoencoderKLLTXVideo};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ltx").join(name)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

type Entries = Vec<(String, String, Vec<usize>)>;

/// (config, [(diffusers name, single-file name, shape)]) of a manifest.
fn manifest(name: &str) -> (Value, Entries) {
    let v = read_json(&fixture(&format!("load_manifest_{name}.json")));
    let entries = serde_json::from_value(v["tensors"].clone()).unwrap();
    (v["config"].clone(), entries)
}

fn pairs(e: &Entries, single: bool) -> Vec<(String, Vec<usize>)> {
    e.iter().map(|(d, o, s)| (if single { o.clone() } else { d.clone() }, s.clone())).collect()
}

// ------------------------------------------------------------ (i) manifests

#[test]
fn transformer_names_and_shapes_match_the_manifests() {
    for (file, versions) in [
        ("transformer_2b", &[LtxVersion::V0_9_0, LtxVersion::V0_9_1, LtxVersion::V0_9_5][..]),
        ("transformer_13b", &[LtxVersion::V0_9_7][..]),
    ] {
        let (cfg, entries) = manifest(file);
        let cfg: tr::Config = serde_json::from_value(cfg).unwrap();
        for v in versions {
            assert_eq!(v.transformer_config(), cfg, "{v}: built-in transformer config");
        }
        assert_eq!(transformer_tensors(&cfg, Layout::Diffusers).unwrap(), pairs(&entries, false), "{file}");
        assert_eq!(transformer_tensors(&cfg, Layout::SingleFile).unwrap(), pairs(&entries, true), "{file}");
        for (d, o, _) in &entries {
            assert_eq!(&diffusers_transformer_key(o), d);
            assert_eq!(&diffusers_transformer_key(&o["model.diffusion_model.".len()..]), d, "bare keys too");
            assert_eq!(&original_transformer_key(d), o);
        }
    }
}

#[test]
fn vae_names_and_shapes_match_the_manifests() {
    for (file, versions, naming) in [
        ("vae_090", &[LtxVersion::V0_9_0][..], VaeNaming::V090),
        ("vae_091", &[LtxVersion::V0_9_1][..], VaeNaming::V091),
        ("vae_095", &[LtxVersion::V0_9_5, LtxVersion::V0_9_7][..], VaeNaming::V095),
    ] {
        let (cfg, entries) = manifest(file);
        let cfg: vae::Config = serde_json::from_value(cfg).unwrap();
        for v in versions {
            assert_eq!(v.vae_config(), cfg, "{v}: built-in VAE config");
        }
        assert_eq!(VaeNaming::of_config(&cfg), naming);
        // weft reads latents_mean/std last, diffusers lists them first: same set, no repeats.
        let sorted = |mut v: Vec<(String, Vec<usize>)>| {
            v.sort();
            v
        };
        for (layout, single) in [(Layout::Diffusers, false), (Layout::SingleFile, true)] {
            let got = vae_tensors(&cfg, layout).unwrap();
            assert_eq!(got.len(), entries.len(), "{file}");
            assert_eq!(sorted(got), sorted(pairs(&entries, single)), "{file} {layout:?}");
        }
        for (d, o, _) in &entries {
            assert_eq!(diffusers_vae_key(o, naming).as_deref(), Some(d.as_str()), "{o}");
            assert_eq!(&original_vae_key(d, naming), o);
        }
        // The statistics Lightricks files carry and diffusers drops.
        for k in ["vae.per_channel_statistics.channel", "vae.per_channel_statistics.mean-of-stds"] {
            assert_eq!(diffusers_vae_key(k, naming), None);
        }
    }
}

/// The single-file header of a (transformer, VAE) manifest pair.
fn real_header(t: &str, v: &str) -> BTreeMap<String, HeaderTensor> {
    let mut h = BTreeMap::new();
    for name in [t, v] {
        for (_, o, s) in manifest(name).1 {
            h.insert(o, HeaderTensor { dtype: safetensors::Dtype::BF16, shape: s });
        }
    }
    h
}

#[test]
fn versions_are_detected_as_diffusers_detects_them() {
    for (t, v, want) in [
        ("transformer_2b", "vae_090", LtxVersion::V0_9_0),
        ("transformer_2b", "vae_091", LtxVersion::V0_9_1),
        ("transformer_2b", "vae_095", LtxVersion::V0_9_5),
        ("transformer_13b", "vae_095", LtxVersion::V0_9_7),
    ] {
        assert_eq!(load::detect_single_file_version(&real_header(t, v)), Some(want), "{t} + {v}");
        assert_eq!(LtxVersion::of_configs(&want.transformer_config(), &want.vae_config()), want);
    }
    let not_ltx: BTreeMap<String, HeaderTensor> =
        [("foo".to_string(), HeaderTensor { dtype: safetensors::Dtype::F32, shape: vec![1] })].into();
    assert_eq!(load::detect_single_file_version(&not_ltx), None);
}

// ------------------------------------------------------------- file helpers

/// Writes a safetensors header for `tensors` and extends the file (sparse) to
/// the size of its data: a real-size checkpoint for header-only inspection.
fn write_header_only(path: &Path, tensors: &[(String, Vec<usize>)], meta: Option<&Value>) {
    let mut h = serde_json::Map::new();
    let mut at = 0usize;
    for (n, s) in tensors {
        let bytes = s.iter().product::<usize>() * 2;
        h.insert(n.clone(), json!({"dtype": "BF16", "shape": s, "data_offsets": [at, at + bytes]}));
        at += bytes;
    }
    if let Some(m) = meta {
        h.insert("__metadata__".into(), m.clone());
    }
    let mut text = serde_json::to_string(&h).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    std::fs::write(path, &out).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len((out.len() + at) as u64).unwrap();
}

fn save(path: &Path, tensors: &BTreeMap<String, Tensor>, meta: Option<HashMap<String, String>>) {
    let bytes = safetensors::serialize(tensors.iter(), meta).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn load_map(path: &Path) -> BTreeMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap().into_iter().collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn scheduler_json() -> Value {
    let mut c = read_json(&fixture("scheduler.json"))["cases"][0]["config"].clone();
    c["_class_name"] = json!("FlowMatchEulerDiscreteScheduler");
    c
}

/// The tiny fixtures as a diffusers snapshot in `root` (`sharded`: the
/// transformer in two shards with an index; `text`: with text_encoder/ + tokenizer/).
fn tiny_snapshot(root: &Path, sharded: bool, text: bool) {
    std::fs::create_dir_all(root).unwrap();
    let mut mi = json!({
        "_class_name": "LTXPipeline", "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "transformer": ["diffusers", "LTXVideoTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLLTXVideo"],
    });
    if text {
        mi["text_encoder"] = json!(["transformers", "T5EncoderModel"]);
        mi["tokenizer"] = json!(["transformers", "T5TokenizerFast"]);
        copy_dir(&fixture("t5/text_encoder"), &root.join("text_encoder"));
        copy_dir(&fixture("t5/tokenizer"), &root.join("tokenizer"));
    }
    std::fs::write(root.join("model_index.json"), mi.to_string()).unwrap();
    let t = root.join("transformer");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::copy(fixture("transformer_config.json"), t.join("config.json")).unwrap();
    if sharded {
        let all = load_map(&fixture("transformer.safetensors"));
        let half = all.len() / 2;
        let mut weight_map = serde_json::Map::new();
        for (i, chunk) in [all.iter().take(half).collect::<Vec<_>>(), all.iter().skip(half).collect()].iter().enumerate() {
            let name = format!("diffusion_pytorch_model-0000{}-of-00002.safetensors", i + 1);
            let part: BTreeMap<String, Tensor> = chunk.iter().map(|(k, v)| ((*k).clone(), (*v).clone())).collect();
            for k in part.keys() {
                weight_map.insert(k.clone(), json!(name));
            }
            save(&t.join(&name), &part, None);
        }
        std::fs::write(
            t.join("diffusion_pytorch_model.safetensors.index.json"),
            json!({"metadata": {"total_size": 0}, "weight_map": weight_map}).to_string(),
        )
        .unwrap();
    } else {
        std::fs::copy(fixture("transformer.safetensors"), t.join("diffusion_pytorch_model.safetensors")).unwrap();
    }
    let v = root.join("vae");
    std::fs::create_dir_all(&v).unwrap();
    std::fs::copy(fixture("vae_config.json"), v.join("config.json")).unwrap();
    std::fs::copy(fixture("vae.safetensors"), v.join("diffusion_pytorch_model.safetensors")).unwrap();
    let s = root.join("scheduler");
    std::fs::create_dir_all(&s).unwrap();
    std::fs::write(s.join("scheduler_config.json"), scheduler_json().to_string()).unwrap();
}

/// The tiny transformer with Lightricks-style config fields.
fn lightricks_transformer_config() -> Value {
    let mut c = read_json(&fixture("transformer_config.json"));
    c["_class_name"] = json!("Transformer3DModel");
    c["qk_norm"] = json!("rms_norm");
    c["positional_embedding_theta"] = json!(10000.0);
    c["standardization_norm"] = json!("rms_norm");
    c
}

/// The tiny transformer + `vae_name` VAE as one Lightricks-style file:
/// original key names (by the inverse mapping), the per-channel statistics
/// diffusers drops, and a metadata `config`.
fn tiny_single_file(path: &Path, vae_name: &str) {
    let vcfg: Value = read_json(&fixture(&format!("{vae_name}_config.json")));
    let naming = VaeNaming::of_config(&serde_json::from_value(vcfg.clone()).unwrap());
    let mut out = BTreeMap::new();
    for (k, v) in load_map(&fixture("transformer.safetensors")) {
        out.insert(original_transformer_key(&k), v);
    }
    let latent = vcfg["latent_channels"].as_u64().unwrap() as usize;
    for (k, v) in load_map(&fixture(&format!("{vae_name}.safetensors"))) {
        out.insert(original_vae_key(&k, naming), v);
    }
    for k in ["channel", "mean-of-stds", "mean-of-stds_over_std-of-means"] {
        out.insert(format!("vae.per_channel_statistics.{k}"), Tensor::zeros(latent, DType::F32, &Device::Cpu).unwrap());
    }
    let meta = json!({"transformer": lightricks_transformer_config(), "vae": vcfg});
    save(path, &out, Some([("config".to_string(), meta.to_string())].into()));
}

// ------------------------------------------------------- direct references

fn direct_transformer() -> LtxVideoTransformer3DModel {
    let cfg: tr::Config = serde_json::from_value(read_json(&fixture("transformer_config.json"))).unwrap();
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[fixture("transformer.safetensors")], DType::F32, &Device::Cpu).unwrap()
    };
    LtxVideoTransformer3DModel::new(&cfg, vb).unwrap()
}

fn direct_vae(name: &str) -> AutoencoderKLLTXVideo {
    let cfg: vae::Config = serde_json::from_value(read_json(&fixture(&format!("{name}_config.json")))).unwrap();
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[fixture(&format!("{name}.safetensors"))], DType::F32, &Device::Cpu)
            .unwrap()
    };
    AutoencoderKLLTXVideo::new(&cfg, vb).unwrap()
}

fn transformer_out(m: &LtxVideoTransformer3DModel) -> Tensor {
    let io = candle_core::safetensors::load(fixture("transformer_io.safetensors"), &Device::Cpu).unwrap();
    let g = io["a.grid"].to_vec1::<i64>().unwrap();
    m.forward(
        &io["a.hidden_states"],
        &io["a.encoder_hidden_states"],
        &io["a.timestep"],
        Some(&io["a.encoder_attention_mask"]),
        g[0] as usize,
        g[1] as usize,
        g[2] as usize,
        Some([8.0 / 25.0, 32.0, 32.0]),
        None,
    )
    .unwrap()
}

fn vae_out(m: &AutoencoderKLLTXVideo, name: &str) -> (Tensor, Tensor) {
    let io = candle_core::safetensors::load(fixture("vae_io.safetensors"), &Device::Cpu).unwrap();
    let t = m.config.timestep_conditioning.then(|| io["decode_timestep"].clone());
    (m.encode(&io["clip"]).unwrap(), m.decode(&io[&format!("{name}.latent")], t.as_ref()).unwrap())
}

fn same(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.dims(), b.dims(), "{what}");
    let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(d, 0.0, "{what}: loaded model differs from the direct fixture load by {d}");
}

fn ltx(m: &Model) -> &LtxVideo {
    m.ltx().expect("an LTX-Video model")
}

// ------------------------------------------------------------ (ii) snapshot

#[test]
fn snapshot_loads_like_the_fixtures_plain_and_sharded() {
    let want = transformer_out(&direct_transformer());
    let (want_enc, want_dec) = vae_out(&direct_vae("vae"), "vae");
    for sharded in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        tiny_snapshot(dir.path(), sharded, true);
        let mut model = Model::load(dir.path()).unwrap();
        let m = ltx(&model);
        assert_eq!(m.version, LtxVersion::V0_9_5);
        assert_eq!(m.layout, Layout::Diffusers);
        assert_eq!(m.inspection.transformer.files.len(), if sharded { 2 } else { 1 });
        assert!(m.scheduler.use_dynamic_shifting);
        same("transformer", &transformer_out(&m.transformer), &want);
        let (enc, dec) = vae_out(&m.vae, "vae");
        same("vae encode", &enc, &want_enc);
        same("vae decode", &dec, &want_dec);
        let d = model.describe();
        assert!(d.starts_with("LTX-Video 0.9.5 (diffusers snapshot), "), "{d}");
        assert!(d.ends_with("f32, text encoder: yes"), "{d}");
        let n = m.inspection.transformer.parameters + m.inspection.vae.parameters;
        assert_eq!(model.num_parameters(), n);
        assert!(model.transformer().is_none() && model.interpolator().is_none());
        assert!(model.save(dir.path().join("out")).is_err());

        // Text encoding through the lazily loaded T5 equals the direct one.
        let got = model.ltx_mut().unwrap().text.encode(&["a red fox"], 16).unwrap();
        let mut direct = LtxTextEncoder::load(fixture("t5"), DType::F32, &Device::Cpu).unwrap();
        let want_t = direct.encode(&["a red fox"], 16).unwrap();
        same("prompt embeds", &got.embeds, &want_t.embeds);
    }
}

#[test]
fn snapshot_in_bf16_and_on_another_device() {
    let dir = tempfile::tempdir().unwrap();
    tiny_snapshot(dir.path(), false, false);
    let model = Model::load_ltx(dir.path(), None, DType::BF16, &Device::Cpu).unwrap();
    assert!(model.describe().contains(", bf16, text encoder: no"), "{}", model.describe());
    let again = model.to_device(&Device::Cpu).unwrap();
    assert_eq!(ltx(&again).dtype, DType::BF16);
}

// --------------------------------------------------------- (iii) single file

#[test]
fn single_file_loads_the_same_tensors() {
    let want = transformer_out(&direct_transformer());
    let dir = tempfile::tempdir().unwrap();
    for vae_name in ["vae", "vae_tc"] {
        let file = dir.path().join(format!("ltxv-tiny-{vae_name}.safetensors"));
        tiny_single_file(&file, vae_name);
        // The file's names are exactly what weft lists for the single-file layout
        // (plus the statistics diffusers drops).
        let cfg: vae::Config =
            serde_json::from_value(read_json(&fixture(&format!("{vae_name}_config.json")))).unwrap();
        let header = load::read_safetensors_header(&file).unwrap();
        let tcfg: tr::Config = serde_json::from_value(read_json(&fixture("transformer_config.json"))).unwrap();
        let mut listed: Vec<String> = transformer_tensors(&tcfg, Layout::SingleFile).unwrap().into_iter().map(|x| x.0).collect();
        listed.extend(vae_tensors(&cfg, Layout::SingleFile).unwrap().into_iter().map(|x| x.0));
        let in_file: Vec<String> =
            header.tensors.keys().filter(|k| !k.contains("statistics.channel") && !k.contains("mean-of-stds")).cloned().collect();
        listed.sort();
        assert_eq!(listed, in_file);

        let model = Model::load(&file).unwrap();
        let m = ltx(&model);
        assert_eq!(m.layout, Layout::SingleFile);
        assert_eq!(m.version, if vae_name == "vae" { LtxVersion::V0_9_5 } else { LtxVersion::V0_9_1 });
        assert_eq!(m.transformer_config(), &tcfg, "Lightricks-style transformer metadata");
        assert_eq!(m.vae_config(), &cfg);
        same("transformer", &transformer_out(&m.transformer), &want);
        let (we, wd) = vae_out(&direct_vae(vae_name), vae_name);
        let (e, d) = vae_out(&m.vae, vae_name);
        same("vae encode", &e, &we);
        same("vae decode", &d, &wd);
        same("latents_mean", &m.vae.latents_mean, &direct_vae(vae_name).latents_mean);
        assert!(model.describe().starts_with(&format!("LTX-Video {} (single file), ", m.version)));
        assert!(model.describe().ends_with("text encoder: no"));
    }
}

#[test]
fn single_file_text_encoder_from_a_snapshot_or_a_t5_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ltxv.safetensors");
    tiny_single_file(&file, "vae");
    let mut direct = LtxTextEncoder::load(fixture("t5"), DType::F32, &Device::Cpu).unwrap();
    let want = direct.encode(&["two cats"], 12).unwrap();

    // A T5 folder itself: encoder and tokenizer files side by side.
    let t5 = dir.path().join("t5-alone");
    copy_dir(&fixture("t5/text_encoder"), &t5);
    copy_dir(&fixture("t5/tokenizer"), &t5);
    for te in [fixture("t5"), t5] {
        let mut model = Model::load_ltx(&file, Some(&te), DType::F32, &Device::Cpu).unwrap();
        assert!(model.describe().ends_with("text encoder: yes"));
        let got = model.ltx_mut().unwrap().text.encode(&["two cats"], 12).unwrap();
        same("prompt embeds", &got.embeds, &want.embeds);
    }
}

// ------------------------------------------------------------- (iv) errors

fn snapshot_error(edit: impl FnOnce(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    tiny_snapshot(dir.path(), false, false);
    edit(dir.path());
    Model::load(dir.path()).unwrap_err().to_string()
}

fn edit_transformer(root: &Path, f: impl FnOnce(&mut BTreeMap<String, Tensor>)) {
    let p = root.join("transformer/diffusion_pytorch_model.safetensors");
    let mut m = load_map(&p);
    f(&mut m);
    save(&p, &m, None);
}

#[test]
fn missing_extra_and_misshapen_tensors_are_named() {
    let e = snapshot_error(|r| edit_transformer(r, |m| drop(m.remove("transformer_blocks.1.attn2.to_k.weight"))));
    assert!(e.contains("`transformer_blocks.1.attn2.to_k.weight`") && e.contains("missing"), "{e}");
    assert!(e.contains("transformer"), "{e}");

    let e = snapshot_error(|r| {
        edit_transformer(r, |m| drop(m.insert("extra.weight".into(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap())))
    });
    assert!(e.contains("unexpected tensor `extra.weight`"), "{e}");
    assert!(e.contains("diffusion_pytorch_model.safetensors"), "names the file: {e}");

    let e = snapshot_error(|r| {
        edit_transformer(r, |m| drop(m.insert("proj_in.bias".into(), Tensor::zeros(33, DType::F32, &Device::Cpu).unwrap())))
    });
    assert!(e.contains("`proj_in.bias` has shape [33]") && e.contains("[32]"), "{e}");

    let e = snapshot_error(|r| {
        edit_transformer(r, |m| {
            let t = m["proj_in.bias"].to_dtype(DType::U8).unwrap();
            m.insert("proj_in.bias".into(), t);
        })
    });
    assert!(e.contains("`proj_in.bias` is stored as u8"), "{e}");

    // Single file: the original names.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ltxv.safetensors");
    tiny_single_file(&file, "vae");
    let mut m = load_map(&file);
    let meta = load::read_safetensors_header(&file).unwrap().metadata;
    let removed = m.remove("vae.decoder.up_blocks.1.conv.conv.weight").unwrap();
    save(&file, &m, Some(meta.clone()));
    let e = Model::load(&file).unwrap_err().to_string();
    assert!(e.contains("`vae.decoder.up_blocks.1.conv.conv.weight`") && e.contains("missing"), "{e}");
    assert!(e.contains("diffusers `decoder.up_blocks.0.upsamplers.0.conv.conv.weight`"), "{e}");
    assert!(e.contains(&file.display().to_string()), "{e}");
    m.insert("vae.decoder.up_blocks.1.conv.conv.weight".into(), removed);
    m.insert("model.diffusion_model.stray".into(), Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap());
    save(&file, &m, Some(meta));
    let e = Model::load(&file).unwrap_err().to_string();
    assert!(e.contains("unexpected tensor `model.diffusion_model.stray`"), "{e}");
}

#[test]
fn truncated_and_corrupt_files_are_errors() {
    let e = snapshot_error(|r| {
        let p = r.join("transformer/diffusion_pytorch_model.safetensors");
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() - 100]).unwrap();
    });
    assert!(e.contains("truncated") && e.contains("transformer/diffusion_pytorch_model.safetensors"), "{e}");
    let e = snapshot_error(|r| {
        let p = r.join("vae/diffusion_pytorch_model.safetensors");
        std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all").unwrap();
    });
    assert!(e.contains("vae/diffusion_pytorch_model.safetensors") && e.contains("not valid JSON"), "{e}");
    let e = snapshot_error(|r| std::fs::write(r.join("vae/diffusion_pytorch_model.safetensors"), b"abc").unwrap());
    assert!(e.contains("too short"), "{e}");
    let e = snapshot_error(|r| std::fs::write(r.join("model_index.json"), "{\"_class_name\": \"LTXPipe").unwrap());
    assert!(e.contains("model_index.json") && e.contains("not valid JSON"), "{e}");
    let e = snapshot_error(|r| std::fs::write(r.join("model_index.json"), r#"{"_class_name": "LTX2Pipeline"}"#).unwrap());
    assert!(e.contains("LTX-2") && e.contains("not support"), "{e}");
    let e = snapshot_error(|r| std::fs::write(r.join("model_index.json"), r#"{"_class_name": "FluxPipeline"}"#).unwrap());
    assert!(e.contains("not an LTX-Video pipeline"), "{e}");
    let e = snapshot_error(|r| {
        let p = r.join("vae/config.json");
        let mut v = read_json(&p);
        v["layers_per_block"] = json!([1]);
        std::fs::write(&p, v.to_string()).unwrap();
    });
    assert!(e.contains("layers_per_block"), "{e}");
    let e = snapshot_error(|r| {
        let p = r.join("transformer/config.json");
        let mut v = read_json(&p);
        v["num_layers"] = json!(3);
        std::fs::write(&p, v.to_string()).unwrap();
    });
    assert!(e.contains("`transformer_blocks.2.") && e.contains("missing"), "{e}");
    let e = snapshot_error(|r| std::fs::remove_dir_all(r.join("scheduler")).unwrap());
    assert!(e.contains("scheduler/scheduler_config.json"), "{e}");

    // Sharded: an index naming a shard that is gone, or the wrong shard.
    let dir = tempfile::tempdir().unwrap();
    tiny_snapshot(dir.path(), true, false);
    let idx = dir.path().join("transformer/diffusion_pytorch_model.safetensors.index.json");
    let mut v = read_json(&idx);
    let first = v["weight_map"].as_object().unwrap().keys().next().unwrap().clone();
    v["weight_map"][&first] = json!("diffusion_pytorch_model-00002-of-00002.safetensors");
    std::fs::write(&idx, v.to_string()).unwrap();
    let e = Model::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains(&format!("`{first}`")) && e.contains("index.json"), "{e}");
    std::fs::remove_file(dir.path().join("transformer/diffusion_pytorch_model-00001-of-00002.safetensors")).unwrap();
    let e = Model::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("shard diffusion_pytorch_model-00001-of-00002.safetensors") && e.contains("missing"), "{e}");

    // Not an LTX file at all.
    let file = dir.path().join("other.safetensors");
    save(&file, &[("w".to_string(), Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap())].into(), None);
    let e = Model::load(&file).unwrap_err().to_string();
    assert!(e.contains("not an LTX-Video checkpoint"), "{e}");
}

#[test]
fn missing_text_encoder_loads_but_encoding_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    tiny_snapshot(dir.path(), false, false);
    let mut model = Model::load(dir.path()).unwrap();
    assert!(model.describe().ends_with("text encoder: no"));
    let m = model.ltx_mut().unwrap();
    assert!(!m.text.is_available());
    let e = m.text.encode(&["x"], 8).unwrap_err().to_string();
    assert!(e.contains("no T5 text encoder") && e.contains("--text-encoder"), "{e}");

    // Half a text encoder is an error naming the half that is gone.
    copy_dir(&fixture("t5/text_encoder"), &dir.path().join("text_encoder"));
    let e = Model::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("missing tokenizer/"), "{e}");
    // A broken one too.
    copy_dir(&fixture("t5/tokenizer"), &dir.path().join("tokenizer"));
    let p = dir.path().join("text_encoder/model.safetensors");
    let mut t = load_map(&p);
    t.remove("encoder.final_layer_norm.weight");
    save(&p, &t, None);
    let e = Model::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("`encoder.final_layer_norm.weight` is missing"), "{e}");
    let e = Model::load_ltx(dir.path(), Some(&dir.path().join("nowhere")), DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nowhere") && e.contains("does not exist"), "{e}");
}

// ---------------------------------------------- real-size headers (sparse)

#[test]
fn real_size_checkpoints_inspect_from_headers() {
    let dir = tempfile::tempdir().unwrap();
    // Single files as Lightricks publishes them (no metadata: configs by version).
    for (t, v, want) in [
        ("transformer_2b", "vae_090", LtxVersion::V0_9_0),
        ("transformer_2b", "vae_091", LtxVersion::V0_9_1),
        ("transformer_2b", "vae_095", LtxVersion::V0_9_5),
        ("transformer_13b", "vae_095", LtxVersion::V0_9_7),
    ] {
        let mut tensors = pairs(&manifest(t).1, true);
        tensors.extend(pairs(&manifest(v).1, true));
        tensors.push(("vae.per_channel_statistics.channel".into(), vec![128]));
        let file = dir.path().join(format!("ltxv-{}.safetensors", want.name()));
        write_header_only(&file, &tensors, None);
        let i = load::inspect(&file, None).unwrap();
        assert_eq!(i.version, want);
        assert_eq!(i.transformer_config, want.transformer_config());
        assert_eq!(i.vae_config, want.vae_config());
        assert_eq!(i.scheduler.use_dynamic_shifting, matches!(want, LtxVersion::V0_9_0 | LtxVersion::V0_9_1));
        let params: usize = manifest(t).1.iter().map(|x| x.2.iter().product::<usize>()).sum();
        assert_eq!(i.transformer.parameters, params);
        assert_eq!(i.transformer.stored_dtypes, vec!["bf16".to_string()]);
        assert!(!i.has_text_encoder());
    }
    // A real 0.9.5 diffusers snapshot, the transformer in two shards.
    let root = dir.path().join("LTX-Video-0.9.5");
    real_snapshot(&root);
    let i = load::inspect(&root, None).unwrap();
    assert_eq!((i.version, i.layout), (LtxVersion::V0_9_5, Layout::Diffusers));
    assert_eq!(format!("{:.4}", i.transformer.parameters as f64 / 1e9), "1.9234");
    assert_eq!(i.transformer.files.len(), 2);
}

fn real_snapshot(root: &Path) {
    let t = root.join("transformer");
    let v = root.join("vae");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::create_dir_all(&v).unwrap();
    std::fs::create_dir_all(root.join("scheduler")).unwrap();
    std::fs::write(root.join("model_index.json"), r#"{"_class_name": "LTXPipeline"}"#).unwrap();
    std::fs::write(root.join("scheduler/scheduler_config.json"), scheduler_json().to_string()).unwrap();
    let (tc, te) = manifest("transformer_2b");
    std::fs::write(t.join("config.json"), tc.to_string()).unwrap();
    let tensors = pairs(&te, false);
    let (a, b) = tensors.split_at(tensors.len() / 2);
    let mut wm = serde_json::Map::new();
    for (i, part) in [a, b].iter().enumerate() {
        let name = format!("diffusion_pytorch_model-0000{}-of-00002.safetensors", i + 1);
        write_header_only(&t.join(&name), part, None);
        for (n, _) in part.iter() {
            wm.insert(n.clone(), json!(name));
        }
    }
    std::fs::write(t.join("diffusion_pytorch_model.safetensors.index.json"), json!({"weight_map": wm}).to_string()).unwrap();
    let (vc, ve) = manifest("vae_095");
    std::fs::write(v.join("config.json"), vc.to_string()).unwrap();
    write_header_only(&v.join("diffusion_pytorch_model.safetensors"), &pairs(&ve, false), None);
}

// ------------------------------------------------------ (v) weft model inspect

fn weft(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weft")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn cli_inspect_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    tiny_snapshot(&snap, true, true);
    let (ok, out, err) = weft(&["model", "inspect", snap.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("LTX-Video 0.9.5") && out.contains("diffusers snapshot"), "{out}");
    assert!(out.contains("transformer: ") && out.contains("stored f32, 2 files"), "{out}");
    assert!(out.contains("vae: ") && out.contains("text encoder: ") && !out.contains("missing"), "{out}");

    let file = dir.path().join("ltxv.safetensors");
    tiny_single_file(&file, "vae");
    let (ok, out, err) = weft(&["model", "inspect", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("single file"), "{out}");
    assert!(out.contains("text encoder: missing") && out.contains("--text-encoder DIR"), "{out}");
    let t5 = fixture("t5");
    let (ok, out, err) = weft(&["model", "inspect", file.to_str().unwrap(), "--text-encoder", t5.to_str().unwrap()]);
    assert!(ok && !out.contains("missing"), "{out}{err}");

    // Real-size 0.9.5 snapshot: headers only.
    let real = dir.path().join("real");
    real_snapshot(&real);
    let (ok, out, err) = weft(&["model", "inspect", real.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("transformer: 1.9 B parameters") && out.contains("vae: 1.2 B parameters"), "{out}");

    // Broken: a one-line error, non-zero exit.
    let p = snap.join("transformer/diffusion_pytorch_model-00002-of-00002.safetensors");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    let (ok, out, err) = weft(&["model", "inspect", snap.to_str().unwrap()]);
    assert!(!ok && out.is_empty(), "{out}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("weft: ") && err.contains("truncated"), "{err}");
}
