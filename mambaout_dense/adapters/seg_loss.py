"""Segmentation losses: mmseg's, fixed or made affordable on a CPU.

``CrossEntropyLoss``: mmseg's, whose class-weighted mean also works when pixels are ignored.

mmseg 1.2's ``cross_entropy`` computes the average factor of a class-weighted loss by indexing
the class weights with every label, the ignore label (255) included, so any config with
``class_weight`` fails on data with ignored pixels (``IndexError: index 255 is out of bounds``),
and it does so in a Python loop over pixels. This subclass takes the same arguments and, for that
case (softmax, ``class_weight`` set, mean over non-ignored pixels), returns the average that
mmseg's code intends: ``sum_i p_i w[y_i] l_i / sum_i w[y_i]`` over the pixels that are not
ignored, with ``p_i`` the per-pixel weights when given (an OHEM sampler's kept pixels, say) and 1
otherwise. Every other case is mmseg's own code. Config::

    custom_imports = dict(imports=[..., 'mambaout_dense.adapters.seg_loss'])
    loss_decode = dict(type='mambaout_dense.CrossEntropyLoss', class_weight=[...],
                       avg_non_ignore=True)

``LovaszLoss``: mmseg's Lovasz-softmax loss on a strided subset of the pixels (see the class).

Imports mmseg.
"""
import torch
import torch.nn.functional as F
from mmseg.models.losses import CrossEntropyLoss as MMSegCrossEntropyLoss
from mmseg.models.losses import LovaszLoss as MMSegLovaszLoss

from ..registry import MODELS

__all__ = ['CrossEntropyLoss', 'LovaszLoss']


@MODELS.register_module()
class CrossEntropyLoss(MMSegCrossEntropyLoss):
    """``mmseg.models.CrossEntropyLoss`` with a working class-weighted mean (see the module doc).

    Args: as mmseg's ``CrossEntropyLoss``.
    """

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor, weight=None,
                avg_factor=None, reduction_override=None, ignore_index: int = -100,
                **kwargs) -> torch.Tensor:
        own = (self.class_weight is not None and not self.use_sigmoid and not self.use_mask
               and self.avg_non_ignore and avg_factor is None
               and (reduction_override or self.reduction) == 'mean')
        if not own:
            return super().forward(cls_score, label, weight=weight, avg_factor=avg_factor,
                                   reduction_override=reduction_override,
                                   ignore_index=ignore_index, **kwargs)
        class_weight = cls_score.new_tensor(self.class_weight)
        if weight is None:
            return self.loss_weight * F.cross_entropy(cls_score, label, weight=class_weight,
                                                      ignore_index=ignore_index, reduction='mean')
        per_pixel = F.cross_entropy(cls_score, label, weight=class_weight,
                                    ignore_index=ignore_index, reduction='none')
        total = class_weight[label[label != ignore_index]].sum()
        return self.loss_weight * (per_pixel * weight.to(per_pixel.dtype)).sum() / total


@MODELS.register_module()
class LovaszLoss(MMSegLovaszLoss):
    """mmseg's ``LovaszLoss`` on every ``stride``-th pixel of each row and column.

    The Lovasz-softmax loss sorts every pixel's error once per class; on a CPU, at 256 x 256 and
    batch 4, that costs more than the rest of the decode head. mmseg's decode heads upsample their
    stride-4 logits to the label's size before the loss, so ``stride=4`` gives the loss one pixel
    per logit cell of the head, at 1/16 of the sorting. ``stride=1`` is mmseg's loss unchanged.

    Args:
        stride (int): Keep pixels ``[::stride, ::stride]`` of the logits and the labels.
            Defaults to 1.
        Others: as mmseg's ``LovaszLoss`` (``loss_type``, ``classes``, ``per_image``,
            ``reduction``, ``class_weight``, ``loss_weight``, ``loss_name``).
    """

    def __init__(self, stride: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        if stride < 1:
            raise ValueError(f'LovaszLoss stride must be >= 1, got {stride}')
        self.stride = stride

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor, weight=None, **kwargs):
        s = self.stride
        if s > 1:
            # (contiguous: mmseg's flattening uses view)
            cls_score = cls_score[:, :, ::s, ::s].contiguous()
            label = label[:, ::s, ::s].contiguous()
            weight = None if weight is None else weight[:, ::s, ::s].contiguous()
        return super().forward(cls_score, label, weight=weight, **kwargs)
