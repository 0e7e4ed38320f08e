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


# --------------------------------------------------------------------------------------------
# Requests the machine cannot honour: one line, exit 2 (CUDA is hidden where the machine has it)
# --------------------------------------------------------------------------------------------
@pytest.fixture
def no_cuda(monkeypatch):
    import mmengine.device
    import torch
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(mmengine.device, 'get_device', lambda: 'cpu')


def test_a_cuda_device_on_a_machine_without_cuda(no_cuda, tmp_path, capsys):
    import cv2
    import numpy as np
    image = str(tmp_path / 'image.png')
    cv2.imwrite(image, np.zeros((8, 8, 3), np.uint8))
    demo = load_tool('demo.py')
    for device in ('cuda:0', 'cuda'):
        usage_error(demo.main, [image, DET_CONFIG, 'x.pth', '--out', 'o.png', '--device', device],
                    capsys, f'--device {device}: CUDA is not available on this machine',
                    'use --device cpu')
    usage_error(demo.main, [image, DET_CONFIG, 'x.pth', '--out', 'o.png', '--device', 'gpu0'],
                capsys, "--device 'gpu0' is not a device")
    usage_error(load_tool('analysis', 'erf.py').main, ['mambaout_test', '--device', 'cuda:1'],
                capsys, '--device cuda:1: CUDA is not available')
    usage_error(load_tool('analysis', 'scaling.py').main, ['--quick', '--device', 'cuda'],
                capsys, '--device cuda: CUDA is not available')


@pytest.mark.parametrize('argv', [['--amp'],
                                  ['--cfg-options', 'optim_wrapper.type=AmpOptimWrapper']],
                         ids=['flag', 'config'])
def test_mixed_precision_on_a_cpu(train, no_cuda, argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / 'w'
    usage_error(train.main, [DET_CONFIG, '--work-dir', str(work), *argv], capsys,
                'mixed precision', 'needs a GPU', 'optim_wrapper.type=OptimWrapper')
    assert not work.exists()


@pytest.mark.parametrize('source', ['environment', 'config'])
def test_a_scan_backend_that_cannot_run_here(source, capsys, monkeypatch):
    """A CUDA-only backend chosen by the environment or the config, refused when the model is
    built (not at its first forward pass)."""
    from mambaout_dense.ops import available_backends
    unusable = [n for n in ('triton', 'mamba_ssm') if n not in available_backends()]
    if not unusable:
        pytest.skip('every CUDA-only backend runs on this machine')
    name = unusable[0]
    tool = load_tool('analysis', 'long_sequence.py')
    if source == 'environment':
        monkeypatch.setenv('MAMBAOUT_DENSE_SCAN_BACKEND', name)
        usage_error(tool.main, ['vmamba_test'], capsys,
                    f"backend '{name}' (from the environment variable "
                    'MAMBAOUT_DENSE_SCAN_BACKEND) cannot run here', 'Usable backends')
    else:
        usage_error(tool.main, ['configs/upernet_vmamba_t.py', '--cfg-options',
                                f'+model.backbone.scan_backend={name}'], capsys,
                    f"backend '{name}' (from scan_backend) cannot run here", 'Usable backends')


# --------------------------------------------------------------------------------------------
# Config values of the wrong kind or unknown names: the key is named
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('option, expected', [
    ('train_cfg.max_iters=ten', "train_cfg.max_iters takes an integer (the config holds"),
    ('train_dataloader.batch_size=2.5', 'train_dataloader.batch_size takes an integer'),
    ('model.backbone.arch=3', 'model.backbone.arch takes a string'),
    ('model.backbone.with_cp=1', 'model.backbone.with_cp takes True or False'),
    ('optim_wrapper.optimizer.lr=fast', 'optim_wrapper.optimizer.lr takes a number'),
    ('model.backbone=mambaout', 'model.backbone takes a dict'),
])
def test_config_values_of_the_wrong_kind_name_the_key(train, option, expected, tmp_path, capsys,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    usage_error(train.main, [DET_CONFIG, '--cfg-options', option], capsys, expected,
                f'+{option.split("=")[0]}=')


def test_unknown_names_in_a_config_name_the_key(capsys):
    """An arch typo, a misspelled argument and an unknown type, in any tool that builds it."""
    tool = load_tool('analysis', 'long_sequence.py')
    usage_error(tool.main, [DET_CONFIG, '--cfg-options', 'model.backbone.arch=tinny'], capsys,
                "Unknown MambaOut arch 'tinny'; valid names: base, femto")
    usage_error(tool.main, [DET_CONFIG, '--cfg-options', '+model.backbone.out_indice=3'], capsys,
                "unexpected keyword argument 'out_indice'")
    usage_error(tool.main, [DET_CONFIG, '--cfg-options', 'model.backbone.type=MambaOutt'], capsys,
                'MambaOutt is not in the', 'misspelled type name')
    usage_error(tool.main, ['mambaout_tinny'], capsys, "Unknown MambaOut arch 'tinny'")
    usage_error(tool.main, ['mambaout_tiny', '--cfg-options', 'a=1'], capsys,
                '--cfg-options needs a config file')
