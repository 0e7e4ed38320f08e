"""The long-range probe: does a token mixer learn a dependency beyond a Gated CNN's field?

Measures the hypothesis of Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?",
arXiv 2405.07992: a state-space token mixer (SS2D, Liu et al., "VMamba: Visual State Space
Model", arXiv 2401.10166) may pay off for long-sequence tasks (a stage sees L > 6D tokens). The
probe network (:mod:`mambaout_dense.analysis.probe`) differs only in its token mixer; the task
(:mod:`mambaout_dense.datasets.synthetic.longrange`) sets the distance of the one cue a target
needs, with no image-level shortcut. The modules, one concern each:

- :mod:`.settings`: the settings, one cell, the sweep plan (axes d, L, D, shortcut);
- :mod:`.store`: the resumable JSON-lines store and each run's provenance;
- :mod:`.training`: training and evaluating a cell, its learning curve, and the cost
  (parameters, FLOPs, latency) of each configuration;
- :mod:`.stats`: intervals over seeds, ceilings, paired gaps;
- :mod:`.verdict`: sentences computed from the numbers;
- :mod:`.report`: tables and plots.
"""
from .report import plot_results, render_markdown
from .settings import AXES, DEFAULT_MIXERS, SHORTCUT_MIXERS, Cell, ProbeSettings, SweepPlan
from .stats import (
    CHANCE,
    accuracy_stat,
    binomial_interval,
    chance_reading,
    gap_reading,
    mean_std_ci,
    paired_gaps,
    summarise,
)
from .store import ResultStore, provenance
from .training import (
    EVAL_TAG,
    build_cell_model,
    evaluate,
    exit_with_parent,
    measure_cost,
    run_cell_job,
    train_cell,
)
from .verdict import verdict

__all__ = ['AXES', 'DEFAULT_MIXERS', 'SHORTCUT_MIXERS', 'Cell', 'ProbeSettings', 'SweepPlan',
           'ResultStore', 'provenance', 'EVAL_TAG', 'build_cell_model', 'evaluate',
           'exit_with_parent', 'measure_cost', 'run_cell_job', 'train_cell', 'CHANCE',
           'accuracy_stat', 'binomial_interval', 'chance_reading', 'gap_reading', 'mean_std_ci',
           'paired_gaps', 'summarise', 'verdict', 'render_markdown', 'plot_results']
