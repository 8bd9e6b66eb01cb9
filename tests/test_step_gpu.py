"""The training step's stats on a GPU (runs only where CUDA is available): `learn.step_stats['grad_norm']` and, under
float16, `loss_scale` stay on the device (no host sync per batch, eager or compiled, with and without a CUDA graph),
and the compiled step's norms are the eager step's.

    python -m pytest -q tests/test_step_gpu.py
"""
import pytest
import torch
from torch import nn
from sync_count import syncs_during

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")

def _learner(n_batches=40, bs=64, cbs=None):
    from fastcb.all import Learner, DataLoaders, noop
    g = torch.Generator(device='cuda').manual_seed(0)
    x = torch.randn(n_batches * bs, 64, device='cuda', generator=g)
    y = torch.randint(0, 10, (n_batches * bs,), device='cuda', generator=g)
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    learn = Learner(DataLoaders(batches, batches[:5], device='cuda'), model, nn.CrossEntropyLoss(), lr=3e-3, cbs=cbs)
    learn.remove_cb(learn.cb('ProgressCallback'))
    learn.logger = noop
    return learn

def _logger():
    from fastcb.all import Callback
    class KeepStats(Callback):
        "Keep the step's stats (device tensors) after each training batch; nothing read on the host."
        wants_step_stats = ('grad_norm',)
        def before_fit(self): self.norms, self.scales = [], []
        def after_batch(self):
            if not self.training: return
            stats = self.learn.step_stats
            self.norms.append(stats['grad_norm'])
            if 'loss_scale' in stats: self.scales.append(stats['loss_scale'].clone())
    return KeepStats()

@pytest.mark.parametrize('compiled,mode', [(False, None), (True, None), (True, 'reduce-overhead')])
def test_grad_norm_on_the_device_without_syncs(compiled, mode):
    eager = _learner(cbs=_logger())
    eager.fit(1)
    learn = _learner(cbs=_logger())
    if compiled: learn.compile(step=True, mode=mode)
    learn.fit(1)                                                  # compiles (and captures) off the count
    n, sites, _ = syncs_during(lambda: learn.fit(3))
    assert n < 10, sites                                          # a few per fit, none per batch (120 batches)
    norms = learn.keep_stats.norms
    assert len(norms) == 160 and all(t.device.type == 'cuda' and t.dim() == 0 for t in norms)
    if compiled: assert learn.compiled_step.eager_reason is None and learn.compiled_step.graphed == (mode is not None)
    torch.testing.assert_close(torch.stack(norms[:40]), torch.stack(eager.keep_stats.norms), rtol=2e-3, atol=2e-3)

@pytest.mark.parametrize('compiled', [False, True])
def test_fp16_publishes_loss_scale_and_unscaled_grad_norm(compiled):
    from fastcb.all import GradientClip
    def cbs(): return [_logger(), GradientClip(1.)]
    ref = _learner(cbs=cbs())                                     # full precision: the real norms
    ref.fit(1)
    learn = _learner(cbs=cbs()).to_fp16(init_scale=2.**12)
    if compiled: learn.compile(step=True)
    learn.fit(1)
    k = learn.keep_stats
    assert len(k.scales) == 40 and all(s.device.type == 'cuda' for s in k.scales)
    assert k.scales[0].item() == 2.**12 and learn.step_stats['loss_scale'] is learn.mixed_precision.scaler._scale
    # the norm of the unscaled gradients: the full-precision step's, up to float16 rounding (not 4096 times larger)
    torch.testing.assert_close(k.norms[0], ref.keep_stats.norms[0], rtol=1e-2, atol=1e-3)
