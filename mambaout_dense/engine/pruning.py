"""Checkpoint pruning after the new checkpoint is complete, not before.

With ``max_keep_ckpts``, mmengine's ``CheckpointHook`` deletes the oldest checkpoint *before*
writing the new one: with ``max_keep_ckpts=1`` a crash during the write leaves no checkpoint at
all. :class:`SafeCheckpointHook` deletes it after the new one is written. It overrides mmengine's
private ``CheckpointHook._save_checkpoint_with_step`` (there is no public extension point for the
order); ``tests/engine/test_mmengine_pins.py`` fails loudly when mmengine changes that method.
"""
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from ..registry import HOOKS

__all__ = ['SafeCheckpointHook']


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` that prunes outdated checkpoints after saving, not before.

    Same arguments and files as ``CheckpointHook``; ``tools/train.py`` uses it in place of
    ``CheckpointHook``. With ``max_keep_ckpts=N`` there are briefly N + 1 files on disk.
    """

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        keep, outdated = self.max_keep_ckpts, None
        if keep > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == keep:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        self.max_keep_ckpts = -1  # the parent would delete `outdated` before writing
        try:
            super()._save_checkpoint_with_step(runner, step, meta)
        finally:
            self.max_keep_ckpts = keep
        if outdated is not None and is_main_process():
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by DeepSpeed are folders
                self.file_backend.rmtree(path)
