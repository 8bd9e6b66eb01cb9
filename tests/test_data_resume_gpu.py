"""The (seed, epoch) data order of a GPU-resident TensorLoader (runs only where CUDA is available): the permutation is
made on the device by a generator reseeded each epoch, skipping to a batch and sharding need no host-device
synchronisation, and the order does not depend on what was drawn before."""
import pytest
from sync_count import syncs_during
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")

def test_epoch_order_on_gpu_is_a_function_of_seed_and_epoch():
    from fastcb.data import TensorLoader
    x, y = torch.randn(1000, 8), torch.arange(1000)
    dl = TensorLoader(x, y, bs=64, shuffle=True, seed=3, device='cuda')
    dl.set_epoch(4); full = [b[1] for b in dl]
    for _ in range(2): list(dl)
    torch.cuda.manual_seed_all(123)                       # the global CUDA stream changes nothing
    dl.set_epoch(4); dl.skip_batches(5)
    n, sites, tail = syncs_during(lambda: [b[1] for b in dl])
    assert n == 0, sites
    assert len(tail) == len(full) - 5 and all(torch.equal(a, b) for a, b in zip(tail, full[5:]))
    assert sorted(torch.cat(full).cpu().tolist()) == list(range(1000))
    dl.set_epoch(5); assert not torch.equal(torch.cat([b[1] for b in dl]), torch.cat(full))

def test_gpu_shards_partition_the_padded_epoch():
    from fastcb.data import TensorLoader
    x, y = torch.randn(1001, 8), torch.arange(1001)
    ranks = [TensorLoader(x, y, bs=64, shuffle=True, seed=0, device='cuda', rank=r, world_size=2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 8
    for dl in ranks: dl.set_epoch(1)
    n, sites, parts = syncs_during(lambda: [torch.cat([b[1] for b in dl]) for dl in ranks])
    assert n == 0, sites
    whole = TensorLoader(x, y, bs=64, shuffle=True, seed=0, device='cuda'); whole.set_epoch(1)
    full = torch.cat([b[1] for b in whole])
    assert torch.equal(torch.stack(parts, 1).flatten(), torch.cat([full, full[:1]]))
