"""FLOP counting of the selective scan with mmengine's jit-based analyzer."""
import pytest
import torch
from mmengine.analysis import FlopAnalyzer
from torch import nn

from mambaout_dense.ops import (
    SCAN_OP_NAME,
    cross_merge,
    cross_scan,
    register_flop_handles,
    scan_flop_handle,
    selective_scan,
)


class ScanModule(nn.Module):
    """A Mamba-style mixer reduced to its scan, with every optional input."""

    def __init__(self, dim: int, n_state: int, three_d_bc: bool = False):
        super().__init__()
        self.A = nn.Parameter(-torch.rand(dim, n_state))
        self.D = nn.Parameter(torch.ones(dim))
        self.delta_bias = nn.Parameter(torch.zeros(dim))
        self.three_d_bc = three_d_bc

    def forward(self, u, delta, B, C, z):
        if self.three_d_bc:
            B, C = B[:, 0], C[:, 0]
        return selective_scan(u, delta, self.A, B, C, self.D, z, self.delta_bias,
                              delta_softplus=True, backend='torch')


# The scan's internals are traced too (as the PythonOp's subgraph), with shape warnings.
pytestmark = pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning')


def scan_inputs(batch, dim, length, n_state, groups):
    return (torch.randn(batch, dim, length), torch.randn(batch, dim, length),
            torch.randn(batch, groups, n_state, length), torch.randn(batch, groups, n_state,
                                                                     length),
            torch.randn(batch, dim, length))


def test_scan_is_one_traced_node():
    inputs = scan_inputs(2, 8, 12, 4, 2)
    graph = torch.jit.trace(ScanModule(8, 4), inputs, check_trace=False).inlined_graph
    nodes = [n for n in graph.nodes() if n.kind() == 'prim::PythonOp']
    assert [n.pyname() for n in nodes] == ['SelectiveScanFn']
    assert SCAN_OP_NAME == 'prim::PythonOp.SelectiveScanFn'


@pytest.mark.parametrize('shape,three_d_bc', [((2, 8, 12, 4, 2), False),
                                              ((1, 384, 64, 1, 4), False),
                                              ((1, 6, 10, 16, 1), False),
                                              ((1, 6, 10, 16, 1), True)])
def test_flop_analyzer_counts_the_scan(shape, three_d_bc):
    batch, dim, length, n_state, groups = shape
    analyzer = FlopAnalyzer(ScanModule(dim, n_state, three_d_bc),
                            scan_inputs(batch, dim, length, n_state, groups))
    assert register_flop_handles(analyzer) is analyzer
    analyzer.unsupported_ops_warnings(False)
    expected = 9 * batch * length * dim * n_state + batch * dim * length
    assert analyzer.total() == expected
    assert analyzer.by_operator()['selective_scan'] == expected


def test_unregistered_scan_counts_zero():
    """Why the handle exists: mmengine counts a custom autograd.Function as 0."""
    analyzer = FlopAnalyzer(ScanModule(8, 4), scan_inputs(2, 8, 12, 4, 2))
    analyzer.unsupported_ops_warnings(False)
    assert analyzer.total() == 0
    assert SCAN_OP_NAME in analyzer.unsupported_ops()


def test_handle_on_traced_node():
    inputs = scan_inputs(3, 8, 20, 2, 4)
    graph = torch.jit.trace(ScanModule(8, 2), inputs, check_trace=False).inlined_graph
    node = next(n for n in graph.nodes() if n.kind() == 'prim::PythonOp')
    flops = scan_flop_handle(list(node.inputs()), list(node.outputs()))
    assert flops['selective_scan'] == 9 * 3 * 20 * 8 * 2 + 3 * 8 * 20


class CrossScanModule(nn.Module):

    def forward(self, x):
        y = cross_scan(x)  # (B, 4, C, H*W)
        return cross_merge(y, *x.shape[-2:])


def test_cross_scan_and_merge_count_no_flops():
    analyzer = FlopAnalyzer(CrossScanModule(), (torch.randn(1, 3, 4, 5), ))
    analyzer.unsupported_ops_warnings(False)
    register_flop_handles(analyzer)
    assert analyzer.total() == 0
