"""Accuracy and mIoU on the labelled pixels of a segmentation set, per group of images.

Built for the long-range task of :mod:`mambaout_dense.datasets.synthetic.longrange_dense`
(testing Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?", arXiv 2405.07992, through
UperNet, arXiv 1807.10221): the validation images come in groups (``near``: the local control,
``far``: the cue under test) named in their file names, and only the target pixels are labelled.
mmseg's ``IoUMetric`` pools every image; :class:`GroupedPixelMetric` scores each group on its own,
so one validation pass reports the control and the far cue side by side.

Imports mmseg; a config loads it with ``custom_imports``
(``mambaout_dense.evaluation.grouped_seg_metric``) and names it
``type='mambaout_dense.GroupedPixelMetric'``.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

from ..datasets.synthetic.longrange_dense import group_of
from ..errors import DataError
from ..registry import METRICS

__all__ = ['GroupedPixelMetric']


@METRICS.register_module()
class GroupedPixelMetric(BaseMetric):
    """Per group of images: accuracy and mIoU over the labelled (not ignored) pixels.

    Reported per group ``g`` (fractions in [0, 1], not mmseg's percentages): ``g_acc`` (correct
    labelled pixels / labelled pixels; chance 0.5 on the two-class task), ``g_mIoU`` (mean over
    the classes of IoU on the labelled pixels, a pixel predicted as a class outside the labels
    counting as a miss), ``g_images`` and ``g_pixels``; ``all_acc`` pools every image.

    Args:
        num_classes (int): Classes of the labels. Defaults to 2.
        ignore_index (int): Unlabelled value in the label maps. Defaults to 255.
        collect_device (str): As in mmengine. Defaults to 'cpu'.
        prefix (str, optional): Metric-name prefix. Defaults to 'lr'.
    """
    default_prefix: Optional[str] = 'lr'

    def __init__(self, num_classes: int = 2, ignore_index: int = 255,
                 collect_device: str = 'cpu', prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Count, per image, (group, correct, labelled, per-class intersection and union)."""
        for sample in data_samples:
            group = group_of(sample['img_path'])
            if group is None:
                raise DataError(f'{sample["img_path"]!r} names no group: expected '
                                'LR_<split>_<group>_<index>.jpg (longrange_dense)')
            pred = sample['pred_sem_seg']['data'].squeeze().cpu().numpy()
            label = sample['gt_sem_seg']['data'].squeeze().cpu().numpy()
            mask = label != self.ignore_index
            p, t = pred[mask], label[mask]
            inter = np.array([np.sum((p == c) & (t == c)) for c in range(self.num_classes)])
            union = np.array([np.sum((p == c) | (t == c)) for c in range(self.num_classes)])
            self.results.append((group, int(np.sum(p == t)), int(mask.sum()), inter, union))

    def compute_metrics(self, results: List[tuple]) -> Dict[str, float]:
        """The per-group numbers (see the class docstring)."""
        out: Dict[str, float] = {}
        for group in sorted({r[0] for r in results}) + ['all']:
            rs = [r for r in results if group in ('all', r[0])]
            correct, total = sum(r[1] for r in rs), sum(r[2] for r in rs)
            inter, union = sum(r[3] for r in rs), sum(r[4] for r in rs)
            out[f'{group}_acc'] = correct / total if total else float('nan')
            if group == 'all':
                continue
            seen = union > 0
            out[f'{group}_mIoU'] = float(np.mean(inter[seen] / union[seen])) if seen.any() \
                else float('nan')
            out[f'{group}_images'] = len(rs)
            out[f'{group}_pixels'] = total
        return out
