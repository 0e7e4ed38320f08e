"""FLOP handle of the selective scan for mmengine's jit-based counter.

mmengine's ``FlopAnalyzer`` counts a custom ``torch.autograd.Function`` as zero unless a handle
is registered for its ``prim::PythonOp`` node. The count follows state-spaces/mamba issue #110
for "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (arXiv:2312.00752):
``9 * batch * L * dim * N`` for the recurrence plus ``batch * dim * L`` for the output; the ``D``
skip and ``z`` gate are not counted.

Usage::

    analyzer = FlopAnalyzer(model, inputs)
    register_flop_handles(analyzer)
    analyzer.total()
"""
from collections import Counter
from typing import Any, List

from mmengine.analysis.jit_handles import get_shape

from .scan import SelectiveScanFn

SCAN_OP_NAME = f'prim::PythonOp.{SelectiveScanFn.__name__}'


def scan_flops(batch: int, dim: int, length: int, n_state: int) -> int:
    """FLOPs of one selective scan: ``9 * batch * L * dim * N + batch * dim * L``."""
    return 9 * batch * length * dim * n_state + batch * dim * length


def scan_flop_handle(inputs: List[Any], outputs: List[Any]) -> Counter:
    """mmengine/fvcore handle for ``prim::PythonOp.SelectiveScanFn``.

    Args:
        inputs (list[torch._C.Value]): Tensor inputs of the node, in the order of
            ``SelectiveScanFn``: ``u`` (batch, dim, L), ``delta``, ``A`` (dim, N),
            ``B`` (batch, groups, N, L), ... N is read from ``B``, or from ``A`` when the
            shape of ``B`` is unknown.
        outputs (list[torch._C.Value]): Outputs of the node (unused).

    Returns:
        Counter: ``{'selective_scan': flops}``.
    """
    u_shape = get_shape(inputs[0])
    b_shape, a_shape = get_shape(inputs[3]), get_shape(inputs[2])
    if b_shape is not None and len(b_shape) in (3, 4):
        n_state = b_shape[-2]
    elif a_shape is not None and len(a_shape) == 2:
        n_state = a_shape[1]
    else:
        n_state = None
    if u_shape is None or len(u_shape) != 3 or n_state is None:
        # internal invariant: the traced scan node always carries these inputs (no user value)
        raise ValueError('selective-scan FLOP handle: expected u (batch, dim, L) and B '
                         f'(batch, groups, N, L) or A (dim, N), got {u_shape}, {b_shape} and '
                         f'{a_shape}')
    batch, dim, length = u_shape
    return Counter({'selective_scan': scan_flops(batch, dim, length, n_state)})


def register_flop_handles(analyzer: Any) -> Any:
    """Register the handles of this package's ops on an mmengine ``FlopAnalyzer``.

    Args:
        analyzer (FlopAnalyzer): The analyzer.

    Returns:
        FlopAnalyzer: The same analyzer, for chaining.
    """
    return analyzer.set_op_handle(SCAN_OP_NAME, scan_flop_handle)
