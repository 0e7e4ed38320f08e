"""README.md is a front door: short, the two commands first, a snippet that builds, and no block
that is typed by hand or stale (result headlines, configs, layout)."""
import glob
import importlib.util
import os.path as osp
import re

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
README = osp.join(REPO_ROOT, 'README.md')


def _tool():
    spec = importlib.util.spec_from_file_location(
        'update_readme', osp.join(REPO_ROOT, 'tools', 'update_readme.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _readme() -> str:
    with open(README) as f:
        return f.read()


def _code_blocks(text: str):
    return re.findall(r'```(\w*)\n(.*?)```', text, flags=re.S)


def test_readme_is_short_and_begins_with_the_two_commands_then_the_snippets():
    text = _readme()
    assert len(text.splitlines()) <= 200
    blocks = _code_blocks(text)
    assert blocks[0][0] == 'bash' and 'bash tools/quickstart.sh' in blocks[0][1]
    assert 'bash tools/run_tests.sh' in blocks[0][1]
    assert [b[0] for b in blocks[1:3]] == ['python', 'python']
    with open(osp.join(REPO_ROOT, '.ci', 'run')) as f:
        ci = f.read()
    assert re.search(r'^bash tools/run_tests\.sh$', ci, flags=re.M), 'CI runs the README command'


def test_generated_blocks_are_up_to_date():
    tool = _tool()
    text = _readme()
    assert tool.render(text, tool.blocks()) == text, 'run python tools/update_readme.py'


def test_configs_table_lists_every_config_file_and_nothing_else():
    text = _readme()
    block = text.split('<!-- configs:begin -->', 1)[1].split('<!-- configs:end -->', 1)[0]
    listed = [n for line in block.splitlines() for n in _tool().expand_braces(line)]
    on_disk = sorted(osp.basename(p) for p in glob.glob(osp.join(REPO_ROOT, 'configs', '*.py')))
    assert sorted(listed) == on_disk


def test_layout_names_every_package_folder():
    block = _readme().split('<!-- layout:begin -->', 1)[1].split('<!-- layout:end -->', 1)[0]
    pkg = osp.join(REPO_ROOT, 'mambaout_dense')
    for init in glob.glob(osp.join(pkg, '**', '__init__.py'), recursive=True):
        rel = osp.relpath(osp.dirname(init), pkg)
        if rel != '.':
            assert f'  {rel}/' in block, rel


def test_result_headlines_come_from_the_results_file():
    tool = _tool()
    with open(tool.RESULTS) as f:
        results = f.read()
    lines = tool.headlines(results).splitlines()
    present = [name for name, _, _ in tool.AREAS if f'<!-- {name}:begin -->' in results]
    assert len(lines) == len(present) >= 8
    assert all('](docs/results.md#' in line for line in lines)
    # a headline is a line of its section: a changed number there changes the README
    assert tool.headlines(results.replace('33 of 33 faults', '32 of 33 faults')) != \
        tool.headlines(results) or '33 of 33 faults' not in results


@pytest.mark.parametrize('index', [1, 2])
def test_the_config_snippets_build_their_models(index, tmp_path):
    import torch
    from mmengine.config import Config

    from mambaout_dense.builder import build_model
    code = _code_blocks(_readme())[index][1]
    path = tmp_path / 'snippet.py'
    path.write_text(code)
    cfg = Config.fromfile(str(path))
    cfg.model.backbone.pop('init_cfg', None)  # no weights offline
    cfg.model.backbone.arch = 'femto' if 'MambaOut' in cfg.model.backbone.type else 'test'
    channels = [48, 96, 192, 288] if 'neck' in cfg.model else [16, 32, 48, 64]
    if 'neck' in cfg.model:
        cfg.model.neck.in_channels = channels
    else:
        cfg.model.decode_head.in_channels = channels
        cfg.model.auxiliary_head.in_channels = channels[2]
    model = build_model(cfg)
    assert type(model.backbone).__name__ in ('MambaOut', 'VMamba')
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == channels
