//! Parity of the LTX-Video VAE port with diffusers 0.42.1 (fixtures from
//! scripts/ltx_reference/vae.py) and its tensor manifest against the real
//! LTX-Video 0.9.5 VAE's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use weft::model::ltx::vae::{self, AutoencoderKLLTXVideo, Config, Tiling};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ltx")
        .join(name)
}

fn config(name: &str) -> Config {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn io() -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("vae_io.safetensors"), &Device::Cpu).unwrap()
}

fn model(name: &str) -> (Config, AutoencoderKLLTXVideo) {
    let cfg = config(&format!("{name}_config.json"));
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[fixture(&format!("{name}.safetensors"))],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    let m = AutoencoderKLLTXVideo::new(&cfg, vb).unwrap();
    (cfg, m)
}

fn check(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let want = want.to_dtype(DType::F32).unwrap();
    let err: f32 = (got - &want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    let scale: f32 = want
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    let tol = 1e-4 * scale.max(1.0);
    println!("{what}: max abs err {err:.3e} (max |ref| {scale:.3}, tol {tol:.1e})");
    assert!(err <= tol, "{what}: max abs err {err} > {tol}");
}

fn parity(name: &str) {
    let io = io();
    let (cfg, m) = model(name);
    let clip = &io["clip"];
    let (mean, logvar) = m.encode_dist(clip).unwrap();
    check(&format!("{name} mean"), &mean, &io[&format!("{name}.mean")]);
    // (the tc fixture leaves logvar and the normalised latents out, for size)
    if let Some(want) = io.get(&format!("{name}.logvar")) {
        check(&format!("{name} logvar"), &logvar, want);
    }
    if let Some(want) = io.get(&format!("{name}.normalized")) {
        check(
            &format!("{name} normalized"),
            &m.normalize_latents(&mean).unwrap(),
            want,
        );
    }
    let back = m
        .denormalize_latents(&m.normalize_latents(&mean).unwrap())
        .unwrap();
    check(&format!("{name} denormalize(normalize)"), &back, &mean);
    let t = io["decode_timestep"].clone();
    let temb = cfg.timestep_conditioning.then_some(&t);
    let dec = m.decode(&io[&format!("{name}.latent")], temb).unwrap();
    check(
        &format!("{name} decoded"),
        &dec,
        &io[&format!("{name}.decoded")],
    );
}

#[test]
fn parity_095_layout() {
    parity("vae");
}

#[test]
fn parity_timestep_conditioned() {
    parity("vae_tc");
}

fn tiling(kind: &str) -> Tiling {
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("vae_tiling.json")).unwrap())
            .unwrap();
    let d = Tiling::default();
    let g = |k: &str, default: usize| t[kind][k].as_u64().map_or(default, |v| v as usize);
    Tiling {
        spatial: kind == "spatial",
        temporal: kind == "temporal",
        tile_sample_min_height: g("tile_sample_min_height", d.tile_sample_min_height),
        tile_sample_min_width: g("tile_sample_min_width", d.tile_sample_min_width),
        tile_sample_min_num_frames: g("tile_sample_min_num_frames", d.tile_sample_min_num_frames),
        tile_sample_stride_height: g("tile_sample_stride_height", d.tile_sample_stride_height),
        tile_sample_stride_width: g("tile_sample_stride_width", d.tile_sample_stride_width),
        tile_sample_stride_num_frames: g(
            "tile_sample_stride_num_frames",
            d.tile_sample_stride_num_frames,
        ),
    }
}

#[test]
fn spatially_tiled_encode_and_decode_match_diffusers() {
    let io = io();
    let (cfg, mut m) = model("vae_tc");
    assert!(cfg.timestep_conditioning);
    m.enable_tiling(tiling("spatial"));
    let dec = m
        .decode(&io["vae_tc.latent"], Some(&io["decode_timestep"]))
        .unwrap();
    check("vae_tc tiled decode", &dec, &io["vae_tc.decoded_tiled"]);
    let mean = m.encode(&io["clip"]).unwrap();
    check("vae_tc tiled encode", &mean, &io["vae_tc.mean_tiled"]);
}

#[test]
fn temporally_tiled_encode_and_decode_match_diffusers() {
    let io = io();
    let (_, mut m) = model("vae_tc");
    m.enable_tiling(tiling("temporal"));
    let dec = m
        .decode(&io["vae_tc.latent_t"], Some(&io["decode_timestep"]))
        .unwrap();
    check(
        "vae_tc temporal-tiled decode",
        &dec,
        &io["vae_tc.decoded_temporal"],
    );
    let mean = m.encode(&io["clip_t"]).unwrap();
    check(
        "vae_tc temporal-tiled encode",
        &mean,
        &io["vae_tc.mean_temporal"],
    );
}

#[test]
fn noise_injection_is_seeded() {
    let io = io();
    let mut cfg = config("vae_tc_config.json");
    cfg.decoder_inject_noise = vec![true, true, true, true, false];
    // The fixture's weights plus unit noise scales.
    let mut tensors =
        candle_core::safetensors::load(fixture("vae_tc.safetensors"), &Device::Cpu).unwrap();
    for (name, shape) in vae::tensor_shapes(&cfg) {
        if name.contains("per_channel_scale") {
            tensors.insert(name, Tensor::ones(shape, DType::F32, &Device::Cpu).unwrap());
        }
    }
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let m = AutoencoderKLLTXVideo::new(&cfg, vb).unwrap();
    let z = &io["vae_tc.latent"];
    let t = &io["decode_timestep"];
    let a = m.decode_with_noise(z, Some(t), Some(7)).unwrap();
    let b = m.decode_with_noise(z, Some(t), Some(7)).unwrap();
    let c = m.decode_with_noise(z, Some(t), None).unwrap();
    let d = |x: &Tensor, y: &Tensor| -> f32 {
        (x - y)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    assert_eq!(d(&a, &b), 0.0);
    assert!(d(&a, &c) > 0.0);
}

fn manifest() -> (serde_json::Value, BTreeMap<String, Vec<usize>>) {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("vae_095_manifest.json")).unwrap())
            .unwrap();
    let t = v["tensors"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, s)| {
            (
                k.clone(),
                s.as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect(),
            )
        })
        .collect();
    (v["config"].clone(), t)
}

#[test]
fn real_095_tensor_manifest() {
    let (mcfg, want) = manifest();
    let from_json: Config = serde_json::from_value(mcfg).unwrap();
    assert_eq!(from_json, Config::ltx_095());
    let got = vae::tensor_shapes(&Config::ltx_095());
    assert_eq!(
        got.len(),
        want.len(),
        "no tensor loaded twice, none missing"
    );
    let got: BTreeMap<_, _> = got.into_iter().collect();
    assert_eq!(got, want);
    assert_eq!(Config::ltx_095().spatial_compression(), 32);
    assert_eq!(Config::ltx_095().temporal_compression(), 8);
}

#[test]
fn tiny_models_load_exactly_their_checkpoints() {
    for name in ["vae", "vae_tc"] {
        let cfg = config(&format!("{name}_config.json"));
        let st =
            candle_core::safetensors::load(fixture(&format!("{name}.safetensors")), &Device::Cpu)
                .unwrap();
        let want: BTreeMap<String, Vec<usize>> = st
            .iter()
            .map(|(k, v)| (k.clone(), v.dims().to_vec()))
            .collect();
        let got = vae::tensor_shapes(&cfg);
        assert_eq!(got.len(), want.len(), "{name}");
        let got: BTreeMap<_, _> = got.into_iter().collect();
        assert_eq!(got, want, "{name}");
    }
}

/// Rough CPU throughput of the conv2d-per-tap conv3d (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn bench_causal_conv3d() {
    let dev = Device::Cpu;
    let vb = VarBuilder::zeros(DType::F32, &dev);
    let conv = vae::CausalConv3d::new(128, 128, 3, (1, 1, 1), false, vb).unwrap();
    let x = Tensor::randn(0f32, 1.0, (1, 128, 9, 64, 64), &dev).unwrap();
    conv.forward(&x).unwrap();
    let t = std::time::Instant::now();
    let y = conv.forward(&x).unwrap();
    let s = t.elapsed().as_secs_f64();
    let flops = 2.0 * 128.0 * 128.0 * 27.0 * 9.0 * 64.0 * 64.0;
    println!("conv3d 128->128 on {:?}: {:.3} s, {:.1} GFLOP/s", y.dims(), s, flops / s / 1e9);
}
