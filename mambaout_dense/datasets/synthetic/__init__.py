"""Synthetic stand-ins for COCO instance segmentation and ADE20K semantic segmentation.

Small, procedurally drawn sets in the exact on-disk layouts of COCO 2017 and
ADEChallengeData2016, so that the standard mmdet/mmseg dataset classes and configs read them
unchanged. Generation is deterministic for a seed. Imports numpy, OpenCV and pycocotools only.
"""
from .ade import ADE_CLASSES, ADE_LABEL_IDS, ADE_PALETTE, ade_sample, generate_ade, render_ade_image
from .coco import (
                  COCO_CLASSES,
                  COCO_PALETTE,
                  coco_sample,
                  encode_mask,
                  generate_coco,
                  render_coco_image,
)

__all__ = [
    'COCO_CLASSES', 'COCO_PALETTE', 'generate_coco', 'coco_sample', 'render_coco_image',
    'encode_mask', 'ADE_CLASSES', 'ADE_LABEL_IDS', 'ADE_PALETTE', 'generate_ade', 'ade_sample',
    'render_ade_image',
]
