"""The training runs of tests/test_resume.py, each run in a process of its own.

This module is imported by the fork server that test_resume.py starts, and by fresh interpreters: importing it must
touch neither autograd nor CUDA. A process forked after autograd ran a backward pass on a machine with a GPU (its
device threads exist then) dies when the child runs one; a process forked after CUDA was initialised cannot use CUDA.
"""
import os, signal, traceback
from pathlib import Path
import torch
from torch import nn
from torch.utils.data import TensorDataset
from fastcb.callback.core import Callback
from fastcb.learner import Learner
from fastcb.data import DataLoaders, TensorLoader, TfmDataset
from fastcb.callback.schedule import ParamScheduler, combined_cos
from fastcb.callback.tracker import EarlyStoppingCallback, SaveModelCallback, ReduceLROnPlateau
from fastcb.callback.training import GradientAccumulation, MixedPrecision
from fastcb.checkpoint import CheckpointCallback
import fastcb.checkpoint as ckmod

N_TRAIN, BS, N_EPOCH = 36, 5, 3          # 8 training batches per epoch (the last one of 1 item)
PER_EPOCH = -(-N_TRAIN // BS)
TOTAL = N_EPOCH * PER_EPOCH

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

def noisy(t): return t + 0.1 * torch.randn_like(t)   # module level: a loader's worker may need to unpickle it

def data(kind):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(N_TRAIN + 10, 4, generator=g), torch.randint(0, 3, (N_TRAIN + 10,), generator=g)
    if kind == 'tensor':
        return DataLoaders(TensorLoader(x[:N_TRAIN], y[:N_TRAIN], bs=BS, shuffle=True, seed=3),
                           TensorLoader(x[N_TRAIN:], y[N_TRAIN:], bs=4), loss_func=nn.CrossEntropyLoss())
    # a torch DataLoader with 2 worker processes and random augmentation seeded per (seed, epoch, item)
    train = TfmDataset(TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), noisy, seed=5)
    # Workers forked from the training process, as Linux's default is up to Python 3.13 (they run no autograd); a
    # child of the fork server would otherwise start them through a fork server of its own, importing torch in each.
    return DataLoaders.from_dsets(train, TensorDataset(x[N_TRAIN:], y[N_TRAIN:]), bs=BS, seed=3, num_workers=2,
                                  multiprocessing_context='fork', loss_func=nn.CrossEntropyLoss())

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

def to_cpu(o):
    if isinstance(o, torch.Tensor): return o.cpu()
    if isinstance(o, dict): return {k: to_cpu(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)): return type(o)(to_cpu(v) for v in o)
    return o

def train(path, cfg, out=None, kill_at=None, event='after_batch', resume=None, ck_kw=None, device='cpu', stage=None):
    "Train (or resume) configuration `cfg` in this process; save the result to `out`."
    torch.set_num_threads(1)   # every run alike, whatever the machine
    learn, fit_cbs = build(Path(path), cfg, ck_kw or {}, device)
    if resume is not None: torch.manual_seed(int.from_bytes(os.urandom(4)))   # a resumed run must not depend on the process's seed
    cbs = fit_cbs + [Killer(kill_at, event, stage)]
    with learn.no_logging(), learn.no_bar():
        if cfg == 'fit_one_cycle': learn.fit_one_cycle(N_EPOCH, 1e-2, cbs=cbs, resume=resume)
        elif cfg == 'fine_tune': learn.fine_tune(2, 1e-2, freeze_epochs=1, cbs=cbs, resume=resume)
        else: learn.fit(N_EPOCH, cbs=cbs, resume=resume)
    if out is not None: torch.save(to_cpu(result(learn)), out)

def die_in_third_write(*args, **kw):
    "`train`, but SIGKILL this process in the middle of writing its third checkpoint file."
    real, calls = torch.save, []
    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 3:   # write part of the file, then die
            Path(f).write_bytes(b'PK\x03\x04 half a checkpoint')
            os.kill(os.getpid(), signal.SIGKILL)
        return real(obj, f, *a, **k)
    ckmod.torch.save = save
    train(*args, **kw)

def backward_on(device):
    "One forward and backward pass on `device`: where this process may not use autograd or CUDA, it fails."
    x = torch.ones(3, device=device, requires_grad=True)
    (x * 2).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.)), x.grad

def run_child(err, f, *args, **kw):
    "A child process's body: `f(*args, **kw)`; on an exception, its traceback goes to the file `err`, and the exit status is 1."
    try: f(*args, **kw)
    except BaseException:
        Path(err).write_text(traceback.format_exc())
        raise SystemExit(1)
