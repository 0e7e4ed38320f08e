"""Training-loop pieces: hooks and the optimizer-wrapper constructor, registered in
:mod:`mambaout_dense.registry`.

One module per concern: :mod:`.plain_checkpoint` (checkpoints loadable with
``weights_only=True``), :mod:`.pruning` (prune old checkpoints after saving),
:mod:`.resume` (newest usable checkpoint), :mod:`.compat` (refuse checkpoints of another model),
:mod:`.divergence` (NaN/Inf guard), :mod:`.rng_state` (exact resume), :mod:`.atomic_io` (atomic
file writes), :mod:`.optim` (merged parameter groups), :mod:`.distributed` (process groups on
machines with or without CUDA, SyncBN for one process) and :mod:`.hook_injection` (the hooks every
run of the tools gets). Importing the package registers the hooks and changes no global state of
mmengine (:mod:`mambaout_dense.safe_io` does that, explicitly). The command-line layer of
``tools/*.py`` is :mod:`mambaout_dense.cli`, which nothing in the library imports.
"""
from ..checkpoint.io import first_nonfinite
from .atomic_io import AtomicLocalBackend, atomic_write_bytes
from .compat import CheckpointCompatibilityHook
from .divergence import DivergenceGuardHook
from .optim import MergedGroupsOptimWrapperConstructor, merge_param_groups
from .plain_checkpoint import PlainCheckpointHook, from_plain, to_plain
from .pruning import SafeCheckpointHook
from .resume import checkpoint_problem, find_resumable_checkpoint
from .rng_state import RandomStateHook

__all__ = [
    'MergedGroupsOptimWrapperConstructor', 'merge_param_groups', 'PlainCheckpointHook',
    'to_plain', 'from_plain', 'DivergenceGuardHook', 'RandomStateHook',
    'CheckpointCompatibilityHook', 'SafeCheckpointHook', 'AtomicLocalBackend',
    'atomic_write_bytes', 'find_resumable_checkpoint', 'checkpoint_problem', 'first_nonfinite'
]
