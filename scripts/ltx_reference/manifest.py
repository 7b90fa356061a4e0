"""Tensor manifests of the real LTX-Video checkpoints, for weft's loader
(src/model/ltx/load.rs, tests/ltx_load.rs).

Pinned: torch==2.15.0, diffusers==0.42.1. Downloads nothing: every model is
built from its config on PyTorch's meta device (no memory, no weights).

The configs are the ones diffusers' `scripts/convert_ltx_to_diffusers.py`
(`get_transformer_config` / `get_vae_config`) writes for each version; the
single-file loader (`diffusers.loaders.single_file_utils`) uses the hub
configs of the same models (DIFFUSERS_DEFAULT_PIPELINE_PATHS).

For every version it writes, under tests/fixtures/ltx/:

  load_manifest_transformer_2b.json   0.9.0 .. 0.9.5 (and 0.9.6 / 0.9.8 2B)
  load_manifest_transformer_13b.json  0.9.7 / 0.9.8 13B
  load_manifest_vae_090.json          0.9.0 VAE (LTXVideoDownBlock3D)
  load_manifest_vae_091.json          0.9.1 VAE (LTXVideoDownBlock3D, timestep-conditioned)
  load_manifest_vae_095.json          0.9.5 .. 0.9.8 VAE (LTXVideo095DownBlock3D)

each `{"config", "diffusers_model_type", "tensors": [[diffusers name,
single-file (original Lightricks) name, shape], ...]}` in state-dict order.

The single-file names are derived by inverting diffusers' renames
(`convert_ltx_transformer_checkpoint_to_diffusers`,
`convert_ltx_vae_checkpoint_to_diffusers`), and the inversion is PROVED here:
diffusers' own converters run on a dict of those names (meta tensors, plus
the per-channel statistics Lightricks files carry that diffusers drops) must
return exactly the diffusers state-dict names with the same shapes, and
`infer_diffusers_model_type` on the combined checkpoint must name the
version. The script fails (assertion) otherwise.

Run: /work/venv/bin/python scripts/ltx_reference/manifest.py
"""
import json
from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
from diffusers.loaders import single_file_utils as sfu

assert diffusers.__version__ == "0.42.1", diffusers.__version__
assert torch.__version__.split("+")[0] == "2.15.0", torch.__version__

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "ltx"

# ------------------------------------------------------------------ configs
# convert_ltx_to_diffusers.py, get_transformer_config(version).
TRANSFORMER_2B = dict(
    in_channels=128, out_channels=128, patch_size=1, patch_size_t=1,
    num_attention_heads=32, attention_head_dim=64, cross_attention_dim=2048, num_layers=28,
    activation_fn="gelu-approximate", qk_norm="rms_norm_across_heads",
    norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096,
    attention_bias=True, attention_out_bias=True,
)
TRANSFORMER_13B = dict(TRANSFORMER_2B, attention_head_dim=128, cross_attention_dim=4096, num_layers=48)

# convert_ltx_to_diffusers.py, get_vae_config(version).
VAE_090 = dict(
    in_channels=3, out_channels=3, latent_channels=128,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("LTXVideoDownBlock3D",) * 4,
    decoder_block_out_channels=(128, 256, 512, 512),
    layers_per_block=(4, 3, 3, 3, 4), decoder_layers_per_block=(4, 3, 3, 3, 4),
    spatio_temporal_scaling=(True, True, True, False),
    decoder_spatio_temporal_scaling=(True, True, True, False),
    decoder_inject_noise=(False, False, False, False, False),
    downsample_type=("conv", "conv", "conv", "conv"),
    upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
    patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6, scaling_factor=1.0,
    encoder_causal=True, decoder_causal=False, timestep_conditioning=False,
)
VAE_091 = dict(
    VAE_090,
    decoder_block_out_channels=(256, 512, 1024),
    decoder_layers_per_block=(5, 6, 7, 8),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(True, True, True, False),
    upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
    timestep_conditioning=True,
)
VAE_095 = dict(
    VAE_090,
    block_out_channels=(128, 256, 512, 1024, 2048),
    down_block_types=("LTXVideo095DownBlock3D",) * 4,
    decoder_block_out_channels=(256, 512, 1024),
    layers_per_block=(4, 6, 6, 2, 2), decoder_layers_per_block=(5, 5, 5, 5),
    spatio_temporal_scaling=(True, True, True, True),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, False, False, False),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
    timestep_conditioning=True, spatial_compression_ratio=32, temporal_compression_ratio=8,
)

# ------------------------------------------------------------ the inversion
# The rename tables of convert_ltx_vae_checkpoint_to_diffusers (0.42.1),
# restated only to invert them; the proof below runs diffusers' own function.
VAE_BLOCKS_090 = {
    "up_blocks.0": "mid_block", "up_blocks.1": "up_blocks.0", "up_blocks.2": "up_blocks.1.upsamplers.0",
    "up_blocks.3": "up_blocks.1", "up_blocks.4": "up_blocks.2.conv_in", "up_blocks.5": "up_blocks.2.upsamplers.0",
    "up_blocks.6": "up_blocks.2", "up_blocks.7": "up_blocks.3.conv_in", "up_blocks.8": "up_blocks.3.upsamplers.0",
    "up_blocks.9": "up_blocks.3",
    "down_blocks.0": "down_blocks.0", "down_blocks.1": "down_blocks.0.downsamplers.0",
    "down_blocks.2": "down_blocks.0.conv_out", "down_blocks.3": "down_blocks.1",
    "down_blocks.4": "down_blocks.1.downsamplers.0", "down_blocks.5": "down_blocks.1.conv_out",
    "down_blocks.6": "down_blocks.2", "down_blocks.7": "down_blocks.2.downsamplers.0",
    "down_blocks.8": "down_blocks.3", "down_blocks.9": "mid_block",
}
UP_091 = {
    "up_blocks.0": "mid_block", "up_blocks.1": "up_blocks.0.upsamplers.0", "up_blocks.2": "up_blocks.0",
    "up_blocks.3": "up_blocks.1.upsamplers.0", "up_blocks.4": "up_blocks.1", "up_blocks.5": "up_blocks.2.upsamplers.0",
    "up_blocks.6": "up_blocks.2", "up_blocks.7": "up_blocks.3.upsamplers.0", "up_blocks.8": "up_blocks.3",
}
VAE_BLOCKS_091 = {**VAE_BLOCKS_090, **UP_091}
VAE_BLOCKS_095 = {
    **VAE_BLOCKS_090, **UP_091,
    "down_blocks.0": "down_blocks.0", "down_blocks.1": "down_blocks.0.downsamplers.0",
    "down_blocks.2": "down_blocks.1", "down_blocks.3": "down_blocks.1.downsamplers.0",
    "down_blocks.4": "down_blocks.2", "down_blocks.5": "down_blocks.2.downsamplers.0",
    "down_blocks.6": "down_blocks.3", "down_blocks.7": "down_blocks.3.downsamplers.0",
    "down_blocks.8": "mid_block",
}


def original_vae_name(name, blocks, has_last):
    """The single-file name of diffusers VAE tensor `name` (without `vae.`)."""
    if name == "latents_mean":
        return "vae.per_channel_statistics.mean-of-means"
    if name == "latents_std":
        return "vae.per_channel_statistics.std-of-means"
    section, rest = name.split(".", 1)
    side = "up_blocks." if section == "decoder" else "down_blocks."
    best = None
    for old, new in blocks.items():
        if old.startswith(side) and (rest == new or rest.startswith(new + ".")):
            if best is None or len(new) > len(best[1]):
                best = (old, new)
    if best is not None:
        rest = best[0] + rest[len(best[1]):]
    parts = rest.split(".")
    parts = ["res_blocks" if p == "resnets" else p for p in parts]
    rest = ".".join(parts)
    rest = rest.replace("conv_shortcut.conv.", "conv_shortcut.").replace("norm3.", "norm3.norm.")
    if section == "decoder" and has_last:
        if rest.startswith("time_embedder."):
            rest = "last_" + rest
        elif rest == "scale_shift_table":
            rest = "last_scale_shift_table"
    return f"vae.{section}.{rest}"


TRANSFORMER_INVERSE = {"proj_in": "patchify_proj", "time_embed": "adaln_single", "norm_q": "q_norm", "norm_k": "k_norm"}


def original_transformer_name(name):
    return "model.diffusion_model." + ".".join(TRANSFORMER_INVERSE.get(p, p) for p in name.split("."))


# ------------------------------------------------------------------- build
def state_shapes(model):
    return [(k, list(v.shape)) for k, v in model.state_dict().items()]


def transformer_entries(cfg):
    with torch.device("meta"):
        m = LTXVideoTransformer3DModel(**cfg)
    return [(n, original_transformer_name(n), s) for n, s in state_shapes(m)]


def vae_entries(cfg, blocks, has_last):
    with torch.device("meta"):
        m = AutoencoderKLLTXVideo(**cfg)
    return [(n, original_vae_name(n, blocks, has_last), s) for n, s in state_shapes(m)]


# Per-channel statistics a Lightricks VAE carries besides mean/std of means;
# diffusers' VAE_SPECIAL_KEYS_REMAP removes them.
DROPPED = ["vae.per_channel_statistics.channel", "vae.per_channel_statistics.mean-of-stds",
           "vae.per_channel_statistics.mean-of-stds_over_std-of-means"]


def meta(shape):
    return torch.empty(shape, device="meta")


def prove(transformer, vae, model_type):
    """diffusers' converters map the single-file names back exactly."""
    ckpt = {o: meta(s) for _, o, s in transformer}
    ckpt.update({o: meta(s) for _, o, s in vae})
    ckpt.update({k: meta([128]) for k in DROPPED})
    assert len(ckpt) == len(transformer) + len(vae) + len(DROPPED), "original names collide"
    assert sfu.infer_diffusers_model_type(ckpt) == model_type, sfu.infer_diffusers_model_type(ckpt)

    t = sfu.convert_ltx_transformer_checkpoint_to_diffusers(dict(ckpt))
    assert {k: list(v.shape) for k, v in t.items()} == {n: s for n, _, s in transformer}
    v = sfu.convert_ltx_vae_checkpoint_to_diffusers(dict(ckpt))
    assert {k: list(x.shape) for k, x in v.items()} == {n: s for n, _, s in vae}
    # The same converters on the bare (unprefixed) transformer names.
    bare = {o[len("model.diffusion_model."):]: meta(s) for _, o, s in transformer}
    t2 = sfu.convert_ltx_transformer_checkpoint_to_diffusers(bare)
    assert set(t2) == {n for n, _, _ in transformer}


def write(name, config, model_type, entries):
    path = OUT / name
    with open(path, "w") as f:
        f.write('{"config": ' + json.dumps(config) + ',\n "diffusers_model_type": ' + json.dumps(model_type))
        f.write(',\n "tensors": [\n')
        f.write(",\n".join(json.dumps([n, o, s], separators=(",", ":")) for n, o, s in entries))
        f.write("\n]}\n")
    n = sum(torch.Size(s).numel() for _, _, s in entries)
    print(f"{name}: {len(entries)} tensors, {n / 1e9:.4f} B parameters, {path.stat().st_size / 1e3:.0f} kB")
    assert path.stat().st_size < 200_000


def main():
    t2b = transformer_entries(TRANSFORMER_2B)
    t13b = transformer_entries(TRANSFORMER_13B)
    v090 = vae_entries(VAE_090, VAE_BLOCKS_090, False)
    v091 = vae_entries(VAE_091, VAE_BLOCKS_091, True)
    v095 = vae_entries(VAE_095, VAE_BLOCKS_095, True)

    prove(t2b, v090, "ltx-video")
    prove(t2b, v091, "ltx-video-0.9.1")
    prove(t2b, v095, "ltx-video-0.9.5")
    prove(t13b, v095, "ltx-video-0.9.7")
    print("proved: diffusers' single-file converters map every derived name back exactly")

    def cfg(d):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    write("load_manifest_transformer_2b.json", cfg(TRANSFORMER_2B), "ltx-video (0.9.0 .. 0.9.5)", t2b)
    write("load_manifest_transformer_13b.json", cfg(TRANSFORMER_13B), "ltx-video-0.9.7", t13b)
    write("load_manifest_vae_090.json", cfg(VAE_090), "ltx-video", v090)
    write("load_manifest_vae_091.json", cfg(VAE_091), "ltx-video-0.9.1", v091)
    write("load_manifest_vae_095.json", cfg(VAE_095), "ltx-video-0.9.5", v095)


if __name__ == "__main__":
    main()
