#!/usr/bin/env python3
"""PyTorch on the GPU, the peer of bench/device_matmul.ms and bench/mlp_step.ms run with
`--device cuda`: f32 GFLOP/s of square products (TF32 off, as MindScript's f32 products
are full f32) and one eager SGD step of the 64-128-128-10 MLP at batch 64 (µs, median of
the steps after a warm-up). Prints the same lines as the MindScript scripts."""
import time

import torch

dev = torch.device("cuda")


def gflops(n):
    """f32 GFLOP/s of an n x n product: the best of 5 rounds of 10."""
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    c = a @ b
    best = float("inf")
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(10):
            c = a @ b
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / 10)
    return 2.0 * n**3 / best / 1e9


torch.backends.cuda.matmul.allow_tf32 = False
for n in [256, 1024, 4096]:
    print(n, gflops(n))
# The same products with TF32 allowed (`ms --tf32`).
torch.backends.cuda.matmul.allow_tf32 = True
for n in [1024, 4096]:
    print("tf32", n, gflops(n))
torch.backends.cuda.matmul.allow_tf32 = False

x = torch.rand(1437, 64, device=dev)
y = torch.randint(0, 10, (1437,), device=dev)
ps = []
for i, o in [(64, 128), (128, 128), (128, 10)]:
    bound = 1.0 / i**0.5
    ps.append(((torch.rand(i, o, device=dev) * 2 - 1) * bound).requires_grad_())
    ps.append(((torch.rand(o, device=dev) * 2 - 1) * bound).requires_grad_())
opt = torch.optim.SGD(ps, lr=0.1)
times = []
for step in range(200):
    idx = torch.randint(0, 1437, (64,), device=dev)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    h = x[idx]
    for j in range(3):
        h = h @ ps[2 * j] + ps[2 * j + 1]
        if j < 2:
            h = torch.relu(h)
    torch.nn.functional.cross_entropy(h, y[idx]).backward()
    opt.step()
    torch.cuda.synchronize()
    times.append((time.perf_counter() - t0) * 1e6)
times = sorted(times[20:])
print("us/step", times[len(times) // 2])

# The elementwise chain of bench/fusion.ms on 100M f32 (issue 10: the fused kernel against
# the device's copy bandwidth). The copy is `y.copy_(x)`: 8 bytes moved per element, as the
# fused chain (one read, one write). Best of 5 rounds of 10 calls, in milliseconds.
n = 100_000_000
x = torch.randn(n, device=dev)
y = torch.empty_like(x)


def best_ms(f, rounds=5, calls=10):
    f()
    best = float("inf")
    for _ in range(rounds):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e3


copy = best_ms(lambda: y.copy_(x))
print("copy ms", copy, "GB/s", 8 * n / copy / 1e6)


def chain(x):
    return torch.tanh(x * 1.5 + 0.25) * torch.sigmoid(x) - 0.5 * x


print("chain eager ms", best_ms(lambda: chain(x)))
try:
    compiled = torch.compile(chain)
    t0 = time.perf_counter()
    compiled(x)
    torch.cuda.synchronize()
    print("chain compile-time s", time.perf_counter() - t0)
    print("chain torch.compile ms", best_ms(lambda: compiled(x)))
except Exception as e:  # Inductor needs Triton and a C compiler; say what was missing.
    print("chain torch.compile unavailable:", type(e).__name__, str(e).splitlines()[0][:200])
