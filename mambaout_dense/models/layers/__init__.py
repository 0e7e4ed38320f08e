"""Small shared blocks: normalisation, stochastic depth, attention mixers."""
from .attention import GlobalAttention, WindowAttention
from .drop import DropPath
from .norm import LayerNorm2d

__all__ = ['LayerNorm2d', 'DropPath', 'GlobalAttention', 'WindowAttention']
