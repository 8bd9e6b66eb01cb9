"""The fast in-memory loader against torch's DataLoader (the benchmarks' tiny configuration: MLP 64->64->10, batch 64, 2000 batches).

(a) Iterating one epoch: 2000 batches of 64 vectors of 64 floats plus labels, shuffled, with fastcb's TensorLoader
    and with a torch DataLoader over a TensorDataset.
(b) A whole fit with the fast loader against the hand-written loop with a torch DataLoader is measured by
    bench/cpu.py ('fastcb default, fast loader' against 'hand-written'), with the other contenders.

One process, one thread, a warm-up, then repetitions interleaved (A B C A B C ...) so slow drifts of the machine
hit every contender alike; the process's CPU time (one thread), medians, min-max, and ratios of medians are printed.

    python bench/loader.py [--reps 7] [--steps 2000]
"""
import argparse, statistics, time
import torch
from torch.utils.data import DataLoader, TensorDataset

from fastcb.data import TensorLoader

BS = 64

def make_data(n_batches, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_batches * BS, 64, generator=g), torch.randint(0, 10, (n_batches * BS,), generator=g)

# (a) iterating one epoch
def iter_torch(x, y):
    dl = DataLoader(TensorDataset(x, y), batch_size=BS, shuffle=True, generator=torch.Generator().manual_seed(0))
    t0 = time.process_time()
    for xb, yb in dl: pass
    return time.process_time() - t0

def iter_fast(x, y):
    dl = TensorLoader(x, y, bs=BS, shuffle=True, seed=0)
    t0 = time.process_time()
    for xb, yb in dl: pass
    return time.process_time() - t0

def interleaved(contenders, args, reps, per):
    for f in contenders.values(): f(*args)   # warm-up
    times = {k: [] for k in contenders}
    for rep in range(reps):
        items = list(contenders.items())
        for name, f in (items if rep % 2 == 0 else items[::-1]): times[name].append(f(*args) / per * 1e6)
    return times

def table(times, base):
    b = statistics.median(times[base])
    print("| contender | µs/batch median | min–max | speed-up over " + base + " (ratio of medians) |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.1f} | {min(ts):.1f}–{max(ts):.1f} | {b / m:.2f}x |")

def main(reps=7, steps=2000):
    "Time both loaders, print the table and return the medians (µs per batch) and the speed-up."
    torch.set_num_threads(1)
    x, y = make_data(steps)
    print(f"torch {torch.__version__}, 1 thread, {steps} shuffled batches of {BS}, {reps} interleaved repetitions\n")
    ta = interleaved({'torch DataLoader(TensorDataset)': iter_torch, 'fastcb TensorLoader': iter_fast}, (x, y), reps, steps)
    table(ta, 'torch DataLoader(TensorDataset)')
    torch_us, fast_us = statistics.median(ta['torch DataLoader(TensorDataset)']), statistics.median(ta['fastcb TensorLoader'])
    print(f"\nTensorLoader is {torch_us / fast_us:.1f}x faster than torch's DataLoader at iterating an epoch (target: >= 5x)")
    return {'torch_dataloader_us_per_batch': torch_us, 'tensorloader_us_per_batch': fast_us, 'speedup': torch_us / fast_us}

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=7)
    p.add_argument('--steps', type=int, default=2000)
    a = p.parse_args()
    main(a.reps, a.steps)
