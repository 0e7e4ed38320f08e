"""Checkpoint reading (safe) and converters from official/timm layouts (pure functions)."""
from .io import (
                 INERT_CONFIG_CLASSES,
                 CheckpointError,
                 OpaqueObject,
                 extract_state_dict,
                 install_mmengine_loader,
                 safe_load,
)

__all__ = [
    'CheckpointError', 'OpaqueObject', 'safe_load', 'extract_state_dict',
    'install_mmengine_loader', 'INERT_CONFIG_CLASSES'
]
