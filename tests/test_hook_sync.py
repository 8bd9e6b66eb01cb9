"""ActivationStats keeps its statistics on the device: no host-device synchronisation per batch (CUDA only).

Counts synchronising CUDA calls (torch.cuda.set_sync_debug_mode('warn')) over a fit of 100 and of 200 batches of a
small CNN, with and without histograms: the count must not grow with the number of batches. Also checks that the hooks
are gone after the fit, and that the statistics match a direct computation on the GPU.
"""
import pytest
from sync_count import fit_syncs
import torch
from torch import nn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")

def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 16, 10))

def make_learner(n_batches, cbs, bs=64):
    from fastcb.all import Learner, DataLoaders, ProgressCallback
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * bs, 1, 8, 8, generator=g).cuda()
    y = torch.randint(0, 10, (n_batches * bs,), generator=g).cuda()
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]
    learn = Learner(DataLoaders(batches, batches[:10], device='cuda'), cnn(), nn.CrossEntropyLoss(), cbs=cbs)
    learn.remove_cb(learn.progress).add_cb(ProgressCallback(mode='plain'))
    return learn


@pytest.mark.parametrize('with_hist', [False, True])
def test_activation_stats_sync_count_does_not_grow(with_hist, capsys):
    from fastcb.callback.hook import ActivationStats
    base = fit_syncs(make_learner(100, None))
    n100 = fit_syncs(make_learner(100, ActivationStats(with_hist=with_hist)))
    learn = make_learner(200, ActivationStats(with_hist=with_hist))
    n200 = fit_syncs(learn)
    with capsys.disabled(): print(f"\n[with_hist={with_hist}] host syncs: none {base}; ActivationStats 100 batches -> {n100}, 200 -> {n200}")
    assert n200 == n100, (n100, n200)
    assert n100 <= base + 4, (base, n100)
    assert all(not m._forward_hooks and not m._backward_hooks for m in learn.model.modules())
    st = learn.activation_stats.stats
    assert st.shape == (200, 3, 3) and st.device.type == 'cpu' and torch.isfinite(st).all()

def test_stats_match_on_gpu():
    from fastcb.all import Callback
    from fastcb.callback.hook import ActivationStats
    last = {}
    class KeepLast(Callback):
        def after_pred(self):
            if self.training: last['o'] = self.learn.model[0](self.learn.xb[0]).detach()
    learn = make_learner(20, [ActivationStats(with_hist=True), KeepLast()])
    with learn.no_logging(): learn.fit(1)
    o = last['o'].float()
    want = torch.stack([o.mean(), o.std(), (o <= 0.05).float().mean()]).cpu()
    assert torch.allclose(learn.activation_stats.stats[-1, 0], want, atol=1e-5)
    assert torch.allclose(learn.activation_stats.hists[-1, 0], o.histc(40, 0, 10).cpu())
