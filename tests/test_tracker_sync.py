"""The trackers add no host-device synchronisation per batch (runs only where CUDA is available).

Counts synchronising CUDA calls (torch.cuda.set_sync_debug_mode('warn')) over a fit of 200 and of 400 batches with
TerminateOnNaNCallback and the epoch-level trackers: the count must not grow with the number of batches.
"""
import pytest
from sync_count import fit_syncs
import torch
from torch import nn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")

def make_learner(n_batches, cbs, bs=64):
    from fastcb.all import Learner, DataLoaders, ProgressCallback, accuracy
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * bs, 64, generator=g).cuda()
    y = torch.randint(0, 10, (n_batches * bs,), generator=g).cuda()
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]
    torch.manual_seed(0)
    learn = Learner(DataLoaders(batches, batches[:20], device='cuda'), nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)),
                    nn.CrossEntropyLoss(), metrics=accuracy, cbs=cbs)
    learn.remove_cb(learn.progress).add_cb(ProgressCallback(mode='plain'))
    return learn


def trackers(tmp_path):
    from fastcb.callback.tracker import TerminateOnNaNCallback, EarlyStoppingCallback, ReduceLROnPlateau
    return [TerminateOnNaNCallback(), EarlyStoppingCallback(patience=5), ReduceLROnPlateau(patience=5)]

def test_trackers_sync_count_does_not_grow_with_batches(tmp_path, capsys):
    base = fit_syncs(make_learner(200, None))
    n200 = fit_syncs(make_learner(200, trackers(tmp_path)))
    n400 = fit_syncs(make_learner(400, trackers(tmp_path)))
    with capsys.disabled(): print(f"\nhost syncs in one fit: no trackers {base}; trackers 200 batches -> {n200}, 400 batches -> {n400}")
    assert n400 == n200, (n200, n400)
    assert n200 <= base + 2, (base, n200)   # TerminateOnNaN: one read of the flags per epoch

def test_nan_found_on_gpu():
    from fastcb.all import Callback
    from fastcb.callback.tracker import TerminateOnNaNCallback
    class NaNAt(Callback):
        def after_loss(self):
            if self.training and self.iter == 7: self.learn.loss = self.learn.loss * float('nan')
    tn = TerminateOnNaNCallback()
    learn = make_learner(50, [tn, NaNAt()])
    with learn.no_logging(): learn.fit(3)
    assert tn.nan_at == (0, 7)
