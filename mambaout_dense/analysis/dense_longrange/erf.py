"""Trained-model effective receptive fields of the dense long-range arms, beside random weights.

For each (backbone, image size) the backbone of the first scored run (lowest seed) is measured
twice on the same images, the far group's validation images of that size: with the
initialisation of its config (seeded with the run's seed) and with the run's final checkpoint
(loaded strictly). The measure is :mod:`mambaout_dense.analysis.erf` (gradient of the central
output location of each stage; radii holding 50% and 90% of the gradient mass, in input pixels),
so the rows read against the far cue's distance in pixels: a stage whose trained r90 stays well
under the cue's distance did not learn to look that far from the centre, whatever its theoretical
field.
"""
import os.path as osp
from typing import Any, Dict, List, Sequence

from ...errors import DataError
from .plan import BACKBONES, DenseCell, DenseSettings
from .runner import data_root

__all__ = ['final_checkpoint', 'trained_erfs', 'erf_markdown_dense']


def final_checkpoint(cell_dir: str, iters: int) -> str:
    """The checkpoint a finished run left: ``last_checkpoint``'s target, else ``iter_N.pth``.

    Raises:
        DataError: Neither exists (the run's folder was removed or the run did not finish).
    """
    pointer = osp.join(cell_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            path = f.read().strip()
        if osp.isfile(path):
            return path
    path = osp.join(cell_dir, f'iter_{iters}.pth')
    if osp.isfile(path):
        return path
    raise DataError(f'no final checkpoint in {cell_dir} (neither last_checkpoint nor '
                    f'iter_{iters}.pth): the run folder is needed for trained-model ERFs')


def _first_scored(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per (backbone, size): the scored run of the lowest seed (at the smallest far distance).

    Contenders only: the shortcut baseline (:data:`.plan.BASELINES`) has one stage, and its
    reach is measured exactly instead (:mod:`.reach`)."""
    best: Dict[tuple, Dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: (r['seed'], r['far'])):
        if r.get('scored') and r['backbone'] in BACKBONES:
            best.setdefault((r['backbone'], r['size']), r)
    order = {b: i for i, b in enumerate(BACKBONES)}
    return [best[k] for k in sorted(best, key=lambda k: (k[1], order.get(k[0], 9)))]


def trained_erfs(records: Sequence[Dict[str, Any]], s: DenseSettings, work_dir: str,
                 config_dir: str, num_images: int = 8) -> List[Dict[str, Any]]:
    """ERF radii of random and trained weights per (backbone, size, stage).

    Args:
        records (Sequence[dict]): Gated records (:func:`.report.apply_gate`).
        s (DenseSettings): The settings (run folders live under their key).
        work_dir (str): The sweep's folder (data, runs); the maps go to ``work_dir/erf``.
        config_dir (str): Folder of the configs.
        num_images (int): Validation images of the far group. Defaults to 8.

    Returns:
        list[dict]: ``backbone``, ``size``, ``seed``, ``far_px``, ``stage``, ``stride``,
        ``r50``/``r90`` (random) and ``r50_trained``/``r90_trained`` (pixels), ``checkpoint``.
    """
    import torch
    from mmengine.config import Config

    from ...builder import build_backbone
    from .. import erf
    out_dir = osp.join(work_dir, 'erf')
    rows = []
    for rec in _first_scored(records):
        cell = DenseCell(rec['arm'], rec['backbone'], rec['size'], rec['far'], rec['seed'])
        cell_dir = osp.join(work_dir, 'runs', s.key(), cell.key().replace('/', '_'))
        ckpt = final_checkpoint(cell_dir, s.iters)
        root = data_root(work_dir, s, cell.size, cell.far) + '/'
        opts: Dict[str, Any] = {'val_dataloader.dataset.data_root': root}
        if cell.arm == 'upernet':
            opts['model.data_preprocessor.size'] = (cell.size, cell.size)
        cfg = Config.fromfile(osp.join(config_dir, cell.config_name() + '.py'))
        cfg.merge_from_dict(opts)
        model = build_backbone(cfg, out_indices=(0, 1, 2, 3))  # every stage
        images = erf.dataset_images(cfg, num_images, (cell.size, cell.size))
        name = f'{cell.arm}_{cell.backbone}_s{cell.size}_seed{cell.seed}'
        torch.manual_seed(cell.seed)
        erf.init_weights_quietly(model)
        rand = erf.run_erf(model, images, out_dir, name + '_random',
                           extra=dict(weights='random', source='far validation images'))
        erf.load_backbone_checkpoint(model, ckpt)
        done = erf.run_erf(model, images, out_dir, name + '_trained',
                           extra=dict(weights=ckpt, source='far validation images'))
        for a, b in zip(rand['rows'], done['rows']):
            rows.append(dict(backbone=cell.backbone, size=cell.size, seed=cell.seed,
                             far_px=rec['far_px'], stage=a['stage'], stride=a['stride'],
                             r50=a['r50'], r90=a['r90'], r50_trained=b['r50'],
                             r90_trained=b['r90'], images=int(images.shape[0]),
                             checkpoint=osp.relpath(ckpt, work_dir)))
    return rows


def erf_markdown_dense(rows: Sequence[Dict[str, Any]]) -> str:
    """One row per (backbone, size, stage): r50 and r90 random -> trained, and the far cue."""
    lines = ['| backbone | size | stage (stride) | r50 random → trained (px) | '
             'r90 random → trained (px) | far cue (px) |', '|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['backbone']} (seed {r['seed']}) | {r['size']} | {r['stage']} "
                     f"({r['stride']:g}) | {r['r50']:.0f} → {r['r50_trained']:.0f} | "
                     f"{r['r90']:.0f} → {r['r90_trained']:.0f} | {r['far_px']:g} |")
    return '\n'.join(lines)
