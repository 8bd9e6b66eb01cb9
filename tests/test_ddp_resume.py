"""A DDP run (2 gloo processes under torchrun, on CPU) killed with SIGKILL mid-epoch, between gradient-accumulation
steps, with per-rank seeds and dropout and 33 validation items, then resumed with `fit(resume='last')` from every
checkpoint it wrote: bit for bit the run never killed, on both ranks. Two launches: the first trains the reference and
the run it kills; the second resumes."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

WORKER = r'''
import json, os, shutil, signal, sys
from pathlib import Path
import torch
from torch import nn
import torch.distributed as dist
from fastcb.learner import Learner
from fastcb.callback.core import Callback
from fastcb.callback.training import GradientAccumulation
from fastcb.callback.progress import ProgressCallback
from fastcb.checkpoint import CheckpointCallback, checkpoints
from fastcb.data import TensorLoader, DataLoaders
import fastcb.distributed

N_EPOCH, KILL_AT = 3, 6   # 4 training batches per rank and epoch: step 6 is mid-epoch 1, between accumulation steps

class Killer(Callback):
    "SIGKILL this rank at training step `at`, after the checkpoint of that step is on disk (every rank has passed its write)."
    order = 2000
    def __init__(self, at): self.at = at
    def after_batch(self):
        if self.learn.train_iter == self.at:
            self.learn.strategy.barrier()
            os.kill(os.getpid(), signal.SIGKILL)

def mk_learn(path, rank, *cbs):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(97, 16, generator=g), torch.randint(0, 4, (97,), generator=g)
    dls = DataLoaders(TensorLoader(x[:64], y[:64], bs=8, shuffle=True, seed=1), TensorLoader(x[64:], y[64:], bs=8))  # 33 validation items
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), lr=1e-2, path=path,
                    cbs=[GradientAccumulation(3), CheckpointCallback(every_n_steps=1, keep=None), *cbs])
    learn.remove_cb(ProgressCallback)
    torch.manual_seed(100 + rank)   # per-rank seeds: each rank's dropout masks differ
    return learn

def outcome(learn):
    return {'params': [p.detach().clone() for p in learn.model.parameters()], 'values': learn.recorder.values,
            'losses': [float(l) for l in learn.recorder.losses], 'n_valid': len(learn.dls.valid)}

def main(mode, out):
    dist.init_process_group('gloo')
    rank, out = dist.get_rank(), Path(out)
    if mode == 'kill':
        learn = mk_learn(out / 'ref', rank)
        with learn.no_logging(), learn.distrib_ctx():
            learn.fit(N_EPOCH)
            torch.save(outcome(learn), out / f'ref{rank}.pt')   # inside: the validation shard's length
        learn = mk_learn(out / 'killed', rank, Killer(KILL_AT))
        with learn.no_logging(), learn.distrib_ctx(): learn.fit(N_EPOCH)
        print('NOT KILLED', flush=True)
        return
    ref, res = torch.load(out / f'ref{rank}.pt'), {}
    found = checkpoints(out / 'killed' / 'models')
    for j in range(len(found)):   # resume from each checkpoint the killed run wrote, as if it had been killed just after
        d = out / f'resume{j}'
        if rank == 0:
            (d / 'models').mkdir(parents=True)
            for f in found[:j + 1]: shutil.copy(f, d / 'models' / f.name)
        dist.barrier()
        learn = mk_learn(d, rank)
        with learn.no_logging(), learn.distrib_ctx():
            learn.fit(N_EPOCH, resume='last')
            got = outcome(learn)
        res[found[j].name] = {'weights': all(torch.equal(a, b) for a, b in zip(got['params'], ref['params'])),
                              'max_diff': max(float((a - b).abs().max()) for a, b in zip(got['params'], ref['params'])),
                              'values': got['values'] == ref['values'], 'losses': got['losses'] == ref['losses']}
    res['n_valid'] = [ref['n_valid'], got['n_valid']]
    (out / f'result{rank}.json').write_text(json.dumps(res))   # a file per rank: the ranks' shared stdout can interleave
    dist.destroy_process_group()

if __name__ == '__main__': main(*sys.argv[1:])
'''

def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1', FASTCB_PROGRESS='plain')
    env.pop('RANK', None); env.pop('WORLD_SIZE', None)
    return env

def _launch(script, mode, out):
    from fastcb.distributed import free_port
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
           '--master_port', str(free_port('127.0.0.1')), str(script), mode, str(out)]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)

def test_ddp_killed_between_accumulation_steps_resumes_bit_identically(tmp_path):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    killed = _launch(script, 'kill', tmp_path)
    assert killed.returncode != 0 and 'NOT KILLED' not in killed.stdout, killed.stdout + killed.stderr[-3000:]
    assert (tmp_path / 'ref0.pt').exists() and (tmp_path / 'ref1.pt').exists(), killed.stderr[-3000:]
    names = sorted(p.name for p in (tmp_path / 'killed' / 'models').glob('checkpoint_*.pth'))
    assert len(names) >= 7, names   # a checkpoint per step up to the kill, and the end of epoch 0
    p = _launch(script, 'resume', tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = {r: json.loads((tmp_path / f'result{r}.json').read_text()) for r in (0, 1) if (tmp_path / f'result{r}.json').exists()}
    assert sorted(res) == [0, 1], p.stdout[-3000:] + p.stderr[-3000:]
    for rank, r in res.items():
        assert r.pop('n_valid') == [3, 3]   # 33 items over 2 ranks in batches of 8: padded shards, 3 batches each
        assert sorted(r) == names
        bad = {name: v for name, v in r.items() if not (v['weights'] and v['values'] and v['losses'])}
        assert not bad, f"rank {rank}: resumed runs that differ from the run never killed: {bad}"
