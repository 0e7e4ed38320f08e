"""Bad values for the public constructors end in one line and exit code 2, never a traceback.

Every backbone registered in ``mambaout_dense.MODELS`` is walked with each bad value of the
arguments the dense-backbone contract gives them all (arch, out_indices, frozen_stages,
drop_path_rate, in_channels, norm_eval, with_cp, init_cfg, a misspelled keyword), then the
family-specific ones (VMamba's version and scan_backend, the hybrid's mixers and scan_backend)
and the other registered modules (the divergence guard, the RoI extractor's RoIAlign). Each is
built through the registry, as a config builds it, inside :func:`mambaout_dense.cli.run_main`,
as every tool runs its work: the error is one of ``errors.py``'s classes (a ``ValueError``) or,
for a keyword the class does not take, Python's ``TypeError``; the tool prints one line that
names the argument and returns 2. One run of ``tools/train.py`` shows the same from the command
line.
"""
from typing import Any, Dict, List, Tuple

import pytest
import torch

import mambaout_dense.engine  # noqa: F401  (registers the hooks)
import mambaout_dense.models  # noqa: F401  (registers the backbones)
from mambaout_dense.cli import run_main
from mambaout_dense.errors import ConfigError, MambaOutDenseError
from mambaout_dense.models.backbones.base import DenseBackbone
from mambaout_dense.registry import HOOKS, MODELS

from .helpers import explain, make_coco, run_tool, write_config

#: Bad values of the contract's arguments: (kwargs, words the one line must hold).
COMMON: List[Tuple[Dict[str, Any], Tuple[str, ...]]] = [
    (dict(arch='tinny'), ("arch 'tinny'", 'valid names', 'test')),
    (dict(arch=7), ('arch must be a name', '7')),
    (dict(arch=dict(depths=(1, 1, 1, 1))), ('misses keys', 'dims')),
    (dict(arch=dict(depths=(1, 1, 1, 1), dims=(8, 8, 8, 8), width=3)), ('unknown keys', 'width')),
    (dict(arch=dict(depths=(1, 1, 1), dims=(8, 8, 8, 8))), ("arch['depths']", '4 positive')),
    (dict(arch=dict(depths=(1, 1, 1, 1), dims=(8, 8, 8, 'x'))), ("arch['dims']", "'x'")),
    (dict(out_indices=(4, )), ('out_indices', '0..3', '(4,)')),
    (dict(out_indices=(1, 1)), ('out_indices has duplicates', )),
    (dict(out_indices='0'), ('out_indices must be a stage index', "'0'")),
    (dict(frozen_stages='1'), ('frozen_stages must be an integer in -1..4', "'1'")),
    (dict(frozen_stages=9), ('frozen_stages must be an integer in -1..4', '9')),
    (dict(drop_path_rate=1.5), ('drop_path_rate must be a number in [0, 1)', '1.5')),
    (dict(drop_path_rate='0.1'), ('drop_path_rate', "'0.1'")),
    (dict(in_channels=0), ('in_channels must be an integer in 1..inf', '0')),
    (dict(norm_eval='yes'), ('norm_eval must be True or False', "'yes'")),
    (dict(with_cp=1), ('with_cp must be True or False', '1')),
    (dict(init_cfg='weights.pth'), ('init_cfg must be a dict', "'weights.pth'")),
    (dict(drop_path_rte=0.1), ("unexpected keyword argument 'drop_path_rte'", 'misspelled')),
]

#: Bad values of one family's own arguments (the type name, kwargs, words).
SPECIFIC: List[Tuple[str, Dict[str, Any], Tuple[str, ...]]] = [
    ('VMamba', dict(arch=dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), version='v1')),
     ("version 'v1'", 'v2, v0')),
    ('VMamba', dict(scan_backend='trition'), ("backend 'trition' (from scan_backend)",
                                              'Usable backends', 'torch')),
    ('VMamba', dict(scan_backend=3), ('scan_backend must be a backend name or None', )),
    ('HybridBackbone', dict(mixers=('ss2d', 'attention', 'gated_cnn', 'gated_cnn')),
     ("Unknown token mixer(s) ['attention']", 'gated_cnn, ss2d')),
    ('HybridBackbone', dict(mixers='ss2d'), ('mixers needs one name per stage', )),
    ('HybridBackbone', dict(scan_backend='trition'), ("'trition' (from scan_backend)", )),
]

BACKBONES = sorted(name for name, cls in MODELS.module_dict.items()
                   if isinstance(cls, type) and issubclass(cls, DenseBackbone))


def _one_line_exit_2(build, capsys, words) -> BaseException:
    """Build in run_main; assert exit code 2 and one line with ``words``; return the error."""
    with pytest.raises(Exception) as info:
        build()
    assert isinstance(info.value, (MambaOutDenseError, TypeError)), repr(info.value)
    assert run_main(build) == 2
    err = capsys.readouterr().err
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith('error: '), err
    for word in words:
        assert word in err, err
    return info.value


def test_every_registered_backbone_is_walked():
    assert {'MambaOut', 'VMamba', 'HybridBackbone'} <= set(BACKBONES)


@pytest.mark.parametrize('backbone', BACKBONES)
@pytest.mark.parametrize('kwargs, words', COMMON, ids=[str(kw) for kw, _ in COMMON])
def test_bad_contract_values_of_every_backbone(backbone, kwargs, words, capsys):
    cfg = dict(type=f'mambaout_dense.{backbone}', **dict(dict(arch='test'), **kwargs))
    err = _one_line_exit_2(lambda: MODELS.build(cfg), capsys, words)
    if not isinstance(err, TypeError):  # a keyword the class does not take is Python's
        assert isinstance(err, ConfigError) and isinstance(err, ValueError)


@pytest.mark.parametrize('backbone, kwargs, words', SPECIFIC,
                         ids=[f'{b}-{kw}' for b, kw, _ in SPECIFIC])
def test_bad_values_of_each_family(backbone, kwargs, words, capsys):
    cfg = dict(type=f'mambaout_dense.{backbone}', **dict(dict(arch='test'), **kwargs))
    assert isinstance(_one_line_exit_2(lambda: MODELS.build(cfg), capsys, words), ValueError)


@pytest.mark.parametrize('init_cfg, words', [
    (dict(type='Pretrained', checkpoint='w.pth', strcit=True),
     ("Unknown Pretrained init_cfg keys ['strcit']", )),
    (dict(type='Pretrained'), ("needs a 'checkpoint'", )),
    (dict(type='Pretrained', checkpoint='missing.pth'), ("not found: 'missing.pth'", )),
])
def test_bad_pretrained_init_cfg(init_cfg, words, capsys):
    model = MODELS.build(dict(type='mambaout_dense.MambaOut', arch='test', init_cfg=init_cfg))
    _one_line_exit_2(model.init_weights, capsys, words)


def test_bad_values_of_the_other_registered_modules(capsys):
    _one_line_exit_2(lambda: HOOKS.build(dict(type='mambaout_dense.DivergenceGuardHook',
                                              action='ignore')),
                     capsys, ("action must be 'stop' or 'skip'", "'ignore'"))
    from mambaout_dense.ops.roi_align import RoIAlign
    _one_line_exit_2(lambda: RoIAlign(7, pool_mode='max'), capsys, ("pool_mode='avg'", "'max'"))
    from mambaout_dense.models.layers import DropPath
    _one_line_exit_2(lambda: DropPath(1.0), capsys, ('drop_prob must be in [0, 1)', ))


def test_a_scan_backend_from_the_environment_is_checked_at_build(capsys, monkeypatch):
    monkeypatch.setenv('MAMBAOUT_DENSE_SCAN_BACKEND', 'trition')
    _one_line_exit_2(lambda: MODELS.build(dict(type='mambaout_dense.VMamba', arch='test')),
                     capsys, ('(from the environment variable MAMBAOUT_DENSE_SCAN_BACKEND)',
                              'unset MAMBAOUT_DENSE_SCAN_BACKEND'))
    # a backbone that does not scan does not care
    MODELS.build(dict(type='mambaout_dense.HybridBackbone', arch='test',
                      mixers=('gated_cnn', ) * 4))
    monkeypatch.delenv('MAMBAOUT_DENSE_SCAN_BACKEND')
    with torch.no_grad():  # and a good name is accepted at build and at the first forward
        MODELS.build(dict(type='mambaout_dense.VMamba', arch='test', scan_backend='torch'))(
            torch.rand(1, 3, 32, 32))


@pytest.mark.slow
def test_train_tool_with_an_arch_typo_prints_one_line(tmp_path):
    """As a user runs it: tools/train.py, a misspelled arch in --cfg-options."""
    root = make_coco(str(tmp_path / 'coco'))
    config = write_config(str(tmp_path / 'cfg'), 'det', root)
    proc = run_tool('train.py', config, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                    'model.backbone.arch=tinny', cwd=str(tmp_path))
    assert proc.returncode == 2, explain(proc)
    assert proc.stderr.strip().splitlines() == [
        "error: Unknown MambaOut arch 'tinny'; valid names: base, femto, kobe, small, test, tiny"
    ], explain(proc)
