"""COCO bbox/segm AP whose ground truth goes through the checks of ``CheckedCocoDataset``.

mmdet's ``CocoMetric`` reads the annotation file itself with pycocotools: a malformed file fails
without its name, and a degenerate polygon (< 3 points) in the ground truth crashes inside
``pycocotools.mask.frPyObjects`` when segm AP is computed. :class:`CheckedCocoMetric` reads the
file with :func:`~mambaout_dense.datasets.checked.read_coco_json` and skips the same annotations
as :class:`~mambaout_dense.datasets.checked.CheckedCocoDataset`, with one counted warning per
kind, so evaluation sees the ground truth that training saw.
"""
from typing import Optional

from mmdet.evaluation import CocoMetric

from ..datasets.checked import clean_coco, coco_api_from_dict, read_coco_json
from ..registry import METRICS

__all__ = ['CheckedCocoMetric']


@METRICS.register_module()
class CheckedCocoMetric(CocoMetric):
    """mmdet's ``CocoMetric`` with a validated, cleaned ground-truth file.

    Args:
        ann_file (str, optional): COCO annotation file. Defaults to None (ground truth is then
            converted from the dataset, as in mmdet).
        sort_categories (bool): As in mmdet. Defaults to False.
        **kwargs: The other arguments of ``mmdet.evaluation.CocoMetric``.
    """

    def __init__(self, ann_file: Optional[str] = None, sort_categories: bool = False,
                 **kwargs) -> None:
        super().__init__(ann_file=None, sort_categories=sort_categories, **kwargs)
        if ann_file is None:
            return
        cleaned, report = clean_coco(read_coco_json(ann_file), ann_file)
        report.log()
        if sort_categories:
            cleaned['categories'] = sorted(cleaned['categories'], key=lambda c: c['id'])
        self._coco_api = coco_api_from_dict(cleaned)
        if sort_categories:
            cats = self._coco_api.cats
            self._coco_api.cats = {i: cats[i] for i in sorted(cats)}
