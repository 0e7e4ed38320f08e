"""Tools with bad arguments end with a usage error (exit status 2 and one message), never a
traceback: missing files, bad ``--cfg-options`` syntax, unknown keys, unusable work dirs, a
distributed launcher without torchrun, missing data.

The tools' ``main(argv)`` run in this process; one test runs ``tools/train.py`` as a user does.
"""
import pytest

from .helpers import DET_CONFIG, SEG_CONFIG, explain, load_tool, run_tool, usage_error


@pytest.fixture(scope='module')
def train():
    return load_tool('train.py')


@pytest.fixture(scope='module')
def test_tool():
    return load_tool('test.py')


@pytest.mark.parametrize('options, expected', [
    (['train_cfg.max_iters'], 'expected KEY=VALUE, got \'train_cfg.max_iters\''),
    (['=3'], "expected KEY=VALUE, got '=3'"),
    (['train_cfg.max_iters=[1,2'], 'cannot parse \'train_cfg.max_iters=[1,2\': Imbalanced'),
    (['model.backbone.arch=(a,b]'], 'Imbalanced brackets'),
])
def test_bad_cfg_options_syntax(train, test_tool, capsys, options, expected):
    usage_error(train.main, [DET_CONFIG, '--cfg-options', *options], capsys,
                 'argument --cfg-options:', expected, 'usage:')
    usage_error(test_tool.main, [DET_CONFIG, 'x.pth', '--cfg-options', *options], capsys,
                 'argument --cfg-options:', expected)


def test_unknown_cfg_options_key_names_close_matches(train, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    usage_error(train.main, [DET_CONFIG, '--cfg-options', 'train_cfg.max_iter=5'], capsys,
                 "the config has no key 'train_cfg.max_iter'", 'Did you mean: train_cfg.max_iters',
                 '+train_cfg.max_iter=')


def test_missing_config(train, test_tool, capsys):
    usage_error(train.main, ['configs/nope.py'], capsys,
                 "Config file not found: 'configs/nope.py'")
    usage_error(test_tool.main, ['configs/nope.py', 'x.pth'], capsys, 'Config file not found')
    demo = load_tool('demo.py')
    usage_error(demo.main, [DET_CONFIG, 'configs/nope.py', 'x.pth', '--out', 'o.png'], capsys,
                 f'cannot decode image: {DET_CONFIG!r}')  # the arguments in the wrong order


def test_missing_checkpoints_and_images(train, test_tool, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    usage_error(train.main, [DET_CONFIG, '--resume', 'missing.pth'], capsys,
                 "--resume: checkpoint not found: 'missing.pth'")
    usage_error(test_tool.main, [SEG_CONFIG, 'missing.pth'], capsys,
                 "checkpoint not found: 'missing.pth'")
    demo = load_tool('demo.py')
    usage_error(demo.main, ['missing.jpg', DET_CONFIG, 'x.pth', '--out', 'o.png'], capsys,
                 "image not found: 'missing.jpg'")
    (tmp_path / 'empty.jpg').write_bytes(b'')
    usage_error(demo.main, ['empty.jpg', DET_CONFIG, 'x.pth', '--out', 'o.png'], capsys,
                 "cannot decode image: 'empty.jpg'")
    import cv2
    import numpy as np
    cv2.imwrite(str(tmp_path / 'image.png'), np.zeros((8, 8, 3), np.uint8))
    usage_error(demo.main, ['image.png', DET_CONFIG, 'missing.pth', '--out', 'o.png'], capsys,
                 "Checkpoint file not found: 'missing.pth'")
    converter = load_tool('model_converters', 'mambaout2mmdet.py')
    usage_error(converter.main, ['missing.pth', 'out.pth'], capsys,
                 "Checkpoint file not found: 'missing.pth'")


def test_unusable_work_dir(train, tmp_path, capsys):
    (tmp_path / 'a_file').write_text('')
    usage_error(train.main, [DET_CONFIG, '--work-dir', str(tmp_path / 'a_file')], capsys,
                 'is a file, not a folder')
    usage_error(train.main, [DET_CONFIG, '--work-dir', str(tmp_path / 'a_file' / 'sub')], capsys,
                 'cannot create the work dir')


def test_distributed_launcher_without_torchrun(train, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('RANK', raising=False)
    usage_error(train.main, [DET_CONFIG, '--launcher', 'pytorch'], capsys,
                 '--launcher pytorch needs the environment torchrun sets',
                 'tools/dist_train.sh')


def test_missing_data_says_how_to_get_it(train, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    usage_error(train.main, [SEG_CONFIG], capsys, 'train_dataloader: data_root not found',
                 'make_synthetic.py ade')


def test_unknown_choices_and_flags(train, capsys):
    usage_error(train.main, [DET_CONFIG, '--launcher', 'mpi'], capsys, "invalid choice: 'mpi'")
    usage_error(train.main, [DET_CONFIG, '--on-divergence', 'ignore'], capsys,
                 "invalid choice: 'ignore'")
    usage_error(train.main, [DET_CONFIG, '--epochs', '3'], capsys,
                 'unrecognized arguments: --epochs 3')


@pytest.mark.slow
def test_train_command_line_with_bad_syntax(tmp_path):
    """As a user runs it: exit status 2, the usage line and the error, no traceback."""
    proc = run_tool('train.py', DET_CONFIG, '--cfg-options', 'train_cfg.max_iters',
                    cwd=str(tmp_path))
    assert proc.returncode == 2, explain(proc)
    assert 'usage: train.py' in proc.stderr and 'expected KEY=VALUE' in proc.stderr
    assert 'Traceback' not in proc.output, explain(proc)
