"""The loop's own cost per training step, isolated: a model and data so small that the step itself is cheap.

A linear layer 2->2 on batches of 2 items, pre-built in a list (no DataLoader), 3000 training steps, SGD: whatever
fastcb adds per step (dispatching events, callbacks' work) stands out instead of drowning in the model's and the
loader's time, which on the benchmarks' tiny configuration (bench/cpu.py) vary by more than the overhead from run to run.
Contenders: the hand-written loop; fastcb with TrainEvalCallback only; fastcb with its default callbacks (plain
progress mode); repetitions interleaved with alternating order, medians and paired differences of the
process's CPU time (one thread: it does not count the moments the machine's other tenants run instead of us).

    python bench/loop_overhead.py [--reps 15] [--steps 3000]
"""
import argparse, gc, statistics, time
import torch
from torch import nn
from fastcb.learner import Learner, TrainEvalCallback
from fastcb.data import DataLoaders

def make_batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(2, 2, generator=g), torch.randint(0, 2, (2,), generator=g)) for _ in range(n)]

def model():
    torch.manual_seed(0)
    return nn.Linear(2, 2)

def hand_written(batches):
    m, loss_func = model(), nn.CrossEntropyLoss()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    t0 = time.process_time()
    m.train()
    for xb, yb in batches:
        loss = loss_func(m(xb), yb)
        loss.backward(); opt.step(); opt.zero_grad()
    return time.process_time() - t0

def _fastcb(batches, **kw):
    learn = Learner(DataLoaders(batches, None), model(), nn.CrossEntropyLoss(), opt_func=torch.optim.SGD, lr=0.1, **kw)
    t0 = time.process_time()
    with learn.no_logging(): learn.fit(1)
    return time.process_time() - t0

def fastcb_bare(batches): return _fastcb(batches, default_cbs=False, cbs=TrainEvalCallback())
def fastcb_default(batches): return _fastcb(batches)

def main(reps=15, steps=3000):
    torch.set_num_threads(1)
    batches = make_batches(steps)
    cs = {'hand-written': hand_written, 'fastcb bare': fastcb_bare, 'fastcb default': fastcb_default}
    for f in cs.values(): f(batches[:100])   # warm-up
    times = {k: [] for k in cs}
    for rep in range(reps):
        items = list(cs.items())
        for k, f in (items if rep % 2 == 0 else items[::-1]):
            gc.collect()
            times[k].append(f(batches) / steps * 1e6)
    res = {'steps': steps, 'reps': reps, 'rows': []}
    print("| loop | µs/step median | min–max | overhead over hand-written, µs/step (median of paired differences) |")
    print("|---|---|---|---|")
    for k, ts in times.items():
        paired = statistics.median(t - h for t, h in zip(ts, times['hand-written']))
        res['rows'].append({'loop': k, 'us_per_step': statistics.median(ts), 'min': min(ts), 'max': max(ts), 'overhead_us': paired})
        print(f"| {k} | {statistics.median(ts):.1f} | {min(ts):.1f}–{max(ts):.1f} | {paired:+.1f} |")
    return res

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=15); p.add_argument('--steps', type=int, default=3000)
    a = p.parse_args()
    main(a.reps, a.steps)
