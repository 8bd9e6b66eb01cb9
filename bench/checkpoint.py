"""What CheckpointCallback costs: per training step between checkpoints, and per checkpoint against a bare torch.save.

1. Per-step overhead. The loop-overhead configuration (a 2->2 linear layer, batches of 2 pre-built in a list, SGD,
   `--steps` steps, TrainEvalCallback only, so the loop's own cost is all there is): fastcb without a checkpoint
   callback, with `CheckpointCallback()` (end of epoch only: no per-batch handler at all) and with
   `CheckpointCallback(every_n_steps=N)` with N larger than the run (one modulo per step, no write). Repetitions are
   interleaved in alternating order; the result is the median of paired differences, in microseconds per step,
   plus the number of per-batch handlers each adds (deterministic).
2. One checkpoint. An MLP of about `--params` parameters with Adam state, after one step: `CheckpointCallback.write`
   (state of every callback, random states, loaders' positions, temporary file, fsync, rename) against a bare
   `torch.save({'model': ..., 'opt': ...}, path)`, and against torch.save followed by fsync (the durability the
   checkpoint pays for). In the working folder (a real disk) and in /dev/shm (memory: fsync is free there, so the
   ratio shows fastcb's own work). Medians of interleaved repetitions.

    python bench/checkpoint.py [--reps 11] [--steps 3000] [--params 5000000]
"""
import argparse, os, shutil, statistics, tempfile, time
from pathlib import Path
import torch
from torch import nn
from fastcb.learner import Learner, TrainEvalCallback
from fastcb.data import DataLoaders
from fastcb.checkpoint import CheckpointCallback

def tiny_learner(batches, cbs):
    torch.manual_seed(0)
    learn = Learner(DataLoaders(batches), nn.Linear(2, 2), nn.CrossEntropyLoss(), opt_func=torch.optim.SGD, lr=0.1,
                    default_cbs=False, cbs=[TrainEvalCallback()] + cbs, path=tempfile.mkdtemp())
    learn.logger = lambda row: None
    return learn

def step_overhead(reps, steps):
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(2, 2, generator=g), torch.randint(0, 2, (2,), generator=g)) for _ in range(steps)]
    kinds = {'none': lambda: [], 'every_epoch': lambda: [CheckpointCallback(every_epoch=2)],   # fit(1): never writes
             'every_n_steps': lambda: [CheckpointCallback(every_epoch=False, every_n_steps=10 * steps)]}
    handlers = {k: len(tiny_learner(batches, f())._tables[True]['after_batch']) for k, f in kinds.items()}
    times = {k: [] for k in kinds}
    for r in range(reps):
        for k in (list(kinds) if r % 2 == 0 else list(kinds)[::-1]):
            learn = tiny_learner(batches, kinds[k]())
            t0 = time.perf_counter(); learn.fit(1); times[k].append((time.perf_counter() - t0) / steps * 1e6)
    base = times['none']
    print(f"per-step time, median of {reps} (us): " + ', '.join(f"{k} {statistics.median(v):.2f}" for k, v in times.items()))
    for k in ('every_epoch', 'every_n_steps'):
        diffs = [a - b for a, b in zip(times[k], base)]
        print(f"  {k:<14} overhead {statistics.median(diffs):+.3f} us/step (paired median; IQR "
              f"{statistics.quantiles(diffs, n=4)[0]:+.3f} .. {statistics.quantiles(diffs, n=4)[2]:+.3f}); "
              f"per-batch handlers +{handlers[k] - handlers['none']}")

def big_learner(n_params, folder):
    width = int((n_params / 4) ** 0.5)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width),
                          nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    learn = Learner(DataLoaders([(x, y)]), model, nn.CrossEntropyLoss(), default_cbs=True, path=folder,
                    cbs=CheckpointCallback(keep=1))
    with learn.no_logging(), learn.no_bar(): learn.fit(1)
    return learn

def one_checkpoint(reps, n_params, folder):
    learn = big_learner(n_params, folder)
    cb = learn.checkpoint
    cb.learn = learn; cb.before_fit()
    n = sum(p.numel() for p in learn.model.parameters())
    bare = Path(folder) / 'bare.pth'
    def bare_save(): torch.save({'model': learn.model.state_dict(), 'opt': learn.opt.state_dict()}, bare)
    def bare_fsync():
        bare_save()
        with open(bare, 'rb+') as f: os.fsync(f.fileno())
    def checkpoint(): cb.write(1, 0)
    fns = {'torch.save': bare_save, 'torch.save+fsync': bare_fsync, 'checkpoint': checkpoint}
    times = {k: [] for k in fns}
    for r in range(reps):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            t0 = time.perf_counter(); fns[k](); times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    size = cb.last.stat().st_size / 2**20
    print(f"one checkpoint in {folder} ({n / 1e6:.1f}M parameters + Adam state, {size:.0f} MiB), median of {reps}: "
          + ', '.join(f"{k} {v * 1e3:.1f} ms" for k, v in med.items()))
    print(f"  ratio checkpoint / torch.save {med['checkpoint'] / med['torch.save']:.2f}x, "
          f"checkpoint / (torch.save+fsync) {med['checkpoint'] / med['torch.save+fsync']:.2f}x")

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--reps', type=int, default=11)
    ap.add_argument('--steps', type=int, default=3000)
    ap.add_argument('--params', type=int, default=5_000_000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    step_overhead(a.reps, a.steps)
    for where in ('.', '/dev/shm'):
        if not os.path.isdir(where): continue
        folder = tempfile.mkdtemp(dir=where, prefix='bench-checkpoint-')
        try: one_checkpoint(a.reps, a.params, folder)
        finally: shutil.rmtree(folder)
