"""VMamba's four-direction cross-scan and cross-merge on channels-first maps.

From "VMamba: Visual State Space Model" (Liu et al., arXiv:2401.10166), SS2D: a (B, C, H, W) map is
unrolled into four sequences (row-major, column-major, and both reversed), scanned, and the four
results are put back in place and summed. Only flips, transposes and concatenations are used, so
FLOP counters see no arithmetic here.
"""
import torch
from torch import Tensor

# The shape checks below are internal invariants: SS2D passes the maps it computes itself, so no
# config value or user input reaches them; a failure is a programming error of the caller.


def cross_scan(x: Tensor) -> Tensor:
    """Unroll a map in VMamba's four scan orders.

    Args:
        x (Tensor): Map, (B, C, H, W).

    Returns:
        Tensor: (B, 4, C, H * W): row-major, column-major (H and W transposed), reversed
        row-major, reversed column-major.
    """
    if x.dim() != 4:
        # internal invariant (see the note above cross_scan)
        raise ValueError(f'cross_scan expects (B, C, H, W), got {tuple(x.shape)}')
    rows = x.flatten(2)  # (B, C, H*W), position h * W + w
    cols = x.transpose(2, 3).flatten(2)  # (B, C, W*H), position w * H + h
    fwd = torch.stack([rows, cols], dim=1)  # (B, 2, C, L)
    return torch.cat([fwd, fwd.flip(-1)], dim=1)


def cross_merge(y: Tensor, height: int = None, width: int = None) -> Tensor:
    """Undo the four scan orders of :func:`cross_scan` and sum them.

    Args:
        y (Tensor): Scanned sequences, (B, 4, C, H, W) or (B, 4, C, H * W). The flattened form
            needs ``height`` and ``width`` unless ``H == W``.
        height (int, optional): H for the flattened form. Defaults to None.
        width (int, optional): W for the flattened form. Defaults to None.

    Returns:
        Tensor: (B, C, H * W) in row-major order.
    """
    if y.dim() == 5:
        if y.shape[1] != 4:
            # internal invariant (see the note above cross_scan)
            raise ValueError(f'cross_merge expects (B, 4, C, H, W), got {tuple(y.shape)}')
        height, width = y.shape[-2:]
        y = y.flatten(3)
    elif y.dim() == 4 and y.shape[1] == 4:
        length = y.shape[-1]
        if height is None and width is None:
            side = int(round(length**0.5))
            if side * side != length:
                # internal invariant (see the note above cross_scan)
                raise ValueError(f'cross_merge: L={length} is not square; pass height and width')
            height = width = side
        elif height is None:
            height = length // width
        elif width is None:
            width = length // height
        if height * width != length:
            # internal invariant (see the note above cross_scan)
            raise ValueError(f'cross_merge: height * width = {height} * {width} != L = {length}')
    else:
        # internal invariant (see the note above cross_scan)
        raise ValueError('cross_merge expects (B, 4, C, H, W) or (B, 4, C, L), got '
                         f'{tuple(y.shape)}')
    B, _, C, L = y.shape
    y = y[:, :2] + y[:, 2:].flip(-1)  # undo the reversals: (B, 2, C, L)
    cols = y[:, 1].view(B, C, width, height).transpose(2, 3).flatten(2)  # back to row-major
    return y[:, 0] + cols
