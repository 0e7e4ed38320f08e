"""RoIAlign (He et al., "Mask R-CNN", arXiv 1703.06870) with a parallel CPU kernel.

Average pooling with the semantics of mmcv's ``RoIAlign(pool_mode='avg')`` and torchvision's
``roi_align``: ``aligned=True`` shifts box corners by half a pixel, ``sampling_ratio=0`` samples
``ceil(bin size)`` points per bin side, samples outside the map contribute zero. mmcv 2.1's CPU
kernel runs on one thread and its backward recomputes every sample's bilinear weights once per
channel; the compiled kernel of ``csrc/roi_align_cpu.cpp`` computes them once per RoI, runs the
forward in parallel over RoIs and the backward in parallel over channels (each thread owns whole
gradient planes, so no write races another).

Backends: CPU tensors use the compiled kernel when a checked build exists
(``python -m mambaout_dense.ops.csrc.build``), otherwise torchvision's ``roi_align``; CUDA
tensors use torchvision's. :class:`RoIAlign` takes the arguments of ``mmcv.ops.RoIAlign`` so that
detectors can swap it in (see :mod:`mambaout_dense.adapters.roi_extractor`).
"""
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..errors import ConfigError
from .csrc.extension import CompiledExtension

__all__ = ['RoIAlign', 'roi_align', 'roi_align_backend', 'EXTENSION']

LIB_NAME = 'mambaout_dense_roi_align_cpu'
SOURCE = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc', 'roi_align_cpu.cpp')
#: The compiled CPU kernel and its checked build.
EXTENSION = CompiledExtension(LIB_NAME, SOURCE, 'roi_align_meta.json')


def roi_align_backend(device: Union[str, torch.device] = 'cpu') -> str:
    """``'cpu'`` (the compiled kernel) for CPU tensors when it is built, else ``'torchvision'``."""
    if torch.device(device).type == 'cpu' and EXTENSION.load()[0] is not None:
        return 'cpu'
    return 'torchvision'


class _RoIAlignCPU(torch.autograd.Function):

    @staticmethod
    def forward(ctx, input: Tensor, rois: Tensor, output_size: Tuple[int, int],
                spatial_scale: float, sampling_ratio: int, aligned: bool) -> Tensor:
        module = EXTENSION.load()[0]
        ctx.save_for_backward(rois)
        ctx.args = (input.shape, output_size, spatial_scale, sampling_ratio, aligned)
        return module.forward(input, rois, output_size[0], output_size[1], spatial_scale,
                              sampling_ratio, aligned)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        (rois, ) = ctx.saved_tensors
        shape, output_size, spatial_scale, sampling_ratio, aligned = ctx.args
        grad_input = None
        if ctx.needs_input_grad[0]:
            grad_input = EXTENSION.load()[0].backward(
                grad_output, rois, shape[0], shape[1], shape[2], shape[3], output_size[0],
                output_size[1], spatial_scale, sampling_ratio, aligned)
        return grad_input, None, None, None, None, None


def roi_align(input: Tensor, rois: Tensor, output_size: Union[int, Sequence[int]],
              spatial_scale: float = 1.0, sampling_ratio: int = 0,
              aligned: bool = True) -> Tensor:
    """Average-pooled RoIAlign.

    Args:
        input (Tensor): Feature maps (B, C, H, W).
        rois (Tensor): (R, 5) rows of (batch index, x1, y1, x2, y2) in input-image pixels.
        output_size (int | Sequence[int]): (out_h, out_w), or one int for both.
        spatial_scale (float): Map pixels per image pixel (1 / stride). Defaults to 1.
        sampling_ratio (int): Samples per bin side; 0 adapts to the bin size. Defaults to 0.
        aligned (bool): Shift box corners by -0.5 pixel (pixel-centre convention).
            Defaults to True.

    Returns:
        Tensor: (R, C, out_h, out_w).
    """
    size = (int(output_size), int(output_size)) if isinstance(output_size, int) else tuple(
        int(s) for s in output_size)
    if roi_align_backend(input.device) == 'cpu' and input.dtype in (torch.float32,
                                                                    torch.float64):
        return _RoIAlignCPU.apply(input, rois.to(input.dtype), size, float(spatial_scale),
                                  int(sampling_ratio), bool(aligned))
    from torchvision.ops import roi_align as tv_roi_align
    return tv_roi_align(input, rois.to(input.dtype), size, spatial_scale, sampling_ratio,
                        aligned)


class RoIAlign(nn.Module):
    """Drop-in for ``mmcv.ops.RoIAlign`` (average pooling) on the parallel CPU kernel.

    Args:
        output_size (int | tuple[int, int]): Output (h, w).
        spatial_scale (float): 1 / stride of the map. Defaults to 1.
        sampling_ratio (int): Samples per bin side, 0 = adaptive. Defaults to 0.
        pool_mode (str): Only ``'avg'`` (mmcv's max mode is not implemented). Defaults to 'avg'.
        aligned (bool): Half-pixel shift of box corners. Defaults to True.
        use_torchvision (bool, optional): Accepted for mmcv compatibility; ignored (the backend
            is chosen per device, see :func:`roi_align_backend`). Defaults to None.
    """

    def __init__(self, output_size: Union[int, Tuple[int, int]], spatial_scale: float = 1.0,
                 sampling_ratio: int = 0, pool_mode: str = 'avg', aligned: bool = True,
                 use_torchvision: Optional[bool] = None) -> None:
        super().__init__()
        if pool_mode != 'avg':
            raise ConfigError(f"RoIAlign: only pool_mode='avg' is implemented, got {pool_mode!r}")
        self.output_size = ((output_size, output_size) if isinstance(output_size, int)
                            else tuple(output_size))
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        """Args: input (Tensor): (B, C, H, W); rois (Tensor): (R, 5). Returns (R, C, h, w)."""
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                         self.aligned)

    def extra_repr(self) -> str:
        return (f'output_size={self.output_size}, spatial_scale={self.spatial_scale}, '
                f'sampling_ratio={self.sampling_ratio}, aligned={self.aligned}')
