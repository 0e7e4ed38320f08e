"""Bad input tried as a new user would: each case ends in one clear message, exit status 2 and
no traceback, and loses nothing.

- files that are not checkpoints at all (plain text, an HTML error page, a Git LFS pointer,
  random bytes) given to ``tools/test.py``, ``tools/demo.py``, ``tools/train.py --resume`` and a
  backbone ``init_cfg`` Pretrained;
- a validation annotation with an empty or absent ``segmentation`` (the metric scores the
  ground truth the dataset kept);
- ``tools/test.py --work-dir`` naming a file;
- ``train_dataloader.batch_size=1`` with BatchNorm in a head;
- no tool prints a warning the user cannot act on.
"""
import json
import os
import os.path as osp
import subprocess

import numpy as np
import pytest
import torch

from mambaout_dense.checkpoint import safe_load
from mambaout_dense.errors import CheckpointError

from .helpers import (
    DET_CONFIG,
    SEG_CONFIG,
    load_tool,
    make_ade,
    make_coco,
    run_tool,
    tool_cmd,
    usage_error,
    write_config,
)

NOT_CHECKPOINTS = {
    'text': (b'these are not the weights you are looking for\n', 'a text file'),
    'html': (b'<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n',
             'an HTML page'),
    'lfs': (b'version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 107\n',
            'Git LFS pointer'),
    'random': (bytes(np.random.default_rng(0).integers(1, 256, 4096, dtype=np.uint8)),
               'neither a zip archive nor a pickle'),
}


@pytest.fixture
def not_checkpoints(tmp_path):
    files = {}
    for kind, (content, _) in NOT_CHECKPOINTS.items():
        path = tmp_path / f'{kind}.pth'
        path.write_bytes(content)
        files[kind] = str(path)
    return files


@pytest.mark.parametrize('kind', sorted(NOT_CHECKPOINTS))
def test_safe_load_says_the_file_is_not_a_checkpoint_and_what_it_is(not_checkpoints, kind):
    with pytest.raises(CheckpointError) as info:
        safe_load(not_checkpoints[kind])
    message = str(info.value)
    assert f"{not_checkpoints[kind]!r} is not a PyTorch checkpoint" in message
    assert NOT_CHECKPOINTS[kind][1] in message
    assert 'arbitrary code' not in message  # not the wrong cause


def test_a_pickle_that_is_corrupt_is_not_called_malicious(tmp_path):
    path = tmp_path / 'corrupt.pth'
    path.write_bytes(b'\x80\x02' + bytes(range(7, 250)))
    with pytest.raises(CheckpointError) as info:
        safe_load(str(path))
    assert 'arbitrary code' not in str(info.value)


def test_test_tool_with_a_text_file(not_checkpoints, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    usage_error(load_tool('test.py').main, [DET_CONFIG, not_checkpoints['text']], capsys,
                'is not a PyTorch checkpoint', 'a text file')


def test_demo_tool_with_an_html_page(not_checkpoints, tmp_path, capsys):
    import cv2
    image = str(tmp_path / 'image.png')
    cv2.imwrite(image, np.zeros((32, 32, 3), np.uint8))
    out = tmp_path / 'out.png'
    usage_error(load_tool('demo.py').main,
                [image, SEG_CONFIG, not_checkpoints['html'], '--out', str(out)], capsys,
                'is not a PyTorch checkpoint', 'an HTML page')
    assert not out.exists()


def test_train_tool_resume_from_a_git_lfs_pointer(not_checkpoints, tmp_path, capsys,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    usage_error(load_tool('train.py').main,
                [DET_CONFIG, '--work-dir', str(tmp_path / 'w'), '--resume', not_checkpoints['lfs']],
                capsys, 'is not a PyTorch checkpoint', 'git lfs pull')


def _run_clean_error(proc, *expected):
    assert proc.returncode == 2, proc.output[-4000:]
    assert 'Traceback' not in proc.output, proc.output[-4000:]
    for text in expected:
        assert text in proc.stderr, proc.output[-4000:]


def test_backbone_pretrained_with_random_bytes_through_train_tool(not_checkpoints, tmp_path):
    root = make_coco(str(tmp_path / 'coco'))
    config = write_config(str(tmp_path / 'cfg'), 'det', root)
    work = tmp_path / 'w'
    proc = run_tool('train.py', config, '--work-dir', str(work), '--cfg-options',
                    '+model.backbone.init_cfg.type=Pretrained',
                    f"+model.backbone.init_cfg.checkpoint={not_checkpoints['random']}",
                    cwd=str(tmp_path))
    _run_clean_error(proc, 'is not a PyTorch checkpoint', not_checkpoints['random'])
    assert not [n for n in os.listdir(work) if n.endswith('.pth')]  # nothing trained on random


def test_test_tool_work_dir_that_is_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': {}}, ckpt)
    taken = tmp_path / 'results.txt'
    taken.write_text('keep me')
    usage_error(load_tool('test.py').main, [DET_CONFIG, str(ckpt), '--work-dir', str(taken)],
                capsys, f"--work-dir {str(taken)!r} is a file")
    assert taken.read_text() == 'keep me'


def test_batch_size_one_with_batchnorm_in_a_head_names_the_setting(tmp_path):
    root = make_ade(str(tmp_path / 'ade'))
    config = write_config(str(tmp_path / 'cfg'), 'seg', root)
    proc = run_tool('train.py', config, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                    'train_dataloader.batch_size=1', cwd=str(tmp_path))
    _run_clean_error(proc, 'train_dataloader.batch_size', 'BatchNorm')


def _perfect_predictions(ann: dict, keep_ids: set) -> list:
    """One data sample per image whose predictions equal the kept ground truth."""
    from pycocotools import mask as mask_utils
    samples = []
    for img in ann['images']:
        h, w = img['height'], img['width']
        gts = [a for a in ann['annotations'] if a['image_id'] == img['id'] and a['id'] in keep_ids]
        boxes, masks, labels = [], [], []
        for a in gts:
            x, y, bw, bh = a['bbox']
            boxes.append([x, y, x + bw, y + bh])
            seg = a['segmentation']
            if isinstance(seg, list):  # polygons
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            elif isinstance(seg['counts'], list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(seg, h, w)
            else:  # compressed RLE, as the synthetic generator writes
                rle = dict(seg, counts=seg['counts'].encode())
            masks.append(mask_utils.decode(rle).astype(bool))
            labels.append(a['category_id'] - 1)
        samples.append(dict(
            img_id=img['id'], ori_shape=(h, w),
            pred_instances=dict(
                bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                scores=torch.ones(len(gts)), labels=torch.tensor(labels, dtype=torch.long),
                masks=torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, h, w,
                                                                                  dtype=bool))))
    return samples


def test_metric_scores_the_ground_truth_the_dataset_kept(tmp_path):
    """Validation annotations with an empty and an absent segmentation are skipped by the dataset
    (masks are loaded); the metric skips them too instead of crashing in pycocotools."""
    from mambaout_dense.datasets.synthetic import COCO_CLASSES
    from mambaout_dense.evaluation.coco_metric import CheckedCocoMetric
    root = make_coco(str(tmp_path / 'coco'))
    path = osp.join(root, 'annotations', 'instances_val2017.json')
    with open(path) as f:
        ann = json.load(f)
    ann['annotations'][0]['segmentation'] = []
    del ann['annotations'][1]['segmentation']
    with open(path, 'w') as f:
        json.dump(ann, f)
    keep = {a['id'] for a in ann['annotations'][2:]}
    metric = CheckedCocoMetric(ann_file=path, metric=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=COCO_CLASSES)
    metric.process({}, _perfect_predictions(ann, keep))
    results = metric.evaluate(len(ann['images']))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/segm_mAP'] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# Every tool, run as a user runs it (no PYTHONWARNINGS): no warning the user cannot act on
# --------------------------------------------------------------------------------------------
def _run_as_user(script: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONWARNINGS', 'PYTHONPATH')}
    env.setdefault('OMP_NUM_THREADS', '2')
    proc = subprocess.run(tool_cmd(script, *args), cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    proc.output = proc.stdout + proc.stderr
    return proc


def _noise(proc: subprocess.CompletedProcess) -> list:
    """Python warnings on stderr and mmengine log records of level WARNING (stdout)."""
    return ([line for line in proc.stderr.splitlines() if 'Warning' in line or 'warn(' in line]
            + [line for line in proc.output.splitlines() if ' - WARNING - ' in line])


@pytest.fixture(scope='module')
def user_runs(tmp_path_factory):
    """Tiny det and seg sets and one training run of each (1 iteration, validated), as a user
    runs tools/train.py; later tools use their checkpoints."""
    from e2e.helpers import det_options, seg_options
    root = tmp_path_factory.mktemp('user')
    coco, ade = make_coco(str(root / 'coco')), make_ade(str(root / 'ade'))
    image = str(root / 'image.png')
    import cv2
    cv2.imwrite(image, (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    runs = dict(root=str(root), image=image,
                det=(DET_CONFIG, det_options(coco, max_iters=1)),
                seg=(SEG_CONFIG, seg_options(ade, max_iters=1)))
    for task in ('det', 'seg'):
        config, options = runs[task]
        runs[f'train {task}'] = _run_as_user('train.py', config, '--work-dir',
                                             str(root / task), '--cfg-options', *options,
                                             cwd=str(root))
    return runs


def _tool_run(user_runs, tool: str) -> subprocess.CompletedProcess:
    root, image = user_runs['root'], user_runs['image']
    if tool.startswith('train'):
        return user_runs[tool]
    task = tool.split()[-1]
    config, options = user_runs.get(task, (None, None))
    ckpt = osp.join(root, task, 'iter_1.pth')
    if tool.startswith('test'):
        return _run_as_user('test.py', config, ckpt, '--work-dir', osp.join(root, 'test_' + task),
                            '--cfg-options', *options, cwd=root)
    if tool.startswith('demo'):
        return _run_as_user('demo.py', image, config, ckpt, '--out',
                            osp.join(root, f'demo_{task}.png'), cwd=root)
    analysis = {
        'get_flops': ('analysis/get_flops.py', DET_CONFIG, '--shape', '128', '128'),
        'long_sequence': ('analysis/long_sequence.py', SEG_CONFIG),
        'erf': ('analysis/erf.py', 'mambaout_test', '--images', '1', '--shape', '64', '64',
                '--out', osp.join(root, 'erf')),
        'scaling': ('analysis/scaling.py', '--quick', '--only', 'mambaout', '--sizes', '64',
                    '--no-progress', '--out', osp.join(root, 'scaling')),
        'make_synthetic': ('make_synthetic.py', 'ade', '--out', osp.join(root, 'more_ade'),
                           '--train', '2', '--val', '1', '--size', '64'),
    }
    return _run_as_user(*analysis[tool], cwd=root)


@pytest.mark.slow
@pytest.mark.parametrize('tool', ['train det', 'train seg', 'test det', 'test seg', 'demo det',
                                  'demo seg', 'get_flops', 'long_sequence', 'erf', 'scaling',
                                  'make_synthetic'])
def test_no_tool_prints_a_warning_the_user_cannot_act_on(user_runs, tool):
    """Each tool as a user runs it: exit 0, and neither a Python warning on stderr nor a
    WARNING record in the log (mmengine's FileClient/HardDiskBackend deprecations, mmseg's loss
    and metric warnings, the visualiser's backend warning are silenced where they arise)."""
    proc = _tool_run(user_runs, tool)
    assert proc.returncode == 0, proc.output[-3000:]
    assert 'pkg_resources' not in proc.output, proc.output[-3000:]
    assert not _noise(proc), '\n'.join(_noise(proc))
