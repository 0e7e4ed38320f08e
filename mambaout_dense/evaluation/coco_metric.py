"""COCO bbox/segm AP whose ground truth is cleaned exactly as ``CheckedCocoDataset`` cleans it.

mmdet's ``CocoMetric`` reads the annotation file itself with pycocotools: a malformed file fails
without its name, and an annotation that the dataset skipped (a degenerate polygon, an empty or
absent ``segmentation`` when masks are scored) still reaches pycocotools, which crashes inside
``pycocotools.mask.frPyObjects`` / ``annToRLE`` when segm AP is computed. :class:`CheckedCocoMetric`
reads the file with :func:`~mambaout_dense.datasets.coco_json.read_coco_json` and cleans it with
:func:`~mambaout_dense.datasets.coco_json.clean_coco` under the dataset's rule (annotations
without a mask are dropped when ``'segm'`` is scored, as the dataset drops them when its pipeline
loads masks), with one counted warning per kind.

Imports mmdet; a config loads it with ``custom_imports``
(``mambaout_dense.evaluation.coco_metric``) and names it
``type='mambaout_dense.CheckedCocoMetric'``.
"""
from typing import Optional

from mmdet.datasets.api_wrappers import COCO
from mmdet.evaluation import CocoMetric

from ..datasets.coco_json import clean_coco, coco_api_from_dict, read_coco_json
from ..registry import METRICS

__all__ = ['CheckedCocoMetric']


@METRICS.register_module()
class CheckedCocoMetric(CocoMetric):
    """mmdet's ``CocoMetric`` with a validated, cleaned ground-truth file.

    Args:
        ann_file (str, optional): COCO annotation file. Defaults to None (ground truth is then
            converted from the dataset, as in mmdet).
        sort_categories (bool): As in mmdet. Defaults to False.
        **kwargs: The other arguments of ``mmdet.evaluation.CocoMetric`` (``metric``, ...).
    """

    def __init__(self, ann_file: Optional[str] = None, sort_categories: bool = False,
                 **kwargs) -> None:
        super().__init__(ann_file=None, sort_categories=sort_categories, **kwargs)
        if ann_file is None:
            return
        cleaned, report = clean_coco(read_coco_json(ann_file), ann_file,
                                     need_masks='segm' in self.metrics)
        report.log()
        if sort_categories:
            cleaned['categories'] = sorted(cleaned['categories'], key=lambda c: c['id'])
        self._coco_api = coco_api_from_dict(cleaned, COCO)
        if sort_categories:
            cats = self._coco_api.cats
            self._coco_api.cats = {i: cats[i] for i in sorted(cats)}
