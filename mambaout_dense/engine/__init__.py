"""Training-loop pieces: hooks and runner set-up shared by ``tools/*.py``."""
from .checkpoint_hook import PlainCheckpointHook, from_plain, to_plain

__all__ = ['PlainCheckpointHook', 'to_plain', 'from_plain']
