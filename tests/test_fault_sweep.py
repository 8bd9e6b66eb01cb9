"""Fault sweep of the features: for every event a fit fires (in training and in validation batches), a RuntimeError and a
KeyboardInterrupt raised there (before and after the feature's own handler of that event, where it has one) propagate
with their own type and a note naming where they were raised, and leave the process and the learner as they were: grad
mode, autocast, the random generators (the features draw nothing from them, except MixUp and CutMix, from torch's, and a
resume, which sets them), hooks, open files, threads, the model (unwrapped from DDP), the callbacks, the loss function,
the logger, the step; and the next plain `fit(1)` gives, bit for bit, the weights and losses of a fresh learner put in
the same state. Then the feature itself works again. A second sweep raises inside the features' own work (a checkpoint
half-written, a log file just opened, the model's graph being traced, a checkpoint being applied).

Features: CheckpointCallback (every epoch, every 2 steps), resuming from a mid-epoch checkpoint, CSVLogger,
TensorBoardCallback, the terminal progress bar, MixUp, CutMix, FetchPredsCallback (faults inside its evaluation), the
compiled step on the CPU (one compiled learner for its whole sweep: inductor, with bf16 autocast), and DDP with 2 gloo
processes (one torchrun launch of tests/fault_sweep.py for all its cases).
`after_cancel_*` events fire only when a stage is cancelled, and `after_create` outside fit: they are not swept here
(01_learner's cancel matrix covers them)."""
import csv, json, os, subprocess, sys, warnings
from pathlib import Path
import pytest
import torch
from torch._dynamo.utils import counters
from fastcb.all import *
import fastcb.learner, fastcb.state
from fastcb.callback.compile import CompiledStep
from fault_sweep import (EXCEPTIONS, ONE_RANK_EVENT, injector, tiny_learner, case_id, cases_for, event_cases, snapshot,
                         problems_after_fault, run_fit, next_fit_problems, same, weights)

ROOT = Path(__file__).resolve().parents[1]

def _quietly(f):
    "Run `f()` with warnings (the compiled step's eager fallback) silenced; return what it raised."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return run_fit(f)

# ---- Features -------------------------------------------------------------------------------------------------------
class Feature:
    "One feature of the sweep: its callback for the fit, the learner, and what it must leave after a fault."
    image, rng = False, True   # image inputs; which random generators must be unchanged by a failed fit (True: all)
    def __init__(self, path:Path): self.path = path
    def make(self): raise NotImplementedError
    def learner(self): return tiny_learner(self.path, image=self.image)
    def fit(self, learn, cbs): learn.fit(2, cbs=cbs)
    def check(self, learn, cb) -> list[str]:
        "What the feature itself left wrong after the fault."
        return []
    def again(self, learn) -> list[str]:
        "Use the feature again on the same learner: does it work?"
        cb = self.make()
        err = _quietly(lambda: learn.fit(1, cbs=cb))
        return [f'the next fit with {cb!r} failed: {type(err).__name__}: {err}'] if err is not None else self.check(learn, cb)

class CheckpointEpoch(Feature):
    def make(self): return CheckpointCallback(keep=2)
    def check(self, learn, cb):
        "No temporary or other stray file in the folder, and every checkpoint reads back (CRC-checked)."
        folder = self.path / 'models'
        if not folder.exists(): return []
        out, cks = [], checkpoints(folder)
        stray = sorted(p.name for p in folder.iterdir() if p not in cks)
        if stray: out.append(f'files other than complete checkpoints in the folder: {stray}')
        for p in cks:
            try: learn.read_checkpoint(p)
            except Exception as e: out.append(f'{p.name} does not read back: {e}')
        return out

class CheckpointSteps(CheckpointEpoch):
    def make(self): return CheckpointCallback(every_epoch=False, every_n_steps=2, keep=2)

class Resume(Feature):
    "fit(resume=...) from a checkpoint written in the middle of the first epoch."
    rng = False   # resuming puts every generator in the checkpoint's state, by design
    def __init__(self, path):
        super().__init__(path)
        self.learner().fit(2, cbs=CheckpointCallback(every_epoch=False, every_n_steps=4, keep=None))
        self.ck = next(p for p in checkpoints(path / 'models') if p.name.endswith('_epoch0_batch4.pth'))
        self.files = {p: p.read_bytes() for p in (path / 'models').iterdir()}
    def make(self): return None
    def fit(self, learn, cbs): learn.fit(2, cbs=cbs, resume=self.ck)
    def check(self, learn, cb):
        now = {p: p.read_bytes() for p in (self.path / 'models').iterdir()}
        return [] if now == self.files else ['the checkpoint folder changed']
    def again(self, learn):
        "Resuming again gives, bit for bit, what a fresh learner's resume gives."
        clean = self.learner()
        clean.fit(2, resume=self.ck)
        err = run_fit(lambda: learn.fit(2, resume=self.ck))
        if err is not None: return [f'resuming again failed: {type(err).__name__}: {err}']
        return [] if same(weights(learn), weights(clean)) else ["resuming again does not give a fresh learner's resume"]

class Csv(Feature):
    def make(self): return CSVLogger()
    def check(self, learn, cb):
        out = [] if cb.file is None else ['the CSV file is still open']
        p = self.path / 'history.csv'
        if p.exists():
            text = p.read_text()
            if text and (not text.endswith('\n') or len({len(r) for r in csv.reader(text.splitlines())}) > 1):
                out.append(f'a half-written row in the CSV log: {text!r}')
        return out

class TensorBoard(Feature):
    def make(self): return TensorBoardCallback(log_dir='tb', n_steps=1, histogram_freq=1, trace_model=True)
    def check(self, learn, cb): return [] if cb.writer is None else ['the SummaryWriter is still open']
    def again(self, learn):
        out = super().again(learn)
        return out + ([] if list((self.path / 'tb').glob('events.out.tfevents.*')) else ['no event file written'])

class Progress(Feature):
    "The terminal progress bar, which takes over `learn.logger` during the fit."
    def learner(self):
        learn = super().learner()
        self.rows = []
        learn.logger = self.rows.append   # not noop: the bar writes the table and must give the logger back
        return learn
    def make(self): return ProgressCallback('terminal')
    def check(self, learn, cb):
        left = {k: getattr(cb, k) for k in ('mbar', 'pbar', 'old_logger') if getattr(cb, k) is not None}
        return [f'the progress bar kept {left}'] if left else []

class Mix(Feature):
    rng = ('python', 'numpy')   # it draws its weights and shuffles from torch's generator, by design
    def make(self): return MixUp()
    def check(self, learn, cb): return [] if cb.old_lf is None else ['MixUp still holds the loss function']

class Cut(Mix):
    image = True
    def make(self): return CutMix()

class FetchPreds(Feature):
    "FetchPredsCallback runs get_preds after each validation, with a callback switched off meanwhile; faults inside that evaluation."
    def make(self):
        self.off = CSVLogger('off.csv')   # switched off during the inner evaluation, on again after it
        return [FetchPredsCallback(cbs=self.off), self.off]
    def check(self, learn, cb):
        return [] if self.off.run and cb[0]._fetching is False else ['FetchPredsCallback left a callback switched off']

FEATURES = {'checkpoint_epoch': CheckpointEpoch, 'checkpoint_steps': CheckpointSteps, 'resume': Resume, 'csv': Csv,
            'tensorboard': TensorBoard, 'progress': Progress, 'mixup': Mix, 'cutmix': Cut, 'fetch_preds': FetchPreds}
# what each feature's handlers are, to place the injector before and after them (a resume has none: the learner's loop
# applies the checkpoint, after every before_fit; its faults are anywhere)
_handlers = {'checkpoint_epoch': CheckpointCallback(), 'checkpoint_steps': CheckpointCallback(every_n_steps=2),
             'resume': None, 'csv': CSVLogger(), 'tensorboard': TensorBoardCallback(n_steps=1),
             'progress': ProgressCallback('terminal'), 'mixup': MixUp(), 'cutmix': CutMix(), 'fetch_preds': FetchPredsCallback()}
_nested = {'fetch_preds': event_cases([FetchPredsCallback()], nested=True)}

def _params(feature, *prefix, events=None) -> list:
    "The sweep's cases for `feature` as pytest parameters, each led by `prefix` (the feature's name)."
    return [pytest.param(*prefix, *c, id='-'.join((*prefix, case_id(*c)))) for c in cases_for(feature, events)]

@pytest.mark.parametrize('name,event,phase,exc,position',
                         [p for n, h in _handlers.items() for p in _params(h, n, events=_nested.get(n))])
def test_fault(name, event, phase, exc, position, tmp_path):
    feat = FEATURES[name](tmp_path)
    learn = feat.learner()
    cb = feat.make()
    inj = injector(event, exc, phase, position, _handlers[name], nested=name in _nested)
    before = snapshot(learn)
    err = _quietly(lambda: feat.fit(learn, [c for c in (*(cb if isinstance(cb, list) else [cb]), inj) if c is not None]))
    problems = problems_after_fault(learn, before, err, exc, inj, rng=feat.rng) + feat.check(learn, cb)
    assert not problems, problems
    assert not (problems := next_fit_problems(learn, feat.learner())), problems
    assert not (problems := feat.again(learn)), problems

# ---- Faults inside the features' own work -----------------------------------------------------------------------------
class _WriteFails:
    "A text file whose first `write` raises `exc` (a full disk, or a Ctrl-C landing there)."
    def __init__(self, f, exc): self._f, self._exc = f, exc
    def write(self, s):
        exc, self._exc = self._exc, None
        if exc is not None: raise exc('write failed')
        return self._f.write(s)
    def __getattr__(self, k): return getattr(self._f, k)
    def __enter__(self): return self
    def __exit__(self, *a): return self._f.__exit__(*a)

def _fail_once(exc, f, after:int=0):
    "`f`, raising `exc` at its call number `after` (0: the first)."
    calls = []
    def wrapped(*a, **k):
        calls.append(1)
        if len(calls) == after + 1: raise exc(f'{getattr(f, "__name__", "call")} failed')
        return f(*a, **k)
    return wrapped

def _csv_header_write_fails(mp, exc):
    real = Path.open
    mp.setattr(Path, 'open', lambda self, mode='r', *a, **k: _WriteFails(real(self, mode, *a, **k), exc) if 'w' in mode else real(self, mode, *a, **k))
    return Csv, 'CSVLogger', 'before_fit'

def _tb_trace_fails(mp, exc):
    from torch.utils.tensorboard import SummaryWriter
    mp.setattr(SummaryWriter, 'add_graph', _fail_once(exc, SummaryWriter.add_graph))   # a model that cannot be traced
    return TensorBoard, 'TensorBoardCallback', 'before_fit'

def _tb_scalar_fails(mp, exc):
    from torch.utils.tensorboard import SummaryWriter
    mp.setattr(SummaryWriter, 'add_scalar', _fail_once(exc, SummaryWriter.add_scalar))
    return TensorBoard, 'TensorBoardCallback', 'after_batch'

def _checkpoint_save_fails(mp, exc):
    real = torch.save
    def half_written(obj, f, *a, **k):   # the second checkpoint: part of the file is on disk when it fails
        real(obj, f, *a, **k)
        if len(calls) == 1: Path(f).write_bytes(Path(f).read_bytes()[:100]); raise exc('disk full')
        calls.append(1)
    calls = []
    mp.setattr(torch, 'save', half_written)
    return CheckpointSteps, 'CheckpointCallback', 'after_batch'

def _checkpoint_rename_fails(mp, exc):
    mp.setattr(os, 'replace', _fail_once(exc, os.replace, after=1))
    return CheckpointEpoch, 'CheckpointCallback', 'after_epoch'

def _resume_apply_fails(mp, exc):
    mp.setattr(fastcb.learner, '_set_grads', _fail_once(exc, fastcb.learner._set_grads))   # half-way through the load
    class ResumeKeepsRng(Resume): rng = True   # loading failed, so everything is put back, random states included
    return ResumeKeepsRng, "fastcb: the learner, its loaders and the random state were put back as they were", None

def _mixup_draw_fails(mp, exc):
    mp.setattr(torch.distributions.Beta, 'sample', _fail_once(exc, torch.distributions.Beta.sample))
    return Mix, 'MixUp', 'before_batch'

def _progress_bar_fails(mp, exc):
    from fastprogress.fastprogress import ConsoleProgressBar
    mp.setattr(ConsoleProgressBar, 'update', _fail_once(exc, ConsoleProgressBar.update, after=3))   # the epoch bar's 2, the batch bar's 2nd
    return Progress, 'ProgressCallback', 'after_batch'

_inside = [_csv_header_write_fails, _tb_trace_fails, _tb_scalar_fails, _checkpoint_save_fails, _checkpoint_rename_fails,
           _resume_apply_fails, _mixup_draw_fails, _progress_bar_fails]

@pytest.mark.parametrize('exc', EXCEPTIONS, ids=lambda e: e.__name__)
@pytest.mark.parametrize('fault', _inside, ids=lambda f: f.__name__.strip('_'))
def test_fault_inside_the_feature(fault, exc, tmp_path, monkeypatch):
    feat_cls, cb_name, event = fault(monkeypatch, exc)
    feat = feat_cls(tmp_path)
    learn = feat.learner()
    cb = feat.make()
    before = snapshot(learn)
    err = _quietly(lambda: feat.fit(learn, cb))
    monkeypatch.undo()
    problems = problems_after_fault(learn, before, err, exc, cb_name if event is None else (cb_name, event), rng=feat.rng) + feat.check(learn, cb)
    assert not problems, problems
    assert not (problems := next_fit_problems(learn, feat.learner())), problems
    assert not (problems := feat.again(learn)), problems

# ---- The compiled step: one compiled learner (and one compiled reference) for the whole sweep --------------------
@pytest.fixture(scope='module')
def compiled():
    def mk():
        learn = tiny_learner(cbs=MixedPrecision('bf16')).compile(step=True)
        learn.fit(1)   # compiles; the optimizer's state exists from here on (the reference's is copied in place)
        assert learn.compiled_step.eager_reason is None
        return learn
    return mk(), mk()

@pytest.mark.parametrize('event,phase,exc,position', _params(CompiledStep()))
def test_fault_compiled_step(compiled, event, phase, exc, position):
    learn, ref = compiled
    inj = injector(event, exc, phase, position, CompiledStep)
    before = snapshot(learn)
    err = _quietly(lambda: learn.fit(2, cbs=inj))
    problems = problems_after_fault(learn, before, err, exc, inj)
    cs = learn.compiled_step
    if cs.compiled: problems.append('the compiled step is still installed')
    g = learn.opt.param_groups[0]
    if not isinstance(g['lr'], float) or not all(isinstance(b, float) for b in g['betas']):
        problems.append(f"the learning rate or betas are left as tensors: {g['lr']!r}, {g['betas']!r}")
    if learn.mixed_precision.run_train is not True: problems.append('MixedPrecision was not given its training batches back')
    assert not problems, problems
    frames = counters['frames']['total']
    assert not (problems := next_fit_problems(learn, ref)), problems
    assert cs.eager_reason is None and cs.recompiles == 0 and counters['frames']['total'] == frames, \
        (cs.eager_reason, cs.recompiles, 'the next fit was not the compiled step, or recompiled it')

# ---- DDP: two gloo processes, one launch -----------------------------------------------------------------------------
@pytest.fixture(scope='module')
def ddp_run(tmp_path_factory):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available(): pytest.skip('no gloo')
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1', FASTCB_PROGRESS='plain')
    for v in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'): env.pop(v, None)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
           '--master_port', str(free_port()), str(ROOT / 'tests' / 'fault_sweep.py')]
    # the timeout only guards against a hang: the job ends by itself once rank 1's error reaches rank 0
    folder = tmp_path_factory.mktemp('ddp')
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=folder)
    res = {r: json.loads((folder / f'result{r}.json').read_text()) for r in (0, 1) if (folder / f'result{r}.json').exists()}
    return p, res

@pytest.mark.parametrize('event,phase,exc,position', _params(DistributedCallback()))
def test_fault_ddp(ddp_run, event, phase, exc, position):
    "The same fault on both ranks (so they stay in step): checked on each rank as above, plus: the weights agree across ranks."
    p, res = ddp_run
    assert sorted(res) == [0, 1], p.stdout[-2000:] + p.stderr[-6000:]
    for rank in (0, 1): assert not (problems := res[rank][case_id(event, phase, exc, position)]), (rank, problems)

def test_fault_on_one_rank_ends_the_job_with_its_error(ddp_run):
    "After the sweep, rank 1 alone raises: the launch ends (no hang) with a failure and the error shown."
    p, res = ddp_run
    assert p.returncode != 0 and 'NOT STOPPED' not in p.stdout, p.stdout[-2000:]
    assert f'RuntimeError: fault injected at {ONE_RANK_EVENT}' in p.stderr, p.stderr[-6000:]

def test_a_plain_fit_draws_nothing_from_the_random_generators():
    "What makes 'the random state is unchanged' a meaningful check above: a clean fit of the sweep's learner leaves it alone."
    learn = tiny_learner()
    st = fastcb.state.rng_state()
    learn.fit(2)
    assert same(fastcb.state.rng_state(), st)
