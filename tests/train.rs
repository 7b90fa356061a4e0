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
    weft::Model::load(dir.path().join("ema")).unwrap();
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
