"""Every config in ``configs/`` loads, builds offline, wires its heads to the backbone, and the
paper-size models have the paper's parameter counts and FLOPs.

Parameter targets: MambaOut (Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?",
arXiv:2405.07992) Tables 3-4 and VMamba (Liu et al., arXiv:2401.10166) Tables 2-3.
"""
import glob
import json
import os.path as osp
import socket

import pytest
from mmengine.config import Config

from mambaout_dense.builder import build_model

from .helpers import REPO_ROOT, explain, run_tool

CONFIG_DIR = osp.join(REPO_ROOT, 'configs')
CONFIGS = sorted(osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, '*.py')))

#: config -> parameters in millions (each within 0.5 M)
PAPER_PARAMS_M = {
    'mask_rcnn_mambaout_t.py': 43, 'mask_rcnn_mambaout_s.py': 65, 'mask_rcnn_mambaout_b.py': 100,
    'mask_rcnn_mambaout_t_3x.py': 43, 'mask_rcnn_mambaout_s_3x.py': 65,
    'mask_rcnn_mambaout_b_3x.py': 100,
    'upernet_mambaout_t.py': 54, 'upernet_mambaout_s.py': 76, 'upernet_mambaout_b.py': 112,
    'mask_rcnn_vmamba_t.py': 50, 'mask_rcnn_vmamba_s.py': 70, 'mask_rcnn_vmamba_b.py': 108,
    'upernet_vmamba_t.py': 62, 'upernet_vmamba_s.py': 82, 'upernet_vmamba_b.py': 122,
}


class _NoNetwork(RuntimeError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection (a weight download, say) raises."""
    def refuse(*args, **kwargs):
        raise _NoNetwork(f'network access while building a model: {args}')
    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)


def test_paper_size_configs_exist():
    assert set(PAPER_PARAMS_M) <= set(CONFIGS), sorted(set(PAPER_PARAMS_M) - set(CONFIGS))


def _heads_in_channels(model) -> list:
    """(name, in_channels the head expects, backbone stage indices it reads) per consumer."""
    pairs = []
    if getattr(model, 'neck', None) is not None:
        pairs.append(('neck', list(model.neck.in_channels), None))
    for name in ('decode_head', 'auxiliary_head'):
        heads = getattr(model, name, None)
        if heads is None:
            continue
        for i, head in enumerate(heads if hasattr(heads, '__len__') else [heads]):
            in_ch = head.in_channels
            pairs.append((f'{name}[{i}]', list(in_ch) if isinstance(in_ch, (list, tuple))
                          else [in_ch], head.in_index))
    return pairs


@pytest.mark.parametrize('name', CONFIGS)
def test_config_loads_builds_offline_and_heads_match_backbone(name, no_network):
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    assert cfg.default_scope in ('mmdet', 'mmseg')
    model = build_model(cfg)
    out_channels = list(model.backbone.out_channels)
    consumers = _heads_in_channels(model)
    assert consumers, f'{name}: neither a neck nor a decode head'
    for what, in_channels, in_index in consumers:
        if in_index is None:  # the FPN reads every returned stage
            expected = out_channels
        elif isinstance(in_index, (list, tuple)):
            expected = [out_channels[i] for i in in_index]
        else:
            expected = [out_channels[in_index]]
        assert in_channels == expected, f'{name}: {what} in_channels {in_channels} != {expected}'
    if name in PAPER_PARAMS_M:
        params = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(params - PAPER_PARAMS_M[name]) <= 0.5, \
            f'{name}: {params:.2f} M parameters, paper {PAPER_PARAMS_M[name]} M'


@pytest.mark.slow
@pytest.mark.parametrize('name, gflops', [
    ('mask_rcnn_mambaout_t.py', 262.0),  # at 1280 x 800; we measure 262.5 G
    ('upernet_mambaout_t.py', 938.0),  # at 512 x 2048; we measure 939.0 G
])
def test_get_flops_matches_paper_at_default_shape(name, gflops, tmp_path):
    proc = run_tool(osp.join('analysis', 'get_flops.py'), osp.join(CONFIG_DIR, name), '--json',
                    cwd=str(tmp_path))
    assert proc.returncode == 0, explain(proc)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    shape = [1280, 800] if name.startswith('mask_rcnn') else [512, 2048]
    assert result['shape'] == shape
    assert result['flops'] / 1e9 == pytest.approx(gflops, rel=0.03), result
    assert result['params'] / 1e6 == pytest.approx(PAPER_PARAMS_M[name], abs=0.5), result
