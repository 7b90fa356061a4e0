//! Whole 3-step denoising runs of weft's LTX-Video pipelines against
//! diffusers 0.42.1's `LTXPipeline`, `LTXImageToVideoPipeline` and
//! `LTXConditionPipeline` (fixture: scripts/ltx_reference/pipeline.py, tiny
//! random models, with every Gaussian draw torch made fed back through
//! `Noise::given`), and the seeded noise source.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;
use weft::model::ltx::pipeline::*;
use weft::model::ltx::scheduler::SchedulerConfig;
use weft::model::ltx::text::{EmptyPromptCache, LtxTextEncoder};
use weft::model::ltx::transformer::{self, LtxVideoTransformer3DModel};
use weft::model::ltx::vae::{self, AutoencoderKLLTXVideo};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ltx")
        .join(name)
}

struct Fixture {
    tensors: HashMap<String, Tensor>,
    cases: Value,
}

fn load() -> Fixture {
    let path = fixture("pipeline_io.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let cases = meta.metadata().as_ref().unwrap()["cases"].clone();
    Fixture {
        tensors: candle_core::safetensors::load(&path, &Device::Cpu).unwrap(),
        cases: serde_json::from_str(&cases).unwrap(),
    }
}

fn transformer() -> LtxVideoTransformer3DModel {
    let cfg: transformer::Config =
        serde_json::from_str(&std::fs::read_to_string(fixture("transformer_config.json")).unwrap())
            .unwrap();
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[fixture("transformer.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    LtxVideoTransformer3DModel::new(&cfg, vb).unwrap()
}

fn vae(name: &str) -> AutoencoderKLLTXVideo {
    let cfg: vae::Config = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("{name}_config.json"))).unwrap(),
    )
    .unwrap();
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[fixture(&format!("{name}.safetensors"))],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    AutoencoderKLLTXVideo::new(&cfg, vb).unwrap()
}

/// (max |a - b|, max |b|).
fn max_err(a: &Tensor, b: &Tensor) -> (f32, f32) {
    assert_eq!(a.dims(), b.dims());
    let max = |t: Tensor| -> f32 {
        t.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    (max((a - b).unwrap()), max(b.clone()))
}

fn check(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    let (e, m) = max_err(got, want);
    let tol = 1e-4 * m.max(1.0);
    eprintln!("{what}: max abs error {e:.3e} (max |ref| {m:.3}, tolerance {tol:.1e})");
    assert!(e <= tol, "{what}: max abs error {e} > {tol}");
    e
}

/// u8 pixels (as diffusers was given them, `u8 / 255`) -> [-1, 1].
fn pixels(u8: &Tensor) -> Tensor {
    let x = u8
        .to_dtype(DType::F32)
        .unwrap()
        .broadcast_div(&Tensor::new(255f32, &Device::Cpu).unwrap())
        .unwrap();
    (x * 2.0).unwrap().affine(1.0, -1.0).unwrap()
}

struct Case<'f> {
    fx: &'f Fixture,
    name: String,
    meta: &'f Value,
}

impl<'f> Case<'f> {
    fn new(fx: &'f Fixture, name: &str) -> Self {
        Self {
            fx,
            name: name.to_string(),
            meta: &fx.cases[name],
        }
    }

    fn t(&self, key: &str) -> &Tensor {
        let k = format!("{}.{key}", self.name);
        self.fx
            .tensors
            .get(&k)
            .unwrap_or_else(|| panic!("fixture has no {k}"))
    }

    fn has(&self, key: &str) -> bool {
        self.fx
            .tensors
            .contains_key(&format!("{}.{key}", self.name))
    }

    fn f(&self, key: &str) -> f64 {
        self.meta[key].as_f64().unwrap()
    }

    fn u(&self, key: &str) -> usize {
        self.meta[key].as_u64().unwrap() as usize
    }

    fn scheduler(&self) -> SchedulerConfig {
        serde_json::from_value(self.meta["scheduler"].clone()).unwrap()
    }

    fn options(&self) -> VideoOptions {
        VideoOptions {
            height: self.u("height"),
            width: self.u("width"),
            num_frames: self.u("num_frames"),
            frame_rate: self.f("frame_rate"),
            num_inference_steps: self.u("num_inference_steps"),
            guidance_scale: self.f("guidance_scale"),
            guidance_rescale: self.f("guidance_rescale"),
            decode_timestep: self.f("decode_timestep"),
            decode_noise_scale: self.meta["decode_noise_scale"].as_f64(),
            decode: true,
        }
    }

    fn prompts(&self) -> PromptBatch {
        let neg = self.has("negative_embeds").then(|| {
            (
                self.t("negative_embeds").clone(),
                self.t("negative_mask").clone(),
            )
        });
        PromptBatch::from_tensors(
            self.t("prompt_embeds").clone(),
            self.t("prompt_mask").clone(),
            neg,
        )
        .unwrap()
    }

    fn noise(&self) -> Noise {
        let n = self.u("draws");
        Noise::given(
            (0..n)
                .map(|i| self.t(&format!("draw.{i}")).clone())
                .collect(),
        )
    }

    fn conditions(&self) -> Vec<Condition> {
        self.meta["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let u8 = self.t(&format!("cond.{k}"));
                let px = pixels(u8);
                // image [1, C, H, W] -> [C, 1, H, W]; video [1, F, C, H, W] -> [C, F, H, W]
                let px = match c["kind"].as_str().unwrap() {
                    "image" => px.squeeze(0).unwrap().unsqueeze(1).unwrap(),
                    _ => px.squeeze(0).unwrap().permute((1, 0, 2, 3)).unwrap(),
                };
                Condition::new(
                    px.contiguous().unwrap(),
                    c["frame_index"].as_u64().unwrap() as usize,
                    c["strength"].as_f64().unwrap(),
                )
            })
            .collect()
    }

    fn condition_options(&self) -> ConditionOptions {
        ConditionOptions {
            denoise_strength: self.f("denoise_strength"),
            image_cond_noise_scale: self.f("image_cond_noise_scale"),
            latents: self.has("latents_in").then(|| self.t("latents_in").clone()),
            ..ConditionOptions::default()
        }
    }

    /// Compares a run's latents and video with diffusers'; every draw used.
    fn compare(&self, pipe: &LtxPipeline, out: &PipelineOutput, noise: &Noise) -> (f32, f32) {
        assert_eq!(noise.remaining(), 0, "{}: draws left over", self.name);
        let want = self.t("latents");
        let got = if want.rank() == 3 {
            pipe.pack(&out.latents).unwrap()
        } else {
            out.latents.clone()
        };
        let el = check(&format!("{} latents", self.name), &got, want);
        let frames = out.unit_frames().unwrap().unwrap();
        let ev = check(&format!("{} video", self.name), &frames, self.t("video"));
        (el, ev)
    }
}

#[test]
fn text_to_video_with_guidance_rescale_matches_diffusers() {
    let fx = load();
    let case = Case::new(&fx, "t2v");
    assert_eq!(case.meta["pipeline"], "LTXPipeline");
    let (tr, vae) = (transformer(), vae(case.meta["vae"].as_str().unwrap()));
    let sched = case.scheduler();
    let pipe = LtxPipeline::new(&tr, &vae, &sched);
    // the convenience: prompts through weft's T5 (and "" from the cache)
    let mut enc = LtxTextEncoder::load(fixture("t5"), DType::F32, &Device::Cpu).unwrap();
    let mut empty = EmptyPromptCache::new();
    let prompts: Vec<String> = case.meta["prompt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let refs: Vec<&str> = prompts.iter().map(|s| s.as_str()).collect();
    let batch = encode_prompts(
        &mut enc,
        &mut empty,
        &refs,
        None,
        true,
        case.u("max_sequence_length"),
    )
    .unwrap();
    assert_eq!(empty.len(), 1);
    check(
        "t2v prompt embeds",
        &batch.positive.embeds,
        case.t("prompt_embeds"),
    );
    let neg = batch.negative.as_ref().unwrap();
    check(
        "t2v negative embeds",
        &neg.embeds,
        case.t("negative_embeds"),
    );
    let mask = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    check(
        "t2v prompt mask",
        &mask(&batch.positive.mask),
        case.t("prompt_mask"),
    );
    check(
        "t2v negative mask",
        &mask(&neg.mask),
        case.t("negative_mask"),
    );

    let mut noise = case.noise();
    let out = pipe
        .text_to_video(&batch, &case.options(), &mut noise)
        .unwrap();
    case.compare(&pipe, &out, &noise);

    // the same run from the fixture's embeddings, stopping at the latents
    let mut noise = case.noise();
    let opts = VideoOptions {
        decode: false,
        ..case.options()
    };
    let out2 = pipe
        .text_to_video(&case.prompts(), &opts, &mut noise)
        .unwrap();
    assert!(out2.video.is_none());
    check(
        "t2v latents (fixture embeddings)",
        &pipe.pack(&out2.latents).unwrap(),
        case.t("latents"),
    );
}

#[test]
fn image_to_video_matches_diffusers() {
    let fx = load();
    let case = Case::new(&fx, "i2v");
    assert_eq!(case.meta["pipeline"], "LTXImageToVideoPipeline");
    let (tr, vae) = (transformer(), vae(case.meta["vae"].as_str().unwrap()));
    assert!(vae.config.timestep_conditioning);
    let sched = case.scheduler();
    let pipe = LtxPipeline::new(&tr, &vae, &sched);
    let image = pixels(case.t("image"));
    let mut noise = case.noise();
    let out = pipe
        .image_to_video(&case.prompts(), &image, &case.options(), &mut noise)
        .unwrap();
    case.compare(&pipe, &out, &noise);
}

fn condition_case(name: &str) {
    let fx = load();
    let case = Case::new(&fx, name);
    assert_eq!(case.meta["pipeline"], "LTXConditionPipeline");
    let (tr, vae) = (transformer(), vae(case.meta["vae"].as_str().unwrap()));
    let sched = case.scheduler();
    let pipe = LtxPipeline::new(&tr, &vae, &sched);
    let mut noise = case.noise();
    let out = pipe
        .condition(
            &case.prompts(),
            &case.conditions(),
            &case.options(),
            &case.condition_options(),
            &mut noise,
        )
        .unwrap();
    case.compare(&pipe, &out, &noise);
}

/// An image at frame 0 (strength 1) and one at frame 8 (strength 0.6, extra
/// tokens with their own coordinates), CFG 3, per-step conditioning noise.
#[test]
fn condition_images_match_diffusers() {
    condition_case("cond_images");
}

/// A video prefix (strength 0.9) and a video at frame 4 (extra tokens plus an
/// in-place latent frame), denoise_strength 0.67 from given latents.
#[test]
fn condition_videos_match_diffusers() {
    condition_case("cond_videos");
}

#[test]
fn seeded_noise_is_reproducible() {
    let dev = Device::Cpu;
    let bytes = |seed: u64| -> Vec<f32> {
        let mut n = Noise::seeded(seed);
        let a = n.randn(&[2, 3, 4], &dev).unwrap();
        let b = n.randn(&[5], &dev).unwrap();
        let mut v = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v.extend(b.to_vec1::<f32>().unwrap());
        v
    };
    let (a, b, c) = (bytes(7), bytes(7), bytes(8));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    assert_ne!(bits(&a), bits(&c));
    let mean = a.iter().sum::<f32>() / a.len() as f32;
    assert!(mean.abs() < 1.0);

    // a whole image-to-video run: same seed, same bytes; another seed differs
    let fx = load();
    let case = Case::new(&fx, "i2v");
    let (tr, vae) = (transformer(), vae("vae_tc"));
    let sched = case.scheduler();
    let pipe = LtxPipeline::new(&tr, &vae, &sched);
    let image = pixels(case.t("image"));
    let run = |seed: u64| -> (Vec<u32>, Vec<u32>) {
        let out = pipe
            .image_to_video(
                &case.prompts(),
                &image,
                &case.options(),
                &mut Noise::seeded(seed),
            )
            .unwrap();
        let v = |t: &Tensor| -> Vec<u32> {
            t.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        };
        (v(&out.latents), v(out.video.as_ref().unwrap()))
    };
    let (l1, v1) = run(42);
    let (l2, v2) = run(42);
    let (l3, v3) = run(43);
    assert_eq!(l1, l2);
    assert_eq!(v1, v2);
    assert_ne!(l1, l3);
    assert_ne!(v1, v3);
}

#[test]
fn pack_unpack_round_trip_with_patches() {
    let dev = Device::Cpu;
    let x = Tensor::arange(0f32, (2 * 3 * 4 * 4 * 6) as f32, &dev)
        .unwrap()
        .reshape((2, 3, 4, 4, 6))
        .unwrap();
    for (p, pt) in [(1, 1), (2, 1), (2, 2)] {
        let packed = pack_latents(&x, p, pt).unwrap();
        assert_eq!(
            packed.dims(),
            [2, (4 / pt) * (4 / p) * (6 / p), 3 * pt * p * p]
        );
        let back = unpack_latents(&packed, 4, 4, 6, p, pt).unwrap();
        let (e, _) = max_err(&back, &x);
        assert_eq!(e, 0.0);
    }
    // patch 1: token (f, y, x) holds the channels of that latent pixel
    let packed = pack_latents(&x, 1, 1).unwrap();
    let tok = packed.get(1).unwrap().get(2 * 24 + 3 * 6 + 5).unwrap();
    let want: Vec<f32> = (0..3)
        .map(|c| {
            x.get(1)
                .unwrap()
                .get(c)
                .unwrap()
                .get(2)
                .unwrap()
                .get(3)
                .unwrap()
                .get(5)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .collect();
    assert_eq!(tok.to_vec1::<f32>().unwrap(), want);
}

#[test]
fn helpers_match_diffusers_formulas() {
    assert_eq!(trim_conditioning_sequence(0, 9, 13, 4), 9);
    assert_eq!(trim_conditioning_sequence(4, 17, 13, 4), 9);
    assert_eq!(trim_conditioning_sequence(8, 9, 13, 8), 1);
    assert_eq!(trim_conditioning_sequence(3, 12, 161, 8), 9);
    let dev = Device::Cpu;
    let a = Tensor::new(&[0f32, 1., 2.], &dev).unwrap();
    let b = Tensor::new(&[4f32, -1., 2.], &dev).unwrap();
    assert_eq!(
        lerp(&a, &b, 1.0).unwrap().to_vec1::<f32>().unwrap(),
        [4., -1., 2.]
    );
    assert_eq!(
        lerp(&a, &b, 0.0).unwrap().to_vec1::<f32>().unwrap(),
        [0., 1., 2.]
    );
    assert_eq!(
        lerp(&a, &b, 0.25).unwrap().to_vec1::<f32>().unwrap(),
        [1., 0.5, 2.]
    );
    // guidance_rescale 1: the result takes the text prediction's std
    let cfg = Tensor::new(&[[1f32, 3., 5., 7.]], &dev).unwrap();
    let text = Tensor::new(&[[0f32, 1., 0., 1.]], &dev).unwrap();
    let r = rescale_noise_cfg(&cfg, &text, 1.0).unwrap();
    let std = |t: &Tensor| {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let m = v.iter().sum::<f32>() / v.len() as f32;
        (v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / (v.len() - 1) as f32).sqrt()
    };
    assert!((std(&r) - std(&text)).abs() < 1e-6);
}
