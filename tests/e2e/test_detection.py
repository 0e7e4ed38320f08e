"""End to end: Mask R-CNN MambaOut-Femto on a tiny synthetic COCO set through the tools.

train -> checkpoint -> ``tools/test.py`` (COCO bbox/segm AP, ``--out``, ``--show-dir``),
``tools/demo.py``, two CPU processes with ``tools/dist_train.sh`` (gloo), ``--resume`` with the
same LR schedule, and the errors a user sees for bad data. Every tool runs from a working
directory outside the repository.
"""
import json
import math
import os
import os.path as osp
import pickle
import shutil

import cv2
import numpy as np
import pytest

from .helpers import (
    DET_CONFIG,
    cfg_args,
    det_options,
    explain,
    free_port,
    make_coco,
    pngs,
    read_scalars,
    run_tool,
    train_lr,
)

METRICS = ('coco/bbox_mAP', 'coco/segm_mAP')
MAX_ITERS = 4


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory) -> str:
    return make_coco(str(tmp_path_factory.mktemp('coco') / 'synthetic_coco'))


@pytest.fixture(scope='module')
def trained(coco_root, tmp_path_factory) -> dict:
    """One uninterrupted 4-iteration run: checkpoints at 2 and 4, validation at 4."""
    work_dir = str(tmp_path_factory.mktemp('det_train') / 'work')
    cwd = str(tmp_path_factory.mktemp('det_cwd'))
    proc = run_tool('train.py', DET_CONFIG, '--work-dir', work_dir,
                    *cfg_args(det_options(coco_root, max_iters=MAX_ITERS)), cwd=cwd)
    assert proc.returncode == 0, explain(proc)
    return dict(work_dir=work_dir, proc=proc, root=coco_root)


def _assert_numbers(record: dict, keys=METRICS) -> None:
    for key in keys:
        assert key in record, f'{key} missing from {sorted(record)}'
        assert isinstance(record[key], float) and math.isfinite(record[key]), record[key]
        assert -1.0 <= record[key] <= 1.0


@pytest.mark.slow
def test_train_writes_checkpoints_and_validates_with_coco_metric(trained):
    work_dir = trained['work_dir']
    for it in (2, MAX_ITERS):
        assert osp.isfile(osp.join(work_dir, f'iter_{it}.pth')), os.listdir(work_dir)
    records = read_scalars(work_dir)
    assert sorted(train_lr(records)) == list(range(1, MAX_ITERS + 1))
    evals = [r for r in records if METRICS[0] in r]
    assert len(evals) == 1, records
    _assert_numbers(evals[0])
    assert 'coco/bbox_mAP' in trained['proc'].output


@pytest.mark.slow
def test_test_tool_prints_coco_ap_dumps_results_and_draws_png(trained, tmp_path):
    ckpt = osp.join(trained['work_dir'], f'iter_{MAX_ITERS}.pth')
    out, show, work = tmp_path / 'results.pkl', tmp_path / 'show', tmp_path / 'test_work'
    proc = run_tool('test.py', DET_CONFIG, ckpt, '--work-dir', work, '--out', out,
                    '--show-dir', show, *cfg_args(det_options(trained['root'])),
                    cwd=str(tmp_path))
    assert proc.returncode == 0, explain(proc)
    for key in METRICS:
        assert key in proc.output, explain(proc)
    assert 'bbox_mAP_copypaste' in proc.output and 'segm_mAP_copypaste' in proc.output

    logs = [osp.join(d, f) for d, _, fs in os.walk(work) for f in fs
            if f.endswith('.json') and f != 'scalars.json']
    assert len(logs) == 1, logs
    with open(logs[0]) as f:
        _assert_numbers(json.loads(f.readline()))

    with open(out, 'rb') as f:
        results = pickle.load(f)
    val_images = sorted(os.listdir(osp.join(trained['root'], 'val2017')))
    assert sorted(osp.basename(r['img_path']) for r in results) == val_images
    for res in results:
        pred = res['pred_instances']
        assert {'bboxes', 'scores', 'labels', 'masks'} <= set(pred)
        assert len(pred['bboxes']) == len(pred['scores']) == len(pred['masks'])

    drawn = pngs(str(show))
    assert [osp.basename(p) for p in drawn] == [
        osp.splitext(n)[0] + '.png' for n in val_images]
    img = cv2.imread(drawn[0], cv2.IMREAD_UNCHANGED)
    assert img is not None and img.ndim == 3 and img.shape[2] == 3


@pytest.mark.slow
def test_demo_draws_predictions_on_one_image(trained, tmp_path):
    image = osp.join(trained['root'], 'val2017', '000000000001.jpg')
    out = tmp_path / 'nested' / 'out.png'
    proc = run_tool('demo.py', image, DET_CONFIG, osp.join(trained['work_dir'], 'iter_4.pth'),
                    '--out', out, '--score-thr', '0', cwd=str(tmp_path))
    assert proc.returncode == 0, explain(proc)
    drawn = cv2.imread(str(out))
    src = cv2.imread(image)
    assert drawn is not None and drawn.shape == src.shape
    # with every detection drawn the overlay must differ from the input well beyond JPEG noise
    changed = np.abs(drawn.astype(int) - src.astype(int)).max(-1) > 40
    assert changed.mean() > 0.01, changed.mean()


@pytest.mark.slow
def test_resume_continues_from_checkpoint_with_the_same_lr(trained, tmp_path):
    """A run stopped right after its iteration-2 checkpoint, restarted with ``--resume``."""
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    # the stopped run's work dir: its only checkpoint and the pointer CheckpointHook writes
    ckpt = shutil.copy(osp.join(trained['work_dir'], 'iter_2.pth'), work_dir / 'iter_2.pth')
    (work_dir / 'last_checkpoint').write_text(str(ckpt))
    proc = run_tool('train.py', DET_CONFIG, '--work-dir', work_dir, '--resume',
                    *cfg_args(det_options(trained['root'], max_iters=MAX_ITERS)),
                    cwd=str(tmp_path))
    assert proc.returncode == 0, explain(proc)
    assert 'resumed epoch: 0, iter: 2' in proc.output, explain(proc)
    assert osp.isfile(work_dir / f'iter_{MAX_ITERS}.pth')

    resumed = train_lr(read_scalars(str(work_dir)))
    reference = train_lr(read_scalars(trained['work_dir']))
    assert sorted(resumed) == [3, 4], resumed
    assert reference[3] != reference[2]  # warm-up: the LR moves every iteration
    for it in (3, 4):
        assert resumed[it] == pytest.approx(reference[it], rel=1e-9), (it, resumed, reference)


@pytest.mark.slow
def test_dist_train_two_cpu_processes(coco_root, tmp_path):
    work_dir = tmp_path / 'work'
    opts = det_options(coco_root, max_iters=2, ckpt_interval=2, batch_size=1)
    proc = run_tool('dist_train.sh', DET_CONFIG, '2', '--work-dir', work_dir, *cfg_args(opts),
                    cwd=str(tmp_path), env=dict(PORT=str(free_port()), OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, explain(proc)
    assert 'Distributed launcher: pytorch' in proc.output, explain(proc)
    assert 'GPU number: 2' in proc.output, explain(proc)  # mmengine's name for world size
    assert osp.isfile(work_dir / 'iter_2.pth')
    records = read_scalars(str(work_dir))
    assert sorted(train_lr(records)) == [1, 2]
    evals = [r for r in records if METRICS[0] in r]
    assert len(evals) == 1
    _assert_numbers(evals[0])


# ----------------------------------------------------------------------------- bad input


def test_missing_data_root_names_path_and_generator(tmp_path):
    missing = str(tmp_path / 'no_such_coco')
    proc = run_tool('train.py', DET_CONFIG, '--work-dir', tmp_path / 'work',
                    *cfg_args(det_options(missing)), cwd=str(tmp_path))
    assert proc.returncode == 2, explain(proc)
    assert missing in proc.stderr, explain(proc)
    assert 'make_synthetic.py' in proc.stderr, explain(proc)
    assert 'Traceback' not in proc.stderr, explain(proc)


@pytest.mark.parametrize('damage', ['missing', 'unreadable'])
def test_bad_image_file_is_named(tmp_path, damage):
    root = make_coco(str(tmp_path / 'coco'), train=2, val=1)
    bad = osp.join(root, 'train2017', '000000000002.jpg')
    if damage == 'missing':
        os.remove(bad)
    else:
        with open(bad, 'wb') as f:
            f.write(b'not a jpeg')
    # batch 2 of a 2-image set: the first batch reads the damaged file
    proc = run_tool('train.py', DET_CONFIG, '--work-dir', tmp_path / 'work',
                    *cfg_args(det_options(root, max_iters=1, ckpt_interval=1)),
                    cwd=str(tmp_path))
    assert proc.returncode == 2, explain(proc)
    assert '000000000002.jpg' in proc.stderr and 'Traceback' not in proc.stderr, explain(proc)


def test_malformed_annotation_json_is_named(tmp_path):
    root = make_coco(str(tmp_path / 'coco'), train=2, val=1)
    ann = osp.join(root, 'annotations', 'instances_train2017.json')
    with open(ann) as f:
        text = f.read()
    with open(ann, 'w') as f:
        f.write(text[:len(text) // 2])  # truncated, as after an interrupted copy
    proc = run_tool('train.py', DET_CONFIG, '--work-dir', tmp_path / 'work',
                    *cfg_args(det_options(root, max_iters=1, ckpt_interval=1)),
                    cwd=str(tmp_path))
    assert proc.returncode == 2, explain(proc)
    assert ann in proc.stderr and 'not valid JSON' in proc.stderr, explain(proc)
    assert 'Traceback' not in proc.stderr, explain(proc)


@pytest.mark.slow
def test_images_without_annotations_skipped_in_training_harmless_in_eval(tmp_path):
    root = make_coco(str(tmp_path / 'coco'), train=8, val=4, empty_fraction=0.5)

    def annotated(split):
        with open(osp.join(root, 'annotations', f'instances_{split}2017.json')) as f:
            content = json.load(f)
        with_anns = {a['image_id'] for a in content['annotations']}
        return {i['file_name'] for i in content['images'] if i['id'] in with_anns}, \
            len(content['images'])

    train_files, n_train = annotated('train')
    val_files, n_val = annotated('val')
    assert 0 < len(train_files) < n_train and 0 < len(val_files) < n_val  # both kinds present

    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    cfg = Config.fromfile(DET_CONFIG)
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = root
    dataset = DATASETS.build(ds_cfg)
    listed = [osp.basename(dataset.get_data_info(i)['img_path']) for i in range(len(dataset))]
    assert sorted(listed) == sorted(train_files)

    work_dir = tmp_path / 'work'
    proc = run_tool('train.py', DET_CONFIG, '--work-dir', work_dir,
                    *cfg_args(det_options(root, max_iters=1, ckpt_interval=1)),
                    cwd=str(tmp_path))
    assert proc.returncode == 0, explain(proc)
    evals = [r for r in read_scalars(str(work_dir)) if METRICS[0] in r]
    assert len(evals) == 1
    _assert_numbers(evals[0])
