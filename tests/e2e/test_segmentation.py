"""End to end: UperNet MambaOut-Femto on a tiny synthetic ADE20K-format set through the tools.

train -> checkpoint -> ``tools/test.py`` single-scale (mIoU, per-class IoU table, ``--show-dir``
colour overlays, ``--out``) and ``--tta`` (multi-scale + flip), and the errors a user sees for
bad data. Every tool runs from a working directory outside the repository.
"""
import glob
import json
import os
import os.path as osp
import pickle

import cv2
import numpy as np
import pytest

from mambaout_dense.datasets import ADE_CLASSES

from .helpers import (
    SEG_CONFIG,
    cfg_args,
    explain,
    free_port,
    make_ade,
    pngs,
    read_scalars,
    run_tool,
    seg_options,
    train_lr,
)

MAX_ITERS = 2


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory) -> str:
    return make_ade(str(tmp_path_factory.mktemp('ade') / 'synthetic_ade'), train=4, val=2)


@pytest.fixture(scope='module')
def trained(ade_root, tmp_path_factory) -> dict:
    """One 2-iteration run with a checkpoint and validation at the end."""
    work_dir = str(tmp_path_factory.mktemp('seg_train') / 'work')
    cwd = str(tmp_path_factory.mktemp('seg_cwd'))
    proc = run_tool('train.py', SEG_CONFIG, '--work-dir', work_dir,
                    *cfg_args(seg_options(ade_root, max_iters=MAX_ITERS)), cwd=cwd)
    assert proc.returncode == 0, explain(proc)
    return dict(work_dir=work_dir, root=ade_root,
                ckpt=osp.join(work_dir, f'iter_{MAX_ITERS}.pth'))


def _metrics(work_dir) -> dict:
    logs = [p for p in glob.glob(osp.join(str(work_dir), '*', '*.json'))]
    assert len(logs) == 1, logs
    with open(logs[0]) as f:
        return json.loads(f.readline())


def _assert_miou(record: dict) -> None:
    assert 'mIoU' in record, sorted(record)
    assert isinstance(record['mIoU'], float) and 0.0 <= record['mIoU'] <= 100.0


@pytest.mark.slow
def test_train_writes_checkpoint_and_validates_miou(trained):
    assert osp.isfile(trained['ckpt'])
    records = read_scalars(trained['work_dir'])
    assert sorted(train_lr(records)) == list(range(1, MAX_ITERS + 1))
    evals = [r for r in records if 'mIoU' in r]
    assert len(evals) == 1, records
    _assert_miou(evals[0])
    assert {f'IoU.{c}' for c in ('wall', 'box', 'ball')} <= set(evals[0]), sorted(evals[0])


@pytest.mark.slow
def test_single_scale_test_prints_class_table_dumps_and_draws(trained, tmp_path):
    show, out, work = tmp_path / 'show', tmp_path / 'preds.pkl', tmp_path / 'work'
    proc = run_tool('test.py', SEG_CONFIG, trained['ckpt'], '--work-dir', work,
                    '--show-dir', show, '--out', out,
                    *cfg_args(seg_options(trained['root'])), cwd=str(tmp_path))
    assert proc.returncode == 0, explain(proc)
    _assert_miou(_metrics(work))
    assert 'per class results' in proc.output, explain(proc)
    table_rows = {line.split('|')[1].strip() for line in proc.output.splitlines()
                  if line.startswith('|') and line.count('|') >= 4}
    assert set(ADE_CLASSES) <= table_rows, table_rows

    val_images = sorted(os.listdir(osp.join(trained['root'], 'images', 'validation')))
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert sorted(osp.basename(p['img_path']) for p in preds) == val_images

    drawn = pngs(str(show))
    assert [osp.basename(p) for p in drawn] == [osp.splitext(n)[0] + '.png' for n in val_images]
    overlay = cv2.imread(drawn[0])
    image = cv2.imread(osp.join(trained['root'], 'images', 'validation', val_images[0]))
    assert overlay is not None and overlay.shape[2] == 3
    # the prediction is blended in: an overlay of the image, not the image itself
    assert overlay.shape[0] == image.shape[0]
    assert np.abs(overlay[:, :image.shape[1]].astype(int) - image.astype(int)).mean() > 5


@pytest.mark.slow
def test_tta_test_runs_multi_scale_flip_and_reports_miou(trained, tmp_path):
    work = tmp_path / 'work'
    proc = run_tool('test.py', SEG_CONFIG, trained['ckpt'], '--tta', '--work-dir', work,
                    *cfg_args(seg_options(trained['root'])), cwd=str(tmp_path))
    assert proc.returncode == 0, explain(proc)
    _assert_miou(_metrics(work))
    (dumped, ) = glob.glob(osp.join(str(work), '*.py'))
    with open(dumped) as f:
        text = f.read()
    assert "type='SegTTAModel'" in text and "type='TestTimeAug'" in text


@pytest.mark.slow
def test_dist_test_two_cpu_processes(trained, tmp_path):
    work = tmp_path / 'work'
    proc = run_tool('dist_test.sh', SEG_CONFIG, trained['ckpt'], '2', '--work-dir', work,
                    *cfg_args(seg_options(trained['root'])), cwd=str(tmp_path),
                    env=dict(PORT=str(free_port()), OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, explain(proc)
    assert 'GPU number: 2' in proc.output, explain(proc)  # mmengine's name for world size
    _assert_miou(_metrics(work))


@pytest.mark.slow
def test_demo_draws_segmentation_on_one_image(trained, tmp_path):
    image = osp.join(trained['root'], 'images', 'validation', 'ADE_val_00000001.jpg')
    out = tmp_path / 'out.png'
    proc = run_tool('demo.py', image, SEG_CONFIG, trained['ckpt'], '--out', out,
                    cwd=str(tmp_path))
    assert proc.returncode == 0, explain(proc)
    drawn, src = cv2.imread(str(out)), cv2.imread(image)
    assert drawn is not None and drawn.shape == src.shape
    assert np.abs(drawn.astype(int) - src.astype(int)).mean() > 5  # the class colours


# ----------------------------------------------------------------------------- bad input


def _train_tiny(root, tmp_path) -> 'subprocess.CompletedProcess':  # noqa: F821
    return run_tool('train.py', SEG_CONFIG, '--work-dir', tmp_path / 'work',
                    *cfg_args(seg_options(root, max_iters=1, ckpt_interval=1)),
                    cwd=str(tmp_path))


def test_missing_folder_is_named(tmp_path):
    root = make_ade(str(tmp_path / 'ade'), train=2, val=1)
    missing = osp.join(root, 'annotations', 'validation')  # train.py checks val data up front
    for name in os.listdir(missing):
        os.remove(osp.join(missing, name))
    os.rmdir(missing)
    proc = _train_tiny(root, tmp_path)
    assert proc.returncode == 2, explain(proc)
    assert missing in proc.stderr and 'make_synthetic.py' in proc.stderr, explain(proc)
    assert 'Traceback' not in proc.stderr, explain(proc)


@pytest.mark.slow
def test_label_value_outside_class_range_is_named(tmp_path):
    root = make_ade(str(tmp_path / 'ade'), train=2, val=1)
    label_path = osp.join(root, 'annotations', 'training', 'ADE_train_00000002.png')
    label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
    label[5:9, 5:9] = 200  # ADE20K label ids are 0..150
    cv2.imwrite(label_path, label)
    proc = _train_tiny(root, tmp_path)
    assert proc.returncode == 2, explain(proc)
    assert 'ADE_train_00000002.png' in proc.stderr and '200' in proc.stderr, explain(proc)
    assert 'Traceback' not in proc.stderr, explain(proc)


@pytest.mark.slow
def test_image_label_size_mismatch_names_the_pair(tmp_path):
    root = make_ade(str(tmp_path / 'ade'), train=2, val=1)
    label_path = osp.join(root, 'annotations', 'training', 'ADE_train_00000001.png')
    label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
    cv2.imwrite(label_path, cv2.resize(label, (96, 96), interpolation=cv2.INTER_NEAREST))
    proc = _train_tiny(root, tmp_path)
    assert proc.returncode == 2, explain(proc)
    assert 'ADE_train_00000001.png' in proc.stderr, explain(proc)
    assert 'ADE_train_00000001.jpg' in proc.stderr, explain(proc)
    assert 'Traceback' not in proc.stderr, explain(proc)
