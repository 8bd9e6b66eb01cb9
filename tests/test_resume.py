"""Exact resume after a real SIGKILL: a run killed at a random training step and resumed from its last checkpoint
ends with the same weights, optimizer state and history as the run that was never interrupted (torch.equal, tolerance 0).

Each training run is a child process: most are forked from this one (cheap: torch is already imported) and kill
themselves with SIGKILL, so nothing of theirs (no finally, no atexit) runs; one scenario resumes in a fresh interpreter.
"""
import inspect, os, random, signal, subprocess, sys
from pathlib import Path
import pytest
import torch
torch.set_num_threads(1)   # the runs are forked: a child forked after OpenMP started its threads can hang
from torch import nn
from torch.utils.data import TensorDataset
from fastcb.callback.core import Callback
from fastcb.learner import Learner
from fastcb.data import DataLoaders, TensorLoader, TfmDataset
from fastcb.callback.schedule import ParamScheduler, combined_cos
from fastcb.callback.tracker import EarlyStoppingCallback, SaveModelCallback, ReduceLROnPlateau
from fastcb.callback.training import GradientAccumulation, MixedPrecision
from fastcb.checkpoint import CheckpointCallback, checkpoints
import fastcb.checkpoint as ckmod

pytestmark = pytest.mark.skipif(not hasattr(os, 'fork'), reason="needs os.fork")
N_TRAIN, BS, N_EPOCH = 36, 5, 3          # 8 training batches per epoch (the last one of 1 item)
PER_EPOCH = -(-N_TRAIN // BS)

class Killer(Callback):
    "SIGKILL this process at training step `at` of the fit (of stage `stage`, if given), in `event`: no cleanup of any kind runs."
    order = 2000   # after the checkpoint of the same step
    def __init__(self, at=None, event='after_batch', stage=None): self.at, self.event, self.stage = at, event, stage
    def _maybe(self, event):
        if self.event == event and self.learn.train_iter == self.at and self.learn.fit_stage == self.stage:
            os.kill(os.getpid(), signal.SIGKILL)
    def after_batch(self): self._maybe('after_batch')
    def after_pred(self):   # in the middle of a step: forward done, backward and optimizer step not
        if self.learn.training: self._maybe('after_pred')

def data(kind):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(N_TRAIN + 10, 4, generator=g), torch.randint(0, 3, (N_TRAIN + 10,), generator=g)
    if kind == 'tensor':
        return DataLoaders(TensorLoader(x[:N_TRAIN], y[:N_TRAIN], bs=BS, shuffle=True, seed=3),
                           TensorLoader(x[N_TRAIN:], y[N_TRAIN:], bs=4), loss_func=nn.CrossEntropyLoss())
    # a torch DataLoader with 2 worker processes and random augmentation seeded per (seed, epoch, item)
    noisy = lambda t: t + 0.1 * torch.randn_like(t)
    train = TfmDataset(TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), noisy, seed=5)
    return DataLoaders.from_dsets(train, TensorDataset(x[N_TRAIN:], y[N_TRAIN:]), bs=BS, seed=3, num_workers=2,
                                  loss_func=nn.CrossEntropyLoss())

def one_cycle():
    return ParamScheduler({'lr': combined_cos(0.25, 1e-3, 1e-2, 1e-6), 'mom': combined_cos(0.25, 0.95, 0.85, 0.95)})

def build(path, cfg, ck_kw, device='cpu'):
    "A learner of configuration `cfg` and the callbacks of its fit."
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    cbs = [CheckpointCallback(**ck_kw)]
    if cfg == 'trackers':
        cbs += [EarlyStoppingCallback(patience=2, min_delta=0.05), SaveModelCallback(), ReduceLROnPlateau(patience=1, min_delta=0.05)]
    if cfg == 'accumulate': cbs.append(GradientAccumulation(3))
    if cfg in ('bf16', 'cuda'): cbs.append(MixedPrecision('bf16'))
    splitter = (lambda m: [list(m[0].parameters()), list(m[3].parameters())]) if cfg == 'fine_tune' else None
    learn = Learner(data('loader' if cfg == 'loader' else 'tensor'), model, path=path, cbs=cbs, device=device, splitter=splitter)
    fit_cbs = [one_cycle()] if cfg in ('one_cycle', 'trackers', 'loader') else []
    return learn, fit_cbs

def result(learn):
    rec = learn.recorder
    return {'model': learn.model.state_dict(), 'opt': learn.opt.state_dict(), 'values': rec.values, 'losses': rec.losses,
            'hps': rec.hps, 'iters': rec.iters, 'train_iter': learn.train_iter}

def train(path, cfg, out=None, kill_at=None, event='after_batch', resume=None, ck_kw=None, device='cpu', stage=None):
    "Train (or resume) configuration `cfg`; save the result to `out`."
    learn, fit_cbs = build(path, cfg, ck_kw or {}, device)
    if resume is not None: torch.manual_seed(int.from_bytes(os.urandom(4)))   # a resumed run must not depend on the process's seed
    cbs = fit_cbs + [Killer(kill_at, event, stage)]
    with learn.no_logging(), learn.no_bar():
        if cfg == 'fit_one_cycle': learn.fit_one_cycle(N_EPOCH, 1e-2, cbs=cbs, resume=resume)
        elif cfg == 'fine_tune': learn.fine_tune(2, 1e-2, freeze_epochs=1, cbs=cbs, resume=resume)
        else: learn.fit(N_EPOCH, cbs=cbs, resume=resume)
    if out is not None: torch.save(to_cpu(result(learn)), out)

def to_cpu(o):
    if isinstance(o, torch.Tensor): return o.cpu()
    if isinstance(o, dict): return {k: to_cpu(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)): return type(o)(to_cpu(v) for v in o)
    return o

def in_child(f, *args, **kw) -> int:
    "Run `f` in a forked process; its exit status (-9 when it killed itself)."
    pid = os.fork()
    if pid == 0:
        code = 0
        try: f(*args, **kw)
        except BaseException:
            import traceback; traceback.print_exc(); code = 1
        finally: os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)

def same(a, b, path=''):
    "Equal to the bit: tensors with torch.equal, everything else with ==."
    if isinstance(a, torch.Tensor): return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b

_refs = {}
def reference(tmp_path_factory, cfg):
    if cfg not in _refs:
        d = tmp_path_factory.mktemp(f'ref_{cfg}')
        train(d, cfg, d / 'out.pt')   # here, not in a child: it also warms this process up for the forks
        _refs[cfg] = torch.load(d / 'out.pt', weights_only=True)
    return _refs[cfg]

def check_resumed(tmp_path_factory, tmp_path, cfg, kills, ck_kw, event='after_batch', stage=None):
    "Kill the run at each step of `kills` in turn (resuming after each), then resume to the end; compare with the reference."
    ref = reference(tmp_path_factory, cfg)
    resume = None
    for k in kills:
        assert in_child(train, tmp_path, cfg, kill_at=k, event=event, resume=resume, ck_kw=ck_kw, stage=stage) == -signal.SIGKILL
        resume = 'last'
    assert checkpoints(tmp_path / 'models')
    assert in_child(train, tmp_path, cfg, tmp_path / 'out.pt', resume='last', ck_kw=ck_kw) == 0
    got = torch.load(tmp_path / 'out.pt', weights_only=True)
    for k in ref: assert same(ref[k], got[k]), f"{cfg}: {k} differs after resuming from kills at {kills}"

rng = random.Random(int(os.environ.get('FASTCB_RESUME_SEED', '0')))
TOTAL = N_EPOCH * PER_EPOCH

def test_epoch_boundary(tmp_path_factory, tmp_path):
    "Checkpoints at the end of each epoch only; killed at a random step of the second epoch, mid-step."
    check_resumed(tmp_path_factory, tmp_path, 'base', [rng.randrange(PER_EPOCH + 1, 2 * PER_EPOCH)], {}, event='after_pred')

def test_mid_epoch(tmp_path_factory, tmp_path):
    "A checkpoint every 3 steps; killed at a random step."
    check_resumed(tmp_path_factory, tmp_path, 'base', [rng.randrange(4, TOTAL)], {'every_n_steps': 3})

def test_last_batch_of_epoch(tmp_path_factory, tmp_path):
    "The checkpoint after an epoch's last batch, before its validation: the resumed run validates, then goes on."
    check_resumed(tmp_path_factory, tmp_path, 'base', [PER_EPOCH], {'every_n_steps': PER_EPOCH, 'every_epoch': False})

def test_killed_twice_in_one_epoch(tmp_path_factory, tmp_path):
    a = rng.randrange(PER_EPOCH + 2, 2 * PER_EPOCH - 2)
    check_resumed(tmp_path_factory, tmp_path, 'base', [a, a + 2], {'every_n_steps': 2})

@pytest.mark.parametrize('cfg', ['one_cycle', 'trackers', 'accumulate', 'bf16', 'loader'])
def test_configurations(tmp_path_factory, tmp_path, cfg):
    "Schedules, trackers (early stopping, best-model saving, lr reduction), accumulation, bf16, a 2-worker torch DataLoader."
    check_resumed(tmp_path_factory, tmp_path, cfg, [rng.randrange(PER_EPOCH + 1, TOTAL)], {'every_n_steps': 4})

def _takes_resume(method) -> bool: return 'resume' in inspect.signature(getattr(Learner, method)).parameters

@pytest.mark.parametrize('method,stage', [('fit_one_cycle', None), ('fine_tune', 'frozen'), ('fine_tune', 'unfrozen')])
def test_schedule_methods(tmp_path_factory, tmp_path, method, stage):
    "fit_one_cycle and fine_tune (killed in its frozen stage, and in its unfrozen one) with resume=."
    if not _takes_resume(method): pytest.skip(f"Learner.{method} does not take resume= yet (nbs/05_callback.schedule.ipynb)")
    check_resumed(tmp_path_factory, tmp_path, method, [rng.randrange(4, PER_EPOCH * (1 if stage else N_EPOCH))],   # after the first checkpoint
                  {'every_n_steps': 3}, stage=stage)

def test_kill_during_checkpoint_write(tmp_path_factory, tmp_path):
    "SIGKILL in the middle of writing a checkpoint: the previous one is intact, the half-written one is ignored."
    def die_in_third_write(*args, **kw):
        real = torch.save
        calls = []
        def save(obj, f, *a, **k):
            calls.append(1)
            if len(calls) == 3:   # write part of the file, then die
                Path(f).write_bytes(b'PK\x03\x04 half a checkpoint')
                os.kill(os.getpid(), signal.SIGKILL)
            return real(obj, f, *a, **k)
        ckmod.torch.save = save
        train(*args, **kw)
    assert in_child(die_in_third_write, tmp_path, 'base', ck_kw={'every_n_steps': 3}) == -signal.SIGKILL
    folder = tmp_path / 'models'
    assert len(list(folder.glob('.*.tmp'))) == 1 and len(checkpoints(folder)) == 2
    assert in_child(train, tmp_path, 'base', tmp_path / 'out.pt', resume='last', ck_kw={'every_n_steps': 3}) == 0
    assert not list(folder.glob('.*.tmp'))   # cleaned up by the next CheckpointCallback
    got, ref = torch.load(tmp_path / 'out.pt', weights_only=True), reference(tmp_path_factory, 'base')
    assert all(same(ref[k], got[k]) for k in ref)

def fresh(path, cfg='base', out=None, kill_at=None, resume=None, device='cpu', every_n_steps=5) -> int:
    "Run `train` in a new interpreter (nothing inherited from this process); its exit status."
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from pathlib import Path; from test_resume import train; "
            f"train(Path({str(path)!r}), {cfg!r}, {None if out is None else str(out)!r}, kill_at={kill_at!r}, resume={resume!r}, "
            f"ck_kw={{'every_n_steps': {every_n_steps}}}, device={device!r})")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get('PYTHONPATH', '')]))
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode in (0, -signal.SIGKILL), r.stderr[-3000:]
    return r.returncode

def test_resume_in_fresh_interpreter(tmp_path_factory, tmp_path):
    "The resuming process is a new interpreter (nothing inherited from the killed one)."
    assert in_child(train, tmp_path, 'base', kill_at=rng.randrange(6, TOTAL), ck_kw={'every_n_steps': 5}) == -signal.SIGKILL
    assert fresh(tmp_path, out=tmp_path / 'out.pt', resume='last') == 0
    got, ref = torch.load(tmp_path / 'out.pt', weights_only=True), reference(tmp_path_factory, 'base')
    assert all(same(ref[k], got[k]) for k in ref)

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_resume(tmp_path):
    "On the GPU, with bf16 autocast and dropout drawing from the CUDA generator: every run in a new interpreter (no fork with CUDA)."
    ref_dir, run_dir = tmp_path / 'ref', tmp_path / 'run'
    assert fresh(ref_dir, 'cuda', ref_dir / 'out.pt', device='cuda') == 0
    assert fresh(run_dir, 'cuda', kill_at=PER_EPOCH + 3, device='cuda') == -signal.SIGKILL
    assert fresh(run_dir, 'cuda', run_dir / 'out.pt', resume='last', device='cuda') == 0
    ref, got = (torch.load(d / 'out.pt', weights_only=True) for d in (ref_dir, run_dir))
    for k in ref: assert same(ref[k], got[k]), f"cuda: {k} differs"

