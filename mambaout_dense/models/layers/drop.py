"""Stochastic depth (Huang et al., "Deep Networks with Stochastic Depth", arXiv 1603.09382)."""
import torch
from torch import nn

from ...errors import ConfigError

__all__ = ['DropPath']


class DropPath(nn.Module):
    """Drop the whole residual branch per sample with probability ``drop_prob`` in training.

    Args:
        drop_prob (float): Probability of dropping. Defaults to 0.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ConfigError(f'DropPath: drop_prob must be in [0, 1), got {drop_prob}')
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'
