#!/usr/bin/env python
"""Where one training iteration of a quickstart main job spends its time, end to end.

Builds the runner of the task's quickstart config (``--task det``: Mask R-CNN, ``--task seg``:
UperNet; its own data pipeline, model and optimizer; 2 threads), trains ``--warmup`` iterations,
then times ``--iters`` more, split into: waiting for the data loader, the forward of each part
(det: data preprocessor, backbone, FPN, RPN head with its proposals and NMS, RoIAlign, box and mask
heads; seg: data preprocessor, backbone, each layer group of the UperNet head, the auxiliary
head), the losses' backward and the optimizer step. Forward parts are timed with forward hooks
(the CPU runs them synchronously). The operator table of ``torch.profiler`` (top operators by self
time) is printed beside it. Writes ``docs/main_job/profile_<task>.json`` and the results section
``main-job-profile`` (det) or ``main-job-profile-seg``.

    python benchmarks/main_job_profile.py [--task det|seg] [--iters 20] [--warmup 30]
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import time
from collections import defaultdict
from typing import List, Optional

from main_job import ROOT, TASKS, ensure_data

_COMMON = (('data_preprocessor', 'data preprocessor (batching, normalisation)'),
           ('backbone', 'backbone (MambaOut-Femto)'))
#: Per task: the model parts timed by forward hooks, (attribute path, label), and the label of
#: what the hooks leave out of the forward.
PARTS = {
    'det': (_COMMON + (
        ('neck', 'FPN'), ('rpn_head', 'RPN head: scores, proposals, NMS, losses'),
        ('roi_head.bbox_roi_extractor', 'RoIAlign for boxes'),
        ('roi_head.bbox_head', 'box head (2 FC)'),
        ('roi_head.mask_roi_extractor', 'RoIAlign for masks'),
        ('roi_head.mask_head', 'mask head (convs; targets and loss outside the hook)')),
        'rest of the forward (RoI sampling, mask targets, losses)'),
    'seg': (_COMMON + (
        ('decode_head.psp_modules', 'UperNet pyramid pooling (PPM)'),
        ('decode_head.bottleneck', 'UperNet PPM bottleneck (3x3 conv, stride 32)'),
        ('decode_head.lateral_convs', 'UperNet lateral 1x1 convs'),
        ('decode_head.fpn_convs', 'UperNet FPN 3x3 convs'),
        ('decode_head.fpn_bottleneck', 'UperNet fusion 3x3 conv (stride 4, 4 levels in)'),
        ('decode_head.conv_seg', 'UperNet classifier (1x1)'),
        # (a head's loss() calls its forward directly, so hooks go on its layers)
        ('auxiliary_head.convs', 'auxiliary FCN head (stage 3)'),
        ('auxiliary_head.conv_seg', 'auxiliary FCN head (stage 3)')),
        'rest of the forward (top-down sums, upsampling, losses)'),
}


def build_runner(task: str, threads: int):
    import torch
    torch.set_num_threads(threads)
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(ROOT, TASKS[task]['config']))
    cfg.work_dir = osp.join(ROOT, 'work_dirs', 'main_job_profile')
    cfg.train_dataloader.dataset.data_root = osp.join(ROOT, TASKS[task]['data']) + '/'
    runner = Runner.from_cfg(cfg)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    return runner


def attr(obj, path: str):
    for name in path.split('.'):
        obj = getattr(obj, name)
    return obj


def profile(task: str, iters: int, warmup: int, threads: int) -> dict:
    import torch
    runner = build_runner(task, threads)
    hooked, rest = PARTS[task]
    model, ow = runner.model, runner.optim_wrapper
    model.train()
    batches = runner.train_loop.dataloader_iterator
    for _ in range(warmup):
        model.train_step(next(batches), ow)
    spent = defaultdict(float)
    starts = {}

    def pre(label):
        def hook(module, args):
            starts[label] = time.perf_counter()
        return hook

    def post(label):
        def hook(module, args, out):
            spent[label] += time.perf_counter() - starts.pop(label)
        return hook

    for path, label in hooked:
        module = attr(model, path)
        # a plain ModuleList is iterated, never called: its members are timed under its label
        for member in (list(module) if type(module) is torch.nn.ModuleList else [module]):
            member.register_forward_pre_hook(pre(label))
            member.register_forward_hook(post(label))
    totals: List[float] = []
    wrapped = {}
    for name in ('backward', 'step'):  # the optimizer wrapper's own calls, timed
        original = getattr(ow, name)

        def timed(*a, _original=original, _name=name, **k):
            t = time.perf_counter()
            out = _original(*a, **k)
            spent['loss backward' if _name == 'backward' else 'optimizer step (AdamW, clip)'] += (
                time.perf_counter() - t)
            return out
        wrapped[name] = timed
        setattr(ow, name, timed)
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            t0 = time.perf_counter()
            batch = next(batches)
            t1 = time.perf_counter()
            spent['waiting for the data loader'] += t1 - t0
            model.train_step(batch, ow)
            totals.append(time.perf_counter() - t0)
    ops = [dict(op=e.key, ms=e.self_cpu_time_total / 1e3 / iters, calls=e.count // iters)
           for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]]
    per_iter = statistics.mean(totals)
    named = sum(spent.values())
    parts = [dict(part=k, s=v / iters) for k, v in spent.items()]
    parts.append(dict(part=rest, s=per_iter - named / iters))
    return dict(task=task, iters=iters, warmup=warmup, threads=threads, s_per_iter=per_iter,
                profiled_overhead='torch.profiler on', parts=parts, ops=ops,
                torch=torch.__version__)


#: Per task: what the profiled iteration trains, and the section of docs/results.md it rewrites.
REPORTS = {
    'det': ('detector', ' (early training: few proposals overlap objects yet)', 'main-job-profile'),
    'seg': ('segmentor', '', 'main-job-profile-seg'),
}


def report(res: dict) -> str:
    from mambaout_dense.analysis.measure import environment
    from mambaout_dense.analysis.tables import markdown_table
    task = res.get('task', 'det')
    what, when, _ = REPORTS[task]
    total = res['s_per_iter']
    parts = sorted(res['parts'], key=lambda p: -p['s'])
    return '\n'.join([
        f'### One {what} training iteration, end to end (`benchmarks/main_job_profile.py`)', '',
        f"`{TASKS[task]['config']}`, its data pipeline, batch 4; mean of {res['iters']} "
        f"iterations after {res['warmup']} from scratch{when}, under "
        f"torch.profiler; {environment('cpu')}. Forward parts by forward hooks; the backward "
        'covers every part.', '',
        markdown_table([{'part': p['part'], 'seconds': round(p['s'], 3),
                         'share': f"{100 * p['s'] / total:.0f}%"} for p in parts]
                       + [{'part': '**total**', 'seconds': round(total, 3), 'share': '100%'}]),
        '', 'Top operators by self time (all parts, forward and backward):', '',
        markdown_table([{'operator': o['op'], 'ms per iteration': round(o['ms'], 1),
                         'calls per iteration': o['calls']} for o in res['ops']])])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=sorted(REPORTS), default='det')
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=30)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--no-results', action='store_true')
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    os.environ.setdefault('PYTHONWARNINGS', 'ignore')
    ensure_data(sys.executable, args.task)
    res = profile(args.task, args.iters, args.warmup, args.threads)
    from common import publish

    from mambaout_dense.analysis.tables import write_json
    write_json(osp.join(ROOT, 'docs', 'main_job', f'profile_{args.task}.json'), res)
    text = report(res)
    print(text)
    if not args.no_results:
        publish(REPORTS[args.task][2], text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
