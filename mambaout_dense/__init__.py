"""mambaout_dense: MambaOut and VMamba-style backbones for dense prediction on OpenMMLab.

Importing the package registers its backbones, hooks and datasets in the scoped registries of
:mod:`mambaout_dense.registry`, routes mmengine's local checkpoint loading through
:func:`mambaout_dense.checkpoint.safe_load`, and makes mmengine's local file writes (checkpoints)
atomic (:func:`mambaout_dense.engine.install_atomic_writes`).
"""
from . import engine, models  # noqa: F401  (registration side effects)
from .checkpoint import install_mmengine_loader
from .engine import install_atomic_writes
from .version import __version__

install_mmengine_loader()
install_atomic_writes()

# The validating dataset adapters and metric subclass mmdet's and mmseg's, so they are imported
# here, after the rest: `mambaout_dense.models` and `.ops` never import mmdet/mmseg, and
# `mambaout_dense.datasets` alone (the synthetic generators) does not either.
from . import evaluation  # noqa: E402,F401  (registers CheckedCocoMetric)
from .datasets import checked  # noqa: E402,F401  (registers CheckedCocoDataset, ...)

__all__ = ['__version__']
