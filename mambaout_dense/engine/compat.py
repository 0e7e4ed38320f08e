"""Refuse ``load_from`` / ``--resume`` checkpoints that do not fit the model.

``Runner.load_checkpoint`` loads with ``strict=False`` and only logs shape mismatches.
:class:`CheckpointCompatibilityHook` compares the checkpoint with the model key by key and shape by
shape (:func:`~mambaout_dense.checkpoint.compare.check_state_dict`) and raises
:class:`~mambaout_dense.errors.CheckpointError` outside an explicit allow-list.
"""
from typing import Sequence

from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper

from ..checkpoint.compare import check_state_dict
from ..registry import HOOKS

__all__ = ['CheckpointCompatibilityHook']


@HOOKS.register_module()
class CheckpointCompatibilityHook(Hook):
    """Refuse ``load_from`` / ``--resume`` checkpoints that do not fit the model.

    mmengine calls ``after_load_checkpoint`` after reading the file and before copying the
    tensors into the model, for ``load_from`` (``tools/test.py``) and resume alike.

    Args:
        allow_mismatch (Sequence[str]): Regexes of keys that may differ (missing, unexpected or
            another shape), e.g. ``['roi_head\\.bbox_head\\.fc_(cls|reg)']`` when fine-tuning a
            detector on other classes. Defaults to ().
    """

    priority = 'VERY_HIGH'

    def __init__(self, allow_mismatch: Sequence[str] = ()) -> None:
        self.allow_mismatch = list(allow_mismatch)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Compare the checkpoint's state dict with the model's."""
        model = runner.model
        if is_model_wrapper(model) or isinstance(model, BaseTTAModel):
            model = model.module  # as mmengine's load_state_dict does
        state = checkpoint.get('state_dict', checkpoint)
        source = getattr(runner, '_load_from', None) or 'checkpoint'
        check_state_dict(model.state_dict(), state, f'checkpoint {source!r}',
                         ignore=self.allow_mismatch,
                         hint='It is for another architecture or size; to load it partially on '
                         'purpose, list the keys in CheckpointCompatibilityHook(allow_mismatch='
                         '[...]).')
