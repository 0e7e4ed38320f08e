#!/usr/bin/env python
"""Regenerate the reliability table of docs/results.md and docs/reliability.md by running its tests.

Each row names a fault or a bad input, the behaviour expected of the toolkit, and the tests in
``tests/`` that try it. This script runs those tests (pytest, JUnit XML) and writes the result of
each row from their outcomes: "survived" with the figures the tests recorded
(``record_property``), or FAILED with the failing test. Nothing in the Result column is typed by
hand. Known gaps, which no test can pass yet, are listed as such.

    python tools/analysis/reliability_report.py            # all rows (about 10 CPU minutes)
    python tools/analysis/reliability_report.py --no-results  # print only
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from typing import Dict, List, NamedTuple, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
R = 'tests/reliability/'


class Row(NamedTuple):
    fault: str
    expected: str
    tests: Sequence[str]  # pytest node ids (a function id covers all its parameters)
    result: str = 'survived'  # may name recorded properties: {tensors}, {seconds}


ROWS: List[Row] = [
    Row('Mask R-CNN run SIGKILLed right after `iter_2.pth`, restarted with `--resume` (4 '
        'iterations)', 'same final weights and same logged losses (every iteration) as an '
        'uninterrupted run',
        [R + 'test_crash_resume.py::test_detection_survives_sigkill_and_a_torn_checkpoint'],
        'survived: all {tensors} tensors bit-identical, losses equal'),
    Row('UperNet run, the same', 'the same',
        [R + 'test_crash_resume.py::test_segmentation_survives_sigkill'],
        'survived: all {tensors} tensors bit-identical, losses equal'),
    Row('newest checkpoint truncated (half a file) and named by `last_checkpoint`, then '
        '`--resume`', 'skip it with a warning naming the file and why, resume from the previous '
        'one',
        [R + 'test_crash_resume.py::test_detection_survives_sigkill_and_a_torn_checkpoint',
         R + 'test_checkpoints.py::'
         'test_resume_auto_skips_a_truncated_newest_checkpoint_with_a_warning']),
    Row('newest checkpoints empty, NaN-valued, malicious; `last_checkpoint` naming a deleted '
        'file; work dir moved', 'each skipped and listed in one warning; a moved work dir is '
        'followed',
        [R + 'test_checkpoints.py::test_resume_auto_skips_nan_unsafe_and_missing_checkpoints',
         R + 'test_checkpoints.py::test_resume_auto_follows_a_moved_work_dir']),
    Row('every checkpoint in the work dir unusable', '`--resume` stops and lists each file and '
        'why (no silent fresh start)',
        [R + 'test_checkpoints.py::test_resume_auto_without_usable_checkpoints_is_an_error']),
    Row('process SIGKILLed at a random moment while saving 40 MB checkpoints in a loop', 'the '
        'file under the final name is always one complete checkpoint; the stray temporary file '
        'is removed by the next `--resume`',
        [R + 'test_checkpoints.py::'
         'test_sigkill_during_checkpoint_writes_never_leaves_a_torn_file']),
    Row('crash between writing and renaming a checkpoint', 'previous checkpoint intact, no '
        'partial file under the name',
        [R + 'test_checkpoints.py::test_interrupted_save_keeps_the_previous_file_whole',
         R + 'test_checkpoints.py::test_mmengine_writes_checkpoints_through_the_atomic_backend']),
    Row('`max_keep_ckpts=1` and a crash while the next checkpoint is written', 'the previous '
        'checkpoint remains and is resumed from (mmengine\'s `CheckpointHook` deletes it first)',
        [R + 'test_checkpoints.py::test_pruning_never_leaves_the_run_without_a_checkpoint',
         R + 'test_checkpoints.py::test_safe_checkpoint_hook_keeps_the_newest_n',
         R + 'test_checkpoints.py::test_train_tool_uses_the_safe_checkpoint_hook']),
    Row('2 gloo ranks, rank 1 SIGKILLed at iteration 2', 'job exits non-zero within 120 s, '
        'naming the failed rank', [R + 'test_distributed.py::test_a_killed_rank_ends_the_job'],
        'survived: ended {seconds} s after the fault; torchrun names rank 1, SIGKILL'),
    Row('2 gloo ranks, rank 1 hangs at iteration 2 (`MAMBAOUT_DENSE_DIST_TIMEOUT=20`)',
        'the other rank gives up after the collective timeout and says why',
        [R + 'test_distributed.py::'
         'test_a_hung_rank_is_given_up_on_after_the_collective_timeout'],
        'survived: ended {seconds} s after the fault, naming the lost peer and the timeout'),
    Row('NaN in `loss_mask` at iteration 2 (`tools/train.py`, Mask R-CNN)', 'stop, naming '
        'iteration and term; `last_checkpoint` never names a NaN checkpoint',
        [R + 'test_divergence.py::test_train_tool_stops_on_nan_loss_mask',
         R + 'test_divergence.py::'
         'test_nan_loss_stops_with_iteration_and_term_and_no_nan_checkpoint']),
    Row('Inf loss term; NaN gradients under a finite loss', 'stop, naming the term / '
        '"non-finite gradients"', [R + 'test_divergence.py::test_inf_loss_is_caught_too',
                                   R + 'test_divergence.py::'
                                   'test_nan_gradient_with_finite_loss_stops']),
    Row('NaN loss at iteration 3, `action=\'skip\'`', 'step not applied (weights unchanged), run '
        'continues, skips counted; gives up after `max_consecutive_skips` bad iterations',
        [R + 'test_divergence.py::test_skip_mode_continues_and_leaves_the_bad_step_out',
         R + 'test_divergence.py::test_skip_mode_gives_up_after_consecutive_bad_steps']),
    Row('NaN written into the weights by other means', 'checkpoint refused, `last_checkpoint` '
        'unchanged', [R + 'test_divergence.py::test_nan_weights_are_never_saved']),
    Row('checkpoint whose unpickling runs `os.system(\'touch MARKER\')`, through backbone '
        '`init_cfg` Pretrained, mmengine\'s `load_from`/resume loader, the converter, '
        '`tools/test.py`, `tools/demo.py`, `tools/train.py --resume`', 'refused, saying why; the '
        'code does not run',
        [R + f'test_checkpoints.py::{t}' for t in (
            'test_the_exploit_is_real', 'test_backbone_pretrained_init_refuses_a_malicious_pickle',
            'test_mmengine_load_from_and_resume_loader_refuses_a_malicious_pickle',
            'test_converter_refuses_a_malicious_pickle',
            'test_test_tool_refuses_a_malicious_pickle',
            'test_demo_tool_refuses_a_malicious_pickle',
            'test_train_tool_resume_refuses_a_malicious_pickle')]),
    Row('a checkpoint whose weights hold NaN/Inf, given to `tools/test.py`, `tools/demo.py`, '
        '`load_from`, `tools/train.py --resume` and a backbone `init_cfg` Pretrained',
        'exit 2 (or an error), one message naming the file and the first bad tensor; nothing '
        'evaluated, drawn or trained',
        [R + f'test_checkpoints.py::{t}' for t in (
            'test_safe_load_refuses_nan_weights_unless_asked',
            'test_backbone_pretrained_init_refuses_nan_weights',
            'test_mmengine_load_from_loader_refuses_nan_weights',
            'test_test_tool_refuses_nan_weights', 'test_demo_tool_refuses_nan_weights',
            'test_train_tool_resume_refuses_nan_weights',
            'test_train_tool_load_from_refuses_nan_weights')]),
    Row('a file that is not a checkpoint at all (plain text, an HTML error page, a Git LFS '
        'pointer, random bytes) given to `tools/test.py`, `tools/demo.py`, `tools/train.py '
        '--resume` and a backbone `init_cfg` Pretrained', 'exit 2, one message naming the file '
        'and what it is, no traceback, nothing trained',
        [R + f'test_bad_inputs.py::{t}' for t in (
            'test_safe_load_says_the_file_is_not_a_checkpoint_and_what_it_is',
            'test_a_pickle_that_is_corrupt_is_not_called_malicious',
            'test_test_tool_with_a_text_file', 'test_demo_tool_with_an_html_page',
            'test_train_tool_resume_from_a_git_lfs_pointer',
            'test_backbone_pretrained_with_random_bytes_through_train_tool')]),
    Row('Mask R-CNN checkpoint with a MambaOut-Tiny backbone for the Femto config, via '
        '`tools/test.py`, `tools/demo.py`, `tools/train.py --resume`', 'exit 2 with the first '
        'mismatching key and both shapes',
        [R + f'test_checkpoints.py::{t}' for t in (
            'test_test_tool_refuses_a_checkpoint_of_another_size',
            'test_demo_tool_refuses_a_checkpoint_of_another_size',
            'test_train_tool_resume_refuses_a_checkpoint_of_another_size')]),
    Row('MambaOut-Tiny weights in a Femto backbone\'s `init_cfg`; VMamba weights for MambaOut; a '
        'whole detector checkpoint as a backbone `init_cfg` Pretrained', 'first mismatching key '
        'and shapes; missing / unexpected keys listed; the detector checkpoint named, with '
        '`prefix=\'backbone.\'` suggested',
        [R + 'test_checkpoints.py::test_backbone_pretrained_init_names_the_first_mismatch',
         R + 'test_checkpoints.py::'
         'test_compatibility_check_reports_keys_of_another_architecture',
         'tests/models/test_backbone_contract.py::'
         'test_strict_loading_of_own_weights_and_its_errors']),
    Row('malformed annotation JSON (cut in half; a list)', 'error naming the file (line, column)',
        [R + 'test_bad_data.py::test_malformed_json_names_the_file_and_position']),
    Row('images listed in the JSON but missing on disk', 'error at load time naming the files',
        [R + 'test_bad_data.py::test_images_missing_on_disk_are_named_at_load_time']),
    Row('annotations with unknown category ids, non-positive box sizes, degenerate polygons '
        '(< 3 points), duplicate ids', 'skipped, one counted warning per kind with example ids; '
        'training works (mmdet\'s `CocoDataset` asserts on the file)',
        [R + 'test_bad_data.py::test_bad_annotations_are_skipped_with_one_counted_warning_per_kind',
         R + 'test_bad_data.py::test_mmdet_coco_dataset_crashes_on_the_same_file',
         R + 'test_bad_data.py::test_cleaned_annotations_train_without_a_crash_in_the_loss']),
    Row('the same in the validation file; an empty or absent `segmentation` in the validation '
        'split', 'the metric evaluates on the ground truth the dataset kept (mmdet\'s '
        '`CocoMetric` crashes in pycocotools)',
        [R + 'test_bad_data.py::test_evaluation_ground_truth_is_cleaned_too',
         R + 'test_bad_inputs.py::test_metric_scores_the_ground_truth_the_dataset_kept']),
    Row('images without annotations', 'skipped in training (counted), kept in evaluation',
        [R + 'test_bad_data.py::'
         'test_images_without_annotations_skipped_in_training_kept_in_evaluation']),
    Row('zero-byte image; bytes that are not an image; a truncated JPEG', 'error naming the file '
        '(at load time, or when the sample is loaded)',
        [R + 'test_bad_data.py::test_zero_byte_and_undecodable_images_are_named_at_load_time',
         R + 'test_bad_data.py::test_zero_byte_image_at_run_time_is_named',
         R + 'test_bad_data.py::test_truncated_image_fails_with_its_name_when_loaded']),
    Row('grayscale, RGBA, 16-bit grayscale / RGB PNG', 'documented conversion to 3-channel 8-bit '
        'BGR', [R + 'test_bad_data.py::test_grayscale_rgba_and_16_bit_images_become_8_bit_bgr'],
        'handled'),
    Row('EXIF-rotated JPEG (orientation 6): annotations on the stored pixels / as displayed',
        'error naming the file and the fix / loads rotated',
        [R + 'test_bad_data.py::'
         'test_exif_rotated_image_whose_annotations_use_stored_pixels_is_an_error',
         R + 'test_bad_data.py::test_exif_rotated_image_annotated_as_displayed_loads_rotated']),
    Row('EXIF orientations 2-8 whose loaded size equals the stored size (mirrors, 180°, any '
        'square image; COCO and ADE20K)', 'error naming the file, the orientation and both '
        'fixes (ignore the tag, or save the image upright); each fix then loads',
        [R + 'test_bad_data.py::'
         'test_exif_orientation_that_keeps_the_size_is_refused_with_both_fixes',
         R + 'test_bad_data.py::test_exif_image_saved_upright_loads',
         R + 'test_bad_data.py::'
         'test_exif_orientation_of_an_image_beside_a_label_map_of_its_size_is_refused']),
    Row('ADE20K label value 200 (uint8) or 300 (16-bit); the same with `validate_labels=False`',
        'error naming the file and the value',
        [R + 'test_bad_data.py::test_label_value_outside_the_class_range_names_file_and_value',
         R + 'test_bad_data.py::test_16_bit_label_values_are_checked_before_uint8_wraps_them',
         R + 'test_bad_data.py::test_without_eager_validation_the_sample_check_names_the_file']),
    Row('colour label PNG; image/label size mismatch; missing image or label folder; missing '
        'label file', 'error naming the file, the pair or the folders',
        [R + f'test_bad_data.py::{t}' for t in (
            'test_colour_label_map_is_refused', 'test_image_label_size_mismatch_names_the_pair',
            'test_missing_folders_are_named', 'test_missing_label_map_is_named')]),
    Row('`--cfg-options key` (no `=`), `=3`, `a=[1,2`, `a=(a,b]`; an unknown key',
        'usage error, exit 2, no traceback; the closest keys named',
        [R + 'test_bad_arguments.py::test_bad_cfg_options_syntax',
         R + 'test_bad_arguments.py::test_train_command_line_with_bad_syntax',
         R + 'test_bad_arguments.py::test_unknown_cfg_options_key_names_close_matches']),
    Row('missing config, checkpoint, image; `tools/demo.py` arguments in the wrong order; an '
        'empty image', 'exit 2 naming the file',
        [R + 'test_bad_arguments.py::test_missing_config',
         R + 'test_bad_arguments.py::test_missing_checkpoints_and_images']),
    Row('`--work-dir` that is a file (`tools/train.py`, `tools/test.py`) or cannot be created; '
        '`--launcher pytorch` without torchrun; missing data; unknown choices and flags',
        'exit 2 with the reason, the file untouched',
        [R + 'test_bad_arguments.py::test_unusable_work_dir',
         R + 'test_bad_inputs.py::test_test_tool_work_dir_that_is_a_file',
         R + 'test_bad_arguments.py::test_distributed_launcher_without_torchrun',
         R + 'test_bad_arguments.py::test_missing_data_says_how_to_get_it',
         R + 'test_bad_arguments.py::test_unknown_choices_and_flags']),
    Row('`--cfg-options` values of the wrong kind (`train_cfg.max_iters=ten`, '
        '`batch_size=2.5`, `arch=3`, ...); an arch typo, a misspelled argument, an unknown type '
        'name; every public constructor walked with bad values', 'exit 2, one line naming the '
        'key, no traceback',
        [R + 'test_bad_arguments.py::test_config_values_of_the_wrong_kind_name_the_key',
         R + 'test_bad_arguments.py::test_unknown_names_in_a_config_name_the_key',
         R + 'test_bad_values.py::test_every_registered_backbone_is_walked',
         R + 'test_bad_values.py::test_bad_contract_values_of_every_backbone',
         R + 'test_bad_values.py::test_bad_values_of_each_family',
         R + 'test_bad_values.py::test_bad_pretrained_init_cfg',
         R + 'test_bad_values.py::test_bad_values_of_the_other_registered_modules',
         R + 'test_bad_values.py::test_train_tool_with_an_arch_typo_prints_one_line']),
    Row('requests the machine cannot honour: `tools/demo.py --device cuda:0` without CUDA, '
        '`--amp` on a CPU (flag or config), a CUDA-only scan backend chosen by the environment '
        'or the config', 'exit 2, one line, when the model is built (not at its first forward '
        'pass)',
        [R + 'test_bad_arguments.py::test_a_cuda_device_on_a_machine_without_cuda',
         R + 'test_bad_arguments.py::test_mixed_precision_on_a_cpu',
         R + 'test_bad_arguments.py::test_a_scan_backend_that_cannot_run_here',
         R + 'test_bad_values.py::test_a_scan_backend_from_the_environment_is_checked_at_build']),
    Row('`train_dataloader.batch_size=1` with BatchNorm in a head (UperNet)', 'exit 2 naming the '
        'setting to change',
        [R + 'test_bad_inputs.py::test_batch_size_one_with_batchnorm_in_a_head_names_the_setting']),
    Row('every tool run as a user runs it (train, test and demo for detection and segmentation, '
        'get_flops, long_sequence, erf, scaling, make_synthetic)', 'no warning the user cannot '
        'act on (`pkg_resources`, mmengine\'s `FileClient`/`HardDiskBackend`, mmseg\'s loss and '
        'metric warnings, the visualiser backend: silenced where they arise)',
        [R + 'test_bad_inputs.py::test_no_tool_prints_a_warning_the_user_cannot_act_on']),
]

#: Known gaps: no test can pass them yet (behaviour, not measurements).
GAPS = [
    ('a single-process run that hangs (e.g. a stuck network file system)', 'bounded',
     '**not survived yet**: nothing notices (no watchdog); distributed peers wait for the '
     'collective timeout, 30 min by default'),
    ('bit-identical resume with `num_workers > 0` or several ranks', 'same weights',
     '**not verified yet**: every rank\'s generator states are stored and restored and workers '
     'are re-seeded by mmengine, but only the single-process, `num_workers=0` case is tested'),
    ('disk full while saving', 'previous checkpoint intact',
     '**not handled**: intact (atomic write), but the run stops with an `OSError` traceback'),
    ('real COCO / ADE20K configs', '—', '**scope**: they keep mmdet\'s `CocoDataset`/`CocoMetric` '
     'and mmseg\'s `ADE20KDataset`; opt in with `type=\'mambaout_dense.CheckedCocoDataset\'` '
     'etc.'),
]


def run_tests(node_ids: Sequence[str], xml_path: str) -> int:
    """Run the tests once; return pytest's exit code (the XML holds the outcomes)."""
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-o',
           'junit_family=xunit1', f'--junitxml={xml_path}', *dict.fromkeys(node_ids)]
    return subprocess.run(cmd, cwd=REPO_ROOT).returncode


def read_outcomes(xml_path: str) -> Dict[str, dict]:
    """``{'file::function[param]': {'outcome': ..., 'properties': {...}}}`` from JUnit XML."""
    outcomes: Dict[str, dict] = {}
    for case in ET.parse(xml_path).getroot().iter('testcase'):
        path = case.get('file') or case.get('classname', '').replace('.', '/') + '.py'
        key = f"{path}::{case.get('name')}"
        outcome = 'passed'
        for tag in ('failure', 'error', 'skipped'):
            if case.find(tag) is not None:
                outcome = 'skipped' if tag == 'skipped' else 'failed'
        props = {p.get('name'): p.get('value') for p in case.iter('property')}
        outcomes[key] = dict(outcome=outcome, properties=props)
    return outcomes


def row_result(row: Row, outcomes: Dict[str, dict]) -> str:
    """The Result cell of a row, from the outcomes of its tests."""
    cases = {k: v for k, v in outcomes.items()
             if any(k == t or k.startswith(t + '[') for t in row.tests)}
    missing = [t for t in row.tests if not any(k == t or k.startswith(t + '[') for k in cases)]
    bad = [k for k, v in cases.items() if v['outcome'] != 'passed']
    if missing or bad:
        names = ', '.join(f'`{k.split("::")[-1]}` ({cases[k]["outcome"]})' for k in bad)
        names += ', '.join(f'`{t.split("::")[-1]}` (not run)' for t in missing)
        return f'**FAILED**: {names}'
    props: Dict[str, str] = {}
    for case in cases.values():
        props.update(case['properties'])
    try:
        text = row.result.format(**props)
    except KeyError:  # a figure was not recorded: say so rather than invent it
        text = row.result.split(':')[0]
    return f'{text} ({len(cases)} test{"s" if len(cases) > 1 else ""})'


def table(outcomes: Dict[str, dict]) -> str:
    lines = ['| Fault or input tried | Expected behaviour | Result |', '|---|---|---|']
    lines += [f'| {r.fault} | {r.expected} | {row_result(r, outcomes)} |' for r in ROWS]
    lines += [f'| {fault} | {expected} | {result} |' for fault, expected, result in GAPS]
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--no-results', action='store_true', help='print only')
    parser.add_argument('--junit', help='read outcomes from this JUnit XML instead of running')
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO_ROOT)
    from mambaout_dense.analysis.tables import update_section
    if args.junit:
        xml_path = args.junit
    else:
        xml_path = osp.join(tempfile.mkdtemp(), 'reliability.xml')
        run_tests([t for r in ROWS for t in r.tests], xml_path)
    outcomes = read_outcomes(xml_path)
    failed = [r for r in ROWS if row_result(r, outcomes).startswith('**FAILED')]
    body = table(outcomes)
    summary = (f'{len(ROWS) - len(failed)} of {len(ROWS)} faults handled as expected'
               + (f'; {len(failed)} FAILED' if failed else '') + f', {len(GAPS)} known gaps.')
    section = '\n'.join([
        'What was tried, what the toolkit does, and what it does not survive yet. Every row but '
        'the known gaps is run by tests in `tests/` on a CPU in CI; the Result column is written '
        'from their outcomes by `tools/analysis/reliability_report.py`. How it works: '
        '[reliability.md](reliability.md).', '', summary, '', body])
    print(section)
    if not args.no_results:
        update_section(osp.join(REPO_ROOT, 'docs', 'results.md'), 'reliability', section)
        update_section(osp.join(REPO_ROOT, 'docs', 'reliability.md'), 'table', body)
        subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'update_readme.py')],
                       check=True)
        print('docs/results.md section "reliability", docs/reliability.md and the README '
              'headlines rewritten')
    return 1 if failed else 0


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '2')
    sys.exit(main())
