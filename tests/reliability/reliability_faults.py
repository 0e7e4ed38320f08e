"""Test-only fault injection for training runs (imported by test configs via custom_imports).

The hooks register in mmengine's root hook registry, so a config under the ``mmdet`` or
``mmseg`` scope finds them by their bare names. Nothing here is part of the package.
"""
import os
import signal
import time
from typing import Optional

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def _inner(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module(force=True)
class InjectNonFiniteHook(Hook):
    """Multiply one loss term by ``value`` (``nan``/``inf``) at iteration ``at`` (1-based).

    Args:
        at (int): Iteration whose loss is poisoned.
        term (str): Loss term (a key of the model's loss dict).
        value (str): 'nan' or 'inf'. Defaults to 'nan'.
        rank (int, optional): Poison only on this rank. Defaults to None (all ranks).
        until (int, optional): Keep poisoning up to this iteration. Defaults to ``at``.
    """

    priority = 'HIGHEST'

    def __init__(self, at: int, term: str, value: str = 'nan', rank: Optional[int] = None,
                 until: Optional[int] = None) -> None:
        self.at, self.term, self.value = at, term, float(value)
        self.rank, self.until = rank, until or at
        self._armed = False

    def before_train(self, runner) -> None:
        model = _inner(runner.model)
        original = model.parse_losses

        def parse_losses(losses):
            if self._armed:
                if self.term not in losses:
                    raise KeyError(f'no loss term {self.term!r} in {sorted(losses)}')
                value = losses[self.term]
                scale = torch.tensor(self.value)
                losses[self.term] = ([v * scale for v in value] if isinstance(value, list)
                                     else value * scale)
            return original(losses)

        model.parse_losses = parse_losses

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        it = runner.iter + 1
        self._armed = (self.at <= it <= self.until
                       and (self.rank is None or self.rank == get_rank()))


@HOOKS.register_module(force=True)
class RankFaultHook(Hook):
    """Make one rank fail at iteration ``at`` (1-based): SIGKILL itself, raise, or hang.

    Args:
        at (int): Iteration.
        rank (int): The failing rank.
        how (str): 'kill', 'raise' or 'hang'.
        stamp (str, optional): File that receives ``time.time()`` just before the fault.
    """

    priority = 'HIGHEST'

    def __init__(self, at: int, rank: int, how: str = 'kill', stamp: Optional[str] = None):
        self.at, self.rank, self.how, self.stamp = at, rank, how, stamp

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter + 1 != self.at or get_rank() != self.rank:
            return
        if self.stamp:
            with open(self.stamp, 'w') as f:
                f.write(repr(time.time()))
        if self.how == 'kill':
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.how == 'raise':
            raise RuntimeError(f'injected failure on rank {self.rank} at iteration {self.at}')
        else:
            time.sleep(3600)
