"""Small shared blocks."""
from .drop import DropPath
from .norm import LayerNorm2d

__all__ = ['LayerNorm2d', 'DropPath']
