"""The compiled training step (`learn.compile(step=True)`) on the CPU: same losses as eager, no recompilation across
schedules, the fallback to eager for callbacks with events inside the step, teardown after a failure inside it, bad input.

Compiling is slow on a small CPU: the models are tiny, most tests use torch.compile's `eager` backend (Dynamo traces the
step, then runs the captured graphs without code generation), and the trajectory test `aot_eager` (the backward graph
traced as well); inductor, the default backend, is measured by bench/compile.py instead."""
import math, warnings
import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters
from fastcb.all import *
from fastcb.callback.compile import CompiledStep

def _frames(): return counters['frames']['total']

def mlp_learner(n=256, bs=32, seed=0, cbs=None, opt_func=torch.optim.Adam, loss_func=None):
    torch.manual_seed(seed)
    x, y = torch.randn(n, 16), torch.randint(0, 4, (n,))
    dls = DataLoaders(TensorLoader(x, y, bs=bs, shuffle=True, seed=seed), TensorLoader(x[:64], y[:64], bs=64))
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    learn = Learner(dls, model, loss_func or nn.CrossEntropyLoss(), opt_func=opt_func, lr=1e-2, cbs=cbs, device='cpu')   # CPU tests, also on a GPU machine
    learn.remove_cb(ProgressCallback)
    learn.logger = noop
    return learn

class FramesAt(Callback):
    "Count torch.compile's compilations after the first training batch of the fit, to the end of the fit."
    order = 100
    def before_fit(self): self.start = None
    def after_batch(self):
        if self.training and self.start is None: self.start = _frames()
    def after_fit(self): self.compiled_after_first = _frames() - self.start

def _params(learn): return torch.cat([p.detach().flatten() for p in learn.model.parameters()])

def test_trajectory_equals_eager_and_schedules_never_recompile():
    eager, comp = mlp_learner(n=640), mlp_learner(n=640).compile(step=True, backend='aot_eager')
    frames = FramesAt()
    eager.fit_one_cycle(15)                        # 20 batches x 15 epochs = 300 steps
    comp.fit_one_cycle(15, cbs=frames)
    e, c = torch.tensor(eager.recorder.raw_losses), torch.tensor(comp.recorder.raw_losses)
    assert len(c) == len(e) == 300
    torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(_params(comp), _params(eager), rtol=1e-4, atol=1e-5)
    assert frames.compiled_after_first == 0 and comp.compiled_step.recompiles == 0
    # lr and momentum went back to Python numbers: what the Recorder logged and what a checkpoint saves
    assert all(isinstance(v, float) for v in comp.recorder.lrs)
    g = comp.opt.param_groups[0]
    assert isinstance(g['lr'], float) and all(isinstance(b, float) for b in g['betas'])
    assert comp.step_owner('backward') is None and '_do_one_batch' not in comp.__dict__
    n = _frames()
    comp.fit_one_cycle(2, lr_max=3e-3)             # another schedule, another fit: the compiled step is reused
    assert _frames() == n

def test_bf16_accumulation_clipping_compiled_like_eager():
    def cbs(): return [GradientAccumulation(3), GradientClip(0.5), MixedPrecision('bf16')]
    eager, comp = mlp_learner(n=224, cbs=cbs()), mlp_learner(n=224, cbs=cbs()).compile(step=True, backend='eager')
    n = _frames()
    eager.fit(2); comp.fit(2)
    assert comp.compiled_step.eager_reason is None and _frames() > n       # it did compile
    torch.testing.assert_close(torch.tensor(comp.recorder.raw_losses), torch.tensor(eager.recorder.raw_losses))
    torch.testing.assert_close(_params(comp), _params(eager))
    assert comp.opt.state[next(comp.model.parameters())]['step'].item() == 6   # 7 batches per epoch: steps at 3, 6, 7
    assert comp.mixed_precision.run_train is True and not torch.is_autocast_enabled('cpu')
    assert (torch.randn(3, 3) @ torch.randn(3, 3)).dtype == torch.float32
    assert comp.gradient_accumulation.count == eager.gradient_accumulation.count == 7

class AddL1(Callback):
    "A callback that changes the loss inside the step: it cannot run in a compiled step."
    def after_loss(self): self.learn.loss_grad = self.learn.loss_grad + 1e-3 * sum(p.abs().sum() for p in self.learn.model.parameters())

def test_callback_inside_the_step_falls_back_to_eager_with_a_message():
    eager = mlp_learner(cbs=AddL1())
    eager.fit(1)
    comp = mlp_learner(cbs=AddL1()).compile(step=True, backend='eager')
    n = _frames()
    with pytest.warns(UserWarning, match=r"AddL1 handles 'after_loss', an event inside the training step, so this fit runs "
                                         r"the training step eagerly"):
        comp.fit(1)
    assert _frames() == n and comp.compiled_step.compiled is False
    torch.testing.assert_close(_params(comp), _params(eager))    # the callback's work was done: not a silent skip
    with pytest.warns(UserWarning, match=r"ActivationStats puts hooks on the model's layers"):
        mlp_learner(cbs=ActivationStats()).compile(step=True, backend='eager').fit(1)

def test_cancel_batch_lr_find_and_checkpoint_state():
    class SkipSecond(Callback):
        def before_batch(self):
            if self.training and self.iter == 1: raise CancelBatchException()
    learn = mlp_learner().compile(step=True, backend='eager')
    learn.fit(1, cbs=SkipSecond())                 # 8 batches, one skipped before the step ran
    p = next(learn.model.parameters())
    assert learn.opt.state[p]['step'].item() == 7 and learn.compiled_step.compiled is False
    before = _params(learn).clone()
    lrs = learn.lr_find(num_it=8, show_plot=False)
    assert math.isfinite(lrs.valley) and torch.equal(_params(learn), before)   # lr_find put everything back
    state = learn.state_dict()                     # plain numbers for the hyper-parameters: loadable anywhere
    assert isinstance(state['opt']['param_groups'][0]['lr'], float)
    with warnings.catch_warnings():
        warnings.simplefilter('error')             # no recompile warning after lr_find
        learn.fit(1)

def test_teardown_after_an_exception_inside_the_compiled_step():
    calls = []
    def flaky_backend(gm, example_inputs):
        def run(*args):
            calls.append(1)
            if len(calls) == 9: raise RuntimeError('device lost')
            return gm.forward(*args)
        return run
    learn = mlp_learner(cbs=MixedPrecision('bf16')).compile(step=True, backend=flaky_backend)
    with pytest.raises(RuntimeError, match='device lost') as e:
        learn.fit(1)
    assert any('learn.compile(step=False)' in n for n in e.value.__notes__)
    assert '_do_one_batch' not in learn.__dict__ and learn.step_owner('backward') is None
    assert learn.mixed_precision.run_train is True and not torch.is_autocast_enabled('cpu') and torch.is_grad_enabled()
    g = learn.opt.param_groups[0]
    assert isinstance(g['lr'], float) and isinstance(g['betas'][0], float) and not learn.training
    learn.uncompile().fit(1)                       # eager again, and training works
    assert learn.cb(CompiledStep) is None and math.isfinite(learn.recorder.values[-1][1])

def test_a_model_that_cannot_compile_keeps_its_error_with_a_way_back():
    def broken_backend(gm, example_inputs): raise RuntimeError('backend unavailable')
    learn = mlp_learner().compile(step=True, backend=broken_backend)
    with pytest.raises(Exception, match='backend unavailable') as e:
        learn.fit(1)
    notes = ' '.join(getattr(e.value, '__notes__', ()))
    assert 'learn.compile(step=False)' in notes and 'learn.uncompile()' in notes

def test_ragged_last_batch_warns_once_with_the_fix():
    learn = mlp_learner(n=100).compile(step=True, backend='eager')     # batches of 32, 32, 32 and 4
    with pytest.warns(UserWarning, match=r"recompiled the training step in epoch 0, batch 3: the batch's shapes changed "
                                         r"from \(\(32, 16\), \(32,\)\) to \(\(4, 16\), \(4,\)\).*drop_last=True") as w:
        learn.fit(2)
    assert sum('recompiled' in str(x.message) for x in w) == 1
    assert learn.compiled_step.recompiles >= 1

def test_mode_and_bad_arguments():
    learn = mlp_learner()
    with pytest.raises(TypeError): learn.compile(step=True, no_such_option=1)
    assert learn.cb(CompiledStep) is None          # nothing was added
    learn.compile(step=True, backend='eager')
    learn.compile(step=True, backend='eager')      # compiling again replaces, never stacks
    assert sum(isinstance(c, CompiledStep) for c in learn.cbs) == 1
    learn.uncompile()
    assert learn.cb(CompiledStep) is None

class CpuFp16(MixedPrecision):
    "float16 autocast and a gradient scaler on the CPU (MixedPrecision keeps fp16 for GPUs): the scaler path, testable here."
    def __init__(self): super().__init__('fp16', init_scale=2.**10)
    def _check_device(self):
        self.device_type, self._autocast = 'cpu', torch.autocast('cpu', dtype=torch.float16)
        if self.scaler is None: self.scaler = torch.amp.GradScaler('cpu', init_scale=self.init_scale)

def test_fp16_scaler_combined_with_the_compiled_step():
    def cbs(): return [CpuFp16(), GradientClip(0.5), GradientAccumulation(2)]
    eager, comp = mlp_learner(cbs=cbs()), mlp_learner(cbs=cbs()).compile(step=True, backend='eager')
    n = _frames()
    eager.fit(2); comp.fit(2)
    assert comp.compiled_step.eager_reason is None and _frames() > n       # it did compile
    torch.testing.assert_close(torch.tensor(comp.recorder.raw_losses), torch.tensor(eager.recorder.raw_losses))
    torch.testing.assert_close(_params(comp), _params(eager))
    assert comp.cpu_fp16.scaler.get_scale() == eager.cpu_fp16.scaler.get_scale()   # the same growth and backoff
    assert comp.step_owner('backward') is None and not torch.is_autocast_enabled('cpu')

def test_resume_from_a_state_is_exact_in_compiled_mode():
    "Stopped after epoch 1 and resumed in a new process-like learner: the same weights, bit for bit, as without the stop."
    from fastcb.learner import _clone
    class KeepState(Callback):
        order = 99
        def after_epoch(self):
            if self.epoch == 0: self.state = _clone(self.learn.state_dict())
    def new():
        learn = mlp_learner(n=160, cbs=[GradientAccumulation(2), MixedPrecision('bf16')]).compile(step=True, backend='eager')
        learn.dls.train.shuffle = False          # the loader's order is the checkpoint module's business, not this test's
        return learn
    whole, snap = new(), KeepState()
    whole.add_cb(snap)
    whole.fit(3)
    resumed = new()
    resumed.add_cb(KeepState())
    resumed.create_opt()
    resumed.load_state_dict(snap.state)
    resumed.fit(3, start_epoch=1)
    assert resumed.compiled_step.eager_reason is None
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.parameters(), whole.model.parameters()))

def test_a_callback_joining_mid_fit_with_an_inside_event_switches_to_eager():
    class Watch(Callback):
        order = 99
        def before_fit(self): self.modes = []
        def after_train(self): self.modes.append(self.learn.compiled_step.compiled)
        def after_epoch(self):
            if self.epoch == 0: self.learn.add_cb(AddL1())      # joins at the next epoch
    learn = mlp_learner().compile(step=True, backend='eager')
    watch = Watch()
    with pytest.warns(UserWarning, match="AddL1 handles 'after_loss'"):
        learn.fit(3, cbs=watch)
    assert watch.modes == [True, False, False]

def test_channels_last_cnn_compiled_like_eager():
    def cnn_learner():
        torch.manual_seed(0)
        x, y = torch.randn(96, 3, 8, 8), torch.randint(0, 4, (96,))
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten(), nn.Linear(8, 4))
        learn = Learner(DataLoaders(TensorLoader(x, y, bs=32, shuffle=True, seed=0), None), model, nn.CrossEntropyLoss(),
                        lr=1e-2, cbs=[ChannelsLast(), MixedPrecision('bf16')], device='cpu')
        learn.remove_cb(ProgressCallback); learn.logger = noop
        return learn
    eager, comp = cnn_learner(), cnn_learner().compile(step=True, backend='eager')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # oneDNN's bf16 convolutions split their sums by thread: one thread, one rounding
    try: eager.fit(2); comp.fit(2)
    finally: torch.set_num_threads(threads)
    assert comp.compiled_step.eager_reason is None and comp.compiled_step.recompiles == 0
    torch.testing.assert_close(_params(comp), _params(eager))
    assert comp.model[0].weight.is_contiguous(memory_format=torch.channels_last)

def test_a_loss_of_several_numbers_is_explained():
    learn = mlp_learner(loss_func=nn.CrossEntropyLoss(reduction='none')).compile(step=True, backend='eager')
    with pytest.raises(RuntimeError) as e: learn.fit(1)
    assert any("reduction='mean'" in n for n in e.value.__notes__)
    assert '_do_one_batch' not in learn.__dict__

def test_graph_mode_on_the_cpu_is_the_compiled_step_without_a_graph():
    "mode='reduce-overhead' asks for a CUDA graph; on the CPU there is none, silently: the same result as the default mode."
    plain, graph_mode = mlp_learner().compile(step=True, backend='eager'), mlp_learner().compile(step=True, backend='eager', mode='reduce-overhead')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        plain.fit_one_cycle(2); graph_mode.fit_one_cycle(2)
    cs = graph_mode.compiled_step
    assert cs.eager_reason is None and not cs.graphed and cs.recompiles == 0
    assert torch.equal(torch.tensor(graph_mode.recorder.raw_losses), torch.tensor(plain.recorder.raw_losses))

def test_device_hypers_fill_only_writes_what_changed():
    opt = torch.optim.Adam(nn.Linear(2, 1).parameters(), lr=1e-3, betas=(0.9, 0.99))
    from fastcb.callback.compile import DeviceHypers
    hyp = DeviceHypers(opt)
    (g, _, lr_t), (_, _, (b1, b2)) = hyp.slots
    assert hyp.fill() == [1e-3, (0.9, 0.99)] and lr_t.item() == pytest.approx(1e-3)
    lr_t.fill_(7.)                       # not written again while the group's number is unchanged
    hyp.fill(); assert lr_t.item() == 7.
    g['lr'], g['betas'] = 2e-3, (0.8, 0.99)
    hyp.fill()
    assert lr_t.item() == pytest.approx(2e-3) and b1.item() == pytest.approx(0.8) and isinstance(g['lr'], float)

def test_accumulation_by_items_runs_eagerly_with_the_reason():
    learn = mlp_learner(cbs=GradientAccumulation(n_items=64)).compile(step=True, backend='eager')
    eager = mlp_learner(cbs=GradientAccumulation(n_items=64))
    with pytest.warns(UserWarning, match=r"counts items \(n_items=64\).*GradientAccumulation\(n_acc=...\)"): learn.fit(1)
    eager.fit(1)
    assert learn.compiled_step.eager_reason is not None
    assert torch.equal(torch.tensor(learn.recorder.raw_losses), torch.tensor(eager.recorder.raw_losses))

def test_each_learner_compiles_on_its_own():
    "What torch.compile learns from one learner (here: a ragged last batch, so the batch size is compiled dynamic) stays with it."
    for _ in range(2):   # the second learner sees the same shapes afresh: its own recompilation, with its warning
        learn = mlp_learner(n=100).compile(step=True, backend='eager')
        with pytest.warns(UserWarning, match="the batch's shapes changed"): learn.fit(1)
        assert learn.compiled_step.recompiles == 1

class GradNorms(Callback):
    "Keep `learn.step_stats['grad_norm']` after each training batch (device tensors, read once at the end)."
    wants_step_stats = ('grad_norm',)
    def before_fit(self): self.kept = []
    def after_batch(self):
        if self.training: self.kept.append(self.learn.step_stats.get('grad_norm'))

def _hand_written_norms(learn, n_epochs, max_norm=math.inf):
    "The learner's data, model and optimizer in a hand-written loop: what clip_grad_norm_ returns before each step."
    model, opt, norms = learn.model, torch.optim.Adam(learn.model.parameters(), lr=1e-2), []
    for _ in range(n_epochs):
        model.train()
        for xb, yb in learn.dls.train:
            learn.loss_func(model(xb), yb).backward()
            norms.append(nn.utils.clip_grad_norm_(model.parameters(), max_norm, foreach=True))
            opt.step(); opt.zero_grad()
    return torch.stack(norms)

@pytest.mark.parametrize('backend', ['eager', 'aot_eager'])
@pytest.mark.parametrize('clip', [None, 0.5])
def test_grad_norm_equal_in_eager_and_compiled_mode(backend, clip):
    def cbs(): return [GradNorms()] + ([] if clip is None else [GradientClip(clip)])
    eager, comp = mlp_learner(cbs=cbs()), mlp_learner(cbs=cbs()).compile(step=True, backend=backend)
    eager.fit(2)
    with warnings.catch_warnings():
        warnings.simplefilter('error')             # no fallback to eager, no recompilation
        comp.fit(2)
    assert comp.compiled_step.eager_reason is None
    e, c = torch.stack(eager.grad_norms.kept), torch.stack(comp.grad_norms.kept)
    assert e.shape == c.shape == (16,) and e.dtype == c.dtype == torch.float32
    hand = _hand_written_norms(mlp_learner(), 2, math.inf if clip is None else clip)
    assert torch.equal(e, hand)                    # eager: exactly what clip_grad_norm_ returns
    assert torch.equal(c[0], e[0])                 # compiled: the first step's gradients are the same ...
    torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-6)   # ... then lr is a float32 tensor: rounding only

def test_grad_norm_with_accumulation_compiled_is_published_at_each_step():
    def cbs(): return [GradNorms(), GradientAccumulation(3)]
    eager, comp = mlp_learner(cbs=cbs()), mlp_learner(cbs=cbs()).compile(step=True, backend='eager')
    eager.fit(1); comp.fit(1)
    assert comp.compiled_step.eager_reason is None
    # 8 batches: steps after batches 3, 6 and 8; a micro-batch leaves the last step's norm (none before the first step)
    assert eager.grad_norms.kept[:2] == comp.grad_norms.kept[:2] == [None, None]
    e, c = torch.stack(eager.grad_norms.kept[2:]), torch.stack(comp.grad_norms.kept[2:])
    assert len(set(map(float, e))) == 3 and torch.equal(e[0], e[2]) and not torch.equal(e[2], e[3])   # batches 3 to 8
    torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-6)

def test_an_event_inside_the_step_still_runs_the_step_eagerly_with_its_stats():
    "The fallback to eager is the same step, spec included: the stats are published, the clipping done."
    class ReadsGrads(Callback):
        def before_step(self): self.seen = True
    eager = mlp_learner(cbs=[GradNorms(), GradientClip(0.5)])
    comp = mlp_learner(cbs=[GradNorms(), GradientClip(0.5), ReadsGrads()]).compile(step=True, backend='eager')
    eager.fit(1)
    with pytest.warns(UserWarning, match=r"ReadsGrads handles 'before_step'"): comp.fit(1)
    assert comp.reads_grads.seen and comp.compiled_step.compiled is False
    assert torch.equal(torch.stack(comp.grad_norms.kept), torch.stack(eager.grad_norms.kept))
    assert torch.equal(_params(comp), _params(eager))
