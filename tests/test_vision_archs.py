"""Every supported family of torchvision architectures: cut, channel adaptation, head, a training step, and
pretrained weights loaded from a (fake) cache without touching the network."""
import pytest
import torch
from torch import nn

from fastcb.vision.learner import create_vision_model, vision_splitter, supported_archs, load_pretrained, pretrained_path

@pytest.fixture(autouse=True)
def one_thread():
    "Small convolutions on a shared 2-core machine: one thread avoids OpenMP's slow-down when the other core is busy."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# one representative per family (the large members of a family share its layout)
ARCHS = ['resnet18', 'resnet50', 'resnext50_32x4d', 'wide_resnet50_2', 'regnet_x_400mf', 'mobilenet_v2',
         'mobilenet_v3_large', 'efficientnet_b0', 'efficientnet_v2_s', 'densenet121', 'vgg11_bn', 'convnext_tiny']

def test_every_family_is_represented():
    from fastcb.vision.learner import _families
    for fam in _families: assert any(a.startswith(fam) for a in ARCHS), fam
    assert set(ARCHS) <= set(supported_archs())

@pytest.mark.parametrize('arch', ARCHS)
def test_arch_builds_and_trains(arch):
    torch.manual_seed(0)
    model = create_vision_model(arch, n_out=3, n_in=1)
    body, head = vision_splitter(model)
    assert len(body) and len(head) and len(body) + len(head) == len(list(model.parameters()))
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 2, 0])
    out = model(x)
    assert out.shape == (4, 3)
    nn.functional.cross_entropy(out, y).backward()
    assert all(p.grad is not None for p in model[1].parameters())

@pytest.mark.parametrize('arch', ['resnet18', 'mobilenet_v3_small', 'densenet121'])
def test_pretrained_from_cache(arch, tmp_path, monkeypatch):
    import torchvision.models as tvm, urllib.request
    def no_network(*a, **k): raise AssertionError('network access attempted')
    monkeypatch.setattr(urllib.request, 'urlopen', no_network)
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', no_network)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        with pytest.raises(FileNotFoundError, match='fastcb never downloads'):
            create_vision_model(arch, n_out=2, pretrained=True)
        torch.manual_seed(1)
        ref = tvm.get_model(arch)
        sd = ref.state_dict()
        if arch == 'densenet121':   # the published DenseNet files use the old 'norm.1' key names
            sd = {(k.replace('denselayer1.norm1.', 'denselayer1.norm.1.') if not k.endswith('num_batches_tracked') else k): v
                  for k, v in sd.items()}
        p = pretrained_path(arch)
        p.parent.mkdir(parents=True)
        torch.save(sd, p)
        model = create_vision_model(arch, n_out=2, pretrained=True, n_in=3)
        first_ref = next(m for m in ref.modules() if isinstance(m, nn.Conv2d))
        first = next(m for m in model[0].modules() if isinstance(m, nn.Conv2d))
        assert torch.equal(first.weight, first_ref.weight)
    finally: torch.hub.set_dir(old)
