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
    assert comp.compiled_step.graphed == (mode is not None)      # the whole step replayed as one CUDA graph

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

def _losses(learn): return torch.stack([torch.as_tensor(v) for v in learn.recorder.raw_losses])

def _python_calls(f) -> int:
    import sys
    n = [0]
    def prof(frame, event, arg):
        if event == 'call': n[0] += 1
    sys.setprofile(prof)
    try: f()
    finally: sys.setprofile(None)
    return n[0]

def test_graph_calls_per_batch():
    "A replayed batch costs few Python calls: the graph holds the forward pass, the backward pass and the optimizer step."
    graph, eager = _learner().compile(step=True, mode='reduce-overhead'), _learner()
    graph.fit(1); eager.fit(1)
    assert graph.compiled_step.graphed
    n_graph, n_eager = _python_calls(lambda: graph.fit(1)), _python_calls(lambda: eager.fit(1))
    print(f"Python calls in a fit of 40 training and 5 validation batches: graph {n_graph}, eager {n_eager}")
    assert n_graph < n_eager

def test_graph_ragged_last_batch_runs_without_the_graph():
    from fastcb.all import Learner, DataLoaders, noop
    g = torch.Generator(device='cuda').manual_seed(0)
    x, y = torch.randn(1000, 64, device='cuda', generator=g), torch.randint(0, 10, (1000,), device='cuda', generator=g)
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 1000, 64)]   # the last one has 40 items
    def make():
        torch.manual_seed(0)
        learn = Learner(DataLoaders(batches, batches[:2], device='cuda'), nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)),
                        nn.CrossEntropyLoss(), lr=3e-3)
        learn.remove_cb(learn.cb('ProgressCallback')); learn.logger = noop
        return learn
    eager, comp = make(), make().compile(step=True, mode='reduce-overhead')
    eager.fit(3)
    with pytest.warns(UserWarning, match="shapes changed"): comp.fit(3)
    assert comp.compiled_step.graphed
    torch.testing.assert_close(_losses(comp), _losses(eager), rtol=2e-3, atol=2e-3)

def test_graph_sees_a_new_weight_decay_and_bn_frozen_at_an_epoch():
    from fastcb.all import Callback
    class Changes(Callback):
        "Weight decay changed in the middle of the first epoch; batch norm put in eval mode from the second epoch."
        def before_batch(self):
            if self.training and self.epoch == 0 and self.iter == 20:
                for g in self.learn.opt.param_groups: g['weight_decay'] = 0.1
        def before_train(self):
            if self.epoch >= 1: self.learn.model[1].eval()
        def after_train(self):
            if self.epoch == 0: self.stats = self.learn.model[1].running_mean.clone()
    eager = _learner(cnn=True, cbs=Changes())
    comp = _learner(cnn=True, cbs=Changes()).compile(step=True, mode='reduce-overhead')
    eager.fit(3)
    with pytest.warns(UserWarning, match="recompiled"): comp.fit(3)
    assert comp.compiled_step.graphed
    torch.testing.assert_close(_losses(comp), _losses(eager), rtol=2e-3, atol=2e-3)
    # batch norm in eval mode from the second epoch: its running statistics no longer move. (They are not compared with
    # eager's: the convolution's bias before it gets only rounding noise as gradient, which Adam turns into steps of lr.)
    frozen = comp.changes.stats
    assert torch.equal(comp.model[1].running_mean, frozen) and not torch.equal(frozen, torch.zeros_like(frozen))

def test_graph_mode_fp16_runs_compiled_without_a_graph():
    eager, comp = _learner().to_fp16(), _learner().to_fp16().compile(step=True, mode='reduce-overhead')
    eager.fit(2)
    with pytest.warns(UserWarning, match="GradScaler checks the gradients"): comp.fit(2)
    assert not comp.compiled_step.graphed and comp.compiled_step.eager_reason is None
    torch.testing.assert_close(_losses(comp), _losses(eager), rtol=1e-2, atol=1e-2)

def _loss_with_sync(pred, y):
    import torch.nn.functional as F
    loss = F.cross_entropy(pred, y)
    if loss.item() > 1e9: raise ValueError('diverged')   # a host sync, which no CUDA graph can hold
    return loss

def test_a_step_that_cannot_be_captured_falls_back():
    eager, comp = _learner(), _learner().compile(step=True, mode='reduce-overhead')
    eager.loss_func = comp.loss_func = _loss_with_sync
    eager.fit(2)
    with pytest.warns(UserWarning, match="could not be captured as a CUDA graph"): comp.fit(2)
    assert not comp.compiled_step.graphed
    torch.testing.assert_close(_losses(comp), _losses(eager), rtol=2e-3, atol=2e-3)
    comp.fit(1)   # and the next fit works

def dropout_weights() -> list:
    "A fresh learner with dropout (which draws from CUDA's generator) trained for one epoch: its weights, on the CPU."
    from fastcb.all import Learner, DataLoaders, noop
    g = torch.Generator(device='cuda').manual_seed(1)
    x, y = torch.randn(640, 64, device='cuda', generator=g), torch.randint(0, 10, (640,), device='cuda', generator=g)
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 640, 64)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 10))
    learn = Learner(DataLoaders(batches, batches[:2], device='cuda'), model, nn.CrossEntropyLoss())
    learn.remove_cb(learn.cb('ProgressCallback')); learn.logger = noop
    learn.fit(1)
    return [p.detach().cpu() for p in learn.model.parameters()]

def test_a_failed_capture_leaves_nothing_behind(tmp_path):
    "After a capture that fails part-way (and a fit with dropout around it), a fresh learner with dropout trains as in a clean process."
    import subprocess, sys, os
    torch.manual_seed(0)
    learn = _learner()
    learn.model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))
    learn.loss_func = _loss_with_sync
    learn.compile(step=True, mode='reduce-overhead')
    with pytest.warns(UserWarning, match="could not be captured as a CUDA graph"): learn.fit(2)   # dropout after the failure
    assert not learn.compiled_step.graphed and not torch.cuda.is_current_stream_capturing()
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    here = dropout_weights()
    ref = tmp_path / 'clean.pt'
    code = ("import sys, torch; sys.path.insert(0, sys.argv[1]); from test_compile_gpu import dropout_weights; "
            "torch.save(dropout_weights(), sys.argv[2])")
    subprocess.run([sys.executable, '-c', code, os.path.dirname(__file__), str(ref)], check=True, timeout=300)
    clean = torch.load(ref)
    assert all(torch.equal(a, b) for a, b in zip(here, clean))
