"""Plumbing of the GPU suite (``benchmarks/gpu_suite.py``): atomic files, the clock, sections
whose rows survive a fault, and child processes with caps of their own.

The suite times the Triton kernels of the Mamba selective scan ("Mamba: Linear-Time Sequence
Modeling with Selective State Spaces", Gu & Dao, arXiv:2312.00752) and the MambaOut ("MambaOut:
Do We Really Need Mamba for Vision?", Yu & Wang, arXiv:2405.07992) and VMamba ("VMamba: Visual
State Space Model", Liu et al., arXiv:2401.10166) backbones on a lent GPU that it gets one call
on, so this module is written for the ways that call can go wrong:

- Every JSON file is written atomically (a temporary file, then ``os.replace``), after every row,
  so whatever kills the process leaves the last complete file.
- A *fault* (a CUDA error that leaves the context unusable, or the exception that
  ``--inject-fault`` raises) marks its row and the later rows of its section, never the earlier
  ones, and the sections after it in the same process are skipped; any other exception marks its
  row only. ``torch.cuda.empty_cache`` is not called after a fault (it would raise again).
- The clock is a wall-clock deadline (``time.time()``), handed to each child process, so that the
  child's budget and the parent's kill timer count from the same instant.

The standard library only at module level: the preflight uses this module before it knows
whether torch, mmengine or the package import.
"""
import json
import os
import os.path as osp
import subprocess
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SUITE_SCRIPT = osp.join(REPO_ROOT, 'benchmarks', 'gpu_suite.py')
JSON_NAME = 'gpu_suite.json'
MD_NAME = 'gpu_suite.md'
#: Folder (under the output folder) of the child processes' own JSON files, one per part.
PARTS_DIR = 'parts'
SCHEMA = 2
#: No row starts in the last RESERVE_S seconds before a deadline.
RESERVE_S = 10.0
#: A child is killed this many seconds after its deadline.
KILL_GRACE_S = 5.0
#: A part is skipped when it would get fewer seconds than this.
MIN_PART_S = 15.0
#: Optional modules that ``mmengine.optim`` tries at import (extra optimizers). The suite uses
#: none; an installed one that raises something other than ImportError at import (transformers
#: on the device image, say) would fail ``import mambaout_dense.models``.
OPTIONAL_IMPORTS = ('transformers', 'bitsandbytes', 'dadaptation', 'lion_pytorch', 'Sophia')


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------


def atomic_write_text(path: str, text: str) -> str:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``; returns the path."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_json(path: str, obj: Any) -> str:
    """Write ``obj`` as indented JSON, atomically; returns the path."""
    return atomic_write_text(path, json.dumps(obj, indent=1, default=str) + '\n')


def read_json(path: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """``(content, None)``, or ``(None, why it could not be read)``; never raises."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None, 'no file'
    except (OSError, ValueError) as e:
        return None, f'{type(e).__name__}: {e}'
    if not isinstance(data, dict):
        return None, 'not a JSON object'
    return data, None


# ------------------------------------------------------------------------------------------
# Faults
# ------------------------------------------------------------------------------------------


class InjectedFault(RuntimeError):
    """What ``--inject-fault`` raises in a row: handled as a CUDA fault is."""


class SkipRow(Exception):
    """Raised by a row's function when the row cannot run here (the message says why)."""


class SectionFault(Exception):
    """Raised by :meth:`Suite.row` after a fault: it ends the section."""


def device_healthy(device: str) -> bool:
    """Whether ``device`` still runs work (a sticky CUDA error makes every call raise)."""
    if not device.startswith('cuda'):
        return True
    try:
        import torch
        torch.cuda.synchronize(device)
        return torch.ones(1, device=device).add_(1).item() == 2.0
    except Exception:  # noqa: BLE001 - any failure means the context is unusable
        return False


def is_fault(exc: BaseException, device: str) -> bool:
    """Whether ``exc`` left ``device`` unusable: an injected fault, or any exception after which
    the device no longer runs a tiny kernel (out-of-memory errors never are)."""
    if isinstance(exc, InjectedFault):
        return True
    if type(exc).__name__ == 'OutOfMemoryError':
        return False
    return not device_healthy(device)


def release_cached_memory(device: str) -> None:
    """``torch.cuda.empty_cache()`` where it cannot raise: only on a CUDA device, guarded."""
    if not device.startswith('cuda'):
        return
    try:
        import torch
        torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - a broken context; the caller records the fault
        pass


def block_optional_imports() -> List[str]:
    """Make ``import NAME`` raise ImportError for the :data:`OPTIONAL_IMPORTS` not yet loaded.

    mmengine catches ImportError only; returns the names blocked.
    """
    blocked = [name for name in OPTIONAL_IMPORTS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    return blocked


def third_party_modules() -> List[str]:
    """Top-level modules loaded in this process that are neither stdlib nor this repository's."""
    std = set(getattr(sys, 'stdlib_module_names', ()))
    ours = tuple(osp.join(REPO_ROOT, d) + os.sep for d in ('mambaout_dense', 'benchmarks'))
    tops = {}
    for name, module in list(sys.modules.items()):
        if module is not None and '.' not in name:
            tops[name] = osp.abspath(getattr(module, '__file__', None) or '')
    return sorted(t for t, path in tops.items() if t not in std and not t.startswith('_')
                  and not path.startswith(ours) and t != '__main__')


# ------------------------------------------------------------------------------------------
# The run: clock, sections, rows
# ------------------------------------------------------------------------------------------


class Suite:
    """One process's part of a run: its result dict, its clock and its JSON file.

    Args:
        out (str): Output folder.
        deadline (float): ``time.time()`` by which this process must be done.
        name (str): Prefix of the progress lines. Defaults to 'gpu_suite'.
        json_path (str, optional): The JSON file. Defaults to ``out/gpu_suite.json``.
        device (str): Where rows run; decides what a fault is. Defaults to 'cpu'.
        inject (Mapping[str, int], optional): Section -> index of the row that raises an
            :class:`InjectedFault` (negative: from the end of the section's plan).
        report (Callable, optional): ``report(result) -> markdown``, written beside the JSON.
    """

    def __init__(self, out: str, deadline: float, name: str = 'gpu_suite',
                 json_path: Optional[str] = None, device: str = 'cpu',
                 inject: Optional[Mapping[str, int]] = None,
                 report: Optional[Callable[[Dict[str, Any]], str]] = None) -> None:
        self.out = out
        self.name = name
        self.t0 = time.time()
        self.deadline = deadline
        self.part_deadline: Optional[float] = None
        self.json_path = json_path or osp.join(out, JSON_NAME)
        self.device = device
        self.inject = dict(inject or {})
        self.report = report
        self.fault: Optional[str] = None
        self.running: Optional[str] = None
        self._inject_at: Optional[int] = None
        self.result: Dict[str, Any] = {
            'suite': 'gpu_suite', 'schema': SCHEMA,
            'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
            'budget_s': round(deadline - self.t0, 1), 'sections': {}
        }

    def elapsed(self) -> float:
        """Seconds since this process's suite started."""
        return time.time() - self.t0

    def left(self) -> float:
        """Seconds left before the last row may start (the part's cap counts, see run_part)."""
        end = self.deadline if self.part_deadline is None else min(self.deadline,
                                                                   self.part_deadline)
        return end - RESERVE_S - time.time()

    def log(self, msg: str) -> None:
        """Print a progress line with the wall clock and the elapsed seconds."""
        print(f'[{self.name} {time.strftime("%H:%M:%S")} +{self.elapsed():6.1f}s] {msg}',
              flush=True)

    def section(self, name: str, fn: Callable[[], Optional[Dict[str, Any]]],
                plan: Sequence[Mapping[str, Any]] = (),
                finish: Optional[Callable[[List[Dict[str, Any]]], None]] = None
                ) -> Dict[str, Any]:
        """Run one section; its rows are kept whatever happens after them.

        Args:
            name (str): Section name (key in ``result['sections']``).
            fn (Callable): Measures the rows through :meth:`row` and returns the section's
                other fields (or None); raises :class:`SkipRow` when the section cannot run.
            plan (Sequence[Mapping]): The rows the section means to measure (each with a
                ``key``); those it did not reach are recorded as 'not run' or 'skipped'.
            finish (Callable, optional): Derives fields across the recorded rows (ratios); runs
                after a fault or an error too.

        Returns:
            dict: The recorded entry (``status`` 'ok', 'fault', 'error' or 'skipped').
        """
        self.log(f'section {name}: start')
        start = time.time()
        rows: List[Dict[str, Any]] = []
        entry: Dict[str, Any] = {'status': 'running', 'rows': rows}
        self.result['sections'][name] = entry
        index = self.inject.get(name)
        self._inject_at = None if index is None else index % max(len(plan), 1)
        if self.fault:
            entry.update(status='skipped', reason=f'the device faulted earlier ({self.fault})')
        elif self.left() <= 0:
            entry.update(status='skipped', reason='time budget spent')
        else:
            self.running = name
            self.write()  # 'running': a process killed in the section is seen as such
            try:
                entry.update(fn() or {})
                entry['status'] = 'ok'
            except SkipRow as e:  # the whole section cannot run here
                entry.update(status='skipped', reason=str(e))
            except SectionFault as e:
                entry.update(status='fault', error=str(e))
            except Exception as e:  # noqa: BLE001 - one failing section must not lose the rest
                entry.update(status='error', error=f'{type(e).__name__}: {e}',
                             traceback=traceback.format_exc()[-3000:])
            finally:
                self.running = None
        entry['rows'] = rows  # a section's function cannot drop the rows already recorded
        done = {r.get('key') for r in rows}
        left_out = 'skipped' if entry['status'] == 'skipped' else 'not run'
        why = entry.get('reason') or f'after the {entry["status"]} in this section'
        rows += [dict(r, status=left_out, reason=why) for r in plan if r['key'] not in done]
        if finish is not None:
            try:
                finish(rows)
            except Exception as e:  # noqa: BLE001 - derived fields are optional
                entry['finish_error'] = f'{type(e).__name__}: {e}'
        entry['seconds'] = round(time.time() - start, 2)
        self.log(f'section {name}: {entry["status"]} in {entry["seconds"]} s'
                 + (f' ({entry.get("error") or entry.get("reason")})'
                    if entry['status'] != 'ok' else ''))
        self.write()
        return entry

    def row(self, ident: Mapping[str, Any], fn: Callable[[], Dict[str, Any]],
            need_s: float = 0.0) -> Dict[str, Any]:
        """Measure one row of the running section and write it at once.

        Args:
            ident (Mapping): The row's identity (``key`` and what the report shows).
            fn (Callable): Returns the measured values; raises :class:`SkipRow` to skip.
            need_s (float): Seconds the row is expected to take; it is skipped when fewer are
                left. Defaults to 0.

        Returns:
            dict: The row, with ``status`` 'ok', 'error', 'fault' or 'skipped'.

        Raises:
            SectionFault: After a fault, once the row is written.
        """
        rows = self.result['sections'][self.running]['rows']
        row = dict(ident)
        start = time.time()
        if self.left() < need_s or self.left() <= 0:
            row.update(status='skipped', reason=f'time budget ({self.left():.0f} s left)')
        else:
            try:
                if self._inject_at == len(rows):
                    raise InjectedFault(f'fault injected in row {len(rows)} of {self.running}')
                row.update(fn())
                row['status'] = 'ok'
            except SkipRow as e:
                row.update(status='skipped', reason=str(e))
            except Exception as e:  # noqa: BLE001 - one failing row must not lose the others
                fault = is_fault(e, self.device)
                row.update(status='fault' if fault else 'error',
                           error=f'{type(e).__name__}: {str(e)[:500]}')
                if type(e).__name__ != 'OutOfMemoryError':
                    row['traceback'] = traceback.format_exc()[-2000:]
                if fault:
                    self.fault = f'{self.running}: {row["key"]}'
            if self.fault is None:
                release_cached_memory(self.device)
        row['seconds'] = round(time.time() - start, 2)
        detail = {k: v for k, v in row.items() if k not in ('key', 'traceback')}
        self.log(f'  {row["key"]}: {json.dumps(detail, default=str)[:400]}')
        rows.append(row)
        self.write()
        if row['status'] == 'fault':
            raise SectionFault(f'fault in row {row["key"]!r}: {row["error"]}')
        return row

    def write(self) -> str:
        """Write the JSON (atomically), then the markdown when there is a report; returns the
        JSON's path."""
        self.result['wall_s'] = round(self.elapsed(), 2)
        path = atomic_write_json(self.json_path, self.result)
        if self.report is not None:
            try:
                atomic_write_text(osp.join(self.out, MD_NAME), self.report(self.result) + '\n')
            except Exception as e:  # noqa: BLE001 - the JSON is what counts
                self.result['report_error'] = f'{type(e).__name__}: {e}'
        return path


# ------------------------------------------------------------------------------------------
# Parts in child processes
# ------------------------------------------------------------------------------------------


def part_budget(suite: Suite, cap_s: float, later_caps_s: float) -> float:
    """Seconds a part may take: its cap, and at most its share of the time left, in proportion
    to its cap and the caps of the parts after it (so it cannot take their time, and what an
    earlier part left unused goes to the later ones)."""
    return min(cap_s, (suite.deadline - time.time()) * cap_s / (cap_s + later_caps_s))


def mark_part(result: Dict[str, Any], sections: Sequence[str], status: str, reason: str) -> None:
    """Record every section of a part that did not run, with its planned rows."""
    plan = result.get('plan', {})
    for name in sections:
        result['sections'][name] = {
            'status': status, 'reason': reason,
            'rows': [dict(r, status=status, reason=reason) for r in plan.get(name, [])]}


def merge_part(result: Dict[str, Any], part: str, sections: Sequence[str],
               child: Optional[Dict[str, Any]], ended: str, why: Optional[str] = None) -> None:
    """Fold a child's JSON into the run's result; what the child did not finish is marked.

    In a section the child was running when it ended, the first row it did not record is the one
    it was measuring (status 'error', the child's end as the reason); the later ones are 'not run'.
    """
    child = child or {}
    result.setdefault('children', {})[part] = {
        'ended': ended, 'modules': child.get('modules', []), 'json_error': why}
    for key in ('triton_interpret', ):
        if key in child:
            result.setdefault(key, child[key])
    plan = result.get('plan', {})
    for name in sections:
        entry = child.get('sections', {}).get(name)
        if entry is None:
            note = f'; its JSON: {why}' if why else ''
            mark_part(result, [name], 'error', f'the child process ended ({ended}) before the '
                      f'section started{note}')
            continue
        if entry.get('status') == 'running':
            entry.update(status='error', error=f'the child process ended ({ended}) during the '
                         'section; the rows it finished are kept')
            rows = entry.setdefault('rows', [])
            done = {r.get('key') for r in rows}
            todo = [r for r in plan.get(name, []) if r['key'] not in done]
            for i, r in enumerate(todo):
                rows.append(dict(r, status='error' if i == 0 else 'not run',
                                 reason=f'the child process ended ({ended})' if i == 0
                                 else 'after the child process ended'))
        result['sections'][name] = entry


def run_child(suite: Suite, part: str, sections: Sequence[str], budget_s: float,
              args: Sequence[str]) -> str:
    """Run one part of the suite in a child process with ``budget_s`` seconds, and merge it.

    The child gets the deadline (``--deadline``), writes ``PARTS_DIR/<part>.json`` after every
    row, and is killed :data:`KILL_GRACE_S` after its deadline; its JSON is read with a guard.

    Returns:
        str: How the child ended.
    """
    if budget_s < MIN_PART_S:
        mark_part(suite.result, sections, 'skipped', f'time budget ({budget_s:.0f} s left)')
        suite.log(f'part {part}: skipped ({budget_s:.0f} s left)')
        suite.write()
        return 'not started'
    deadline = time.time() + budget_s
    path = osp.join(suite.out, PARTS_DIR, f'{part}.json')
    if osp.exists(path):
        os.remove(path)  # a stale file of an earlier run must not pass for this one
    cmd = [sys.executable, SUITE_SCRIPT, '--child-part', part, '--out', suite.out,
           '--deadline', f'{deadline:.3f}', *args]
    suite.log(f'part {part}: child process, {budget_s:.0f} s')
    try:
        code = subprocess.run(cmd, timeout=max(1.0, deadline + KILL_GRACE_S - time.time()))
        ended = f'exit status {code.returncode}'
    except subprocess.TimeoutExpired:
        ended = f'killed at its cap of {budget_s:.0f} s'
    child, why = read_json(path)
    merge_part(suite.result, part, sections, child, ended, why)
    suite.log(f'part {part}: child {ended}')
    suite.write()
    return ended
