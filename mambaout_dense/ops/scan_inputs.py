"""Random inputs of the selective scan (Gu & Dao, "Mamba", arXiv 2312.00752) with stable decays.

The one maker of scan inputs for the tests, the kernel build's checks and the benchmarks: values
are drawn in float64 from one seeded generator in a fixed order (u, delta, A, B, C, D, z,
delta_bias) and then cast, so the same seed gives the same numbers in every dtype and on every
device.
"""
from typing import Dict, Union

import torch

__all__ = ['random_scan_inputs']


def random_scan_inputs(batch: int = 2, dim: int = 4, length: int = 37, n_state: int = 3,
                       groups: int = 2, *, D: bool = True, z: bool = True, bias: bool = True,
                       seed: int = 0, dtype: torch.dtype = torch.float64,
                       device: Union[str, torch.device] = 'cpu', delta_scale: float = 0.5,
                       delta_shift: float = 0.0, a_scale: float = 3.0, bias_scale: float = 0.3,
                       b3d: bool = False) -> Dict[str, torch.Tensor]:
    """Keyword arguments of :func:`mambaout_dense.ops.selective_scan`, random.

    Args:
        batch, dim, length, n_state, groups (int): Shapes: u/delta (batch, dim, length),
            A (dim, n_state), B/C (batch, groups, n_state, length).
        D, z, bias (bool): Include the skip, the gate and the delta bias. Defaults to True.
        seed (int): Generator seed. Defaults to 0.
        dtype (torch.dtype): Result dtype. Defaults to float64.
        device (str | torch.device): Result device. Defaults to 'cpu'.
        delta_scale (float): Std of delta. Defaults to 0.5.
        delta_shift (float): Added to delta (negative: small steps after softplus).
            Defaults to 0.
        a_scale (float): A is uniform in (-a_scale, 0]. Defaults to 3.
        bias_scale (float): Std of delta_bias. Defaults to 0.3.
        b3d (bool): B and C as (batch, n_state, length) (one group). Defaults to False.

    Returns:
        dict[str, Tensor]: ``u``, ``delta``, ``A``, ``B``, ``C`` and the optional ones.
    """
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    bc_shape = (batch, n_state, length) if b3d else (batch, groups, n_state, length)
    x = dict(u=randn(batch, dim, length),
             delta=randn(batch, dim, length, scale=delta_scale) + delta_shift,
             A=-torch.rand(dim, n_state, generator=g, dtype=torch.float64) * a_scale,
             B=randn(*bc_shape), C=randn(*bc_shape))
    if D:
        x['D'] = randn(dim)
    if z:
        x['z'] = randn(batch, dim, length)
    if bias:
        x['delta_bias'] = randn(dim, scale=bias_scale)
    return {k: v.to(device=device, dtype=dtype) for k, v in x.items()}
