"""Checkpoints: safe reading, key-by-key comparison, strict pretrained loading, and converters
from the official/timm layouts (pure functions). Importing this package changes no global state;
:mod:`mambaout_dense.safe_io` is the module that switches mmengine over to these readers.
"""
from ..errors import CheckpointError
from .compare import StateDictDiff, check_state_dict, diff_state_dicts
from .io import (
    INERT_CONFIG_CLASSES,
    OpaqueObject,
    check_finite_weights,
    describe_non_checkpoint,
    extract_state_dict,
    first_nonfinite,
    load_local_checkpoint,
    safe_load,
)
from .loading import LoadReport, load_pretrained, resolve_checkpoint

__all__ = [
    'CheckpointError', 'OpaqueObject', 'safe_load', 'extract_state_dict',
    'describe_non_checkpoint', 'load_local_checkpoint', 'INERT_CONFIG_CLASSES', 'StateDictDiff',
    'diff_state_dicts', 'check_state_dict', 'load_pretrained', 'resolve_checkpoint', 'LoadReport',
    'first_nonfinite', 'check_finite_weights'
]
