"""The errors of mambaout_dense, in one module that the library and the tools both import.

Every error a user can fix by changing an input derives from :class:`MambaOutDenseError`; the
tools (``tools/*.py``) print its message without a traceback and exit with a documented code
(:data:`EXIT_CODES`). Each class also derives from the built-in exception a caller would expect
(``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so ``except ValueError`` keeps
working for code written against the standard library.

This module imports nothing but the standard library.
"""

__all__ = [
    'MambaOutDenseError', 'UsageError', 'ConfigError', 'UnavailableError', 'OutputExistsError',
    'DataError', 'CheckpointError', 'CheckpointNotFoundError', 'DivergenceError', 'EXIT_CODES',
    'exit_code'
]


class MambaOutDenseError(Exception):
    """Base class: an error whose message tells the user what to change."""


class UsageError(MambaOutDenseError, ValueError):
    """A command-line argument, config file or config option is wrong."""


class ConfigError(UsageError):
    """A config value or constructor argument has the wrong kind, an unknown name or is out of
    range; the message names the key (``arch``, ``out_indices``, ``model.backbone.arch`` ...)."""


class UnavailableError(UsageError):
    """The request cannot be honoured on this machine: a CUDA device or AMP without CUDA, a
    selective-scan backend whose kernels cannot run in this process."""


class OutputExistsError(UsageError, FileExistsError):
    """An output folder already holds files that would be replaced (pass ``overwrite``)."""


class DataError(MambaOutDenseError, FileNotFoundError):
    """A dataset file or folder is missing, unreadable or malformed."""


class CheckpointError(MambaOutDenseError, RuntimeError):
    """A checkpoint cannot be used: missing, not a checkpoint, unsafe, or for another model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file does not exist (also a ``FileNotFoundError``, as mmengine's loaders
    raise)."""


class DivergenceError(MambaOutDenseError, RuntimeError):
    """The loss or the gradients became NaN/Inf (the message names the iteration and terms)."""


#: Exit code of the tools for each error: 2 for bad input (as argparse), 1 for a run that failed.
EXIT_CODES = {UsageError: 2, DataError: 2, CheckpointError: 2, DivergenceError: 1}


def exit_code(err: MambaOutDenseError) -> int:
    """The tools' exit code for ``err`` (2 for input errors, 1 otherwise).

    Args:
        err (MambaOutDenseError): The error.

    Returns:
        int: 1 or 2.
    """
    for cls, code in EXIT_CODES.items():
        if isinstance(err, cls):
            return code
    return 1
