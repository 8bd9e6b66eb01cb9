"""The fast in-memory loader against torch's DataLoader (DESIGN.md section 5, tiny configuration).

(a) Iterating one epoch: 2000 batches of 64 vectors of 64 floats plus labels, shuffled, with fastcb's TensorLoader
    and with a torch DataLoader over a TensorDataset.
(b) A whole fit of one epoch (2000 training + 200 validation batches, MLP 64->64->10, Adam, lr 1e-3): fastcb's
    Learner with its default callbacks and the accuracy metric, on DataLoaders.from_tensors, against a hand-written
    PyTorch loop over torch DataLoaders (bare, and tracking the same loss/accuracy fastcb shows).

One process, one thread, a warm-up, then repetitions interleaved (A B C A B C ...) so slow drifts of the machine
hit every contender alike; medians, min-max, and ratios of medians are printed.

    python bench/loader.py [--reps 7] [--steps 2000]
"""
import argparse, statistics, time
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fastcb.learner import Learner
from fastcb.data import DataLoaders, TensorLoader
from fastcb.metrics import accuracy
from fastcb.callback.progress import progress_mode

BS = 64

def make_data(n_batches, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_batches * BS, 64, generator=g), torch.randint(0, 10, (n_batches * BS,), generator=g)

def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

# (a) iterating one epoch
def iter_torch(x, y):
    dl = DataLoader(TensorDataset(x, y), batch_size=BS, shuffle=True, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    for xb, yb in dl: pass
    return time.perf_counter() - t0

def iter_fast(x, y):
    dl = TensorLoader(x, y, bs=BS, shuffle=True, seed=0)
    t0 = time.perf_counter()
    for xb, yb in dl: pass
    return time.perf_counter() - t0

# (b) a whole fit
def hand_written(data, metrics=False):
    "The loop a careful PyTorch user writes, over torch DataLoaders; with `metrics`, also mean train loss, valid loss and accuracy."
    (xt, yt), (xv, yv) = data
    model, loss_func = make_model(), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_dl = DataLoader(TensorDataset(xt, yt), batch_size=BS, shuffle=True, generator=torch.Generator().manual_seed(0))
    valid_dl = DataLoader(TensorDataset(xv, yv), batch_size=BS)
    t0 = time.perf_counter()
    model.train()
    train_total, n_train = 0., 0
    for xb, yb in train_dl:
        loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if metrics:
            train_total += loss.detach() * len(yb)
            n_train += len(yb)
    model.eval()
    total, correct, n = 0., 0., 0
    with torch.no_grad():
        for xb, yb in valid_dl:
            pred = model(xb)
            total += loss_func(pred, yb) * len(yb)
            if metrics: correct += (pred.argmax(-1) == yb).float().sum()
            n += len(yb)
    valid_loss = (total / n).item()
    if metrics: train_loss, acc = (train_total / n_train).item(), (correct / n).item()
    return time.perf_counter() - t0

def hand_written_metrics(data): return hand_written(data, metrics=True)

def fastcb_default(data):
    "fastcb's Learner, default callbacks, accuracy, on DataLoaders.from_tensors (TensorLoaders)."
    (xt, yt), (xv, yv) = data
    dls = DataLoaders.from_tensors(xt, yt, xv, yv, bs=BS, seed=0)
    learn = Learner(dls, make_model(), lr=1e-3, metrics=accuracy)
    t0 = time.perf_counter()
    with learn.no_logging(): learn.fit(1)
    return time.perf_counter() - t0

def interleaved(contenders, args, reps, per):
    for f in contenders.values(): f(*args)   # warm-up
    times = {k: [] for k in contenders}
    for _ in range(reps):
        for name, f in contenders.items(): times[name].append(f(*args) / per * 1e6)
    return times

def table(times, base):
    b = statistics.median(times[base])
    print("| contender | µs/batch median | min–max | speed-up over " + base + " (ratio of medians) |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.1f} | {min(ts):.1f}–{max(ts):.1f} | {b / m:.2f}x |")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=7)
    p.add_argument('--steps', type=int, default=2000)
    a = p.parse_args()
    torch.set_num_threads(1)
    x, y = make_data(a.steps)
    xv, yv = make_data(max(a.steps // 10, 1), seed=1)
    print(f"torch {torch.__version__}, 1 thread, {a.steps} batches of {BS}, {a.reps} interleaved repetitions, "
          f"progress mode '{progress_mode()}'\n")

    print("(a) iterating one shuffled epoch\n")
    ta = interleaved({'torch DataLoader(TensorDataset)': iter_torch, 'fastcb TensorLoader': iter_fast}, (x, y), a.reps, a.steps)
    table(ta, 'torch DataLoader(TensorDataset)')
    ratio_a = statistics.median(ta['torch DataLoader(TensorDataset)']) / statistics.median(ta['fastcb TensorLoader'])

    print(f"\n(b) one epoch of fit: {a.steps} training + {max(a.steps // 10, 1)} validation batches, MLP 64->64->10, Adam "
          "(time per training batch)\n")
    data = ((x, y), (xv, yv))
    tb = interleaved({'hand-written loop, torch DataLoader': hand_written,
                      'hand-written loop + loss/accuracy, torch DataLoader': hand_written_metrics,
                      'fastcb default callbacks + accuracy, from_tensors': fastcb_default}, (data,), a.reps, a.steps)
    table(tb, 'hand-written loop, torch DataLoader')
    med = {k: statistics.median(v) for k, v in tb.items()}
    ratio_b = med['hand-written loop, torch DataLoader'] / med['fastcb default callbacks + accuracy, from_tensors']
    ratio_b2 = med['hand-written loop + loss/accuracy, torch DataLoader'] / med['fastcb default callbacks + accuracy, from_tensors']

    print(f"\n(a) TensorLoader is {ratio_a:.1f}x faster than torch's DataLoader at iterating an epoch (target: >= 5x)")
    print(f"(b) fastcb's default fit is {ratio_b:.2f}x faster than the bare hand-written loop with a torch DataLoader, "
          f"{ratio_b2:.2f}x faster than the hand-written loop tracking loss/accuracy (target: > 1x)")
