"""mambaout_dense: MambaOut and VMamba-style backbones for dense prediction on OpenMMLab.

Importing the package imports nothing else and changes no global state. The parts:

- :mod:`mambaout_dense.models` (backbones, layers) and :mod:`mambaout_dense.ops` (selective
  scan) need torch and mmengine only; importing ``models`` registers the backbones in the scoped
  registries of :mod:`mambaout_dense.registry`.
- :mod:`mambaout_dense.engine` registers the training hooks; :mod:`mambaout_dense.safe_io`
  switches mmengine to safe checkpoint reading and atomic writes (the one module that changes
  mmengine's process-wide state, and says so).
- Task adapters import their task package and are loaded by the configs that use them:
  :mod:`mambaout_dense.datasets.checked_coco`, :mod:`mambaout_dense.evaluation.coco_metric`
  (mmdet), :mod:`mambaout_dense.datasets.checked_ade` (mmseg).
"""
from .version import __version__

__all__ = ['__version__']
