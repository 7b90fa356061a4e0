"""Reference fixture for weft's LTX-Video pipelines (src/model/ltx/pipeline.rs):
whole 3-step denoising runs of diffusers 0.42.1's `LTXPipeline`,
`LTXImageToVideoPipeline` and `LTXConditionPipeline`, built from the tiny
fixtures already in tests/fixtures/ltx/ (transformer, the two VAEs, the tiny
T5 + tokenizer, the scheduler configs of scripts/ltx_reference/scheduler.py).

Every Gaussian draw the call makes is recorded, in order: the `randn_tensor`
symbol of each pipeline module and of diffusers' autoencoder `vae` module (the
posterior's `sample`) is replaced by a wrapper that draws from the seeded
generator and saves the result, and `torch.randn` is wrapped for the draws the
pipelines make directly (`LTXImageToVideoPipeline`'s decode noise). The Rust
test feeds exactly these tensors back.

Writes tests/fixtures/ltx/pipeline_io.safetensors; its metadata entry "cases"
(JSON) describes every case (pipeline, sizes, steps, guidance, prompts,
conditions, decode settings, scheduler config, VAE, number of draws). Tensors,
for case `c`:

  c.prompt_embeds / c.prompt_mask         what `encode_prompt` gives (mask 0/1 f32)
  c.negative_embeds / c.negative_mask     the same for the negative prompt "" (CFG cases)
  c.draw.N                                the N-th Gaussian draw of the call
  c.image                                 u8 [B, C, H, W] image (i2v), passed as u8 / 255
  c.cond.K                                u8 condition K: [1, C, H, W] image or
                                          [1, F, C, H, W] video, passed as u8 / 255
  c.latents_in                            initial latents (denoise_strength < 1)
  c.latents                               output_type="latent" result (packed [B, seq, C]
                                          for LTXPipeline / LTXImageToVideoPipeline,
                                          [B, C, F, H, W] for LTXConditionPipeline)
  c.video                                 output_type="pt" result [B, F, C, H, W] in [0, 1]

Run (from the repository root), CPU only, downloads nothing, with pinned
torch==2.15.0 diffusers==0.42.1 transformers==5.24.0:

    /work/venv/bin/python scripts/ltx_reference/pipeline.py
"""

import copy
import json
import os

import torch
from safetensors.torch import load_file, save_file

import diffusers.models.autoencoders.vae as vae_module
import diffusers.pipelines.ltx.pipeline_ltx as p_t2v
import diffusers.pipelines.ltx.pipeline_ltx_condition as p_cond
import diffusers.pipelines.ltx.pipeline_ltx_image2video as p_i2v
from diffusers import (
    AutoencoderKLLTXVideo,
    FlowMatchEulerDiscreteScheduler,
    LTXConditionPipeline,
    LTXImageToVideoPipeline,
    LTXPipeline,
    LTXVideoTransformer3DModel,
)
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition
from transformers import T5EncoderModel, T5Tokenizer

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "ltx")
OUT = os.path.join(FIX, "pipeline_io.safetensors")

# scripts/ltx_reference/scheduler.py: the LTX 0.9.x snapshot config, and its
# static variant (LTXConditionPipeline passes timesteps without mu).
LTX_095 = dict(
    num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
    base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1, invert_sigmas=False,
    use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
    time_shift_type="exponential", stochastic_sampling=False,
)
STATIC = dict(LTX_095, use_dynamic_shifting=False, shift_terminal=None)

PROMPT_A = "A cat walks slowly along the garden wall, looking at the camera."
PROMPT_B = "  Leading  and   repeated spaces,\tTabs  and UPPER case: 1234 ü é!"


# ------------------------------------------------------------------ draws

class Draws:
    def __init__(self):
        self.list = None
        self.depth = 0

    def start(self):
        self.list = []

    def stop(self):
        out, self.list = self.list, None
        return out


DRAWS = Draws()
_orig_randn_tensor = p_t2v.randn_tensor
_orig_torch_randn = torch.randn


def recording_randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
    DRAWS.depth += 1
    try:
        x = _orig_randn_tensor(shape, generator=generator, device=device, dtype=dtype, layout=layout)
    finally:
        DRAWS.depth -= 1
    if DRAWS.list is not None:
        DRAWS.list.append(x.detach().clone())
    return x


def recording_torch_randn(*args, **kwargs):
    x = _orig_torch_randn(*args, **kwargs)
    if DRAWS.list is not None and DRAWS.depth == 0 and kwargs.get("generator") is not None:
        DRAWS.list.append(x.detach().clone())
    return x


for mod in (p_t2v, p_i2v, p_cond, vae_module):
    mod.randn_tensor = recording_randn_tensor
torch.randn = recording_torch_randn


# ------------------------------------------------------------------ components

def transformer():
    cfg = json.load(open(os.path.join(FIX, "transformer_config.json")))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    m = LTXVideoTransformer3DModel(**cfg).eval()
    m.load_state_dict(load_file(os.path.join(FIX, "transformer.safetensors")))
    return m


def vae(name):
    cfg = json.load(open(os.path.join(FIX, f"{name}_config.json")))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    m = AutoencoderKLLTXVideo(**cfg).eval()
    sd = {k: v.float() for k, v in load_file(os.path.join(FIX, f"{name}.safetensors")).items()}
    m.load_state_dict(sd)
    return m


def text():
    enc = T5EncoderModel.from_pretrained(os.path.join(FIX, "t5", "text_encoder")).eval()
    tok = T5Tokenizer(tokenizer_file=os.path.join(FIX, "t5", "tokenizer_json", "tokenizer.json"))
    return tok, enc


def smooth_u8(gen, shape):
    """Smooth random picture content as u8 (a coarse grid, upsampled)."""
    *lead, h, w = shape
    n = 1
    for d in lead:
        n *= d
    coarse = torch.rand((n, 1, 3, 3), generator=gen)
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)
    x = x + 0.15 * torch.rand((n, 1, h, w), generator=gen)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.reshape(*lead, h, w)


def unit(u8):
    return u8.float() / 255.0


# ------------------------------------------------------------------ cases

def run_case(io, meta, name, cls, scheduler_cfg, vae_name, kwargs, seed, extra_meta):
    tok, enc = text()
    sched = FlowMatchEulerDiscreteScheduler(**scheduler_cfg)
    pipe = cls(scheduler=sched, vae=vae(vae_name), text_encoder=enc, tokenizer=tok, transformer=transformer())
    pipe.set_progress_bar_config(disable=True)

    cfg = kwargs["guidance_scale"] > 1.0
    with torch.no_grad():
        pe, pm, ne, nm = pipe.encode_prompt(
            prompt=kwargs["prompt"], negative_prompt=None, do_classifier_free_guidance=cfg,
            max_sequence_length=kwargs["max_sequence_length"], device=torch.device("cpu"),
        )
    io[f"{name}.prompt_embeds"] = pe.float()
    io[f"{name}.prompt_mask"] = pm.float()
    if cfg:
        io[f"{name}.negative_embeds"] = ne.float()
        io[f"{name}.negative_mask"] = nm.float()

    outs = {}
    draws = {}
    for out_type in ("latent", "pt"):
        kw = copy.copy(kwargs)
        kw["generator"] = torch.Generator().manual_seed(seed)
        kw["output_type"] = out_type
        DRAWS.start()
        with torch.no_grad():
            outs[out_type] = pipe(**kw).frames
        draws[out_type] = DRAWS.stop()
    # the latent run's draws are the start of the decoded run's
    assert len(draws["latent"]) <= len(draws["pt"])
    for a, b in zip(draws["latent"], draws["pt"]):
        assert torch.equal(a, b)
    for i, d in enumerate(draws["pt"]):
        io[f"{name}.draw.{i}"] = d.float()
    io[f"{name}.latents"] = outs["latent"].float()
    io[f"{name}.video"] = outs["pt"].float()
    m = dict(
        pipeline=cls.__name__,
        vae=vae_name,
        scheduler=scheduler_cfg,
        prompt=kwargs["prompt"],
        max_sequence_length=kwargs["max_sequence_length"],
        height=kwargs["height"],
        width=kwargs["width"],
        num_frames=kwargs["num_frames"],
        frame_rate=kwargs["frame_rate"],
        num_inference_steps=kwargs["num_inference_steps"],
        guidance_scale=kwargs["guidance_scale"],
        guidance_rescale=kwargs.get("guidance_rescale", 0.0),
        decode_timestep=kwargs.get("decode_timestep", 0.0),
        decode_noise_scale=kwargs.get("decode_noise_scale"),
        draws=len(draws["pt"]),
        latent_draws=len(draws["latent"]),
        seed=seed,
    )
    m.update(extra_meta)
    meta[name] = m
    print(f"{name}: {len(draws['pt'])} draws {[tuple(d.shape) for d in draws['pt']]}, "
          f"latents {tuple(outs['latent'].shape)} |max| {outs['latent'].abs().max():.3f}, "
          f"video {tuple(outs['pt'].shape)}")


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2024)
    io, meta = {}, {}

    # 1. text-to-video, two prompts, CFG 3 with guidance_rescale, the 0.9.5-layout
    #    VAE (no timestep conditioning: no decode noise); 2 x 2 x 3 latents.
    run_case(io, meta, "t2v", LTXPipeline, LTX_095, "vae", dict(
        prompt=[PROMPT_A, PROMPT_B], max_sequence_length=24, height=64, width=96, num_frames=9,
        frame_rate=25, num_inference_steps=3, guidance_scale=3.0, guidance_rescale=0.7,
    ), seed=11, extra_meta={})

    # 2. image-to-video, no CFG, the timestep-conditioned VAE (decode noise,
    #    decode_noise_scale defaulting to decode_timestep); 2 x 8 x 8 latents.
    image = smooth_u8(gen, (1, 3, 32, 32))
    io["i2v.image"] = image
    run_case(io, meta, "i2v", LTXImageToVideoPipeline, LTX_095, "vae_tc", dict(
        prompt=PROMPT_A, image=unit(image), max_sequence_length=16, height=32, width=32, num_frames=5,
        frame_rate=24, num_inference_steps=3, guidance_scale=1.0, decode_timestep=0.05,
    ), seed=12, extra_meta={})

    # 3. condition pipeline: an image at frame 0 (hard) and an image at frame 8
    #    (strength 0.6, extra conditioning tokens), CFG 3, image_cond_noise_scale.
    im0 = smooth_u8(gen, (1, 3, 32, 32))
    im8 = smooth_u8(gen, (1, 3, 32, 32))
    io["cond_images.cond.0"] = im0
    io["cond_images.cond.1"] = im8
    conds = [
        LTXVideoCondition(image=unit(im0), frame_index=0, strength=1.0),
        LTXVideoCondition(image=unit(im8), frame_index=8, strength=0.6),
    ]
    run_case(io, meta, "cond_images", LTXConditionPipeline, STATIC, "vae_tc", dict(
        conditions=conds, prompt=PROMPT_B, max_sequence_length=16, height=32, width=32, num_frames=9,
        frame_rate=25, num_inference_steps=3, guidance_scale=3.0, image_cond_noise_scale=0.15,
        decode_timestep=0.05, decode_noise_scale=0.025,
    ), seed=13, extra_meta=dict(
        conditions=[dict(kind="image", frame_index=0, strength=1.0),
                    dict(kind="image", frame_index=8, strength=0.6)],
        image_cond_noise_scale=0.15, denoise_strength=1.0,
    ))

    # 4. condition pipeline: a 5-frame video prefix (strength 0.9) and a 9-frame
    #    video at frame 4 (its first two latent frames become extra tokens, the
    #    third replaces latent frame 3), denoise_strength 0.67 from given
    #    latents, no CFG; 4 x 8 x 8 latents.
    vid0 = smooth_u8(gen, (1, 5, 3, 32, 32))
    vid4 = smooth_u8(gen, (1, 9, 3, 32, 32))
    io["cond_videos.cond.0"] = vid0
    io["cond_videos.cond.1"] = vid4
    lat_in = torch.randn((1, 8, 4, 8, 8), generator=gen)
    io["cond_videos.latents_in"] = lat_in
    conds = [
        LTXVideoCondition(video=unit(vid0), frame_index=0, strength=0.9),
        LTXVideoCondition(video=unit(vid4), frame_index=4, strength=1.0),
    ]
    run_case(io, meta, "cond_videos", LTXConditionPipeline, STATIC, "vae_tc", dict(
        conditions=conds, prompt=PROMPT_A, max_sequence_length=16, height=32, width=32, num_frames=13,
        frame_rate=24, num_inference_steps=3, guidance_scale=1.0, image_cond_noise_scale=0.15,
        denoise_strength=0.67, latents=lat_in.clone(), decode_timestep=0.05, decode_noise_scale=0.03,
    ), seed=14, extra_meta=dict(
        conditions=[dict(kind="video", frame_index=0, strength=0.9),
                    dict(kind="video", frame_index=4, strength=1.0)],
        image_cond_noise_scale=0.15, denoise_strength=0.67,
    ))

    save_file({k: v.contiguous() for k, v in io.items()}, OUT,
              metadata={"cases": json.dumps(meta, ensure_ascii=False)})
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
