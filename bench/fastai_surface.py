"""fastai's callback-facing surface, audited against fastai itself (issue 29).

    PYTHONPATH=. bench/.venv/bin/python bench/fastai_surface.py      # needs fastai: bench/.venv has it

1. The inventory, from fastai 2.8.12's own objects: every name a callback reaches (`Callback`'s attributes, the
   `Learner`'s through `GetAttr`, the model's through the `Learner`'s `GetAttr`), the `Recorder`'s attributes, the
   public names of `fastai.learner` and `fastai.callback.*`, and the `fastai.torch_core` helpers callbacks import.
2. A probe callback, run on fastai and on fastcb with the same tiny data, model, seed and SGD, logs the type, shape
   and value of every name at every event (twice: one probe before the `Recorder`, one after it).
3. Each name is classed: same / different (how) / absent (why), and written to the committed table
   `nbs/fastai_surface.csv` (rendered on "Coming from fastai"); what fastai's probe saw for every "same" name goes to
   `tests/fastai_surface_probe.json`, which `tests/test_fastai_surface.py` compares with fastcb's probe, without fastai.

The probe (`probe_fit`, `signature`, `compare`) imports no fastai: the test imports it from this file.
"""
from __future__ import annotations
import csv, importlib, inspect, json, math, re, sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
TABLE, PROBE = ROOT / 'nbs' / 'fastai_surface.csv', ROOT / 'tests' / 'fastai_surface_probe.json'
N_EPOCH, LR = 2, 0.1

# ---- The probe: no fastai needed ------------------------------------------------------------------------------
_time_re = re.compile(r'^\d+:\d\d(:\d\d)?$')

def signature(v, depth:int=0):
    "What ported code sees in `v`, comparable across libraries: its kind, type, shape and (small) values."
    if v is None: return ['None']
    if isinstance(v, bool): return ['bool', v]
    if isinstance(v, int): return ['int', v]
    if isinstance(v, float): return ['float', None if math.isnan(v) else v]
    if isinstance(v, str): return ['str', '<time>' if _time_re.match(v) else v]
    if isinstance(v, torch.Tensor):
        t = v.detach().float().cpu()
        vals = t.flatten().tolist() if t.numel() <= 24 else [t.sum().item(), t.abs().sum().item()]
        return ['Tensor', str(v.dtype), list(v.shape), bool(v.requires_grad), vals]
    if isinstance(v, Path): return ['Path', str(v)]
    if type(v).__name__ in ('L', 'list', 'tuple'):
        kind = 'list' if type(v).__name__ in ('L', 'list') else 'tuple'   # fastai's L is a list to ported code
        if depth >= 2: return [kind, len(v)]
        return [kind, len(v), [signature(o, depth + 1) for o in list(v)[:12]]]
    if isinstance(v, dict):
        if depth >= 2: return ['dict', sorted(map(str, v))]
        return ['dict', {str(k): signature(o, depth + 1) for k, o in list(v.items())[:12]}]
    if isinstance(v, torch.optim.Optimizer): return ['Optimizer', type(v).__name__]
    if (isinstance(v, type) or inspect.ismethod(v) or inspect.isfunction(v) or inspect.isbuiltin(v)
            or type(v).__name__ in ('method-wrapper', 'partial')): return ['callable']
    return ['object', type(v).__name__]

def _close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float): return math.isclose(a, b, rel_tol=2e-4, abs_tol=1e-6)
    if isinstance(a, list) and isinstance(b, list): return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict): return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b

def _kind(sig) -> str:
    return sig[0] if sig[0] not in ('list', 'tuple', 'dict') else f"{sig[0]} of {sig[1] if sig[0] != 'dict' else len(sig[1])}"

def _kinds_only(sig):
    "The signature without values: what a type-level comparison keeps."
    if sig[0] in ('int', 'float', 'str', 'bool'): return [sig[0]]
    if sig[0] == 'Tensor': return sig[:4]
    if sig[0] in ('list', 'tuple'): return [sig[0]] + ([[_kinds_only(s) for s in sig[2][:1]]] if len(sig) > 2 else [])
    if sig[0] == 'dict': return ['dict']
    return sig

def rle(seq:list) -> list:
    "Run-length encoding of a list of signatures: [[count, sig], ...]."
    out = []
    for s in seq:
        if out and out[-1][1] == s: out[-1][0] += 1
        else: out.append([1, s])
    return out

def unrle(runs:list) -> list: return [s for n, s in runs for _ in range(n)]

# Names whose value is a clock reading: compared by type only
VOLATILE = {'Recorder.start_epoch'}

def compare(fa:list, fc:list, events:list, values:bool=True) -> str|None:
    "`None` if the timelines `fa` (fastai) and `fc` (fastcb) agree; else where and how they first differ."
    if len(fa) != len(fc): return f"{len(fa)} firings on fastai, {len(fc)} on fastcb"
    for i, (a, b) in enumerate(zip(fa, fc)):
        if a[0] == 'raise': continue   # not set yet on fastai: ported code cannot rely on anything there
        if values and _close(a, b): continue
        if not values and _kinds_only(a) == _kinds_only(b): continue
        return f"at {events[i]}: fastai {json.dumps(a)[:160]}, fastcb {json.dumps(b)[:160]}"
    return None

def tiny_data():
    "Five items of 5 features, 3 classes: 3 training batches of 8, 2 validation batches of 8 (lists: the same order every time)."
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 5, generator=g), torch.randint(0, 3, (40,), generator=g)
    return [(x[i:i + 8], y[i:i + 8]) for i in range(0, 24, 8)], [(x[i:i + 8], y[i:i + 8]) for i in range(24, 40, 8)]

def tiny_model():
    torch.manual_seed(0)
    return nn.Linear(5, 3)

def probe_class(Callback, order:int, names:list, rec_names:list, timeline:list, log:dict, events:list):
    "A callback of library `Callback` that logs, at each event, the signature of `self.<name>` and `self.learn.recorder.<name>`."
    def fire(self, e):
        timeline.append(e)
        for n in names: log.setdefault(n, []).append(_read(lambda: getattr(self, n)))
        rec = self.learn.__dict__.get('recorder')
        for n in rec_names: log.setdefault('Recorder.' + n, []).append(_read(lambda: getattr(rec, n)))
    body = {'order': order, '_fire': fire}
    for e in events: body[e] = (lambda e: lambda self: self._fire(e))(e)
    return type(f'Probe{order}', (Callback,), body)

def _read(get):
    try: return signature(get())
    except Exception as ex: return ['raise', type(ex).__name__]

_events = ['before_fit', 'before_epoch', 'before_train', 'before_batch', 'after_pred', 'after_loss', 'before_backward',
           'after_backward', 'before_step', 'after_step', 'after_batch', 'after_train', 'before_validate',
           'after_validate', 'after_epoch', 'after_fit']
_all_fastai_events = set(_events) | {'after_create'} | {f'after_cancel_{s}' for s in ('batch', 'train', 'validate', 'epoch', 'fit', 'step', 'backward')}
PROBE_ORDERS = (0, 55)   # before the Recorder (50) and after it, as trackers (60) and loggers run

def probe_fit(lib:str, names:list, rec_names:list) -> dict:
    "Fit the tiny problem on `lib` ('fastai' or 'fastcb') with the two probes; {probe order: (timeline, {name: signatures})}."
    train, valid = tiny_data()
    if lib == 'fastai':
        from fastai.learner import Learner
        from fastai.data.core import DataLoaders
        from fastai.callback.core import Callback
        from fastai.callback.progress import ProgressCallback
        from fastai.losses import CrossEntropyLossFlat
        from fastai.metrics import accuracy
        from fastai.optimizer import SGD
        learn = Learner(DataLoaders(train, valid), tiny_model(), loss_func=CrossEntropyLossFlat(), opt_func=SGD, lr=LR,
                        metrics=accuracy)
    else:
        from fastcb.learner import Learner
        from fastcb.data import DataLoaders
        from fastcb.callback.core import Callback
        from fastcb.callback.progress import ProgressCallback
        from fastcb.losses import CrossEntropyLossFlat
        from fastcb.metrics import accuracy
        learn = Learner(DataLoaders(train, valid), tiny_model(), loss_func=CrossEntropyLossFlat(), opt_func=torch.optim.SGD,
                        lr=LR, metrics=accuracy, device='cpu')
    learn.remove_cb(ProgressCallback)
    out, probes = {}, []
    for order in PROBE_ORDERS:
        timeline, log = [], {}
        probes.append(probe_class(Callback, order, names, rec_names, timeline, log, _events)())
        out[order] = (timeline, log)
    with learn.no_logging(): learn.fit(N_EPOCH, cbs=probes)
    return out

# ---- fastai's helpers, called on the same inputs in both libraries -----------------------------------------
def _batch():
    t = torch.arange(6.).reshape(3, 2).requires_grad_()
    return (t * 2, [torch.zeros(3, dtype=torch.long)], {'w': t.double()})

def _model():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    m[0].weight.requires_grad_(False)
    return m

HELPER_CASES = {   # name -> calls of the helper `f` whose results are compared
    'to_detach': lambda f: [f(_batch()), f(_batch(), cpu=False), f(_batch(), gather=False)],
    'to_cpu': lambda f: [f(_batch())], 'to_float': lambda f: [f(_batch())], 'to_half': lambda f: [f(_batch())],
    'to_np': lambda f: [type(f(_batch())[0]).__name__],
    'to_concat': lambda f: [f([_batch(), _batch()]), f([])],
    'flatten_check': lambda f: [f(torch.arange(6.).reshape(2, 3), torch.zeros(6, 1))],
    'find_bs': lambda f: [f(_batch()), f(torch.zeros(5, 7)), f({'x': torch.zeros(4, 2)})],
    'find_device': lambda f: [str(f(_batch()))],
    'item_find': lambda f: [f(_batch()), f(_batch(), 2), f({'a': 1, 'b': 2}, 1)],
    'detuplify': lambda f: [f((4,)), f((4, 5))],
    'apply': lambda f: [f(lambda x: x * 2, _batch())],
    'one_param': lambda f: [f(_model())], 'params': lambda f: [f(_model())],
    'trainable_params': lambda f: [f(_model())], 'total_params': lambda f: [f(_model()), f(nn.ReLU())],
    'requires_grad': lambda f: [f(_model()), f(_model()[2])],
    'get_model': lambda f: [type(f(nn.DataParallel(_model()))).__name__],
    'maybe_gather': lambda f: [f(torch.arange(3.))],
}

def helper_results(f, name:str):
    "Signatures of what helper `f` returns on `HELPER_CASES[name]`'s inputs (or of the error it raises)."
    torch.manual_seed(0)
    try: return [signature(r) for r in HELPER_CASES[name](f)]
    except Exception as e: return [['raise', type(e).__name__]]

# ---- The inventory, from fastai ----------------------------------------------------------------------------------
TORCH_CORE = ['to_detach', 'to_cpu', 'to_device', 'to_float', 'to_half', 'to_np', 'to_concat', 'flatten_check',
              'find_bs', 'find_device', 'default_device', 'one_param', 'params', 'trainable_params', 'rank_distrib',
              'num_distrib', 'distrib_barrier', 'set_seed', 'apply', 'item_find', 'maybe_gather', 'tensor',
              'requires_grad', 'norm_bias_params', 'get_model', 'set_bn_eval', 'detuplify', 'concat', 'noop']

# fastai module -> the fastcb modules where its names are looked for
MODULES = {'fastai.learner': ['fastcb.learner', 'fastcb.recorder', 'fastcb.checkpoint'],
           'fastai.callback.core': ['fastcb.callback.core', 'fastcb.learner'],
           'fastai.callback.schedule': ['fastcb.callback.schedule'],
           'fastai.callback.tracker': ['fastcb.callback.tracker'],
           'fastai.callback.hook': ['fastcb.callback.hook'],
           'fastai.callback.progress': ['fastcb.callback.progress'],
           'fastai.callback.training': ['fastcb.callback.training', 'fastcb.callback.mixup'],
           'fastai.callback.fp16': ['fastcb.callback.training'],
           'fastai.callback.mixup': ['fastcb.callback.mixup'],
           'fastai.callback.preds': ['fastcb.callback.mixup'],
           'fastai.callback.tensorboard': ['fastcb.callback.tensorboard'],
           'fastai.metrics': ['fastcb.metrics', 'fastcb.recorder'],
           'fastai.torch_core': ['fastcb.recorder', 'fastcb.metrics', 'fastcb.learner', 'fastcb.callback.core',
                                 'fastcb.callback.hook']}

def _fastai_module(m:str):
    "fastai module `m`, or `None` when it needs a package bench/.venv lacks (tensorboard)."
    try: return importlib.import_module(m)
    except ImportError: return None

def _module_names(m:str) -> list:
    "The `__all__` of fastai module `m`, read from its source when it cannot be imported here."
    mod = _fastai_module(m)
    if mod is not None: return list(mod.__all__)
    import ast, importlib.util
    tree = ast.parse(Path(importlib.util.find_spec(m).origin).read_text())
    return next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                and any(getattr(t, 'id', None) == '__all__' for t in n.targets))

def _public(names) -> list: return sorted(n for n in names if not n.startswith('_'))

def inventory():
    "Names by kind, from fastai's own objects after a fit (instance attributes included)."
    from fastai.learner import Learner, Recorder
    from fastai.callback.core import Callback
    train, valid = tiny_data()
    from fastai.data.core import DataLoaders
    from fastai.optimizer import SGD
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    learn = Learner(DataLoaders(train, valid), tiny_model(), loss_func=CrossEntropyLossFlat(), opt_func=SGD, metrics=accuracy)
    from fastai.callback.progress import ProgressCallback
    learn.remove_cb(ProgressCallback)
    with learn.no_logging(): learn.fit(1)
    cb_names = _public(dir(Callback))
    # dir(learn) would list the model's attributes too (GetAttr): those are the model rows
    learn_names = [n for n in _public(set(dir(type(learn))) | set(vars(learn))) if n not in cb_names]
    cb_attr = {c.name for c in learn.cbs}
    learn_names = [n for n in learn_names if n not in cb_attr or n == 'recorder']
    model_names = [n for n in _public(dir(nn.Module)) if n not in learn_names and n not in cb_names]
    rec = learn.recorder
    rec_names = [n for n in _public(set(dir(type(rec))) | set(vars(rec))) if n not in cb_names]
    mods = {}
    for m in MODULES: mods[m] = TORCH_CORE if m == 'fastai.torch_core' else _public(_module_names(m))
    return cb_names, learn_names, model_names, rec_names, mods

# ---- Why: the reasons written by hand, for names the probe cannot judge or that differ on purpose ----------------
WHY = {
    # Callback
    '_default': 'fastcb callbacks fall through to the learner by `__getattr__`, not fastcore\'s `GetAttr`',
    'remove_on_fetch': 'fastai\'s FetchPredsCallback removes such callbacks; fastcb\'s switches every callback off (`run = False`)',
    # Learner
    'opt': 'a `torch.optim` optimizer with fastai\'s `hypers`/`set_hyper`/`set_hypers` on top, not fastai\'s `Optimizer`',
    'loss': 'a detached copy of `loss_grad` (fastai\'s `clone()` keeps the graph; `loss_grad` has it in both), and `None` '
            'before the first batch (fastai: `tensor(0.)`, set by `TrainEvalCallback.before_fit`)',
    'smooth_loss': 'a Python float computed when read (fastai: a 0-d CPU tensor set every batch, a host sync per batch)',
    'cbs': 'fastcb has no `CastToTensor` (batches are plain tensors already) and fastai\'s `L` is a list',
    'moms': 'an argument of `fit_one_cycle`, not of `Learner`',
    'train_bn': 'an argument of `freeze`/`freeze_to`, not of `Learner`',
    'wd_bn_bias': 'weight decay applies to every parameter of the groups: split them with `splitter` to exempt some',
    'export': 'pickles the whole learner (loading runs code from the file): save the weights and rebuild the learner in code',
    'tta': 'not available',
    'to_non_native_fp16': 'PyTorch\'s native autocast replaced it', 'to_non_native_fp32': 'PyTorch\'s native autocast replaced it',
    'to_contiguous': 'not needed: fastcb keeps the model as it is', 'to_channelslast': 'use `cbs=ChannelsLast()`',
    'ordered_cbs': '`show_training_loop()` prints every event\'s callbacks in order',
    'no_mbar': 'renamed `no_bar()`',
    'loss_not_reduced': '`get_preds(with_loss=True)`',
    'lock': 'fastai\'s lock for `fit` from several threads; fastcb refuses a fit inside a running loop instead',
    'create_mbar': 'ProgressCallback\'s flag; fastcb\'s bar chooses its mode itself (`FASTCB_PROGRESS`)',
    'show_results': 'vision learners only',
    'n_inp': 'read from `learn.dls.n_inp`',
    'model': '',
    'dl': '',
    'model_attr': 'fastai\'s `Learner` falls through to the model (`learn.parameters()`); fastcb\'s falls through to nothing, '
                  'so write `self.model.<name>`: the error says so',
    # Recorder
    'Recorder.losses': 'the same length at every event (it is read lazily: pending losses reach the host when it is read), '
                       'but its elements are floats, not 0-d tensors: `float(x)` works on both, `x.item()` only on fastai\'s',
    'Recorder.log': 'filled at the same moments; its `train_loss` is the epoch\'s mean (fastai: the smoothed loss)',
    'Recorder.values': 'the row\'s `train_loss` is the epoch\'s mean (fastai: the smoothed loss at the end of the epoch)',
    'final_record': 'the row\'s `train_loss` is the epoch\'s mean (fastai: the smoothed loss at the end of the epoch)',
    'n_iter': 'set before `before_train`/`before_validate` to the coming loader\'s length (fastai sets it after them, so '
              'fastai\'s `before_validate` sees the training loader\'s)',
    'splitter': 'the default is `None` (one parameter group); fastai\'s is the function `trainable_params`',
    'fastai.callback.core.event': 'fastcb\'s `event` is a namespace of the event names (`event.after_fit`), not a class',
    'fastai.torch_core.default_device': '`use=` (force the CPU or a GPU) is not an argument: pass `device=` to `Learner`',
    'fastai.learner.Learner': 'see `moms`, `train_bn`, `wd_bn_bias` above',
    'fastai.learner.CastToTensor': 'batches are plain tensors already (fastai\'s typed tensors are not used)',
    'fastai.learner.load_learner': 'unpickles a whole learner (runs code from the file): rebuild the learner in code and `load` the weights',
    'fastai.learner.save_model': '`learn.save` (atomic, weights_only-loadable)', 'fastai.learner.load_model': '`learn.load`',
    'fastai.learner.ValueMetric': 'write a `Metric` whose `value` calls the function',
    'fastai.learner.SkipToEpoch': '`fit(start_epoch=...)` or `fit(resume=...)`',
    'fastai.learner.before_batch_cb': 'a decorator making a callback from a function: subclass `Callback` with `before_batch`',
    'fastai.learner.replacing_yield': 'fastai\'s internal context manager; `learn.added_cbs`/`removed_cbs` cover its uses',
    'fastai.callback.hook.layer_info': '`learn.summary()` gives the layer table', 'fastai.callback.hook.module_summary': '`learn.summary()`',
    'fastai.torch_core.rank_distrib': '`learn.rank`', 'fastai.torch_core.num_distrib': '`learn.world_size`',
    'fastai.torch_core.distrib_barrier': '`torch.distributed.barrier()` where a process group exists',
    'fastai.torch_core.tensor': '`torch.tensor` / `torch.as_tensor`', 'fastai.torch_core.concat': '`to_concat` for batches',
    'fastai.torch_core.norm_bias_params': 'fastcb has no `wd_bn_bias`',
    'fastai.torch_core.set_seed': 'seed with `torch.manual_seed`; `fastcb.checkpoint` saves and restores every random state',
    'fastai.callback.fp16.NonNativeMixedPrecision': 'PyTorch\'s native autocast replaced it', 'fastai.callback.fp16.ModelToHalf': 'PyTorch\'s native autocast replaced it',
    'fastai.callback.fp16.AMPMode': '`MixedPrecision(\'fp16\')` or `MixedPrecision(\'bf16\')` (a string)',
    'fastai.callback.fp16.MixedPrecision': 'the first argument is `dtype`, a string (`\'bf16\'` by default, `\'fp16\'` for fastai\'s float16 with a gradient scaler): '
                                             'fastai\'s `amp_mode=` keyword is not accepted',
    'fastai.callback.core.FetchPredsCallback': '`reorder` is not an argument: fastcb\'s loaders are not reordered by `get_preds`',
    'fastai.callback.core.GatherPredsCallback': 'used by `get_preds`, which takes `with_input`/`with_loss`; saving to files and `concat_dim` are not arguments',
    'fastai.callback.hook.ActivationStats': 'its arguments are its own (`with_hist`, `every`, `modules`, `include_paramless`, `bins`, ...): fastai passes `**kwargs` to `HookCallback`',
    'fastai.metrics.AccumMetric': 'write a `Metric` (`reset`, `accumulate`, `value`) or pass a torchmetrics-style object',
    'fastai.metrics.skm_to_fastai': 'no scikit-learn dependency: pass a torchmetrics-style object',
    'Recorder.start_epoch': 'the epoch\'s start time is private (`_start`): `recorder.start_epoch` falls through to the learner\'s',
    'Recorder.cancel_train': 'the Recorder tracks cancelled stages itself',
    'Recorder.cancel_valid': 'the Recorder tracks cancelled stages itself',
}

WHY.update({
    'default_cbs': 'the `Learner(default_cbs=)` argument is not kept as an attribute',
    'to_detach': 'not a `Learner` method yet: `from fastcb.recorder import to_detach` (the same function)',
    'validation_context': 'fastai\'s context manager behind `validate`; `validate(cbs=...)` and `added_cbs` cover its uses',
    'Recorder.remove_on_fetch': 'fastcb\'s `FetchPredsCallback` switches every callback off (`run = False`) rather than removing some',
    'fastai.callback.schedule.annealer': 'the decorator behind fastai\'s schedule functions; fastcb\'s `SchedLin`, `SchedCos`, ... are classes called the same way',
    'fastai.callback.training.bn_types': 'not exported: `BnFreeze` keeps its own list of normalisation layers',
    'fastai.callback.training.set_bn_eval': 'not exported: `BnFreeze` does it', 'fastai.torch_core.set_bn_eval': 'not exported: `BnFreeze` does it',
    'fastai.callback.mixup.reduce_loss': 'fastcb\'s `MixUp` reduces the loss itself',
    'fastai.callback.preds.MCDropoutCallback': 'a few lines; fastai\'s ports unchanged (it uses only events and `learn` attributes)',
})
WHY_MODULE = {   # the reason for a module's names that have none of their own
    'fastai.metrics': 'write a `Metric` (`reset`, `accumulate`, `value`) or pass a torchmetrics-style object (`update`, `compute`, `reset`)',
    'fastai.callback.fp16': 'fastai\'s float16 master-weight machinery: PyTorch\'s autocast and `GradScaler` replace it',
    'fastai.callback.tensorboard': 'fastcb\'s `TensorBoardCallback` has no projector and no base class to share',
}

def _sig_params(f) -> list|None:
    try: sig = inspect.signature(f)
    except (TypeError, ValueError): return None
    return [(p.name, p.kind) for p in sig.parameters.values() if p.name != 'self']

def _params_compatible(fa, fc) -> str|None:
    "Why a call written for fastai's `fa` may fail on fastcb's `fc`, or `None` if every fastai argument is accepted."
    a, c = _sig_params(fa), _sig_params(fc)
    if a is None or c is None: return None
    c_names = [n for n, _ in c]
    var_kw = any(k == inspect.Parameter.VAR_KEYWORD for _, k in c)
    missing = [n for n, k in a if k not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
               and n not in c_names and not var_kw and n not in _all_fastai_events]
    pos_a = [n for n, k in a if k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    pos_c = [n for n, k in c if k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    order = [n for n in pos_a if n in pos_c and pos_a.index(n) != pos_c.index(n)]
    if missing: return f"fastcb takes no {', '.join(missing)}"
    if order: return f"positional order differs at {order[0]} (fastai {pos_a}, fastcb {pos_c})"
    return None

def _static(fa_obj, fc_obj) -> tuple[str, str]:
    "Compare two module-level names (functions, classes, objects) as a port uses them: called with fastai's arguments."
    if fa_obj is None: return 'same', 'fastai\'s module needs a package bench/.venv lacks: compared by name only'
    if type(fa_obj).__name__ == 'AccumMetric' and isinstance(fc_obj, type):   # `metrics=rmse`: fastcb instantiates the class
        return 'same', 'passed as `metrics=`: fastai\'s is a metric object, fastcb\'s a `Metric` class'
    if callable(fa_obj) and callable(fc_obj):
        why = _params_compatible(fa_obj.__init__ if isinstance(fa_obj, type) else fa_obj,
                                 fc_obj.__init__ if isinstance(fc_obj, type) else fc_obj)
        return ('different', why) if why else ('same', '')
    if callable(fa_obj) != callable(fc_obj): return 'different', f"fastai's is {'' if callable(fa_obj) else 'not '}callable, fastcb's is {'' if callable(fc_obj) else 'not '}"
    missing = [n for n in _public(dir(fa_obj)) if not hasattr(fc_obj, n) and n not in dir(type(fa_obj))]
    return ('different', f"fastcb's lacks {', '.join(missing[:8])}") if missing else ('same', '')

def main():
    cb_names, learn_names, model_names, rec_names, mods = inventory()
    probe_names = cb_names + learn_names + model_names
    runs = {lib: probe_fit(lib, probe_names, rec_names) for lib in ('fastai', 'fastcb')}
    rows, keep, helpers = [], {}, {}
    from fastcb.learner import Learner as FcLearner
    fastcb_learner_names = set(dir(FcLearner))
    kinds = ([('Callback', n) for n in cb_names] + [('Learner', n) for n in learn_names] +
             [('model (via Learner)', n) for n in model_names] + [('Recorder', 'Recorder.' + n) for n in rec_names])
    for kind, name in kinds:
        fa = {o: runs['fastai'][o][1][name] for o in PROBE_ORDERS}
        fc = {o: runs['fastcb'][o][1][name] for o in PROBE_ORDERS}
        events = {o: runs['fastai'][o][0] for o in PROBE_ORDERS}
        fa_absent = all(s[0] == 'raise' for o in PROBE_ORDERS for s in fa[o])
        fc_absent = all(b[0] == 'raise' for o in PROBE_ORDERS for a, b in zip(fa[o], fc[o]) if a[0] != 'raise')
        short = name.removeprefix('Recorder.')
        why = WHY.get(name, WHY.get('model_attr') if kind.startswith('model') else '')
        if kind.startswith('model') and name in fastcb_learner_names: why = ''
        if fa_absent: status, how = 'fastai-only-in-other-states', 'fastai raises on it during a plain fit too'
        elif fc_absent: status, how = 'absent', why or 'not in fastcb'
        else:
            fc_learn_has = kind.startswith('model') and name in fastcb_learner_names
            vals = name not in VOLATILE
            diff = next((d for o in PROBE_ORDERS if (d := compare(fa[o], fc[o], events[o], vals)) is not None), None)
            if fc_learn_has: diff = f"resolves to fastcb's `Learner.{name}`, not the model's: write `self.model.{name}`"
            if diff is None:
                status, how = 'same', '' 
                keep[name] = {str(o): rle(fa[o]) for o in PROBE_ORDERS}
            else:
                tdiff = None if fc_learn_has else next((d for o in PROBE_ORDERS if (d := compare(fa[o], fc[o], events[o], values=False)) is not None), None)
                status = 'different'
                how = (why + '; ' if why else '') + ('values differ, ' if tdiff is None and not fc_learn_has else '') + (diff if tdiff is None else tdiff)
        rows.append({'name': name, 'kind': kind, 'status': status, 'how': how})
    for m, names in mods.items():
        fa_mod = _fastai_module(m)
        for n in names:
            fa_obj = getattr(fa_mod, n, None)
            hit = next(((fm, getattr(importlib.import_module(fm), n)) for fm in MODULES[m]
                        if hasattr(importlib.import_module(fm), n)), None)
            if hit is None:
                allmod = importlib.import_module('fastcb.all')
                hit = (('fastcb.all', getattr(allmod, n)) if hasattr(allmod, n) else None)
            if hit is None: status, how = 'absent', WHY.get(f'{m}.{n}') or WHY_MODULE.get(m, 'not in fastcb')
            else:
                status, how = _static(fa_obj, hit[1])
                if status == 'same' and n in HELPER_CASES:   # called on the same inputs: the results must agree too
                    fa_res, fc_res = helper_results(fa_obj, n), helper_results(hit[1], n)
                    if _close(fa_res, fc_res): helpers[n] = {'module': hit[0], 'results': fa_res}
                    else: status, how = 'different', f"on the same inputs, fastai returns {json.dumps(fa_res)[:200]}, fastcb {json.dumps(fc_res)[:200]}"
                if status != 'same' and f'{m}.{n}' in WHY: how = WHY[f'{m}.{n}'] + '; ' + how
                how = f"in {hit[0]}" + (f"; {how}" if how else '')
            rows.append({'name': f'{m}.{n}', 'kind': 'module function' if m != 'fastai.torch_core' else 'torch_core helper',
                         'status': status, 'how': how})
    with open(TABLE, 'w', newline='') as f:
        w = csv.DictWriter(f, ['name', 'kind', 'status', 'how'])
        w.writeheader(); w.writerows(rows)
    probe = {'fastai': __import__('fastai').__version__, 'torch': torch.__version__, 'n_epoch': N_EPOCH,
             'timelines': {str(o): runs['fastai'][o][0] for o in PROBE_ORDERS}, 'same': keep,
             'recorder_names': rec_names, 'helpers': helpers, 'volatile': sorted(VOLATILE)}
    PROBE.write_text(json.dumps(probe, indent=0, sort_keys=True) + '\n')
    counts = {}
    for r in rows: counts[r['status']] = counts.get(r['status'], 0) + 1
    print(f"fastai {probe['fastai']}: {len(rows)} names -> {counts}; wrote {TABLE.relative_to(ROOT)} and {PROBE.relative_to(ROOT)}")

if __name__ == '__main__': main()
