//! The training loop on tiny data: loss goes down, resume is exact.

mod common;
use candle_core::Device;
use common::*;
use weft::Config;
use weft::train::{Dataset, TrainConfig, Trainer};

fn data() -> Dataset {
    Dataset { videos: vec![clip(40, 32, 12, 0)], stills: vec![pattern(48, 40, 3), pattern(30, 30, 9)] }
}

fn cfg(steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        batch: 2,
        frames: 4,
        crop: (16, 16),
        lr: 2e-3,
        warmup: 2,
        checkpoint_every: 0,
        ..Default::default()
    }
}

#[test]
fn loss_goes_down_on_tiny_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(&Config::tiny(), cfg(60), dir.path(), &Device::Cpu).unwrap();
    let d = data();
    let mut losses = Vec::new();
    t.run(&d, |r| {
        assert!(r.loss.is_finite() && r.grad_norm.is_finite());
        losses.push(r.loss)
    })
    .unwrap();
    assert_eq!(losses.len(), 60);
    let first: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let last: f64 = losses[50..].iter().sum::<f64>() / 10.0;
    assert!(last < first * 0.8, "loss {first} -> {last}");
    // The checkpoint is a loadable model.
    weft::model::Transformer::load(dir.path().join("ema")).unwrap();
}

#[test]
fn resume_continues_exactly() {
    let d = data();
    let a_dir = tempfile::tempdir().unwrap();
    let mut a = Trainer::new(&Config::tiny(), cfg(6), a_dir.path(), &Device::Cpu).unwrap();
    for _ in 0..3 {
        a.train_step(&d).unwrap();
    }
    a.checkpoint().unwrap();
    let mut b = Trainer::resume(a_dir.path(), &Device::Cpu).unwrap();
    assert_eq!(b.step(), 3);
    for _ in 0..3 {
        let ra = a.train_step(&d).unwrap();
        let rb = b.train_step(&d).unwrap();
        assert_eq!(ra.loss, rb.loss);
    }
    for ((n, va), (_, vb)) in a.model().named_vars().into_iter().zip(b.model().named_vars()) {
        let diff = (va.as_tensor() - vb.as_tensor()).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{n} differs after resume");
    }
}

#[test]
fn training_starts_each_frame_from_the_estimate_the_sampler_uses() {
    // Slots 1 and 2 of a 4-frame window are to generate: their start is the
    // in-between estimate of frames 0 and 3 at 1/3 and 2/3, as in inference;
    // known slots are zero; the noise prior has no estimate.
    let frames = clip(40, 32, 4, 0);
    let plan = vec![vec![true, false, false, true]];
    for prior in [weft::Prior::Blend, weft::Prior::Motion] {
        let m = weft::model::Transformer::untrained(&Config { prior, ..Config::tiny() }, 0, &Device::Cpu).unwrap();
        let p = weft::train::prior_batch(&m, std::slice::from_ref(&frames), &plan).unwrap().unwrap();
        assert_eq!(p.dims(), &[1, 4, 3, 32, 40]);
        let expect = match prior {
            weft::Prior::Motion => weft::eval::motion(&frames[0], &frames[3], 2),
            _ => weft::eval::blend(&frames[0], &frames[3], 2),
        };
        for (slot, e) in [(1usize, &expect[0]), (2, &expect[1])] {
            let got = p.get(0).unwrap().get(slot).unwrap();
            let want: Vec<f32> = {
                let t = candle_core::Tensor::from_slice(e.data(), (32, 40, 3), &Device::Cpu).unwrap();
                let t = t.to_dtype(candle_core::DType::F32).unwrap().affine(1.0 / 127.5, -1.0).unwrap();
                t.permute((2, 0, 1)).unwrap().flatten_all().unwrap().to_vec1().unwrap()
            };
            let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
            let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(max < 1e-5, "{prior:?} slot {slot}: off by {max}");
        }
        let known: f32 = p.get(0).unwrap().get(0).unwrap().abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert_eq!(known, 0.0);
    }
    let m = weft::model::Transformer::untrained(&Config { prior: weft::Prior::Noise, ..Config::tiny() }, 0, &Device::Cpu).unwrap();
    assert!(weft::train::prior_batch(&m, &[frames], &plan).unwrap().is_none());
}

#[test]
fn export_writes_the_ema_in_the_shipping_dtype() {
    let d = data();
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(&Config::tiny(), cfg(4), dir.path().join("run"), &Device::Cpu).unwrap();
    t.run(&d, |_| {}).unwrap();
    let out = dir.path().join("ship");
    let (step, m) = weft::train::export(&dir.path().join("run"), &out, weft::WeightDtype::F16).unwrap();
    assert_eq!(step, 4);
    assert_eq!(m.config().weight_dtype, weft::WeightDtype::F16);
    let ema = t.final_model();
    for ((name, a), (_, b)) in m.named_vars().into_iter().zip(ema.named_vars()) {
        let diff = (a.as_tensor() - b.as_tensor()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = b.as_tensor().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= scale * 1e-3 + 1e-6, "{name}: f16 copy off by {diff}");
    }
    // A directory that holds no run is named.
    let err = weft::train::export(&dir.path().join("nope"), &out, weft::WeightDtype::F16).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}
