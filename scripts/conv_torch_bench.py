"""PyTorch timings of IFNet's convolutions, same table as `examples/conv_bench.rs`.

Usage: python scripts/conv_torch_bench.py [WIDTH HEIGHT ...]   (2 threads)
"""
import sys, time
import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.set_grad_enabled(False)


def cases(h, w):
    v = [("enc.s2 3->16", ("conv", 2, 0.2), 3, 16, h, w, 2),
         ("enc.s1 16->16", ("conv", 1, 0.2), 16, 16, h // 2, w // 2, 4),
         ("enc.up 16->4", ("up", False), 16, 4, h // 2, w // 2, 2)]
    for i, (s, c, cin) in enumerate([(16, 192, 15), (8, 128, 28), (4, 96, 28), (2, 64, 28), (1, 32, 28)]):
        bh, bw = h // s, w // s
        v += [(f"b{i}.s2 {cin}->{c // 2}", ("conv", 2, 0.2), cin, c // 2, bh, bw, 1),
              (f"b{i}.s2 {c // 2}->{c}", ("conv", 2, 0.2), c // 2, c, bh // 2, bw // 2, 1),
              (f"b{i}.res {c}", ("res",), c, c, bh // 4, bw // 4, 8),
              (f"b{i}.up {c}->52+ps", ("up", True), c, 52, bh // 4, bw // 4, 1)]
    return v


def best_ms(f):
    f()
    best, n, t0 = float("inf"), 0, time.perf_counter()
    while n < 3 or (time.perf_counter() - t0 < 0.5 and n < 200):
        t = time.perf_counter()
        f()
        best = min(best, (time.perf_counter() - t) * 1e3)
        n += 1
    return best


def main():
    a = [int(x) for x in sys.argv[1:]]
    sizes = list(zip(a[::2], a[1::2])) or [(640, 480), (1280, 720)]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for fw, fh in sizes:
        w, h = -(-fw // 64) * 64, -(-fh // 64) * 64
        print(f"\n== {fw}x{fh} -> {w}x{h} ==")
        total = 0.0
        for name, op, cin, cout, hh, ww, n in cases(h, w):
            x = torch.randn(1, cin, hh, ww)
            b = torch.randn(cout) * 0.1
            if op[0] == "conv":
                wt = torch.randn(cout, cin, 3, 3) * 0.05
                f = lambda: F.leaky_relu(F.conv2d(x, wt, b, stride=op[1], padding=1), op[2])
            elif op[0] == "res":
                wt = torch.randn(cout, cin, 3, 3) * 0.05
                beta = torch.ones(1, cout, 1, 1)
                f = lambda: F.leaky_relu(F.conv2d(x, wt, b, padding=1) * beta + x, 0.2)
            else:
                wt = torch.randn(cin, cout, 4, 4) * 0.05
                if op[1]:
                    f = lambda: F.pixel_shuffle(F.conv_transpose2d(x, wt, b, stride=2, padding=1), 2)
                else:
                    f = lambda: F.conv_transpose2d(x, wt, b, stride=2, padding=1)
            ms = best_ms(f)
            total += ms * n
            print(f"{name:<18} {n:>4} {cin}x{hh}x{ww:<8} {ms:>10.3f}")
        print(f"{'TOTAL (x n)':<18} {total:>27.2f}")


if __name__ == "__main__":
    main()
