"""Distributed training on the CPU: 2 gloo processes, fastcb (`distrib_ctx`, default callbacks) against plain DDP.

Both train the same MLP (64->256->256->10, batches of 64 per rank) over the same shards of the same (seed, epoch)
order, for one epoch of `--steps` steps per rank, DDP built inside the timed region for both (fastcb wraps the model
in each `fit`). Repetitions are interleaved with alternating order; the table gives medians (rank 0's clock, after a
barrier) and the median of paired differences. It also counts the collectives one epoch makes: the torch.distributed
calls from Python (fastcb's once-per-epoch reduction, DDP's setup broadcast) and DDP's gradient buckets (by a comm
hook, in a separate untimed run).

    python bench/distributed.py [--reps 9] [--steps 200] [--json results.json]

It starts itself under `python -m torch.distributed.run --nproc_per_node 2` on 127.0.0.1.
"""
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path
import torch
from torch import nn
import torch.distributed as dist

def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))

def loader(steps, ws):
    from fastcb.data import TensorLoader
    g = torch.Generator().manual_seed(0)
    n = steps * 64 * ws
    x, y = torch.randn(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)
    return TensorLoader(x, y, bs=64, shuffle=True, seed=1, pad=True)

def plain_ddp(dl):
    dl.shard(dist.get_rank(), dist.get_world_size())
    dist.barrier(); t0 = time.perf_counter()
    ddp = nn.parallel.DistributedDataParallel(model())
    opt, loss_func = torch.optim.Adam(ddp.parameters(), lr=1e-3), nn.CrossEntropyLoss()
    ddp.train()
    for x, y in dl:
        loss = loss_func(ddp(x), y)
        loss.backward(); opt.step(); opt.zero_grad()
    return time.perf_counter() - t0

def fastcb_fit(dl, cbs=None):
    from fastcb.learner import Learner
    from fastcb.data import DataLoaders
    import fastcb.distributed
    learn = Learner(DataLoaders(dl, None), model(), nn.CrossEntropyLoss(), lr=1e-3, device='cpu', cbs=cbs)
    with learn.no_logging(), learn.distrib_ctx():
        dist.barrier(); t0 = time.perf_counter()
        learn.fit(1)
        took = time.perf_counter() - t0
    return took, learn

def count_collectives(steps):
    "torch.distributed calls made from Python during one fastcb epoch (with validation), and DDP's gradient buckets."
    from fastcb.callback.core import Callback
    from fastcb.learner import Learner
    from fastcb.data import DataLoaders
    from fastcb.metrics import accuracy
    import fastcb.distributed
    names = ('all_reduce', 'all_gather', 'all_gather_object', 'broadcast', 'broadcast_object_list', 'barrier', 'reduce',
             'gather', 'scatter', 'all_to_all', 'reduce_scatter', 'all_gather_into_tensor', 'send', 'recv')
    counts, state = {}, {'on': False, 'hook': False, 'buckets': 0}
    for n in names:
        def wrapped(*a, _f=getattr(dist, n), _n=n, **k):
            if state['on'] and not state['hook']: counts[_n] = counts.get(_n, 0) + 1
            return _f(*a, **k)
        setattr(dist, n, wrapped)
    class Buckets(Callback):
        order = -8
        def before_fit(self):
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
            def hook(_, bucket):
                state['buckets'] += 1; state['hook'] = True
                try: return allreduce_hook(None, bucket)
                finally: state['hook'] = False
            self.learn.model.register_comm_hook(None, hook)
    learn = Learner(DataLoaders(loader(steps, dist.get_world_size()), loader(8, dist.get_world_size())), model(),
                    nn.CrossEntropyLoss(), metrics=accuracy, device='cpu', cbs=Buckets())
    with learn.no_logging(), learn.distrib_ctx():
        state['on'] = True
        learn.fit(1)
        state['on'] = False
        n_steps = len(learn.dls.train)   # this rank's shard
    return counts, state['buckets'], n_steps

def worker(reps, steps, out):
    dist.init_process_group('gloo')
    torch.set_num_threads(1)
    ws = dist.get_world_size()
    cs = {'plain DDP': lambda: plain_ddp(loader(steps, ws)), 'fastcb distrib_ctx': lambda: fastcb_fit(loader(steps, ws))[0]}
    for f in cs.values(): f()   # warm-up
    times = {k: [] for k in cs}
    for rep in range(reps):
        items = list(cs.items())
        for k, f in (items if rep % 2 == 0 else items[::-1]): times[k].append(f() / steps * 1e3)
    counts, buckets, n_steps = count_collectives(steps)
    if dist.get_rank() == 0:
        base = statistics.median(times['plain DDP'])
        rows = []
        print(f"2 ranks, gloo, {steps} steps per rank per epoch, {reps} interleaved repetitions\n")
        print("| loop | ms/step median | min–max | vs plain DDP (median of paired differences) |")
        print("|---|---|---|---|")
        for k, ts in times.items():
            paired = statistics.median(t - b for t, b in zip(ts, times['plain DDP']))
            rows.append({'loop': k, 'ms_per_step': statistics.median(ts), 'min': min(ts), 'max': max(ts), 'paired_ms': paired})
            print(f"| {k} | {statistics.median(ts):.3f} | {min(ts):.3f}–{max(ts):.3f} | {paired:+.3f} ms ({paired / base:+.1%}) |")
        print(f"\nOne fastcb epoch ({n_steps} training steps + validation, default callbacks + accuracy): "
              f"torch.distributed calls from Python {counts or 'none'}; DDP gradient buckets {buckets} "
              f"({buckets / n_steps:g} per step)")
        if out: Path(out).write_text(json.dumps({'steps': steps, 'reps': reps, 'rows': rows, 'python_collectives_per_epoch': counts,
                                                 'ddp_buckets_per_epoch': buckets, 'train_steps': n_steps}, indent=1))
    dist.destroy_process_group()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--reps', type=int, default=9); ap.add_argument('--steps', type=int, default=200)
    ap.add_argument('--json', default=None); ap.add_argument('--worker', action='store_true')
    a = ap.parse_args()
    if a.worker: return worker(a.reps, a.steps, a.json)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fastcb.distributed import free_port
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
           '--master_port', str(free_port()), __file__, '--worker', '--reps', str(a.reps), '--steps', str(a.steps)]
    if a.json: cmd += ['--json', str(Path(a.json).resolve())]
    sys.exit(subprocess.run(cmd, env=env, timeout=1800).returncode)

if __name__ == '__main__': main()
