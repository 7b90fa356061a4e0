#![allow(dead_code)]
use weft::{Config, Frame, Model};

pub fn tiny_model(seed: u64) -> Model {
    Model::untrained(&Config::tiny(), seed, &candle_core::Device::Cpu).expect("tiny model")
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
