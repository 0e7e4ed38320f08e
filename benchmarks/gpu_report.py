"""Report of the GPU suite: the markdown of a run (``gpu_suite.md``) and the results section
``speed-gpu``, which exists only once a run has measured something.

The run measures the Triton selective scan ("Mamba: Linear-Time Sequence Modeling with Selective
State Spaces", Gu & Dao, arXiv:2312.00752) and the MambaOut ("MambaOut: Do We Really Need Mamba
for Vision?", Yu & Wang, arXiv:2405.07992), VMamba ("VMamba: Visual State Space Model", Liu et
al., arXiv:2401.10166) and Swin-T backbones. Every row of a run is self-describing (its identity
and its status), so the report needs no plan of its own: it prints what the JSON holds, measured
or not, and says why a row has no numbers.
"""
import os
import os.path as osp
import re
import textwrap
from typing import Any, Dict, List, Optional, Sequence, Tuple

from gpu_plumbing import JSON_NAME, PARTS_DIR, merge_part, read_json

RESULTS_SECTION = 'speed-gpu'
#: Sections whose rows are measurements (the exit status counts them).
MEASURED_SECTIONS = ('scan_check', 'scan_speed', 'backbones')
DTYPE_LABELS = {'bf16': 'bf16 autocast', 'fp32': 'fp32'}


def fmt(v: Any) -> str:
    """A table cell: floats to 3 significant digits, None as 'n/a'."""
    from mambaout_dense.analysis.tables import format_value
    return format_value(v) if v is not None else 'n/a'


def rows_of(result: Dict[str, Any], section: str) -> List[Dict[str, Any]]:
    """The recorded rows of a section (empty when it is missing)."""
    return result.get('sections', {}).get(section, {}).get('rows', [])


def measured_rows(result: Dict[str, Any]) -> int:
    """How many rows of :data:`MEASURED_SECTIONS` were measured."""
    return sum(r.get('status') == 'ok' for s in MEASURED_SECTIONS for r in rows_of(result, s))


def status_text(row: Dict[str, Any]) -> Optional[str]:
    """None for a measured row, else what its cells say."""
    status = row.get('status')
    if status == 'ok':
        return None
    why = str(row.get('error') or row.get('reason') or '')[:80]
    return f'{status} ({why})' if why else str(status)


def section_note(result: Dict[str, Any], section: str) -> str:
    """A line for a section that did not finish normally, else ''."""
    entry = result.get('sections', {}).get(section)
    if entry is None:
        return f'Section `{section}`: not run.'
    if entry.get('status') == 'ok':
        return ''
    return (f'Section `{section}`: {entry.get("status")} '
            f'({entry.get("error") or entry.get("reason")}).')


def summary_lines(result: Dict[str, Any]) -> List[str]:
    """The run's headline numbers as markdown bullets (what was measured, and only that)."""
    lines = []
    checks = [r for r in rows_of(result, 'scan_check') if r.get('status') == 'ok']
    if checks:
        failed = [r['key'] for r in checks if not r['passed']]
        worst = max((r['max_error'] for r in checks if r['max_error'] is not None), default=None)
        verdict = (f'**fails** on {", ".join(failed)}' if failed
                   else f'passes {len(checks)}/{len(rows_of(result, "scan_check"))} cases')
        lines.append(f'- Triton scan vs the float64 reference: {verdict} (worst relative error '
                     f'{fmt(worst)}).')
    for row in rows_of(result, 'scan_speed'):
        if row.get('backend') == 'triton' and row.get('status') == 'ok':
            lines.append(f'- Triton scan, {row["case"]}: forward {fmt(row["fwd_ms"])} ms = '
                         f'{fmt(row["x_floor_fwd"])}x the HBM floor, forward+backward '
                         f'{fmt(row["x_floor_fwd_bwd"])}x.')
            break
    rows = [r for r in rows_of(result, 'backbones') if r.get('status') == 'ok']
    if rows:
        first = rows[0]['input']
        for key in ('mambaout_ours', 'vmamba_ours'):
            mine = [r for r in rows if r['backbone'] == key and r['input'] == first]
            parts = [f'{DTYPE_LABELS[r["dtype"]]} {fmt(r["speed_vs_swin"])}x' for r in mine
                     if 'speed_vs_swin' in r]
            if not parts:
                continue
            timm = [f'{DTYPE_LABELS[r["dtype"]]} {fmt(r["speed_vs_timm_mambaout"])}x'
                    for r in mine if 'speed_vs_timm_mambaout' in r]
            extra = f'; vs timm MambaOut-T {", ".join(timm)}' if timm else ''
            lines.append(f'- {mine[0]["model"]} vs Swin-T (timm), {first}, images/s: '
                         f'{", ".join(parts)}{extra}.')
    return lines


Cells = List[Tuple[Dict[str, Any], Dict[str, Any]]]


def table(rows: Cells, columns: List[str], ident: Sequence[str], first: str) -> str:
    """A markdown table of ``(row, cells)`` pairs; a row without numbers keeps only its
    ``ident`` cells and shows its status in column ``first``."""
    from mambaout_dense.analysis.tables import markdown_table
    out = []
    for row, cells in rows:
        status = status_text(row)
        if status:
            cells = {k: cells[k] for k in ident}
            cells[first] = status
        out.append(cells)
    return markdown_table(out, columns)


def shape_text(s: Dict[str, int]) -> str:
    """``batch x dim x L, N n, G groups``."""
    return f'{s["batch"]}x{s["dim"]}x{s["L"]}, N {s["N"]}, G {s["groups"]}'


def scan_check_cells(result: Dict[str, Any]) -> Cells:
    """The correctness rows, the preflight's first."""
    return [(r, {'case': r['key'], 'inputs': r.get('dtype', 'fp32'),
                 'shape': shape_text(r['shape']) + ('' if r.get('grads', True)
                                                    else ', forward only'),
                 'tolerance': r['tolerance'], 'max error': fmt(r.get('max_error')),
                 'passed': 'yes' if r.get('passed') else '**no**'})
            for section in ('preflight_triton', 'scan_check') for r in rows_of(result, section)]


def scan_speed_cells(result: Dict[str, Any]) -> Cells:
    """The scan speed rows."""
    return [(r, {'case': r['case'], 'shape': shape_text(r['shape']), 'backend': r['backend'],
                 'floor fwd ms': r.get('floor_fwd_ms'), 'fwd ms': r.get('fwd_ms'),
                 'x floor': r.get('x_floor_fwd'), 'fwd+bwd ms': r.get('fwd_bwd_ms'),
                 'x floor (fwd+bwd)': r.get('x_floor_fwd_bwd'),
                 'peak MiB (fwd+bwd)': fmt(r.get('peak_mib_fwd_bwd')),
                 'time vs triton': fmt(r.get('fwd_vs_triton'))})
            for r in rows_of(result, 'scan_speed')]


def backbone_cells(result: Dict[str, Any]) -> Cells:
    """The backbone rows."""
    return [(r, {'model': r['model'], 'input': r['input'],
                 'precision': DTYPE_LABELS[r['dtype']], 'images/s': r.get('images_per_s'),
                 'ms/iter': r.get('ms_per_iter'), 'peak MiB': fmt(r.get('peak_mib')),
                 'speed vs Swin-T': fmt(r.get('speed_vs_swin')),
                 'speed vs timm MambaOut-T': r.get('speed_vs_timm_mambaout', '')})
            for r in rows_of(result, 'backbones')]


def markdown_report(result: Dict[str, Any], heading: str = '###') -> str:
    """The tables of a run, every recorded row with its numbers or its status.

    Args:
        result (dict): A run's JSON.
        heading (str): Markdown heading prefix. Defaults to '###'.

    Returns:
        str: Markdown, without a trailing newline.
    """
    from gpu_preflight import verdict
    env = result.get('sections', {}).get('environment', {})
    lines = [f'{heading} GPU: Triton scan and backbone throughput (`benchmarks/gpu_suite.py`)',
             '']
    if result.get('smoke'):
        lines += ['**Smoke run on the CPU (tiny shapes, `test` archs): not GPU numbers.**', '']
    lines.append(f'{env.get("environment", "environment: not measured")}; run '
                 f'{result.get("started", "?")}, {result.get("wall_s", "?")} s; measured '
                 f'{measured_rows(result)} rows.')
    if env.get('status') == 'ok':
        rates = [f'copy {fmt(env.get("copy_gb_s"))} GB/s',
                 f'fp32 GEMM {fmt(env.get("gemm_fp32_tmac_s"))} T multiply-adds/s']
        if 'gemm_bf16_tmac_s' in env:
            rates.append(f'bf16 GEMM {fmt(env["gemm_bf16_tmac_s"])} T multiply-adds/s')
        v = env.get('versions', {})
        lines.append(', '.join(rates) + f'; torch {v.get("torch")}, triton {v.get("triton")}, '
                     f'timm {v.get("timm")}.')
        lines.append('Scan backends: ' + ', '.join(
            f'`{k}` {v}' for k, v in env.get('scan_backends', {}).items()) + '.')
    lines += [f'Preflight: {verdict(result)[1]}.', ''] + summary_lines(result) + ['']

    lines += ['Triton scan vs the float64 reference loop (max |error| / max |reference| over '
              'output, last state and all input gradients; the preflight cases first):', '',
              table(scan_check_cells(result), ['case', 'shape', 'inputs', 'max error',
                                               'tolerance', 'passed'],
                    ('case', 'shape', 'inputs', 'tolerance'), 'max error'), '',
              section_note(result, 'scan_check'), '',
              'Scan time against the HBM floor, every registered backend that runs on the device '
              'besides the loop (fp32, softplus, D and bias; floor = bytes / measured copy '
              'bandwidth; forward 4·(3·dim·L + 2·groups·N·L) bytes per image, '
              'forward+backward 4·(8·dim·L + 6·groups·N·L)):', '',
              table(scan_speed_cells(result), ['case', 'shape', 'backend', 'floor fwd ms',
                                               'fwd ms', 'x floor', 'fwd+bwd ms',
                                               'x floor (fwd+bwd)', 'peak MiB (fwd+bwd)',
                                               'time vs triton'],
                    ('case', 'shape', 'backend'), 'floor fwd ms'), '',
              section_note(result, 'scan_speed'), '',
              'Backbone training throughput, forward+backward (random weights, the four stage '
              'maps without output norms, loss = sum of their means); speed ratio > 1 means '
              'faster than Swin-T (timm) at the same input and precision:', '',
              table(backbone_cells(result), ['model', 'input', 'precision', 'images/s',
                                             'ms/iter', 'peak MiB', 'speed vs Swin-T',
                                             'speed vs timm MambaOut-T'],
                    ('model', 'input', 'precision'), 'images/s'), '',
              section_note(result, 'backbones')]
    lines = [wrap(line) for line in lines]
    return re.sub(r'\n{3,}', '\n\n', '\n'.join(lines)).strip('\n')


def wrap(line: str, width: int = 100) -> str:
    """Wrap a prose line or bullet at ``width`` (tables and headings stay as they are)."""
    if line.startswith(('|', '#')) or len(line) <= width:
        return line
    indent = '  ' if line.startswith('- ') else ''
    return textwrap.fill(line, width, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def readme_text(result: Dict[str, Any]) -> Optional[str]:
    """The ``speed-gpu`` results section of a run, or None when it measured nothing (then
    docs/results.md has no GPU section)."""
    return markdown_report(result) if measured_rows(result) else None


def write_readme(text: Optional[str], path: str) -> str:
    """Rewrite section ``speed-gpu`` of the results file at ``path``, or remove it for None.

    Returns:
        str: What was done, for the log.
    """
    from common import publish

    from mambaout_dense.analysis.tables import remove_section
    if not osp.isfile(path):
        raise FileNotFoundError(f'no results file at {path}')
    if text is not None:
        publish(RESULTS_SECTION, text, path)
        return f'section {RESULTS_SECTION!r} rewritten in {path}'
    if not remove_section(path, RESULTS_SECTION):
        return f'{path} has no section {RESULTS_SECTION!r}: nothing to remove'
    return f'section {RESULTS_SECTION!r} removed from {path} (no GPU numbers)'


def load_run(path: str) -> Dict[str, Any]:
    """A run's result from its JSON, or from its output folder: then the children's files in
    ``parts/`` are folded in for the sections the parent did not merge (a parent that was
    killed).

    Raises:
        FileNotFoundError: When neither holds a readable run.
    """
    folder = path if osp.isdir(path) else None
    result, why = read_json(osp.join(path, JSON_NAME) if folder else path)
    if result is None:
        raise FileNotFoundError(f'no readable run at {path} ({why})')
    parts_dir = osp.join(folder, PARTS_DIR) if folder else None
    if parts_dir and osp.isdir(parts_dir):
        for name in sorted(os.listdir(parts_dir)):
            child, why = read_json(osp.join(parts_dir, name))
            if child is None or not name.endswith('.json'):
                continue
            todo = [s for s, e in child.get('sections', {}).items()
                    if result['sections'].get(s, {}).get('status') in (None, 'running')]
            if todo:
                merge_part(result, name[:-5], todo, child, 'the parent ended before merging')
    return result
