"""fastcb, fastai, Lightning and the hand-written PyTorch loop side by side on the CPU, in one process.

The configuration (one thread): an MLP 64->64->10, batches of 64, 2000 training + 200 validation batches of random
data, a torch DataLoader over a TensorDataset (shuffled with a generator seeded 0, so every contender sees the same
batches in the same order), torch.optim.Adam at lr 1e-3, one epoch of training then validation.

Contenders, each in a bare and a default variant:
  hand-written   bare: the plain loop; default: the same, also tracking the training loss and validation loss/accuracy
  fastcb         bare: Learner with TrainEvalCallback only; default: default callbacks + accuracy
                 (and default with DataLoaders.from_tensors, fastcb's in-memory loader, as an extra row: it shuffles
                 with its own generator, so its batches come in another order and its validation loss differs a little)
  fastai 2.8.12  bare: Learner(default_cbs=False) with TrainEvalCallback; default: default callbacks + accuracy
                 (torch Adam through OptimWrapper, so that the optimizer is the same)
  Lightning 2.6.6  bare: logger, checkpointing, progress bar, summary and sanity check off, nothing logged;
                 default: the Trainer's defaults (CSV logger, checkpoint, sanity check), the training loss, validation
                 loss and accuracy logged with self.log; only the progress bar and model summary are off (they print)
Every contender's model is evaluated afterwards by the same function: equal validation losses show they did the same work.

Two measures per contender:
  timed    CPU time of the process per training step (one thread; unlike wall time it does not count the moments the
           machine's other tenants run instead of us). Repetitions interleaved, the order alternating (A B C ... C B A),
           after a warm-up; each run's time is divided by the hand-written bare loop's time in the same repetition,
           and the table gives the median and min-max of those ratios.
  counted  Python function calls per training step, from sys.setprofile: 'call' events (Python functions, generator
           resumptions included) and 'c_call' events (built-in functions called from Python) counted separately;
           marginal: (calls in a fit of 2N training batches - calls in a fit of N) / N, so construction, validation
           and per-fit work cancel out. It does not depend on the machine's load.

    python bench/cpu.py [--reps 5] [--json bench/results/cpu.json] [--calls-json bench/results/calls.json]
"""
import argparse, collections, gc, importlib.util, json, logging, os, platform, statistics, sys, tempfile, time, warnings
from datetime import date
from functools import partial
from pathlib import Path
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fastcb
from fastcb.learner import Learner, TrainEvalCallback
from fastcb.data import DataLoaders
from fastcb.metrics import accuracy

CFG = dict(sizes=(64, 64, 10), bs=64, n_train=2000, n_valid=200, lr=1e-3)
COUNT_N = 200   # marginal calls: fits of COUNT_N and 2 * COUNT_N training batches (a multiple of Lightning's log interval, 50)

def make_data(n_batches, seed):
    g = torch.Generator().manual_seed(seed)
    n_in, n_out, bs = CFG['sizes'][0], CFG['sizes'][-1], CFG['bs']
    return torch.randn(n_batches * bs, n_in, generator=g), torch.randint(0, n_out, (n_batches * bs,), generator=g)

def make_model():
    torch.manual_seed(0)
    s, layers = CFG['sizes'], []
    for a, b in zip(s[:-1], s[1:]): layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])

def torch_loaders(train, valid):
    g = torch.Generator().manual_seed(0)
    return (DataLoader(TensorDataset(*train), batch_size=CFG['bs'], shuffle=True, generator=g),
            DataLoader(TensorDataset(*valid), batch_size=CFG['bs']))

def valid_loss(model, valid):
    "The same evaluation for every contender's trained model, outside the timed region."
    model.eval()
    with torch.no_grad(): return nn.CrossEntropyLoss()(model(valid[0]), valid[1]).item()

class Clock:
    "CPU and wall time of the region between `start()` and `stop()`."
    def start(self): self.t0, self.c0 = time.perf_counter(), time.process_time()
    def stop(self): self.wall, self.cpu = time.perf_counter() - self.t0, time.process_time() - self.c0

# Each contender: f(train, valid, clock) -> trained model; only the fit itself is on the clock.
def _hand(train, valid, clock, metrics):
    model, loss_func = make_model(), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=CFG['lr'])
    train_dl, valid_dl = torch_loaders(train, valid)
    clock.start()
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
    (total / n).item()
    if metrics: (train_total / n_train).item(), (correct / n).item()
    clock.stop()
    return model

def hand_bare(train, valid, clock): return _hand(train, valid, clock, metrics=False)
def hand_default(train, valid, clock): return _hand(train, valid, clock, metrics=True)

def _fastcb(dls, clock, **kw):
    learn = Learner(dls, make_model(), nn.CrossEntropyLoss(), lr=CFG['lr'], opt_func=torch.optim.Adam, **kw)
    clock.start()
    with learn.no_logging(): learn.fit(1)
    clock.stop()
    return learn.model

def fastcb_bare(train, valid, clock):
    return _fastcb(DataLoaders(*torch_loaders(train, valid)), clock, default_cbs=False, cbs=TrainEvalCallback())
def fastcb_default(train, valid, clock):
    return _fastcb(DataLoaders(*torch_loaders(train, valid)), clock, metrics=accuracy)
def fastcb_fast_loader(train, valid, clock):
    return _fastcb(DataLoaders.from_tensors(*train, *valid, bs=CFG['bs'], seed=0), clock, metrics=accuracy)

def _fastai(train, valid, clock, default):
    from fastai.learner import Learner as FLearner
    from fastai.callback.core import TrainEvalCallback as FTrainEval
    from fastai.data.core import DataLoaders as FDataLoaders
    from fastai.optimizer import OptimWrapper
    from fastai.metrics import accuracy as facc
    import fastai.callback.progress   # adds ProgressCallback to the default callbacks, as fastai's `all` modules do
    kw = dict(metrics=facc) if default else dict(default_cbs=False, cbs=FTrainEval())
    learn = FLearner(FDataLoaders(*torch_loaders(train, valid)), make_model(), nn.CrossEntropyLoss(), lr=CFG['lr'],
                     opt_func=partial(OptimWrapper, opt=torch.optim.Adam), **kw)
    clock.start()
    with learn.no_logging(), learn.no_bar(): learn.fit(1)   # no_bar: the progress bar is off for this fit
    clock.stop()
    return learn.model

def fastai_bare(train, valid, clock): return _fastai(train, valid, clock, default=False)
def fastai_default(train, valid, clock): return _fastai(train, valid, clock, default=True)

def _lightning(train, valid, clock, default):
    import lightning as L
    class Module(L.LightningModule):
        def __init__(self): super().__init__(); self.model, self.loss_func = make_model(), nn.CrossEntropyLoss()
        def training_step(self, b, i):
            loss = self.loss_func(self.model(b[0]), b[1])
            if default: self.log('train_loss', loss)
            return loss
        def validation_step(self, b, i):
            pred = self.model(b[0]); loss = self.loss_func(pred, b[1])
            if default: self.log('valid_loss', loss); self.log('accuracy', (pred.argmax(-1) == b[1]).float().mean())
            return loss
        def configure_optimizers(self): return torch.optim.Adam(self.parameters(), lr=CFG['lr'])
    m = Module()
    with tempfile.TemporaryDirectory() as root:
        off = {} if default else dict(logger=False, enable_checkpointing=False, num_sanity_val_steps=0)
        trainer = L.Trainer(max_epochs=1, accelerator='cpu', devices=1, enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=root, **off)
        clock.start()
        trainer.fit(m, *torch_loaders(train, valid))
        clock.stop()
    return m.model

def lightning_bare(train, valid, clock): return _lightning(train, valid, clock, default=False)
def lightning_default(train, valid, clock): return _lightning(train, valid, clock, default=True)

def contenders():
    "name -> (library, variant, function); peers that are not installed are left out."
    c = {'hand-written bare': ('hand-written', 'bare', hand_bare), 'hand-written default': ('hand-written', 'default', hand_default),
         'fastcb bare': ('fastcb', 'bare', fastcb_bare), 'fastcb default': ('fastcb', 'default', fastcb_default),
         'fastcb default, fast loader': ('fastcb', 'default, fast loader', fastcb_fast_loader)}
    if importlib.util.find_spec('fastai'):
        c['fastai bare'] = ('fastai', 'bare', fastai_bare); c['fastai default'] = ('fastai', 'default', fastai_default)
    if importlib.util.find_spec('lightning'):
        c['Lightning bare'] = ('Lightning', 'bare', lightning_bare); c['Lightning default'] = ('Lightning', 'default', lightning_default)
    return c

def versions():
    v = {'python': platform.python_version(), 'torch': torch.__version__, 'fastcb': fastcb.__version__}
    for name, mod in (('fastai', 'fastai'), ('Lightning', 'lightning')):
        if importlib.util.find_spec(mod): v[name] = __import__(mod).__version__
    return v

def quiet():
    "Lightning's info lines and the peers' warnings (few loader workers, ...) are not what this benchmark is about."
    if importlib.util.find_spec('lightning'): import lightning   # it sets its loggers' levels when imported
    for name in ('lightning', 'lightning.pytorch', 'lightning.fabric', 'pytorch_lightning'):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings('ignore')

# ---- counted: Python calls per training step
def _where(code):
    "'module-ish path:qualname' of a code object, short enough to read."
    f = code.co_filename
    for marker in ('site-packages/', 'lib/python3', '/fastcb/'):
        if marker in f: f = f.split(marker, 1)[1]; break
    if '/fastcb/' in code.co_filename: f = 'fastcb/' + f
    return f"{f}:{getattr(code, 'co_qualname', code.co_name)}"

def count_calls(f, train, valid):
    "Counts of 'call' and 'c_call' events during f(...), in total and per function (Python) / per built-in (C)."
    per_py, per_c = collections.Counter(), collections.Counter()
    def prof(frame, event, arg):
        if event == 'call': per_py[frame.f_code] += 1
        elif event == 'c_call': per_c[(frame.f_code, getattr(arg, '__qualname__', repr(arg)))] += 1
    clock = Clock()
    gc.collect(); gc.disable()   # no finalizers run by a collection that happens to fall inside the counted fit
    sys.setprofile(prof)
    try: f(train, valid, clock)
    finally: sys.setprofile(None); gc.enable()
    return per_py, per_c

def marginal_calls(f, small_train, big_train, valid):
    "Per training step: (counts with 2N training batches - counts with N) / N, in total and per function."
    n = len(small_train[0]) // CFG['bs']
    (py1, c1), (py2, c2) = count_calls(f, small_train, valid), count_calls(f, big_train, valid)
    py = {_where(k): (py2[k] - py1.get(k, 0)) / n for k in py2.keys() | py1.keys()}
    cc = collections.Counter()
    for (code, callee), v in c2.items(): cc[(_where(code), callee)] += v / n
    for (code, callee), v in c1.items(): cc[(_where(code), callee)] -= v / n
    r3 = lambda v: round(v, 3)   # float noise of the subtraction and division
    return {'call': r3(sum(py.values())), 'c_call': r3(sum(cc.values())),
            'call_by_function': {k: r3(v) for k, v in py.items() if r3(v)},
            'c_call_by_caller': {f"{k[0]} -> {k[1]}": r3(v) for k, v in cc.items() if r3(v)}}

def _merge(a, b):
    "Per-function difference a - b of two `call_by_function` dicts, nonzero entries, largest first."
    d = {k: a.get(k, 0) - b.get(k, 0) for k in a.keys() | b.keys()}
    return dict(sorted(((k, v) for k, v in d.items() if abs(v) > 1e-9), key=lambda kv: (-abs(kv[1]), kv[0])))

def counted(cs):
    small, big, valid = make_data(COUNT_N, 1), make_data(2 * COUNT_N, 1), make_data(10, 2)
    for _, _, f in cs.values(): f(make_data(20, 1), valid, Clock())   # warm-up: lazy imports, first-call caches
    res = {name: marginal_calls(f, small, big, valid) for name, (_, _, f) in cs.items()}
    res_again = marginal_calls(cs['hand-written bare'][2], small, big, valid)   # deterministic: the same count again
    assert res_again['call'] == res['hand-written bare']['call'], (res_again['call'], res['hand-written bare']['call'])
    raw = res['hand-written bare']
    for name, r in res.items():
        r['call_over_raw'], r['c_call_over_raw'] = r['call'] - raw['call'], r['c_call'] - raw['c_call']
        r['call_diff_vs_raw'] = _merge(r['call_by_function'], raw['call_by_function'])
        r['c_call_diff_vs_raw'] = _merge(r['c_call_by_caller'], raw['c_call_by_caller'])
    return res

def fastcb_breakdown(res):
    "fastcb's own functions called per training step (and the built-ins they call), by variant, largest first."
    out = {}
    for name, r in res.items():
        if not name.startswith('fastcb'): continue
        own = {k: v for k, v in r['call_by_function'].items() if k.startswith('fastcb/')}
        own_c = {k: v for k, v in r['c_call_by_caller'].items() if k.startswith('fastcb/')}
        out[name] = {'fastcb_calls_per_step': sum(own.values()), 'fastcb_functions': dict(sorted(own.items(), key=lambda kv: -kv[1])),
                     'c_calls_from_fastcb_per_step': sum(own_c.values()),
                     'c_calls_from_fastcb': dict(sorted(own_c.items(), key=lambda kv: -kv[1])),
                     'calls_over_raw': r['call_over_raw'],
                     'calls_per_step_vs_raw_by_function': r['call_diff_vs_raw']}
    return out

# ---- timed
def timed(cs, reps):
    train, valid = make_data(CFG['n_train'], 0), make_data(CFG['n_valid'], 3)
    for _, _, f in cs.values(): f(make_data(20, 1), make_data(2, 2), Clock())   # warm-up
    cpu_t, wall_t, losses = {k: [] for k in cs}, {k: [] for k in cs}, {}
    items = list(cs.items())
    for rep in range(reps):
        for name, (_, _, f) in (items if rep % 2 == 0 else items[::-1]):   # no contender always goes first
            gc.collect()   # the previous contender's garbage is not collected on this one's clock
            clock = Clock()
            model = f(train, valid, clock)
            cpu_t[name].append(clock.cpu / CFG['n_train'] * 1e6); wall_t[name].append(clock.wall / CFG['n_train'] * 1e6)
            losses[name] = valid_loss(model, valid)
        print(f"  repetition {rep + 1}/{reps} done", file=sys.stderr)
    raw = cpu_t['hand-written bare']
    rows = []
    for name, (lib, variant, _) in cs.items():
        ratios = [t / r for t, r in zip(cpu_t[name], raw)]
        rows.append({'loop': name, 'library': lib, 'variant': variant,
                     'us_per_step': statistics.median(cpu_t[name]), 'min_us': min(cpu_t[name]), 'max_us': max(cpu_t[name]),
                     'wall_us_per_step': statistics.median(wall_t[name]),
                     'ratio': statistics.median(ratios), 'ratio_min': min(ratios), 'ratio_max': max(ratios),
                     'ratios': ratios, 'valid_loss': losses[name]})
    return rows

PAIRS = [('hand-written default', 'hand-written bare'), ('fastcb bare', 'hand-written bare'), ('fastcb default', 'hand-written bare'),
         ('fastcb default', 'hand-written default'), ('fastcb default', 'fastcb bare'),
         ('fastcb default, fast loader', 'hand-written bare'), ('fastai bare', 'fastcb bare'), ('fastai default', 'fastcb default'),
         ('Lightning bare', 'fastcb bare'), ('Lightning default', 'fastcb default'), ('fastai default', 'fastai bare'),
         ('Lightning default', 'Lightning bare'), ('Lightning default', 'fastai default'), ('Lightning bare', 'fastai bare')]

def noise_notes(rows):
    """For pairs of contenders, whether the difference stands out of the noise: paired by repetition (the two ran side by
    side), it does when every repetition has the same one faster; otherwise the repetitions disagree and it does not."""
    by, notes = {r['loop']: r for r in rows}, []
    for a, b in PAIRS:
        if a not in by or b not in by: continue
        q = [x / y for x, y in zip(by[a]['ratios'], by[b]['ratios'])]   # time of a / time of b, repetition by repetition
        slower, med = sum(x > 1 for x in q), statistics.median(q)
        verdict = ('outside the noise' if slower in (0, len(q)) else 'inside the noise')
        notes.append({'a': a, 'b': b, 'median': med, 'min': min(q), 'max': max(q), 'a_slower_in': slower, 'reps': len(q),
                      'inside_noise': verdict == 'inside the noise',
                      'text': f"{a} / {b}: {med:.2f} ({min(q):.2f}–{max(q):.2f}), slower in {slower} of {len(q)} repetitions: {verdict}"})
    return notes

def machine():
    return {'cpu': platform.processor() or platform.machine(), 'cores': os.cpu_count(), 'threads_used': torch.get_num_threads()}

def main(reps=5, json_path=None, calls_path=None):
    torch.set_num_threads(1)
    quiet()
    cs = contenders()
    missing = [p for p in ('fastai', 'Lightning') if not any(v[0] == p for v in cs.values())]
    if missing: print(f"(not installed, left out: {', '.join(missing)}; `make bench` installs them into bench/.venv)")
    calls = counted(cs)
    rows = timed(cs, reps)
    # the fast loader shuffles with its own generator: other batches, so another (equally good) loss
    losses = [r['valid_loss'] for r in rows if 'fast loader' not in r['loop']]
    same_loss = max(losses) - min(losses) < 1e-4
    for r in rows: r.update(calls_per_step=calls[r['loop']]['call'], calls_over_raw=calls[r['loop']]['call_over_raw'],
                            c_calls_per_step=calls[r['loop']]['c_call'], c_calls_over_raw=calls[r['loop']]['c_call_over_raw'])
    res = {'date': str(date.today()), 'machine': machine(), 'versions': versions(), 'config': CFG, 'reps': reps,
           'count_batches': [COUNT_N, 2 * COUNT_N], 'rows': rows, 'same_valid_loss': same_loss, 'noise': noise_notes(rows)}
    print_table(res)
    if json_path: Path(json_path).write_text(json.dumps(res, indent=1))
    if calls_path:
        full = {'date': res['date'], 'versions': res['versions'], 'count_batches': res['count_batches'],
                'fastcb_breakdown': fastcb_breakdown(calls),
                'peers_top_functions_vs_raw': {k: dict(list(v['call_diff_vs_raw'].items())[:25]) for k, v in calls.items()
                                               if not k.startswith(('fastcb', 'hand-written bare'))}}
        Path(calls_path).write_text(json.dumps(full, indent=1))
    return res

def print_table(res):
    v = res['versions']
    print(f"\n{res['machine']['cpu']}, 1 thread; " + ', '.join(f'{k} {x}' for k, x in v.items()) + f"; {res['reps']} interleaved repetitions\n")
    print("| loop | CPU µs/step (median) | × hand-written bare (median) | min–max | Python calls/step | over raw | C calls/step | over raw | valid loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in res['rows']:
        print(f"| {r['loop']} | {r['us_per_step']:.0f} | {r['ratio']:.2f} | {r['ratio_min']:.2f}–{r['ratio_max']:.2f} | "
              f"{r['calls_per_step']:.0f} | {r['calls_over_raw']:+.0f} | {r['c_calls_per_step']:.0f} | {r['c_calls_over_raw']:+.0f} | {r['valid_loss']:.5f} |")
    print(f"\nsame validation loss: {res['same_valid_loss']}")
    for n in res['noise']: print('-', n['text'])

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=5)
    p.add_argument('--json', default=None); p.add_argument('--calls-json', default=None)
    a = p.parse_args()
    main(a.reps, a.json, a.calls_json)
