"""The parallel CPU RoIAlign against mmcv's and torchvision's, and its mmdet adapter."""
import pytest
import torch

from mambaout_dense.ops import roi_align as ra

needs_kernel = pytest.mark.skipif(ra.EXTENSION.load()[0] is None,
                                  reason='RoIAlign kernel not built')


def _case(seed: int, n: int = 40, channels: int = 8, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, channels, 21, 30, generator=g, dtype=dtype)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * 110 - 5  # some beyond the border
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * 60
    wh[:3] = 0  # empty boxes
    rois = torch.cat([torch.randint(0, 3, (n, 1), generator=g).to(dtype), xy, xy + wh], 1)
    return x, rois, g


def _out_and_grad(fn, x, rois, cot, *args):
    leaf = x.clone().requires_grad_()
    out = fn(leaf, rois, *args)
    (grad, ) = torch.autograd.grad(out, leaf, cot)
    return out.detach(), grad


@needs_kernel
@pytest.mark.parametrize('size,scale,ratio,aligned', [
    ((7, 7), 0.25, 0, True), ((14, 14), 0.25, 2, True), ((7, 5), 0.125, 0, False),
    ((3, 3), 1.0, 1, True)])
def test_equals_mmcv_roi_align_forward_and_backward(size, scale, ratio, aligned):
    from mmcv.ops import roi_align as mmcv_roi_align
    x, rois, g = _case(0)
    cot = torch.randn(len(rois), x.shape[1], *size, generator=g)
    ref = _out_and_grad(lambda a, b: mmcv_roi_align(a, b, size, scale, ratio, 'avg', aligned),
                        x, rois, cot)
    got = _out_and_grad(lambda a, b: ra.roi_align(a, b, size, scale, ratio, aligned), x, rois,
                        cot)
    for r, o in zip(ref, got):  # mmcv accumulates in float32, ours in float64
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5 * r.abs().max().item())


@needs_kernel
def test_gradcheck_in_float64():
    x, rois, _ = _case(1, n=6, channels=2, dtype=torch.float64)
    x = x[:, :, :9, :11].contiguous().requires_grad_()
    rois[:, 1:] = rois[:, 1:].clamp(0, 40) / 4
    torch.autograd.gradcheck(lambda a: ra.roi_align(a, rois, (3, 4), 1.0, 0, True), (x, ))


@needs_kernel
def test_kernel_and_torchvision_fallback_agree(monkeypatch):
    x, rois, g = _case(2)
    cot = torch.randn(len(rois), x.shape[1], 7, 7, generator=g)
    assert ra.roi_align_backend('cpu') == 'cpu'
    kernel = _out_and_grad(lambda a, b: ra.roi_align(a, b, 7, 0.25), x, rois, cot)
    monkeypatch.setattr(ra.EXTENSION, '_state', dict(module=None, reason='test', meta={}))
    assert ra.roi_align_backend('cpu') == 'torchvision'
    fallback = _out_and_grad(lambda a, b: ra.roi_align(a, b, 7, 0.25), x, rois, cot)
    for k, f in zip(kernel, fallback):
        torch.testing.assert_close(k, f, rtol=1e-5, atol=1e-5)


def test_module_takes_mmcv_arguments_and_refuses_max_pooling():
    layer = ra.RoIAlign(7, spatial_scale=0.25, sampling_ratio=2, aligned=True,
                        use_torchvision=False)
    assert layer.output_size == (7, 7) and layer.sampling_ratio == 2
    with pytest.raises(ValueError, match="pool_mode='avg'"):
        ra.RoIAlign(7, pool_mode='max')


def test_mmdet_extractor_builds_our_layers_and_equals_mmdet():
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor as MMDet

    from mambaout_dense.adapters.roi_extractor import SingleRoIExtractor
    kwargs = dict(out_channels=8, featmap_strides=[4, 8, 16, 32])
    ours = SingleRoIExtractor(roi_layer=dict(type='mambaout_dense.RoIAlign', output_size=7,
                                             sampling_ratio=0), **kwargs)
    ref = MMDet(roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0), **kwargs)
    assert all(isinstance(m, ra.RoIAlign) for m in ours.roi_layers)
    assert [m.spatial_scale for m in ours.roi_layers] == [0.25, 0.125, 0.0625, 0.03125]
    g = torch.Generator().manual_seed(3)
    feats = [torch.randn(2, 8, 64 // 2**i, 64 // 2**i, generator=g) for i in range(4)]
    xy = torch.rand(30, 2, generator=g) * 200
    rois = torch.cat([torch.randint(0, 2, (30, 1), generator=g).float(), xy,
                      xy + torch.rand(30, 2, generator=g) * 150 + 4], 1)
    torch.testing.assert_close(ours(feats, rois), ref(feats, rois), rtol=1e-5, atol=1e-5)
    plain = SingleRoIExtractor(roi_layer=dict(type='RoIAlign', output_size=7), **kwargs)
    assert type(plain.roi_layers[0]).__module__.startswith('mmcv')  # other types: mmdet's way
