"""Safe checkpoint reading.

Every checkpoint this project reads goes through :func:`safe_load`: ``torch.load`` with
``weights_only=True``, so a file whose unpickling would call arbitrary code is refused. Foreign
checkpoints that carry an inert configuration object (VMamba's release files hold a pickled
``yacs.config.CfgNode``; some training scripts store an ``argparse.Namespace``) are read by a
restricted unpickler: it admits exactly the globals that torch's own weights-only unpickler admits,
and replaces the listed configuration classes by :class:`OpaqueObject`, a plain container whose
construction runs none of the pickled code.

:func:`install_mmengine_loader` routes mmengine's local-file loader (``load_from``, ``--resume``,
``tools/test.py``) through :func:`safe_load` so those paths give the same clear errors.
"""
import io
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Any, Dict, Optional, Union

import torch

__all__ = [
    'CheckpointError', 'OpaqueObject', 'safe_load', 'extract_state_dict',
    'install_mmengine_loader', 'INERT_CONFIG_CLASSES'
]

#: Classes that official checkpoints pickle only to record a configuration. They are rebuilt as
#: :class:`OpaqueObject` (their own code never runs).
INERT_CONFIG_CLASSES = frozenset({
    'yacs.config.CfgNode',
    'argparse.Namespace',
    'omegaconf.dictconfig.DictConfig',
})


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, unreadable, unsafe or mismatched."""


class OpaqueObject(dict):
    """Inert stand-in for a pickled configuration object.

    It records the items and state the pickle carried and nothing else; none of the original
    class's code is executed.
    """

    def __setstate__(self, state: Any) -> None:  # pickle BUILD
        self.pickled_state = state

    def __reduce__(self):
        return (dict, (dict(self), ))


def _torch_allowed_globals() -> Dict[str, Any]:
    from torch import _weights_only_unpickler as wou
    allowed = dict(wou._get_allowed_globals())
    allowed.update(wou._get_user_allowed_globals())
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits torch's weights-only globals; maps inert config classes to OpaqueObject."""

    def find_class(self, module: str, name: str) -> Any:
        qualname = f'{module}.{name}'
        if qualname in INERT_CONFIG_CLASSES:
            return OpaqueObject
        allowed = _torch_allowed_globals()
        if qualname in allowed:
            return allowed[qualname]
        raise pickle.UnpicklingError(f'Unsupported global: GLOBAL {qualname}')


class _RestrictedPickleModule:
    """A ``pickle_module`` for ``torch.load`` whose Unpickler is :class:`_RestrictedUnpickler`."""
    Unpickler = _RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError
    load = pickle.load
    __name__ = 'mambaout_dense_restricted_pickle'


_GLOBAL_RE = re.compile(r'GLOBAL ([\w.]+)')


def _refuse(path: str, err: Exception) -> CheckpointError:
    match = _GLOBAL_RE.search(str(err))
    what = f'a pickled reference to `{match.group(1)}`' if match else 'a pickled object'
    return CheckpointError(
        f'Refused to load checkpoint {path!r}: it contains {what}, and unpickling it could run '
        'arbitrary code. Only tensors, numbers, strings and plain containers are accepted '
        '(torch.load with weights_only=True). If you trust the file, re-save its tensors '
        '(e.g. `torch.save(ckpt["state_dict"], path)`) in a trusted Python session.')


def safe_load(path: Union[str, os.PathLike, io.BytesIO],
              map_location: Union[str, torch.device, None] = 'cpu') -> Any:
    """Load a checkpoint without executing pickled code.

    Args:
        path (str | PathLike | BytesIO): A local file (``~`` expanded) or an in-memory buffer.
        map_location (str | torch.device, optional): As for ``torch.load``. Defaults to 'cpu'.

    Returns:
        Any: The unpickled object (usually a dict).

    Raises:
        CheckpointError: The file does not exist, is not a torch checkpoint (truncated,
            corrupt), or carries a global that could run code.
    """
    if isinstance(path, io.BytesIO):
        name = '<buffer>'
        source: Any = path
    else:
        name = osp.expanduser(os.fspath(path))
        if not osp.isfile(name):
            raise CheckpointError(f'Checkpoint file not found: {name!r}')
        if osp.getsize(name) == 0:
            raise CheckpointError(f'Checkpoint file is empty (0 bytes): {name!r}')
        source = name
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        match = _GLOBAL_RE.search(str(err))
        if match is None or match.group(1) not in INERT_CONFIG_CLASSES:
            raise _refuse(name, err) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f'Could not read checkpoint {name!r} ({type(err).__name__}: {err}). The file is '
            'truncated, corrupt or not a PyTorch checkpoint.') from None
    # Second pass: the file carries a known, inert configuration object.
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        return torch.load(source, map_location=map_location, weights_only=False,
                          pickle_module=_RestrictedPickleModule)
    except pickle.UnpicklingError as err:
        raise _refuse(name, err) from None


def extract_state_dict(checkpoint: Any, path: str = '<checkpoint>') -> 'OrderedDict[str, Any]':
    """Return the tensor dict of a loaded checkpoint.

    Accepts a plain state dict or a wrapper with one of the keys ``state_dict``, ``model``,
    ``model_ema`` (tried in that order), and strips a ``module.`` prefix left by DDP.

    Args:
        checkpoint (Any): What :func:`safe_load` returned.
        path (str): Shown in error messages. Defaults to '<checkpoint>'.

    Returns:
        OrderedDict[str, Any]: Parameter name to tensor.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f'{path!r} holds a {type(checkpoint).__name__}, not a dict of tensors.')
    state = checkpoint
    for key in ('state_dict', 'model', 'model_ema'):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            state = checkpoint[key]
            break
    if not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'{path!r} contains no tensors (keys: {sorted(checkpoint)[:10]})')
    out: 'OrderedDict[str, Any]' = OrderedDict()
    for key, value in state.items():
        out[key[len('module.'):] if key.startswith('module.') else key] = value
    return out


def _load_from_local_safe(filename: str, map_location: Optional[Any] = None) -> Any:
    """mmengine CheckpointLoader scheme for local files that goes through :func:`safe_load`."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_load(filename, map_location=map_location)


def install_mmengine_loader() -> None:
    """Route mmengine's loader for local paths through :func:`safe_load` (idempotent)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local_safe, force=True)
