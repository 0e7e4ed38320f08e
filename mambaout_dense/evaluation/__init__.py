"""Evaluation metrics that validate their inputs (registered in ``mambaout_dense.registry``)."""
from .coco_metric import CheckedCocoMetric

__all__ = ['CheckedCocoMetric']
