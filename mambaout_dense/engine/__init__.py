"""Training-loop pieces: hooks and runner set-up shared by ``tools/*.py``."""
from .checkpoint_hook import PlainCheckpointHook, from_plain, to_plain
from .optim import MergedGroupsOptimWrapperConstructor, merge_param_groups
from .reliability import (
                          AtomicLocalBackend,
                          CheckpointCompatibilityHook,
                          DivergenceError,
                          DivergenceGuardHook,
                          RandomStateHook,
                          SafeCheckpointHook,
                          check_state_dict_compatible,
                          checkpoint_problem,
                          find_resumable_checkpoint,
                          install_atomic_writes,
)

__all__ = [
    'MergedGroupsOptimWrapperConstructor', 'merge_param_groups',
    'PlainCheckpointHook', 'to_plain', 'from_plain', 'DivergenceError', 'DivergenceGuardHook',
    'RandomStateHook', 'CheckpointCompatibilityHook', 'SafeCheckpointHook', 'AtomicLocalBackend',
    'install_atomic_writes', 'find_resumable_checkpoint', 'checkpoint_problem',
    'check_state_dict_compatible'
]
