"""Depthwise convolution (stride 1, same padding) with a fast CPU backward.

The k x k depthwise convolution is the token mixer of MambaOut's Gated CNN block (Yu & Wang,
"MambaOut: Do We Really Need Mamba for Vision?", arXiv 2405.07992). PyTorch's CPU convolution
backward takes an order of magnitude longer than the forward for it. :func:`depthwise_conv2d`
keeps PyTorch's forward and computes the backward as

- input gradient: the same depthwise convolution of the output gradient with the kernel flipped
  in both directions (a forward convolution, fast on every device);
- weight gradient: the compiled kernel of ``csrc/depthwise_conv_cpu.cpp`` on channels-last CPU
  tensors (parallel over rows, vectorised over channels);
- bias gradient: the output gradient summed over batch and positions.

Without a checked build of the kernel (``python -m mambaout_dense.ops.csrc.build``), on other
devices, or under ``torch.compile`` (which generates its own code), it is plain ``F.conv2d`` with
PyTorch's autograd.
"""
import os.path as osp
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .csrc.extension import CompiledExtension

__all__ = ['depthwise_conv2d', 'EXTENSION']

LIB_NAME = 'mambaout_dense_depthwise_conv_cpu'
SOURCE = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc', 'depthwise_conv_cpu.cpp')
#: The compiled weight-gradient kernel and its checked build.
EXTENSION = CompiledExtension(LIB_NAME, SOURCE, 'depthwise_conv_meta.json')


class _DepthwiseConv2d(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=x.shape[1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        k, channels = weight.shape[-1], x.shape[1]
        grad_x = grad_w = grad_b = None
        grad = grad.contiguous(memory_format=torch.channels_last)
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight.flip(-1, -2), None, padding=k // 2, groups=channels)
        if ctx.needs_input_grad[1]:
            # (B, C, H, W) channels-last views -> (B, H, W, C) contiguous
            grad_w = EXTENSION.load()[0].weight_grad(
                x.permute(0, 2, 3, 1).contiguous(), grad.permute(0, 2, 3, 1), k)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b


def depthwise_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """Depthwise convolution, stride 1, padding ``k // 2`` (odd ``k``).

    Args:
        x (Tensor): (B, C, H, W); channels-last memory avoids copies.
        weight (Tensor): (C, 1, k, k).
        bias (Tensor, optional): (C,). Defaults to None.

    Returns:
        Tensor: (B, C, H, W), equal to ``F.conv2d(x, weight, bias, padding=k // 2, groups=C)``.
    """
    k = weight.shape[-1]
    fast = (x.device.type == 'cpu' and x.dtype in (torch.float32, torch.float64)
            and weight.shape[-2] == k and k % 2 == 1 and weight.shape[0] == x.shape[1]
            and weight.shape[1] == 1 and torch.is_grad_enabled()
            and (x.requires_grad or weight.requires_grad) and not torch.compiler.is_compiling()
            and EXTENSION.load()[0] is not None)
    if not fast:
        return F.conv2d(x, weight, bias, padding=k // 2, groups=x.shape[1])
    return _DepthwiseConv2d.apply(x, weight, bias)
