"""Safe checkpoint reading and atomic checkpoint writes for mmengine, switched on explicitly.

Importing this module changes two process-wide settings of mmengine, through its public
registration functions, and nothing else:

1. **Checkpoint reading.** ``CheckpointLoader.register_scheme(prefixes='', ...)`` makes every
   local path that mmengine loads (``load_from``, ``--resume``, ``tools/test.py``,
   ``init_cfg=dict(type='Pretrained')`` of mmdet/mmseg modules) go through
   :func:`mambaout_dense.checkpoint.load_local_checkpoint`: ``torch.load(weights_only=True)``,
   with a clear error for a file that is missing, not a checkpoint, truncated, or that would run
   code when unpickled.
2. **Local file writes.** ``register_backend('local', ..., prefixes='')`` makes mmengine write
   local files (checkpoints, ``last_checkpoint``) through
   :class:`mambaout_dense.engine.atomic_io.AtomicLocalBackend`: a temporary file renamed onto the
   final name, so a crash never leaves half a checkpoint under its name.

The configs of this repository import it (``custom_imports``), so the rules hold for our tools
and for mmdet's and mmseg's own tools when they run our configs; ``tools/*.py`` import it too.
:func:`install` is idempotent; :func:`installed` tells whether both settings are in place.
"""
from mmengine.fileio import register_backend
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint.io import load_local_checkpoint
from .engine.atomic_io import AtomicLocalBackend

__all__ = ['install', 'installed']


def install() -> None:
    """Route mmengine's local checkpoint loading and local writes through our safe versions."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')


def installed() -> bool:
    """True when mmengine reads local checkpoints and writes local files our way."""
    from mmengine.fileio.backends import backends, prefix_to_backends
    return (CheckpointLoader._schemes.get('') is load_local_checkpoint
            and backends.get('local') is AtomicLocalBackend
            and prefix_to_backends.get('') is AtomicLocalBackend)


install()
