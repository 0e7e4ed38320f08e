"""The scalar log of a ``tools/train.py`` run: ``<work_dir>/<timestamp>/vis_data/scalars.json``.

mmengine's visualizer writes one JSON record per line: training records carry ``iter``, ``lr``,
``time`` and the losses; validation records carry the metrics. One work dir holds one folder per
run (a resumed run adds one), in timestamp order.
"""
import glob
import json
import os.path as osp
from typing import List

__all__ = ['scalar_records']


def scalar_records(work_dir: str, newest_only: bool = False) -> List[dict]:
    """The records of every run under ``work_dir`` in order, or of the newest run only.

    Args:
        work_dir (str): The ``--work-dir`` of the runs.
        newest_only (bool): Only the last run's records. Defaults to False.

    Returns:
        list[dict]: The records; empty when no run has logged.
    """
    paths = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    records: List[dict] = []
    for path in paths[-1:] if newest_only else paths:
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records
