"""COCO AP per group of images, and how often a found instance gets the right class.

Built for the long-range task of :mod:`mambaout_dense.datasets.synthetic.longrange_dense`
(testing Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?", arXiv 2405.07992, through
Mask R-CNN, He et al., arXiv 1703.06870). Every ``images`` entry of the annotation file names its
group (``distance_group``: ``near`` is the local control, ``far`` the cue under test). mmdet's
``CocoMetric`` evaluates a list of image ids (``params.imgIds``); :class:`GroupedCocoMetric` runs
it once per group on the same predictions, so one validation pass gives, e.g., ``near_bbox_mAP``
and ``far_bbox_mAP``. A target's box and mask look the same whatever its class, so AP mixes
finding the target with reading its marker; the metric also reports the two apart:

- ``g_recall50``: targets with a detection of any class at box IoU >= 0.5;
- ``g_colour_acc``: of those, the share whose best-scoring such detection has the right class
  (chance 0.5 on the two-class task; NaN when none was found), over ``g_matched`` targets.

Imports mmdet; a config loads it with ``custom_imports``
(``mambaout_dense.evaluation.grouped_coco_metric``) and names it
``type='mambaout_dense.GroupedCocoMetric'``.
"""
from typing import Dict, List

import numpy as np

from ..registry import METRICS
from .coco_metric import CheckedCocoMetric

__all__ = ['GroupedCocoMetric', 'box_iou']


def box_iou(box, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x0, y0, x1, y1) box with (n, 4) boxes of the same layout."""
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


@METRICS.register_module()
class GroupedCocoMetric(CheckedCocoMetric):
    """:class:`CheckedCocoMetric` per group of images named in the annotation file.

    Args:
        group_key (str): Key of the ``images`` entries that names the group. Defaults to
            'distance_group'.
        iou (float): Box IoU at which a detection finds a target (recall and colour accuracy).
            Defaults to 0.5.
        **kwargs: As for :class:`CheckedCocoMetric` (``ann_file`` is required).
    """

    def __init__(self, group_key: str = 'distance_group', iou: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if self._coco_api is None:
            from ..errors import ConfigError
            raise ConfigError('GroupedCocoMetric needs ann_file (the groups are read from it)')
        self.group_key = group_key
        self.iou = iou

    def _groups(self) -> Dict[str, List[int]]:
        out: Dict[str, List[int]] = {}
        for img_id, img in self._coco_api.imgs.items():
            out.setdefault(str(img.get(self.group_key)), []).append(img_id)
        return {k: sorted(v) for k, v in sorted(out.items())}

    def _colour_scores(self, preds, ids: List[int]) -> Dict[str, float]:
        wanted = set(ids)
        targets = found = correct = 0
        for pred in preds:
            if pred['img_id'] not in wanted:
                continue
            for ann in self._coco_api.imgToAnns.get(pred['img_id'], []):
                x, y, w, h = ann['bbox']
                targets += 1
                if not len(pred['bboxes']):
                    continue
                hit = box_iou((x, y, x + w, y + h), pred['bboxes']) >= self.iou
                if not hit.any():
                    continue
                found += 1
                best = int(np.argmax(np.where(hit, pred['scores'], -np.inf)))
                correct += int(self.cat_ids[int(pred['labels'][best])] == ann['category_id'])
        return dict(recall50=found / targets if targets else float('nan'),
                    colour_acc=correct / found if found else float('nan'),
                    matched=found, targets=targets)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """AP (``bbox_mAP``, ``bbox_mAP_50``, ... as mmdet names them; 0 when a group has no
        detection at all), recall and colour accuracy, each prefixed by its group."""
        if self.cat_ids is None:
            self.cat_ids = self._coco_api.get_cat_ids(cat_names=self.dataset_meta['classes'])
        preds = [p for _, p in results]
        out: Dict[str, float] = {}
        try:
            for name, ids in self._groups().items():
                self.img_ids = ids
                res = {f'{m}_{k}': 0.0 for m in self.metrics for k in ('mAP', 'mAP_50')}
                res.update(super().compute_metrics(results))
                res.update(self._colour_scores(preds, ids))
                out.update({f'{name}_{k}': v for k, v in res.items()})
        finally:
            self.img_ids = None
        return out
