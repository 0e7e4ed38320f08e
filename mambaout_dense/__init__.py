"""mambaout_dense: MambaOut and VMamba-style backbones for dense prediction on OpenMMLab.

Importing the package registers its backbones, hooks and datasets in the scoped registries of
:mod:`mambaout_dense.registry`, and routes mmengine's local checkpoint loading through
:func:`mambaout_dense.checkpoint.safe_load`.
"""
from . import engine, models  # noqa: F401  (registration side effects)
from .checkpoint import install_mmengine_loader
from .version import __version__

install_mmengine_loader()

__all__ = ['__version__']
