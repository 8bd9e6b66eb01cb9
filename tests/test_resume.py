"""Exact resume after a real SIGKILL: a run killed at a random training step and resumed from its last checkpoint
ends with the same weights, optimizer state and history as the run that was never interrupted (torch.equal, tolerance 0).

Each training run (tests/resume_runs.py) is a process of its own; the interrupted ones kill themselves with SIGKILL, so
none of their finally blocks or atexit handlers run. The runs are forked from a fork server (multiprocessing's
'forkserver'): a fresh interpreter that imports torch and fastcb once, never runs autograd nor touches CUDA, and then
only forks, so a run starts in milliseconds. Never from this process: on a machine with a GPU, once any backward pass
has run here (another test's, say), autograd's device threads exist, and a forked child that runs backward aborts
("Unable to handle autograd's threading in combination with fork-based multiprocessing"). One scenario resumes in a
fresh interpreter, and on a GPU every run is one.
"""
import inspect, multiprocessing, os, random, signal, subprocess, sys, tempfile
from pathlib import Path
import pytest
import torch
from fastcb.learner import Learner
from fastcb.checkpoint import checkpoints
from resume_runs import N_EPOCH, PER_EPOCH, TOTAL, train, die_in_third_write, backward_on, run_child

pytestmark = pytest.mark.skipif('forkserver' not in multiprocessing.get_all_start_methods(),
                                reason="needs multiprocessing's forkserver start method (POSIX)")
HANG = 300   # seconds: only a hung run takes this long (a run takes a fraction of a second)
# What the fork server imports once, before it forks: torch._dynamo is what the first optimizer imports (seconds), pytest
# what a child re-runs when pytest was started by its script (the child's __main__). By package name: Python 3.11's
# fork server does not get this process's sys.path, so each child imports resume_runs (in tests/), cheaply.
PRELOAD = ['pytest', 'torch', 'torch._dynamo', 'fastcb.learner', 'fastcb.data', 'fastcb.checkpoint',
           'fastcb.callback.schedule', 'fastcb.callback.tracker', 'fastcb.callback.training']

def in_child(f, *args, **kw) -> int:
    "Run `f(*args, **kw)` in a process forked from the fork server; its exit status (-9 when it killed itself)."
    ctx = multiprocessing.get_context('forkserver')
    ctx.set_forkserver_preload(PRELOAD)   # used when the server starts (the first call)
    fd, err = tempfile.mkstemp(prefix='resume_child_', suffix='.txt'); os.close(fd)
    try:
        p = ctx.Process(target=run_child, args=(err, f, *args), kwargs=kw)
        p.start(); p.join(HANG)
        hung = p.exitcode is None
        if hung: p.kill(); p.join()
        failure = Path(err).read_text()
    finally: os.unlink(err)
    assert not hung, f"{f.__name__} still ran after {HANG} s: killed"
    assert p.exitcode in (0, -signal.SIGKILL), f"{f.__name__} failed (exit status {p.exitcode}):\n{failure[-3000:]}"
    return p.exitcode

def test_children_run_autograd_after_this_process_did():
    """A backward pass here first: with a GPU, that starts autograd's device threads, and a process forked from this one
    could not run backward any more. The runs are forked from the fork server, which has run no autograd and never
    touched CUDA: they can run backward, on the CPU and on the GPU."""
    x = torch.ones(2, requires_grad=True); (x * 3).sum().backward()
    for device in ['cpu'] + (['cuda'] if torch.cuda.is_available() else []):
        assert in_child(backward_on, device) == 0

def same(a, b, path=''):
    "Equal to the bit: tensors with torch.equal, everything else with ==."
    if isinstance(a, torch.Tensor): return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b

_refs = {}
def reference(tmp_path_factory, cfg):
    "The uninterrupted run of `cfg` (once per configuration), in a child like the runs it is compared with."
    if cfg not in _refs:
        d = tmp_path_factory.mktemp(f'ref_{cfg}')
        assert in_child(train, d, cfg, d / 'out.pt') == 0
        _refs[cfg] = torch.load(d / 'out.pt', weights_only=True)
    return _refs[cfg]

def check_resumed(tmp_path_factory, tmp_path, cfg, kills, ck_kw, event='after_batch', stage=None):
    "Kill the run at each step of `kills` in turn (resuming after each), then resume to the end; compare with the reference."
    ref = reference(tmp_path_factory, cfg)
    resume = None
    for k in kills:
        assert in_child(train, tmp_path, cfg, kill_at=k, event=event, resume=resume, ck_kw=ck_kw, stage=stage) == -signal.SIGKILL
        resume = 'last'
    assert checkpoints(tmp_path / 'models')
    assert in_child(train, tmp_path, cfg, tmp_path / 'out.pt', resume='last', ck_kw=ck_kw) == 0
    got = torch.load(tmp_path / 'out.pt', weights_only=True)
    for k in ref: assert same(ref[k], got[k]), f"{cfg}: {k} differs after resuming from kills at {kills}"

rng = random.Random(int(os.environ.get('FASTCB_RESUME_SEED', '0')))

def test_epoch_boundary(tmp_path_factory, tmp_path):
    "Checkpoints at the end of each epoch only; killed at a random step of the second epoch, mid-step."
    check_resumed(tmp_path_factory, tmp_path, 'base', [rng.randrange(PER_EPOCH + 1, 2 * PER_EPOCH)], {}, event='after_pred')

def test_mid_epoch(tmp_path_factory, tmp_path):
    "A checkpoint every 3 steps; killed at a random step."
    check_resumed(tmp_path_factory, tmp_path, 'base', [rng.randrange(4, TOTAL)], {'every_n_steps': 3})

def test_last_batch_of_epoch(tmp_path_factory, tmp_path):
    "The checkpoint after an epoch's last batch, before its validation: the resumed run validates, then goes on."
    check_resumed(tmp_path_factory, tmp_path, 'base', [PER_EPOCH], {'every_n_steps': PER_EPOCH, 'every_epoch': False})

def test_killed_twice_in_one_epoch(tmp_path_factory, tmp_path):
    a = rng.randrange(PER_EPOCH + 2, 2 * PER_EPOCH - 2)
    check_resumed(tmp_path_factory, tmp_path, 'base', [a, a + 2], {'every_n_steps': 2})

@pytest.mark.parametrize('cfg', ['one_cycle', 'trackers', 'accumulate', 'bf16', 'loader'])
def test_configurations(tmp_path_factory, tmp_path, cfg):
    "Schedules, trackers (early stopping, best-model saving, lr reduction), accumulation, bf16, a 2-worker torch DataLoader."
    check_resumed(tmp_path_factory, tmp_path, cfg, [rng.randrange(PER_EPOCH + 1, TOTAL)], {'every_n_steps': 4})

def _takes_resume(method) -> bool: return 'resume' in inspect.signature(getattr(Learner, method)).parameters

@pytest.mark.parametrize('method,stage', [('fit_one_cycle', None), ('fine_tune', 'frozen'), ('fine_tune', 'unfrozen')])
def test_schedule_methods(tmp_path_factory, tmp_path, method, stage):
    "fit_one_cycle and fine_tune (killed in its frozen stage, and in its unfrozen one) with resume=."
    if not _takes_resume(method): pytest.skip(f"Learner.{method} does not take resume= yet (nbs/05_callback.schedule.ipynb)")
    check_resumed(tmp_path_factory, tmp_path, method, [rng.randrange(4, PER_EPOCH * (1 if stage else N_EPOCH))],   # after the first checkpoint
                  {'every_n_steps': 3}, stage=stage)

def test_kill_during_checkpoint_write(tmp_path_factory, tmp_path):
    "SIGKILL in the middle of writing a checkpoint: the previous one is intact, the half-written one is ignored."
    assert in_child(die_in_third_write, tmp_path, 'base', ck_kw={'every_n_steps': 3}) == -signal.SIGKILL
    folder = tmp_path / 'models'
    assert len(list(folder.glob('.*.tmp'))) == 1 and len(checkpoints(folder)) == 2
    assert in_child(train, tmp_path, 'base', tmp_path / 'out.pt', resume='last', ck_kw={'every_n_steps': 3}) == 0
    assert not list(folder.glob('.*.tmp'))   # cleaned up by the next CheckpointCallback
    got, ref = torch.load(tmp_path / 'out.pt', weights_only=True), reference(tmp_path_factory, 'base')
    assert all(same(ref[k], got[k]) for k in ref)

def fresh(path, cfg='base', out=None, kill_at=None, resume=None, device='cpu', every_n_steps=5) -> int:
    "Run `train` in a new interpreter (nothing inherited from this process or the fork server); its exit status."
    code = (f"from pathlib import Path; from resume_runs import train; "
            f"train(Path({str(path)!r}), {cfg!r}, {None if out is None else str(out)!r}, kill_at={kill_at!r}, resume={resume!r}, "
            f"ck_kw={{'every_n_steps': {every_n_steps}}}, device={device!r})")
    here = Path(__file__).resolve()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here.parent), str(here.parents[1]), os.environ.get('PYTHONPATH', '')]))
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=HANG, env=env)
    assert r.returncode in (0, -signal.SIGKILL), r.stderr[-3000:]
    return r.returncode

def test_resume_in_fresh_interpreter(tmp_path_factory, tmp_path):
    "The resuming process is a new interpreter (nothing inherited from the killed one)."
    assert in_child(train, tmp_path, 'base', kill_at=rng.randrange(6, TOTAL), ck_kw={'every_n_steps': 5}) == -signal.SIGKILL
    assert fresh(tmp_path, out=tmp_path / 'out.pt', resume='last') == 0
    got, ref = torch.load(tmp_path / 'out.pt', weights_only=True), reference(tmp_path_factory, 'base')
    assert all(same(ref[k], got[k]) for k in ref)

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_resume(tmp_path):
    "On the GPU, with bf16 autocast and dropout drawing from the CUDA generator: every run in a new interpreter."
    ref_dir, run_dir = tmp_path / 'ref', tmp_path / 'run'
    assert fresh(ref_dir, 'cuda', ref_dir / 'out.pt', device='cuda') == 0
    assert fresh(run_dir, 'cuda', kill_at=PER_EPOCH + 3, device='cuda') == -signal.SIGKILL
    assert fresh(run_dir, 'cuda', run_dir / 'out.pt', resume='last', device='cuda') == 0
    ref, got = (torch.load(d / 'out.pt', weights_only=True) for d in (ref_dir, run_dir))
    for k in ref: assert same(ref[k], got[k]), f"cuda: {k} differs"
