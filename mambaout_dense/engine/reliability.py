"""Training runs that survive faults: divergence guard, atomic checkpoints, validated resume.

What mmengine 0.10.7 leaves open, and what this module does about it:

* **Divergence.** A NaN/Inf loss is back-propagated and stepped like any other; the weights turn
  NaN and the next checkpoint (and ``last_checkpoint``) carries them. :class:`DivergenceGuardHook`
  checks the loss (agreed across ranks) *before* the optimizer step and the gradients before
  ``step()``; a non-finite value either stops the run with :class:`DivergenceError` naming the
  iteration and the loss terms, or skips the step (weights and optimizer state untouched). It also
  refuses to save a checkpoint whose weights are not finite.
* **Torn checkpoint files.** ``save_checkpoint`` writes through ``LocalBackend.put``, which opens
  the final path and writes in place: a crash mid-write leaves a truncated ``iter_N.pth`` under its
  final name. :class:`AtomicLocalBackend` writes to a hidden temporary file in the same folder,
  ``fsync``\\ s it and ``os.replace``\\ s it onto the final name, so a checkpoint file is either
  complete or absent (:func:`install_atomic_writes` registers it for local paths).
* **Pruning before saving.** With ``max_keep_ckpts``, mmengine's ``CheckpointHook`` deletes the
  oldest checkpoint *before* writing the new one: with ``max_keep_ckpts=1`` a crash during the
  write leaves no checkpoint at all. :class:`SafeCheckpointHook` deletes it after the new one is
  complete.
* **Auto-resume.** ``find_latest_checkpoint`` trusts ``last_checkpoint`` blindly.
  :func:`find_resumable_checkpoint` loads candidates with
  :func:`~mambaout_dense.checkpoint.safe_load` (newest first: ``last_checkpoint``, then
  ``iter_*.pth`` / ``epoch_*.pth`` by number), skips truncated, unsafe or non-finite files with a
  warning and returns the newest usable one.
* **Exact resume.** mmengine restores weights, optimizer, schedulers and the message hub, but not
  the random number generators, so a resumed run samples different proposals and augmentations
  than an uninterrupted one. :class:`RandomStateHook` stores the Python, NumPy and torch generator
  states of every rank in the checkpoint and restores them at the point where the uninterrupted
  run would be (for iteration-based loops: after mmengine has fast-forwarded the dataloader).
* **Wrong checkpoints.** ``Runner.load_checkpoint`` loads with ``strict=False`` and only logs
  shape mismatches. :class:`CheckpointCompatibilityHook` raises on the first mismatching key with
  both shapes, and on missing or unexpected keys, outside an explicit allow-list.
"""
import contextlib
import os
import os.path as osp
import random
import re
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import all_gather_object, all_reduce, get_rank, get_world_size, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict

from ..checkpoint.io import CheckpointError, safe_load
from ..registry import HOOKS

__all__ = [
    'DivergenceError', 'DivergenceGuardHook', 'RandomStateHook', 'CheckpointCompatibilityHook',
    'SafeCheckpointHook', 'AtomicLocalBackend', 'atomic_write_bytes', 'install_atomic_writes',
    'find_resumable_checkpoint', 'checkpoint_problem', 'first_nonfinite',
    'check_state_dict_compatible'
]

#: Temporary files of :func:`atomic_write_bytes`: ``.<name>.<pid>.<8 hex>.tmp`` next to ``name``.
TMP_RE = re.compile(r'^\.(?P<name>.+)\.\d+\.[0-9a-f]{8}\.tmp$')
_CKPT_RE = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


class DivergenceError(RuntimeError):
    """The loss or the gradients became NaN/Inf (the message names the iteration and terms)."""


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------
def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the complete new one.

    The bytes go to a hidden temporary file in the same folder (same file system, so the rename
    is atomic), are flushed to disk, and the file is renamed onto ``path``. A crash leaves at most
    a stray ``.<name>.<pid>.<hex>.tmp`` (removed by :func:`find_resumable_checkpoint`).

    Args:
        path (str): Destination file; its folder is created if needed.
        data (bytes): The content.
    """
    path = osp.abspath(os.fspath(path))
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    try:
        with open(tmp, 'xb') as f:  # 'x': never clobber; mode bits follow the umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    with contextlib.suppress(OSError):  # persist the rename itself (not possible everywhere)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic :meth:`put` and :meth:`put_text`."""

    def put(self, obj: bytes, filepath) -> None:
        """Write bytes to ``filepath`` atomically (temporary file + ``os.replace``)."""
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        """Write text to ``filepath`` atomically."""
        atomic_write_bytes(filepath, obj.encode(encoding))


def install_atomic_writes() -> None:
    """Make mmengine write local files (checkpoints included) through :class:`AtomicLocalBackend`.

    Registers the backend for the name ``local`` and the empty prefix (plain paths), replacing
    :class:`~mmengine.fileio.LocalBackend`; idempotent.
    """
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')


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


# --------------------------------------------------------------------------------------------
# Checkpoint validation and auto-resume
# --------------------------------------------------------------------------------------------
def first_nonfinite(state: Mapping[str, Any]) -> Optional[str]:
    """Name of the first floating-point tensor in ``state`` holding NaN or Inf, else None."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                return key
    return None


def checkpoint_problem(path: str) -> Optional[str]:
    """Why a training checkpoint cannot be resumed from, or None when it can.

    The file must load with :func:`~mambaout_dense.checkpoint.safe_load` (complete, no
    code-running pickle), hold ``state_dict`` and ``meta``, and have finite weights.

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
    bad = first_nonfinite(ckpt['state_dict'])
    if bad is not None:
        return f'{path!r}: weight {bad!r} holds NaN/Inf'
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


# --------------------------------------------------------------------------------------------
# Checkpoint compatibility
# --------------------------------------------------------------------------------------------
def _preview(keys: Sequence[str], n: int = 5) -> str:
    more = f' ... (+{len(keys) - n} more)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


def check_state_dict_compatible(model_state: Mapping[str, torch.Tensor],
                                ckpt_state: Mapping[str, Any],
                                allow_mismatch: Iterable[str] = (),
                                source: str = 'checkpoint') -> None:
    """Raise unless a checkpoint's tensors fit a model key for key and shape for shape.

    Args:
        model_state (Mapping): ``model.state_dict()``.
        ckpt_state (Mapping): The checkpoint's state dict (a ``module.`` prefix is stripped).
        allow_mismatch (Iterable[str]): Regexes of keys that may be missing, unexpected or of
            another shape (e.g. a classifier re-sized for fine-tuning). Defaults to ().
        source (str): Names the checkpoint in messages. Defaults to 'checkpoint'.

    Raises:
        CheckpointError: Naming the first key whose shape differs (with both shapes) and the
            missing and unexpected keys.
    """
    patterns = [re.compile(p) for p in allow_mismatch]
    allowed = lambda key: any(p.search(key) for p in patterns)  # noqa: E731
    state = {(k[len('module.'):] if k.startswith('module.') else k): v
             for k, v in ckpt_state.items()}
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and not allowed(k)}
    shapes = [(k, tuple(v.shape), tuple(model_state[k].shape)) for k, v in state.items()
              if k in model_state and tuple(v.shape) != tuple(model_state[k].shape)]
    missing = [k for k in model_state if k not in state and not allowed(k)]
    unexpected = [k for k in state if k not in model_state]
    problems = []
    if shapes:
        key, ckpt_shape, model_shape = shapes[0]
        more = f' (first of {len(shapes)})' if len(shapes) > 1 else ''
        problems.append(f'shape mismatch for {key!r}: checkpoint {ckpt_shape} vs model '
                        f'{model_shape}{more}')
    if missing or unexpected:
        problems.append(f'{len(missing)} missing key(s) [{_preview(missing)}], '
                        f'{len(unexpected)} unexpected key(s) [{_preview(unexpected)}]')
    if problems:
        raise CheckpointError(
            f'{source} does not fit the model: ' + '; '.join(problems) + '. It is for another '
            'architecture or size; to load it partially on purpose, list the keys in '
            'CheckpointCompatibilityHook(allow_mismatch=[...]).')


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
        check_state_dict_compatible(model.state_dict(), state, self.allow_mismatch,
                                    source=f'checkpoint {source!r}')


# --------------------------------------------------------------------------------------------
# Divergence guard
# --------------------------------------------------------------------------------------------
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
            raise ValueError(f"DivergenceGuardHook: action must be 'stop' or 'skip', "
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


# --------------------------------------------------------------------------------------------
# Random state in checkpoints
# --------------------------------------------------------------------------------------------
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


def reliability_hooks(action: Optional[str] = None) -> List[Tuple[str, dict]]:
    """(type name, config) of the hooks ``tools/train.py`` adds to every run."""
    guard = dict(type='mambaout_dense.DivergenceGuardHook')
    if action:
        guard['action'] = action
    return [('DivergenceGuardHook', guard),
            ('RandomStateHook', dict(type='mambaout_dense.RandomStateHook')),
            ('CheckpointCompatibilityHook',
             dict(type='mambaout_dense.CheckpointCompatibilityHook'))]
