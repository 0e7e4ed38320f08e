"""Auto-resume from the newest usable checkpoint.

mmengine's ``find_latest_checkpoint`` trusts ``last_checkpoint`` blindly.
:func:`find_resumable_checkpoint` loads candidates with :func:`~mambaout_dense.checkpoint.safe_load`
(newest first: ``last_checkpoint``, then ``iter_*.pth`` / ``epoch_*.pth`` by number), skips
truncated, unsafe or non-finite files with one warning and returns the newest usable one.
"""
import contextlib
import os
import os.path as osp
import re
from typing import List, Optional, Tuple

from mmengine.dist import get_rank
from mmengine.logging import print_log

from ..checkpoint.io import first_nonfinite, safe_load
from ..errors import CheckpointError
from .atomic_io import TMP_RE

__all__ = ['first_nonfinite', 'checkpoint_problem', 'find_resumable_checkpoint']

_CKPT_RE = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


def checkpoint_problem(path: str) -> Optional[str]:
    """Why a training checkpoint cannot be resumed from, or None when it can.

    The file must load with :func:`~mambaout_dense.checkpoint.safe_load` (complete, no
    code-running pickle, finite weights) and hold ``state_dict`` and ``meta``.

    Args:
        path (str): The checkpoint file.

    Returns:
        str | None: A one-line reason, or None.
    """
    try:
        ckpt = safe_load(path)
    except CheckpointError as err:
        return str(err)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('state_dict'), dict):
        return f'{path!r} has no state_dict (not a training checkpoint)'
    if 'meta' not in ckpt:
        return f'{path!r} has no meta (not a training checkpoint)'
    return None


def _numbered_checkpoints(work_dir: str) -> List[str]:
    found = []
    for name in os.listdir(work_dir):
        match = _CKPT_RE.match(name)
        if match:
            path = osp.join(work_dir, name)
            found.append((int(match.group(1)), osp.getmtime(path), path))
    return [path for *_, path in sorted(found, reverse=True)]


def _remove_stale_temporaries(work_dir: str) -> None:
    for name in os.listdir(work_dir):
        if TMP_RE.match(name):
            with contextlib.suppress(FileNotFoundError):
                os.remove(osp.join(work_dir, name))
                print_log(f'resume: removed {name}, left by a checkpoint write that was '
                          'interrupted', logger='current')


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The newest checkpoint in ``work_dir`` that is complete, safe and finite.

    Candidates, in order: the file named by ``work_dir/last_checkpoint`` (also looked up by name
    in ``work_dir``, for a work dir that was moved), then ``iter_*.pth`` / ``epoch_*.pth`` by
    decreasing number. Unusable candidates are skipped with one warning that names each file
    and why it was skipped.

    Args:
        work_dir (str): The run's work dir.

    Returns:
        str | None: The checkpoint to resume from; None when the folder holds no checkpoint
        (a fresh run).

    Raises:
        CheckpointError: Checkpoints exist but none is usable.
    """
    if not osp.isdir(work_dir):
        return None
    if get_rank() == 0:
        _remove_stale_temporaries(work_dir)
    candidates: List[str] = []
    skipped: List[Tuple[str, str]] = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        moved = osp.join(work_dir, osp.basename(named)) if named else ''
        if named and osp.isfile(named):
            candidates.append(named)
        elif moved and osp.isfile(moved):
            candidates.append(moved)  # the work dir was moved or copied
        else:
            skipped.append((pointer, f'names {named!r}, which does not exist'))
    candidates += _numbered_checkpoints(work_dir)
    seen = set()
    for path in candidates:
        if osp.realpath(path) in seen:
            continue
        seen.add(osp.realpath(path))
        problem = checkpoint_problem(path)
        if problem is None:
            if skipped:
                print_log(
                    f'resume: skipped {len(skipped)} unusable checkpoint(s) ('
                    + '; '.join(f'{osp.basename(p)}: {why}' for p, why in skipped)
                    + f'); resuming from {path}', logger='current', level=30)
            return path
        skipped.append((path, problem))
    if seen:
        raise CheckpointError(
            f'--resume: no usable checkpoint in {work_dir!r}: '
            + '; '.join(f'{p}: {why}' for p, why in skipped)
            + '. Remove them to start afresh, or resume from a file with --resume PATH.')
    if skipped:
        print_log(f'resume: {skipped[0][0]} {skipped[0][1]} and the work dir holds no '
                  'checkpoint; starting from scratch', logger='current', level=30)
    return None
