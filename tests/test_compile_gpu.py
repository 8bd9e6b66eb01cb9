"""The compiled training step on a GPU (runs only where CUDA is available): inductor with and without CUDA graphs,
bf16 and channels-last, the same losses as eager, no recompilation across schedules, no host sync per batch.

    python -m pytest -q tests/test_compile_gpu.py
"""
import pytest
import torch
from torch import nn
from sync_count import syncs_during

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")

def _learner(n_batches=40, bs=64, cbs=None, cnn=False):
    from fastcb.all import Learner, DataLoaders, noop
    g = torch.Generator(device='cuda').manual_seed(0)
    shape = (3, 16, 16) if cnn else (64,)
    x = torch.randn(n_batches * bs, *shape, device='cuda', generator=g)
    y = torch.randint(0, 10, (n_batches * bs,), device='cuda', generator=g)
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]
    torch.manual_seed(0)
    model = (nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                           nn.Flatten(), nn.Linear(16, 10)) if cnn else
             nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)))
    learn = Learner(DataLoaders(batches, batches[:5], device='cuda'), model, nn.CrossEntropyLoss(), lr=3e-3, cbs=cbs)
    learn.remove_cb(learn.cb('ProgressCallback'))
    learn.logger = noop
    return learn

@pytest.mark.parametrize('mode', [None, 'reduce-overhead'])
def test_compiled_step_matches_eager_without_recompiles_or_syncs(mode):
    from torch._dynamo.utils import counters
    eager, comp = _learner(), _learner().compile(step=True, mode=mode)
    eager.fit_one_cycle(2); comp.fit_one_cycle(2)
    e, c = torch.stack([torch.as_tensor(v) for v in eager.recorder.raw_losses]), torch.stack([torch.as_tensor(v) for v in comp.recorder.raw_losses])
    torch.testing.assert_close(c, e, rtol=2e-3, atol=2e-3)      # inductor fuses: float rounding differs
    frames = counters['frames']['total']
    n, sites, _ = syncs_during(lambda: comp.fit_one_cycle(3))
    assert counters['frames']['total'] == frames and comp.compiled_step.recompiles == 0
    assert n < 10, sites                                          # a few per fit, none per batch (120 batches)
    assert all(isinstance(v, float) for v in comp.recorder.lrs)

@pytest.mark.parametrize('mode', [None, 'reduce-overhead'])
def test_compiled_step_bf16_channels_last_clipping(mode):
    from fastcb.all import MixedPrecision, ChannelsLast, GradientClip
    def cbs(): return [MixedPrecision('bf16'), ChannelsLast(), GradientClip(1.)]
    eager, comp = _learner(cnn=True, cbs=cbs()), _learner(cnn=True, cbs=cbs()).compile(step=True, mode=mode)
    eager.fit(2); comp.fit(2)
    assert comp.compiled_step.eager_reason is None
    e, c = torch.tensor(eager.recorder.raw_losses), torch.tensor(comp.recorder.raw_losses)
    torch.testing.assert_close(c, e, rtol=3e-2, atol=3e-2)      # bf16
    assert comp.mixed_precision.run_train and not torch.is_autocast_enabled('cuda')

def test_accumulation_compiled_without_graphs_and_refused_with_them():
    from fastcb.all import GradientAccumulation, GradientClip
    def cbs(): return [GradientAccumulation(3), GradientClip(1.)]
    eager, comp = _learner(cbs=cbs()), _learner(cbs=cbs()).compile(step=True)
    eager.fit(2); comp.fit(2)
    assert comp.compiled_step.eager_reason is None
    torch.testing.assert_close(torch.tensor(comp.recorder.raw_losses), torch.tensor(eager.recorder.raw_losses), rtol=2e-3, atol=2e-3)
    graphs = _learner(cbs=cbs()).compile(step=True, mode='reduce-overhead')
    with pytest.warns(UserWarning, match="without mode= for gradient accumulation"): graphs.fit(1)

def test_fp16_scaler_compiled():
    eager, comp = _learner().to_fp16(), _learner().to_fp16().compile(step=True)
    eager.fit(2); comp.fit(2)
    assert comp.compiled_step.eager_reason is None
    torch.testing.assert_close(torch.tensor(comp.recorder.raw_losses), torch.tensor(eager.recorder.raw_losses), rtol=1e-2, atol=1e-2)
    assert comp.mixed_precision.scaler.get_scale() == eager.mixed_precision.scaler.get_scale()
