"""Bad flags and environment (docs/ROBUSTNESS.md): nonsense flag values are
refused by argparse (its usage, then one `<prog>: error: argument --flag: ...`
line, exit status 2); flags checked after parsing and the torchrun
environment give one `error: ...` line. The `@case` machinery is
tests/helpers/bad_inputs.py."""
import pytest

import utils
from bad_inputs import argparse_cases, case, cases_of, check_argparse_error, check_one_line_error, main_cmd
from robust_helpers import converter_cmd
from utils import UserError


@case('--feature_dim must be positive, got 0')
def converter_feature_dim_zero(root):
    return converter_cmd(root)[:-1] + ['0']


@case('WORLD_SIZE=2 is set but RANK is not', 'torchrun')
def world_size_without_rank(root):
    return main_cmd(root), {'env': {'WORLD_SIZE': '2'}}


@pytest.mark.parametrize('name', cases_of(__name__))
def test_bad_input_gives_one_line_error_and_no_output(cli_results, name):
    check_one_line_error(cli_results, name)

# argparse's own errors: the usage, then one `<prog>: error: argument --x: ...` line, exit 2.
ARGPARSE_NAMES = argparse_cases({
    'lr_zero': (['main.py', '--lr', '0'], 'main.py: error: argument --lr: must be > 0 and finite, got 0.0'),
    'lr_infinite': (['main.py', '--lr', 'inf'], 'main.py: error: argument --lr: must be > 0 and finite, got inf'),
    'op_unknown': (['main.py', '--op', 'x'],
                   "main.py: error: argument --op: invalid choice: 'x' (choose from '', 'c')"),
    'gamma_zero': (['main.py', '--gamma', '0'], 'main.py: error: argument --gamma: must be from 1 to 64, got 0'),
    'batch_size_negative': (['test.py', '--batch_size', '-1'],
                            'test.py: error: argument --batch_size: must be >= 1, got -1'),
    'unknown_task': (['evaluate.py', '--task', 'gqa'],
                     "evaluate.py: error: argument --task: invalid choice: 'gqa' (choose from 'vqa', 'flickr')"),
    'min_occurrence_zero': (['tools/compute_softscore.py', '--min_occurrence', '0'],
                            'compute_softscore.py: error: argument --min_occurrence: must be >= 1, got 0'),
    'epochs_zero': (['main.py', '--epochs', '0'], 'main.py: error: argument --epochs: must be >= 1, got 0'),
    'seed_2_to_the_70': (['main.py', '--seed', str(2 ** 70)], 'main.py: error: argument --seed: must be from 0 to '
                                                             '4294967295, got %d' % 2 ** 70),
    'num_hid_1e9': (['main.py', '--num_hid', '1e9'],
                    "main.py: error: argument --num_hid: expected an integer from 1 to 16384, got '1e9'"),
    'num_hid_a_billion': (['evaluate.py', '--num_hid', '1000000000'],
                          'evaluate.py: error: argument --num_hid: must be from 1 to 16384, got 1000000000'),
    'label_with_a_path': (['test.py', '--label', '../../x'],
                          "test.py: error: argument --label: '../../x' holds a path separator; it is a tag in the "
                          "results file name (put the folder in --output)"),
    'use_vg_with_flickr': (['main.py', '--task', 'flickr', '--use_vg'],
                           'main.py: error: argument --use_vg: Flickr30k trains on its train split and validates on '
                           'val; this flag is for --task vqa'),
    'gamma_with_flickr': (['main.py', '--task', 'flickr', '--gamma', '4'],
                          "main.py: error: argument --gamma: Flickr30k uses one glimpse (as the original does); "
                          "drop the flag"),
    'tfidf_sources_without_op_c': (['main.py', '--op', '', '--tfidf_sources', 'vqa'],
                                   'main.py: error: argument --tfidf_sources: the tf-idf table exists only with '
                                   '--op c'),
    'epochs_with_evaluate': (['main.py', '--evaluate', '--input', 'x.pth', '--epochs', '3'],
                             'main.py: error: argument --epochs: --evaluate only evaluates --input; this flag is '
                             'for training'),
    'fix_alignment_with_vqa': (['evaluate.py', '--fix_alignment'],
                               'evaluate.py: error: argument --fix_alignment: the phrase alignment is for --task '
                               'flickr'),
    'index_without_logits': (['test.py', '--index', '3'],
                             'test.py: error: argument --index: it numbers the logits file; pass --logits'),
})


@pytest.mark.parametrize('name', ARGPARSE_NAMES)
def test_nonsense_flag_values_exit_2_naming_the_flag(cli_results, name):
    check_argparse_error(cli_results, name)


def test_run_cli_keeps_a_multi_line_message_on_one_line(capsys):
    def fails(argv):
        raise UserError('first line\nsecond line')
    with pytest.raises(SystemExit) as stopped:
        utils.run_cli(fails, [])
    assert stopped.value.code == 2 and capsys.readouterr().err == 'error: first line second line\n'
