"""Loggers make no host-device synchronisation per batch (runs only where CUDA is available).

CSVLogger adds none per batch; TensorBoardCallback(n_steps=N) adds one transfer every N training steps (the
Recorder's flush of the pending losses), so 200 more batches may add at most 200 // N synchronisations.
"""
import pytest
from sync_count import fit_syncs
import torch
from torch import nn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")

def count_syncs(n_batches, mk_logger, tmp_path, bs=64):
    from fastcb.all import Learner, DataLoaders, accuracy
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * bs, 64, generator=g).cuda()
    y = torch.randint(0, 10, (n_batches * bs,), generator=g).cuda()
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]   # data already on the GPU
    torch.manual_seed(0)
    learn = Learner(DataLoaders(batches, batches[:20], device='cuda'),
                    nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), nn.CrossEntropyLoss(),
                    metrics=accuracy, path=tmp_path, cbs=mk_logger())
    learn.remove_cb(learn.progress)
    return fit_syncs(learn), learn

def test_csv_logger_no_sync_per_batch(tmp_path, capsys):
    from fastcb.callback.progress import CSVLogger
    n200, _ = count_syncs(200, lambda: CSVLogger(), tmp_path)
    n400, learn = count_syncs(400, lambda: CSVLogger(), tmp_path)
    with capsys.disabled(): print(f"\n[CSVLogger] host syncs in one fit: 200 batches -> {n200}, 400 batches -> {n400}")
    assert n400 <= n200, (n200, n400)
    assert len(learn.csv_logger.read_log()) == 1

@pytest.mark.parametrize('n_steps', [50, 100])
def test_tensorboard_one_sync_per_n_steps(n_steps, tmp_path, capsys):
    pytest.importorskip('tensorboard', reason='needs the tensorboard extra: pip install fastcb[tensorboard]')
    from fastcb.callback.tensorboard import TensorBoardCallback
    mk = lambda: TensorBoardCallback('runs/sync', n_steps=n_steps)
    n200, _ = count_syncs(200, mk, tmp_path)
    n400, learn = count_syncs(400, mk, tmp_path)
    with capsys.disabled(): print(f"\n[TensorBoard n_steps={n_steps}] host syncs in one fit: 200 batches -> {n200}, "
                                  f"400 batches -> {n400}")
    assert n400 - n200 <= 200 // n_steps, (n200, n400)
    assert learn.tensor_board.step == 400
