"""Reference fixtures for the LTX-Video VAE port (src/model/ltx/vae).

Builds tiny random `AutoencoderKLLTXVideo`s (diffusers 0.42.1) with fixed seeds
and writes, under tests/fixtures/ltx/:
  vae.safetensors / vae_config.json        0.9.5 layout (LTXVideo095DownBlock3D with the
                                           spatial / temporal / spatiotemporal downsamplers,
                                           patch_size 4, residual upsamplers with factor 2)
  vae_tc.safetensors / vae_tc_config.json  diffusers-test layout (LTXVideoDownBlock3D, conv
                                           downsampling, patch_size 1) with timestep_conditioning
  vae_io.safetensors                       input clip, encoded means, decoded latents
  vae_095_manifest.json                    every parameter/buffer name and shape of the real
                                           LTX-Video 0.9.5 VAE (built on the meta device)
Run: /work/venv/bin/python scripts/ltx_reference/vae.py
"""
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKLLTXVideo
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "ltx"

TINY_095 = dict(
    in_channels=3, out_channels=3, latent_channels=8,
    block_out_channels=(8, 8, 16, 16),
    down_block_types=("LTXVideo095DownBlock3D",) * 3,
    decoder_block_out_channels=(8, 16),
    layers_per_block=(1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1),
    spatio_temporal_scaling=(True, True, True), decoder_spatio_temporal_scaling=(True, True),
    decoder_inject_noise=(False, False, False),
    downsample_type=("spatial", "temporal", "spatiotemporal"),
    upsample_residual=(True, True), upsample_factor=(2, 2),
    timestep_conditioning=False, patch_size=4, patch_size_t=1,
    encoder_causal=True, decoder_causal=False,
)

TINY_TC = dict(
    in_channels=3, out_channels=3, latent_channels=8,
    block_out_channels=(8, 8, 8, 8),
    decoder_block_out_channels=(8, 8, 8, 8),
    layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
    spatio_temporal_scaling=(True, True, False, False),
    decoder_spatio_temporal_scaling=(True, True, False, False),
    decoder_inject_noise=(False, False, False, False, False),
    upsample_residual=(True, True, False, False), upsample_factor=(1, 1, 1, 1),
    timestep_conditioning=True, patch_size=1, patch_size_t=1,
    encoder_causal=True, decoder_causal=False,
)

REAL_095 = dict(
    in_channels=3, out_channels=3, latent_channels=128,
    block_out_channels=(128, 256, 512, 1024, 2048),
    down_block_types=("LTXVideo095DownBlock3D",) * 4,
    decoder_block_out_channels=(256, 512, 1024),
    layers_per_block=(4, 6, 6, 2, 2), decoder_layers_per_block=(5, 5, 5, 5),
    spatio_temporal_scaling=(True, True, True, True), decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, False, False, False),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
    timestep_conditioning=True, patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6, scaling_factor=1.0,
    encoder_causal=True, decoder_causal=False, spatial_compression_ratio=32, temporal_compression_ratio=8,
)

DECODE_T = 0.05
# Tiny tiles for the tiled-decode parity (sample pixels; the tc model compresses space by 4).
TILING = dict(tile_sample_min_height=16, tile_sample_min_width=16,
              tile_sample_stride_height=8, tile_sample_stride_width=8)

TEMPORAL_TILING = dict(tile_sample_min_num_frames=8, tile_sample_stride_num_frames=4)


def smooth_clip(gen, shape):
    """Smooth random content in [-1, 1]: a coarse random grid, upsampled trilinearly."""
    b, c, f, h, w = shape
    coarse = torch.rand((b, c, 3, h // 8 + 1, w // 8 + 1), generator=gen) * 2 - 1
    x = torch.nn.functional.interpolate(coarse, size=(f, h, w), mode="trilinear", align_corners=True)
    return x.clamp(-1, 1).contiguous()


def build(cfg, seed):
    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(**cfg).eval()
    # latents statistics are zeros/ones at init: make them non-trivial so the
    # normalisation is tested too.
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        vae.latents_mean.copy_(torch.randn(cfg["latent_channels"], generator=g) * 0.1)
        vae.latents_std.copy_(torch.rand(cfg["latent_channels"], generator=g) + 0.5)
        # Weights are stored in f16 (fixture size); round them so the f32 reference
        # computes with exactly the values the Rust side loads.
        for t in list(vae.parameters()) + list(vae.buffers()):
            t.copy_(t.half().float())
    return vae


def state(vae):
    return {k: v.detach().half().contiguous() for k, v in vae.state_dict().items()}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    io = {}
    gen = torch.Generator().manual_seed(1234)
    clip = smooth_clip(gen, (1, 3, 9, 32, 32))
    io["clip"] = clip

    for name, cfg, seed in (("vae", TINY_095, 0), ("vae_tc", TINY_TC, 1)):
        vae = build(cfg, seed)
        save_file(state(vae), str(OUT / f"{name}.safetensors"))
        (OUT / f"{name}_config.json").write_text(json.dumps(dict(vae.config), indent=1, default=list))
        with torch.no_grad():
            post = vae.encode(clip).latent_dist
            io[f"{name}.mean"] = post.mean.contiguous()
            if name == "vae":  # (fixture size: the tc model's logvar / normalisation are left out)
                io[f"{name}.logvar"] = post.logvar.contiguous()
            shape = list(post.mean.shape)
            if name == "vae":
                shape[2:] = [3, 2, 2]  # decoded clip: [1, 3, 9, 32, 32]
            lat = torch.randn(shape, generator=gen)
            io[f"{name}.latent"] = lat
            temb = torch.tensor([DECODE_T]) if cfg["timestep_conditioning"] else None
            io[f"{name}.decoded"] = vae.decode(lat, temb).sample.contiguous()
            if name == "vae":
                io[f"{name}.normalized"] = (
                    (post.mean - vae.latents_mean.view(1, -1, 1, 1, 1)) * vae.config.scaling_factor
                    / vae.latents_std.view(1, -1, 1, 1, 1)
                ).contiguous()
            if name == "vae_tc":
                vae.enable_tiling(**TILING)
                io[f"{name}.decoded_tiled"] = vae.decode(lat, temb).sample.contiguous()
                io[f"{name}.mean_tiled"] = vae.encode(clip).latent_dist.mean.contiguous()
                vae.use_tiling = False
                # Temporal (framewise) tiling on a longer, spatially small clip / latent.
                vae.enable_tiling(**TEMPORAL_TILING)
                vae.use_tiling = False
                vae.use_framewise_decoding = True
                clip_t = smooth_clip(gen, (1, 3, 17, 8, 8))
                lat_t = torch.randn((1, 8, 5, 2, 2), generator=gen)
                io["clip_t"] = clip_t
                io[f"{name}.latent_t"] = lat_t
                io[f"{name}.mean_temporal"] = vae.encode(clip_t).latent_dist.mean.contiguous()
                io[f"{name}.decoded_temporal"] = vae.decode(lat_t, temb).sample.contiguous()
                vae.use_framewise_decoding = False
        print(name, {k: tuple(v.shape) for k, v in io.items() if k.startswith(name + ".")})
    io["decode_timestep"] = torch.tensor([DECODE_T])
    save_file(io, str(OUT / "vae_io.safetensors"))

    with torch.device("meta"):
        real = AutoencoderKLLTXVideo(**REAL_095)
    manifest = {k: list(v.shape) for k, v in real.state_dict().items()}
    (OUT / "vae_095_manifest.json").write_text(json.dumps(
        {"config": dict(real.config), "tensors": manifest}, separators=(",", ":"), default=list))
    (OUT / "vae_tiling.json").write_text(json.dumps({"spatial": TILING, "temporal": TEMPORAL_TILING}))
    print("real 0.9.5 tensors:", len(manifest), "params:", sum(torch.Size(s).numel() for s in manifest.values()))


if __name__ == "__main__":
    main()
