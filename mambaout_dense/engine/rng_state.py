"""Exact resume: the random generators of every rank saved in checkpoints and restored.

mmengine restores weights, optimizer, schedulers and the message hub, but not the random number
generators, so a resumed run samples different proposals and augmentations than an uninterrupted
one. :class:`RandomStateHook` stores the Python, NumPy and torch generator states of every rank in
the checkpoint and restores them at the point where the uninterrupted run would be (for
iteration-based loops: after mmengine has fast-forwarded the dataloader).
"""
import random
from typing import Any, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ..registry import HOOKS

__all__ = ['RandomStateHook']


def _rng_state() -> dict:
    """This process's generator states as plain containers and tensors (weights_only-safe)."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(
        python=dict(version=version, state=list(mt), gauss=gauss),
        numpy=dict(name=name, keys=torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                   pos=int(pos), has_gauss=int(has_gauss), cached=float(cached)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    py = state['python']
    random.setstate((py['version'], tuple(py['state']), py['gauss']))
    npy = state['numpy']
    np.random.set_state((npy['name'], npy['keys'].numpy().astype(np.uint32), npy['pos'],
                         npy['has_gauss'], npy['cached']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreAfterFastForward:
    """Stands in for the loop's dataloader iterator while mmengine skips trained batches.

    mmengine's ``IterBasedTrainLoop`` re-reads the first ``iter`` batches on resume (which
    draws random augmentations); the generators are restored right after the last one, so batch
    ``iter + 1`` sees the same random state as in the uninterrupted run.
    """

    def __init__(self, loop, skip: int, state: dict) -> None:
        self.loop, self.inner, self.skip, self.state = loop, loop.dataloader_iterator, skip, state

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.inner)
        self.skip -= 1
        if self.skip <= 0:
            _set_rng_state(self.state)
            self.loop.dataloader_iterator = self.inner
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random generators of every rank in checkpoints and restore them on resume.

    With it (and ``randomness=dict(seed=..., deterministic=True)``), a run killed and resumed
    from a checkpoint continues exactly as the uninterrupted run: same proposals sampled, same
    augmentations, same losses. States are gathered from all ranks after every iteration when
    the run is distributed (a few kB); a resume with another world size restores none, with a
    warning.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._gathered: Optional[List[dict]] = None
        self._pending: Optional[dict] = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Collect every rank's state (distributed runs: rank 0 writes the checkpoint)."""
        if get_world_size() > 1:
            self._gathered = all_gather_object(_rng_state())

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the generator states (all ranks in a distributed run)."""
        states = self._gathered if get_world_size() > 1 and self._gathered else [_rng_state()]
        checkpoint['rng_state'] = dict(world_size=len(states), states=states)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep this rank's state until training continues (not applied for ``load_from``)."""
        saved = checkpoint.get('rng_state')
        self._pending = None
        if not saved:
            return
        if saved['world_size'] != get_world_size():
            print_log(f'RandomStateHook: checkpoint from {saved["world_size"]} process(es), this '
                      f'run has {get_world_size()}; random state not restored', logger='current',
                      level=30)
            return
        self._pending = saved['states'][get_rank()]

    def before_train_epoch(self, runner) -> None:
        """Restore the states of a resumed run where the uninterrupted run would have them."""
        state, self._pending = self._pending, None
        if state is None or (runner.iter == 0 and runner.epoch == 0):
            return  # a fresh run, or weights loaded with load_from
        loop = runner.train_loop
        if runner.iter > 0 and hasattr(loop, 'dataloader_iterator'):
            loop.dataloader_iterator = _RestoreAfterFastForward(loop, runner.iter, state)
        else:  # epoch-based: nothing is fast-forwarded
            _set_rng_state(state)
