"""Overhead of fastcb's loop over a hand-written PyTorch loop (DESIGN.md section 5, tiny configuration).

MLP 64->64->10, batch 64, 2000 training + 200 validation batches, one thread, a torch DataLoader over a
TensorDataset. Each contender runs one full epoch (train + validation); repetitions are interleaved
(A B A B ...) after a warm-up, and the script prints medians and min-max of the time per training step.

    python bench/overhead.py [--reps 5] [--steps 2000] [--json out.json]
"""
import argparse, json, statistics, sys, time
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fastcb.learner import Learner, TrainEvalCallback
from fastcb.data import DataLoaders
from fastcb.metrics import accuracy

BS = 64

def make_data(n_train_batches, n_valid_batches, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda n: TensorDataset(torch.randn(n * BS, 64, generator=g), torch.randint(0, 10, (n * BS,), generator=g))
    return mk(n_train_batches), mk(n_valid_batches)

def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

DATA = 'dataloader'

def loaders(train_ds, valid_ds):
    "torch DataLoaders, or (with DATA = 'list') pre-built lists of batches, which take the loader's cost out."
    g = torch.Generator().manual_seed(0)
    train, valid = DataLoader(train_ds, batch_size=BS, shuffle=True, generator=g), DataLoader(valid_ds, batch_size=BS)
    return (train, valid) if DATA == 'dataloader' else (list(train), list(valid))

def hand_written(train_ds, valid_ds):
    "The loop a careful PyTorch user writes: same model, loss, optimizer, data and validation."
    model, loss_func = make_model(), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_dl, valid_dl = loaders(train_ds, valid_ds)
    t0 = time.perf_counter()
    model.train()
    for xb, yb in train_dl:
        loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    total, n = 0., 0
    with torch.no_grad():
        for xb, yb in valid_dl:
            total += loss_func(model(xb), yb) * len(yb)
            n += len(yb)
    valid_loss = (total / n).item()
    return time.perf_counter() - t0, valid_loss

def hand_written_metrics(train_ds, valid_ds):
    "The same loop, also tracking what fastcb's default callbacks show: mean training loss, valid loss and accuracy."
    model, loss_func = make_model(), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_dl, valid_dl = loaders(train_ds, valid_ds)
    t0 = time.perf_counter()
    model.train()
    train_total, n_train = 0., 0
    for xb, yb in train_dl:
        loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
        train_total += loss.detach() * len(yb)
        n_train += len(yb)
    model.eval()
    total, correct, n = 0., 0., 0
    with torch.no_grad():
        for xb, yb in valid_dl:
            pred = model(xb)
            total += loss_func(pred, yb) * len(yb)
            correct += (pred.argmax(-1) == yb).float().sum()
            n += len(yb)
    train_loss, valid_loss, acc = (train_total / n_train).item(), (total / n).item(), (correct / n).item()
    return time.perf_counter() - t0, valid_loss

def _fastcb(train_ds, valid_ds, **kw):
    train_dl, valid_dl = loaders(train_ds, valid_ds)
    learn = Learner(DataLoaders(train_dl, valid_dl), make_model(), nn.CrossEntropyLoss(), lr=1e-3, **kw)
    t0 = time.perf_counter()
    with learn.no_logging(): learn.fit(1)
    dt = time.perf_counter() - t0
    preds = learn.get_preds(act=lambda x: x)
    return dt, nn.CrossEntropyLoss()(*preds).item()

def fastcb_bare(train_ds, valid_ds):
    "fastcb's Learner with no callback but TrainEvalCallback."
    return _fastcb(train_ds, valid_ds, default_cbs=False, cbs=TrainEvalCallback())

def fastcb_default(train_ds, valid_ds):
    "fastcb's Learner with its default callbacks (progress in non-interactive mode) and the accuracy metric."
    return _fastcb(train_ds, valid_ds, metrics=accuracy)

# contender -> the hand-written loop doing the same work, which its overhead is measured against
CONTENDERS = {'hand-written': (hand_written, 'hand-written'),
              'hand-written + loss/accuracy': (hand_written_metrics, 'hand-written + loss/accuracy'),
              'fastcb bare (TrainEvalCallback)': (fastcb_bare, 'hand-written'),
              'fastcb default + accuracy': (fastcb_default, 'hand-written + loss/accuracy')}

def run(reps, steps, contenders=CONTENDERS):
    torch.set_num_threads(1)
    train_ds, valid_ds = make_data(steps, max(steps // 10, 1))
    small_train, small_valid = make_data(50, 5, seed=1)
    for f, _ in contenders.values(): f(small_train, small_valid)   # warm-up
    times = {k: [] for k in contenders}
    losses = {}
    for _ in range(reps):   # interleaved: A B C D A B C D ...
        for name, (f, _) in contenders.items():
            dt, vl = f(train_ds, valid_ds)
            times[name].append(dt / steps * 1e6)
            losses[name] = vl
    rows = []
    for name, ts in times.items():
        base_name = contenders[name][1]
        med, base = statistics.median(ts), statistics.median(times[base_name])
        # Paired differences (each run against the baseline run next to it) cancel the machine's slow drift.
        paired = statistics.median(t - b for t, b in zip(ts, times[base_name]))
        rows.append({'loop': name, 'baseline': base_name, 'us_per_step_median': med, 'us_per_step_min': min(ts),
                     'us_per_step_max': max(ts), 'overhead_us_per_step': paired, 'ratio': med / base,
                     'valid_loss': losses[name]})
    return rows

def print_table(rows, title):
    print(f"\n{title}\n")
    print("| loop | µs/step median | min–max | compared with | overhead µs/step (median of paired differences) | ratio of medians | final valid loss |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['loop']} | {r['us_per_step_median']:.1f} | {r['us_per_step_min']:.1f}–{r['us_per_step_max']:.1f} "
              f"| {r['baseline']} | {r['overhead_us_per_step']:+.1f} | {r['ratio']:.3f} | {r['valid_loss']:.4f} |")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=7)
    p.add_argument('--steps', type=int, default=2000)
    p.add_argument('--data', choices=['dataloader', 'list', 'both'], default='both',
                   help="batches from a torch DataLoader, from a pre-built list (isolates the loop's own cost), or both")
    p.add_argument('--json', default=None)
    a = p.parse_args()
    results = {}
    for data in (['dataloader', 'list'] if a.data == 'both' else [a.data]):
        globals()['DATA'] = data
        results[data] = run(a.reps, a.steps)
        print_table(results[data], f"CPU, 1 thread, torch {torch.__version__}, data from a {data}, {a.steps} steps, "
                                   f"{a.reps} interleaved repetitions")
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'torch': torch.__version__, 'steps': a.steps, 'reps': a.reps, 'results': results}, f, indent=1)
