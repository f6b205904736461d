#!/usr/bin/env python3
"""PyTorch's peer of bench/mnist_steps.ms: training steps per second of the MNIST samples'
models (784-256-256-10 MLP at batch 128; the two-convolution CNN of samples/mnist_cnn.ms
at batch 64), Adam at lr 1e-3, eager and with torch.compile (the model compiled; the
optimizer step eager, as most users write it). Inputs are MNIST-shaped random tensors on
the device (the data does not change the time of a step). Prints `mlp eager steps/s N`,
`mlp torch.compile steps/s N`, the same for `cnn`, and each compile time. Best of 3
rounds of 100 steps after a warm-up, synchronizing the device at the end of each round."""
import sys
import time

import torch
import torch.nn as tnn

dev = torch.device(sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu"))
torch.manual_seed(0)


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def mlp():
    return tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 256), tnn.ReLU(), tnn.Linear(256, 256), tnn.ReLU(), tnn.Linear(256, 10))


def cnn():
    return tnn.Sequential(
        tnn.Conv2d(1, 16, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(16, 32, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Flatten(), tnn.Linear(32 * 7 * 7, 128), tnn.ReLU(), tnn.Linear(128, 10),
    )


def rate(make, batch, compile_it):
    model = make().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    run = torch.compile(model) if compile_it else model
    xs = [torch.rand(batch, 1, 28, 28, device=dev) for _ in range(10)]
    ys = [torch.randint(0, 10, (batch,), device=dev) for _ in range(10)]

    def step(i):
        opt.zero_grad(set_to_none=True)
        loss = tnn.functional.cross_entropy(run(xs[i % 10]), ys[i % 10])
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for i in range(3):
        step(i)
    sync()
    warm = time.perf_counter() - t0
    best = 0.0
    for _ in range(3):
        sync()
        t0 = time.perf_counter()
        for i in range(100):
            step(i)
        sync()
        best = max(best, 100 / (time.perf_counter() - t0))
    return best, warm


for name, make, batch in [("mlp", mlp, 128), ("cnn", cnn, 64)]:
    r, _ = rate(make, batch, False)
    print(name, "eager steps/s", round(r, 1), flush=True)
    try:
        r, warm = rate(make, batch, True)
        print(name, "torch.compile steps/s", round(r, 1), "(warm-up with compile", round(warm, 1), "s)", flush=True)
    except Exception as e:  # Inductor needs Triton and a C compiler; say what was missing.
        print(name, "torch.compile unavailable:", type(e).__name__, str(e).splitlines()[0][:200], flush=True)
