"""No host-device synchronisation per batch from the default callbacks (runs only where CUDA is available).

Counts synchronising CUDA calls with torch.cuda.set_sync_debug_mode('warn') over a fit of 200 and of 400
batches: the count must be the same (a constant per epoch is fine, one per batch is not).
"""
import warnings
import pytest
import torch
from torch import nn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")

def count_syncs(n_batches, progress_mode='plain', bs=64):
    from fastcb.all import Learner, DataLoaders, ProgressCallback, accuracy
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * bs, 64, generator=g).cuda()
    y = torch.randint(0, 10, (n_batches * bs,), generator=g).cuda()
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]   # data already on the GPU
    valid = batches[:20]
    torch.manual_seed(0)
    learn = Learner(DataLoaders(batches, valid, device='cuda'), nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)),
                    nn.CrossEntropyLoss(), metrics=accuracy)
    learn.remove_cb(learn.progress).add_cb(ProgressCallback(mode=progress_mode))
    learn.progress.refresh_every = 0.   # the running loss is refreshed at every batch: the hardest case
    with learn.no_logging(): learn.fit(1)   # warm-up: allocator, cuBLAS handles, optimizer state
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            with learn.no_logging(): learn.fit(1)
        finally: torch.cuda.set_sync_debug_mode('default')
    syncs = [w for w in caught if 'synchroniz' in str(w.message).lower()]
    return len(syncs), learn

@pytest.mark.parametrize('mode', ['plain', 'terminal'])
def test_sync_count_does_not_grow_with_batches(mode, capsys):
    n200, _ = count_syncs(200, mode)
    n400, learn = count_syncs(400, mode)
    with capsys.disabled(): print(f"\n[{mode}] host syncs in one fit: 200 batches -> {n200}, 400 batches -> {n400}")
    assert n400 == n200, (n200, n400)
    assert n200 < 20
    assert learn.recorder.values[-1][2] is not None
