"""Results as files: markdown tables, CSV and JSON, and generated sections of a markdown file.

Every published number is written by the script that measured it: each script owns one section
between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` of a file it names (the repository's
docs/results.md) and rewrites it with :func:`update_section`; nothing between the markers is
edited by hand. The library knows no repository path: the scripts pass theirs.
"""
import csv
import json
import os
import os.path as osp
from typing import Any, Dict, Mapping, Optional, Sequence

__all__ = ['markdown_table', 'format_value', 'write_csv', 'write_json', 'write_text',
           'section_markers', 'update_section', 'read_section', 'remove_section']


def format_value(v: Any) -> str:
    """Floats to 3 significant digits (integers beyond 100), everything else as ``str``."""
    if isinstance(v, float):
        if v != v:  # NaN
            return 'n/a'
        return f'{v:.3g}' if abs(v) < 100 else f'{v:.0f}'
    return str(v)


def markdown_table(rows: Sequence[Mapping[str, Any]],
                   columns: Optional[Sequence[str]] = None) -> str:
    """A GitHub markdown table of dict rows.

    Args:
        rows (Sequence[Mapping]): One dict per row.
        columns (Sequence[str], optional): Column order. Defaults to the keys of the first row.

    Returns:
        str: The table, without a trailing newline.
    """
    columns = list(columns if columns is not None else (rows[0] if rows else []))
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(format_value(r.get(c, '')) for c in columns) + ' |' for r in rows]
    return '\n'.join(lines)


def write_text(path: str, text: str) -> str:
    """Write ``text`` to ``path`` (folders created); returns the path."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    return path


def write_json(path: str, obj: Any) -> str:
    """Write ``obj`` as indented JSON; returns the path."""
    return write_text(path, json.dumps(obj, indent=1) + '\n')


def write_csv(rows: Sequence[Dict[str, Any]], path: str) -> str:
    """Write dict rows to ``path`` (columns = keys of the first row); returns the path."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ['empty'])
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in r.items()})
    return path


def section_markers(name: str) -> tuple:
    """The (begin, end) markers of section ``name``."""
    return f'<!-- {name}:begin -->', f'<!-- {name}:end -->'


def update_section(path: str, name: str, text: str) -> bool:
    """Replace the text between the markers of section ``name`` (appended when missing).

    Args:
        path (str): The markdown file.
        name (str): Section name (``speed-backbone``, ``complexity``, ...).
        text (str): The new content (a trailing newline is added when missing).

    Returns:
        bool: False when the file does not exist (nothing written).
    """
    if not osp.isfile(path):
        return False
    begin, end = section_markers(name)
    with open(path) as f:
        content = f.read()
    if begin not in content or end not in content:
        content = content.rstrip('\n') + f'\n\n{begin}\n{end}\n'
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    body = text if text.endswith('\n') else text + '\n'
    write_text(path, f'{head}{begin}\n{body}{end}{tail}')
    return True


def read_section(path: str, name: str) -> Optional[str]:
    """The current text of section ``name``, or None when the file or the markers are missing."""
    if not osp.isfile(path):
        return None
    begin, end = section_markers(name)
    with open(path) as f:
        content = f.read()
    if begin not in content or end not in content:
        return None
    return content.split(begin, 1)[1].split(end, 1)[0].strip('\n')


def remove_section(path: str, name: str) -> bool:
    """Delete section ``name`` with its markers; False when it is not there."""
    if read_section(path, name) is None:
        return False
    begin, end = section_markers(name)
    with open(path) as f:
        content = f.read()
    head, rest = content.split(begin, 1)
    tail = rest.split(end, 1)[1]
    write_text(path, head.rstrip('\n') + '\n\n' + tail.lstrip('\n') if tail.strip()
               else head.rstrip('\n') + '\n')
    return True
