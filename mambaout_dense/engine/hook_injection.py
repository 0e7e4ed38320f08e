"""The hooks every run of ``tools/train.py`` and ``tools/test.py`` gets, added to its config.

Training runs get :class:`~.divergence.DivergenceGuardHook` (NaN/Inf loss: stop or skip),
:class:`~.rng_state.RandomStateHook` (exact resume), :class:`~.compat.CheckpointCompatibilityHook`
(refuse checkpoints of another architecture) and :class:`~.plain_checkpoint.PlainCheckpointHook`;
mmengine's ``CheckpointHook`` becomes :class:`~.pruning.SafeCheckpointHook`. Evaluation runs get
``CheckpointCompatibilityHook`` only. Hooks a config lists already are kept as they are.
"""
from typing import List, Optional, Tuple

from mmengine.config import Config

__all__ = ['ensure_plain_checkpoints', 'reliability_hooks', 'ensure_reliability_hooks']


def _hook_name(hook: dict) -> str:
    return str(hook.get('type', '')).split('.')[-1]


def ensure_plain_checkpoints(cfg: Config) -> None:
    """Add :class:`~mambaout_dense.engine.PlainCheckpointHook` unless the config has it."""
    hooks: List[dict] = list(cfg.get('custom_hooks', None) or [])
    if 'PlainCheckpointHook' not in {_hook_name(h) for h in hooks}:
        hooks.append(dict(type='mambaout_dense.PlainCheckpointHook'))
    cfg.custom_hooks = hooks


def reliability_hooks(action: Optional[str] = None) -> List[Tuple[str, dict]]:
    """(type name, config) of the hooks ``tools/train.py`` adds to every run."""
    guard = dict(type='mambaout_dense.DivergenceGuardHook')
    if action:
        guard['action'] = action
    return [('DivergenceGuardHook', guard),
            ('RandomStateHook', dict(type='mambaout_dense.RandomStateHook')),
            ('CheckpointCompatibilityHook',
             dict(type='mambaout_dense.CheckpointCompatibilityHook'))]


def ensure_reliability_hooks(cfg: Config, on_divergence: Optional[str] = None,
                             training: bool = True) -> None:
    """Add the fault-tolerance hooks of :mod:`mambaout_dense.engine` to ``cfg``.

    Args:
        cfg (Config): The config (modified in place).
        on_divergence (str, optional): ``'stop'`` or ``'skip'``; overrides the config's
            ``DivergenceGuardHook(action=...)``. Defaults to None.
        training (bool): A training run (else only ``CheckpointCompatibilityHook`` is added).
            Defaults to True.
    """
    hooks: List[dict] = list(cfg.get('custom_hooks', None) or [])
    by_name = {_hook_name(h): h for h in hooks}
    for name, hook in reliability_hooks(on_divergence):
        if not training and name != 'CheckpointCompatibilityHook':
            continue
        if name not in by_name:
            hooks.append(hook)
        elif name == 'DivergenceGuardHook' and on_divergence:
            by_name[name]['action'] = on_divergence
    cfg.custom_hooks = hooks
    checkpoint = (cfg.get('default_hooks', None) or {}).get('checkpoint', None)
    if training and checkpoint and checkpoint.get('type') in ('CheckpointHook',
                                                              'mmengine.CheckpointHook'):
        checkpoint['type'] = 'mambaout_dense.SafeCheckpointHook'
