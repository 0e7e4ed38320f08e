#!/usr/bin/env python
"""The main jobs' recipe, chosen by measurement: candidate recipes on a held-out training split.

Each candidate is the quickstart config (``benchmarks/main_job.py``'s ``TASKS``) with a few
settings overridden, trained through ``tools/train.py`` on a shortened schedule and scored every
``val_interval`` iterations with the task's own metric (mmdet's COCO metric, mmseg's mIoU) on a
split **held out from the training images**: the last 200 of the 2000 (det) or the last 100 of
the 1000 (seg) training images. The validation set is never used for choosing. The candidates
are tried in stages (learning rate first, then the others on the best rate); each stage's winner
is chosen by the score at the end of its schedule, and cost by training seconds per iteration
measured in the same sweep.

Writes ``docs/main_job/sweep_<task>.json`` (every candidate's overrides, curve, seconds per
iteration and commit) and ``docs/main_job/sweep_<task>.png``; the table goes into
``docs/main_job/sweep.md`` between this task's markers. Finished candidates are skipped, so an
interrupted sweep resumes.

    python benchmarks/main_job_sweep.py --task det [--threads 1] [--only lr2e-3 ...]
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap
from typing import Dict, List, Optional

from main_job import ROOT, TASKS, ensure_data, parse_curve, train

#: Classes whose IoU the report shows beside the means (seg: the two "thing" classes).
THING_CLASSES = {'seg': ('box', 'ball')}
#: Held-out images at the end of each training split (by file name order).
HOLDOUT = {'det': 200, 'seg': 100}

#: Candidates per task: name -> (what changes, config text appended to a config that inherits
#: the quickstart config, with ``{iters}`` the sweep's schedule length). ``base`` is the recipe
#: the quickstart had before the sweep.
_COSINE = '''
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end={warmup}),
    dict(type='CosineAnnealingLR', T_max={iters} - {warmup}, eta_min=1e-5, by_epoch=False,
         begin={warmup}, end={iters}),
]
'''
_POLY = '''
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end={warmup}),
    dict(type='PolyLR', eta_min=1e-5, power=1.0, begin={warmup}, end={iters}, by_epoch=False),
]
'''
_LR = "optim_wrapper = dict(optimizer=dict(lr={lr}))\n"
_GN = '''
gn = dict(type='GN', num_groups=32, requires_grad=True)
model = dict(neck=dict(norm_cfg=gn), roi_head=dict(mask_head=dict(norm_cfg=gn)))
'''


def _fpn(channels: int) -> str:
    """Config text: the FPN, the RPN and the RoI heads at ``channels``."""
    c = channels
    return f'''
model = dict(neck=dict(out_channels={c}), rpn_head=dict(in_channels={c}, feat_channels={c}),
             roi_head=dict(bbox_roi_extractor=dict(out_channels={c}),
                           bbox_head=dict(in_channels={c}),
                           mask_roi_extractor=dict(out_channels={c}),
                           mask_head=dict(in_channels={c})))
'''


# the FPN, RPN and RoI heads at 64 channels instead of 128: the FPN's 3x3 output convs and the RPN
# conv at stride 4 (64 x 64) are, after the backbone, the costliest layers of the detector
_FPN64 = _fpn(64)
# the det recipe as round 1 left it (128 channels), restated so that round 2 stays the same after
# the quickstart config adopts its change (64)
_ROUND1_DET = _fpn(128)
# the mask head at mmdet's depth (4 convolutions; the quickstart's has 2): the segm AP trails the
# bbox AP most at high IoU, where the mask's shape decides
_MASK4 = "model = dict(roi_head=dict(mask_head=dict(num_convs=4)))\n"
_LIGHT = '''
model = dict(train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=300),
                            rcnn=dict(sampler=dict(num=64))))
'''
# anchors 16-256 px (scale 4 at strides 4-64) instead of 32-512: the objects are 10-90 px at 256
_ANCHORS = """
model = dict(rpn_head=dict(anchor_generator=dict(scales=[4])))
"""
# the RoI level mapping sized to the objects too: mmdet reads RoIs under 112 px from P2 (the
# stage-1 level) with finest_scale 56; 28 sends 28-56 px RoIs to P3 and 56-112 px to P4
_LEVELS = _ANCHORS + """
model = dict(roi_head=dict(bbox_roi_extractor=dict(finest_scale=28),
                           mask_roi_extractor=dict(finest_scale=28)))
"""
# online hard example mining on the decode head's pixels (mmseg's OHEMPixelSampler): the rare
# "thing" classes (box, ball: about 2% of the pixels each) are the hard pixels early on
_OHEM = """
model = dict(decode_head=dict(sampler=dict(type='OHEMPixelSampler', thresh=0.7,
                                           min_kept=100000)))
"""


# the two "thing" classes (box, ball: about 2% of the pixels each) weigh more in the loss, through
# mambaout_dense.CrossEntropyLoss (mmseg 1.2's class_weight fails when pixels are ignored)
def _things(weight: float, ball: Optional[float] = None, decode: str = '') -> str:
    """Config text: box and ball weigh ``weight`` in both heads' cross-entropy, the only loss of
    each head (ball: ``ball`` if given; ``decode``: more keyword text for the decode head, as
    ``'channels=64, '``, since a second ``model = dict(...)`` in the same file would replace
    this one). ``_delete_``: the losses replace the quickstart config's (a list since round 4)."""
    ball = weight if ball is None else ball
    return f"""
custom_imports = dict(imports=['mambaout_dense.models', 'mambaout_dense.engine',
                               'mambaout_dense.safe_io', 'mambaout_dense.datasets.checked_ade',
                               'mambaout_dense.adapters.seg_loss',
                               'mambaout_dense.evaluation.class_iou_metric'])
_loss = dict(type='mambaout_dense.CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=True,
             class_weight=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, {weight}, {ball}])
model = dict(decode_head=dict({decode}loss_decode=dict(_loss, loss_weight=1.0, _delete_=True)),
             auxiliary_head=dict(loss_decode=dict(_loss, loss_weight=0.4, _delete_=True)))
"""


_THINGS = _things(3.0)
# (the split's ``train_dataloader`` dict is defined above these texts in the same file)
_BATCH8 = "train_dataloader['batch_size'] = 8\n"


def _seg_pipeline(rescale: bool = True, photo: bool = True, crop: int = 256) -> str:
    """Config text of the seg train pipeline (``crop``-px crops): random rescaling 0.75-1.5 and
    the photometric distortion each optional."""
    steps = ["dict(type='LoadImageFromFile')",
             "dict(type='LoadAnnotations', reduce_zero_label=True)"]
    if rescale:
        steps.append("dict(type='RandomResize', scale=(512, 256), ratio_range=(0.75, 1.5), "
                     'keep_ratio=True)')
    steps += [f"dict(type='RandomCrop', crop_size=({crop}, {crop}), cat_max_ratio=0.75)",
              "dict(type='RandomFlip', prob=0.5)"]
    if photo:
        steps.append("dict(type='PhotoMetricDistortion')")
    steps.append("dict(type='PackSegInputs')")
    return ('\ntrain_pipeline = [\n' + ''.join(f'    {t},\n' for t in steps) + ']\n'
            "train_dataloader['dataset']['pipeline'] = train_pipeline\n")


_NO_PHOTO = _seg_pipeline(photo=False)


def _det(lr: float, warmup: int, extra: str = '') -> str:
    return _LR.format(lr=lr) + _COSINE.replace('{warmup}', str(warmup)) + extra


def _seg(lr: float, warmup: int, extra: str = '') -> str:
    return _LR.format(lr=lr) + _POLY.replace('{warmup}', str(warmup)) + extra


CANDIDATES: Dict[str, Dict[str, tuple]] = {
    'det': {
        'base': ('lr 1e-3, 100 warm-up iterations, cosine (the old recipe)', _det(1e-3, 100)),
        'lr2e-3': ('lr 2e-3, 50 warm-up', _det(2e-3, 50)),
        'lr4e-3': ('lr 4e-3, 50 warm-up', _det(4e-3, 50)),
        'gn': ('best lr + GroupNorm in the FPN and the mask head', None),
        'light': ('best lr + 300 RPN proposals and 64 sampled RoIs per image (cheaper)', None),
        'anchors': ('best lr + anchors 16-256 px (scale 4) instead of 32-512 px', None),
        'levels': ('best lr + anchors 16-256 px and RoIs of 28-56 px read from P3, 56-112 from '
                   'P4 (finest_scale 28 instead of 56)', None),
    },
    'seg': {
        'base': ('lr 1e-3, 100 warm-up iterations, poly (the old recipe)', _seg(1e-3, 100)),
        'lr2e-3': ('lr 2e-3, 50 warm-up', _seg(2e-3, 50)),
        'lr4e-3': ('lr 4e-3, 50 warm-up', _seg(4e-3, 50)),
        'no_photo': ('best lr, without the photometric distortion', None),
        'batch8': ('best lr, batch 8 (half the iterations at equal images)', None),
        'things_x3': ('best lr, box and ball weigh 3x in the loss (about 2% of pixels each)',
                      None),
        'ohem': ('best lr, online hard example mining of pixels (thresh 0.7, 100k kept)', None),
    },
}
# the images are generated at the size the model sees (256 px): no random rescaling (the crop
# then takes the whole image), so every iteration trains at the test scale
_FIXED_SCALE = _seg_pipeline(rescale=False)
# the seg recipe as round 1 left it, restated so that round 2 stays the same after the quickstart
# config adopts later changes: random rescaling (0.75-1.5), a 128-channel decode head, the
# cross-entropy with box and ball 3x as the only loss
_ROUND1_SEG = _things(3.0, decode='channels=128, ') + _seg_pipeline()
# round 2's change to it: UperNet's decode head at 64 channels instead of 128 (at 256 px its
# stride-4 fusion, a 3x3 conv over 4 x 128 channels at 64 x 64, is the costliest layer)
_HEAD64_R1 = _things(3.0, decode='channels=64, ')
#: Round 2: single changes to the quickstart recipe as round 1 left it (its learning rate and
#: schedule restated, as the schedule's length follows the sweep's), compared at equal
#: iterations; a change that is as good and cheaper is better at equal training time.
ROUND2: Dict[str, Dict[str, tuple]] = {
    'det': {
        'current': ('the quickstart recipe after round 1 (lr 1e-3, anchors 16-256 px)',
                    _det(1e-3, 100, _ROUND1_DET)),
        'light': ('+ 300 RPN proposals and 64 sampled RoIs per image (cheaper)',
                  _det(1e-3, 100, _ROUND1_DET + _LIGHT)),
        'gn': ('+ GroupNorm in the FPN and the mask head', _det(1e-3, 100, _ROUND1_DET + _GN)),
        'fpn64': ('+ FPN, RPN and RoI heads at 64 channels instead of 128 (cheaper)',
                  _det(1e-3, 100, _FPN64)),
    },
    'seg': {
        'current': ('the quickstart recipe after round 1 (lr 1e-3, box and ball 3x)',
                    _seg(1e-3, 100, _ROUND1_SEG)),
        'head64': ('+ decode head at 64 channels instead of 128 (cheaper)',
                   _seg(1e-3, 100, _HEAD64_R1 + _seg_pipeline())),
        'fixed_scale': ('+ no random rescaling (train at the 256-px test scale)',
                        _seg(1e-3, 100, _ROUND1_SEG + _FIXED_SCALE)),
        'head64_fixed': ('+ both: decode head at 64 channels, no random rescaling',
                         _seg(1e-3, 100, _HEAD64_R1 + _FIXED_SCALE)),
        'head64_fixed_no_photo': ('+ both, and no photometric distortion',
                                  _seg(1e-3, 100, _HEAD64_R1
                                       + _seg_pipeline(rescale=False, photo=False))),
    },
}
# the seg recipe as round 2 left it, restated so that round 3 stays the same after the quickstart
# config adopts its changes: a 64-channel decode head, no random rescaling, box and ball 3x
_ROUND2_SEG = _HEAD64_R1 + _FIXED_SCALE
# training on 224-px crops of the 256-px images (0.77x the pixels); the test stays at 256
_CROP224 = (_seg_pipeline(rescale=False, crop=224)
            + "model['data_preprocessor'] = dict(size=(224, 224))\n")
# batch 2 at twice the iterations: as many training images as batch 4, cheaper iterations
_BATCH2 = '''
train_dataloader['batch_size'] = 2
max_iters = {iters} * 2
train_cfg = dict(max_iters={iters} * 2, val_interval={val} * 2)
default_hooks = dict(checkpoint=dict(interval={iters} * 2 + 1))
'''


def _twice(text: str) -> str:
    """Config text whose schedule runs twice the sweep's iterations."""
    return text.replace('{iters}', '{iters} * 2')


#: Round 3: single changes to the recipe as round 2 left it, aimed at the two "thing" classes (box
#: and ball), far below the stuff classes; the table shows their IoU (``ClassIoUMetric``).
ROUND3: Dict[str, Dict[str, tuple]] = {
    'det': {
        'current': ('the quickstart recipe after round 2 (FPN, RPN and RoI heads at 64 channels)',
                    _det(1e-3, 100, _FPN64)),
        'mask4': ('+ mask head of 4 convolutions instead of 2 (mmdet: 4)',
                  _det(1e-3, 100, _FPN64 + _MASK4)),
        'lr2e-3': ('+ learning rate 2e-3 instead of 1e-3', _det(2e-3, 100, _FPN64)),
    },
    'seg': {
        'current': ('the quickstart recipe after round 2 (64-channel head, fixed scale, box and '
                    'ball 3x)', _seg(1e-3, 100, _ROUND2_SEG)),
        'things_x6': ('+ box and ball weigh 6x in the loss instead of 3x',
                      _seg(1e-3, 100, _things(6.0, decode='channels=64, ') + _FIXED_SCALE)),
        'lr2e-3': ('+ learning rate 2e-3 instead of 1e-3', _seg(2e-3, 100, _ROUND2_SEG)),
        'box5': ('+ box weighs 5x in the loss instead of 3x (ball stays 3x): the lowest class gets '
                 'more of the loss', _seg(1e-3, 100, _things(5.0, ball=3.0, decode='channels=64, ')
                                          + _FIXED_SCALE)),
        'crop224': ('+ 224-px random crops of the 256-px images (cheaper; tested at 256)',
                    _seg(1e-3, 100, _ROUND2_SEG + _CROP224)),
        'batch2': ('+ batch 2 instead of 4, twice the iterations (as many images; warm-up 200)',
                   _twice(_seg(1e-3, 200, _ROUND2_SEG)) + _BATCH2),
    },
}
# Round 4's changes are statements on the ``model`` dict that ``_ROUND2_SEG`` defines (its loss
# text): a second ``model = dict(...)`` in the same config file would replace the first one, not
# merge with it.
# mmseg's Lovasz-softmax loss (a convex surrogate of each class's IoU, over the batch's pixels)
# beside the cross-entropy in the decode head: the score is the mean IoU, and the two small
# "thing" classes count in it as much as the large stuff classes
def _lovasz(loss_type: str = 'LovaszLoss', extra: str = '') -> str:
    """Config text: the decode head's losses are the cross-entropy of ``_things`` and a Lovasz
    loss."""
    return ("model['decode_head']['loss_decode'] = [dict(_loss, loss_weight=1.0), dict(\n"
            f"    type='{loss_type}', loss_type='multi_class', classes='present', "
            'per_image=False,\n'
            f"    reduction='none', loss_weight=1.0{extra})]\n")


_LOVASZ = _lovasz()
# the same on every 4th pixel of each row and column (one per logit cell of the stride-4 head):
# mmseg's loss sorts all 262k pixels of a batch once per class, which cost 1.5 s per iteration
# against 0.8 s (1 thread, shared cores)
_LOVASZ_S4 = _lovasz('mambaout_dense.LovaszLoss', ', stride=4')
# online hard example mining: the decode head's loss on the pixels it gets most wrong (the box
# and ball pixels it confuses), at least 100k of the batch's 262k
_OHEM_R4 = ("model['decode_head']['sampler'] = dict(type='OHEMPixelSampler', thresh=0.7, "
            'min_kept=100000)\n')
# the auxiliary FCN head reads stage 3 (stride 16), where one cell sees a whole box or ball
_AUX1 = "model['auxiliary_head']['loss_decode']['loss_weight'] = 1.0\n"
_NO_AUX = "model['auxiliary_head'] = None\n"
_NO_DROPOUT = ("model['decode_head']['dropout_ratio'] = 0.0\n"
               "model['auxiliary_head']['dropout_ratio'] = 0.0\n")
#: Round 4: single changes to the recipe as round 3 left it (round 2's), aimed at telling box from
#: ball: losses and heads.
ROUND4: Dict[str, Dict[str, tuple]] = {
    'det': {},
    'seg': {
        'current': ('the quickstart recipe after round 3 (= after round 2)',
                    _seg(1e-3, 100, _ROUND2_SEG)),
        'lovasz': ('+ Lovasz-softmax loss (weight 1) beside the cross-entropy in the decode head',
                   _seg(1e-3, 100, _ROUND2_SEG + _LOVASZ)),
        'lovasz_s4': ('+ the same Lovasz-softmax loss on every 4th pixel of each row and column',
                      _seg(1e-3, 100, _ROUND2_SEG + _LOVASZ_S4)),
        'ohem': ('+ online hard example mining in the decode head (thresh 0.7, 100k pixels kept)',
                 _seg(1e-3, 100, _ROUND2_SEG + _OHEM_R4)),
        'aux1': ('+ auxiliary head (stage 3) loss weight 1.0 instead of 0.4',
                 _seg(1e-3, 100, _ROUND2_SEG + _AUX1)),
        'no_aux': ('+ no auxiliary head (cheaper)', _seg(1e-3, 100, _ROUND2_SEG + _NO_AUX)),
        'no_dropout': ('+ no dropout before the classifiers (mmseg: 0.1)',
                       _seg(1e-3, 100, _ROUND2_SEG + _NO_DROPOUT)),
    },
}
_ROUND4_SEG = _ROUND2_SEG + _LOVASZ_S4  # the seg recipe as round 4 left it


def _ema(momentum: float) -> str:
    """Config text: mmengine's EMAHook (weights averaged over about ``1 / momentum`` iterations;
    validation, checkpoints and so tools/test.py use the average) after the quickstart's own
    hook. (Round 5's two runs were made with the EMAHook alone, without the checkpoint-format
    hook: it changes how checkpoints are written, not the scores.)"""
    return ("custom_hooks = [dict(type='mambaout_dense.PlainCheckpointHook'),\n"
            "                dict(type='EMAHook', ema_type='ExponentialMovingAverage', "
            f"momentum={momentum}, priority='ABOVE_NORMAL')]\n")


#: Round 5: an average of the weights. The main job's box and ball IoU swing from one evaluation
#: to the next (box 18 -> 31 -> 33 at iterations 1200-1500 of one run, 28 at 1600 of another),
#: as if the boundary between the two thing classes moved with the last updates.
ROUND5: Dict[str, Dict[str, tuple]] = {
    'det': {},
    'seg': {
        'current': ('the quickstart recipe after round 4 (+ Lovasz on every 4th pixel)',
                    _seg(1e-3, 100, _ROUND4_SEG)),
        'ema100': ('+ exponential moving average of the weights, momentum 0.01 (~100 iterations)',
                   _seg(1e-3, 100, _ROUND4_SEG + _ema(0.01))),
        'ema300': ('+ exponential moving average of the weights, momentum 0.003 (~300 '
                   'iterations)', _seg(1e-3, 100, _ROUND4_SEG + _ema(0.003))),
    },
}
ROUNDS = {1: CANDIDATES, 2: ROUND2, 3: ROUND3, 4: ROUND4, 5: ROUND5}


def tag(rnd: int) -> str:
    """File-name suffix of a round: its JSON, plot, work dirs and ``sweep.md`` section."""
    return '' if rnd == 1 else f'_r{rnd}'


#: The second stage's additions to the best learning rate of the first stage.
STAGE2 = {'gn': _GN, 'light': _LIGHT, 'anchors': _ANCHORS, 'levels': _LEVELS,
          'no_photo': _NO_PHOTO, 'batch8': _BATCH8, 'ohem': _OHEM, 'things_x3': _THINGS}
STAGE1 = ('base', 'lr2e-3', 'lr4e-3')
#: The changes the quickstart configs took from each round (round 1: to its best learning rate).
ADOPTED = {1: {'det': ('anchors', ), 'seg': ('things_x3', )},
           2: {'det': ('fpn64', ), 'seg': ('head64_fixed', )},
           3: {'det': (), 'seg': ()},
           4: {'det': (), 'seg': ('lovasz_s4', )},
           5: {'det': (), 'seg': ()}}


def make_holdout(task: str) -> Dict[str, str]:
    """Split the training images into a sweep-train and a held-out part; returns the files."""
    data = osp.join(ROOT, TASKS[task]['data'])
    n = HOLDOUT[task]
    if task == 'det':
        ann = osp.join(data, 'annotations')
        with open(osp.join(ann, 'instances_train2017.json')) as f:
            coco = json.load(f)
        images = sorted(coco['images'], key=lambda im: im['file_name'])
        parts = {'sweep_train': images[:-n], 'sweep_holdout': images[-n:]}
        files = {}
        for name, imgs in parts.items():
            ids = {im['id'] for im in imgs}
            out = dict(coco, images=imgs,
                       annotations=[a for a in coco['annotations'] if a['image_id'] in ids])
            files[name] = osp.join(ann, f'instances_{name}.json')
            with open(files[name], 'w') as f:
                json.dump(out, f)
        return files
    names = sorted(osp.splitext(f)[0] for f in os.listdir(osp.join(data, 'images', 'training')))
    files = {}
    for name, part in (('sweep_train', names[:-n]), ('sweep_holdout', names[-n:])):
        files[name] = osp.join(data, f'{name}.txt')
        with open(files[name], 'w') as f:
            f.write('\n'.join(part) + '\n')
    return files


def split_text(task: str) -> str:
    """Config text that trains on the sweep-train part and validates on the held-out part."""
    if task == 'det':
        return textwrap.dedent('''
            train_dataloader = dict(dataset=dict(ann_file='annotations/instances_sweep_train.json'))
            val_dataloader = dict(dataset=dict(ann_file='annotations/instances_sweep_holdout.json',
                                               data_prefix=dict(img='train2017/')))
            val_evaluator = dict(ann_file='{data}/annotations/instances_sweep_holdout.json')
            ''').replace('{data}', TASKS[task]['data'])
    return textwrap.dedent('''
        train_dataloader = dict(dataset=dict(ann_file='sweep_train.txt'))
        val_dataloader = dict(dataset=dict(ann_file='sweep_holdout.txt',
                                           data_prefix=dict(img_path='images/training',
                                                            seg_map_path='annotations/training')))
        ''')


def fill(text: str, iters: int, val_interval: int) -> str:
    """A candidate's config text with the sweep's schedule length and validation interval."""
    return text.replace('{iters}', str(iters)).replace('{val}', str(val_interval))


def candidate_config(task: str, text: str, iters: int, val_interval: int, out: str,
                     name: str, suffix: str = '') -> str:
    """Write the candidate's config file (inheriting the quickstart config); returns its path."""
    body = (f"_base_ = ['{osp.join(ROOT, TASKS[task]['config'])}']\n"
            f'max_iters = {iters}\n'
            f'train_cfg = dict(max_iters={iters}, val_interval={val_interval})\n'
            'default_hooks = dict(logger=dict(interval=10), '
            f'checkpoint=dict(interval={iters + 1}))\n'
            + split_text(task) + fill(text, iters, val_interval))
    path = osp.join(out, f'sweep_{task}{suffix}_{name}.py')
    with open(path, 'w') as f:
        f.write(body)
    return path


def headline(task: str) -> str:
    return TASKS[task]['metrics'][0][0]


def best_of(task: str, runs: Dict[str, dict], names) -> str:
    key = headline(task)
    done = [n for n in names if n in runs]
    return max(done, key=lambda n: runs[n]['points'][-1][key])


def run_candidate(task: str, name: str, text: str, args, runs: Dict[str, dict]) -> None:
    suffix = tag(args.round)
    cfg = candidate_config(task, text, args.iters, args.val_interval, args.out, name, suffix)
    work = osp.join(args.out, f'sweep_{task}{suffix}_{name}')
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    print(f'[sweep] {task} round {args.round} {name}: training {args.iters} iterations',
          flush=True)
    wall = train(ROOT, osp.relpath(cfg, ROOT), work, [], env)
    res = parse_curve(task, work, wall)
    from mmengine.config import Config
    res.update(config=fill(text, args.iters, args.val_interval), threads=args.threads,
               batch=Config.fromfile(cfg).train_dataloader.batch_size,
               commit=subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'],
                                     capture_output=True, text=True).stdout.strip())
    runs[name] = res
    print(f"[sweep] {task} {name}: {headline(task)} {res['points'][-1][headline(task)]} "
          f"({res['s_per_iter']:.2f} s/iter)", flush=True)


def plot(task: str, runs: Dict[str, dict], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    key = headline(task)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in runs.items():
        batch = r.get('batch', 4)
        ax.plot([p['iter'] * batch for p in r['points']], [p[key] for p in r['points']], 'o-',
                label=name)
    ax.set_xlabel('training images seen (the sweep shared the CPU, so minutes are not '
                  'comparable)')
    ax.set_ylabel(f'{key} on the held-out training images')
    ax.set_title(f'Recipe sweep ({task})', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(task: str, result: dict, rnd: int = 1) -> str:
    from mambaout_dense.analysis.tables import markdown_table
    runs, suffix = result['runs'], tag(rnd)
    rows = []
    things = [c for c in THING_CLASSES.get(task, ())
              if any(c in r['points'][-1].get('per_class_iou', {}) for r in runs.values())]
    for name, r in runs.items():
        last = r['points'][-1]
        rows.append({'candidate': name, 'what changes': ROUNDS[rnd][task][name][0],
                     'iterations': last['iter'], 's/iter': round(r['s_per_iter'], 2),
                     'training min': round(r['train_min'], 1),
                     **{label: last[k] for k, label in TASKS[task]['metrics']},
                     **{f'{c} IoU': last.get('per_class_iou', {}).get(c, '-')
                        for c in things}})
    if rnd == 1:
        stage1 = best_of(task, runs, STAGE1) if any(n in runs for n in STAGE1) else None
        how = f'Best learning rate (stage 1): `{stage1}`.'
    else:
        how = ('Each candidate is one change to the quickstart recipe as the previous round '
               'left it (`current`).')
    return '\n'.join([
        f"### {task}, round {rnd}: `{TASKS[task]['config']}`", '',
        f"{result['iters']} iterations of batch 4 per candidate (a candidate with another batch "
        "size trains on as many images, so compare training minutes, not seconds per "
        f"iteration), scored every {result['val_interval'] * 4} images seen, on "
        f"the last {HOLDOUT[task]} training images (held out; the validation set is not used), "
        f"{result['threads']} thread(s) per run. {how}", '',
        markdown_table(rows), '',
        'Seconds per iteration are measured while another sweep (and at first a third job) '
        'shared the 2 cores, so compare them only roughly; the quickstart curve in '
        '`docs/results.md` gives the cost on an idle CPU. Each candidate is one run of one seed: '
        'differences of a few hundredths of AP (or 1-2 mIoU) are within what a second seed '
        'could change.', '', adopted(task, runs, rnd), '', f'![sweep](sweep_{task}{suffix}.png)',
        '', f'Overrides per candidate are stored in `sweep_{task}{suffix}.json`.'])


def adopted(task: str, runs: Dict[str, dict], rnd: int = 1) -> str:
    """What the quickstart config took from the round, with each change's gain over its
    reference (``base`` in round 1, ``current`` after)."""
    key, label = TASKS[task]['metrics'][0]
    ref = 'base' if rnd == 1 else 'current'
    if ref not in runs:
        return ''
    base = runs[ref]['points'][-1][key]
    gains = [f"`{n}` ({ROUNDS[rnd][task][n][0]}: {label} {runs[n]['points'][-1][key]:.3f} vs "
             f'{base:.3f})' for n in ADOPTED[rnd][task] if n in runs]
    if not gains:
        return 'Adopted in the quickstart config: none of this round\'s changes.'
    return ('Adopted in the quickstart config, with its schedule lengthened to fill the '
            'training budget: ' + '; '.join(gains) + '.')


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=sorted(TASKS), default='det')
    parser.add_argument('--iters', type=int, default=400)
    parser.add_argument('--val-interval', type=int, default=100)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--round', type=int, choices=sorted(ROUNDS), default=1,
                        help='which round of candidates (2: changes to the recipe round 1 left)')
    parser.add_argument('--only', nargs='*', help='candidates to run (default: all)')
    parser.add_argument('--out', default=osp.join(ROOT, 'work_dirs', 'main_job_sweep'))
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from mambaout_dense.analysis.tables import update_section, write_json
    os.makedirs(args.out, exist_ok=True)
    ensure_data(sys.executable, args.task)
    make_holdout(args.task)
    docs = osp.join(ROOT, 'docs', 'main_job')
    suffix = tag(args.round)
    path = osp.join(docs, f'sweep_{args.task}{suffix}.json')
    result = dict(iters=args.iters, val_interval=args.val_interval, threads=args.threads,
                  runs={})
    if osp.isfile(path):
        with open(path) as f:
            result = json.load(f)
    runs = result['runs']
    candidates = ROUNDS[args.round][args.task]
    wanted = args.only or list(candidates)
    for name in wanted:
        if name in runs:
            continue
        text = candidates[name][1]
        if text is None:  # a stage-2 candidate: the best stage-1 recipe plus its change
            text = runs[best_of(args.task, runs, STAGE1)]['config'] + STAGE2[name]
        run_candidate(args.task, name, text, args, runs)
        if osp.isfile(path):  # runs that other sweep processes of this task stored meanwhile
            with open(path) as f:
                runs.update({k: v for k, v in json.load(f)['runs'].items() if k not in runs})
        write_json(path, result)
    plot(args.task, runs, osp.join(docs, f'sweep_{args.task}{suffix}.png'))
    text = report(args.task, result, args.round)
    print(text)
    update_section(osp.join(docs, 'sweep.md'), f'sweep-{args.task}{suffix.replace("_", "-")}',
                   text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
