"""TensorLoader and from_tensors on a GPU (runs only where CUDA is available): data resident on the device, a
seeded permutation made there, and no host-device synchronisation while iterating or fitting."""
import pytest
from sync_count import syncs_during, fit_syncs
import torch
from torch import nn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")



def test_tensor_loader_on_gpu_iterates_without_sync():
    from fastcb.data import TensorLoader
    x, y = torch.randn(1000, 8), torch.arange(1000)
    dl = TensorLoader(x, y, bs=64, shuffle=True, seed=0, device='cuda')
    assert dl.device.type == 'cuda' and dl.tensors[0].is_cuda
    next(iter(dl))   # warm-up: generator, allocator
    n, _, batches = syncs_during(lambda: [b for b in dl])
    assert n == 0, n
    assert all(b[0].is_cuda and b[1].is_cuda for b in batches)
    ys = torch.cat([b[1] for b in batches]).cpu()
    assert sorted(ys.tolist()) == list(range(1000))
    for xb, yb in batches: assert torch.equal(xb.cpu(), x[yb.cpu()])   # inputs and targets stay paired
    # the same seed gives the same epochs on the device
    a = [b[1].cpu() for b in TensorLoader(x, y, bs=64, shuffle=True, seed=3, device='cuda')]
    b = [b[1].cpu() for b in TensorLoader(x, y, bs=64, shuffle=True, seed=3, device='cuda')]
    assert all(torch.equal(i, j) for i, j in zip(a, b))

def count_fit_syncs(n_batches, bs=64):
    from fastcb.all import Learner, DataLoaders, accuracy
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n_batches * bs, 64, generator=g), torch.randint(0, 10, (n_batches * bs,), generator=g)
    dls = DataLoaders.from_tensors(x, y, x[:20 * bs], y[:20 * bs], bs=bs, seed=0, device='cuda')
    assert dls.device.type == 'cuda'
    torch.manual_seed(0)
    learn = Learner(dls, nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), metrics=accuracy)
    return fit_syncs(learn), learn

def test_from_tensors_fit_syncs_do_not_grow_with_batches(capsys):
    n200, _ = count_fit_syncs(200)
    n400, learn = count_fit_syncs(400)
    with capsys.disabled(): print(f"\nhost syncs in one fit on GPU-resident data: 200 batches -> {n200}, 400 -> {n400}")
    assert n400 == n200, (n200, n400)
    assert learn.recorder.values[-1][2] is not None

def test_vision_learner_on_gpu():
    from fastcb.all import digits_dls
    from fastcb.vision.learner import vision_learner
    dls = digits_dls(bs=64, size=32, device='cuda')
    learn = vision_learner(dls, 'resnet18')
    with learn.no_logging(): learn.fit(2)
    assert next(learn.model.parameters()).is_cuda
    assert learn.recorder.values[-1][2] > 0.8, learn.recorder.values
    label, idx, probs = learn.predict(dls.valid_ds.tensors[0][0])
    assert label in dls.vocab and probs.shape == (10,)
