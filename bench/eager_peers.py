#!/usr/bin/env python3
"""The peers' side of bench/eager.sh: a dependent chain of N adds of two 4-element f32
tensors (acc = acc + b), loop included, in NumPy, PyTorch eager (no_grad, 1 thread) and JAX
eager. Prints one JSON object: {impl: [microseconds per add for each repetition]}."""
import json
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 7


def chain(a0, b, sync=lambda x: x):
    out = []
    for _ in range(REPS):
        acc = a0
        t0 = time.perf_counter()
        for _ in range(N):
            acc = acc + b
        sync(acc)
        out.append((time.perf_counter() - t0) / N * 1e6)
    return out


res = {}
import numpy as np  # noqa: E402
res["numpy"] = chain(np.zeros(4, np.float32), np.full(4, 1e-3, np.float32))
try:
    import torch
    torch.set_num_threads(1)
    with torch.no_grad():
        res["torch eager"] = chain(torch.zeros(4), torch.full((4,), 1e-3))
except ImportError:
    pass
try:
    import jax.numpy as jnp
    res["jax eager"] = chain(jnp.zeros(4, jnp.float32), jnp.full(4, 1e-3, jnp.float32),
                             sync=lambda x: x.block_until_ready())
except ImportError:
    pass
print(json.dumps(res))
