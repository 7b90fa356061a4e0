//! weft's side of `scripts/bench-ltx`: times the full-size LTX-Video 2B
//! transformer (one forward = one denoising step, batch 1) or the 0.9.5 VAE
//! (one decode) on the random weights and inputs that
//! `scripts/ltx_reference/bench.py make DIR` wrote, and saves the outputs for
//! the parity check. One JSON line per event on stdout (as bench.py's `run`).
//!
//! cargo run --release --example ltx_bench -- DIR --model transformer|vae
//!     [--dtype f32|bf16] [--cases small,large] [--repeat N] [--out FILE]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use weft::model::ltx::{kernels, transformer, vae};

const TIMESTEP: f32 = 700.0;
const DECODE_T: f32 = 0.05;
const FRAME_RATE: f64 = 25.0;

/// (frames, height, width) of a case's latent grid.
fn latent_grid(case: &str) -> anyhow::Result<(usize, usize, usize)> {
    let (w, h, f) = match case {
        "small" => (512, 320, 25),
        "large" => (768, 512, 49),
        // The encoder only: the 17 frames of a job's video condition.
        "cond" => (512, 320, 17),
        c => bail!("unknown case {c} (small, large; cond for the encoder)"),
    };
    Ok(((f - 1) / 8 + 1, h / 32, w / 32))
}

/// A field of /proc/self/status in MiB.
fn status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{key}:")))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(-1.0)
}

/// User + system CPU seconds of this process so far (less sensitive than
/// wall time to other load on shared cores).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Resets VmHWM to the current RSS (Linux >= 4.0).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let (mut model, mut dtype, mut cases, mut repeat, mut out) =
        (String::new(), "f32".to_string(), "small".to_string(), 1usize, None::<PathBuf>);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = val()?,
            "--dtype" => dtype = val()?,
            "--cases" => cases = val()?,
            "--repeat" => repeat = val()?.parse()?,
            "--out" => out = Some(val()?.into()),
            _ if !a.starts_with('-') && dir.is_none() => dir = Some(a.into()),
            _ => bail!("unknown argument {a}"),
        }
    }
    let dev = Device::Cpu;
    if model == "matmul" {
        return matmul_bench(match dtype.as_str() { "bf16" => DType::BF16, _ => DType::F32 }, repeat.max(3), &dev);
    }
    if model == "conv3d" {
        return conv3d_bench(match dtype.as_str() { "bf16" => DType::BF16, _ => DType::F32 }, repeat.max(3), &dev);
    }
    if model == "attention" {
        return attention_bench(match dtype.as_str() { "bf16" => DType::BF16, _ => DType::F32 }, repeat.max(2), &dev);
    }
    let dir = dir.context("usage: ltx_bench DIR --model transformer|vae|snapshot [--dtype f32|bf16] [--cases small,large] [--out FILE]")?;
    let dt = match dtype.as_str() {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        d => bail!("unknown dtype {d}"),
    };
    if model == "snapshot" {
        return snapshot_load(&dir.join("snapshot"), dt, &dev);
    }
    let io = candle_core::safetensors::load(dir.join("inputs.safetensors"), &dev)?;
    let start = Instant::now();
    type Runner<'a> = Box<dyn Fn(&str) -> anyhow::Result<Tensor> + 'a>;
    let runner: Runner<'_> = match model.as_str() {
        "transformer" => Box::new(load_transformer(&dir, dt, &dev, io.clone())?),
        "vae" => Box::new(load_vae(&dir, dt, &dev, io.clone())?),
        "encoder" => Box::new(load_encoder(&dir, dt, &dev)?),
        m => bail!("unknown model {m:?} (transformer, vae, encoder)"),
    };
    println!(
        "{}",
        serde_json::json!({
            "event": "loaded", "seconds": (start.elapsed().as_secs_f64() * 100.0).round() / 100.0,
            "load_peak_mib": status_mib("VmHWM").round(), "rss_mib": status_mib("VmRSS").round(),
            "bf16_matmul": format!("{:?}", kernels::bf16_matmul()),
            "threads": rayon::current_num_threads(),
        })
    );
    let mut outs: HashMap<String, Tensor> = HashMap::new();
    for case in cases.split(',') {
        reset_peak();
        let mut best = f64::INFINITY;
        let mut best_cpu = f64::INFINITY;
        let mut y = None;
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            let c = cpu_seconds();
            let r = runner(case)?;
            best = best.min(t.elapsed().as_secs_f64());
            best_cpu = best_cpu.min(cpu_seconds() - c);
            y = Some(r);
        }
        let y = y.expect("repeat >= 1").to_dtype(DType::F32)?.contiguous()?;
        println!(
            "{}",
            serde_json::json!({
                "event": "case", "case": case, "seconds": (best * 1000.0).round() / 1000.0,
                "cpu_seconds": (best_cpu * 1000.0).round() / 1000.0,
                "peak_mib": status_mib("VmHWM").round(),
            })
        );
        let prof = weft::model::ltx::profile::report();
        if !prof.is_empty() {
            let per_run = repeat.max(1) as f64;
            let parts: serde_json::Map<String, serde_json::Value> = prof
                .iter()
                .map(|(l, s, _)| (l.to_string(), serde_json::json!((s / per_run * 1000.0).round() / 1000.0)))
                .collect();
            println!("{}", serde_json::json!({"event": "profile", "case": case, "seconds_per_run": parts}));
        }
        outs.insert(case.to_string(), y);
    }
    if let Some(out) = out {
        candle_core::safetensors::save(&outs, out)?;
    }
    Ok(())
}

/// GFLOP/s of one causal 3x3x3 convolution of the VAE (weft's `Conv3d`, f32
/// or with `--dtype bf16` bf16 weights and input), at `LTX_BENCH_CONV=cin,cout,frames,height,width` (default the
/// encoder's 512-channel stage at 512x320: 512,512,5,40,64), with the
/// resnets' RMS-norm + SiLU prologue and residual when `LTX_BENCH_CONV_FUSED=1`
/// (FLOPs count the convolution only). `scripts/ltx_reference/bench.py conv3d`
/// times the same shape in torch.
fn conv3d_bench(dt: DType, repeat: usize, dev: &Device) -> anyhow::Result<()> {
    let dims = match std::env::var("LTX_BENCH_CONV").ok().map(|v| v.split(',').map(str::parse).collect::<Result<Vec<usize>, _>>()) {
        Some(Ok(v)) if v.len() == 5 => v,
        None => vec![512, 512, 5, 40, 64],
        Some(_) => bail!("LTX_BENCH_CONV wants cin,cout,frames,height,width"),
    };
    let (ci, co, t, h, w) = (dims[0], dims[1], dims[2], dims[3], dims[4]);
    let fused = std::env::var("LTX_BENCH_CONV_FUSED").is_ok_and(|v| v == "1");
    if fused && ci != co {
        bail!("LTX_BENCH_CONV_FUSED=1 needs cin == cout (the residual)");
    }
    let flop = 2.0 * (ci * co * 27 * t * h * w) as f64;
    let x = Tensor::randn(0f32, 1.0, (1, ci, t, h, w), dev)?.to_dtype(dt)?;
    let weight = (Tensor::randn(0f32, 1.0, (co, ci, 3, 3, 3), dev)? * (1.0 / (27.0 * ci as f64).sqrt()))?.to_dtype(dt)?;
    let bias = Tensor::randn(0f32, 0.1, co, dev)?;
    let conv = kernels::Conv3d::new(&weight, &bias)?.context("conv3d: geometry not supported")?;
    let pro = if fused { kernels::Prologue::RmsNormSilu { eps: 1e-6, modulation: None } } else { kernels::Prologue::None };
    let res = fused.then_some(&x);
    conv.forward(&x, true, pro, res)?;
    let mut best = f64::INFINITY;
    for _ in 0..repeat {
        let s = Instant::now();
        conv.forward(&x, true, pro, res)?;
        best = best.min(s.elapsed().as_secs_f64());
    }
    println!(
        "{}",
        serde_json::json!({
            "event": "conv3d", "shape": [ci, co, t, h, w], "dtype": format!("{dt:?}"), "fused": fused, "weft_s": (best * 1e4).round() / 1e4,
            "weft_gflops": (flop / best / 1e9).round(), "weft_path": format!("{conv:?}"),
        })
    );
    Ok(())
}

/// GFLOP/s of one self-attention of the 2B transformer (32 heads of 64) at
/// the small and large cases' token counts (640, 2688): weft's kernel.
fn attention_bench(dt: DType, repeat: usize, dev: &Device) -> anyhow::Result<()> {
    // LTX_BENCH_KEYS=L: L keys (cross-attention: 128 text tokens) instead of S.
    let keys: Option<usize> = std::env::var("LTX_BENCH_KEYS").ok().and_then(|v| v.parse().ok());
    for s in [640usize, 2688] {
        let l = keys.unwrap_or(s);
        let r = |seed: f32, n: usize| -> anyhow::Result<Tensor> { Ok((Tensor::randn(seed, 1.0, (1, n, 2048), dev)?).to_dtype(dt)?) };
        let (q, k, v) = (r(0.0, s)?, r(0.1, l)?, r(0.2, l)?);
        let flop = 4.0 * (s * l * 2048) as f64;
        kernels::attention(&q, &k, &v, 32, None)?;
        let mut best = f64::INFINITY;
        for _ in 0..repeat {
            let t = Instant::now();
            kernels::attention(&q, &k, &v, 32, None)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{}",
            serde_json::json!({"event": "attention", "tokens": s, "keys": l, "dtype": format!("{dt:?}"),
                "seconds": (best * 1000.0).round() / 1000.0, "gflops": (flop / best / 1e9).round(),
                "per_step_28_layers_s": (best * 28.0 * 10.0).round() / 10.0})
        );
    }
    Ok(())
}

/// GFLOP/s of the 640x2048 by 2048x8192 product (the feed-forward's first
/// layer at 640 tokens): candle's matmul, and weft's `Linear` (for bf16 with
/// the path `WEFT_LTX_BF16` selects).
fn matmul_bench(dt: DType, repeat: usize, dev: &Device) -> anyhow::Result<()> {
    // LTX_BENCH_MKN=m,k,n: another shape.
    let (m, k, n) = match std::env::var("LTX_BENCH_MKN").ok().map(|v| v.split(',').map(str::parse).collect::<Result<Vec<usize>, _>>()) {
        Some(Ok(v)) if v.len() == 3 => (v[0], v[1], v[2]),
        _ => (640usize, 2048usize, 8192usize),
    };
    let flop = 2.0 * (m * k * n) as f64;
    let x = Tensor::randn(0f32, 1.0, (1, m, k), dev)?.to_dtype(dt)?;
    let w = (Tensor::randn(0f32, 1.0, (n, k), dev)? * 0.02)?.to_dtype(dt)?;
    let time = |f: &dyn Fn() -> anyhow::Result<Tensor>| -> anyhow::Result<f64> {
        f()?;
        let mut best = f64::INFINITY;
        for _ in 0..repeat {
            let t = Instant::now();
            f()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(flop / best / 1e9)
    };
    // LTX_BENCH_COLD=C: C distinct weight copies used in turn (their sum
    // larger than the L3 cache, as the model's weights are), not one warm one.
    let copies: usize = std::env::var("LTX_BENCH_COLD").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let wt = w.t()?;
    // LTX_BENCH_NO_CANDLE=1: weft only (for CPU-time measurements).
    let candle = if std::env::var_os("LTX_BENCH_NO_CANDLE").is_some() {
        0.0
    } else {
        time(&|| Ok(x.broadcast_matmul(&wt)?))?
    };
    let lins = (0..copies)
        .map(|i| Ok(kernels::Linear::new((&w + i as f64 * 1e-3)?, None)?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let turn = std::cell::Cell::new(0usize);
    let weft = time(&|| {
        let i = turn.get();
        turn.set((i + 1) % copies);
        Ok(lins[i].forward(&x)?)
    })?;
    println!(
        "{}",
        serde_json::json!({
            "event": "matmul", "shape": [m, k, n], "dtype": format!("{dt:?}"), "weight_copies": copies,
            "candle_gflops": candle.round(), "weft_gflops": weft.round(),
            "weft_path": if dt == DType::BF16 { format!("{:?}", kernels::bf16_matmul()) } else { "avx512 f32 panels".into() },
        })
    );
    Ok(())
}

/// `--model snapshot`: loads DIR/snapshot as `weft` does (`Model::load_ltx`:
/// transformer in the dtype, VAE in f32) and prints the load time, its peak
/// and (with WEFT_LTX_PROFILE=1) where it went.
fn snapshot_load(snapshot: &Path, dt: DType, dev: &Device) -> anyhow::Result<()> {
    let start = Instant::now();
    let c = cpu_seconds();
    let model = weft::model::Model::load_ltx(snapshot, None, dt, dev)?;
    let parts: serde_json::Map<String, serde_json::Value> = weft::model::ltx::profile::report()
        .iter()
        .map(|(l, s, n)| (l.to_string(), serde_json::json!({"seconds": (s * 1000.0).round() / 1000.0, "calls": n})))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "event": "loaded", "what": "snapshot", "seconds": (start.elapsed().as_secs_f64() * 100.0).round() / 100.0,
            "cpu_seconds": ((cpu_seconds() - c) * 100.0).round() / 100.0,
            "load_peak_mib": status_mib("VmHWM").round(), "rss_mib": status_mib("VmRSS").round(),
            "parameters": model.ltx().map(|m| m.num_parameters()), "profile": parts,
        })
    );
    Ok(())
}

/// `--model encoder`: the 0.9.5 VAE's encoder (what the jobs run on their
/// conditioning frames) on a smooth synthetic video in [-1, 1] that
/// bench.py's `run --model encoder` builds the same way: the small case is
/// 25 frames at 512x320, the large one 49 at 768x512, `cond` 17 at 512x320
/// (a job's video condition). Output: the raw moments.
fn load_encoder(dir: &Path, dt: DType, dev: &Device) -> anyhow::Result<impl Fn(&str) -> anyhow::Result<Tensor>> {
    let d = dir.join("vae");
    let cfg: vae::Config = serde_json::from_str(&std::fs::read_to_string(d.join("config.json"))?)?;
    let encoder = {
        let vb = var_builder(&d.join("diffusion_pytorch_model.safetensors"), dt, dev)?;
        vae::Encoder3d::new(&cfg, vb.pp("encoder"))?
    };
    let dev = dev.clone();
    Ok(move |case: &str| -> anyhow::Result<Tensor> {
        let (f, h, w) = latent_grid(case)?;
        let x = encoder_input((f - 1) * 8 + 1, h * 32, w * 32, &dev)?.to_dtype(dt)?;
        Ok(encoder.forward(&x)?)
    })
}

/// `[1, 3, F, H, W]`: `0.9 sin(0.05 x + 0.07 y + 0.3 f + c)`.
fn encoder_input(f: usize, h: usize, w: usize, dev: &Device) -> anyhow::Result<Tensor> {
    let mut v = Vec::with_capacity(3 * f * h * w);
    for c in 0..3 {
        for fi in 0..f {
            for y in 0..h {
                for x in 0..w {
                    v.push(0.9 * (0.05 * x as f32 + 0.07 * y as f32 + 0.3 * fi as f32 + c as f32).sin());
                }
            }
        }
    }
    Ok(Tensor::from_vec(v, (1, 3, f, h, w), dev)?)
}

fn var_builder(file: &Path, dt: DType, dev: &Device) -> anyhow::Result<VarBuilder<'static>> {
    // weft's loader (positioned reads, no memory map), as `weft` loads models.
    Ok(weft::model::ltx::load::read_var_builder(&[file.to_path_buf()], dt, dev)?)
}

fn load_transformer(
    dir: &Path,
    dt: DType,
    dev: &Device,
    io: HashMap<String, Tensor>,
) -> anyhow::Result<impl Fn(&str) -> anyhow::Result<Tensor>> {
    let d = dir.join("transformer");
    let cfg: transformer::Config =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json"))?)?;
    let model = {
        let vb = var_builder(&d.join("diffusion_pytorch_model.safetensors"), dt, dev)?;
        transformer::LtxVideoTransformer3DModel::new(&cfg, vb)?
    };
    let dev = dev.clone();
    Ok(move |case: &str| -> anyhow::Result<Tensor> {
        let (f, h, w) = latent_grid(case)?;
        let hs = io[&format!("{case}.hidden_states")].to_dtype(dt)?;
        let text = io["encoder_hidden_states"].to_dtype(dt)?;
        let t = Tensor::new(&[TIMESTEP], &dev)?;
        Ok(model.forward(
            &hs,
            &text,
            &t,
            Some(&io["encoder_attention_mask"]),
            f,
            h,
            w,
            Some([8.0 / FRAME_RATE, 32.0, 32.0]),
            None,
        )?)
    })
}

fn load_vae(
    dir: &Path,
    dt: DType,
    dev: &Device,
    io: HashMap<String, Tensor>,
) -> anyhow::Result<impl Fn(&str) -> anyhow::Result<Tensor>> {
    let d = dir.join("vae");
    let cfg: vae::Config = serde_json::from_str(&std::fs::read_to_string(d.join("config.json"))?)?;
    // Only the decoder is built (a decode-only stage needs no encoder; diffusers'
    // memory-mapped encoder weights are never touched either), and it is what
    // `AutoencoderKLLTXVideo::decode` runs without tiling.
    let decoder = {
        let vb = var_builder(&d.join("diffusion_pytorch_model.safetensors"), dt, dev)?;
        vae::Decoder3d::new(&cfg, vb.pp("decoder"))?
    };
    let dev = dev.clone();
    Ok(move |case: &str| -> anyhow::Result<Tensor> {
        latent_grid(case)?;
        let z = io[&format!("{case}.latents")].to_dtype(dt)?;
        let t = Tensor::new(&[DECODE_T], &dev)?.to_dtype(dt)?;
        Ok(decoder.forward(&z, Some(&t), &mut vae::NoiseGen::off())?)
    })
}
