#!/usr/bin/env python
"""Regenerate the generated blocks of README.md: result headlines, the Configs table, the Layout.

- ``headlines``: one line per result area, read from the area's section of docs/results.md
  (written by the benchmark or tool named in the section's heading), linking to it;
- ``configs``: every file in configs/, grouped by algorithm and variant, one column per backbone
  family (the names follow ``{algorithm}_{backbone}_{size}[_{variant}].py``);
- ``layout``: the package's folders and top-level modules with the first sentence of their
  docstrings, and the repository's folders.

Nothing in these blocks is typed by hand; ``tests/test_readme.py`` fails when one is stale.

    python tools/update_readme.py            # rewrite the blocks in README.md
    python tools/update_readme.py --check    # exit 1 when a block is stale
"""
import argparse
import ast
import glob
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
README = osp.join(REPO_ROOT, 'README.md')
RESULTS = osp.join(REPO_ROOT, 'docs', 'results.md')

#: Result areas: (section in docs/results.md, its heading there, the headline's pattern; group 1
#: is the headline). An area whose section is absent (the GPU before a GPU run) is left out.
AREAS: List[Tuple[str, str, str]] = [
    ('complexity', 'Model size', r'^(\d+ of \d+ configs are within the targets)'),
    ('speed-backbone', 'Backbone speed', r'^- (Speed >= .*)$'),
    ('speed-scan', 'Selective scan speed', r'^- (Forward at d_state 16 .*)$'),
    ('speed-detector', 'Detector speed', r'^Target: (.*)$'),
    ('speed-segmentor', 'Segmentor speed', r'^Target: (.*)$'),
    ('speed-gpu', 'GPU', r'^(.*\d.*)$'),
    ('main-job', 'Quickstart detection', r'^(Reached within .*)$'),
    ('main-job-seg', 'Quickstart segmentation', r'^(Reached within .*)$'),
    ('long-sequence', 'Long-sequence hypothesis', r'^\*\*In one line:\*\* (.*)$'),
    ('longrange-upernet', 'Long range in the real stack', r'^\*\*In one line:\*\* (.*)$'),
    ('longrange-maskrcnn', 'Long range in the real stack', r'^\*\*In one line:\*\* (.*)$'),
    ('reliability', 'Reliability', r'^(\d+ of \d+ faults handled as expected.*)$'),
]
ALGORITHMS = {'mask_rcnn': 'Mask R-CNN', 'upernet': 'UperNet'}
BACKBONES = ('mambaout', 'vmamba', 'hybrid')
#: Shortcut baselines (mambaout_dense.analysis.dense_longrange.plan.BASELINES) -> the backbone
#: family they are cut from: a row of their own, in that family's column.
BASELINES = {'local': 'mambaout'}
VARIANTS = {'3x': '3x, multi-scale', 'synthetic': 'CPU-sized, synthetic data',
            'longrange': 'long-range arm (Femto)', 'baseline': 'shortcut baseline'}
#: The variant of a config without one: its algorithm's standard schedule.
STANDARD = {'mask_rcnn': '1x (12 epochs)', 'upernet': '160k iterations'}
REPO_FOLDERS = [
    ('configs/', '`_base_/` plus one file per experiment (`{algorithm}_{backbone}_{size}.py`)'),
    ('tools/', 'command lines: install, train/test/demo, dist/slurm launchers, analysis, '
     'converters, this README\'s generator'),
    ('benchmarks/', 'side-by-side speed and size comparisons; each rewrites its section of '
     'docs/results.md'),
    ('docs/', 'results.md (every generated result) and the reasoning behind the experiments'),
    ('tests/', 'pytest, mirroring the package (markers: slow, gpu); CI runs everything a CPU can'),
]


def _section(text: str, name: str) -> Optional[str]:
    begin, end = f'<!-- {name}:begin -->', f'<!-- {name}:end -->'
    if begin not in text or end not in text:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    return re.sub(r'[^a-z0-9 -]', '', heading.lower()).replace(' ', '-')


def headlines(results_text: str) -> str:
    """The headline block: one bullet per result area present in docs/results.md."""
    lines = []
    for name, heading, pattern in AREAS:
        body = _section(results_text, name)
        if body is None:
            continue
        m = next((m for m in (re.match(pattern, line) for line in body.splitlines()) if m), None)
        text = m.group(1).rstrip(':;') if m else 'see the section'
        lines.append(f'- **[{heading}](docs/results.md#{_anchor(heading)})**: {text}')
    return '\n'.join(lines)


def _parse_config(stem: str) -> Tuple[str, str, str, str]:
    """(algorithm, variant, backbone, size) of a config name; backbone '' for a data config."""
    algo = next(a for a in sorted(ALGORITHMS, key=len, reverse=True) if stem.startswith(a + '_'))
    parts = stem[len(algo) + 1:].split('_')
    pre = []
    while parts and parts[0] not in BACKBONES and parts[0] not in BASELINES:
        pre.append(parts.pop(0))
    if not parts:  # no backbone: a config of the data only (e.g. the long-range set)
        return algo, '_'.join(pre[:1]), '', '_'.join(pre[1:])
    backbone, size, post = parts[0], parts[1], parts[2:]
    if backbone in BASELINES:
        backbone, post = BASELINES[backbone], [*post, 'baseline']
    return algo, '_'.join(pre + post), backbone, size


def configs_table(config_dir: str) -> str:
    """Every config, grouped: rows (algorithm, variant), columns backbone families."""
    stems = sorted(osp.splitext(osp.basename(p))[0]
                   for p in glob.glob(osp.join(config_dir, '*.py')))
    groups: Dict[Tuple[str, str], Dict[str, List[str]]] = {}
    for stem in stems:
        algo, variant, backbone, size = _parse_config(stem)
        groups.setdefault((algo, variant), {}).setdefault(backbone, []).append((size, stem))
    order = {'femto': 0, 'kobe': 1, 't': 2, 's': 3, 'b': 4}
    lines = ['| task | variant | MambaOut | VMamba (v2) | hybrid | data only |',
             '|---|---|---|---|---|---|']
    for (algo, variant), by_backbone in sorted(groups.items(),
                                                key=lambda kv: (kv[0][0], kv[0][1] != '',
                                                                kv[0][1])):
        cells = []
        for backbone in (*BACKBONES, ''):
            items = sorted(by_backbone.get(backbone, []), key=lambda it: order.get(it[0], 9))
            if not items:
                cells.append('')
            elif len(items) == 1:
                cells.append(f'`{items[0][1]}.py`')
            else:
                head, tail = _common_affixes([s for _, s in items])
                inner = ','.join(s[len(head):len(s) - len(tail) or None] for _, s in items)
                cells.append(f'`{head}{{{inner}}}{tail}.py`')
        label = ' '.join(VARIANTS.get(v, v) for v in variant.split('_')) if variant else \
            STANDARD[algo]
        lines.append(f'| {ALGORITHMS[algo]} | {label} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _common_affixes(names: List[str]) -> Tuple[str, str]:
    head = osp.commonprefix(names)
    head = head[:head.rfind('_') + 1]
    tail = osp.commonprefix([n[len(head):][::-1] for n in names])[::-1]
    tail = tail[tail.find('_'):] if '_' in tail else ''
    return head, tail


def expand_braces(cell: str) -> List[str]:
    """File names of a table cell: `a_{x,y}_b.py` -> [a_x_b.py, a_y_b.py]."""
    out = []
    for name in re.findall(r'`([^`]+)`', cell):
        m = re.match(r'^(.*)\{([^}]*)\}(.*)$', name)
        out += [m.group(1) + x + m.group(3) for x in m.group(2).split(',')] if m else [name]
    return out


def _first_sentence(path: str) -> str:
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ''
    text = ' '.join(doc.split('\n\n', 1)[0].split())
    m = re.match(r'^(.*?\.)(\s|$)', text)
    text = (m.group(1) if m else text).rstrip('.')
    text = re.sub(r':\w+:`([^`]*)`', r'`\1`', text)  # Sphinx roles -> code
    return text.replace('``', '`')


def layout(package_dir: str) -> str:
    """The package's folders and top-level modules, then the repository's folders."""
    name = osp.basename(package_dir)
    rows = [(f'{name}/', _first_sentence(osp.join(package_dir, '__init__.py')))]
    for path in sorted(glob.glob(osp.join(package_dir, '*.py'))):
        base = osp.basename(path)
        if base not in ('__init__.py', 'version.py'):
            rows.append((f'  {base}', _first_sentence(path)))
    for init in sorted(glob.glob(osp.join(package_dir, '*', '__init__.py'))
                       + glob.glob(osp.join(package_dir, '*', '*', '__init__.py'))):
        rel = osp.relpath(osp.dirname(init), package_dir)
        rows.append((f'  {rel}/', _first_sentence(init)))
    rows += REPO_FOLDERS
    width = max(len(a) for a, _ in rows) + 2
    return '```\n' + '\n'.join(f'{a.ljust(width)}{b}' for a, b in rows) + '\n```'


def blocks() -> Dict[str, str]:
    with open(RESULTS) as f:
        results_text = f.read()
    return dict(headlines=headlines(results_text),
                configs=configs_table(osp.join(REPO_ROOT, 'configs')),
                layout=layout(osp.join(REPO_ROOT, 'mambaout_dense')))


def render(readme_text: str, new_blocks: Dict[str, str]) -> str:
    for name, body in new_blocks.items():
        begin, end = f'<!-- {name}:begin -->', f'<!-- {name}:end -->'
        if begin not in readme_text or end not in readme_text:
            raise SystemExit(f'error: README.md has no {begin} ... {end} block')
        head, rest = readme_text.split(begin, 1)
        _, tail = rest.split(end, 1)
        readme_text = f'{head}{begin}\n{body}\n{end}{tail}'
    return readme_text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--check', action='store_true', help='exit 1 when a block is stale')
    args = parser.parse_args(argv)
    with open(README) as f:
        current = f.read()
    new = render(current, blocks())
    if args.check:
        if new != current:
            print('README.md is stale: run python tools/update_readme.py', file=sys.stderr)
            return 1
        return 0
    if new != current:
        with open(README, 'w') as f:
            f.write(new)
        print('README.md blocks rewritten')
    return 0


if __name__ == '__main__':
    sys.exit(main())
