"""Reference fixtures for weft's port of the LTX-Video transformer.

Builds diffusers' `LTXVideoTransformer3DModel` from configs with random
weights (fixed seeds) and writes, under tests/fixtures/ltx/:

  transformer.safetensors          weights of a tiny model (diffusers' names)
  transformer_config.json          its config (as diffusers' config.json)
  transformer_io.safetensors       inputs/outputs of two forward passes:
      a.*  scalar timestep per sample, padded text mask, latent grid 2x4x4,
           frame_rate 25, rope_interpolation_scale = (8/25, 32, 32)
      b.*  per-token timesteps [B, seq] (first-frame tokens at 0, as
           LTXConditionPipeline passes for conditioning tokens) and explicit
           video_coords [B, 3, seq] built like LTXConditionPipeline does
      (scalar arguments as int64 tensors: *.grid = [frames, height, width],
      a.frame_rate; the rotary cos/sin are saved too, to localise a mismatch)
  transformer_2b_manifest.json     every parameter name and shape of the real
                                   LTX-Video 2B (0.9.x) transformer, built on
                                   the meta device (no memory, no weights)

Run (from the repository root), with pinned versions
torch==2.15.0 diffusers==0.42.1 safetensors numpy:

    /work/venv/bin/python scripts/ltx_reference/transformer.py

Nothing is downloaded: every model comes from a config dict.
"""

import json
import os

import torch
from diffusers import LTXVideoTransformer3DModel
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "ltx")

TINY = dict(
    in_channels=8,
    out_channels=8,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=4,
    attention_head_dim=8,
    cross_attention_dim=32,
    num_layers=2,
    caption_channels=32,
    qk_norm="rms_norm_across_heads",
)

# LTX-Video 2B (0.9.0 .. 0.9.5): diffusers' defaults, spelled out.
LTX_2B = dict(
    in_channels=128,
    out_channels=128,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=32,
    attention_head_dim=64,
    cross_attention_dim=2048,
    num_layers=28,
    activation_fn="gelu-approximate",
    qk_norm="rms_norm_across_heads",
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    caption_channels=4096,
    attention_bias=True,
    attention_out_bias=True,
)


def config_json(model):
    cfg = {k: v for k, v in model.config.items() if not k.startswith("_")}
    return {"_class_name": type(model).__name__, "_diffusers_version": "0.42.1", **cfg}


def video_ids(batch, frames, height, width, frame_rate, frame_index=0):
    # LTXConditionPipeline._prepare_video_ids + _scale_video_ids (vae
    # compression 8 in time, 32 in space) + the 1/frame_rate of __call__.
    coords = torch.meshgrid(
        torch.arange(frames), torch.arange(height), torch.arange(width), indexing="ij"
    )
    coords = torch.stack(coords, dim=0).unsqueeze(0).repeat(batch, 1, 1, 1, 1)
    coords = coords.reshape(batch, -1, frames * height * width)
    coords = coords * torch.tensor([8, 32, 32])[None, :, None]
    coords[:, 0] = (coords[:, 0] + 1 - 8).clamp(min=0)
    coords[:, 0] += frame_index
    coords = coords.float()
    coords[:, 0] = coords[:, 0] * (1.0 / frame_rate)
    return coords


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    model = LTXVideoTransformer3DModel(**TINY).eval()
    # Non-trivial values for parameters diffusers initialises to ones (q/k norms).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm_q.weight") or name.endswith("norm_k.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(OUT, "transformer.safetensors"))
    with open(os.path.join(OUT, "transformer_config.json"), "w") as f:
        json.dump(config_json(model), f, indent=2)
        f.write("\n")

    B, F, H, W, L = 2, 2, 4, 4, 6
    seq = F * H * W
    frame_rate = 25
    g = torch.Generator().manual_seed(1)
    io = {}

    # (a) scalar timestep per sample, padded text mask, rope from the grid.
    hidden = torch.randn(B, seq, TINY["in_channels"], generator=g)
    enc = torch.randn(B, L, TINY["caption_channels"], generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.int64)
    t = torch.tensor([937.5, 212.25])
    scale = (8 / frame_rate, 32, 32)
    with torch.no_grad():
        out = model(hidden, enc, t, mask, num_frames=F, height=H, width=W,
                    rope_interpolation_scale=scale, return_dict=False)[0]
        cos, sin = model.rope(hidden, F, H, W, scale, None)
    io.update({"a.hidden_states": hidden, "a.encoder_hidden_states": enc,
               "a.timestep": t, "a.encoder_attention_mask": mask.float(),
               "a.output": out, "a.rope_cos": cos, "a.rope_sin": sin})
    io.update({"a.grid": torch.tensor([F, H, W]), "a.frame_rate": torch.tensor(frame_rate)})

    # (b) per-token timesteps with conditioning tokens at 0, explicit coords.
    hidden = torch.randn(B, seq, TINY["in_channels"], generator=g)
    enc = torch.randn(B, L, TINY["caption_channels"], generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.int64)
    coords = torch.cat([video_ids(1, F, H, W, frame_rate),
                        video_ids(1, F, H, W, frame_rate, frame_index=5)], dim=0)
    cond = torch.zeros(B, seq)
    cond[0, : H * W] = 1.0  # sample 0: first latent frame is conditioning
    cond[1, 3:7] = 1.0  # sample 1: a few scattered tokens
    t = torch.tensor([700.0, 451.5])[:, None].expand(B, seq)
    t = torch.min(t, (1 - cond) * 1000.0)
    with torch.no_grad():
        out = model(hidden, enc, t, mask, num_frames=F, height=H, width=W,
                    rope_interpolation_scale=scale, video_coords=coords, return_dict=False)[0]
        cos, sin = model.rope(hidden, F, H, W, scale, coords)
    io.update({"b.hidden_states": hidden, "b.encoder_hidden_states": enc,
               "b.timestep": t.contiguous(), "b.encoder_attention_mask": mask.float(),
               "b.video_coords": coords, "b.output": out, "b.rope_cos": cos, "b.rope_sin": sin})
    io.update({"b.grid": torch.tensor([F, H, W])})
    save_file({k: v.contiguous() for k, v in io.items()},
              os.path.join(OUT, "transformer_io.safetensors"))

    # Real 2B shapes, on the meta device.
    with torch.device("meta"):
        big = LTXVideoTransformer3DModel(**LTX_2B)
    manifest = {
        "config": config_json(big),
        "tensors": [[k, list(v.shape)] for k, v in big.state_dict().items()],
    }
    with open(os.path.join(OUT, "transformer_2b_manifest.json"), "w") as f:
        # One tensor a line: diff-friendly.
        f.write('{\n "config": ' + json.dumps(manifest["config"]) + ',\n "tensors": [\n')
        f.write(",\n".join("  " + json.dumps(t) for t in manifest["tensors"]))
        f.write("\n ]\n}\n")
    n = sum(v.numel() for v in big.state_dict().values())
    print(f"tiny output |max| a={io['a.output'].abs().max():.4f} b={io['b.output'].abs().max():.4f}; "
          f"2B: {len(manifest['tensors'])} tensors, {n / 1e9:.3f} B parameters")


if __name__ == "__main__":
    main()
