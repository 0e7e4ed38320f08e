#!/usr/bin/env python
"""Where one training iteration of the quickstart detector spends its time, end to end.

Builds the runner of ``configs/mask_rcnn_mambaout_femto_synthetic.py`` (its own data pipeline,
model and optimizer; 2 threads), trains ``--warmup`` iterations, then times ``--iters`` more,
split into: waiting for the data loader, the forward of each part (data preprocessor, backbone,
FPN, RPN head with its proposals and NMS, RoI head with sampling, RoIAlign, box and mask heads and
mask targets), the losses' backward and the optimizer step. Forward parts are timed with
forward hooks (the CPU runs them synchronously). The operator table of ``torch.profiler`` (top
operators by self time) is printed beside it. Writes the results section ``main-job-profile``.

    python benchmarks/main_job_profile.py [--iters 20] [--warmup 30]
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

#: Model parts timed by forward hooks: (attribute path, label).
PARTS = (('data_preprocessor', 'data preprocessor (batching, normalisation)'),
         ('backbone', 'backbone (MambaOut-Femto)'), ('neck', 'FPN'),
         ('rpn_head', 'RPN head: scores, proposals, NMS, losses'),
         ('roi_head.bbox_roi_extractor', 'RoIAlign for boxes'),
         ('roi_head.bbox_head', 'box head (2 FC)'),
         ('roi_head.mask_roi_extractor', 'RoIAlign for masks'),
         ('roi_head.mask_head', 'mask head (convs; targets and loss outside the hook)'))


def build_runner(threads: int):
    import torch
    torch.set_num_threads(threads)
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(ROOT, TASKS['det']['config']))
    cfg.work_dir = osp.join(ROOT, 'work_dirs', 'main_job_profile')
    cfg.train_dataloader.dataset.data_root = osp.join(ROOT, TASKS['det']['data']) + '/'
    runner = Runner.from_cfg(cfg)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    return runner


def attr(obj, path: str):
    for name in path.split('.'):
        obj = getattr(obj, name)
    return obj


def profile(iters: int, warmup: int, threads: int) -> dict:
    import torch
    runner = build_runner(threads)
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

    for path, label in PARTS:
        module = attr(model, path)
        module.register_forward_pre_hook(pre(label))
        module.register_forward_hook(post(label))
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
    parts.append(dict(part='rest of the forward (RoI sampling, mask targets, losses)',
                      s=per_iter - named / iters))
    return dict(iters=iters, warmup=warmup, threads=threads, s_per_iter=per_iter,
                profiled_overhead='torch.profiler on', parts=parts, ops=ops,
                torch=torch.__version__)


def report(res: dict) -> str:
    from mambaout_dense.analysis.measure import environment
    from mambaout_dense.analysis.tables import markdown_table
    total = res['s_per_iter']
    parts = sorted(res['parts'], key=lambda p: -p['s'])
    return '\n'.join([
        '### One detector training iteration, end to end (`benchmarks/main_job_profile.py`)', '',
        f"`{TASKS['det']['config']}`, its data pipeline, batch 4; mean of {res['iters']} "
        f"iterations after {res['warmup']} from scratch (early training: few proposals overlap "
        f"objects yet), under "
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
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=30)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--no-results', action='store_true')
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    os.environ.setdefault('PYTHONWARNINGS', 'ignore')
    ensure_data(sys.executable, 'det')
    res = profile(args.iters, args.warmup, args.threads)
    from common import publish

    from mambaout_dense.analysis.tables import write_json
    write_json(osp.join(ROOT, 'docs', 'main_job', 'profile_det.json'), res)
    text = report(res)
    print(text)
    if not args.no_results:
        publish('main-job-profile', text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
