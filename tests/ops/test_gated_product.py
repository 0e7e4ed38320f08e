"""The Gated CNN block's gate as one autograd node, against the plain PyTorch formula."""
import pytest
import torch
import torch.nn.functional as F

from mambaout_dense.ops.gated_product import gated_product


def _plain(gi, c, hidden):
    return F.gelu(gi[..., :hidden]) * torch.cat((gi[..., hidden:], c), dim=-1)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('hidden,k,strided_c', [(40, 16, False), (40, 16, True), (8, 0, False),
                                                 (12, 11, True)])
def test_equals_plain_formula_and_its_gradients(dtype, hidden, k, strided_c):
    g = torch.Generator().manual_seed(0)
    gi = torch.randn(2, 5, 6, hidden + k, generator=g, dtype=dtype)
    c = torch.randn(2, 5, 6, hidden - k, generator=g, dtype=dtype)
    if strided_c:  # the block passes a permuted view of a channels-last convolution output
        c = c.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    cot = torch.randn(2, 5, 6, hidden, generator=g, dtype=dtype)
    results = []
    for fn in (_plain, gated_product):
        leaves = [gi.clone().requires_grad_(), c.clone().requires_grad_()]
        out = fn(*leaves, hidden)
        results.append([out.detach(), *torch.autograd.grad(out, leaves, cot)])
    for name, ref, got in zip(('out', 'gi', 'c'), *results):
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6, msg=name)


def test_gradcheck_and_no_grad_path():
    g = torch.Generator().manual_seed(1)
    gi = torch.randn(1, 3, 4, 10, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: gated_product(a, b, 7), (gi, c))
    with torch.no_grad():
        torch.testing.assert_close(gated_product(gi, c, 7), _plain(gi, c, 7))


def test_channel_mismatch_is_named():
    with pytest.raises(ValueError, match='hidden = 8'):
        gated_product(torch.zeros(1, 10), torch.zeros(1, 5), 8)
