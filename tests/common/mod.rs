#![allow(dead_code)]
use weft::model::Transformer;
use weft::{Config, Frame, Model};

/// A tiny transformer with random weights, marked trained so that the
/// sampler runs it (these tests exercise the sampling machinery).
pub fn tiny_transformer(seed: u64) -> Transformer {
    Transformer::untrained(&Config { trained: true, ..Config::tiny() }, seed, &candle_core::Device::Cpu).expect("tiny model")
}

pub fn tiny_model(seed: u64) -> Model {
    tiny_transformer(seed).into()
}

/// A frame with a moving gradient pattern, deterministic in (w, h, k).
pub fn pattern(w: usize, h: usize, k: usize) -> Frame {
    let mut d = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            d.push(((x * 7 + k * 5) % 256) as u8);
            d.push(((y * 11 + k * 3) % 256) as u8);
            d.push(((x + y + k * 13) % 256) as u8);
        }
    }
    Frame::from_rgb(w, h, d).unwrap()
}

pub fn clip(w: usize, h: usize, n: usize, k0: usize) -> Vec<Frame> {
    (0..n).map(|k| pattern(w, h, k0 + k)).collect()
}

pub fn opts(seed: u64) -> weft::GenerateOptions {
    weft::GenerateOptions { steps: 2, seed, ..Default::default() }
}
