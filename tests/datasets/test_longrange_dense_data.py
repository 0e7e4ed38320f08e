"""The dense arms' data: near and far groups, the same scenes at every size, ADE and COCO."""
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mambaout_dense.datasets.synthetic.longrange_dense import group_of, write_longrange_dense
from mambaout_dense.errors import UsageError


@pytest.fixture(scope='module')
def two_sizes(tmp_path_factory):
    root = tmp_path_factory.mktemp('lrd')
    kw = dict(groups={'near': 3, 'far': 8}, num_train=3, num_val=2, grid=16, seed=1)
    return (write_longrange_dense(str(root / 's64'), size=64, **kw),
            write_longrange_dense(str(root / 's128'), size=128, **kw))


def _coco(info, split='val'):
    with open(info[f'coco_{split}']) as f:
        return json.load(f)


def test_groups_are_named_in_files_and_coco_images(two_sizes):
    small, _ = two_sizes
    coco = _coco(small)
    assert [(img['distance_group'], img['distance']) for img in coco['images']] == \
        [('near', 3)] * 2 + [('far', 8)] * 2
    assert [group_of(img['file_name']) for img in coco['images']] == ['near'] * 2 + ['far'] * 2
    assert group_of('LR_00000001.jpg') is None and group_of('other.jpg') is None
    for img in coco['images']:
        assert osp.isfile(osp.join(small['root'], 'images', 'validation', img['file_name']))


def test_every_image_holds_one_target_of_each_colour(two_sizes):
    """Two instances per image with opposite classes: no image statistic labels a target."""
    for split in ('train', 'val'):
        coco = _coco(two_sizes[0], split)
        by_image = {}
        for ann in coco['annotations']:
            by_image.setdefault(ann['image_id'], []).append(ann['category_id'])
        assert len(by_image) == len(coco['images'])
        assert all(sorted(c) == [1, 2] for c in by_image.values())


def test_the_same_scenes_at_two_sizes(two_sizes):
    """Boxes scale exactly with the size, classes and label maps stay; only pixels change."""
    small, big = two_sizes
    a, b = _coco(small), _coco(big)
    assert [x['category_id'] for x in a['annotations']] == \
        [x['category_id'] for x in b['annotations']]
    np.testing.assert_array_equal(2 * np.array([x['bbox'] for x in a['annotations']]),
                                  np.array([x['bbox'] for x in b['annotations']]))
    name = a['images'][-1]['file_name'].replace('.jpg', '.png')
    la = np.array(Image.open(osp.join(small['root'], 'annotations', 'validation', name)))
    lb = np.array(Image.open(osp.join(big['root'], 'annotations', 'validation', name)))
    np.testing.assert_array_equal(np.kron(la, np.ones((2, 2), la.dtype)), lb)
    assert set(np.unique(la)) == {0, 1, 2} and small['patch'] == 4 and big['patch'] == 8


def test_the_ade_label_marks_exactly_the_coco_boxes(two_sizes):
    small = two_sizes[0]
    coco = _coco(small)
    img = coco['images'][0]
    label = np.array(Image.open(osp.join(small['root'], 'annotations', 'validation',
                                         img['file_name'].replace('.jpg', '.png'))))
    want = np.zeros_like(label)
    for ann in coco['annotations']:
        if ann['image_id'] == img['id']:
            x, y, w, h = map(int, ann['bbox'])
            want[y:y + h, x:x + w] = ann['category_id']
    np.testing.assert_array_equal(label, want)


def test_bad_arguments_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match='multiple of the scene grid'):
        write_longrange_dense(str(tmp_path / 'a'), size=100, grid=32)
    with pytest.raises(UsageError, match='lower-case letters'):
        write_longrange_dense(str(tmp_path / 'b'), groups={'far_1': 5}, grid=16, size=64)


def test_make_synthetic_writes_the_dense_set(tmp_path):
    import subprocess
    import sys
    tool = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools',
                    'make_synthetic.py')
    out = subprocess.run([sys.executable, tool, 'longrange-dense', '--out', str(tmp_path / 'd'),
                          '--train', '2', '--val', '1', '--grid', '16', '--size', '64', '--far',
                          '8'], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'wrote 6 64px images' in out.stdout
    with open(tmp_path / 'd' / 'annotations' / 'instances_validation.json') as f:
        assert [i['distance_group'] for i in json.load(f)['images']] == ['near', 'far']
