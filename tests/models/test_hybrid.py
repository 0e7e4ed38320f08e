"""Hybrid backbone (per-stage Gated CNN / SS2D): the dense contract and the parameter budget."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mambaout_dense.checkpoint import CheckpointError
from mambaout_dense.models import HybridBackbone, MambaOut
from mambaout_dense.models.backbones.mambaout import GatedCNNBlock
from mambaout_dense.models.backbones.vmamba import VSSBlock

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
    from mambaout_dense.builder import build_model
    counts = {}
    for backbone in ('hybrid', 'mambaout'):
        cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', f'{task}_{backbone}_t.py'))
        model = build_model(cfg)
        counts[backbone] = _params(model)
        if backbone == 'hybrid':
            assert isinstance(model.backbone, HybridBackbone) and model.backbone.init_cfg is None
    expected = {'mask_rcnn': 43.13e6, 'upernet': 54.05e6}[task]
    assert counts['mambaout'] == pytest.approx(expected, rel=1e-3)
    assert abs(counts['hybrid'] / counts['mambaout'] - 1) < 0.05
