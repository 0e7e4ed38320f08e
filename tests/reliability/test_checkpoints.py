"""Checkpoint files under fault and attack: atomic writes, validated auto-resume, malicious
pickles refused on every loading path, and checkpoints of another architecture or size refused
with the first mismatching key and both shapes.

The tools' ``main(argv)`` run in this process (each refuses before building a model or
touching data, except where a model is needed to compare shapes).
"""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import mambaout_dense.safe_io  # noqa: F401  (atomic writes, safe loader)
from mambaout_dense.checkpoint import CheckpointError, check_state_dict, safe_load
from mambaout_dense.engine import (
    AtomicLocalBackend,
    CheckpointCompatibilityHook,
    find_resumable_checkpoint,
)
from mambaout_dense.engine.atomic_io import atomic_write_bytes

from .helpers import DET_CONFIG, REPO_ROOT, load_tool, log_messages, make_coco


class _Exploit:
    """Unpickling this runs ``touch MARKER`` (stands in for arbitrary code)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def _training_ckpt(path, value=1.0, **extra):
    torch.save(dict(state_dict={'w': torch.full((4, ), value)}, meta=dict(iter=1), **extra),
               path)
    return str(path)


@pytest.fixture
def evil(tmp_path):
    """(checkpoint path, marker path): loading the checkpoint unsafely creates the marker."""
    marker = tmp_path / 'MARKER'
    path = _training_ckpt(tmp_path / 'evil.pth', payload=_Exploit(str(marker)))
    return path, marker


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------
def test_mmengine_writes_checkpoints_through_the_atomic_backend():
    from mmengine.fileio import get_file_backend
    assert isinstance(get_file_backend('/some/work_dir/iter_1.pth'), AtomicLocalBackend)


def test_interrupted_save_keeps_the_previous_file_whole(tmp_path, monkeypatch):
    """A crash between writing and renaming (simulated) leaves the old checkpoint intact and no
    half-written file under the final name; mmengine's own backend writes in place."""
    from mmengine.fileio import LocalBackend
    from mmengine.runner.checkpoint import save_checkpoint
    path = str(tmp_path / 'iter_2.pth')
    save_checkpoint({'state_dict': {'w': torch.zeros(1000)}}, path)

    def power_cut(*args):
        raise KeyboardInterrupt('power cut')

    monkeypatch.setattr(os, 'replace', power_cut)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({'state_dict': {'w': torch.ones(1000)}}, path)
    assert torch.equal(safe_load(path)['state_dict']['w'], torch.zeros(1000))
    assert os.listdir(tmp_path) == ['iter_2.pth']  # the temporary file was removed
    # contrast: a crash in mmengine's LocalBackend.put leaves a torn file under the final name
    monkeypatch.setattr('mmengine.fileio.backends.local_backend.open', _open_then_crash(open),
                        raising=False)
    with pytest.raises(KeyboardInterrupt):
        LocalBackend().put(b'x' * 1000, str(tmp_path / 'plain.pth'))
    assert osp.getsize(tmp_path / 'plain.pth') == 500


def _open_then_crash(real_open):
    class _Half:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            raise KeyboardInterrupt('power cut')

    return lambda path, mode='r', *a, **k: _Half(real_open(path, mode, *a, **k))


def test_atomic_write_creates_folders_and_honours_umask(tmp_path):
    target = tmp_path / 'a' / 'b' / 'c.bin'
    atomic_write_bytes(str(target), b'hello')
    assert target.read_bytes() == b'hello'
    umask = os.umask(0)
    os.umask(umask)
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~umask)


@pytest.mark.slow
def test_sigkill_during_checkpoint_writes_never_leaves_a_torn_file(tmp_path):
    """A process saving 40 MB checkpoints in a loop is SIGKILLed at a random moment: the file
    under the final name always loads, holding one complete checkpoint."""
    script = (
        'import sys, torch, mambaout_dense.safe_io\n'
        'from mmengine.runner.checkpoint import save_checkpoint\n'
        'i = 0\n'
        'while True:\n'
        '    i += 1\n'
        f'    save_checkpoint({{"state_dict": {{"w": torch.full((10_000_000,), float(i))}}}}, '
        f'{str(tmp_path / "iter.pth")!r})\n'
        '    print("SAVED", i, flush=True)\n')
    proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    try:
        for line in proc.stdout:  # mmengine logs to stdout too
            if line.startswith('SAVED'):
                break  # one complete checkpoint exists
        time.sleep(random.uniform(0.2, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    w = safe_load(tmp_path / 'iter.pth')['state_dict']['w']
    assert w.numel() == 10_000_000 and bool((w == w[0]).all())
    leftovers = [n for n in os.listdir(tmp_path) if n != 'iter.pth']
    assert all(n.startswith('.iter.pth.') and n.endswith('.tmp') for n in leftovers)
    find_resumable_checkpoint(str(tmp_path))  # also removes the stray temporary file
    assert os.listdir(tmp_path) == ['iter.pth']


def _toy_runner(work_dir, hook_type, max_keep, max_iters):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, inputs, labels=None, mode='tensor'):
            return dict(loss=self.linear(inputs).pow(2).mean())  # inputs: (B, 2)

    data = [dict(inputs=torch.randn(2)) for _ in range(16)]
    return Runner(
        model=Toy(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=data, sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=2, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type=hook_type, interval=1, by_epoch=False,
                                           max_keep_ckpts=max_keep)),
        custom_hooks=[dict(type='mambaout_dense.PlainCheckpointHook')],
        default_scope='mmengine', experiment_name=f'keep_{osp.basename(str(work_dir))}')


@pytest.mark.parametrize('hook_type', ['mambaout_dense.SafeCheckpointHook', 'CheckpointHook'])
def test_pruning_never_leaves_the_run_without_a_checkpoint(tmp_path, monkeypatch, hook_type):
    """max_keep_ckpts=1 and a crash while iter_2.pth is written: SafeCheckpointHook (what
    tools/train.py uses) still has iter_1.pth; mmengine's CheckpointHook deleted it first."""
    real_replace = os.replace

    def crash_on_iter_2(src, dst):
        if dst.endswith('iter_2.pth'):
            raise KeyboardInterrupt('killed while writing iter_2.pth')
        return real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', crash_on_iter_2)
    with pytest.raises(KeyboardInterrupt):
        _toy_runner(tmp_path, hook_type, max_keep=1, max_iters=3).train()
    checkpoints = sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth'))
    if hook_type == 'CheckpointHook':
        assert checkpoints == []  # the failure mode the safe hook removes
    else:
        assert checkpoints == ['iter_1.pth']
        assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_1.pth')


def test_safe_checkpoint_hook_keeps_the_newest_n(tmp_path):
    runner = _toy_runner(tmp_path, 'mambaout_dense.SafeCheckpointHook', max_keep=2, max_iters=5)
    runner.train()
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth')) == ['iter_4.pth',
                                                                              'iter_5.pth']
    assert safe_load(tmp_path / 'iter_5.pth')['message_hub']['runtime_info'][
        'keep_ckpt_ids'] == [4, 5]


def test_train_tool_uses_the_safe_checkpoint_hook():
    from mmengine.config import Config

    from mambaout_dense.engine.hook_injection import ensure_reliability_hooks
    cfg = Config.fromfile(DET_CONFIG)
    ensure_reliability_hooks(cfg)
    assert cfg.default_hooks.checkpoint.type == 'mambaout_dense.SafeCheckpointHook'
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == 2
    names = [h['type'] for h in cfg.custom_hooks]
    for hook in ('DivergenceGuardHook', 'RandomStateHook', 'CheckpointCompatibilityHook'):
        assert f'mambaout_dense.{hook}' in names


# --------------------------------------------------------------------------------------------
# Auto-resume picks the newest usable checkpoint
# --------------------------------------------------------------------------------------------
def _point(work_dir, name):
    (work_dir / 'last_checkpoint').write_text(str(work_dir / name))


def test_resume_auto_skips_a_truncated_newest_checkpoint_with_a_warning(tmp_path):
    good = _training_ckpt(tmp_path / 'iter_2.pth')
    _training_ckpt(tmp_path / 'iter_4.pth', value=2.0)
    data = (tmp_path / 'iter_4.pth').read_bytes()
    (tmp_path / 'iter_4.pth').write_bytes(data[:len(data) // 2])
    _point(tmp_path, 'iter_4.pth')
    with log_messages() as messages:
        assert find_resumable_checkpoint(str(tmp_path)) == good
    warning = [m for m in messages if 'skipped 1 unusable checkpoint' in m]
    assert len(warning) == 1 and 'iter_4.pth' in warning[0] and 'truncated' in warning[0]


def test_resume_auto_skips_nan_unsafe_and_missing_checkpoints(tmp_path):
    good = _training_ckpt(tmp_path / 'iter_1.pth')
    _training_ckpt(tmp_path / 'iter_2.pth', value=float('nan'))
    marker = tmp_path / 'MARKER'
    _training_ckpt(tmp_path / 'iter_3.pth', payload=_Exploit(str(marker)))
    (tmp_path / 'iter_4.pth').write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_9.pth'))  # deleted file
    with log_messages() as messages:
        assert find_resumable_checkpoint(str(tmp_path)) == good
    text = ' '.join(messages)
    assert 'skipped 4 unusable' in text
    assert 'does not exist' in text and 'empty (0 bytes)' in text
    assert 'could run arbitrary code' in text and "weight 'w' holds NaN/Inf" in text
    assert not marker.exists()


def test_resume_auto_follows_a_moved_work_dir(tmp_path):
    good = _training_ckpt(tmp_path / 'iter_3.pth')
    (tmp_path / 'last_checkpoint').write_text('/old/place/work_dir/iter_3.pth')
    assert find_resumable_checkpoint(str(tmp_path)) == good


def test_resume_auto_without_usable_checkpoints_is_an_error(tmp_path):
    (tmp_path / 'iter_2.pth').write_bytes(b'PK\x03\x04 not really')
    with pytest.raises(CheckpointError, match='no usable checkpoint.*iter_2.pth'):
        find_resumable_checkpoint(str(tmp_path))
    assert find_resumable_checkpoint(str(tmp_path / 'fresh')) is None
    (tmp_path / 'empty').mkdir()
    assert find_resumable_checkpoint(str(tmp_path / 'empty')) is None


# --------------------------------------------------------------------------------------------
# Malicious pickles: every loading path refuses, and the code does not run
# --------------------------------------------------------------------------------------------
def _refused(text: str) -> bool:
    return 'could run arbitrary code' in text and 'system' in text


def test_the_exploit_is_real(evil):
    path, marker = evil
    torch.load(path, weights_only=False)  # what an unsafe loader would do
    assert marker.exists()


def test_backbone_pretrained_init_refuses_a_malicious_pickle(evil):
    from mambaout_dense.models.backbones.mambaout import MambaOut
    path, marker = evil
    model = MambaOut(arch='femto', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError) as info:
        model.init_weights()
    assert _refused(str(info.value)) and not marker.exists()


def test_mmengine_load_from_and_resume_loader_refuses_a_malicious_pickle(evil):
    from mmengine.runner.checkpoint import _load_checkpoint
    path, marker = evil
    with pytest.raises(CheckpointError) as info:
        _load_checkpoint(path, map_location='cpu')  # Runner.load_checkpoint / resume use it
    assert _refused(str(info.value)) and not marker.exists()


def test_converter_refuses_a_malicious_pickle(evil, tmp_path, capsys):
    path, marker = evil
    out = tmp_path / 'converted.pth'
    assert load_tool('model_converters', 'mambaout2mmdet.py').main([path, str(out)]) == 2
    assert _refused(capsys.readouterr().err) and not marker.exists() and not out.exists()


def test_test_tool_refuses_a_malicious_pickle(evil, tmp_path, capsys, monkeypatch):
    path, marker = evil
    monkeypatch.chdir(tmp_path)
    assert load_tool('test.py').main([DET_CONFIG, path]) == 2
    assert _refused(capsys.readouterr().err) and not marker.exists()


def test_demo_tool_refuses_a_malicious_pickle(evil, tmp_path, capsys):
    import cv2
    import numpy as np
    path, marker = evil
    image = str(tmp_path / 'image.png')
    cv2.imwrite(image, np.zeros((32, 32, 3), np.uint8))
    out = tmp_path / 'out.png'
    assert load_tool('demo.py').main([image, DET_CONFIG, path, '--out', str(out)]) == 2
    assert _refused(capsys.readouterr().err) and not marker.exists() and not out.exists()


def test_train_tool_resume_refuses_a_malicious_pickle(evil, tmp_path, capsys, monkeypatch):
    path, marker = evil
    monkeypatch.chdir(tmp_path)
    code = load_tool('train.py').main([DET_CONFIG, '--work-dir', str(tmp_path / 'w'),
                                       '--resume', path])
    assert code == 2
    assert _refused(capsys.readouterr().err) and not marker.exists()


# --------------------------------------------------------------------------------------------
# NaN/Inf weights: every loading path refuses, naming the file and the first bad tensor
# --------------------------------------------------------------------------------------------
@pytest.fixture
def diverged(tmp_path):
    """A checkpoint whose weights hold Inf (the first bad tensor) and NaN."""
    state = {'backbone.a': torch.ones(3), 'backbone.b': torch.tensor([1.0, float('inf')]),
             'backbone.c': torch.tensor([float('nan')])}
    path = str(tmp_path / 'diverged.pth')
    torch.save(dict(state_dict=state, meta=dict(iter=3)), path)
    return path


def _names_the_bad_tensor(text: str, path: str) -> bool:
    return f"{path!r}: weight 'backbone.b' holds NaN/Inf" in text


def test_safe_load_refuses_nan_weights_unless_asked(diverged):
    with pytest.raises(CheckpointError) as info:
        safe_load(diverged)
    assert _names_the_bad_tensor(str(info.value), diverged)
    assert not bool(torch.isfinite(
        safe_load(diverged, allow_nonfinite=True)['state_dict']['backbone.c']).all())


def test_backbone_pretrained_init_refuses_nan_weights(diverged):
    from mambaout_dense.models.backbones.mambaout import MambaOut
    model = MambaOut(arch='test', init_cfg=dict(type='Pretrained', checkpoint=diverged,
                                                prefix='backbone.'))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        model.init_weights()
    assert _names_the_bad_tensor(str(info.value), diverged)
    assert all(bool(torch.isfinite(v).all()) for v in model.state_dict().values())
    assert before.keys() == model.state_dict().keys()


def test_mmengine_load_from_loader_refuses_nan_weights(diverged):
    from mmengine.runner.checkpoint import _load_checkpoint
    with pytest.raises(CheckpointError) as info:
        _load_checkpoint(diverged, map_location='cpu')  # Runner.load_checkpoint uses it
    assert _names_the_bad_tensor(str(info.value), diverged)


def test_test_tool_refuses_nan_weights(diverged, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_tool('test.py').main([DET_CONFIG, diverged]) == 2
    assert _names_the_bad_tensor(capsys.readouterr().err, diverged)


def test_demo_tool_refuses_nan_weights(diverged, tmp_path, capsys):
    import cv2
    import numpy as np
    image = str(tmp_path / 'image.png')
    cv2.imwrite(image, np.zeros((32, 32, 3), np.uint8))
    out = tmp_path / 'out.png'
    assert load_tool('demo.py').main([image, DET_CONFIG, diverged, '--out', str(out)]) == 2
    assert _names_the_bad_tensor(capsys.readouterr().err, diverged) and not out.exists()


def test_train_tool_resume_refuses_nan_weights(diverged, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_tool('train.py').main([DET_CONFIG, '--work-dir', str(tmp_path / 'w'),
                                       '--resume', diverged]) == 2
    assert _names_the_bad_tensor(capsys.readouterr().err, diverged)


@pytest.mark.slow
def test_train_tool_load_from_refuses_nan_weights(diverged, tmp_path):
    """``load_from`` as a user sets it: exit 2 with the file and tensor, nothing trained."""
    from .helpers import explain, run_tool, write_config
    root = make_coco(str(tmp_path / 'coco'))
    config = write_config(str(tmp_path / 'cfg'), 'det', root)
    work = tmp_path / 'w'
    proc = run_tool('train.py', config, '--work-dir', str(work), '--cfg-options',
                    f'load_from={diverged}', cwd=str(tmp_path))
    assert proc.returncode == 2, explain(proc)
    assert _names_the_bad_tensor(proc.stderr, diverged), explain(proc)
    assert 'Traceback' not in proc.output, explain(proc)
    assert not [n for n in os.listdir(work) if n.endswith('.pth')]


# --------------------------------------------------------------------------------------------
# Checkpoints of another architecture or size
# --------------------------------------------------------------------------------------------
FIRST_KEY = "'backbone.downsample_layers.0.conv1.weight': checkpoint (48, 3, 3, 3) vs model " \
            '(24, 3, 3, 3)'


@pytest.fixture(scope='module')
def tiny_detector_ckpt(tmp_path_factory):
    """A Mask R-CNN checkpoint with a MambaOut-Tiny backbone (the config uses Femto)."""
    from mmengine.config import Config

    from mambaout_dense.builder import init_task_scope
    cfg = Config.fromfile(DET_CONFIG)
    init_task_scope(cfg)
    from mmdet.registry import MODELS
    cfg.model.backbone.arch = 'tiny'
    cfg.model.neck.in_channels = [96, 192, 384, 576]
    model = MODELS.build(cfg.model)
    path = str(tmp_path_factory.mktemp('tiny') / 'mask_rcnn_mambaout_tiny.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(iter=2, epoch=0)), path)
    return path


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    return make_coco(str(tmp_path_factory.mktemp('coco') / 'coco'))


def test_backbone_pretrained_init_names_the_first_mismatch(tmp_path):
    from mambaout_dense.models.backbones.mambaout import MambaOut
    path = str(tmp_path / 'tiny_backbone.pth')
    torch.save({'state_dict': MambaOut(arch='tiny').state_dict()}, path)
    model = MambaOut(arch='femto', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError, match=r"shape mismatch for 'downsample_layers\.0\.conv1"
                       r"\.weight': checkpoint \(48, 3, 3, 3\) vs model \(24, 3, 3, 3\)"):
        model.init_weights()


def test_compatibility_check_reports_keys_of_another_architecture():
    from mambaout_dense.models.backbones.mambaout import MambaOut
    from mambaout_dense.models.backbones.vmamba import VMamba
    vmamba = {f'backbone.{k}': v for k, v in VMamba(arch='tiny').state_dict().items()}
    mambaout = {f'backbone.{k}': v for k, v in MambaOut(arch='tiny').state_dict().items()}
    with pytest.raises(CheckpointError, match=r"vmamba.pth does not fit the model: shape mismatch "
                       r"for 'backbone.norm3.weight': checkpoint \(768,\) vs model \(576,\) "
                       r"\(first of 2\); \d+ missing key\(s\) \[backbone\.downsample_layers.*\], "
                       r"\d+ unexpected key\(s\) \[backbone\.patch_embed"):
        check_state_dict(mambaout, vmamba, 'vmamba.pth')
    # an explicit allow-list admits a partial load (e.g. a re-sized classifier)
    head = {'head.weight': torch.zeros(3, 4)}
    check_state_dict(head, {'head.weight': torch.zeros(5, 4)}, 'ckpt', ignore=[r'^head\.'])
    with pytest.raises(CheckpointError, match=r"'head.weight': checkpoint \(5, 4\) vs model"):
        check_state_dict(head, {'module.head.weight': torch.zeros(5, 4)}, 'ckpt')
    assert CheckpointCompatibilityHook(allow_mismatch=['x']).allow_mismatch == ['x']


def _data_options(root):
    return ['--cfg-options', f'test_dataloader.dataset.data_root={root}/',
            f'val_dataloader.dataset.data_root={root}/',
            f'train_dataloader.dataset.data_root={root}/',
            f'test_evaluator.ann_file={root}/annotations/instances_val2017.json',
            f'val_evaluator.ann_file={root}/annotations/instances_val2017.json',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']


@pytest.mark.slow
def test_test_tool_refuses_a_checkpoint_of_another_size(tiny_detector_ckpt, coco_root, tmp_path,
                                                        capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = load_tool('test.py').main([DET_CONFIG, tiny_detector_ckpt, '--work-dir',
                                      str(tmp_path / 'w'), *_data_options(coco_root)])
    err = capsys.readouterr().err
    assert code == 2 and FIRST_KEY in err, err


@pytest.mark.slow
def test_demo_tool_refuses_a_checkpoint_of_another_size(tiny_detector_ckpt, coco_root, tmp_path,
                                                        capsys):
    image = osp.join(coco_root, 'val2017', sorted(os.listdir(osp.join(coco_root, 'val2017')))[0])
    out = tmp_path / 'out.png'
    code = load_tool('demo.py').main([image, DET_CONFIG, tiny_detector_ckpt, '--out', str(out)])
    err = capsys.readouterr().err
    assert code == 2 and FIRST_KEY in err and not out.exists(), err


@pytest.mark.slow
def test_train_tool_resume_refuses_a_checkpoint_of_another_size(tiny_detector_ckpt, coco_root,
                                                                tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = load_tool('train.py').main([DET_CONFIG, '--work-dir', str(tmp_path / 'w'),
                                       '--resume', tiny_detector_ckpt, *_data_options(coco_root)])
    err = capsys.readouterr().err
    assert code == 2 and FIRST_KEY in err, err
