"""The recipe sweep chooses on images held out from the training split, with configs that load."""
import copy
import json
import os.path as osp

import main_job
import main_job_sweep as sweep
import pytest
from mmengine.config import Config


@pytest.fixture
def tiny_root(tmp_path, monkeypatch):
    """A repo root whose quickstart data sets are tiny generated ones."""
    from mambaout_dense.datasets.synthetic.ade import generate_ade
    from mambaout_dense.datasets.synthetic.coco import generate_coco
    generate_coco(str(tmp_path / main_job.TASKS['det']['data']), num_train=10, num_val=2,
                  size=64)
    generate_ade(str(tmp_path / main_job.TASKS['seg']['data']), num_train=8, num_val=2, size=64)
    monkeypatch.setattr(sweep, 'ROOT', str(tmp_path))
    monkeypatch.setattr(sweep, 'HOLDOUT', {'det': 3, 'seg': 2})
    return tmp_path


def test_det_holdout_is_disjoint_and_complete(tiny_root):
    files = sweep.make_holdout('det')
    with open(osp.join(tiny_root, main_job.TASKS['det']['data'], 'annotations',
                       'instances_train2017.json')) as f:
        full = json.load(f)
    parts = {}
    for name, path in files.items():
        with open(path) as f:
            parts[name] = json.load(f)
    train_ids = {im['id'] for im in parts['sweep_train']['images']}
    held_ids = {im['id'] for im in parts['sweep_holdout']['images']}
    assert len(held_ids) == 3 and len(train_ids) == 7 and not train_ids & held_ids
    assert train_ids | held_ids == {im['id'] for im in full['images']}
    for part, ids in ((parts['sweep_train'], train_ids), (parts['sweep_holdout'], held_ids)):
        assert {a['image_id'] for a in part['annotations']} <= ids
    assert (len(parts['sweep_train']['annotations']) + len(parts['sweep_holdout']['annotations'])
            == len(full['annotations']))
    assert parts['sweep_holdout']['categories'] == full['categories']


def test_seg_holdout_lists_the_last_training_images(tiny_root):
    files = sweep.make_holdout('seg')
    read = {k: open(v).read().split() for k, v in files.items()}
    assert len(read['sweep_holdout']) == 2 and len(read['sweep_train']) == 6
    assert max(read['sweep_train']) < min(read['sweep_holdout'])


@pytest.mark.parametrize('task', sorted(main_job.TASKS))
def test_every_candidate_config_trains_on_the_split_and_never_on_val(task, tmp_path):
    base = sweep.CANDIDATES[task]['base'][1]
    for name, (_, text) in sweep.CANDIDATES[task].items():
        text = text if text is not None else base + sweep.STAGE2[name]
        path = sweep.candidate_config(task, text, 40, 20, str(tmp_path), name)
        cfg = Config.fromfile(path)
        assert cfg.train_cfg.max_iters == 40 and cfg.train_cfg.val_interval == 20
        assert cfg.param_scheduler[-1]['end'] == 40
        train_ds, val_ds = cfg.train_dataloader.dataset, cfg.val_dataloader.dataset
        assert 'sweep_train' in train_ds.ann_file and 'sweep_holdout' in val_ds.ann_file
        if task == 'det':
            assert val_ds.data_prefix.img == 'train2017/'
            assert cfg.val_evaluator.ann_file.endswith('instances_sweep_holdout.json')
        else:
            assert val_ds.data_prefix.img_path == 'images/training'
        assert cfg.train_dataloader.batch_size == (8 if name == 'batch8' else 4)
        if name == 'anchors':
            assert cfg.model.rpn_head.anchor_generator.scales == [4]
        if name == 'levels':
            assert cfg.model.roi_head.mask_roi_extractor.finest_scale == 28
        if name == 'things_x3':
            assert cfg.model.decode_head.loss_decode.class_weight == [1.0] * 6 + [3.0] * 2
            assert cfg.model.decode_head.loss_decode.type == 'mambaout_dense.CrossEntropyLoss'
            assert cfg.model.auxiliary_head.loss_decode.loss_weight == 0.4
        if name == 'ohem':
            assert cfg.model.decode_head.sampler.type == 'OHEMPixelSampler'
        if name == 'no_photo':
            assert 'PhotoMetricDistortion' not in str(train_ds.pipeline)
        lr = cfg.optim_wrapper.optimizer.lr
        assert lr == {'lr2e-3': 2e-3, 'lr4e-3': 4e-3}.get(name, 1e-3)


@pytest.mark.parametrize('task', sorted(main_job.TASKS))
def test_round2_candidates_change_one_thing_of_the_current_recipe(task, tmp_path):
    """Round 2 restates the recipe's schedule at the sweep's length and adds one change."""
    configs = {}
    for name, (_, text) in sweep.ROUND2[task].items():
        path = sweep.candidate_config(task, text, 40, 20, str(tmp_path), name, sweep.tag(2))
        assert path.endswith(f'sweep_{task}_r2_{name}.py')
        configs[name] = cfg = Config.fromfile(path)
        assert cfg.param_scheduler[-1]['end'] == 40 and cfg.train_cfg.val_interval == 20
        assert 'sweep_holdout' in cfg.val_dataloader.dataset.ann_file
        assert cfg.optim_wrapper.optimizer.lr == 1e-3
    current = configs.pop('current')
    for name, cfg in configs.items():
        changed = {k for k in ('model', 'train_dataloader') if cfg[k] != current[k]}
        assert changed, name
    if task == 'seg':
        for name, cfg in [('current', current), *configs.items()]:  # as in round 2, not later
            assert cfg.model.decode_head.loss_decode.type == 'mambaout_dense.CrossEntropyLoss'
            assert cfg.model.decode_head.loss_decode.class_weight[-2:] == [3.0, 3.0], name
        assert configs['head64'].model.decode_head.channels == 64
        assert current.model.decode_head.channels == 128
        assert 'RandomResize' not in str(configs['fixed_scale'].train_dataloader.dataset.pipeline)
        assert 'RandomResize' in str(current.train_dataloader.dataset.pipeline)
    else:
        assert configs['light'].model.train_cfg.rcnn.sampler.num == 64
        assert configs['gn'].model.neck.norm_cfg.type == 'GN'
        assert current.model.neck.out_channels == 128
        assert configs['fpn64'].model.neck.out_channels == 64
        assert configs['fpn64'].model.roi_head.mask_head.in_channels == 64


def _round_configs(rnd: int, task: str, tmp_path) -> dict:
    """Every candidate config of round ``rnd``, loaded, at a 40-iteration schedule."""
    return {name: Config.fromfile(sweep.candidate_config(task, text, 40, 20, str(tmp_path), name,
                                                         sweep.tag(rnd)))
            for name, (_, text) in sweep.ROUNDS[rnd][task].items()}


def _before_round4(model):
    """The quickstart's model as round 3 left it: the seg decode head's cross-entropy alone
    (round 4 added the strided Lovasz loss beside it)."""
    model = copy.deepcopy(model)
    losses = model.get('decode_head', {}).get('loss_decode')
    if isinstance(losses, list):
        assert [loss.type for loss in losses] == ['mambaout_dense.CrossEntropyLoss',
                                                  'mambaout_dense.LovaszLoss']
        model.decode_head.loss_decode = losses[0]
    return model


@pytest.mark.parametrize('task', sorted(main_job.TASKS))
def test_round3_candidates_change_one_thing_of_the_round2_recipe(task, tmp_path):
    """Round 3 restates the recipe round 2 left (what the quickstart config holds now)."""
    configs = _round_configs(3, task, tmp_path)
    quick = Config.fromfile(osp.join(main_job.ROOT, main_job.TASKS[task]['config']))
    current = configs.pop('current')
    assert current.model == _before_round4(quick.model)
    assert (current.train_dataloader.dataset.pipeline
            == quick.train_dataloader.dataset.pipeline)
    assert configs['lr2e-3'].optim_wrapper.optimizer.lr == 2e-3
    assert configs['lr2e-3'].model == current.model
    assert current.train_dataloader.batch_size == 4 and current.train_cfg.max_iters == 40
    if task == 'seg':
        assert current.val_evaluator.type == 'mambaout_dense.ClassIoUMetric'
        weights = configs['things_x6'].model.decode_head.loss_decode.class_weight
        assert weights == [1.0] * 6 + [6.0] * 2
        assert configs['things_x6'].model.auxiliary_head.loss_decode.class_weight == weights
        assert configs['box5'].model.decode_head.loss_decode.class_weight[-2:] == [5.0, 3.0]
        crop = configs['crop224']
        assert crop.model.data_preprocessor.size == (224, 224)
        assert crop.train_dataloader.dataset.pipeline[2]['crop_size'] == (224, 224)
        assert crop.test_dataloader == current.test_dataloader
        batch2 = configs['batch2']
        assert batch2.train_dataloader.batch_size == 2 and batch2.model == current.model
        assert batch2.train_cfg.max_iters == 80 and batch2.train_cfg.val_interval == 40
        assert batch2.param_scheduler[-1]['end'] == 80 and batch2.param_scheduler[0]['end'] == 200
    else:
        assert configs['mask4'].model.roi_head.mask_head.num_convs == 4
        assert current.model.roi_head.mask_head.num_convs == 2


def test_round_files_do_not_overwrite_round_1():
    assert sweep.tag(1) == '' and sweep.tag(2) == '_r2'
    assert set(sweep.ADOPTED) == set(sweep.ROUNDS)


def test_round4_seg_candidates_change_one_thing_of_the_round3_recipe(tmp_path):
    """Round 4's changes are statements on the restated recipe's ``model``: each keeps the rest."""
    configs = _round_configs(4, 'seg', tmp_path)
    quick = Config.fromfile(osp.join(main_job.ROOT, main_job.TASKS['seg']['config']))
    current = configs.pop('current')
    assert current.model == _before_round4(quick.model)
    # the quickstart config took lovasz_s4 (round 4's ADOPTED)
    assert configs['lovasz_s4'].model == quick.model
    cross_entropy = current.model.decode_head.loss_decode
    lovasz = configs['lovasz'].model.decode_head.loss_decode
    assert lovasz[0] == cross_entropy and lovasz[1].type == 'LovaszLoss'
    strided = configs['lovasz_s4'].model.decode_head.loss_decode
    assert strided[1].type == 'mambaout_dense.LovaszLoss' and strided[1].stride == 4
    assert dict(strided[1], type='LovaszLoss', stride=None) == dict(lovasz[1], stride=None)
    assert configs['ohem'].model.decode_head.sampler.type == 'OHEMPixelSampler'
    assert configs['aux1'].model.auxiliary_head.loss_decode.loss_weight == 1.0
    assert configs['no_aux'].model.auxiliary_head is None
    assert configs['no_dropout'].model.decode_head.dropout_ratio == 0.0
    for name, cfg in configs.items():
        assert cfg.model.decode_head.channels == 64, name
        assert cfg.train_dataloader == current.train_dataloader, name
        changed = [k for k in ('decode_head', 'auxiliary_head')
                   if cfg.model[k] != current.model[k]]
        assert changed, name
        assert cfg.model.backbone == current.model.backbone, name


def test_round5_seg_starts_from_round4s_adopted_recipe(tmp_path):
    """Round 5's ``current`` is round 4's adopted candidate, text for text (its stored run is
    reused); its candidates add mmengine's EMAHook and change nothing else."""
    assert sweep.ROUND5['seg']['current'][1] == sweep.ROUND4['seg']['lovasz_s4'][1]
    configs = _round_configs(5, 'seg', tmp_path)
    quick = Config.fromfile(osp.join(main_job.ROOT, main_job.TASKS['seg']['config']))
    current = configs.pop('current')
    assert current.model == quick.model
    for name, momentum in (('ema100', 0.01), ('ema300', 0.003)):
        cfg = configs[name]
        assert cfg.model == current.model and cfg.train_dataloader == current.train_dataloader
        assert cfg.custom_hooks[:-1] == current.custom_hooks  # the quickstart's own, kept
        assert (cfg.custom_hooks[-1].type, cfg.custom_hooks[-1].momentum) == ('EMAHook', momentum)
