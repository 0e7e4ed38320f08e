"""Evaluation metrics that validate their inputs.

The metrics import their task package (mmdet), so this package imports none of them: a config
loads the one it uses with ``custom_imports`` (``mambaout_dense.evaluation.coco_metric``).
"""
