"""Hybrid backbone (per-stage Gated CNN / SS2D): the dense contract and the parameter budget."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mambaout_dense.checkpoint import CheckpointError
from mambaout_dense.models import HybridBackbone, MambaOut
from mambaout_dense.models.backbones.mambaout import GatedCNNBlock
from mambaout_dense.models.backbones.vmamba import VSSBlock
from mambaout_dense.registry import MODELS

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _params(model: torch.nn.Module, skip_output_norms: bool = False) -> int:
    return sum(p.numel() for k, p in model.named_parameters()
               if not (skip_output_norms and k.startswith('norm')))


def test_default_mixers_put_ss2d_in_stages_1_2_and_gated_cnn_in_3_4():
    model = HybridBackbone('test')
    assert model.mixers == ('ss2d', 'ss2d', 'gated_cnn', 'gated_cnn')
    kinds = [{type(b) for b in stage} for stage in model.stages]
    assert kinds == [{VSSBlock}, {VSSBlock}, {GatedCNNBlock}, {GatedCNNBlock}]
    assert [s.channels_first for s in model.stages] == [True, True, False, False]


def test_all_gated_cnn_is_mambaout():
    """With Gated CNN everywhere and MambaOut's depths the hybrid has MambaOut's parameters."""
    arch = dict(depths=(3, 3, 9, 3), dims=(48, 96, 192, 288))
    hybrid = HybridBackbone(arch, mixers=('gated_cnn', ) * 4)
    assert _params(hybrid) == _params(MambaOut('femto'))
    assert list(hybrid.state_dict()) == list(MambaOut('femto').state_dict())


def test_registry_build_outputs_and_metadata():
    model = MODELS.build(
        dict(type='mambaout_dense.HybridBackbone', arch='test', out_indices=(1, 3))).eval()
    outs = model(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 24, 8, 8), (2, 48, 2, 2)]
    assert model.out_channels == [24, 48] and model.out_strides == [8, 32]
    assert hasattr(model, 'norm1') and hasattr(model, 'norm3') and not hasattr(model, 'norm0')
    assert model.output_shape()['stage3'].channels == 48


def test_mmdet_and_mmseg_registries_find_it():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    for registry in (DET_MODELS, SEG_MODELS):
        model = registry.build(dict(type='mambaout_dense.HybridBackbone', arch='test',
                                    mixers=('gated_cnn', 'ss2d', 'gated_cnn', 'ss2d')))
        assert isinstance(model, HybridBackbone)


@pytest.mark.parametrize('hw', [(65, 97), (33, 47)])
@pytest.mark.parametrize('mixers', [('ss2d', 'ss2d', 'gated_cnn', 'gated_cnn'),
                                    ('gated_cnn', 'ss2d', 'gated_cnn', 'ss2d')])
def test_odd_input_sizes(hw, mixers):
    model = HybridBackbone('test', mixers=mixers).eval()
    h, w = hw
    with torch.no_grad():
        outs = model(torch.rand(1, 3, h, w))
    for out, stride in zip(outs, (4, 8, 16, 32)):
        assert out.shape[-2:] == (-(-h // stride), -(-w // stride))


def test_forward_stages_are_the_outputs_before_their_norms():
    model = HybridBackbone('test').eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        stages = model.forward_stages(x)
        outs = model(x)
    for i, (s, o) in enumerate(zip(stages, outs)):
        ref = getattr(model, f'norm{i}')(s).permute(0, 3, 1, 2)  # (B, H, W, C) -> NCHW
        torch.testing.assert_close(o, ref)


def test_mixer_and_arch_errors():
    with pytest.raises(ValueError, match='valid: gated_cnn, ss2d'):
        HybridBackbone('test', mixers=('ss2d', 'attention', 'gated_cnn', 'gated_cnn'))
    with pytest.raises(ValueError, match='one name per stage'):
        HybridBackbone('test', mixers=('ss2d', 'gated_cnn'))
    with pytest.raises(ValueError, match='valid names: femto, test, tiny'):
        HybridBackbone('small')
    with pytest.raises(ValueError, match='unknown keys'):
        HybridBackbone(dict(depths=(1, 1, 1, 1), dims=(8, 8, 8, 8), heads=2))
    with pytest.raises(TypeError):
        HybridBackbone('test', drop_path_rte=0.1)
    custom = HybridBackbone(dict(depths=(1, 1, 1, 1), dims=(16, 16, 32, 32), kernel_size=5,
                                 mlp_ratio=0.0, d_state=2))
    assert custom.stages[2][0].conv.kernel_size == (5, 5)
    assert not custom.stages[0][0].has_mlp and custom.stages[0][0].op.d_state == 2


def test_frozen_stages_get_no_grad_and_stay_eval():
    model = HybridBackbone('test', frozen_stages=2, drop_path_rate=0.1)
    model.init_weights()
    model.train()
    assert not model.downsample_layers[0].training and not model.stages[1].training
    assert model.stages[2].training
    sum(o.sum() for o in model(torch.rand(1, 3, 64, 64))).backward()
    for name, p in model.named_parameters():
        frozen = name.startswith(('downsample_layers.0.', 'downsample_layers.1.', 'stages.0.',
                                  'stages.1.', 'norm0.', 'norm1.'))
        assert (p.grad is None) == frozen, name
        assert p.requires_grad != frozen


def test_with_cp_same_gradients():
    torch.manual_seed(0)
    a = HybridBackbone('test')
    b = HybridBackbone('test', with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 64, 64)
    for m in (a, b):
        m.train()
        sum(o.square().mean() for o in m(x)).backward()
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_drop_path_rates_increase_linearly_across_mixers():
    model = HybridBackbone('test', drop_path_rate=0.4)
    rates = [getattr(blk.drop_path, 'drop_prob', 0.0) for stage in model.stages for blk in stage]
    assert len(rates) == sum(model.depths) and rates[0] == 0.0
    assert rates[-1] == pytest.approx(0.4) and rates == sorted(rates)


def test_norm_eval_keeps_batchnorm_in_eval():
    model = HybridBackbone('test', norm_eval=True)
    model.bn = torch.nn.BatchNorm2d(4)  # the backbone has none; norm_eval must still apply
    model.train()
    assert not model.bn.training and model.stages[0].training


def test_own_checkpoints_load_and_foreign_ones_are_refused(tmp_path):
    src = HybridBackbone('test')
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    det = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    det['rpn_head.conv.weight'] = torch.zeros(1)
    torch.save({'state_dict': det}, tmp_path / 'det.pth')
    dst = HybridBackbone('test', init_cfg=dict(type='Pretrained', checkpoint=str(
        tmp_path / 'det.pth'), prefix='backbone.'))
    dst.init_weights()
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)
    # timm-layout MambaOut weights: no hybrid exists to convert from
    torch.save({'stem.conv1.weight': torch.zeros(8, 3, 3, 3),
                'stages.0.blocks.0.fc1.weight': torch.zeros(4, 4)}, tmp_path / 'timm.pth')
    with pytest.raises(CheckpointError, match='No official'):
        HybridBackbone('test', init_cfg=dict(type='Pretrained', checkpoint=str(
            tmp_path / 'timm.pth'))).init_weights()
    # an official MambaOut checkpoint has the stem but not the SS2D stages: strict mismatch
    torch.save(MambaOut('test').state_dict(), tmp_path / 'mambaout.pth')
    with pytest.raises(CheckpointError, match='missing key'):
        HybridBackbone('test', init_cfg=dict(type='Pretrained', checkpoint=str(
            tmp_path / 'mambaout.pth'))).init_weights()


def test_femto_and_tiny_backbone_params_within_5_percent_of_mambaout():
    for arch in ('femto', 'tiny'):
        ours = _params(HybridBackbone(arch), skip_output_norms=True)
        ref = _params(MambaOut(arch), skip_output_norms=True)
        assert abs(ours / ref - 1) < 0.05, (arch, ours, ref)
    assert _params(MambaOut('femto'), skip_output_norms=True) / 1e6 == pytest.approx(5.82,
                                                                                    abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize('task', ['mask_rcnn', 'upernet'])
def test_detector_and_segmentor_params_within_5_percent_of_mambaout_t(task):
    """mask_rcnn/upernet_hybrid_t build and stay within 5% of MambaOut-T's 43.13 M / 54.05 M."""
    from mambaout_dense.analysis.flops import build_task_model
    counts = {}
    for backbone in ('hybrid', 'mambaout'):
        cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', f'{task}_{backbone}_t.py'))
        model = build_task_model(cfg)
        counts[backbone] = _params(model)
        if backbone == 'hybrid':
            assert isinstance(model.backbone, HybridBackbone) and model.backbone.init_cfg is None
    expected = {'mask_rcnn': 43.13e6, 'upernet': 54.05e6}[task]
    assert counts['mambaout'] == pytest.approx(expected, rel=1e-3)
    assert abs(counts['hybrid'] / counts['mambaout'] - 1) < 0.05
