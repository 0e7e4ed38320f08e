"""Datasets for mambaout_dense: synthetic COCO/ADE20K-format generators and validating adapters.

Importing this package pulls in numpy, OpenCV and pycocotools only (no mmdet/mmseg), so the
generators run before, or without, the OpenMMLab task packages. The adapters import their task
package and are loaded by the configs that use them (``custom_imports``):
:mod:`~mambaout_dense.datasets.checked_coco` (mmdet) and
:mod:`~mambaout_dense.datasets.checked_ade` (mmseg); :mod:`~mambaout_dense.datasets.checks` and
:mod:`~mambaout_dense.datasets.coco_json` hold what they share.
"""
from .synthetic import (
                        ADE_CLASSES,
                        ADE_LABEL_IDS,
                        ADE_PALETTE,
                        COCO_CLASSES,
                        COCO_PALETTE,
                        ade_sample,
                        coco_sample,
                        encode_mask,
                        generate_ade,
                        generate_coco,
                        render_ade_image,
                        render_coco_image,
)

__all__ = [
    'COCO_CLASSES', 'COCO_PALETTE', 'generate_coco', 'coco_sample', 'render_coco_image',
    'encode_mask', 'ADE_CLASSES', 'ADE_LABEL_IDS', 'ADE_PALETTE', 'generate_ade', 'ade_sample',
    'render_ade_image',
]
