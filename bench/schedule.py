"""Per-step cost of the schedules: `fit_one_cycle` against a plain `fit` (the benchmarks' tiny configuration: MLP 64->64->10, batch 64, 2000 batches).

MLP 64->64->10, batch 64, 2000 training batches (no validation), Adam, one thread, fastcb's default callbacks with
logging off. Contenders, interleaved (A B C A B C ...) after a warm-up, in one process:

- A: `learn.fit(1)` at a constant learning rate;
- B: `learn.fit_one_cycle(1)`, which adds a `ParamScheduler` that sets the learning rate and the momentum (Adam's
  betas[0]) before every batch and records the momentum in `recorder.hps`;
- C (control): `learn.fit(1)` with a `ParamScheduler` doing the same work as B's (two combined cosines, lr and mom)
  but whose values are constant (A's lr and betas), so C computes exactly what A computes: C - A is the scheduler's
  cost alone, B - C the effect of the values changing (numerics, not overhead).

Each run is timed by the wall clock and by the thread's CPU time (`time.thread_time`, which leaves out the time the
process waits for a busy CPU); the script prints the medians, the ratios of medians, and the medians of the paired
differences (each run against the A run just before it). The per-step differences are a few microseconds on top of
several hundred, so they are noisy on a shared machine; the script also times the scheduler's own handlers
(`before_batch` + `after_batch`) alone, in a tight loop over the same number of steps, which is the number to compare
with the 5 µs/step budget.

    taskset -c 1 python bench/schedule.py [--reps 9] [--steps 2000] [--data list|dataloader]
"""
import argparse, gc, statistics, time
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fastcb.learner import Learner
from fastcb.data import DataLoaders
from fastcb.callback.schedule import ParamScheduler, combined_cos

BS, LR = 64, 1e-3

def make_data(n_batches, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n_batches * BS, 64, generator=g), torch.randint(0, 10, (n_batches * BS,), generator=g))

def make_learner(ds, data):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    dl = DataLoader(ds, batch_size=BS, shuffle=True, generator=torch.Generator().manual_seed(0))
    train = list(dl) if data == 'list' else dl
    return Learner(DataLoaders(train), model, nn.CrossEntropyLoss(), lr=LR)

def one_cycle_scheds(lr_max=LR, moms=(0.95, 0.85, 0.95)):
    return {'lr': combined_cos(0.25, lr_max / 25, lr_max, lr_max / 1e5), 'mom': combined_cos(0.25, *moms)}

def timed(ds, data, how):
    learn = make_learner(ds, data)
    gc.collect()   # garbage of the previous run (learners hold reference cycles) is not collected on this one's time
    w0, c0 = time.perf_counter(), time.thread_time()
    with learn.no_logging():
        if how == 'A': learn.fit(1)
        elif how == 'B': learn.fit_one_cycle(1)
        else: learn.fit(1, cbs=ParamScheduler({'lr': combined_cos(0.25, LR, LR, LR), 'mom': combined_cos(0.25, 0.9, 0.9, 0.9)}))
    w, c = time.perf_counter() - w0, time.thread_time() - c0
    if how != 'A': assert len(learn.recorder.hps['mom']) == len(learn.recorder.lrs)
    return w, c, learn

def handlers_alone(learn, steps, reps=9):
    "µs per step of ParamScheduler.before_batch + after_batch (one-cycle lr and mom), minus the same loop without them."
    rec = learn.recorder
    cb = ParamScheduler(one_cycle_scheds())
    learn.add_cb(cb)
    rec.lrs.clear(); rec.hps = {'lr': rec.lrs}
    cb.before_fit()
    before, after, lrs = cb.before_batch, cb.after_batch, rec.lrs
    def loop(with_cb):
        lrs.clear(); rec.hps['mom'].clear()
        t0 = time.thread_time()
        for i in range(steps):
            learn.pct_train = i / steps
            if with_cb: before()
            lrs.append(0.)   # what the Recorder does in after_batch, before the scheduler's after_batch
            if with_cb: after()
        return time.thread_time() - t0
    loop(True); loop(False)
    diffs = []
    for _ in range(reps):
        a, b = loop(False), loop(True)
        diffs.append((b - a) / steps * 1e6)
    learn.remove_cb(cb)
    assert len(rec.hps['mom']) == steps
    return statistics.median(diffs), min(diffs), max(diffs)

def quartiles(xs):
    xs = sorted(xs)
    return statistics.quantiles(xs, n=4)[::2] if len(xs) > 1 else (xs[0], xs[0])

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=9)
    p.add_argument('--steps', type=int, default=2000)
    p.add_argument('--data', choices=['list', 'dataloader'], default='list',
                   help="batches from a pre-built list (the loop's own cost, default) or from a torch DataLoader")
    a = p.parse_args()
    torch.set_num_threads(1)
    ds, small = make_data(a.steps), make_data(50, seed=1)
    for how in 'ABC': timed(small, a.data, how)   # warm-up
    names = {'A': 'A: fit (default callbacks)', 'B': 'B: fit_one_cycle (+ ParamScheduler: lr, mom)',
             'C': 'C: fit + ParamScheduler with constant values (control)'}
    wall, cpu = {k: [] for k in 'ABC'}, {k: [] for k in 'ABC'}
    for _ in range(a.reps):   # interleaved: A B C A B C ...
        for how in 'ABC':
            w, c, learn = timed(ds, a.data, how)
            wall[how].append(w / a.steps * 1e6); cpu[how].append(c / a.steps * 1e6)
    print(f"CPU, 1 thread, torch {torch.__version__}, data from a {a.data}, {a.steps} steps, {a.reps} interleaved repetitions\n")
    print("| loop | wall µs/step median (min–max) | CPU µs/step median (min–max) | paired diff. to A, CPU µs/step: median [quartiles] |")
    print("|---|---|---|---|")
    for k in 'ABC':
        d = [x - y for x, y in zip(cpu[k], cpu['A'])]
        q1, q3 = quartiles(d)
        print(f"| {names[k]} | {statistics.median(wall[k]):.1f} ({min(wall[k]):.1f}–{max(wall[k]):.1f}) "
              f"| {statistics.median(cpu[k]):.1f} ({min(cpu[k]):.1f}–{max(cpu[k]):.1f}) "
              f"| {statistics.median(d):+.2f} [{q1:+.2f}, {q3:+.2f}] |")
    for kind, t in (('wall', wall), ('CPU', cpu)):
        ma = statistics.median(t['A'])
        print(f"\nratio of medians ({kind} time): B/A {statistics.median(t['B']) / ma:.4f}, C/A {statistics.median(t['C']) / ma:.4f}")
    h_med, h_min, h_max = handlers_alone(learn, a.steps)
    print(f"\nParamScheduler handlers alone (before_batch + after_batch, one-cycle lr and mom), CPU time: "
          f"{h_med:.2f} µs/step (min {h_min:.2f}, max {h_max:.2f})")

if __name__ == '__main__':
    main()
