"""The depthwise convolution with the fast CPU backward against PyTorch's autograd."""
import pytest
import torch
import torch.nn.functional as F

from mambaout_dense.ops import depthwise_conv as dw

needs_kernel = pytest.mark.skipif(dw.EXTENSION.load()[0] is None,
                                  reason='depthwise-conv kernel not built')


def _grads(fn, x, w, b, cot):
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    out = fn(*leaves)
    return [out.detach(), *torch.autograd.grad(out, leaves, cot)]


@needs_kernel
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('shape,k,channels_last', [
    ((2, 6, 13, 9), 7, True), ((1, 16, 32, 40), 7, True), ((3, 4, 5, 5), 3, False),
    ((2, 8, 3, 4), 7, True)])  # maps smaller than the kernel
def test_equals_autograd_of_conv2d(dtype, shape, k, channels_last):
    g = torch.Generator().manual_seed(0)
    b_, c, h, w_ = shape
    x = torch.randn(b_, h, w_, c, generator=g, dtype=dtype).permute(0, 3, 1, 2)
    if not channels_last:
        x = x.contiguous()
    w = torch.randn(c, 1, k, k, generator=g, dtype=dtype)
    b = torch.randn(c, generator=g, dtype=dtype)
    cot = torch.randn(b_, c, h, w_, generator=g, dtype=dtype)
    ref = _grads(lambda a, ww, bb: F.conv2d(a, ww, bb, padding=k // 2, groups=c), x, w, b, cot)
    got = _grads(dw.depthwise_conv2d, x, w, b, cot)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for name, r, o in zip(('out', 'x', 'weight', 'bias'), ref, got):
        torch.testing.assert_close(o, r, msg=name, **tol)


@needs_kernel
def test_gradcheck():
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64).requires_grad_()
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64).requires_grad_()
    b = torch.randn(3, dtype=torch.float64).requires_grad_()
    torch.autograd.gradcheck(dw.depthwise_conv2d, (x, w, b))


def test_falls_back_to_conv2d_without_the_kernel(monkeypatch):
    monkeypatch.setattr(dw.EXTENSION, '_state', dict(module=None, reason='test', meta={}))
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    w = torch.randn(4, 1, 7, 7, requires_grad=True)
    out = dw.depthwise_conv2d(x, w)
    assert out.grad_fn is not None and 'Convolution' in type(out.grad_fn).__name__
    torch.testing.assert_close(out, F.conv2d(x, w, padding=3, groups=4))
