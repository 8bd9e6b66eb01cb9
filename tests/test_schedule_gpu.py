"""Schedules on a GPU (runs only where CUDA is available).

- `fit_one_cycle` adds no host-device synchronisation per batch: the syncs counted with
  torch.cuda.set_sync_debug_mode('warn') over a fit of 200 and of 400 batches are the same.
- `lr_find` on a GPU leaves the model and the optimizer state bit-identical, with plain and fused Adam
  (whose step counters live on the device).
"""
import copy, warnings
import pytest
from sync_count import fit_syncs
import torch
from torch import nn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")

def gpu_learner(n_batches, bs=64, opt_func=torch.optim.Adam):
    from fastcb.learner import Learner
    from fastcb.data import DataLoaders
    from fastcb.callback.progress import ProgressCallback
    import fastcb.callback.schedule   # noqa: F401  (adds fit_one_cycle and lr_find)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * bs, 64, generator=g).cuda()
    y = torch.randint(0, 10, (n_batches * bs,), generator=g).cuda()
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]   # data already on the GPU
    torch.manual_seed(0)
    learn = Learner(DataLoaders(batches, batches[:10], device='cuda'),
                    nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), nn.CrossEntropyLoss(),
                    opt_func=opt_func, lr=1e-2)
    learn.remove_cb(learn.progress).add_cb(ProgressCallback(mode='plain'))
    return learn

def count_syncs(n_batches):
    learn = gpu_learner(n_batches)
    return fit_syncs(learn, lambda l: l.fit_one_cycle(1)), learn

def test_one_cycle_no_sync_per_batch(capsys):
    n200, _ = count_syncs(200)
    n400, learn = count_syncs(400)
    with capsys.disabled(): print(f"\nfit_one_cycle host syncs in one fit: 200 batches -> {n200}, 400 batches -> {n400}")
    assert n400 <= n200, (n200, n400)
    assert len(learn.recorder.hps['mom']) == 400

def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
    if isinstance(a, dict): return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b

@pytest.mark.parametrize('fused', [False, True])
def test_lr_find_restores_exactly_on_gpu(fused):
    learn = gpu_learner(30, opt_func=lambda p, **kw: torch.optim.Adam(p, fused=fused, **kw))
    with learn.no_logging(): learn.fit_one_cycle(1)
    model = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt = copy.deepcopy(learn.opt.state_dict())
    losses = list(learn.recorder.losses)
    sugg = learn.lr_find(num_it=30, show_plot=False)
    assert 1e-7 <= sugg.valley <= 10
    assert _same(learn.model.state_dict(), model)
    assert _same(learn.opt.state_dict(), opt)
    assert learn.recorder.losses == losses
