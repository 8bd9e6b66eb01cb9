"""The fault injector and the checks of the fault sweep (tests/test_fault_sweep.py), and its distributed worker.

Run under `torchrun --nproc_per_node 2`, this file sweeps DDP (gloo, CPU): every case raises on every rank at once, so
the ranks stay in step; each rank writes its results to `result<rank>.json` in the launch's folder, then the last case raises on rank 1 only,
and the job must end with that error."""
import datetime, json, os, threading
from pathlib import Path
import torch
from torch import nn
from fastcb.all import *
from fastcb.callback.core import _fit_events, _inner_loop
from fastcb.learner import _process_state

EXCEPTIONS = (RuntimeError, KeyboardInterrupt)
ONE_RANK_EVENT = 'before_validate'   # the fault on rank 1 alone: rank 0 then waits in the epoch's reduction

# ---- The injector ------------------------------------------------------------------------------------------------
class FaultAt(Callback):
    "Raise `exc` the first time its event fires: in training (`phase=True`), in validation (`False`) or either (`None`); on rank `on_rank` only, if given; inside an evaluation that a callback started, if `nested`."
    def __init__(self, exc, phase=None, on_rank=None, nested=False):
        self.exc, self.phase, self.on_rank, self.nested, self.fired = exc, phase, on_rank, nested, None
    def _maybe(self, event):
        learn = self.learn
        if self.fired or (self.phase is not None and learn.training != self.phase): return
        if self.on_rank is not None and learn.rank != self.on_rank: return
        if self.nested and learn._loop_depth < 2: return
        self.fired = event
        raise self.exc(f'fault injected at {event}')

def injector(event:str, exc, phase=None, position:str='anywhere', feature=None, on_rank=None, nested=False) -> FaultAt:
    "A `FaultAt` handling `event` alone (a compiled step sees no other event of it), run `position` ('before'/'after') `feature`'s handler."
    attrs = {event: lambda self: self._maybe(event)}
    if position != 'anywhere':
        attrs['run_before' if position == 'before' else 'run_after'] = feature if isinstance(feature, type) else type(feature)
    return type(f'FaultAt_{event}', (FaultAt,), attrs)(exc, phase, on_rank, nested)

# ---- The cases: every event a fit fires, as it fires it ---------------------------------------------------------
class _Trace(Callback):
    order = -1000
    def __init__(self, nested): self.seen, self.nested = [], nested
    def _see(self, e):
        if self.nested and self.learn._loop_depth < 2: return
        self.seen.append((e, self.learn.training if e in _inner_loop else None))
for _e in _fit_events[1:] + ('cleanup_fit',):   # after_create fires when a learner is made, not in fit
    setattr(_Trace, _e, (lambda e: lambda self: self._see(e))(_e))

def tiny_learner(path='.', image:bool=False, n_train:int=24, bs:int=4, cbs=None, seed:int=0) -> Learner:
    "A 2-layer network on random data, on the CPU (also where there is a GPU): 6 features (or 1x4x4 images), 3 classes; quiet (no bar, no printed rows)."
    g = torch.Generator().manual_seed(seed)
    shape = (1, 4, 4) if image else (6,)
    x, y = torch.randn(n_train + 8, *shape, generator=g), torch.randint(0, 3, (n_train + 8,), generator=g)
    dls = DataLoaders(TensorLoader(x[:n_train], y[:n_train], bs=bs, shuffle=True, seed=seed),
                      TensorLoader(x[n_train:], y[n_train:], bs=bs))
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 8), nn.ReLU(), nn.Linear(8, 3))
    learn = Learner(dls, model, CrossEntropyLossFlat(), lr=1e-2, path=path, cbs=cbs, device='cpu')
    learn.remove_cb(ProgressCallback)
    learn.logger = noop
    return learn

def event_cases(cbs=(), nested:bool=False) -> list[tuple[str, bool|None]]:
    "`(event, phase)` of each event a clean 2-epoch fit with `cbs` fires (inside evaluations started by callbacks only, if `nested`), first occurrences in order; `phase` True/False: in training/validation batches."
    tr = _Trace(nested)
    tiny_learner().fit(2, cbs=[tr, *cbs])
    return list(dict.fromkeys(tr.seen))

def positions(feature, event:str, phase) -> tuple[str, ...]:
    "Where the injector goes: before and after `feature`'s handler of `event` if it has one that runs in `phase`, else anywhere."
    if not callable(getattr(type(feature) if not isinstance(feature, type) else feature, event, None)): return ('anywhere',)
    if event in _inner_loop and phase is not None and not (feature.run_train if phase else feature.run_valid): return ('anywhere',)
    return ('before', 'after')

def case_id(event, phase, exc, position) -> str:
    return '-'.join([event] + ([] if phase is None else ['train' if phase else 'valid']) + [exc.__name__, position])

def cases_for(feature, events=None) -> list[tuple]:
    "Every `(event, phase, exc, position)` of the sweep of `feature` (over `events`, default: those of a plain fit)."
    return [(e, ph, exc, pos) for e, ph in (events or EVENT_CASES) for exc in EXCEPTIONS for pos in positions(feature, e, ph)]

EVENT_CASES = event_cases()

# ---- What a failed fit may not leave changed ----------------------------------------------------------------------
def open_fds() -> dict:
    "This process's open file descriptors and what they point to."
    out = {}
    for fd in os.listdir('/proc/self/fd'):
        try: out[int(fd)] = os.readlink(f'/proc/self/fd/{fd}')
        except OSError: pass   # the listing's own descriptor, closed by now
    return out

def hooks_of(model:nn.Module) -> list[str]:
    "Every module and parameter hook on `model`, and the global module hooks."
    found = [f'{n or "model"}.{a}' for n, m in model.named_modules()
             for a in ('_forward_hooks', '_forward_pre_hooks', '_backward_hooks', '_backward_pre_hooks') if getattr(m, a)]
    found += [f'{n}.{a}' for n, p in model.named_parameters()
              for a in ('_backward_hooks', '_post_accumulate_grad_hooks') if getattr(p, a, None)]
    mod = torch.nn.modules.module
    found += [a for a in ('_global_forward_hooks', '_global_forward_pre_hooks', '_global_backward_hooks',
                          '_global_backward_pre_hooks') if getattr(mod, a, None)]
    return found

def same(a, b) -> bool:
    "Equal, tensors compared exactly, through dicts, lists and tuples."
    if isinstance(a, torch.Tensor): return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same, a, b))
    return a == b

def snapshot(learn) -> dict:
    "The process-wide state and the learner's own objects, before a fit."
    return {'process': _process_state(), 'rng': rng_state(), 'fds': open_fds(), 'threads': set(threading.enumerate()),
            'hooks': hooks_of(learn.model), 'model': learn.model, 'cbs': list(learn.cbs), 'logger': learn.logger,
            'loss_func': learn.loss_func, 'device': learn.device, 'n_batches': (len(learn.dls.train), len(learn.dls.valid))}

def problems_after_fault(learn, before:dict, err, exc, where, rng:bool|tuple=True) -> list[str]:
    "What a fit stopped by `exc` left wrong: the exception, the process state, the learner (empty if nothing). `where`: the `FaultAt` that raised, `(callback, event)` the error's note must name, or the note itself (a fault in the learner's own work); `rng`: which generators must be unchanged (True: all)."
    if isinstance(where, FaultAt):
        if where.fired is None: return [f'the fault was never raised (the fit ended with {err!r})']
        where = (repr(where), where.fired)
    out = []
    if type(err) is not exc: return [f'{exc.__name__} came out of fit as {type(err).__name__}: {err!r}']
    note = where if isinstance(where, str) else f"fastcb: raised in callback {where[0]}, event '{where[1]}'"
    if note not in getattr(err, '__notes__', ()): out.append(f'no note {note!r} on the error: {getattr(err, "__notes__", None)}')
    if _process_state() != before['process']: out.append(f"process state {_process_state()} != {before['process']} before")
    if rng:
        now, was = rng_state(), before['rng']
        changed = [k for k in was if (rng is True or k in rng) and not same(now[k], was[k])]
        if changed: out.append(f'the random state of {changed} changed')
    leaked = {fd: t for fd, t in open_fds().items() if before['fds'].get(fd) != t}
    if leaked: out.append(f'open files left: {leaked}')
    threads = [t.name for t in set(threading.enumerate()) - before['threads'] if t.is_alive()]
    if threads: out.append(f'threads left running: {threads}')
    if hooks_of(learn.model) != before['hooks']: out.append(f'hooks left on the model: {hooks_of(learn.model)}')
    if learn.model is not before['model']: out.append(f'learn.model is not the model it had ({type(learn.model).__name__})')
    if learn.training or learn.model.training: out.append(f'training: learn {learn.training}, model {learn.model.training}')
    if [c for c in learn.cbs] != before['cbs']: out.append(f'callbacks {learn.cbs} != {before["cbs"]} before')
    if learn.logger is not before['logger']: out.append(f'learn.logger is {learn.logger!r}, not the one it had')
    if learn.loss_func is not before['loss_func']: out.append(f'learn.loss_func is {learn.loss_func!r}, not the one it had')
    if learn.device != before['device']: out.append(f'learn.device is {learn.device}, was {before["device"]}')
    if (len(learn.dls.train), len(learn.dls.valid)) != before['n_batches']: out.append('the loaders were left sharded')
    for name, dl in (('training', learn.dls.train), ('validation', learn.dls.valid)):
        skip = (loader_state_dict(dl) or {}).get('skip')
        if skip: out.append(f'the {name} loader was left starting mid-epoch: its next iteration skips {skip} items')
    grads = [n for n, p in learn.model.named_parameters() if p.grad is not None and p.grad.any()]
    if grads: out.append(f'gradients left: {grads}')
    owners = {k: learn.step_owner(k) for k in ('backward', 'opt_step', 'zero_grad')}
    if any(v is not None for v in owners.values()): out.append(f'the step is still claimed: {owners}')
    overrides = [k for k in ('all_batches', '_do_one_batch') if k in learn.__dict__]
    if overrides: out.append(f'learner methods still overridden: {overrides}')
    return out

def run_fit(fit) -> BaseException|None:
    "Run `fit()`; the exception it raised, or `None`."
    try: fit()
    except BaseException as e: return e
    return None

# ---- The next fit: exactly a fresh learner's in the same state -----------------------------------------------------
def copy_train_state(src, dst):
    "Put `src`'s weights and optimizer state (not its hyper-parameters) into `dst`, in place where the tensors exist (no recompilation)."
    with torch.no_grad():
        for a, b in zip(dst.model.state_dict().values(), src.model.state_dict().values()): a.copy_(b)
    if dst.opt is None: dst.create_opt()
    for p, q in zip(src.model.parameters(), dst.model.parameters()):
        s, d = src.opt.state.get(p, {}), dst.opt.state.get(q, {})
        if s.keys() == d.keys():
            for k, v in s.items():
                if isinstance(v, torch.Tensor): d[k].copy_(v)
                else: d[k] = v
        else: dst.opt.state[q] = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
    dst.dls.train.set_epoch(src.dls.train.epoch)   # the epoch of the shuffled order: not the skip of a half-done epoch

def weights(learn) -> list: return [p.detach().clone() for p in learn.model.parameters()]

def next_fit_problems(learn, ref, fit=lambda l: l.fit(1)) -> list[str]:
    "Train `learn` and `ref` (a clean learner, given `learn`'s state here) for one epoch from the same random state: the same weights and losses?"
    copy_train_state(learn, ref)
    torch.manual_seed(1); err = run_fit(lambda: fit(learn))
    if err is not None: return [f'the next fit failed: {type(err).__name__}: {err}']
    torch.manual_seed(1); fit(ref)
    out = []
    if not same(weights(learn), weights(ref)): out.append("the next fit's weights differ from a fresh learner's in the same state")
    if not same(learn.recorder.values[-1], ref.recorder.values[-1]):
        out.append(f"the next fit's losses {learn.recorder.values[-1]} differ from a fresh learner's {ref.recorder.values[-1]}")
    return out

# ---- The distributed sweep (run by torchrun) -----------------------------------------------------------------------
def _ddp_case(event, phase, exc, position) -> list[str]:
    import torch.distributed as dist
    learn = tiny_learner()
    before = snapshot(learn)
    inj = injector(event, exc, phase, position, DistributedCallback)
    def fit():
        with learn.distrib_ctx(timeout=60): learn.fit(2, cbs=inj)
    out = problems_after_fault(learn, before, run_fit(fit), exc, inj)
    if learn.cb(DistributedCallback) is not None: out.append('the DistributedCallback is still on the learner')
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, [w.tolist() for w in weights(learn)])
    if any(w != every[0] for w in every): out.append('the ranks hold different weights after the fault')
    def ddp_fit(l):
        with l.distrib_ctx(timeout=60): l.fit(1)
    return out + next_fit_problems(learn, tiny_learner(), ddp_fit)

def main():
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', timeout=datetime.timedelta(seconds=60))   # the user's group: distrib_ctx leaves it
    rank, res = dist.get_rank(), {}
    for event, phase, exc, position in cases_for(DistributedCallback()):
        try: res[case_id(event, phase, exc, position)] = _ddp_case(event, phase, exc, position)
        except BaseException as e: res[case_id(event, phase, exc, position)] = [f'the case itself failed: {type(e).__name__}: {e}']
    Path(f'result{rank}.json').write_text(json.dumps(res))   # in the launch's folder, a file per rank: a shared stdout can interleave
    # Last, rank 1 alone fails. (The group stays the one made above: torch cannot make a second default group in a
    # process after destroying the first with the same launcher store, pytorch/pytorch#55967.)
    learn = tiny_learner()
    with learn.distrib_ctx(timeout=60): learn.fit(2, cbs=injector(ONE_RANK_EVENT, RuntimeError, on_rank=1))
    print('NOT STOPPED', rank, flush=True)

if __name__ == '__main__': main()
