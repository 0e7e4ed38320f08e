"""Selective scan (the Mamba-1 recurrence) with interchangeable backends.

Implements the S6 scan of "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"
(Gu & Dao, arXiv:2312.00752), with the calling convention of ``mamba_ssm``'s
``selective_scan_fn``, as used by "VMamba: Visual State Space Model" (Liu et al.,
arXiv:2401.10166). For channel ``d``, state ``n`` and step ``t``::

    delta = softplus(delta + delta_bias)          (softplus only when delta_softplus)
    h[t]  = exp(delta[t] * A[d, n]) * h[t-1] + delta[t] * B[g(d), n, t] * u[t]
    y[t]  = sum_n C[g(d), n, t] * h[t, n] + D[d] * u[t]
    out   = y * silu(z)                           (only when z is given)

with ``g(d) = d // (dim // groups)``.

Whatever the backend, the scan is one ``torch.autograd.Function`` (:class:`SelectiveScanFn`), so
``torch.jit.trace`` records it as a single ``prim::PythonOp.SelectiveScanFn`` node that
:mod:`mambaout_dense.ops.flops` counts.

Backends (see :func:`available_backends`); each module registers its own with
:func:`register_backend`, and nothing else lists them:

- ``reference``: the plain sequential loop over the sequence (float32, float64 for float64
  inputs), differentiated by autograd. The oracle of the tests; slow.
- ``torch``: chunked pure-PyTorch scan with an explicit backward (CPU and GPU).
- ``cpu``: compiled C++ kernel for CPU tensors (float32), available once
  ``python -m mambaout_dense.ops.csrc.build`` has built and checked it for the running torch.
- ``triton``: fused Triton kernels for forward and backward, CUDA tensors.
- ``mamba_ssm``: the CUDA kernel of the ``mamba_ssm`` package, when it is installed.

The backend is chosen per call, first match wins:

1. the ``backend`` argument (the backbones' ``scan_backend`` config key passes it);
2. :func:`set_default_backend`;
3. the environment variable ``MAMBAOUT_DENSE_SCAN_BACKEND`` (a backend name);
4. the fixed rule of :func:`get_default_backend`: among the available backends that run on the
   tensors' device, the one with the highest :attr:`Backend.priority` for that device type.
   Registered: ``triton`` for CUDA, the compiled ``cpu`` kernel for CPU tensors, else
   ``torch`` (any device); ``reference`` and ``mamba_ssm`` have no priority and are only used
   when asked for. No timing is involved: the same software makes the same choice anywhere.

An unknown name raises a :class:`~mambaout_dense.errors.ConfigError`, one unavailable here or
on the tensors' device an :class:`~mambaout_dense.errors.UnavailableError` (both
``ValueError``), saying where the name came from and listing the usable backends;
:func:`check_scan_backend` applies the same checks when a model is built.
"""
import os
from types import MappingProxyType
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..errors import ConfigError, UnavailableError, UsageError

ENV_VAR = 'MAMBAOUT_DENSE_SCAN_BACKEND'
#: Key of :attr:`Backend.priority` that ranks a backend on every device type.
ANY_DEVICE = '*'

# Gradients returned by a backend, in the order of the differentiable inputs.
Grads = Tuple[Optional[Tensor], ...]


class ScanInputs(NamedTuple):
    """Validated, canonical inputs of one scan.

    ``B`` and ``C`` are always (batch, groups, N, L); the optional tensors are ``None`` when
    absent.
    """
    u: Tensor
    delta: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    D: Optional[Tensor]
    z: Optional[Tensor]
    delta_bias: Optional[Tensor]


class Backend(NamedTuple):
    """One scan implementation, as :func:`register_backend` records it.

    Args:
        name (str): Backend name.
        probe (Callable[[], Optional[str]]): Returns ``None`` when the backend can run in this
            process, otherwise the reason why it cannot (see :func:`unavailable_reason`).
        supports (Callable[[torch.device], bool]): Whether it runs on tensors of a device.
        forward (Callable): ``forward(inputs, delta_softplus)`` -> ``(out, last_state, saved)``
            with ``out`` in the compute dtype and ``saved`` a tuple of tensors for the backward.
        backward (Callable, optional): ``backward(inputs, saved, delta_softplus, dout,
            dlast_state)`` -> gradients of ``(u, delta, A, B, C, D, z, delta_bias)`` in the
            compute dtype (``None`` for absent inputs; ``dlast_state`` may be ``None``). ``None``
            means the backward re-runs ``forward`` under autograd.
        priority (Mapping[str, int]): Rank in the automatic choice per device type (``'cpu'``,
            ``'cuda'``, ... or :data:`ANY_DEVICE`); the highest rank among the available
            backends that run on the tensors' device wins. A backend without a rank for a device
            type is used there only when asked for. Defaults to no rank anywhere.
    """
    name: str
    probe: Callable[[], Optional[str]]
    supports: Callable[[torch.device], bool]
    forward: Callable
    backward: Optional[Callable]
    priority: Mapping[str, int] = MappingProxyType({})

    def rank(self, device: torch.device) -> Optional[int]:
        """This backend's rank in the automatic choice for ``device`` (None: only on request)."""
        return self.priority.get(device.type, self.priority.get(ANY_DEVICE))


_REGISTRY: Dict[str, Backend] = {}
_PROBED: Dict[str, Optional[str]] = {}
_DEFAULT: Optional[str] = None
_REPORTED: set = set()


def register_backend(backend: Backend) -> None:
    """Register (or replace) a backend under ``backend.name``.

    This is all a new backend needs: :func:`available_backends`, the automatic choice, the
    benchmarks and the parametrized tests read the registry.
    """
    _REGISTRY[backend.name] = backend
    _PROBED.pop(backend.name, None)


def registered_backends() -> Dict[str, Backend]:
    """Every registered backend by name, available or not (a copy, in registration order)."""
    return dict(_REGISTRY)


def unavailable_reason(name: str) -> Optional[str]:
    """Why backend ``name`` cannot run in this process, or None when it can.

    The backend's probe runs once and its answer is kept (see :func:`reprobe_backend`).

    Args:
        name (str): Backend name.

    Returns:
        str | None: The reason (``'not registered'`` for an unknown name), or None.
    """
    if name not in _REGISTRY:
        return 'not registered'
    if name not in _PROBED:
        _PROBED[name] = _REGISTRY[name].probe()
    return _PROBED[name]


def reprobe_backend(name: str) -> None:
    """Forget the kept probe answer of ``name``, so that the next query probes again."""
    _PROBED.pop(name, None)


def available_backends(device: Union[None, str, torch.device] = None) -> List[str]:
    """Names of the registered backends usable in this process.

    Args:
        device (str | torch.device, optional): Only list the backends that run on tensors of
            this device, best first: by their rank for the device (the first ranked one is
            :func:`get_default_backend`), then those used only on request, by name. Defaults to
            None (any device, in registration order).

    Returns:
        list[str]: Backend names.
    """
    names = [n for n in _REGISTRY if unavailable_reason(n) is None]
    if device is None:
        return names
    device = torch.device(device)
    names = [n for n in names if _REGISTRY[n].supports(device)]

    def order(name: str) -> Tuple[bool, int, str]:
        rank = _REGISTRY[name].rank(device)
        return (rank is None, -(rank or 0), name)
    return sorted(names, key=order)


def _check_name(name: str, source: str = '') -> None:
    if name not in _REGISTRY:
        raise ConfigError(f'Unknown selective-scan backend {name!r}{source}; available '
                          f'backends: {available_backends()}')
    reason = unavailable_reason(name)
    if reason is not None:
        raise UnavailableError(f'Selective-scan backend {name!r}{source} is not available '
                               f'({reason}); available backends: {available_backends()}')


def check_scan_backend(owner: str, scan_backend: Optional[str]) -> None:
    """Refuse, when the model is built, a selective-scan backend that cannot run here.

    The name comes from ``scan_backend`` or, when that is None, from ``MAMBAOUT_DENSE_SCAN_BACKEND``
    and must be one of :func:`available_backends` (the device is still checked per call).

    Args:
        owner (str): Named in the message (the backbone class).
        scan_backend (str, optional): The backend asked for, or None.

    Raises:
        ConfigError: ``scan_backend`` is not a string or None, or names no registered backend.
        UnavailableError: The backend cannot run in this process (with the reason); both
            messages say where the name came from and list the usable backends.
    """
    if scan_backend is None:
        name = os.environ.get(ENV_VAR) or None
        source, fix = (f'the environment variable {ENV_VAR}',
                       f'unset {ENV_VAR} or set it to one of them')
    elif isinstance(scan_backend, str):
        name = scan_backend
        source, fix = ('scan_backend', 'set scan_backend to one of them, or to None to choose by '
                       'device')
    else:
        raise ConfigError(f'{owner}: scan_backend must be a backend name or None, got '
                          f'{scan_backend!r}')
    if name is None:
        return  # chosen per device at the first call, among the backends that run there
    usable = f'Usable backends: {", ".join(available_backends())}; {fix}.'
    if name not in _REGISTRY:
        raise ConfigError(f'{owner}: unknown selective-scan backend {name!r} (from {source}). '
                          + usable)
    reason = unavailable_reason(name)
    if reason is not None:
        raise UnavailableError(f'{owner}: the selective-scan backend {name!r} (from {source}) '
                               f'cannot run here ({reason}). ' + usable)


def set_default_backend(name: Optional[str]) -> None:
    """Set the backend used when ``selective_scan`` is called without ``backend``.

    Args:
        name (str, optional): A backend name, or None to go back to the automatic choice.
    """
    global _DEFAULT
    if name is not None:
        _check_name(name)
    _DEFAULT = name


def get_default_backend(device: Union[str, torch.device] = 'cpu') -> str:
    """The backend chosen automatically for tensors on ``device``, by a fixed rule.

    The available backend that runs on ``device`` with the highest :attr:`Backend.priority` for
    its type: as registered, ``triton`` for CUDA tensors when Triton imports, the ``cpu`` kernel
    for CPU tensors when it is built (and checked) for the running torch, else ``torch``.
    ``reference`` and ``mamba_ssm`` are never chosen automatically. The
    :func:`set_default_backend` choice and the ``MAMBAOUT_DENSE_SCAN_BACKEND`` variable, which
    take precedence in :func:`selective_scan`, are not consulted here.

    Args:
        device (str | torch.device): Device of the scanned tensors. Defaults to 'cpu'.

    Returns:
        str: Backend name.

    Raises:
        UnavailableError: When no available backend has a rank for the device type.
    """
    device = torch.device(device)
    for name in available_backends(device):
        if _REGISTRY[name].rank(device) is not None:
            return name
    raise UnavailableError(f'No selective-scan backend is chosen automatically for '
                           f'{device.type} tensors; name one of {available_backends(device)}')


def _resolve_backend(backend: Optional[str], device: torch.device) -> str:
    source = ''
    if backend is None and _DEFAULT is not None:
        backend, source = _DEFAULT, ' (set by set_default_backend)'
    if backend is None and os.environ.get(ENV_VAR):
        backend, source = os.environ[ENV_VAR], f' (from the environment variable {ENV_VAR})'
    if backend is None:
        backend = get_default_backend(device)
    _check_name(backend, source)
    if not _REGISTRY[backend].supports(device):
        raise UnavailableError(f'Selective-scan backend {backend!r}{source} does not run on '
                               f'{device.type} tensors; backends for {device.type}: '
                               f'{available_backends(device)}')
    key = (backend, device.type)
    if key not in _REPORTED:
        _REPORTED.add(key)
        print_log(f'selective_scan: using the {backend!r} backend for {device.type} tensors',
                  logger='current')
    return backend


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------


def _shape_error(msg: str, **tensors: Optional[Tensor]) -> UsageError:
    shapes = ', '.join(f'{k}{tuple(v.shape)}' for k, v in tensors.items() if v is not None)
    return UsageError(f'selective_scan: {msg} (got {shapes})')


def check_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                 D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                 delta_bias: Optional[Tensor] = None) -> ScanInputs:
    """Validate scan inputs and bring ``B``/``C`` to (batch, groups, N, L).

    Raises:
        UsageError: On a shape, groups, dtype or device mismatch (a ValueError).
    """
    named = dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
    for k, v in named.items():
        if v is None:
            continue
        if not isinstance(v, Tensor):
            raise UsageError(f'selective_scan: {k} must be a tensor, got {type(v).__name__}')
        if not v.is_floating_point():
            raise UsageError(f'selective_scan: {k} must be a real floating-point tensor, got '
                             f'{v.dtype}')
        if v.device != u.device:
            raise UsageError(f'selective_scan: {k} is on {v.device} but u is on {u.device}')
    if u.dim() != 3:
        raise _shape_error('u must be (batch, dim, L)', u=u)
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise _shape_error('delta must have the shape of u', u=u, delta=delta)
    if A.dim() != 2 or A.shape[0] != dim:
        raise _shape_error('A must be (dim, N)', u=u, A=A)
    n_state = A.shape[1]
    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    for k, v in (('B', B), ('C', C)):
        if v.dim() != 4 or v.shape[0] != batch or v.shape[2] != n_state \
                or v.shape[3] != length:
            raise _shape_error(f'{k} must be (batch, groups, N, L) or (batch, N, L) with '
                               'batch and L of u and N of A', u=u, A=A, **{k: named[k]})
    if B.shape[1] != C.shape[1]:
        raise _shape_error('B and C must have the same number of groups', B=named['B'],
                           C=named['C'])
    if B.shape[1] == 0 or dim % B.shape[1] != 0:
        raise _shape_error(f'dim ({dim}) must be divisible by the number of groups '
                           f'({B.shape[1]})', u=u, B=named['B'])
    if D is not None and D.shape != (dim, ):
        raise _shape_error('D must be (dim,)', u=u, D=D)
    if delta_bias is not None and delta_bias.shape != (dim, ):
        raise _shape_error('delta_bias must be (dim,)', u=u, delta_bias=delta_bias)
    if z is not None and z.shape != u.shape:
        raise _shape_error('z must have the shape of u', u=u, z=z)
    return ScanInputs(u, delta, A, B, C, D, z, delta_bias)


def compute_dtype(inputs: ScanInputs) -> torch.dtype:
    """float64 when any input is float64, else float32 (half inputs accumulate in float32)."""
    if any(t is not None and t.dtype == torch.float64 for t in inputs):
        return torch.float64
    return torch.float32


# ------------------------------------------------------------------------------------------
# Reference backend
# ------------------------------------------------------------------------------------------


def reference_forward(inputs: ScanInputs,
                      delta_softplus: bool) -> Tuple[Tensor, Tensor, Tuple[Tensor, ...]]:
    """Sequential loop over L, differentiable by autograd.

    Returns:
        tuple: ``(out, last_state, ())``.
    """
    dtype = compute_dtype(inputs)
    u, delta, A, B, C, D, z, delta_bias = (None if t is None else t.to(dtype) for t in inputs)
    batch, dim, length = u.shape
    groups = B.shape[1]
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    # (B, G, N, L) -> (B, dim, N, L): channel d reads group d // (dim // groups)
    B = B.repeat_interleave(dim // groups, dim=1)
    C = C.repeat_interleave(dim // groups, dim=1)
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    # unbind once: indexing step t of a tensor would make the backward quadratic in L
    for dt, u_t, B_t, C_t in zip(delta.unbind(-1), u.unbind(-1), B.unbind(-1), C.unbind(-1)):
        dt = dt[..., None]  # (B, dim, 1)
        h = torch.exp(dt * A) * h + dt * B_t * u_t[..., None]
        ys.append((h * C_t).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y, h, ()


def autograd_backward(forward: Callable, inputs: ScanInputs, delta_softplus: bool,
                      dout: Tensor, dlast: Optional[Tensor]) -> Grads:
    """Backward by re-running ``forward`` under autograd (used by backends without one)."""
    with torch.enable_grad():
        leaves = [None if t is None else t.detach().requires_grad_(True) for t in inputs]
        out, last, _ = forward(ScanInputs(*leaves), delta_softplus)
        outs, grads_out = [out], [dout]
        if dlast is not None:
            outs.append(last)
            grads_out.append(dlast)
        wrt = [t for t in leaves if t is not None]
        grads = iter(torch.autograd.grad(outs, wrt, grads_out, allow_unused=True))
    return tuple(None if t is None else next(grads) for t in leaves)


register_backend(
    Backend('reference', probe=lambda: None, supports=lambda device: True,
            forward=reference_forward, backward=None))

# ------------------------------------------------------------------------------------------
# The autograd Function and the public entry point
# ------------------------------------------------------------------------------------------


class SelectiveScanFn(torch.autograd.Function):
    """The whole scan as one autograd node, whatever the backend.

    Inputs are those of :func:`selective_scan` after :func:`check_inputs`; ``backend`` is a
    resolved backend name.
    """

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                D: Optional[Tensor], z: Optional[Tensor], delta_bias: Optional[Tensor],
                delta_softplus: bool, return_last_state: bool,
                backend: str) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        inputs = ScanInputs(u, delta, A, B, C, D, z, delta_bias)
        impl = _REGISTRY[backend]
        with torch.no_grad():
            out, last_state, saved = impl.forward(inputs, delta_softplus)
        ctx.save_for_backward(*inputs, *saved)
        ctx.delta_softplus = delta_softplus
        ctx.backend = backend
        out = out.to(u.dtype)
        if return_last_state:
            return out, last_state
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout: Tensor, dlast: Optional[Tensor] = None):
        tensors = ctx.saved_tensors  # unpack once (activation checkpointing allows no more)
        inputs = ScanInputs(*tensors[:8])
        saved = tuple(tensors[8:])
        impl = _REGISTRY[ctx.backend]
        dtype = compute_dtype(inputs)
        dout = dout.to(dtype)
        if dlast is not None:
            dlast = dlast.to(dtype)
        if impl.backward is None:
            grads = autograd_backward(impl.forward, inputs, ctx.delta_softplus, dout, dlast)
        else:
            grads = impl.backward(inputs, saved, ctx.delta_softplus, dout, dlast)
        grads = tuple(
            None if g is None or t is None or not ctx.needs_input_grad[i] else g.to(t.dtype)
            for i, (g, t) in enumerate(zip(grads, inputs)))
        return grads + (None, None, None)


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                   delta_bias: Optional[Tensor] = None, delta_softplus: bool = False,
                   return_last_state: bool = False,
                   backend: Optional[str] = None) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Selective scan with the semantics of ``mamba_ssm``'s ``selective_scan_fn``.

    Args:
        u (Tensor): Input, (batch, dim, L).
        delta (Tensor): Step sizes before bias/softplus, (batch, dim, L).
        A (Tensor): State matrix (diagonal), (dim, N).
        B (Tensor): Input matrix, (batch, groups, N, L) or (batch, N, L) for one group; ``dim``
            must be divisible by ``groups`` and channel ``d`` uses group
            ``d // (dim // groups)``.
        C (Tensor): Output matrix, shaped like ``B``.
        D (Tensor, optional): Skip connection, (dim,). Defaults to None.
        z (Tensor, optional): Gate, (batch, dim, L): the output is multiplied by ``silu(z)``.
            Defaults to None.
        delta_bias (Tensor, optional): Added to ``delta``, (dim,). Defaults to None.
        delta_softplus (bool): Apply softplus to ``delta + delta_bias``. Defaults to False.
        return_last_state (bool): Also return the final state. Defaults to False.
        backend (str, optional): Force a backend (see :func:`available_backends`). Defaults to
            None (see the module docstring for the automatic choice).

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``out`` (batch, dim, L) in ``u.dtype``, and with
        ``return_last_state`` the final state (batch, dim, N) in the compute dtype (float32,
        or float64 for float64 inputs), as ``mamba_ssm`` does.

    Raises:
        ValueError: On mismatched shapes or groups; ``ConfigError`` / ``UnavailableError``
            (see :mod:`mambaout_dense.errors`, both ``ValueError``) for an unknown or unusable
            backend.
    """
    inputs = check_inputs(u, delta, A, B, C, D, z, delta_bias)
    name = _resolve_backend(backend, u.device)
    return SelectiveScanFn.apply(*inputs, bool(delta_softplus), bool(return_last_state), name)
