//! Parity of weft's LTX-Video transformer with diffusers 0.42.1, on fixtures
//! written by `scripts/ltx_reference/transformer.py` (a tiny random model),
//! and the real 2B model's parameter names and shapes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;
use weft::model::ltx::transformer::{Config, LtxVideoTransformer3DModel, tensor_shapes};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ltx")
        .join(name)
}

fn tiny_config() -> Config {
    serde_json::from_str(&std::fs::read_to_string(fixture("transformer_config.json")).unwrap())
        .unwrap()
}

type Shapes = Vec<(String, Vec<usize>)>;

/// A VarBuilder backend over a map of tensors that records every name read.
struct Recording {
    tensors: HashMap<String, Tensor>,
    read: Arc<Mutex<Shapes>>,
}

impl SimpleBackend for Recording {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!("{name}: shape {:?}, expected {:?}", t.shape(), s)
        }
        self.read
            .lock()
            .unwrap()
            .push((name.to_string(), s.dims().to_vec()));
        Ok(t)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {name}")))?;
        t.to_dtype(dtype)?.to_device(dev)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

fn load_io() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("transformer_io.safetensors"), &Device::Cpu).unwrap()
}

/// (frames, height, width) of a case's latent grid.
fn grid(io: &HashMap<String, Tensor>, case: &str) -> (usize, usize, usize) {
    let g = io[&format!("{case}.grid")].to_vec1::<i64>().unwrap();
    (g[0] as usize, g[1] as usize, g[2] as usize)
}

fn tiny_model() -> LtxVideoTransformer3DModel {
    tiny_model_in(DType::F32)
}

fn tiny_model_in(dtype: DType) -> LtxVideoTransformer3DModel {
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[fixture("transformer.safetensors")],
            dtype,
            &Device::Cpu,
        )
        .unwrap()
    };
    LtxVideoTransformer3DModel::new(&tiny_config(), vb).unwrap()
}

/// (max |a - b|, max |b|).
fn max_err(a: &Tensor, b: &Tensor) -> (f32, f32) {
    assert_eq!(a.dims(), b.dims());
    let e = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let m = b
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    (e, m)
}

fn check(what: &str, got: &Tensor, want: &Tensor) {
    let (e, m) = max_err(got, want);
    let tol = 1e-4 * m.max(1.0);
    eprintln!("{what}: max abs error {e:.3e} (max |ref| {m:.3}, tolerance {tol:.1e})");
    assert!(e <= tol, "{what}: max abs error {e} > {tol}");
}

#[test]
fn scalar_timestep_padded_mask_grid_rope() {
    let io = load_io();
    let model = tiny_model();
    let (f, h, w) = grid(&io, "a");
    let frame_rate = io["a.frame_rate"].to_scalar::<i64>().unwrap() as f64;
    let scale = Some([8.0 / frame_rate, 32.0, 32.0]);
    let hs = &io["a.hidden_states"];
    let (cos, sin) = model
        .rope()
        .forward(hs.dim(0).unwrap(), f, h, w, scale, None, &Device::Cpu)
        .unwrap();
    check("a rope cos", &cos, &io["a.rope_cos"]);
    check("a rope sin", &sin, &io["a.rope_sin"]);
    let out = model
        .forward(
            hs,
            &io["a.encoder_hidden_states"],
            &io["a.timestep"],
            Some(&io["a.encoder_attention_mask"]),
            f,
            h,
            w,
            scale,
            None,
        )
        .unwrap();
    check("a output", &out, &io["a.output"]);
}

#[test]
fn per_token_timesteps_and_video_coords() {
    let io = load_io();
    let model = tiny_model();
    let (f, h, w) = grid(&io, "b");
    let coords = &io["b.video_coords"];
    let hs = &io["b.hidden_states"];
    assert_eq!(
        io["b.timestep"].dims(),
        &[hs.dim(0).unwrap(), hs.dim(1).unwrap()]
    );
    let (cos, sin) = model
        .rope()
        .forward(
            hs.dim(0).unwrap(),
            f,
            h,
            w,
            None,
            Some(coords),
            &Device::Cpu,
        )
        .unwrap();
    check("b rope cos", &cos, &io["b.rope_cos"]);
    check("b rope sin", &sin, &io["b.rope_sin"]);
    let out = model
        .forward(
            hs,
            &io["b.encoder_hidden_states"],
            &io["b.timestep"],
            Some(&io["b.encoder_attention_mask"]),
            f,
            h,
            w,
            Some([8.0 / 25.0, 32.0, 32.0]),
            Some(coords),
        )
        .unwrap();
    check("b output", &out, &io["b.output"]);
}

#[test]
fn shapes_of_the_2b_model_match_diffusers() {
    #[derive(serde::Deserialize)]
    struct Manifest {
        config: Config,
        tensors: Vec<(String, Vec<usize>)>,
    }
    let m: Manifest = serde_json::from_str(
        &std::fs::read_to_string(fixture("transformer_2b_manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m.config, Config::ltx_video_2b());
    let got = tensor_shapes(&m.config);
    assert_eq!(got.len(), m.tensors.len());
    for (g, w) in got.iter().zip(&m.tensors) {
        assert_eq!(g, w);
    }
    let n: usize = got.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    eprintln!("LTX-Video 2B: {} tensors, {n} parameters", got.len());
}

#[test]
fn tiny_model_reads_exactly_tensor_shapes() {
    let cfg = tiny_config();
    let tensors =
        candle_core::safetensors::load(fixture("transformer.safetensors"), &Device::Cpu).unwrap();
    let read = Arc::new(Mutex::new(Vec::new()));
    let backend = Box::new(Recording {
        tensors: tensors.clone(),
        read: read.clone(),
    });
    let vb = VarBuilder::from_backend(backend, DType::F32, Device::Cpu);
    LtxVideoTransformer3DModel::new(&cfg, vb).unwrap();
    let read = read.lock().unwrap().clone();
    let read: BTreeMap<String, Vec<usize>> = read.into_iter().collect();
    let expected: BTreeMap<String, Vec<usize>> = tensor_shapes(&cfg).into_iter().collect();
    assert_eq!(
        read, expected,
        "tensors read by new() differ from tensor_shapes()"
    );
    let in_file: BTreeMap<String, Vec<usize>> = tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    assert_eq!(
        in_file, expected,
        "fixture tensors (all must be used) differ from tensor_shapes()"
    );
}

#[test]
fn config_defaults_are_diffusers_defaults() {
    let cfg: Config = serde_json::from_str("{}").unwrap();
    assert_eq!(cfg, Config::ltx_video_2b());
    let cfg: Config = serde_json::from_str(r#"{"in_channels": 16, "out_channels": null}"#).unwrap();
    assert_eq!(cfg.out_channels(), 16);
}

/// The model also runs in bf16 (weights and activations; norms, softmax and
/// rotary tables in f32): close to the f32 reference, within bf16's precision.
#[test]
fn bf16_runs_close_to_f32() {
    let io = load_io();
    let model = tiny_model_in(DType::BF16);
    let (f, h, w) = grid(&io, "b");
    let out = model
        .forward(
            &io["b.hidden_states"],
            &io["b.encoder_hidden_states"],
            &io["b.timestep"],
            Some(&io["b.encoder_attention_mask"]),
            f,
            h,
            w,
            None,
            Some(&io["b.video_coords"]),
        )
        .unwrap();
    assert_eq!(out.dtype(), DType::BF16);
    let (e, m) = max_err(&out.to_dtype(DType::F32).unwrap(), &io["b.output"]);
    eprintln!("bf16 b output: max abs error {e:.3e} (max |ref| {m:.3})");
    assert!(e <= 0.05 * m.max(1.0), "bf16: max abs error {e}");
}

/// The CPU feed-forward runs long inputs in row chunks (its 4x-wide
/// intermediate kept small); any chunking gives the unchunked result.
#[test]
fn feed_forward_row_chunks_match_one_pass() -> Result<()> {
    use weft::model::ltx::transformer::FeedForward;
    let dev = Device::Cpu;
    let dim = 64;
    let mut ws = HashMap::new();
    ws.insert("net.0.proj.weight".to_string(), (Tensor::randn(0f32, 1.0, (4 * dim, dim), &dev)? * 0.1)?);
    ws.insert("net.0.proj.bias".to_string(), Tensor::randn(0f32, 0.1, 4 * dim, &dev)?);
    ws.insert("net.2.weight".to_string(), (Tensor::randn(0f32, 1.0, (dim, 4 * dim), &dev)? * 0.05)?);
    ws.insert("net.2.bias".to_string(), Tensor::randn(0f32, 0.1, dim, &dev)?);
    let ff = FeedForward::new(dim, VarBuilder::from_tensors(ws, DType::F32, &dev))?;
    let x = Tensor::randn(0f32, 1.0, (2, 61, dim), &dev)?;
    let whole = ff.forward_rows(1 << 20, &x)?;
    assert_eq!(whole.dims(), &[2, 61, dim]);
    for chunk in [1, 12, 50, 121] {
        let y = ff.forward_rows(chunk, &x)?;
        let err = (&y - &whole)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(err <= 1e-6, "chunk {chunk}: max abs error {err}");
    }
    Ok(())
}
