"""Callbacks written in fastai v2's style, run on fastcb with only their imports changed.

Each test covers one cause that broke ports from fastai (issue 13): the callback's body is as it would be in fastai,
and where fastai's behaviour is cheap to reproduce, the test computes the expected observable result from first
principles (a manual training loop, the definition of the loss) rather than hard-coding it.
"""
import copy, math, os, warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

# ---- The imports: the only lines a port changes ----------------------------------------------------------------
from fastcb.callback.core import Callback, CancelBatchException, CancelFitException
from fastcb.callback.tracker import TrackerCallback, SaveModelCallback
from fastcb.callback.schedule import SchedCos
from fastcb.data import DataLoaders
from fastcb.learner import Learner
from fastcb.losses import CrossEntropyLossFlat, BCEWithLogitsLossFlat, MSELossFlat
from fastcb.recorder import find_bs

torch.set_num_threads(1)


# ---- Tiny problems ----------------------------------------------------------------------------------------------
def batches(x, y, bs):
    "A loader as a list of batches: the same order every epoch, so a manual loop can replay it."
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]

def classif_dls(n=64, bs=16, n_in=6, n_cls=3, seed=0, onehot=False):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n + 32, n_in, generator=g), torch.randint(0, n_cls, (n + 32,), generator=g)
    if onehot: y = F.one_hot(y, n_cls).float()
    loss = BCEWithLogitsLossFlat() if onehot else CrossEntropyLossFlat()
    return DataLoaders(batches(x[:n], y[:n], bs), batches(x[n:], y[n:], 32), loss_func=loss)

def regression_dls(n=32, bs=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 8, 3, generator=g)
    y = x @ torch.tensor([[1.], [-2.], [0.5]]) + 0.1 * torch.randn(n + 8, 1, generator=g)
    return DataLoaders(batches(x[:n], y[:n], bs), batches(x[n:], y[n:], 8), loss_func=MSELossFlat())

def learner(dls, model=None, **kw):
    torch.manual_seed(0)
    n_in = dls.train[0][0].shape[1]
    n_out = dls.train[0][1].shape[1] if dls.train[0][1].dim() > 1 else 3
    learn = Learner(dls, model if model is not None else nn.Linear(n_in, n_out), default_cbs=True, **kw)
    learn.remove_cb(learn.cb('ProgressCallback'))
    return learn

def fit(learn, *args, **kw):
    with learn.no_logging(): learn.fit(*args, **kw)


# ---- 1. learn.x / learn.y ---------------------------------------------------------------------------------------
class FastaiMixUp(Callback):
    "A MixUp in fastai's style (the y_int test of fastai's MixHandler, learn.x/learn.y, lerp with per-item weights)."
    run_valid = False
    def __init__(self, alpha=0.4): self.distrib = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha))
    def before_train(self):
        self.stack_y = getattr(self.learn.loss_func, 'y_int', False)
        if self.stack_y: self.old_lf, self.learn.loss_func = self.learn.loss_func, self.lf
    def after_train(self):
        if self.stack_y: self.learn.loss_func = self.old_lf
    def after_cancel_fit(self): self.after_train()
    def lf(self, pred, *yb):
        if not self.training: return self.old_lf(pred, *yb)
        self.old_lf.reduction = 'none'
        loss = torch.lerp(self.old_lf(pred, *self.yb1), self.old_lf(pred, *yb), self.lam)
        self.old_lf.reduction = 'mean'
        return loss.mean()
    def before_batch(self):
        lam = self.distrib.sample((self.y.size(0),)).squeeze().to(self.x.device)
        lam = torch.stack([lam, 1 - lam], 1)
        self.lam = lam.max(1)[0]
        shuffle = torch.randperm(self.y.size(0)).to(self.x.device)
        self.shuffle = shuffle
        xb1, self.yb1 = tuple(t[shuffle] for t in self.xb), tuple(t[shuffle] for t in self.yb)
        self.learn.xb = tuple(torch.lerp(a, b, self.lam.view(-1, *[1] * (b.dim() - 1))) for a, b in zip(xb1, self.xb))
        if not self.stack_y:
            self.learn.yb = tuple(torch.lerp(a, b, self.lam.view(-1, *[1] * (b.dim() - 1))) for a, b in zip(self.yb1, self.yb))

class KeepBatch(Callback):
    "Keep the batch as the loader gave it (runs before the MixUp)."
    order = -5
    def before_batch(self):
        if self.training: self.x0, self.y0 = self.x.clone(), self.y.clone()

class CheckMix(Callback):
    "Check, from first principles, what the mix did to the inputs, targets and loss of every training batch."
    order = 5
    def __init__(self): self.n = 0
    def before_batch(self):
        if not self.training: return
        mx, kb = self.learn.fastai_mix_up, self.learn.keep_batch
        lam = mx.lam.view(-1, 1)
        torch.testing.assert_close(self.x, lam * kb.x0 + (1 - lam) * kb.x0[mx.shuffle])
        if mx.stack_y: assert torch.equal(self.y, kb.y0)                      # class indices are never blended
        else: torch.testing.assert_close(self.y, lam * kb.y0 + (1 - lam) * kb.y0[mx.shuffle])
    def after_loss(self):
        if not self.training: return
        mx, kb = self.learn.fastai_mix_up, self.learn.keep_batch
        if mx.stack_y:   # the loss is mixed: lam * CE(pred, y) + (1 - lam) * CE(pred, y[shuffle]), averaged
            ce = lambda t: F.cross_entropy(self.pred, t, reduction='none')
            expected = (mx.lam * ce(kb.y0) + (1 - mx.lam) * ce(kb.y0[mx.shuffle])).mean()
        else: expected = F.binary_cross_entropy_with_logits(self.pred, self.y)   # the targets were mixed
        torch.testing.assert_close(self.loss, expected)
        self.n += 1

def test_mixup_y_int_mixes_the_loss_on_cross_entropy_loss_flat():
    learn = learner(classif_dls(), cbs=[KeepBatch(), FastaiMixUp(), CheckMix()])
    lf = learn.loss_func
    assert lf.y_int
    fit(learn, 2)
    assert learn.check_mix.n == 2 * len(learn.dls.train)
    assert learn.loss_func is lf                                               # put back after training

def test_multilabel_mixup_mixes_the_targets():
    learn = learner(classif_dls(onehot=True), cbs=[KeepBatch(), FastaiMixUp(), CheckMix()])
    assert not getattr(learn.loss_func, 'y_int', False)
    fit(learn, 1)
    assert learn.check_mix.n == len(learn.dls.train)

class DropEasyItems(Callback):
    "A batch-loss filter in fastai's style: keep only the items of class != 0, by assigning learn.x / learn.y."
    def before_batch(self):
        keep = self.y != 0
        self.learn.x, self.learn.y = self.x[keep], self.y[keep]
        self.seen = getattr(self, 'seen', 0) + int(keep.sum())

def test_assigning_learn_x_and_y():
    dls = classif_dls()
    learn = learner(dls, cbs=DropEasyItems())
    fit(learn, 1)
    n_kept = sum(int((y != 0).sum()) for _, y in dls.train) + sum(int((y != 0).sum()) for _, y in dls.valid)
    assert learn.drop_easy_items.seen == n_kept
    # the validation loss is that of the kept items only, as fastai would compute it (mean over batches of batch means)
    with torch.no_grad():
        losses = [(F.cross_entropy(learn.model(x[y != 0]), y[y != 0]), int((y != 0).sum())) for x, y in dls.valid]
    expected = sum(l * n for l, n in losses) / sum(n for _, n in losses)
    assert math.isclose(learn.recorder.values[-1][1], float(expected), rel_tol=1e-5)


# ---- 2. opt.hypers / set_hyper / set_hypers ---------------------------------------------------------------------
def test_create_opt_gives_fastai_api():
    learn = learner(regression_dls())
    learn.create_opt()
    assert isinstance(learn.opt, torch.optim.Optimizer)
    assert len(learn.opt.hypers) == len(learn.opt.param_groups)
    assert learn.opt.hypers[0]['mom'] == learn.opt.param_groups[0]['betas'][0]

class ReduceLROnPlateau(TrackerCallback):
    "fastai 2.8's ReduceLROnPlateau, unchanged."
    order = TrackerCallback.order + 2
    def __init__(self, monitor='valid_loss', comp=None, min_delta=0., patience=1, factor=10., min_lr=0, reset_on_fit=True):
        super().__init__(monitor=monitor, comp=comp, min_delta=min_delta, reset_on_fit=reset_on_fit)
        self.patience, self.factor, self.min_lr = patience, factor, min_lr
    def before_fit(self): self.wait = 0; super().before_fit()
    def after_epoch(self):
        super().after_epoch()
        if self.new_best: self.wait = 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = self.opt.hypers[-1]['lr']
                for h in self.opt.hypers: h['lr'] = max(h['lr'] / self.factor, self.min_lr)
                self.wait = 0
                if self.opt.hypers[-1]["lr"] < old_lr:
                    print(f'Epoch {self.epoch}: reducing lr to {self.opt.hypers[-1]["lr"]}')

def test_fastai_reduce_lr_on_plateau(capsys):
    # a learning rate so high that the validation loss cannot improve on the first epoch's
    learn = learner(regression_dls(), lr=5., opt_func=torch.optim.SGD, cbs=ReduceLROnPlateau(patience=1, factor=10.))
    lrs = []
    class LRLog(Callback):
        order = 90
        def after_epoch(self): lrs.append(self.opt.param_groups[0]['lr'])
    fit(learn, 4, cbs=LRLog())
    vals = [v[1] for v in learn.recorder.values]
    # what fastai's code decides, replayed from the recorded values: divide by 10 after each epoch without a new best
    best, expected, lr, wait = math.inf, [], 5., 0
    for v in vals:
        if v < best: best, wait = v, 0
        else:
            wait += 1
            if wait >= 1: lr, wait = lr / 10, 0
        expected.append(lr)
    assert lrs == pytest.approx(expected)
    assert expected[-1] < 5.                                                   # it did reduce
    assert f'reducing lr to {expected[-1]}' in capsys.readouterr().out

class FastaiStyleScheduler(Callback):
    "A ParamScheduler in fastai's style: set_hyper from pct_train before every batch."
    order = 60
    def __init__(self, scheds): self.scheds = scheds
    def before_batch(self):
        if self.training:
            for n, f in self.scheds.items(): self.opt.set_hyper(n, f(self.pct_train))

class LogHypers(Callback):
    "A logging integration in fastai's style: every hyper-parameter of every group, by fastai's name."
    order = 61
    def before_fit(self): self.logged = []
    def after_batch(self):
        if self.training: self.logged.append({f'{k}_{i}': v for i, h in enumerate(self.opt.hypers) for k, v in h.items()})

def test_set_hyper_and_logging_integration():
    body_head = lambda m: [[m[0].weight, m[0].bias], [m[1].weight, m[1].bias]]
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    lr_sched, mom_sched = SchedCos(1e-2, 1e-4), SchedCos(0.95, 0.85)
    learn = learner(regression_dls(), model=model, splitter=body_head,
                    cbs=[FastaiStyleScheduler({'lr': lr_sched, 'mom': mom_sched}), LogHypers()])
    pcts = []
    class Pct(Callback):
        order = 59
        def before_batch(self):
            if self.training: pcts.append(self.pct_train)
    fit(learn, 2, cbs=Pct())
    logged = learn.log_hypers.logged
    assert len(logged) == 2 * len(learn.dls.train)
    for rec, pct in zip(logged, pcts):
        for i in (0, 1):
            assert rec[f'lr_{i}'] == pytest.approx(lr_sched(pct))
            assert rec[f'mom_{i}'] == pytest.approx(mom_sched(pct))
            assert rec[f'sqr_mom_{i}'] == 0.999 and rec[f'wd_{i}'] == 0 and rec[f'eps_{i}'] == 1e-8
    g = learn.opt.param_groups
    assert g[1]['betas'][0] == pytest.approx(mom_sched(pcts[-1]))                # the torch optimizer is the truth
    learn.opt.set_hypers(lr=slice(1e-3), wd=0.1)
    assert [x['lr'] for x in g] == pytest.approx([1e-4, 1e-3]) and [x['weight_decay'] for x in g] == [0.1, 0.1]


# ---- 4. the tracker's surface -----------------------------------------------------------------------------------
class Trial:
    def __init__(self, prune_above): self.prune_above, self.reports = prune_above, []
    def report(self, value, step): self.reports.append((step, value))
    def should_prune(self): return bool(self.reports) and self.reports[-1][1] > self.prune_above

class TrialPruned(Exception): pass

class PruningCallback(TrackerCallback):
    "An optimisation library's fastai v2 pruning callback, unchanged but for the library's own names."
    def __init__(self, trial, monitor='valid_loss'):
        super().__init__(monitor=monitor)
        self.trial = trial
    def after_epoch(self):
        super().after_epoch()
        self.trial.report(self.recorder.final_record[self.idx], step=self.epoch)
        if self.trial.should_prune(): raise CancelFitException()
    def after_fit(self):
        super().after_fit()
        if self.trial.should_prune(): raise TrialPruned(f"Trial was pruned at epoch {self.epoch}.")

def test_tracker_subclass_reads_idx_best_comp_and_calls_super_after_fit():
    learn = learner(regression_dls(), lr=0.05, opt_func=torch.optim.SGD, cbs=PruningCallback(Trial(prune_above=1e9)))
    fit(learn, 3)
    pc = learn.pruning
    vals = [v[1] for v in learn.recorder.values]
    assert [v for _, v in pc.trial.reports] == vals                            # final_record[idx] is the valid_loss
    assert pc.idx == learn.recorder.metric_names[1:].index('valid_loss')
    assert pc.best == min(vals) and pc.comp(1., 2.)                            # lower is better for a loss
    learn = learner(regression_dls(), lr=0.05, opt_func=torch.optim.SGD, cbs=PruningCallback(Trial(prune_above=0.)))
    with pytest.raises(TrialPruned, match='pruned at epoch 0'): fit(learn, 3)
    assert len(learn.recorder.values) == 1


# ---- 5. SaveModelCallback passing weights_only to learn.load ----------------------------------------------------
class FastaiSaveModel(SaveModelCallback):
    "fastai 2.8's SaveModelCallback.after_fit: it passes weights_only=False to learn.load."
    def after_fit(self, **kwargs):
        if self.at_end: self._save(f'{self.fname}')
        elif not self.every_epoch: self.learn.load(f'{self.fname}', with_opt=self.with_opt, weights_only=False)

def test_save_model_callback_with_weights_only(tmp_path):
    snaps = []
    class Snap(Callback):
        order = 90
        def after_epoch(self): snaps.append(copy.deepcopy(self.model.state_dict()))
    learn = learner(regression_dls(), lr=2., opt_func=torch.optim.SGD, path=tmp_path, cbs=[FastaiSaveModel(), Snap()])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        fit(learn, 4)
    vals = [v[1] for v in learn.recorder.values]
    best = vals.index(min(vals))
    for k, v in learn.model.state_dict().items(): assert torch.equal(v, snaps[best][k])   # the best epoch's weights
    assert any('weights_only=False' in str(x.message) for x in w)              # told that it can run code from the file


# ---- 6. a CSVLogger that writes its own header ------------------------------------------------------------------
class CSVLogger(Callback):
    "fastai's CSVLogger (without pandas' read_log), unchanged."
    order = 60
    def __init__(self, fname='history.csv', append=False): self.fname, self.append = Path(fname), append
    def before_fit(self):
        if hasattr(self, "gather_preds"): return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = (self.path / self.fname).open('a' if self.append else 'w')
        self.file.write(','.join(self.recorder.metric_names) + '\n')
        self.old_logger, self.learn.logger = self.logger, self._write_line
    def _write_line(self, log):
        self.file.write(','.join([str(t) for t in log]) + '\n')
        self.file.flush()
        os.fsync(self.file.fileno())
        self.old_logger(log)
    def after_fit(self):
        if hasattr(self, "gather_preds"): return
        self.file.close()
        self.learn.logger = self.old_logger

class RoundedCSVLogger(CSVLogger):
    "A user's subclass: four decimals."
    def _write_line(self, log): super()._write_line([round(t, 4) if isinstance(t, float) else t for t in log])

@pytest.mark.parametrize('cls', [CSVLogger, RoundedCSVLogger])
def test_csv_logger_header_once(tmp_path, cls):
    learn = learner(regression_dls(), path=tmp_path, cbs=cls())
    with learn.no_logging(): learn.fit(3)
    lines = (tmp_path / 'history.csv').read_text().splitlines()
    names = learn.recorder.metric_names
    assert lines[0] == ','.join(names)
    assert len(lines) == 1 + 3                                                 # the header once, then one row per epoch
    for e, (line, vals) in enumerate(zip(lines[1:], learn.recorder.values)):
        row = line.split(',')
        assert len(row) == len(names) and row[0] == str(e)
        for got, want in zip(row[1:3], vals[:2]):
            assert float(got) == pytest.approx(want, abs=1e-4 if cls is RoundedCSVLogger else 1e-6)


# ---- 7. a helper method whose name extends an event name --------------------------------------------------------
def test_helper_named_after_an_event_is_allowed_and_typos_are_not():
    class Notify(Callback):
        def after_fit(self): self.after_fit_exception(None)
        def after_fit_exception(self, e): self.calls = getattr(self, 'calls', 0) + 1
    learn = learner(regression_dls(), cbs=Notify())
    fit(learn, 1)
    assert learn.notify.calls == 1                                             # a helper: called by its owner only
    for typo in ('after_epcoh', 'on_epoch_end', 'begin_fit', 'begin_batch', 'begin_train', 'begin_validate'):
        with pytest.raises(TypeError, match='is not a fastcb event'):
            type('Typo', (Callback,), {typo: lambda self: None})


# ---- 8. fastai's GradientAccumulation ---------------------------------------------------------------------------
class GradientAccumulation(Callback):
    "fastai's GradientAccumulation, unchanged (order: MixedPrecision.order - 4)."
    order, run_valid = 6, False
    def __init__(self, n_acc=32): self.n_acc = n_acc
    def before_fit(self): self.count = 0
    def after_loss(self): self.learn.loss_grad /= self.n_acc / find_bs(self.learn.yb)
    def before_step(self):
        self.learn.loss_grad *= self.n_acc / find_bs(self.learn.yb)
        self.count += find_bs(self.learn.yb)
        if self.count < self.n_acc: raise CancelBatchException()
        else: self.count = 0

def test_gradient_accumulation_matches_a_manual_loop_and_records_the_true_loss():
    dls, n_acc, lr = regression_dls(n=32, bs=4), 12, 0.05
    learn = learner(dls, lr=lr, opt_func=torch.optim.SGD, cbs=GradientAccumulation(n_acc))
    w0 = copy.deepcopy(learn.model)
    fit(learn, 2)
    # the same training by hand: divide each batch's loss by n_acc / bs, step once n_acc items have been seen
    model, count, losses = w0, 0, []
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(2):
        for x, y in dls.train:
            loss = F.mse_loss(model(x), y)
            losses.append(loss.item())
            (loss / (n_acc / len(y))).backward()
            count += len(y)
            if count >= n_acc: opt.step(); opt.zero_grad(); count = 0
    for a, b in zip(learn.model.parameters(), model.parameters()): torch.testing.assert_close(a, b)
    assert learn.recorder.raw_losses == pytest.approx(losses, rel=1e-5)        # the undivided loss, as fastai records it


# ---- 9. a recurrent model with reset() --------------------------------------------------------------------------
class TinyRNN(nn.Module):
    "A recurrent model carrying its hidden state from batch to batch (as fastai's language models do)."
    def __init__(self):
        super().__init__()
        self.rnn, self.head, self.h, self.resets = nn.RNN(3, 5, batch_first=True), nn.Linear(5, 1), None, 0
    def reset(self): self.h, self.resets = None, self.resets + 1
    def forward(self, x):
        out, h = self.rnn(x, self.h)
        self.h = h.detach()
        return self.head(out[:, -1])

class ModelResetter(Callback):
    "fastai's ModelResetter, unchanged."
    def before_train(self): self.model.reset()
    def before_validate(self): self.model.reset()
    def after_fit(self): self.model.reset()

def rnn_dls(n=32, bs=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + 8, 4, 3, generator=g)
    y = x.sum((1, 2))[:, None]
    return DataLoaders(batches(x[:n], y[:n], bs), batches(x[n:], y[n:], 8), loss_func=MSELossFlat())

def test_rnn_reset_like_fastai():
    model = TinyRNN()
    learn = learner(rnn_dls(), model=model)
    fit(learn, 2)
    assert model.resets == 1                                                   # fastai resets the model when fit starts
    firsts = []
    class FirstValid(Callback):
        order = 90
        def after_pred(self):
            if not self.training and self.iter == 0: firsts.append((self.x.clone(), self.pred.clone()))
    model = TinyRNN()
    learn = learner(rnn_dls(), model=model, cbs=ModelResetter())
    fit(learn, 2, cbs=FirstValid())
    assert model.resets == 1 + 2 * 2 + 1                                       # before_fit, each train and validation, after_fit
    x, pred = firsts[-1]   # the last validation starts from a zero hidden state, with the final weights
    with torch.no_grad():
        out, _ = model.rnn(x, None)
        torch.testing.assert_close(pred, model.head(out[:, -1]))


# ---- On a GPU: MixUp and CutMix draw on the host, so they add no host-device synchronisation per batch -------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
@pytest.mark.parametrize('kind', ['MixUp', 'CutMix'])
def test_gpu_mix_sync_count_does_not_grow(kind, capsys):
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from sync_count import fit_syncs
    from fastcb.callback import mixup
    def make(n_batches, bs=64):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n_batches * bs, 1, 8, 8, generator=g).cuda()
        y = torch.randint(0, 10, (n_batches * bs,), generator=g).cuda()
        bl = batches(x, y, bs)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))
        learn = Learner(DataLoaders(bl, bl[:5], device='cuda', loss_func=CrossEntropyLossFlat()), model, cbs=getattr(mixup, kind)())
        learn.remove_cb(learn.cb('ProgressCallback'))
        return learn
    n100, n200 = fit_syncs(make(100)), fit_syncs(make(200))
    with capsys.disabled(): print(f"\n[{kind}] host syncs: 100 batches -> {n100}, 200 -> {n200}")
    assert n200 == n100, (n100, n200)
