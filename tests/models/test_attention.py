"""The attention mixers of models/layers/attention.py against a float64 softmax attention."""
import math

import pytest
import torch

from mambaout_dense.models.layers import GlobalAttention, WindowAttention


def softmax_attention_reference(module: GlobalAttention, x: torch.Tensor) -> torch.Tensor:
    """Multi-head attention written out with explicit scores, in float64."""
    x = x.double()
    w_qkv, b_qkv = module.qkv.weight.double(), module.qkv.bias.double()
    B, L, D = x.shape
    heads = module.num_heads
    q, k, v = (x @ w_qkv.T + b_qkv).split(D, dim=-1)
    out = []
    for h in range(heads):
        sl = slice(h * D // heads, (h + 1) * D // heads)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(D // heads)
        out.append(scores.softmax(-1) @ v[..., sl])
    y = torch.cat(out, dim=-1)
    return y @ module.proj.weight.double().T + module.proj.bias.double()


@pytest.mark.parametrize('dim,head_dim', [(32, 32), (64, 16)])
def test_global_attention_equals_softmax_attention(dim, head_dim):
    torch.manual_seed(0)
    attn = GlobalAttention(dim, head_dim=head_dim).eval()
    x = torch.randn(2, 50, dim)
    with torch.no_grad():
        torch.testing.assert_close(attn(x).double(), softmax_attention_reference(attn, x),
                                   rtol=1e-4, atol=1e-5)


def test_window_attention_is_global_attention_per_window():
    torch.manual_seed(0)
    win = WindowAttention(32, window=7).eval()
    x = torch.randn(2, 14, 7, 32)
    with torch.no_grad():
        out = win(x)
        for rows in (slice(0, 7), slice(7, 14)):  # two windows, each attended on its own
            window = x[:, rows].reshape(2, 49, 32)
            ref = softmax_attention_reference(win.attn, window).reshape(2, 7, 7, 32)
            torch.testing.assert_close(out[:, rows].double(), ref, rtol=1e-4, atol=1e-5)
        assert win(torch.randn(1, 10, 12, 32)).shape == (1, 10, 12, 32)  # padded and cropped


def test_global_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match='heads'):
        GlobalAttention(50, head_dim=16)  # 3 heads of 50 channels
