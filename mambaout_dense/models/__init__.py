"""Models: backbones and shared layers (torch + mmengine only, no mmdet/mmseg imports)."""
from .backbones import *  # noqa: F401,F403
from .backbones import __all__ as _backbones

__all__ = list(_backbones)
