"""Distributed training on CPU with gloo: real processes under torchrun (one node and two "nodes" on loopback),
faults, Ctrl-C, and the notebook launcher from a real Jupyter kernel. Ports are free ports of 127.0.0.1; every
wait is bounded."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

def _env(**kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1', FASTCB_PROGRESS='plain', **kw)
    env.pop('RANK', None); env.pop('WORLD_SIZE', None)
    return env

def _port():
    from fastcb.distributed import free_port
    return free_port('127.0.0.1')

def _torchrun(script, *args, nproc=2, extra=(), port=None):
    return [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(nproc), '--master_addr', '127.0.0.1',
            '--master_port', str(port or _port()), *extra, str(script), *args]

def _results(out:str) -> dict:
    "rank -> the JSON each rank printed on its RESULT line."
    res = {}
    for line in out.splitlines():
        if line.startswith('RESULT '):
            _, rank, js = line.split(' ', 2)
            res[int(rank)] = json.loads(js)
    return res

WORKER = r'''
import json, os
import torch
from torch import nn
import torch.distributed as dist
from fastcb.learner import Learner
from fastcb.recorder import Metric
from fastcb.data import digits_dls
from fastcb.metrics import accuracy, F1Score
from fastcb.callback.core import Callback, CancelBatchException, CancelTrainException, CancelFitException
from fastcb.callback.training import GradientAccumulation
from fastcb.data import TensorLoader, DataLoaders
from fastcb.callback.tracker import EarlyStoppingCallback
from fastcb.callback.progress import ProgressCallback
import fastcb.callback.schedule
import fastcb.distributed as fd

CUDA = os.environ.get('FASTCB_TEST_DEVICE') == 'cuda'
DEV = torch.device('cuda', int(os.environ['LOCAL_RANK'])) if CUDA else torch.device('cpu')

def mk_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

def mk_learn(**kw):
    dls = digits_dls(bs=32, flat=True, seed=1)
    learn = Learner(dls, mk_model(), lr=1e-2, device=DEV, **kw)
    learn.remove_cb(ProgressCallback)
    return learn

def hand_ddp(n_acc=1, skip=()):
    "Plain DDP, written by hand, over the same shards of the same (seed, epoch) order; the batches in `skip` are left out on every rank."
    dls = digits_dls(bs=32, flat=True, seed=1)
    dls.train.shard(dist.get_rank(), dist.get_world_size())
    ddp = nn.parallel.DistributedDataParallel(mk_model().to(DEV), device_ids=[DEV.index] if CUDA else None)
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-2)
    n = len(dls.train)
    for i, (x, y) in enumerate(dls.train):
        if i in skip: continue
        x, y = x.to(DEV), y.to(DEV)
        step = (i + 1) % n_acc == 0 or i == n - 1
        with (ddp.no_sync() if not step else torch.enable_grad()):
            loss = dls.loss_func(ddp(x), y) / n_acc
            loss.backward()
        if step: opt.step(); opt.zero_grad()
    return ddp.module

def same_weights(a, b): return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))

class Batches(Metric):
    "A metric fastcb cannot reduce by sums: the mean over items of argmax == target, kept as a list of per-item values."
    def reset(self): self.hits = []
    def accumulate(self, learn): self.hits.append((learn.pred.argmax(-1) == learn.yb[0]).float())
    @property
    def value(self): return torch.cat(self.hits).mean() if self.hits else None

class CancelAt(Callback):
    "Raise `exc` in training at the (rank, epoch, iter) keys of `at`, from the event each names."
    def __init__(self, at, exc=CancelBatchException): self.at, self.exc = at, exc
    def _maybe(self, event):
        l = self.learn
        if l.training and self.at.get((l.rank, l.epoch, l.iter)) == event: raise self.exc()
    def before_batch(self): self._maybe('before_batch')
    def after_loss(self): self._maybe('after_loss')
    def before_step(self): self._maybe('before_step')

def weights_agree(learn):
    "Every rank's weights, gathered: are they equal (torch.equal) to rank 0's?"
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, [p.detach().cpu() for p in learn.model.parameters()])
    return all(torch.equal(a, b) for w in every for a, b in zip(w, every[0]))

def dls33():
    "33 validation items: over 2 ranks in batches of 8, unpadded shards would have 2 and 3 batches."
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(97, 64, generator=g), torch.randint(0, 10, (97,), generator=g)
    return DataLoaders(TensorLoader(x[:64], y[:64], bs=8, shuffle=True, seed=1), TensorLoader(x[64:], y[64:], bs=8))

class CountCollectives(Callback):
    "Count torch.distributed calls made inside training batches, and DDP's gradient buckets."
    order = -8
    names = ('all_reduce', 'all_gather', 'all_gather_object', 'broadcast', 'broadcast_object_list', 'barrier', 'reduce',
             'gather', 'gather_object', 'scatter', 'all_to_all', 'reduce_scatter', 'all_gather_into_tensor', 'send', 'recv')
    def __init__(self):
        self.in_batch, self.in_hook, self.in_step, self.outside, self.buckets, self.steps = False, False, 0, 0, 0, 0
        for n in self.names:
            f = getattr(dist, n)
            def wrapped(*a, _f=f, **k):
                if self.in_hook: pass   # DDP's own bucket all-reduce, counted in `buckets`
                elif self.in_batch: self.in_step += 1
                else: self.outside += 1
                return _f(*a, **k)
            setattr(dist, n, wrapped)
    def before_fit(self):
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
        def hook(state, bucket):
            self.buckets, self.in_hook = self.buckets + 1, True
            try: return allreduce_hook(None, bucket)
            finally: self.in_hook = False
        self.learn.model.register_comm_hook(None, hook)
    def before_batch(self):
        if self.learn.training: self.in_batch = True; self.steps += 1
    def after_batch(self): self.in_batch = False

def main():
    if CUDA: torch.cuda.set_device(DEV)
    dist.init_process_group('nccl' if CUDA else 'gloo')   # the user's group: distrib_ctx uses it and leaves it
    rank, out = dist.get_rank(), {}
    # 1. weights after one epoch equal hand-written DDP's, bit for bit; without and with gradient accumulation
    for n_acc in (1, 3):
        learn = mk_learn(cbs=[GradientAccumulation(n_acc)] if n_acc > 1 else None)
        with learn.no_logging(), learn.distrib_ctx(): learn.fit(1)
        out[f'parity_acc{n_acc}'] = same_weights(learn.model, hand_ddp(n_acc))
        out['unwrapped'] = type(learn.model).__name__
    # 2. validation metrics of the 2 ranks equal the 1-process values; the rows agree on every rank
    learn = mk_learn(metrics=[accuracy, F1Score(average='macro'), Batches()])
    with learn.no_logging(), learn.distrib_ctx():
        learn.fit(1)
        out['dist_valid'] = learn.validate()
        out['rows'] = learn.recorder.values
        out['n_valid_shard'] = len(learn.dls.valid)
    out['single_valid'] = learn.validate()   # the same weights, the whole validation set, one process
    learn = mk_learn(metrics=[accuracy, F1Score(average='macro')])
    learn.recorder.train_metrics = True   # training metrics are reduced too (their sums, in the same exchange)
    with learn.no_logging(), learn.distrib_ctx(): learn.fit(1)
    out['rows_train'] = learn.recorder.values
    out['n_valid_whole'] = len(learn.dls.valid)
    # 3. collectives inside training steps (beyond DDP's gradient buckets): none
    count = CountCollectives()
    learn = mk_learn(cbs=[count])
    with learn.no_logging(), learn.distrib_ctx(): learn.fit(2)
    out['coll_in_steps'], out['coll_outside_fit'], out['steps'] = count.in_step, count.outside, count.steps
    out['buckets'] = count.buckets
    count_acc = CountCollectives()
    learn = mk_learn(cbs=[count_acc, GradientAccumulation(4)])
    with learn.no_logging(), learn.distrib_ctx(): learn.fit(1)
    out['acc_buckets'], out['acc_steps'] = count_acc.buckets, count_acc.steps
    # 4. early stopping decides from the reduced metrics: the same epoch on every rank
    learn = mk_learn(cbs=[EarlyStoppingCallback(monitor='valid_loss', min_delta=0.02, patience=1)])
    learn.model = mk_model()
    with learn.no_logging(), learn.distrib_ctx(): learn.fit(12, lr=3e-3)
    out['stopped'] = learn.early_stopping.stopped_epoch
    # 5. save: rank 0 writes behind a barrier, every rank can read it right after
    learn = mk_learn(path=os.environ['FASTCB_TEST_DIR'])
    with learn.no_logging(), learn.distrib_ctx():
        learn.fit(1)
        p = learn.save('m')   # every rank reads it at once: rank 0 wrote it before anyone returned
        out['saved_keys'] = sorted(torch.load(p, weights_only=True)['model'])
        learn.load('m')
    # 6. lr_find refuses
    learn = mk_learn()
    with learn.no_logging(), learn.distrib_ctx():
        try: learn.lr_find(num_it=10, show_plot=False); out['lr_find'] = 'ran'
        except RuntimeError as e: out['lr_find'] = str(e)[:40]
    # 8. padded validation shards: every rank the same number of batches, metrics exactly those of one process
    learn = Learner(dls33(), mk_model(), nn.CrossEntropyLoss(), lr=1e-2, device=DEV, metrics=[accuracy, F1Score(average='macro'), Batches()])
    learn.remove_cb(ProgressCallback)
    with learn.no_logging(), learn.distrib_ctx():
        learn.fit(1)
        out['pad_rows'], out['pad_valid'], out['pad_n_valid'] = learn.recorder.values, learn.validate(), len(learn.dls.valid)
    out['pad_single'] = learn.validate()
    # 9. a training batch skipped on some ranks only: no hang, the same weights; skipped on every rank: as plain DDP without it
    learn = mk_learn(cbs=CancelAt({(1, 0, 2): 'before_batch', (0, 0, 4): 'after_loss'}))
    with learn.no_logging(), learn.distrib_ctx():
        learn.fit(1)
        out['skip_some_joins'] = learn.cb(fd.DistributedCallback).n_joins
    out['skip_some_agree'] = weights_agree(learn)
    learn = mk_learn(cbs=CancelAt({(r, 0, 3): 'before_batch' for r in range(dist.get_world_size())}))
    with learn.no_logging(), learn.distrib_ctx(): learn.fit(1)
    out['skip_all_parity'] = same_weights(learn.model, hand_ddp(skip={3}))
    # 10. stops raised on one rank only: CancelTrainException, and CancelFitException (agreed at the epoch's reduction)
    learn = mk_learn(cbs=CancelAt({(0, 0, 2): 'before_batch'}, CancelTrainException), metrics=accuracy)
    with learn.no_logging(), learn.distrib_ctx(): learn.fit(1)
    out['stop_train_agree'], out['stop_train_rows'] = weights_agree(learn), learn.recorder.values
    learn = mk_learn(cbs=CancelAt({(1, 1, 3): 'after_loss'}, CancelFitException), metrics=accuracy)
    with learn.no_logging(), learn.distrib_ctx(): learn.fit(3)
    out['stop_fit_agree'], out['stop_fit_epoch'], out['stop_fit_rows'] = weights_agree(learn), learn.epoch, learn.recorder.values
    # 12. a step skipped on one rank after the gradients were synchronised cannot be joined: the same error on every rank
    learn = mk_learn(cbs=CancelAt({(1, 0, 2): 'before_step'}))
    try:
        with learn.no_logging(), learn.distrib_ctx(): learn.fit(1)
        out['diverged'] = 'ran'
    except RuntimeError as e: out['diverged'] = str(e)
    # 11. a strategy set after the optimizer holds a state that differs between ranks: refused, nothing changed
    learn = mk_learn()
    learn.dls.train.shard(rank, dist.get_world_size())   # each rank trains alone on its own part
    with learn.no_logging(): learn.fit(1)
    learn.dls.train.shard(0, 1)
    try:
        with learn.distrib_ctx(): out['opt_state'] = 'ran'
    except RuntimeError as e: out['opt_state'] = str(e)
    out['opt_state_after'] = (type(learn.model).__name__, type(getattr(learn, 'strategy', None)).__name__)
    learn.opt = None   # what the error says to do
    with learn.no_logging(), learn.distrib_ctx(): learn.fit(1)
    out['opt_state_fresh'] = weights_agree(learn)
    # 7. a model that differs between ranks: the same clear error on every rank, no hang
    learn = mk_learn()
    if rank == 1 or dist.get_world_size() == 1: learn.model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    try:
        with learn.distrib_ctx(): out['mismatch'] = 'ran'
    except RuntimeError as e: out['mismatch'] = str(e)
    out['group_after'] = dist.is_initialized()
    out['world_size'], out['n_train'] = dist.get_world_size(), len(digits_dls(bs=32, flat=True, seed=1).train.shard(rank, dist.get_world_size()))
    print(f'RESULT {rank} {json.dumps(out)}\n', end='', flush=True)   # one write: ranks share the output

if __name__ == '__main__': main()
'''

def _check_worker(res:dict, ws:int):
    assert sorted(res) == list(range(ws))
    for r in res.values():
        assert r['world_size'] == ws
        assert r['parity_acc1'] and r['parity_acc3']          # torch.equal with plain DDP (and DDP.no_sync)
        assert r['unwrapped'] == 'Sequential'                 # the model is unwrapped after fit
        if ws > 1: assert r['n_valid_shard'] < r['n_valid_whole']   # validation was sharded ...
        assert r['dist_valid'] == pytest.approx(r['single_valid'], rel=1e-5, abs=1e-6)   # ... and reduced exactly
        assert r['coll_in_steps'] == 0                        # collectives per step beyond DDP's buckets
        assert r['buckets'] == r['steps'] == 2 * r['n_train'] # one gradient bucket per step for this tiny model
        n = r['n_train']                                      # accumulation: all-reduce only on the real steps
        assert r['acc_steps'] == n and r['acc_buckets'] == n // 4 + (n % 4 > 0)
        assert r['stopped'] is not None and r['stopped'] < 11
        assert r['saved_keys'] == ['0.bias', '0.weight', '2.bias', '2.weight']   # no 'module.' prefix
        assert r['lr_find'].startswith('lr_find does not run under')
        if ws > 1: assert 'the model differs between rank 0 and rank 1' in r['mismatch'] and '0.weight' in r['mismatch']
        assert r['group_after']                               # the user's process group is left alone
        assert r['pad_valid'] == pytest.approx(r['pad_single'], rel=1e-6, abs=1e-7)   # padded items ignored exactly
        assert r['pad_valid'][1] == r['pad_single'][1]        # accuracy: the same fraction, bit for bit
        assert r['pad_rows'][-1][1:] == pytest.approx(r['pad_single'], rel=1e-6, abs=1e-7)
        assert r['skip_some_agree'] and r['skip_all_parity'] and r['stop_train_agree'] and r['stop_fit_agree']
        assert r['opt_state_after'] == ['Sequential', 'SingleProcess'] and r['opt_state_fresh']
        if ws > 1:
            assert r['pad_n_valid'] == 3                      # 33 items, batches of 8: 17 per rank with the padding
            assert 'optimizer already holds state' in r['opt_state'] and 'learn.opt = None' in r['opt_state']
            assert r['skip_some_joins'] == 1                  # each rank skipped one batch, and joined the others there
            assert 'The ranks hold different weights at the end of epoch 0' in r['diverged']
            assert r['stop_fit_epoch'] == 1                   # rank 1 stopped in epoch 1: rank 0 stopped there too
    first = res[0]
    for r in res.values():
        for k in ('pad_rows', 'pad_valid', 'stop_train_rows', 'stop_fit_rows', 'stop_fit_epoch'): assert r[k] == first[k], k
        assert r['rows_train'] == first['rows_train'] and len(first['rows_train'][0]) == 6
        assert r['rows'] == first['rows'] and r['dist_valid'] == first['dist_valid'] and r['stopped'] == first['stopped']

def test_two_processes(tmp_path):
    "Weights equal hand-written DDP's, metrics equal one process's, no collective in a step, trackers agree, save, errors."
    script = tmp_path / 'worker.py'; script.write_text(WORKER)
    p = subprocess.run(_torchrun(script), env=_env(FASTCB_TEST_DIR=str(tmp_path)), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    _check_worker(_results(p.stdout), 2)
    assert (tmp_path / 'models' / 'm.pth').exists()

@pytest.mark.skipif(not torch.cuda.is_available() or not torch.distributed.is_nccl_available(), reason="needs a CUDA GPU and NCCL")
def test_nccl_on_gpus(tmp_path):
    "The same checks with NCCL, one process per GPU (at most 2); with a single GPU, a world of one process."
    ws = min(2, torch.cuda.device_count())
    script = tmp_path / 'worker.py'; script.write_text(WORKER)
    p = subprocess.run(_torchrun(script, nproc=ws), env=_env(FASTCB_TEST_DIR=str(tmp_path), FASTCB_TEST_DEVICE='cuda'),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    _check_worker(_results(p.stdout), ws)

SMALL = r'''
import json, os, sys, time
import torch
from torch import nn
import torch.distributed as dist
from fastcb.learner import Learner
from fastcb.callback.core import Callback
from fastcb.callback.progress import ProgressCallback
from fastcb.data import digits_dls
from fastcb.metrics import accuracy
import fastcb.distributed

class Fail(Callback):
    "Raise on one rank only, in the middle of the first epoch."
    def after_batch(self):
        if self.learn.training and self.learn.iter == 3 and self.learn.rank == 1: raise RuntimeError('boom on rank 1')

class Slow(Callback):
    "Train slowly; say READY once, then report the teardown."
    def after_batch(self):
        if self.learn.training and self.learn.epoch == 0 and self.learn.iter == 2: print(f'READY {self.learn.rank}\n', end='', flush=True)   # one write: no interleaving
        time.sleep(0.02)
    def cleanup_fit(self): print(f'TEARDOWN {self.learn.rank}\n', end='', flush=True)   # one write: no interleaving

def main(mode):
    torch.manual_seed(0)
    learn = Learner(digits_dls(bs=32, flat=True, seed=1), nn.Sequential(nn.Linear(64, 10)), metrics=accuracy, lr=1e-2,
                    device='cpu', cbs={'fail': Fail(), 'slow': Slow()}.get(mode))
    learn.remove_cb(ProgressCallback)
    try:
        with learn.no_logging(), learn.distrib_ctx(timeout=30):
            learn.fit(1000 if mode == 'slow' else 1)
            rank, vals = learn.rank, learn.recorder.values
        if mode == 'plain':   # a second block: a second group made from the launcher's environment
            with learn.no_logging(), learn.distrib_ctx(timeout=30):
                learn.fit(1)
                vals = vals + learn.recorder.values
    finally: print(f"DETACHED {int(os.environ['RANK'])} {dist.is_initialized()}\n", end='', flush=True)
    w = [p.detach().double().sum().item() for p in learn.model.parameters()]
    print(f"RESULT {rank} {json.dumps({'values': vals, 'weights': w, 'group_after': dist.is_initialized()})}\n", end='', flush=True)

if __name__ == '__main__': main(sys.argv[1])
'''

def test_two_nodes_on_loopback(tmp_path):
    "Two 'nodes' of one process each (two torchrun agents) train as one job; distrib_ctx makes and ends the group."
    script = tmp_path / 'small.py'; script.write_text(SMALL)
    port = _port()
    procs = [subprocess.Popen(_torchrun(script, 'plain', nproc=1, port=port, extra=('--nnodes', '2', '--node_rank', str(n))),
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (0, 1)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs): assert p.returncode == 0, out[-2000:] + err[-4000:]
    res = {**_results(outs[0][0]), **_results(outs[1][0])}
    assert sorted(res) == [0, 1]
    assert res[0] == res[1]                                   # same reduced rows, same weights
    assert res[0]['group_after'] is False                     # the group distrib_ctx made is gone
    assert res[0]['values'][0][2] > 0.5                       # it learned (accuracy of the whole validation set)
    assert len(res[0]['values']) == 2                         # two distrib_ctx blocks, each with its own group

def test_error_on_one_rank_ends_both(tmp_path):
    "A RuntimeError raised on rank 1 only: both processes end well within the timeout, with the error shown."
    script = tmp_path / 'small.py'; script.write_text(SMALL)
    # the 180 s timeout only guards against a hang: a job left waiting at the collective would take its 600 s timeout
    p = subprocess.run(_torchrun(script, 'fail'), env=_env(), capture_output=True, text=True, timeout=180)
    assert p.returncode != 0
    assert 'RuntimeError: boom on rank 1' in p.stderr, p.stderr[-4000:]
    assert 'RESULT' not in p.stdout

def test_ctrl_c_stops_every_rank_with_teardown(tmp_path):
    "Ctrl-C (SIGINT to the process group, as a terminal sends it) stops both ranks, and each runs its teardown."
    script = tmp_path / 'small.py'; script.write_text(SMALL)
    log = open(tmp_path / 'out.txt', 'w')
    p = subprocess.Popen(_torchrun(script, 'slow'), env=_env(), stdout=log, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while (tmp_path / 'out.txt').read_text().count('READY') < 2:
            assert p.poll() is None and time.monotonic() < deadline, (tmp_path / 'out.txt').read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(p.pid, signal.SIGINT)
        p.wait(timeout=90)
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL); p.wait(timeout=30)
        log.close()
    out = (tmp_path / 'out.txt').read_text()
    for r in (0, 1):
        assert f'TEARDOWN {r}' in out and f'DETACHED {r} False' in out, out[-3000:]
    assert 'RESULT' not in out

NOTEBOOK_CELLS = [
    "import torch\nfrom torch import nn\nfrom fastcb.learner import Learner\nfrom fastcb.data import digits_dls\n"
    "from fastcb.metrics import accuracy\nfrom fastcb.distributed import notebook_launch\n"
    "torch.set_num_threads(2); (torch.randn(500, 500) @ torch.randn(500, 500)).sum()   # the kernel's OpenMP threads start",
    "def train(bs):\n    torch.manual_seed(0)\n"
    "    learn = Learner(digits_dls(bs=bs, flat=True, seed=1), nn.Sequential(nn.Linear(64, 10)), metrics=accuracy, device='cpu')\n"
    "    with learn.no_bar(), learn.no_logging(), learn.distrib_ctx(timeout=60):\n"
    "        learn.fit(1)\n"
    "        rank = learn.rank\n"
    "    return rank, learn.recorder.values[-1], learn.model.state_dict(), list(range(30000))",   # tensors; more than a pipe holds
    "res = notebook_launch(train, nprocs=2, args=(32,))\n"
    "print('RANKS', [r[0] for r in res], res[0][1] == res[1][1], [torch.equal(res[0][2][k], res[1][2][k]) for k in res[0][2]],\n"
    "      [r[3] == list(range(30000)) for r in res])",
    "def bad():\n    import os\n    if os.environ['RANK'] == '1': raise ValueError('bad input on rank 1')\n"
    "    import time; time.sleep(3600)\n",   # rank 0 never ends by itself: only the launcher stopping it ends the cell
    "try: notebook_launch(bad, nprocs=2)\n"
    "except Exception as e: print('RAISED', 'bad input on rank 1' in str(e))",
]

def test_notebook_launch_from_a_jupyter_kernel(tmp_path, monkeypatch):
    "notebook_launch run by a real Jupyter kernel: two processes agree and send back a state_dict and a big list; an error in one stops both and is raised."
    nbformat = pytest.importorskip('nbformat'); nbclient = pytest.importorskip('nbclient')
    monkeypatch.setenv('PYTHONPATH', str(ROOT)); monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    nbclient.NotebookClient(nb, timeout=120, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}}).execute()
    text = lambda i: ''.join(o.get('text', '') for o in nb.cells[i].outputs if o.get('output_type') == 'stream')
    assert 'RANKS [0, 1] True [True, True] [True, True]' in text(2), nb.cells[2].outputs
    assert 'RAISED True' in text(4), nb.cells[4].outputs   # within nbclient's 120 s cell timeout (a hang guard)

LAUNCH = r"""
import multiprocessing, os, time
from torch import nn
from fastcb.learner import Learner
from fastcb.callback.core import Callback
from fastcb.data import digits_dls
from fastcb.distributed import notebook_launch

class Slow(Callback):
    "Train slowly; say READY (with the pid) once, then report the teardown."
    def after_batch(self):
        if self.learn.training and self.learn.epoch == 0 and self.learn.iter == 2:
            print(f'READY {self.learn.rank} {os.getpid()}\n', end='', flush=True)   # one write
        time.sleep(0.02)
    def cleanup_fit(self): print(f'TEARDOWN {self.learn.rank}\n', end='', flush=True)   # one write: no interleaving

def train():
    learn = Learner(digits_dls(bs=32, flat=True, seed=1), nn.Sequential(nn.Linear(64, 10)), device='cpu', cbs=Slow())
    with learn.no_bar(), learn.no_logging(), learn.distrib_ctx(timeout=60): learn.fit(1000)

try: notebook_launch(train, nprocs=2)
except KeyboardInterrupt: print('INTERRUPTED, ranks alive:', multiprocessing.active_children(), flush=True)
"""

def _alive(pid:int) -> bool:
    "Is process `pid` running (a zombie is not)?"
    try: return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError: return False

@pytest.mark.skipif(not Path('/proc/self/stat').exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize('how', ['Ctrl-C in Jupyter', 'SIGINT to the launcher', 'launcher killed'])
def test_notebook_launch_stopped(tmp_path, how):
    """Ctrl-C as Jupyter sends it (SIGINT to the kernel's process group), SIGINT to the launching process only, or the
    launching process killed: the ranks run their teardown and end, and the launcher (if alive) raises KeyboardInterrupt."""
    script = tmp_path / 'launch.py'; script.write_text(LAUNCH)
    out = tmp_path / 'out.txt'
    with open(out, 'w') as log:
        p = subprocess.Popen([sys.executable, str(script)], env=_env(), stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    ranks = []
    try:
        deadline = time.monotonic() + 180
        while out.read_text().count('READY') < 2:
            assert p.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.2)
        ranks = [int(l.split()[2]) for l in out.read_text().splitlines() if l.startswith('READY')]
        if how == 'Ctrl-C in Jupyter': os.killpg(p.pid, signal.SIGINT)
        else: os.kill(p.pid, signal.SIGINT if how == 'SIGINT to the launcher' else signal.SIGKILL)
        p.wait(timeout=90)
        deadline = time.monotonic() + 90   # without a launcher, the ranks end on their own (SIGTERM from Linux)
        while any(_alive(pid) for pid in ranks):
            assert time.monotonic() < deadline, f"ranks still running: {ranks}\n" + out.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        if p.poll() is None: p.kill(); p.wait(timeout=30)
        for pid in ranks:
            if _alive(pid): os.kill(pid, signal.SIGKILL)
    text = out.read_text()
    for r in (0, 1): assert f'TEARDOWN {r}' in text, text[-3000:]
    if how != 'launcher killed': assert 'INTERRUPTED, ranks alive: []' in text, text[-3000:]

def test_bad_setups_fail_clearly_and_change_nothing(monkeypatch):
    "Outside a launcher: the torchrun command; NCCL without GPUs; more processes than GPUs. Nothing is left changed."
    from torch import nn
    from fastcb.learner import Learner
    from fastcb.data import digits_dls
    import fastcb.distributed as fd
    for v in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'LOCAL_WORLD_SIZE'): monkeypatch.delenv(v, raising=False)
    dls = digits_dls(bs=64, flat=True, seed=1)
    learn = Learner(dls, nn.Linear(64, 10), device='cpu')
    with pytest.raises(RuntimeError, match='torchrun --nproc_per_node'): learn.to_distributed()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='NCCL backend needs CUDA GPUs'): learn.to_distributed(backend='nccl')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')
    with pytest.raises(RuntimeError, match=r'2 processes were started on this machine but it has 1 GPU'):
        learn.to_distributed(backend='nccl')
    assert learn.cb(fd.DistributedCallback) is None and dls.train.world_size == 1 and learn.device.type == 'cpu'
    assert not torch.distributed.is_initialized()
