"""Reference fixtures for weft's port of diffusers' FlowMatchEulerDiscreteScheduler
as LTX-Video configures and drives it.

Writes, under tests/fixtures/ltx/:

  scheduler.json          for several scheduler configs and set_timesteps calls:
                          the config, the call (num_inference_steps / sigmas /
                          timesteps / mu, exactly as the LTX pipelines pass them),
                          and the resulting scheduler.sigmas / scheduler.timesteps
                          (float32 values, written as exact decimal of the f32)
  scheduler_step.safetensors
                          fixed inputs and outputs of `step`:
      plain.*    scalar-timestep Euler step at step index 3 (LTX 0.9.5 config,
                 LTXPipeline schedule), with model_output/sample/prev
      token.*    one iteration of LTXConditionPipeline's loop body: per-token
                 timesteps min(t, (1 - mask) * 1000), step(-noise_pred, ...),
                 then torch.where(t/1000 - 1e-6 < 1 - mask, denoised, latents)
      stoch.*    stochastic_sampling step with the noise it drew (seed 0)

Run (from the repository root), with torch==2.15.0 diffusers==0.42.1:

    /work/venv/bin/python scripts/ltx_reference/scheduler.py
"""

import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift
from diffusers.pipelines.ltx.pipeline_ltx_condition import linear_quadratic_schedule
from diffusers.utils.torch_utils import randn_tensor

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "ltx")

# LTX-Video 0.9.x snapshot scheduler (scripts/convert_ltx_to_diffusers.py).
LTX_095 = dict(
    num_train_timesteps=1000,
    shift=1.0,
    use_dynamic_shifting=True,
    base_shift=0.95,
    max_shift=2.05,
    base_image_seq_len=1024,
    max_image_seq_len=4096,
    shift_terminal=0.1,
    invert_sigmas=False,
    use_karras_sigmas=False,
    use_exponential_sigmas=False,
    use_beta_sigmas=False,
    time_shift_type="exponential",
    stochastic_sampling=False,
)
DEFAULTS = {}
STATIC = dict(LTX_095, use_dynamic_shifting=False, shift_terminal=None)
# distilled checkpoints' fixed schedule (LTX-Video 0.9.7/0.9.8 distilled)
DISTILLED_T = [1000.0, 993.75, 987.5, 981.25, 975.0, 909.375, 725.0, 421.875]

cases = []


def run(name, config, n=None, sigmas=None, timesteps=None, mu=None):
    s = FlowMatchEulerDiscreteScheduler(**config)
    s.set_timesteps(n, sigmas=sigmas, timesteps=timesteps, mu=mu)
    cases.append(
        dict(
            name=name,
            config={k: v for k, v in s.config.items() if not k.startswith("_")},
            call=dict(
                num_inference_steps=n,
                sigmas=None if sigmas is None else [float(x) for x in sigmas],
                timesteps=None if timesteps is None else [float(x) for x in timesteps],
                mu=mu,
            ),
            sigmas=[float(x) for x in s.sigmas.tolist()],
            timesteps=[float(x) for x in s.timesteps.tolist()],
        )
    )
    return s


def ltx_pipeline_call(name, config, n, seq_len):
    # pipeline_ltx.py / pipeline_ltx_image2video.py step 5
    sigmas = np.linspace(1.0, 1 / n, n)
    c = FlowMatchEulerDiscreteScheduler(**config).config
    mu = calculate_shift(
        seq_len,
        c.get("base_image_seq_len", 256),
        c.get("max_image_seq_len", 4096),
        c.get("base_shift", 0.5),
        c.get("max_shift", 1.15),
    )
    s = run(name, config, n, sigmas=sigmas, mu=mu)
    cases[-1]["call"]["video_seq_len"] = seq_len
    return s


def main():
    torch.manual_seed(0)
    # LTXPipeline with the 0.9.5 snapshot scheduler
    ltx_pipeline_call("ltx095_pipe_50_6144", LTX_095, 50, 6144)
    ltx_pipeline_call("ltx095_pipe_30_1024", LTX_095, 30, 1024)
    ltx_pipeline_call("ltx095_pipe_8_20000", LTX_095, 8, 20000)
    ltx_pipeline_call("ltx095_pipe_2_512", LTX_095, 2, 512)
    # the LTX scheduler with set_timesteps(n, mu) (no explicit sigmas)
    run("ltx095_n_20", LTX_095, 20, mu=1.3)
    run("ltx095_timesteps", LTX_095, timesteps=DISTILLED_T, mu=1.0)
    # LTXConditionPipeline: timesteps = linear_quadratic_schedule(n) * 1000 (static config)
    for n in (40, 7, 1):
        t = (linear_quadratic_schedule(n) * 1000).tolist()
        run(f"static_condition_lq_{n}", STATIC, n, timesteps=t)
    run("static_distilled", STATIC, timesteps=DISTILLED_T)
    run("static_sigmas", STATIC, sigmas=[1.0, 0.9, 0.75, 0.5, 0.25, 0.1])
    # defaults (shift 1)
    run("defaults_10", DEFAULTS, 10)
    run("defaults_28", DEFAULTS, 28)
    run("shift3_25", dict(shift=3.0), 25)
    run("shift3_terminal_12", dict(shift=3.0, shift_terminal=0.05), 12)
    run("linear_dyn_15", dict(use_dynamic_shifting=True, time_shift_type="linear"), 15, mu=1.7)
    run("karras_14", dict(use_karras_sigmas=True, shift=2.0), 14)
    run("exponential_9", dict(use_exponential_sigmas=True, use_dynamic_shifting=True), 9, mu=0.8)
    run("invert_6", dict(invert_sigmas=True, shift=1.5), 6)
    run("train_100_7", dict(num_train_timesteps=100, shift=2.0), 7)

    with open(os.path.join(OUT, "scheduler.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)

    tensors = {}
    # plain step
    s = FlowMatchEulerDiscreteScheduler(**LTX_095)
    sig = np.linspace(1.0, 1 / 10, 10)
    s.set_timesteps(sigmas=sig, mu=calculate_shift(2048, 1024, 4096, 0.95, 2.05))
    sample = torch.randn(2, 12, 8)
    model_output = torch.randn(2, 12, 8)
    s.set_begin_index(0)
    for i in range(3):
        s.step(model_output, s.timesteps[i], sample)
    t = s.timesteps[3]
    prev = s.step(model_output, t, sample, return_dict=False)[0]
    tensors["plain.sample"] = sample
    tensors["plain.model_output"] = model_output
    tensors["plain.prev"] = prev
    tensors["plain.step_index"] = torch.tensor([3], dtype=torch.int64)
    tensors["plain.seq_len"] = torch.tensor([2048], dtype=torch.int64)

    # per-token step (LTXConditionPipeline denoising loop body)
    s = FlowMatchEulerDiscreteScheduler(**STATIC)
    n = 12
    ts = linear_quadratic_schedule(n) * 1000
    s.set_timesteps(n, timesteps=ts.tolist())
    i = 4
    t = s.timesteps[i]
    B, N, C = 2, 10, 6
    latents = torch.randn(B, N, C)
    noise_pred = torch.randn(B, N, C)
    mask = torch.zeros(B, N)
    mask[:, :3] = 1.0  # hard conditioning tokens
    mask[0, 3:5] = 0.5  # soft conditioning (strength 0.5)
    mask[1, 5] = 0.2
    mask[1, 6] = 1.0 - t.item() / 1000  # exactly at the threshold
    timestep = t.expand(B).unsqueeze(-1).float()
    timestep = torch.min(timestep, (1 - mask) * 1000.0)
    denoised = s.step(-noise_pred, t, latents, per_token_timesteps=timestep, return_dict=False)[0]
    tokens_to_denoise_mask = (t / 1000 - 1e-6 < (1.0 - mask)).unsqueeze(-1)
    out = torch.where(tokens_to_denoise_mask, denoised, latents)
    tensors["token.latents"] = latents
    tensors["token.noise_pred"] = noise_pred
    tensors["token.mask"] = mask
    tensors["token.t"] = t.reshape(1)
    tensors["token.timestep"] = timestep
    tensors["token.denoised"] = denoised
    tensors["token.out"] = out
    tensors["token.steps"] = torch.tensor([n, i], dtype=torch.int64)
    # the unconditioned case: timestep [B, 1]
    ts1 = t.expand(B).unsqueeze(-1).float()
    tensors["token.uncond"] = s.step(-noise_pred, t, latents, per_token_timesteps=ts1, return_dict=False)[0]

    # stochastic sampling
    s = FlowMatchEulerDiscreteScheduler(**dict(STATIC, stochastic_sampling=True))
    s.set_timesteps(5)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 5, 4)
    mo = torch.randn(1, 5, 4)
    prev = s.step(mo, s.timesteps[0], x, generator=g, return_dict=False)[0]
    noise = randn_tensor(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    tensors["stoch.sample"] = x
    tensors["stoch.model_output"] = mo
    tensors["stoch.noise"] = noise
    tensors["stoch.prev"] = prev
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "scheduler_step.safetensors"))
    print("wrote", len(cases), "cases")


if __name__ == "__main__":
    main()
