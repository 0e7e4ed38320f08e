"""The gate of MambaOut's Gated CNN block, ``GELU(g) * cat(i, c)``, as one autograd node.

In the block, ``fc1`` yields ``gi = cat(g, i)`` (gate g of ``hidden`` channels, identity part i)
and the convolved part c; ``fc2`` reads ``GELU(g) * cat(i, c)``. Written with PyTorch ops, a
training step stores GELU(g) and the concatenation (two extra hidden-sized tensors per block),
makes a concatenation in the forward and another one (of the gradients of g and i) in the
backward. :func:`gated_product` writes the product straight into one output, keeps only ``gi`` and
``c`` (which exist anyway) for the backward, recomputes GELU(g) there, and writes the gradients
of g and i straight into one ``gi``-shaped buffer. Values equal the plain formula's (exact GELU),
which is what runs under ``torch.compile`` (inductor fuses it itself).
"""
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ['gated_product']


class _GatedProduct(torch.autograd.Function):

    @staticmethod
    def forward(ctx, gi: Tensor, c: Tensor, hidden: int) -> Tensor:
        k = gi.shape[-1] - hidden  # channels of i
        out = F.gelu(gi[..., :hidden])
        out[..., :k].mul_(gi[..., hidden:])
        out[..., k:].mul_(c)
        ctx.save_for_backward(gi, c)
        ctx.hidden = hidden
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        gi, c = ctx.saved_tensors
        hidden = ctx.hidden
        k = gi.shape[-1] - hidden
        g = gi[..., :hidden]
        grad = grad.contiguous()
        act = F.gelu(g)
        grad_gi = torch.empty_like(gi)
        grad_g = grad_gi[..., :hidden]
        # d/dg: GELU'(g) * grad * cat(i, c), the product formed in place in grad_gi
        torch.mul(grad[..., :k], gi[..., hidden:], out=grad_g[..., :k])
        torch.mul(grad[..., k:], c, out=grad_g[..., k:])
        torch.ops.aten.gelu_backward.grad_input(grad_g, g, grad_input=grad_g)
        # d/di and d/dc: grad * GELU(g)
        torch.mul(grad[..., :k], act[..., :k], out=grad_gi[..., hidden:])
        grad_c = grad[..., k:] * act[..., k:]
        return grad_gi, grad_c, None


def gated_product(gi: Tensor, c: Tensor, hidden: int) -> Tensor:
    """``GELU(gi[..., :hidden]) * cat(gi[..., hidden:], c)`` with a lean backward.

    Args:
        gi (Tensor): (..., hidden + k): the gate g, then the identity part i (k channels).
        c (Tensor): (..., hidden - k): the convolved part.
        hidden (int): Channels of the gate.

    Returns:
        Tensor: (..., hidden), contiguous.
    """
    if gi.shape[-1] - hidden + c.shape[-1] != hidden:
        # internal invariant: GatedCNNBlock splits fc1's output itself; no config value reaches it
        raise ValueError(f'gated_product: gi has {gi.shape[-1]} channels and c {c.shape[-1]}; '
                         f'expected k + (hidden - k) = hidden = {hidden}')
    if torch.compiler.is_compiling():  # inductor fuses the plain formula itself
        return F.gelu(gi[..., :hidden]) * torch.cat((gi[..., hidden:], c), dim=-1)
    return _GatedProduct.apply(gi, c, hidden)
