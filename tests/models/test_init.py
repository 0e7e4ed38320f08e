"""Initialisation from scratch equals the references'.

MambaOut (Yu & Wang, arXiv 2405.07992) as timm and the official release initialise it:
truncated normal (std 0.02) on every Conv2d and Linear weight, zero biases, LayerNorm at 1 / 0.
Our backbone after ``init_weights()`` is compared with timm's ``mambaout_*`` built with random
weights (no download), tensor by tensor through the timm -> our key mapping: same constants,
and the same spread within the sampling error of the tensor's size.
"""
import math

import pytest
import torch
from torch import nn

from mambaout_dense.checkpoint.mambaout import convert_mambaout
from mambaout_dense.models import HybridBackbone, MambaOut, VMamba

timm = pytest.importorskip('timm')


def _assert_same_distribution(key: str, got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.shape == ref.shape, key
    if float(ref.std()) == 0.0 or ref.numel() == 1:  # a constant: biases, LayerNorm
        assert torch.equal(got, ref), f'{key}: {got.flatten()[:4]} vs {ref.flatten()[:4]}'
        return
    n = ref.numel()
    ref_std, got_std = float(ref.std()), float(got.std())
    # 6 standard errors of a sample std (relative ~ 1/sqrt(2n)) and of a sample mean, plus 1%:
    # float32 sampling (erfinv of a float32 uniform) gives the draws heavier tails than a normal
    # (seeds spread the std of a 1.8M-element tensor by about 0.4%); the layers left at
    # PyTorch's default differ by a factor of 2 to 20
    assert abs(got_std - ref_std) <= ref_std * (6 / math.sqrt(2 * n) + 0.01), (key, got_std,
                                                                                 ref_std)
    assert abs(float(got.mean()) - float(ref.mean())) <= ref_std * (6 / math.sqrt(n) + 0.01), key
    assert float(got.abs().max()) <= 2.0  # trunc_normal_'s cut at +-2


@pytest.mark.parametrize('arch', ['femto', 'tiny'])
def test_mambaout_init_matches_timm(arch):
    torch.manual_seed(0)
    reference = timm.create_model(f'mambaout_{arch}', pretrained=False)
    ours = MambaOut(arch)
    ours.init_weights()
    expected, ignored = convert_mambaout(reference.state_dict())
    state = ours.state_dict()
    assert ignored and set(expected) <= set(state)
    assert set(state) - set(expected) == {k for k in state if k.startswith('norm')}
    convs = [k for k in expected if k.endswith('conv.weight') or '.conv1.' in k]
    assert convs  # the depthwise and stem convolutions are compared, not only the linears
    for key, ref in expected.items():
        _assert_same_distribution(key, state[key], ref)


def test_each_family_initialises_the_layers_its_reference_does():
    """MambaOut and the hybrid (MambaOut's stem, downsampling and blocks): Conv2d and Linear.
    VMamba's official release: Linear only (its convolutions keep PyTorch's default)."""
    torch.manual_seed(0)
    for cls, layers in ((MambaOut, (nn.Conv2d, nn.Linear)),
                        (HybridBackbone, (nn.Conv2d, nn.Linear)), (VMamba, (nn.Linear, ))):
        model = cls('test')
        model.init_weights()
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight.numel() >= 256:
                std = float(module.weight.std())
                if isinstance(module, layers):
                    assert std == pytest.approx(0.02, rel=0.35), (cls.__name__, name, std)
                else:  # kaiming-uniform default: std = 1 / sqrt(3 * fan_in)
                    fan_in = module.weight[0].numel()
                    assert std == pytest.approx((3 * fan_in)**-0.5, rel=0.35), (name, std)
