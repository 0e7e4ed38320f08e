"""Backbones; each registers itself in ``mambaout_dense.registry.MODELS``."""
from .base import DenseBackbone, ShapeSpec
from .mambaout import MambaOut

__all__ = ['DenseBackbone', 'ShapeSpec', 'MambaOut']
