"""The long-range task through the toolkit's own UperNet and Mask R-CNN (the dense arms).

Tests the long-sequence hypothesis of Yu & Wang ("MambaOut: Do We Really Need Mamba for
Vision?", arXiv 2405.07992) in the real stack: Femto-sized MambaOut, VMamba (Liu et al., arXiv
2401.10166) and hybrid backbones, trained through ``tools/train.py`` on the shortcut-free task of
:mod:`mambaout_dense.datasets.synthetic.longrange_dense`, with the image size as the length axis,
beside a shortcut baseline (UperNet arm) that sees image-level statistics but no far marker.
One concern per module:

- :mod:`.plan`: settings, cells and the per-stage sequence lengths;
- :mod:`.runner`: one ``tools/train.py`` run and its record (scores, curves, pace);
- :mod:`.cost`: parameters, FLOPs and latency per image;
- :mod:`.reach`: the shortcut baseline's measured reach against the task's geometry;
- :mod:`.report`: the learned gate, summaries (the probe's statistics), verdict, markdown;
- :mod:`.driver`: the resumable sweep with progress, ETA and the report section.
"""
from .driver import build_results, fmt_time, make_record, run_sweep
from .plan import (
    ARMS,
    BACKBONES,
    BASELINE_ARMS,
    BASELINES,
    DenseCell,
    DenseSettings,
    length_table,
    plan_cells,
)
from .reach import baseline_reach, measure_reach, task_geometry
from .report import (
    apply_gate,
    baseline_verdict,
    dense_verdict,
    render_dense_markdown,
    summarise_dense,
)

__all__ = ['ARMS', 'BACKBONES', 'BASELINES', 'BASELINE_ARMS', 'DenseCell', 'DenseSettings',
           'length_table', 'plan_cells', 'run_sweep', 'make_record', 'build_results', 'fmt_time',
           'apply_gate', 'dense_verdict', 'baseline_verdict', 'render_dense_markdown',
           'summarise_dense', 'task_geometry', 'measure_reach', 'baseline_reach']
