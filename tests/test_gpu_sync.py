"""No host-device synchronisation per batch from the default callbacks (runs only where CUDA is available).

Counts synchronising CUDA calls with torch.cuda.set_sync_debug_mode('warn') over a fit of 200 and of 400
batches: the count must be the same (a constant per epoch is fine, one per batch is not).
"""
import pytest
from sync_count import fit_syncs
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
    return fit_syncs(learn), learn

@pytest.mark.parametrize('mode', ['plain', 'terminal'])
def test_sync_count_does_not_grow_with_batches(mode, capsys):
    if mode == 'terminal': pytest.importorskip('fastprogress', reason='terminal bars need fastprogress (carry its wheel to the GPU machine)')
    n200, _ = count_syncs(200, mode)
    n400, learn = count_syncs(400, mode)
    with capsys.disabled(): print(f"\n[{mode}] host syncs in one fit: 200 batches -> {n200}, 400 batches -> {n400}")
    assert n400 <= n200, (n200, n400)   # a constant per fit; one per batch would add 200
    assert n200 < 20
    assert learn.recorder.values[-1][2] is not None

def count_syncs_cnn(n_batches, dtype, bs=64):
    "Syncs during one fit of a small ResNet with MixedPrecision + ChannelsLast + GradientClip + GradientAccumulation."
    import torchvision
    from fastcb.all import Learner, DataLoaders, accuracy, MixedPrecision, ChannelsLast, GradientClip, GradientAccumulation
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * bs, 3, 32, 32, generator=g).cuda()
    y = (x[:, 0].mean((1, 2)) > 0).long()   # learnable labels, so the loss falls
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]
    torch.manual_seed(0)
    opt = (lambda p, **kw: torch.optim.Adam(p, fused=True, **kw))
    learn = Learner(DataLoaders(batches, batches[:10], device='cuda'), torchvision.models.resnet18(num_classes=2),
                    nn.CrossEntropyLoss(), opt_func=opt, lr=1e-3, metrics=accuracy,
                    cbs=[MixedPrecision(dtype), ChannelsLast(), GradientClip(1.), GradientAccumulation(2)])
    return fit_syncs(learn), learn

@pytest.mark.parametrize('dtype', ['bf16', 'fp16'])
def test_mixed_precision_no_sync_per_batch_and_loss_falls(dtype, capsys):
    n50, _ = count_syncs_cnn(50, dtype)
    n100, learn = count_syncs_cnn(100, dtype)
    with capsys.disabled(): print(f"\n[{dtype}] host syncs in one fit: 50 batches -> {n50}, 100 batches -> {n100}; "
                                  f"valid loss {learn.recorder.values[-1][1]:.4f}")
    assert n100 <= n50, (n50, n100)
    raw = learn.recorder.raw_losses
    assert sum(raw[-10:]) < sum(raw[:10])   # the loss falls
