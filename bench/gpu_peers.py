"""fastcb, fastai, Lightning and the hand-written PyTorch loop side by side on one GPU, in one process.

Configurations, data already on the GPU (a list of batches, the same for every contender), Adam at lr 1e-3:
  MLP       64->64->10, batch 256, 2000 training + 200 validation steps, float32
  ResNet-18 torchvision resnet18(num_classes=10) on synthetic 3x32x32 images stored channels-last, batch 512,
            200 training + 20 validation steps, bf16 autocast, model in channels-last (each library's own way:
            fastcb MixedPrecision + ChannelsLast, fastai to_channelslast(amp_mode='bf16'), Lightning precision='bf16-mixed')
Contenders, bare and default, as in bench/cpu.py (default: the training loss and validation loss/accuracy tracked;
Lightning's default Trainer keeps its CSV logger, checkpoint and sanity check, progress bar and summary off).

Measured: wall time of each fit with the GPU synchronised before and after, repetitions interleaved (order alternating)
after a warm-up; throughput (training items per second of the whole fit, validation included) as the median of the
ratios to the hand-written bare loop of the same repetition, with their min-max; host-device synchronisations in one
whole fit, counted with torch.cuda.set_sync_debug_mode (tests/sync_count.py), with the sites they come from.

    python bench/gpu_peers.py [--reps 3] [--json bench/results/gpu_peers.json] [--quick]
"""
import argparse, contextlib, gc, importlib.util, json, logging, statistics, sys, tempfile, time, warnings
from datetime import date
from functools import partial
from pathlib import Path
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / 'tests')]
import fastcb
from fastcb.all import Learner, DataLoaders, TrainEvalCallback, accuracy, MixedPrecision, ChannelsLast
from sync_count import syncs_during

DEV = 'cuda'   # --smoke-cpu sets 'cpu': a tiny run of every code path on a machine without a GPU

def sync():
    if DEV == 'cuda': torch.cuda.synchronize()

def autocast(bf16):
    return torch.autocast(DEV, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

class Batches:
    "The list of batches as an iterable that is not a list (Lightning reads a list as several loaders)."
    def __init__(self, b): self.b = b
    def __iter__(self): return iter(self.b)
    def __len__(self): return len(self.b)

def batches(steps, bs, shape, seed, channels_last=False):
    g = torch.Generator(device=DEV).manual_seed(seed)
    x = torch.randn(steps * bs, *shape, device=DEV, generator=g)
    if channels_last: x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (steps * bs,), device=DEV, generator=g)
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]

def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).to(DEV)

def resnet():
    import torchvision
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).to(DEV)

CONFIGS = {
    'MLP 64-64-10, batch 256, fp32': dict(model=mlp, bs=256, shape=(64,), steps=(2000, 200), bf16=False),
    'ResNet-18 3x32x32, batch 512, bf16, channels-last': dict(model=resnet, bs=512, shape=(3, 32, 32), steps=(200, 20), bf16=True),
}

def _hand(cfg, train, valid, metrics):
    model, loss_func = cfg['model'](), nn.CrossEntropyLoss()
    if cfg['bf16']: model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sync(); t0 = time.perf_counter()
    model.train()
    train_total = 0.
    for xb, yb in train:
        with autocast(cfg['bf16']): loss = loss_func(model(xb), yb)
        loss.backward(); opt.step(); opt.zero_grad()
        if metrics: train_total += loss.detach()
    model.eval()
    total, correct, n = 0., 0., 0
    with torch.no_grad():
        for xb, yb in valid:
            with autocast(cfg['bf16']): pred = model(xb); total += loss_func(pred, yb) * len(yb)
            if metrics: correct += (pred.argmax(-1) == yb).float().sum()
            n += len(yb)
    (total / n).item()
    if metrics: (train_total / len(train)).item(), (correct / n).item()
    sync()
    return time.perf_counter() - t0, model

def hand_bare(cfg, train, valid): return _hand(cfg, train, valid, False)
def hand_default(cfg, train, valid): return _hand(cfg, train, valid, True)

def _fastcb(cfg, train, valid, default):
    cbs = [MixedPrecision('bf16'), ChannelsLast()] if cfg['bf16'] else []
    kw = dict(metrics=accuracy) if default else dict(default_cbs=False)
    if not default: cbs.append(TrainEvalCallback())
    learn = Learner(DataLoaders(train, valid, device=DEV), cfg['model'](), nn.CrossEntropyLoss(), lr=1e-3, cbs=cbs, **kw)
    sync(); t0 = time.perf_counter()
    with learn.no_logging(): learn.fit(1)
    sync()
    return time.perf_counter() - t0, learn.model

def fastcb_bare(cfg, train, valid): return _fastcb(cfg, train, valid, False)
def fastcb_default(cfg, train, valid): return _fastcb(cfg, train, valid, True)

def _fastai(cfg, train, valid, default):
    from fastai.learner import Learner as FLearner
    from fastai.callback.core import TrainEvalCallback as FTrainEval
    from fastai.data.core import DataLoaders as FDataLoaders
    from fastai.optimizer import OptimWrapper
    from fastai.metrics import accuracy as facc
    import fastai.callback.progress, fastai.callback.channelslast   # noqa: F401 (register the bar; patch to_channelslast)
    kw = dict(metrics=facc) if default else dict(default_cbs=False, cbs=FTrainEval())
    learn = FLearner(FDataLoaders(train, valid), cfg['model'](), nn.CrossEntropyLoss(), lr=1e-3,
                     opt_func=partial(OptimWrapper, opt=torch.optim.Adam), **kw)
    if cfg['bf16']: learn.to_channelslast(amp_mode='bf16')
    sync(); t0 = time.perf_counter()
    with learn.no_logging(), learn.no_bar(): learn.fit(1)
    sync()
    return time.perf_counter() - t0, learn.model

def fastai_bare(cfg, train, valid): return _fastai(cfg, train, valid, False)
def fastai_default(cfg, train, valid): return _fastai(cfg, train, valid, True)

def _lightning(cfg, train, valid, default):
    import lightning as L
    class Module(L.LightningModule):
        def __init__(self):
            super().__init__(); self.model, self.loss_func = cfg['model'](), nn.CrossEntropyLoss()
            if cfg['bf16']: self.model = self.model.to(memory_format=torch.channels_last)
        def training_step(self, b, i):
            loss = self.loss_func(self.model(b[0]), b[1])
            if default: self.log('train_loss', loss)
            return loss
        def validation_step(self, b, i):
            pred = self.model(b[0]); loss = self.loss_func(pred, b[1])
            if default: self.log('valid_loss', loss); self.log('accuracy', (pred.argmax(-1) == b[1]).float().mean())
            return loss
        def configure_optimizers(self): return torch.optim.Adam(self.parameters(), lr=1e-3)
    m = Module()
    with tempfile.TemporaryDirectory() as root:
        off = {} if default else dict(logger=False, enable_checkpointing=False, num_sanity_val_steps=0)
        trainer = L.Trainer(max_epochs=1, accelerator='gpu' if DEV == 'cuda' else 'cpu', devices=1, precision='bf16-mixed' if cfg['bf16'] else '32-true',
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=root, **off)
        sync(); t0 = time.perf_counter()
        trainer.fit(m, Batches(train), Batches(valid))
        sync()
        return time.perf_counter() - t0, m.model

def lightning_bare(cfg, train, valid): return _lightning(cfg, train, valid, False)
def lightning_default(cfg, train, valid): return _lightning(cfg, train, valid, True)

def contenders():
    c = {'hand-written bare': hand_bare, 'hand-written default': hand_default,
         'fastcb bare': fastcb_bare, 'fastcb default': fastcb_default}
    if importlib.util.find_spec('fastai'): c.update({'fastai bare': fastai_bare, 'fastai default': fastai_default})
    if importlib.util.find_spec('lightning'): c.update({'Lightning bare': lightning_bare, 'Lightning default': lightning_default})
    return c

def valid_loss(model, valid, bf16):
    model.to(DEV).eval()   # Lightning's teardown moves the model back to the CPU
    with torch.no_grad(), autocast(bf16):
        return statistics.fmean(nn.CrossEntropyLoss()(model(x), y).item() for x, y in valid)

def bench(name, cfg, reps, quick):
    s = 100 if DEV == 'cpu' else 10 if quick else 1
    train = batches(max(2, cfg['steps'][0] // s), cfg['bs'], cfg['shape'], 0, cfg['bf16'])
    valid = batches(max(1, cfg['steps'][1] // s), cfg['bs'], cfg['shape'], 1, cfg['bf16'])
    cs = contenders()
    for f in cs.values(): f(cfg, train[:max(2, 20 // s)], valid[:2])   # warm-up: kernels, cuBLAS/cuDNN handles, lazy imports
    times, losses = {k: [] for k in cs}, {}
    items = list(cs.items())
    for rep in range(reps):
        for k, f in (items if rep % 2 == 0 else items[::-1]):
            gc.collect()
            dt, model = f(cfg, train, valid)
            times[k].append(dt); losses[k] = valid_loss(model, valid, cfg['bf16'])
            del model
    sync = {}
    for k, f in cs.items():
        if DEV != 'cuda': sync[k] = (None, {}); continue
        n, sites, _ = syncs_during(lambda: f(cfg, train, valid))
        per_site = {}
        for site in sites: per_site[site] = per_site.get(site, 0) + 1
        sync[k] = (n, per_site)
    raw = times['hand-written bare']
    rows = []
    for k, ts in times.items():
        ratios = [r / t for t, r in zip(ts, raw)]   # throughput relative to the hand-written bare loop of the same repetition
        med = statistics.median(ts)
        rows.append({'config': name, 'loop': k, 'us_per_step': med / len(train) * 1e6,
                     'items_per_s': len(train) * cfg['bs'] / med,
                     'throughput_vs_raw': statistics.median(ratios), 'throughput_min': min(ratios), 'throughput_max': max(ratios),
                     'syncs_per_fit': sync[k][0], 'sync_sites': sync[k][1], 'valid_loss': losses[k],
                     'train_steps': len(train), 'valid_steps': len(valid)})
    return rows

def versions():
    v = {'torch': torch.__version__, 'fastcb': fastcb.__version__}
    for name, mod in (('fastai', 'fastai'), ('Lightning', 'lightning')):
        if importlib.util.find_spec(mod): v[name] = __import__(mod).__version__
    return v

def main(reps=3, quick=False):
    if importlib.util.find_spec('lightning'): import lightning   # noqa: F401 (it sets its loggers' levels on import)
    for n in ('lightning', 'lightning.pytorch', 'lightning.fabric', 'pytorch_lightning'): logging.getLogger(n).setLevel(logging.ERROR)
    warnings.filterwarnings('ignore', message='^(?!.*synchroniz)')   # keep the sync-debug warnings, drop the peers' advice
    rows = []
    for name, cfg in CONFIGS.items():
        rows += bench(name, cfg, reps, quick)
        print(f"  {name}: done", file=sys.stderr)
    return {'date': str(date.today()), 'device': torch.cuda.get_device_name() if DEV == 'cuda' else 'CPU (smoke run)', 'versions': versions(),
            'reps': reps, 'quick': quick, 'rows': rows}

def print_table(res):
    print(f"\n{res['device']}; " + ', '.join(f'{k} {v}' for k, v in res['versions'].items()) + f"; {res['reps']} interleaved repetitions\n")
    print("| config | loop | µs/step | items/s | throughput × hand-written bare (median, min–max) | host syncs per fit | valid loss |")
    print("|---|---|---|---|---|---|---|")
    for r in res['rows']:
        print(f"| {r['config']} | {r['loop']} | {r['us_per_step']:.0f} | {r['items_per_s']:,.0f} | {r['throughput_vs_raw']:.2f} "
              f"({r['throughput_min']:.2f}–{r['throughput_max']:.2f}) | {r['syncs_per_fit']} | {r['valid_loss']:.4f} |")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=3); p.add_argument('--json'); p.add_argument('--quick', action='store_true')
    p.add_argument('--smoke-cpu', action='store_true', help='run every contender on the CPU, a few steps: checks the code, measures nothing')
    a = p.parse_args()
    if a.smoke_cpu: DEV = 'cpu'; torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print("bench/gpu_peers.py needs a CUDA GPU: skipped"); sys.exit(0)
    res = main(a.reps, a.quick)
    print_table(res)
    if a.json: Path(a.json).write_text(json.dumps(res, indent=1))
