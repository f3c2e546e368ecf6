"""Bad places to write (docs/ROBUSTNESS.md): an `--output` that holds another
run or is a file, a results path through a file, a write past the file-size
limit. Each case is answered by a one-line `error: ...` naming the path and
the fix, exit status 2, and the data root left as it was. The `@case`
machinery is tests/helpers/bad_inputs.py."""
import os

import pytest

from bad_inputs import case, cases_of, check_one_line_error, main_cmd
from data_helpers import EVAL_FLAGS


@case('holds another run (log.jsonl, log.txt, model_epoch0.pth, model_last.pth)',
      'pass --overwrite to replace it, --input', 'model_last.pth to resume it, or another --output')
def output_holds_another_run(root):  # was overwritten, its log appended to
    command = main_cmd(root)
    command[command.index('--output') + 1] = os.path.join(root, 'model')
    return command


@case('dictionary.pkl is a file, but main.py writes its checkpoints and logs into a folder')
def output_is_a_file(root):
    command = main_cmd(root)
    command[command.index('--output') + 1] = os.path.join(root, 'dictionary.pkl')
    return command


@case('--output', 'is a file, but main.py writes its checkpoints and logs into a folder')
def main_output_is_a_file(root):
    return main_cmd(root)[:3] + ['--output', os.path.join(root, 'dictionary.pkl')] + main_cmd(root)[5:]


@case('/results: a part of this path is a file, not a folder')
def results_folder_under_a_file(root):
    return ['test.py', '--dataroot', root, '--input', os.path.join(root, 'model'), '--epoch', '0',
            '--output', os.path.join(root, 'dictionary.pkl', 'results')] + EVAL_FLAGS


@case('model/test2015_ban8_x_epoch0.json: file too large')
def results_past_the_file_size_limit(root):
    command = ['test.py', '--dataroot', root, '--input', os.path.join(root, 'model'), '--epoch', '0', '--label', 'x',
               '--output', os.path.join(root, 'model')] + EVAL_FLAGS
    return command, {'file_size_limit': 20}


@pytest.mark.parametrize('name', cases_of(__name__))
def test_bad_input_gives_one_line_error_and_no_output(cli_results, name):
    check_one_line_error(cli_results, name)
