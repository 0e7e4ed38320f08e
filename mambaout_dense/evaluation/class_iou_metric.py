"""mmseg's mIoU with each class's IoU among the returned metrics.

mmseg's ``IoUMetric`` prints a per-class table to the log but returns only the means (``mIoU``,
``mAcc``, ``aAcc``), so the per-class numbers never reach the scalar logs that curves and reports
read. :class:`ClassIoUMetric` is that metric, unchanged, plus ``IoU.<class>`` for every class (in
percent, as ``mIoU``; NaN for a class absent from both labels and predictions).

Imports mmseg; a config loads it with ``custom_imports``
(``mambaout_dense.evaluation.class_iou_metric``) and names it
``type='mambaout_dense.ClassIoUMetric'``.
"""
from typing import Dict

import numpy as np
from mmseg.evaluation.metrics import IoUMetric

from ..registry import METRICS

__all__ = ['ClassIoUMetric']


@METRICS.register_module()
class ClassIoUMetric(IoUMetric):
    """:class:`mmseg.evaluation.IoUMetric` that also returns ``IoU.<class>`` per class.

    Takes mmseg's arguments; ``iou_metrics`` must include ``'mIoU'``.
    """

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """mmseg's metrics, then per class: summed intersection / summed union x 100."""
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        inter = sum(r[0] for r in results).cpu().numpy().astype(np.float64)
        union = sum(r[1] for r in results).cpu().numpy().astype(np.float64)
        with np.errstate(divide='ignore', invalid='ignore'):
            iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
        for name, value in zip(self.dataset_meta['classes'], iou):
            metrics[f'IoU.{name}'] = round(float(value) * 100, 2)
        return metrics
