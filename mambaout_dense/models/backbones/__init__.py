"""Backbones; each registers itself in ``mambaout_dense.registry.MODELS``."""
from .base import DenseBackbone, ShapeSpec
from .hybrid import HybridBackbone
from .mambaout import MambaOut
from .vmamba import VMamba

__all__ = ['DenseBackbone', 'ShapeSpec', 'MambaOut', 'VMamba', 'HybridBackbone']
