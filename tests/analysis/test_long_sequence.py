"""The long-sequence probe reproduces the paper's numbers (docs/reference.md section 1) exactly."""
import json
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from mambaout_dense.analysis import long_sequence as ls
from mambaout_dense.builder import build_backbone_by_name, is_backbone_name

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO_ROOT, 'tools', 'analysis', 'long_sequence.py')

# MambaOut-T per-stage table of docs/reference.md section 1 (tokens L, L/(6D)), D = 96/192/384/576.
REFERENCE_GRID = """\
| input | stride 4 | stride 8 | stride 16 | stride 32 |
|---|---|---|---|---|
| 224×224 | L=3136, 5.44 | 784, 0.68 | 196, 0.09 | 49, 0.01 |
| 800×1280 | L=64000, 111.1 | 16000, 13.9 | 4000, 1.74 | 1000, 0.29 |
| 512×512 | L=16384, 28.4 | 4096, 3.56 | 1024, 0.44 | 256, 0.07 |
| 512×2048 | L=65536, 113.8 | 16384, 14.2 | 4096, 1.78 | 1024, 0.30 |"""
SHAPES = [(224, 224), (800, 1280), (512, 512), (512, 2048)]


def test_mambaout_tiny_stage_table_matches_reference_exactly():
    """Dims and strides come from the built backbone, and the table equals the paper's."""
    model = build_backbone_by_name('mambaout_tiny')
    dims, strides = ls.backbone_geometry(model)
    assert dims == [96, 192, 384, 576] and strides == [4, 8, 16, 32]
    rows = ls.analyse(dims, strides, SHAPES, model='MambaOut-T')
    assert ls.stage_grid_markdown(rows) == REFERENCE_GRID


@pytest.mark.parametrize('shape,tokens', [((224, 224), 196), ((800, 1280), 4000),
                                          ((512, 2048), 4096)])
def test_vit_token_counts_and_thresholds(shape, tokens):
    """ViT-S/B at patch 16: the paper's token counts; tau = 6D = 2304 / 4608."""
    vs, vb = ls.vit_rows(shape)
    assert (vs['model'], vs['tokens'], vs['threshold']) == ('ViT-S', tokens, 2304)
    assert (vb['model'], vb['tokens'], vb['threshold']) == ('ViT-B', tokens, 4608)
    assert vs['long_sequence'] == (tokens > 2304) and vb['long_sequence'] is False


def test_long_sequence_flags_per_stage():
    """At 800x1280 stages 1-3 of MambaOut-T are long-sequence, stage 4 is not; at 224² only
    stage 1 is."""
    rows = ls.long_sequence_rows([96, 192, 384, 576], [4, 8, 16, 32], (800, 1280))
    assert [r['long_sequence'] for r in rows] == [True, True, True, False]
    rows = ls.long_sequence_rows([96, 192, 384, 576], [4, 8, 16, 32], (224, 224))
    assert [r['long_sequence'] for r in rows] == [True, False, False, False]
    assert rows[0]['grid'] == '56×56' and rows[0]['ratio'] == pytest.approx(3136 / 576)


def test_odd_sizes_round_up_like_the_stride_two_convolutions():
    rows = ls.long_sequence_rows([16], [32], (33, 65))
    assert rows[0]['tokens'] == 2 * 3  # ceil(33/32) * ceil(65/32)
    assert ls.vit_rows((33, 65))[0]['tokens'] == 2 * 4  # floor: the patch embedding drops


def test_ratio_rounding_follows_the_paper():
    assert [ls.format_ratio(x) for x in (111.11, 13.89, 5.444, 0.296, 0.0139)] == \
        ['111.1', '13.9', '5.44', '0.30', '0.01']


@pytest.mark.parametrize('config,shape', [('mask_rcnn_mambaout_t.py', (800, 1280)),
                                          ('upernet_mambaout_t.py', (512, 2048))])
def test_config_default_shape_is_the_papers_test_resolution(config, shape):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', config))
    assert ls.config_test_shape(cfg) == shape


def test_hybrid_and_vmamba_geometry_read_from_the_model():
    dims, strides = ls.backbone_geometry(build_backbone_by_name('hybrid_test'))
    assert dims == [16, 24, 32, 48] and strides == [4, 8, 16, 32]
    dims, _ = ls.backbone_geometry(build_backbone_by_name('vmamba_tiny'))
    assert dims == [96, 192, 384, 768]


def test_spec_and_shape_errors():
    with pytest.raises(ValueError, match='valid names'):
        build_backbone_by_name('mambaout_huge')
    assert not is_backbone_name('configs/mask_rcnn_mambaout_t.py')
    assert ls.parse_shapes(['224', '224', '800x1280']) == [(224, 224), (800, 1280)]
    with pytest.raises(ValueError, match='no width'):
        ls.parse_shapes(['224'])


def test_cli_markdown_for_a_backbone_name():
    """A backbone name works without a config; --shape takes HxW; markdown is printed."""
    out = subprocess.run([sys.executable, TOOL, 'mambaout_test', '--shape', '224x224',
                          '--no-vit'], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert '| mambaout_test | 224×224 | 1 | 4 | 56×56 | 3136 | 16 | 96 | 32.7 | yes |' in out.stdout
    assert 'ViT-S' not in out.stdout


@pytest.mark.slow
def test_cli_json_from_a_detection_config():
    """The CLI reads the config's test resolution and prints the rows as JSON."""
    out = subprocess.run([sys.executable, TOOL, osp.join(REPO_ROOT, 'configs',
                                                         'mask_rcnn_mambaout_t.py'),
                          '--format', 'json'], capture_output=True, text=True, check=True,
                         cwd=REPO_ROOT)
    rows = json.loads(out.stdout)
    stages = [r for r in rows if r['stage'] != '-']
    assert [(r['H'], r['W']) for r in stages] == [(800, 1280)] * 4
    assert [r['tokens'] for r in stages] == [64000, 16000, 4000, 1000]
    assert [r['tokens'] for r in rows if r['model'] == 'ViT-S'] == [4000]
