//! The model: forward shapes, save/load and every loader error.

mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use weft::model::{Mode, WindowBatch};
use weft::model::Transformer;
use weft::{Config, Model, WeftError};

fn batch_tensors(b: usize, t: usize, h: usize, w: usize) -> (Tensor, Tensor, Tensor, Tensor) {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (b, t, 3, h, w), &dev).unwrap();
    let tt = Tensor::from_vec((0..b * t).map(|i| (i % 3) as f32 / 2.0).collect::<Vec<_>>(), (b, t), &dev).unwrap();
    let known = Tensor::from_vec((0..b * t).map(|i| ((i % t) % 2) as u32).collect::<Vec<_>>(), (b, t), &dev).unwrap();
    let tpos = Tensor::from_vec((0..b * t).map(|i| (i % t) as f32 - 1.5).collect::<Vec<_>>(), (b, t), &dev).unwrap();
    (x, tt, known, tpos)
}

fn forward(m: &Transformer, x: &Tensor, t: &Tensor, k: &Tensor, p: &Tensor, mode: Mode) -> Tensor {
    m.forward(&WindowBatch { x, t, known: k, tpos: p }, mode).unwrap()
}

#[test]
fn forward_shape_and_finite_at_several_sizes() {
    let m = tiny_transformer(0);
    for (b, t, h, w) in [(1, 1, 1, 1), (1, 5, 16, 16), (2, 3, 17, 29), (1, 2, 9, 200), (1, 4, 64, 48)] {
        let (x, tt, k, p) = batch_tensors(b, t, h, w);
        let y = forward(&m, &x, &tt, &k, &p, Mode::Inference);
        assert_eq!(y.dims(), &[b, t, 3, h, w]);
        let max = y.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(max.is_finite(), "{b}x{t}x{h}x{w}: not finite");
    }
}

#[test]
fn default_config_forward_runs() {
    let m = Transformer::untrained(&Config::default(), 0, &Device::Cpu).unwrap();
    assert!((4_000_000..5_000_000).contains(&m.num_parameters()), "{}", m.num_parameters());
    let (x, tt, k, p) = batch_tensors(1, 3, 40, 72);
    let y = forward(&m, &x, &tt, &k, &p, Mode::Inference);
    assert_eq!(y.dims(), &[1, 3, 3, 40, 72]);
}

#[test]
fn train_and_inference_modes_agree() {
    let m = tiny_transformer(1);
    let (x, tt, k, p) = batch_tensors(2, 3, 20, 24);
    let a = forward(&m, &x, &tt, &k, &p, Mode::Inference);
    let b = forward(&m, &x, &tt, &k, &p, Mode::Train);
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-3, "modes differ by {d}");
}

#[test]
fn output_depends_on_context_positions_and_flags() {
    let m = tiny_transformer(2);
    let (x, tt, k, p) = batch_tensors(1, 4, 16, 16);
    let base = forward(&m, &x, &tt, &k, &p, Mode::Inference);
    let differs = |y: Tensor| (y - &base).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 1e-5;
    // known = [0, 1, 0, 1]. Other content in known frame 1 changes the
    // prediction for frame 2 (attention across time)...
    let x2 = Tensor::cat(&[x.narrow(1, 0, 1).unwrap(), x.narrow(1, 1, 1).unwrap().affine(-1.0, 0.3).unwrap(), x.narrow(1, 2, 2).unwrap()], 1).unwrap();
    let y = forward(&m, &x2, &tt, &k, &p, Mode::Inference);
    let d2 = (y.narrow(1, 2, 1).unwrap() - base.narrow(1, 2, 1).unwrap()).unwrap();
    assert!(d2.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 1e-5, "frame 2 ignores frame 1");
    // ...but other content in a frame being generated never changes the known
    // frames' pass (their tokens attend only to known tokens).
    let x3 = Tensor::cat(&[x.narrow(1, 0, 1).unwrap().affine(-1.0, 0.3).unwrap(), x.narrow(1, 1, 3).unwrap()], 1).unwrap();
    let y = forward(&m, &x3, &tt, &k, &p, Mode::Inference);
    for known_slot in [1, 3] {
        let d = (y.narrow(1, known_slot, 1).unwrap() - base.narrow(1, known_slot, 1).unwrap()).unwrap();
        assert_eq!(d.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }
    // Time positions matter.
    let p2 = (p.clone() * 3.0).unwrap();
    assert!(differs(forward(&m, &x, &tt, &k, &p2, Mode::Inference)));
    // Known flags matter.
    let k2 = (Tensor::ones_like(&k).unwrap() - &k).unwrap();
    assert!(differs(forward(&m, &x, &tt, &k2, &p, Mode::Inference)));
}

#[test]
fn cached_known_context_matches_the_full_window() {
    let m = tiny_transformer(12);
    let (x, tt, k, p) = batch_tensors(1, 5, 20, 28); // known = [0, 1, 0, 1, 0]
    let full = forward(&m, &x, &tt, &k, &p, Mode::Inference);
    let pick = |t: &Tensor, ix: &[u32]| t.index_select(&Tensor::new(ix, &Device::Cpu).unwrap(), 1).unwrap();
    let ctx = m.encode_known(&pick(&x, &[1, 3]), &pick(&p, &[1, 3])).unwrap();
    let generated = m.forward_generating(&ctx, &pick(&x, &[0, 2, 4]), &pick(&tt, &[0, 2, 4]), &pick(&p, &[0, 2, 4])).unwrap();
    let d = (generated - pick(&full, &[0, 2, 4])).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-4, "cached path differs by {d}");
    // A context of another size is refused.
    let small = Tensor::zeros((1, 2, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(m.forward_generating(&ctx, &small, &pick(&tt, &[0, 2]), &pick(&p, &[0, 2])).is_err());
}

#[test]
fn batches_with_unequal_known_counts_are_refused() {
    let m = tiny_transformer(13);
    let (x, tt, _, p) = batch_tensors(2, 3, 8, 8);
    let k = Tensor::new(&[[1u32, 0, 0], [1, 1, 0]], &Device::Cpu).unwrap();
    let err = m.forward(&WindowBatch { x: &x, t: &tt, known: &k, tpos: &p }, Mode::Inference).unwrap_err();
    assert!(err.to_string().contains("same number of known"), "{err}");
}

#[test]
fn every_trainable_tensor_gets_a_gradient() {
    let m = tiny_transformer(3);
    // Windows larger than one attention window so shifted blocks wrap.
    let (x, tt, k, p) = batch_tensors(2, 3, 40, 36);
    let y = forward(&m, &x, &tt, &k, &p, Mode::Train);
    let target = Tensor::randn(0f32, 1.0, y.shape(), &Device::Cpu).unwrap();
    let loss = (y - target).unwrap().sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in m.named_vars() {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        let n = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(n > 0.0 && n.is_finite(), "gradient of {name} is {n}");
    }
}

#[test]
fn save_load_round_trip_is_exact() {
    let trained = Config { trained: true, ..Config::tiny() };
    for cfg in [trained.clone(), Config { weight_dtype: weft::model::WeightDtype::F16, ..trained }] {
        let dir = tempfile::tempdir().unwrap();
        let m = Transformer::untrained(&cfg, 9, &Device::Cpu).unwrap();
        m.save(dir.path()).unwrap();
        let l = Transformer::load(dir.path()).unwrap();
        assert_eq!(l.config(), &cfg);
        // Saved again, the bytes are identical (f16 rounding happens once).
        let dir2 = tempfile::tempdir().unwrap();
        l.save(dir2.path()).unwrap();
        let a = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        let b = std::fs::read(dir2.path().join("model.safetensors")).unwrap();
        assert_eq!(a, b);
        if cfg.weight_dtype == weft::model::WeightDtype::F32 {
            for ((n, va), (_, vb)) in m.named_vars().into_iter().zip(l.named_vars()) {
                let d = (va.as_tensor() - vb.as_tensor()).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{n} changed");
            }
        }
        // Same outputs from the loaded model.
        let f = clip(12, 10, 3, 0);
        let a = weft::infill(&Model::from(l), &f[..1], &f[1..], 2, &opts(1)).unwrap();
        let l2 = Model::load(dir.path()).unwrap();
        assert_eq!(a, weft::infill(&l2, &f[..1], &f[1..], 2, &opts(1)).unwrap());
    }
}

/// Writes a safetensors file with the given tensors into a copy of a saved tiny model.
fn model_dir_with(tensors: Vec<(String, Tensor)>, cfg: &Config) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), serde_json::to_string(cfg).unwrap()).unwrap();
    let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    candle_core::safetensors::save(&map, dir.path().join("model.safetensors")).unwrap();
    dir
}

fn tiny_tensors() -> Vec<(String, Tensor)> {
    tiny_transformer(4).named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect()
}

#[test]
fn loader_accepts_files_without_checksum() {
    let dir = model_dir_with(tiny_tensors(), &Config::tiny());
    Model::load(dir.path()).unwrap();
}

#[test]
fn loader_names_a_missing_tensor() {
    let mut t = tiny_tensors();
    t.retain(|(n, _)| n != "blocks.1.attn.qkv.weight");
    let err = Model::load(model_dir_with(t, &Config::tiny()).path()).unwrap_err();
    assert!(matches!(err, WeftError::MissingTensor { ref name } if name == "blocks.1.attn.qkv.weight"), "{err}");
    assert!(err.to_string().contains("blocks.1.attn.qkv.weight"));
}

#[test]
fn loader_names_an_unexpected_tensor() {
    let mut t = tiny_tensors();
    t.push(("blocks.9.extra".into(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap()));
    let err = Model::load(model_dir_with(t, &Config::tiny()).path()).unwrap_err();
    assert!(matches!(err, WeftError::UnexpectedTensor { ref name } if name == "blocks.9.extra"), "{err}");
}

#[test]
fn loader_names_a_wrong_shape() {
    let mut t = tiny_tensors();
    for (n, v) in t.iter_mut() {
        if n == "patch_embed.bias" {
            *v = Tensor::zeros(31, DType::F32, &Device::Cpu).unwrap();
        }
    }
    let err = Model::load(model_dir_with(t, &Config::tiny()).path()).unwrap_err();
    match &err {
        WeftError::ShapeMismatch { name, expected, found } => {
            assert_eq!(name, "patch_embed.bias");
            assert_eq!(expected, &vec![32]);
            assert_eq!(found, &vec![31]);
        }
        e => panic!("wrong error {e}"),
    }
}

#[test]
fn loader_names_a_wrong_dtype() {
    let mut t = tiny_tensors();
    for (n, v) in t.iter_mut() {
        if n == "final.linear.weight" {
            *v = v.to_dtype(DType::F16).unwrap();
        }
    }
    let err = Model::load(model_dir_with(t, &Config::tiny()).path()).unwrap_err();
    assert!(
        matches!(err, WeftError::DtypeMismatch { ref name, ref expected, ref found }
            if name == "final.linear.weight" && expected == "f32" && found == "f16"),
        "{err}"
    );
}

#[test]
fn loader_rejects_a_config_that_does_not_match_the_weights() {
    let cfg = Config { hidden_size: 64, num_heads: 4, ..Config::tiny() };
    let err = Model::load(model_dir_with(tiny_tensors(), &cfg).path()).unwrap_err();
    assert!(matches!(err, WeftError::ShapeMismatch { .. }), "{err}");
    let cfg = Config { depth: 3, ..Config::tiny() };
    let err = Model::load(model_dir_with(tiny_tensors(), &cfg).path()).unwrap_err();
    assert!(matches!(err, WeftError::MissingTensor { ref name } if name.starts_with("blocks.2.")), "{err}");
}

#[test]
fn loader_rejects_truncated_and_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    tiny_transformer(5).save(dir.path()).unwrap();
    let path = dir.path().join("model.safetensors");
    let good = std::fs::read(&path).unwrap();

    for cut in [0, 7, 100, good.len() / 2, good.len() - 1] {
        std::fs::write(&path, &good[..cut]).unwrap();
        let err = Model::load(dir.path()).unwrap_err();
        assert!(matches!(err, WeftError::WeightsCorrupt { .. }), "cut at {cut}: {err}");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }
    // A flipped byte in the data: caught by the checksum.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 10] ^= 0x55;
    std::fs::write(&path, &bad).unwrap();
    let err = Model::load(dir.path()).unwrap_err();
    assert!(matches!(err, WeftError::WeightsCorrupt { ref reason, .. } if reason.contains("checksum")), "{err}");
    // Garbage header.
    std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk").unwrap();
    assert!(matches!(Model::load(dir.path()).unwrap_err(), WeftError::WeightsCorrupt { .. }));
}

#[test]
fn loader_rejects_non_finite_weights() {
    let mut t = tiny_tensors();
    for (n, v) in t.iter_mut() {
        if n == "known_embed" {
            *v = Tensor::new(&[[f32::NAN; 32], [0.0; 32]], &Device::Cpu).unwrap();
        }
    }
    let err = Model::load(model_dir_with(t, &Config::tiny()).path()).unwrap_err();
    assert!(matches!(err, WeftError::NonFinite { ref name } if name == "known_embed"), "{err}");
}

#[test]
fn loader_names_missing_and_broken_files() {
    let err = Model::load("/nonexistent/weft-model").unwrap_err();
    assert!(matches!(err, WeftError::ModelDir { .. }) && err.to_string().contains("does not exist"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let err = Model::load(dir.path()).unwrap_err();
    assert!(matches!(err, WeftError::Config { .. }) && err.to_string().contains("config.json"), "{err}");

    std::fs::write(dir.path().join("config.json"), "{\"patch_size\": 4").unwrap();
    assert!(matches!(Model::load(dir.path()).unwrap_err(), WeftError::Config { .. }));

    let bad = Config { num_heads: 3, ..Config::tiny() };
    std::fs::write(dir.path().join("config.json"), serde_json::to_string(&bad).unwrap()).unwrap();
    let err = Model::load(dir.path()).unwrap_err();
    assert!(matches!(err, WeftError::Config { ref reason, .. } if reason.contains("num_heads")), "{err}");

    std::fs::write(dir.path().join("config.json"), serde_json::to_string(&Config::tiny()).unwrap()).unwrap();
    let err = Model::load(dir.path()).unwrap_err();
    assert!(matches!(err, WeftError::WeightsCorrupt { .. }) && err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn the_embedded_default_is_the_interpolator_alone() {
    let m = Model::embedded().unwrap();
    assert!(m.interpolator().is_some() && m.transformer().is_none() && m.refiner().is_none());
    assert!(m.describe().starts_with("RIFE 4.25"), "{}", m.describe());
}

#[test]
fn an_untrained_transformer_runs_no_refinement() {
    assert!(Model::untrained(&Config::tiny(), 0, &Device::Cpu).unwrap().refiner().is_none());
    let trained = Config { trained: true, ..Config::tiny() };
    assert!(Model::untrained(&trained, 0, &Device::Cpu).unwrap().refiner().is_some());
    // Configs written before the field are untrained.
    let mut json: serde_json::Value = serde_json::to_value(Config::tiny()).unwrap();
    json.as_object_mut().unwrap().remove("trained");
    assert!(!serde_json::from_value::<Config>(json).unwrap().trained);
}

#[test]
fn a_model_directory_of_an_unknown_kind_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"kind": "sd-vae"}"#).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"").unwrap();
    let err = Model::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("unknown model kind") && err.contains("sd-vae"), "{err}");
}

#[test]
fn configs_written_before_priors_existed_load_as_noise_prior() {
    let mut json: serde_json::Value = serde_json::to_value(Config::tiny()).unwrap();
    let obj = json.as_object_mut().unwrap();
    obj.remove("prior");
    obj.remove("prior_noise");
    let cfg: Config = serde_json::from_value(json).unwrap();
    assert_eq!(cfg.prior, weft::Prior::Noise);
    let bad = Config { prior_noise: -1.0, ..Config::tiny() };
    assert!(bad.validate().unwrap_err().to_string().contains("prior_noise"));
}

#[test]
fn device_names() {
    assert!(matches!(weft::model::parse_device("cpu"), Ok(Device::Cpu)));
    let err = weft::model::parse_device("tpu").unwrap_err();
    assert!(err.to_string().contains("tpu"));
    if !candle_core::utils::cuda_is_available() {
        let err = weft::model::parse_device("cuda").unwrap_err();
        assert!(err.to_string().contains("CUDA"), "{err}");
    }
}
