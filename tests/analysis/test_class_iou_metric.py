"""ClassIoUMetric: mmseg's IoUMetric numbers unchanged, plus each class's IoU."""
import math

import numpy as np
import pytest
import torch


def _samples(rng, n, num_classes, size=16):
    out = []
    for _ in range(n):
        label = torch.from_numpy(rng.integers(0, num_classes, (1, size, size)))
        label[0, :2] = 255  # ignored pixels
        pred = label.clone()
        flip = torch.from_numpy(rng.random((1, size, size)) < 0.3)
        pred[flip] = torch.from_numpy(rng.integers(0, num_classes, (int(flip.sum()), )))
        pred[pred == 255] = 0
        out.append(dict(pred_sem_seg=dict(data=pred), gt_sem_seg=dict(data=label)))
    return out


def test_per_class_iou_matches_counts_and_mmseg_means():
    pytest.importorskip('mmseg')
    from mmseg.evaluation.metrics import IoUMetric

    from mambaout_dense.evaluation.class_iou_metric import ClassIoUMetric
    classes = ('a', 'b', 'c', 'd')  # 'd' never occurs: NaN, left out of mmseg's mean
    samples = _samples(np.random.default_rng(0), 5, 3)
    scores = {}
    for cls in (IoUMetric, ClassIoUMetric):
        metric = cls(iou_metrics=['mIoU'])
        metric.dataset_meta = dict(classes=classes)
        metric.process({}, samples)
        scores[cls.__name__] = metric.compute_metrics(metric.results)
    ours, ref = scores['ClassIoUMetric'], scores['IoUMetric']
    assert {k: ours[k] for k in ref} == ref
    for c, name in enumerate(classes):
        inter = union = 0
        for s in samples:
            p, t = s['pred_sem_seg']['data'], s['gt_sem_seg']['data']
            keep = t != 255
            inter += int(((p == c) & (t == c) & keep).sum())
            union += int((((p == c) | (t == c)) & keep).sum())
        if union == 0:
            assert math.isnan(ours[f'IoU.{name}'])
        else:
            assert ours[f'IoU.{name}'] == pytest.approx(100 * inter / union, abs=0.006)
    assert np.nanmean([ours[f'IoU.{n}'] for n in classes]) == pytest.approx(ref['mIoU'],
                                                                           abs=0.02)
