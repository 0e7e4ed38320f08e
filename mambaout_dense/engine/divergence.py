"""Stop, or skip the step, when the loss or the gradients become NaN/Inf.

mmengine back-propagates and steps a NaN/Inf loss like any other; the weights turn NaN and the next
checkpoint (and ``last_checkpoint``) carries them. :class:`DivergenceGuardHook` checks the loss
(agreed across ranks) *before* the optimizer step and the gradients before ``step()``; a
non-finite value either stops the run with :class:`~mambaout_dense.errors.DivergenceError` naming
the iteration and the loss terms, or skips the step (weights and optimizer state untouched). It
also refuses to save a checkpoint whose weights are not finite.

It wraps the optimizer wrapper's public ``update_params`` and keeps mmengine's private
micro-batch counter ``OptimWrapper._inner_count`` in step when a step is skipped;
``tests/engine/test_mmengine_pins.py`` fails loudly when mmengine changes either.
"""
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict

from ..checkpoint.io import first_nonfinite
from ..errors import ConfigError, DivergenceError
from ..registry import HOOKS

__all__ = ['DivergenceGuardHook']


def _all_ranks_finite(value: torch.Tensor) -> bool:
    """True when ``value`` is finite on every rank (one tiny all-reduce when distributed)."""
    bad = (~torch.isfinite(value.detach())).any().to(torch.float32).reshape(1)
    if get_world_size() > 1:
        all_reduce(bad, op='sum')
    return bool(bad.item() == 0)


def _as_float(value: Any) -> Optional[float]:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach())
    if isinstance(value, (int, float, np.floating)):
        return float(value)
    return None


@HOOKS.register_module()
class DivergenceGuardHook(Hook):
    """Stop, or skip the step, when the loss or the gradients become NaN/Inf.

    The optimizer wrapper's ``update_params`` is wrapped for the run: before back-propagation
    the total loss is checked (all ranks agree through one all-reduce, so DDP ranks skip
    together), and before ``step()`` the gradients are (not under AMP, whose loss scaler already
    skips steps with overflowing gradients). A bad step is never applied. After the iteration
    the hook names the non-finite loss terms and either raises :class:`DivergenceError`
    (``action='stop'``) or logs a warning and carries on (``action='skip'``). Independently, a
    checkpoint whose weights hold NaN/Inf is refused, so ``last_checkpoint`` never points to one.

    Args:
        action (str): ``'stop'`` or ``'skip'``. Defaults to 'stop'.
        max_consecutive_skips (int): In skip mode, stop after this many bad iterations in a
            row (the run has diverged for good). Defaults to 20.
        check_grads (bool): Also check gradients before the step. Defaults to True.
    """

    priority = 'VERY_HIGH'  # after_train_iter before CheckpointHook and LoggerHook

    def __init__(self, action: str = 'stop', max_consecutive_skips: int = 20,
                 check_grads: bool = True) -> None:
        if action not in ('stop', 'skip'):
            raise ConfigError(f"DivergenceGuardHook: action must be 'stop' or 'skip', "
                              f'got {action!r}')
        self.action = action
        self.max_consecutive_skips = max_consecutive_skips
        self.check_grads = check_grads
        self.skipped: List[int] = []  # iterations (1-based) whose step was not applied
        self._bad: Optional[str] = None
        self._consecutive = 0

    def before_train(self, runner) -> None:
        """Wrap ``update_params`` of the run's optimizer wrapper(s)."""
        self.skipped = list(runner.message_hub.get_info('divergence_skipped', []))  # resumed
        wrappers = runner.optim_wrapper
        items = (wrappers.values() if isinstance(wrappers, OptimWrapperDict) else [wrappers])
        for wrapper in items:
            if type(wrapper).update_params is not OptimWrapper.update_params:
                print_log(f'DivergenceGuardHook: {type(wrapper).__name__} has its own '
                          'update_params; losses are checked after the step only',
                          logger='current', level=30)
                continue
            self._wrap(wrapper)

    def _wrap(self, wrapper: OptimWrapper) -> None:
        check_grads = self.check_grads and not isinstance(wrapper, AmpOptimWrapper)

        def update_params(loss: torch.Tensor, step_kwargs: Optional[Dict] = None,
                          zero_kwargs: Optional[Dict] = None) -> None:
            # OptimWrapper.update_params with two checks; a bad step is not applied.
            step_kwargs, zero_kwargs = step_kwargs or {}, zero_kwargs or {}
            if not _all_ranks_finite(loss):
                self._bad = 'loss'
                wrapper.zero_grad(**zero_kwargs)
                wrapper._inner_count += 1  # backward() counts micro-batches; keep in step
                return
            wrapper.backward(wrapper.scale_loss(loss))
            if wrapper.should_update():
                grads = [p.grad for g in wrapper.optimizer.param_groups for p in g['params']
                         if p.grad is not None]
                # one fused kernel for all gradients (a per-tensor loop costs ~7% of a step)
                if check_grads and grads and not _all_ranks_finite(
                        torch.stack(torch._foreach_norm([g.detach() for g in grads]))):
                    self._bad = 'gradient'
                else:
                    wrapper.step(**step_kwargs)
                wrapper.zero_grad(**zero_kwargs)

        wrapper.update_params = update_params

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Report a bad iteration: raise (stop) or log and count it (skip)."""
        terms = {k: _as_float(v) for k, v in (outputs or {}).items()}
        bad_terms = {k: v for k, v in terms.items()
                     if 'loss' in k and v is not None and not np.isfinite(v)}
        if self._bad is None and not bad_terms:
            self._consecutive = 0
            return
        iteration = runner.iter + 1
        named = {k: v for k, v in bad_terms.items() if k != 'loss'} or bad_terms
        if named:
            what = 'non-finite loss term(s) ' + ', '.join(f'{k}={v}' for k, v in named.items())
        elif self._bad == 'gradient':
            what = 'non-finite gradients (the loss terms were finite)'
        else:
            what = 'a non-finite loss on another rank'
        applied = self._bad is None  # a post-hoc detection (unwrapped optimizer): step was made
        self._bad = None
        if self.action == 'stop':
            raise DivergenceError(
                f'Training diverged at iteration {iteration}: {what}. The step was '
                f'{"applied" if applied else "not applied"}; no checkpoint is written from '
                'here on (resume from the last one with --resume, e.g. with a lower learning '
                "rate, or use DivergenceGuardHook(action='skip')).")
        self.skipped.append(iteration)
        self._consecutive += 1
        runner.message_hub.update_info('divergence_skipped', list(self.skipped))
        done = ('the step was applied (this optimizer wrapper is not guarded)' if applied else
                'step skipped (weights and optimizer state unchanged)')
        print_log(f'Iteration {iteration}: {what}; {done}, {len(self.skipped)} skipped so far',
                  logger='current', level=30)
        if self._consecutive >= self.max_consecutive_skips:
            raise DivergenceError(
                f'Training diverged: {self._consecutive} consecutive iterations up to '
                f'{iteration} had non-finite losses or gradients (last: {what}).')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to write weights that hold NaN/Inf."""
        bad = first_nonfinite(checkpoint.get('state_dict', {}))
        if bad is not None:
            raise DivergenceError(
                f'Refusing to save a checkpoint at iteration {runner.iter + 1}: weight {bad!r} '
                'holds NaN/Inf. last_checkpoint still names the last finite checkpoint.')
