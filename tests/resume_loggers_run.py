"""One training run of tests/test_resume_loggers.py, in a fresh interpreter: `python resume_loggers_run.py FOLDER MODE`.

MODE 'kill': fit(4, resume='auto') with a CSVLogger and a TensorBoardCallback in their default places, checkpoints every
3 steps, and SIGKILL at step KILL_AT (mid-epoch, after the writer has flushed steps past the last checkpoint: no cleanup
runs). MODE 'resume': the same command again, which resumes from the last checkpoint. MODE 'plain': a plain fit(1).
"""
import os, signal, sys
from pathlib import Path
import torch
from torch import nn
from fastcb.callback.core import Callback
from fastcb.learner import Learner
from fastcb.data import DataLoaders, TensorLoader
from fastcb.metrics import accuracy
from fastcb.callback.progress import CSVLogger
from fastcb.callback.tensorboard import TensorBoardCallback
from fastcb.checkpoint import CheckpointCallback

N_TRAIN, BS, N_EPOCH, KILL_AT = 40, 5, 4, 14   # 8 steps per epoch; checkpoints at steps 3, 6, 8 (epoch end), 9, 12

class Flush(Callback):
    "Flush TensorBoard's writer after each step, as its timer may have done before a kill: the steps after the checkpoint are on disk."
    order = 100
    def after_batch(self): self.learn.tensor_board.writer.flush()

class Killer(Callback):
    order = 2000   # after the loggers and the checkpoint of the same step
    def after_batch(self):
        if self.learn.train_iter == KILL_AT: os.kill(os.getpid(), signal.SIGKILL)

def learner(path):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(N_TRAIN + 10, 4, generator=g), torch.randint(0, 3, (N_TRAIN + 10,), generator=g)
    dls = DataLoaders(TensorLoader(x[:N_TRAIN], y[:N_TRAIN], bs=BS, shuffle=True, seed=3),
                      TensorLoader(x[N_TRAIN:], y[N_TRAIN:], bs=5), loss_func=nn.CrossEntropyLoss())
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    learn = Learner(dls, model, metrics=accuracy, path=path, cbs=[CSVLogger(), TensorBoardCallback(n_steps=2)])
    return learn.remove_cb(learn.progress)

if __name__ == '__main__':
    path, mode = Path(sys.argv[1]), sys.argv[2]
    learn = learner(path)
    with learn.no_logging():
        if mode == 'plain': learn.fit(1)
        else: learn.fit(N_EPOCH, resume='auto', cbs=[CheckpointCallback(every_n_steps=3, keep=None), Flush()]
                                                     + ([Killer()] if mode == 'kill' else []))
