"""Selective scan (Mamba-1 recurrence) backends, VMamba's cross-scan and their FLOP handles."""
from . import scan_cpu, scan_mamba_ssm, scan_torch, scan_triton  # noqa: F401  (backends)
from .cross_scan import cross_merge, cross_scan
from .flops import SCAN_OP_NAME, register_flop_handles, scan_flop_handle
from .scan import (
                             SelectiveScanFn,
                             available_backends,
                             get_default_backend,
                             selective_scan,
                             set_default_backend,
)

__all__ = [
    'selective_scan', 'SelectiveScanFn', 'available_backends', 'get_default_backend',
    'set_default_backend', 'cross_scan', 'cross_merge', 'SCAN_OP_NAME', 'scan_flop_handle',
    'register_flop_handles'
]
