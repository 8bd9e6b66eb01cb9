"""CPU benchmark of fastcb's training loop against a hand-written PyTorch loop (DESIGN.md section 5).

Configurations (one thread):
  tiny   MLP 64->64->10,          batch 64,  2000 training + 200 validation batches
  small  MLP 256->512->512->10,   batch 128,  500 training +  50 validation batches
Contenders, each one full epoch of training and validation on the same data and model initialisation:
  hand-written            the plain loop with a torch DataLoader over a TensorDataset
  hand-written + metrics  the same, also tracking the training loss and validation loss/accuracy on the device
  fastcb bare             Learner with TrainEvalCallback only, torch DataLoader
  fastcb default          default callbacks (Recorder, progress in non-interactive mode) + accuracy, torch DataLoader
  fastcb default, fast loader   the same with DataLoaders.from_tensors (batches gathered by index)
  fastai / Lightning      default learner/trainer, if installed (skipped otherwise)
Repetitions are interleaved, the order alternating (A B C ... C B A ...), after a warm-up; medians, min-max and paired overheads of
the process's CPU time per training step (one thread, so CPU time is the time the loop really took; wall time is also shown).

    python bench/cpu.py [--reps 7] [--configs tiny small] [--json bench/results/cpu.json]
"""
import argparse, gc, importlib.util, json, os, platform, statistics, time
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fastcb.learner import Learner, TrainEvalCallback
from fastcb.data import DataLoaders
from fastcb.metrics import accuracy

CONFIGS = {'tiny': dict(sizes=(64, 64, 10), bs=64, n_train=2000, n_valid=200),
           'small': dict(sizes=(256, 512, 512, 10), bs=128, n_train=500, n_valid=50)}

def make_data(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    n_in, n_out, bs = cfg['sizes'][0], cfg['sizes'][-1], cfg['bs']
    mk = lambda n: (torch.randn(n * bs, n_in, generator=g), torch.randint(0, n_out, (n * bs,), generator=g))
    return mk(cfg['n_train']), mk(cfg['n_valid'])

def make_model(cfg):
    torch.manual_seed(0)
    s, layers = cfg['sizes'], []
    for a, b in zip(s[:-1], s[1:]): layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])

def torch_loaders(train, valid, bs):
    g = torch.Generator().manual_seed(0)
    return (DataLoader(TensorDataset(*train), batch_size=bs, shuffle=True, generator=g),
            DataLoader(TensorDataset(*valid), batch_size=bs))

def _hand(cfg, train, valid, metrics):
    model, loss_func = make_model(cfg), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_dl, valid_dl = torch_loaders(train, valid, cfg['bs'])
    t0, c0 = time.perf_counter(), time.process_time()
    model.train()
    train_total, n_train = 0., 0
    for xb, yb in train_dl:
        loss = loss_func(model(xb), yb)
        loss.backward(); opt.step(); opt.zero_grad()
        if metrics: train_total += loss.detach() * len(yb); n_train += len(yb)
    model.eval()
    total, correct, n = 0., 0., 0
    with torch.no_grad():
        for xb, yb in valid_dl:
            pred = model(xb)
            total += loss_func(pred, yb) * len(yb)
            if metrics: correct += (pred.argmax(-1) == yb).float().sum()
            n += len(yb)
    valid_loss = (total / n).item()
    if metrics: (train_total / n_train).item(), (correct / n).item()
    return time.perf_counter() - t0, time.process_time() - c0, valid_loss

def hand_written(cfg, train, valid): return _hand(cfg, train, valid, metrics=False)
def hand_written_metrics(cfg, train, valid): return _hand(cfg, train, valid, metrics=True)

def _fastcb(cfg, dls, **kw):
    learn = Learner(dls, make_model(cfg), nn.CrossEntropyLoss(), lr=1e-3, **kw)
    t0, c0 = time.perf_counter(), time.process_time()
    with learn.no_logging(): learn.fit(1)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return dt, dc, nn.CrossEntropyLoss()(*learn.get_preds(act=lambda x: x)).item()

def fastcb_bare(cfg, train, valid):
    return _fastcb(cfg, DataLoaders(*torch_loaders(train, valid, cfg['bs'])), default_cbs=False, cbs=TrainEvalCallback())

def fastcb_default(cfg, train, valid):
    return _fastcb(cfg, DataLoaders(*torch_loaders(train, valid, cfg['bs'])), metrics=accuracy)

def fastcb_fast_loader(cfg, train, valid):
    return _fastcb(cfg, DataLoaders.from_tensors(*train, *valid, bs=cfg['bs'], seed=0), metrics=accuracy)

def fastai_default(cfg, train, valid):
    from fastai.learner import Learner as FLearner
    from fastai.data.core import DataLoaders as FDataLoaders
    from fastai.metrics import accuracy as facc
    learn = FLearner(FDataLoaders(*torch_loaders(train, valid, cfg['bs'])), make_model(cfg), nn.CrossEntropyLoss(),
                     lr=1e-3, metrics=facc)
    t0, c0 = time.perf_counter(), time.process_time()
    with learn.no_logging(), learn.no_bar(): learn.fit(1)
    return time.perf_counter() - t0, time.process_time() - c0, float(learn.recorder.values[-1][1])

def lightning_default(cfg, train, valid):
    import lightning as L
    class Module(L.LightningModule):
        def __init__(self): super().__init__(); self.model, self.loss_func = make_model(cfg), nn.CrossEntropyLoss()
        def training_step(self, b, i): return self.loss_func(self.model(b[0]), b[1])
        def validation_step(self, b, i):
            pred = self.model(b[0])
            self.log('valid_loss', self.loss_func(pred, b[1])); self.log('accuracy', (pred.argmax(-1) == b[1]).float().mean())
        def configure_optimizers(self): return torch.optim.Adam(self.parameters(), lr=1e-3)
    m = Module()
    trainer = L.Trainer(max_epochs=1, accelerator='cpu', devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.fit(m, *torch_loaders(train, valid, cfg['bs']))
    return time.perf_counter() - t0, time.process_time() - c0, float(trainer.callback_metrics['valid_loss'])

def contenders():
    c = {'hand-written': (hand_written, None), 'hand-written + metrics': (hand_written_metrics, None),
         'fastcb bare': (fastcb_bare, 'hand-written'), 'fastcb default': (fastcb_default, 'hand-written + metrics'),
         'fastcb default, fast loader': (fastcb_fast_loader, 'hand-written + metrics')}
    if importlib.util.find_spec('fastai'): c['fastai default'] = (fastai_default, 'hand-written + metrics')
    if importlib.util.find_spec('lightning'): c['Lightning default'] = (lightning_default, 'hand-written + metrics')
    return c

def run_config(name, reps):
    cfg = CONFIGS[name]
    torch.set_num_threads(1)
    train, valid = make_data(cfg)
    small = make_data(dict(cfg, n_train=20, n_valid=2), seed=1)
    cs = contenders()
    for f, _ in cs.values(): f(cfg, *small)   # warm-up
    times, walls, losses = {k: [] for k in cs}, {k: [] for k in cs}, {}
    for rep in range(reps):
        items = list(cs.items())
        for k, (f, _) in (items if rep % 2 == 0 else items[::-1]):   # A B C, C B A, ...: no contender always goes first
            gc.collect()   # garbage of the previous contender (learners hold reference cycles) is not collected on our clock
            wall, cpu_time, vl = f(cfg, train, valid)
            # CPU time of this (single-threaded) process: unlike wall time, it does not count the moments the
            # machine's other tenants run instead of us, the main noise on a shared 2-core machine.
            times[k].append(cpu_time / cfg['n_train'] * 1e6); walls[k].append(wall / cfg['n_train'] * 1e6); losses[k] = vl
    hand = statistics.median(times['hand-written'])
    rows = []
    for k, ts in times.items():
        base = cs[k][1]
        rows.append({'config': name, 'loop': k, 'us_per_step': statistics.median(ts), 'min': min(ts), 'max': max(ts),
                     'ratio_to_hand_written': statistics.median(ts) / hand, 'wall_us_per_step': statistics.median(walls[k]),
                     'compared_with': base,
                     'paired_overhead_us': statistics.median(t - b for t, b in zip(ts, times[base])) if base else None,
                     'valid_loss': losses[k]})
    return rows

def print_table(rows):
    print("| config | loop | CPU µs/step median | min–max | wall µs/step median | ratio to hand-written | overhead µs/step (paired, vs) | valid loss |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ov = f"{r['paired_overhead_us']:+.1f} vs {r['compared_with']}" if r['compared_with'] else '—'
        print(f"| {r['config']} | {r['loop']} | {r['us_per_step']:.1f} | {r['min']:.1f}–{r['max']:.1f} | {r['wall_us_per_step']:.1f} | "
              f"{r['ratio_to_hand_written']:.3f} | {ov} | {r['valid_loss']:.4f} |")

def machine():
    return {'cpu': platform.processor() or platform.machine(), 'cores': os.cpu_count(), 'threads_used': 1,
            'python': platform.python_version(), 'torch': torch.__version__}

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=7)
    p.add_argument('--configs', nargs='+', default=['tiny', 'small'], choices=list(CONFIGS))
    p.add_argument('--json', default=None)
    a = p.parse_args()
    rows = [r for c in a.configs for r in run_config(c, a.reps)]
    print_table(rows)
    if a.json:
        with open(a.json, 'w') as f: json.dump({'machine': machine(), 'reps': a.reps, 'rows': rows}, f, indent=1)
