"""The class-weighted cross-entropy adapter equals mmseg's loss where mmseg's works, and a float64
reference where mmseg's fails (ignored pixels)."""
import pytest
import torch
from mmseg.models.losses import CrossEntropyLoss as MMSegCrossEntropyLoss

from mambaout_dense.adapters.seg_loss import CrossEntropyLoss

WEIGHTS = [1.0, 2.0, 0.5, 3.0]


def _batch(ignored: bool):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, 5, generator=g)
    label = torch.randint(0, 4, (2, 6, 5), generator=g)
    if ignored:
        label[0, :2] = 255
    return logits, label


def test_equals_mmseg_without_ignored_pixels():
    logits, label = _batch(ignored=False)
    for kw in (dict(class_weight=WEIGHTS), dict()):
        ours = CrossEntropyLoss(avg_non_ignore=True, loss_weight=0.4, **kw)
        theirs = MMSegCrossEntropyLoss(avg_non_ignore=True, loss_weight=0.4, **kw)
        torch.testing.assert_close(ours(logits, label, ignore_index=255),
                                   theirs(logits, label, ignore_index=255))


def test_weighted_mean_over_kept_pixels_with_ignored_pixels():
    logits, label = _batch(ignored=True)
    with pytest.raises(IndexError):  # the mmseg 1.2 failure this adapter exists for
        MMSegCrossEntropyLoss(avg_non_ignore=True, class_weight=WEIGHTS)(logits, label,
                                                                        ignore_index=255)
    got = CrossEntropyLoss(avg_non_ignore=True, class_weight=WEIGHTS)(logits, label,
                                                                     ignore_index=255)
    x = logits.double().permute(0, 2, 3, 1).reshape(-1, 4)
    y = label.reshape(-1)
    keep = y != 255
    w = torch.tensor(WEIGHTS, dtype=torch.float64)[y[keep]]
    nll = -torch.log_softmax(x[keep], 1).gather(1, y[keep, None])[:, 0]
    torch.testing.assert_close(got.double(), (w * nll).sum() / w.sum())


def test_per_pixel_weights_equal_mmseg_without_ignored_pixels():
    """An OHEM sampler's 0/1 pixel weights: mmseg's own sum over the kept pixels, divided by the
    class weights of every pixel that is not ignored."""
    logits, label = _batch(ignored=False)
    kept = (torch.arange(label.numel()) % 3 == 0).float().reshape(label.shape)
    ours = CrossEntropyLoss(avg_non_ignore=True, class_weight=WEIGHTS, loss_weight=0.4)
    theirs = MMSegCrossEntropyLoss(avg_non_ignore=True, class_weight=WEIGHTS, loss_weight=0.4)
    torch.testing.assert_close(ours(logits, label, weight=kept, ignore_index=255),
                               theirs(logits, label, weight=kept, ignore_index=255))


def test_per_pixel_weights_with_ignored_pixels():
    logits, label = _batch(ignored=True)
    kept = (torch.arange(label.numel()) % 3 == 0).float().reshape(label.shape)
    got = CrossEntropyLoss(avg_non_ignore=True, class_weight=WEIGHTS)(
        logits, label, weight=kept, ignore_index=255)
    x = logits.double().permute(0, 2, 3, 1).reshape(-1, 4)
    y, p = label.reshape(-1), kept.reshape(-1).double()
    keep = y != 255
    w = torch.tensor(WEIGHTS, dtype=torch.float64)[y[keep]]
    nll = -torch.log_softmax(x[keep], 1).gather(1, y[keep, None])[:, 0]
    torch.testing.assert_close(got.double(), (p[keep] * w * nll).sum() / w.sum())


def test_other_settings_are_mmsegs_own():
    logits, label = _batch(ignored=True)
    ours = CrossEntropyLoss(avg_non_ignore=True)
    theirs = MMSegCrossEntropyLoss(avg_non_ignore=True)
    torch.testing.assert_close(ours(logits, label, ignore_index=255),
                               theirs(logits, label, ignore_index=255))


def _lovasz_kwargs():
    return dict(loss_type='multi_class', classes='present', per_image=False, reduction='none',
                loss_weight=0.7)


def test_lovasz_stride_1_is_mmsegs_loss():
    from mmseg.models.losses import LovaszLoss as MMSegLovaszLoss

    from mambaout_dense.adapters.seg_loss import LovaszLoss
    logits, label = _batch(ignored=True)
    torch.testing.assert_close(LovaszLoss(**_lovasz_kwargs())(logits, label, ignore_index=255),
                               MMSegLovaszLoss(**_lovasz_kwargs())(logits, label,
                                                                   ignore_index=255))


def test_lovasz_stride_reads_every_stride_th_pixel_only():
    from mmseg.models.losses import LovaszLoss as MMSegLovaszLoss

    from mambaout_dense.adapters.seg_loss import LovaszLoss
    logits, label = _batch(ignored=True)
    logits.requires_grad_(True)
    got = LovaszLoss(stride=2, **_lovasz_kwargs())(logits, label, ignore_index=255)
    want = MMSegLovaszLoss(**_lovasz_kwargs())(logits[:, :, ::2, ::2].contiguous(),
                                              label[:, ::2, ::2].contiguous(), ignore_index=255)
    torch.testing.assert_close(got, want)
    got.backward()
    read = logits.grad.abs().sum(1) > 0
    assert read[:, ::2, ::2].any() and not read[:, 1::2].any() and not read[:, :, 1::2].any()
    with pytest.raises(ValueError, match='stride'):
        LovaszLoss(stride=0, **_lovasz_kwargs())
