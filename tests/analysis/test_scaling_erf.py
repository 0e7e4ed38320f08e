"""Scaling measurements and the effective receptive field, on tiny sizes and test archs."""
import csv
import json
import math
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from mambaout_dense.analysis import erf
from mambaout_dense.analysis import scaling as sc
from mambaout_dense.analysis.scaling_report import plot_scaling
from mambaout_dense.analysis.tables import write_csv
from mambaout_dense.checkpoint import CheckpointError
from mambaout_dense.models import HybridBackbone, MambaOut

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO_ROOT, 'tools', 'analysis')


@pytest.fixture
def one_thread():
    """Timing on a busy 2-core machine: one thread avoids OpenMP oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- scaling
def test_scaling_rows_csv_and_plot(tmp_path, one_thread):
    """Every (curve, size) gives a row with latency and fork-measured CPU memory; files exist."""
    cases = sc.default_cases(quick=True, include=['mambaout', 'gated cnn', 'ss2d'])
    assert [c.name for c in cases] == ['MambaOut-test', 'Gated CNN block (D=16)', 'SS2D (D=16)']
    rows = sc.run_scaling(cases, [(64, 64), (96, 96)], repeat=1, progress=False)
    assert len(rows) == 6 and all(r['status'] == 'ok' for r in rows)
    assert all(r['latency_ms'] > 0 and r['memory_mb'] >= 0 for r in rows)
    assert [r['tokens'] for r in rows if r['kind'] == 'block'] == [256, 576] * 2  # (H/4)(W/4)
    assert [r['tokens'] for r in rows if r['kind'] == 'backbone'] == [16, 36]  # (H/16)(W/16)
    write_csv(rows, str(tmp_path / 'scaling.csv'))
    plot_scaling(rows, str(tmp_path / 'scaling.png'))
    with open(tmp_path / 'scaling.csv') as f:
        assert len(list(csv.DictReader(f))) == 6
    assert (tmp_path / 'scaling.png').stat().st_size > 10_000


def test_skip_rules_record_skipped_cases(one_thread):
    """A case over the memory estimate, and a size whose extrapolated time is too long, are
    recorded as skipped instead of being run."""
    cases = sc.default_cases(quick=True, include=['global attention (d'])
    rows = sc.run_scaling(cases, [(64, 64), (2048, 2048)], repeat=1, progress=False,
                          max_memory_gb=1.0, measure_memory=False)
    assert rows[0]['status'] == 'ok'
    assert rows[1]['status'] == 'skipped' and 'GiB' in rows[1]['note']  # 262144 tokens
    rows = sc.run_scaling(cases, [(64, 64), (128, 128)], repeat=1, progress=False,
                          max_seconds=1e-9, measure_memory=False)
    assert rows[1]['status'] == 'skipped' and 'extrapolated' in rows[1]['note']


def test_fit_exponents_recovers_the_growth():
    rows = [dict(device='cpu', kind='block', curve=name, tokens=L, latency_ms=c * L**p,
                 status='ok') for name, c, p in (('quad', 1e-3, 2.0), ('lin', 0.5, 1.0))
            for L in (100, 400, 1600, 6400)]
    fits = {f['curve']: f['exponent'] for f in sc.fit_exponents(rows)}
    assert fits['quad'] == pytest.approx(2.0) and fits['lin'] == pytest.approx(1.0)


@pytest.mark.slow
def test_scaling_cli_writes_its_files(tmp_path):
    out = subprocess.run(
        [sys.executable, osp.join(TOOLS, 'scaling.py'), '--quick', '--only', 'mambaout', 'gated',
         '--sizes', '64', '96x64', '--out', str(tmp_path), '--threads', '1', '--no-progress'],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert 'growth exponent' in out.stdout and 'MambaOut-test' in out.stdout
    for name in ('scaling.csv', 'scaling_fit.csv', 'scaling.md', 'scaling.png'):
        assert (tmp_path / name).is_file(), name
    with open(tmp_path / 'scaling_fit.csv') as f:
        fits = list(csv.DictReader(f))
    assert {f['curve'] for f in fits} == {'MambaOut-test', 'Gated CNN block (D=16)'}
    assert all(math.isfinite(float(f['exponent'])) for f in fits)


# ----------------------------------------------------------------------------- ERF
def test_mass_radii_of_known_maps():
    delta = np.zeros((33, 33))
    delta[16, 16] = 1.0
    assert erf.mass_radii(delta, (16, 16)) == {0.5: 0.0, 0.9: 0.0}
    yy, xx = np.mgrid[0:401, 0:401]
    disc = (np.hypot(yy - 200, xx - 200) <= 100).astype(float)  # uniform disc of radius 100
    radii = erf.mass_radii(disc, (200, 200))
    assert radii[0.5] == pytest.approx(100 / math.sqrt(2), abs=1.0)
    assert radii[0.9] == pytest.approx(100 * math.sqrt(0.9), abs=1.0)
    assert math.isnan(erf.mass_radii(np.zeros((4, 4)), (2, 2))[0.5])


class _Conv3(torch.nn.Module):
    """A 3x3 conv: its ERF is the 3x3 neighbourhood of the centre."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return (self.conv(x), )


def test_erf_of_a_single_conv_is_its_kernel_footprint():
    torch.manual_seed(0)
    maps = erf.erf_maps(_Conv3(), erf.synthetic_images(3, (15, 15), kind='noise'))
    nonzero = np.argwhere(maps[0]['map'] > 0)
    assert nonzero.min(0).tolist() == [6, 6] and nonzero.max(0).tolist() == [8, 8]
    assert maps[0]['centre'] == pytest.approx((7.0, 7.0), abs=0.3)


def test_erf_grows_with_stage_and_writes_files(tmp_path, one_thread):
    model = HybridBackbone('test')
    model.init_weights()
    images = erf.synthetic_images(2, (64, 64), seed=0, kind='scene')
    assert images.shape == (2, 3, 64, 64) and abs(float(images.mean())) < 3
    result = erf.run_erf(model, images, str(tmp_path), 'hybrid_test')
    r90 = [r['r90'] for r in result['rows']]
    assert [r['stage'] for r in result['rows']] == [1, 2, 3, 4]
    assert r90[-1] > r90[0] > 0
    for path in result['files']:
        assert osp.isfile(path)
    with open(tmp_path / 'erf_hybrid_test.json') as f:
        assert json.load(f)['stages'][0]['stride'] == 4


def test_checkpoint_loading_is_strict(tmp_path):
    """Detector checkpoints load through the backbone. prefix; a missing key raises."""
    src = MambaOut('test')
    with torch.no_grad():
        for p in src.parameters():
            p.uniform_(-1, 1)
    state = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    state['neck.conv.weight'] = torch.zeros(1)
    torch.save({'state_dict': state, 'meta': {}}, tmp_path / 'det.pth')
    dst = MambaOut('test')
    report = erf.load_backbone_checkpoint(dst, str(tmp_path / 'det.pth'))
    assert report['source'] == 'backbone.' and report['loaded'] == len(src.state_dict())
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)
    del state['backbone.stages.0.0.fc1.weight']
    torch.save({'state_dict': state}, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match='missing'):
        erf.load_backbone_checkpoint(MambaOut('test'), str(tmp_path / 'bad.pth'))


def test_dataset_images_come_from_the_configs_validation_split(tmp_path):
    """--from-dataset: the val images of the config, RGB, resized and normalised."""
    from mmengine.config import Config

    from mambaout_dense.datasets.synthetic.longrange import generate_longrange
    info = generate_longrange(str(tmp_path / 'lr'), 1, 2, 64, seed=0)
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'upernet_longrange_femto_synthetic.py'))
    cfg.val_dataloader.dataset.data_root = info['root']
    images = erf.dataset_images(cfg, 5, (32, 48))
    assert images.shape == (2, 3, 32, 48)
    # an independent reference: read with OpenCV (BGR), flip to RGB, resize, normalise
    import cv2
    bgr = cv2.imread(osp.join(info['val_img'], 'LR_val_00000001.jpg'))
    rgb = torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1)[None].float()
    ref = torch.nn.functional.interpolate(rgb, size=(32, 48), mode='bilinear',
                                          align_corners=False)
    mean, std, _ = erf.preprocessor_stats(cfg)
    ref = (ref - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(images[:1], ref)


@pytest.mark.slow
def test_erf_cli_with_a_config_and_a_checkpoint(tmp_path):
    model = HybridBackbone('test')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in model.state_dict().items()}},
               tmp_path / 'ckpt.pth')
    out = subprocess.run(
        [sys.executable, osp.join(TOOLS, 'erf.py'),
         osp.join(REPO_ROOT, 'configs', 'upernet_hybrid_t.py'), '--cfg-options',
         'model.backbone.arch=test', '--checkpoint', str(tmp_path / 'ckpt.pth'), '--shape', '64',
         '64', '--images', '2', '--out', str(tmp_path), '--threads', '1'],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert '| upernet_hybrid_t | 64×64 | 4 | 32 |' in out.stdout
    with open(tmp_path / 'erf_upernet_hybrid_t.json') as f:
        summary = json.load(f)
    assert summary['weights'].endswith('ckpt.pth') and summary['checkpoint_layout'] == 'backbone.'
    assert (tmp_path / 'erf_upernet_hybrid_t.png').is_file()
