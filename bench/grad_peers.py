#!/usr/bin/env python3
"""The peer side of bench/grad_chain.ms: PyTorch eager, the gradient of a dependent chain of N
adds of two 4-element f32 tensors (forward with autograd recording, then backward), one
thread. Prints microseconds per add for each repetition, one per line."""
import sys
import time

import torch

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
torch.set_num_threads(1)
b = torch.full((4,), 1e-3)
for _ in range(REPS):
    a = torch.zeros(4, requires_grad=True)
    t0 = time.perf_counter()
    acc = a
    for _ in range(N):
        acc = acc + b
    acc.sum().backward()
    print((time.perf_counter() - t0) / N * 1e6)
