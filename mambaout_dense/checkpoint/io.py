"""Safe checkpoint reading.

Every checkpoint this project reads goes through :func:`safe_load`: ``torch.load`` with
``weights_only=True``, so a file whose unpickling would call arbitrary code is refused. Foreign
checkpoints that carry an inert configuration object (VMamba's release files hold a pickled
``yacs.config.CfgNode``; some training scripts store an ``argparse.Namespace``) are read by a
restricted unpickler: it admits exactly the globals that torch's own weights-only unpickler admits,
and replaces the listed configuration classes by :class:`OpaqueObject`, a plain container whose
construction runs none of the pickled code.

:func:`load_local_checkpoint` is the same reader in the shape of an mmengine loader scheme;
:mod:`mambaout_dense.safe_io` installs it for mmengine's ``load_from``, ``--resume`` and
``tools/test.py`` paths. Importing this module changes nothing outside it.

It is also the one finiteness check: by default :func:`safe_load` refuses a checkpoint whose
weights hold NaN or Inf (:func:`check_finite_weights`), so every loading path (``tools/test.py``,
``tools/demo.py``, ``load_from``, ``--resume``, backbone ``init_cfg`` Pretrained, the converter)
stops with the file and the first bad tensor named instead of evaluating, drawing or training on
them.
"""
import io
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Union

import torch

from ..errors import CheckpointError, CheckpointNotFoundError

__all__ = [
    'CheckpointError', 'OpaqueObject', 'safe_load', 'extract_state_dict',
    'describe_non_checkpoint', 'INERT_CONFIG_CLASSES', 'load_local_checkpoint',
    'first_nonfinite', 'check_finite_weights'
]

#: Keys under which a checkpoint wraps its weights, in the order they are looked for.
WEIGHT_KEYS = ('state_dict', 'model', 'model_ema')

#: Classes that official checkpoints pickle only to record a configuration. They are rebuilt as
#: :class:`OpaqueObject` (their own code never runs).
INERT_CONFIG_CLASSES = frozenset({
    'yacs.config.CfgNode',
    'argparse.Namespace',
    'omegaconf.dictconfig.DictConfig',
})


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
#: The first bytes of what ``torch.save`` writes: a zip archive (the default since torch 1.6) or
#: a pickle of protocol 2 or later (the legacy format).
_CHECKPOINT_MAGIC = (b'PK\x03\x04', b'\x80')
_LFS_POINTER = b'version https://git-lfs'


def _refuse(path: str, err: Exception) -> CheckpointError:
    match = _GLOBAL_RE.search(str(err))
    what = f'a pickled reference to `{match.group(1)}`' if match else 'a pickled object'
    return CheckpointError(
        f'Refused to load checkpoint {path!r}: it contains {what}, and unpickling it could run '
        'arbitrary code. Only tensors, numbers, strings and plain containers are accepted '
        '(torch.load with weights_only=True). If you trust the file, re-save its tensors '
        '(e.g. `torch.save(ckpt["state_dict"], path)`) in a trusted Python session.')


def _not_a_checkpoint(path: str, what: str) -> CheckpointError:
    return CheckpointError(f'{path!r} is not a PyTorch checkpoint: {what}.')


def describe_non_checkpoint(head: bytes) -> Optional[str]:
    """What a file is, judged from its first bytes, when it cannot be a ``torch.save`` file.

    Args:
        head (bytes): The file's first bytes (1 KiB is plenty).

    Returns:
        str | None: A description ("a Git LFS pointer file ...", "an HTML page ...",
        "a text file ...", "binary data ..."), or None when the bytes start like a checkpoint.
    """
    if head.startswith(_CHECKPOINT_MAGIC):
        return None
    if head.startswith(_LFS_POINTER):
        return ('it is a Git LFS pointer file, a placeholder for the real weights (fetch them '
                'with `git lfs pull`, or download the file itself)')
    stripped = head.lstrip().lower()
    if stripped.startswith((b'<!doctype html', b'<html', b'<?xml', b'<head', b'<body')):
        return ('it is an HTML page, e.g. an error or login page saved by a download that '
                'failed; download the weights again')
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError:
        return ('its first bytes are neither a zip archive nor a pickle (random or corrupt '
                'data, or another file format)')
    first = next((line.strip() for line in text.splitlines() if line.strip()), '')
    return f'it is a text file (first line: {first[:80]!r})'


def first_nonfinite(state: Mapping[str, Any]) -> Optional[str]:
    """Name of the first floating-point tensor in ``state`` holding NaN or Inf, else None."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                return key
    return None


def _weights(checkpoint: Any) -> Optional[Mapping[str, Any]]:
    """The tensor dict of a checkpoint: under one of :data:`WEIGHT_KEYS`, else itself."""
    if not isinstance(checkpoint, dict):
        return None
    for key in WEIGHT_KEYS:
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def check_finite_weights(checkpoint: Any, name: str) -> None:
    """Refuse a checkpoint whose weights hold NaN or Inf.

    Args:
        checkpoint (Any): What ``torch.load`` returned; its weights are found as in
            :func:`extract_state_dict` (optimizer state and logs are not checked).
        name (str): The file, named in the message.

    Raises:
        CheckpointError: Naming the file and the first tensor that holds NaN/Inf.
    """
    weights = _weights(checkpoint)
    bad = first_nonfinite(weights) if weights is not None else None
    if bad is not None:
        raise CheckpointError(
            f'{name!r}: weight {bad!r} holds NaN/Inf (the run that wrote it had diverged, or '
            'the file is damaged). Use an earlier checkpoint of that run.')


def safe_load(path: Union[str, os.PathLike, io.BytesIO],
              map_location: Union[str, torch.device, None] = 'cpu',
              allow_nonfinite: bool = False) -> Any:
    """Load a checkpoint without executing pickled code, and with finite weights.

    Args:
        path (str | PathLike | BytesIO): A local file (``~`` expanded) or an in-memory buffer.
        map_location (str | torch.device, optional): As for ``torch.load``. Defaults to 'cpu'.
        allow_nonfinite (bool): Return weights that hold NaN/Inf instead of refusing them (to
            inspect a damaged file). Defaults to False.

    Returns:
        Any: The unpickled object (usually a dict).

    Raises:
        CheckpointError: The file does not exist, is empty, is not a PyTorch checkpoint at all
            (text, an HTML page, a Git LFS pointer, other bytes; the message says which), is
            truncated or corrupt, carries a global that could run code, or its weights hold
            NaN/Inf (:func:`check_finite_weights`).
    """
    name = '<buffer>' if isinstance(path, io.BytesIO) else osp.expanduser(os.fspath(path))
    checkpoint = _read(path, name, map_location)
    if not allow_nonfinite:
        check_finite_weights(checkpoint, name)
    return checkpoint


def _read(path: Union[str, os.PathLike, io.BytesIO], name: str,
          map_location: Union[str, torch.device, None]) -> Any:
    """The unpickling of :func:`safe_load` (weights-only, then the restricted unpickler)."""
    if isinstance(path, io.BytesIO):
        source: Any = path
        head = path.getvalue()[:1024]
    else:
        if not osp.isfile(name):
            raise CheckpointNotFoundError(f'Checkpoint file not found: {name!r}')
        if osp.getsize(name) == 0:
            raise CheckpointError(f'Checkpoint file is empty (0 bytes): {name!r}')
        with open(name, 'rb') as f:
            head = f.read(1024)
        source = name
    what = describe_non_checkpoint(head)
    if what is not None:
        raise _not_a_checkpoint(name, what)
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        match = _GLOBAL_RE.search(str(err))
        if match is None:  # not a refused global: the pickle stream itself is broken
            raise _not_a_checkpoint(
                name, f'its pickle data is corrupt ({str(err).splitlines()[0][:200]})') from None
        if match.group(1) not in INERT_CONFIG_CLASSES:
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
    state = _weights(checkpoint)
    if state is None:
        raise CheckpointError(
            f'{path!r} holds a {type(checkpoint).__name__}, not a dict of tensors.')
    if not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'{path!r} contains no tensors (keys: {sorted(checkpoint)[:10]})')
    out: 'OrderedDict[str, Any]' = OrderedDict()
    for key, value in state.items():
        out[key[len('module.'):] if key.startswith('module.') else key] = value
    return out


def load_local_checkpoint(filename: str, map_location: Optional[Any] = None) -> Any:
    """mmengine ``CheckpointLoader`` scheme for local files that reads through :func:`safe_load`.

    Installed for mmengine's ``load_from``/``--resume``/``tools/test.py`` paths by
    :mod:`mambaout_dense.safe_io`.

    Raises:
        CheckpointError: As :func:`safe_load`; a missing file raises
            :class:`~mambaout_dense.errors.CheckpointNotFoundError`, a ``FileNotFoundError``
            as mmengine's own local loader raises.
    """
    return safe_load(filename, map_location=map_location)
