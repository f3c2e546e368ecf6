"""Bad checkpoints (docs/ROBUSTNESS.md), read by `runs.checkpoints`: damaged,
of another configuration, carrying code, not ours, or with resume fields that
do not fit the run. Each case is answered by a one-line `error: ...` naming
the file/key and the fix, exit status 2 and no output. The `@case` machinery
is tests/helpers/bad_inputs.py; this file also checks that its one-process
batch behaves as a plain `python3 <script>`."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from bad_inputs import REPO, case, cases_of, check_one_line_error, evaluate_cmd, main_cmd, run_batch
from robust_helpers import RunsCode


def edited_checkpoint(root, **fields):
    """<root>/model/model_last.pth (epoch 0, saved by main.py) with `fields` set."""
    path = os.path.join(root, 'model', 'model_last.pth')
    checkpoint = torch.load(path, weights_only=True)
    checkpoint.update(fields)
    torch.save(checkpoint, path)
    return path


def mid_epoch_checkpoint(root, step):
    """model_last.pth made into a checkpoint saved at `step` of epoch 1 (batches of 2)."""
    return edited_checkpoint(root, resume_step=step, partial_sums=dict(loss=1.0, norm=1.0, steps=step, score=0.0,
                                                                        samples=2 * step))


def resume_cmd(root, checkpoint):
    """main.py resuming `checkpoint` (of epoch 1) to the end of epoch 1."""
    command = main_cmd(root) + ['--input', checkpoint]
    command[command.index('--epochs') + 1] = '2'
    return command


@case('model_epoch0.pth: cannot read checkpoint', 'truncated', 're-download or re-train')
def checkpoint_truncated(root):
    path = os.path.join(root, 'model', 'model_epoch0.pth')
    with open(path, 'rb') as handle:
        head = handle.read(4000)
    with open(path, 'wb') as handle:
        handle.write(head)
    return evaluate_cmd(root, os.path.join(root, 'model'))


@case('model_epoch0.pth does not fit this model',
      'q_emb.rnn.weight_hh_l0: checkpoint (24, 8), model (36, 12)', 'pass the --num_hid, --gamma')
def checkpoint_of_another_configuration(root):  # as the original saved it: no "config", the flags decide
    path = os.path.join(root, 'model', 'model_epoch0.pth')
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint['config']
    torch.save(checkpoint, path)
    command = evaluate_cmd(root, os.path.join(root, 'model'))
    command[command.index('--num_hid') + 1] = '12'
    return command


@case('model_epoch0.pth cannot be loaded with --num_hid 12 (it was trained with --num_hid 8)', 'drop the flag')
def flag_contradicting_the_saved_settings(root):
    command = evaluate_cmd(root, os.path.join(root, 'model'))
    command[command.index('--num_hid') + 1] = '12'
    return command


@case('model_epoch0.pth: refused: it carries the Python global posix.system', 'which a weights-only load refuses',
      're-download or re-train')
def checkpoint_that_carries_code(root):
    torch.save({'epoch': 0, 'model_state': RunsCode(os.path.join(root, 'PWNED'))},
               os.path.join(root, 'model', 'model_epoch0.pth'))
    return evaluate_cmd(root, os.path.join(root, 'model'))


@case('model_epoch0.pth: not a BAN checkpoint (no "model_state" key)')
def checkpoint_of_something_else(root):
    torch.save({'state_dict': {'w': torch.zeros(2)}}, os.path.join(root, 'model', 'model_epoch0.pth'))
    return evaluate_cmd(root, os.path.join(root, 'model'))


@case('model_epoch0.pth: "epoch" is None', 'model_last.pth')
def resume_from_checkpoint_without_epoch(root):
    path = os.path.join(root, 'model', 'model_epoch0.pth')
    checkpoint = torch.load(path, weights_only=True)
    torch.save({'model_state': checkpoint['model_state']}, path)
    return main_cmd(root) + ['--input', path]


@case('model_last.pth: "best_eval_score" is \'high\', not a number', 'resume from another checkpoint')
def checkpoint_field_of_wrong_type(root):  # was a TypeError at the first validation
    return resume_cmd(root, edited_checkpoint(root, best_eval_score='high'))


@case('model_last.pth: "resume_step" 9999 is past the 2 batches of an epoch', 'model_last.pth')
def resume_step_past_the_epoch(root):  # was an epoch logged with no step
    return resume_cmd(root, mid_epoch_checkpoint(root, 9999))


@case('model_last.pth was saved at step 1 of an epoch with batch_size 2, but this run has 4',
      'resume with the same --batch_size')
def resume_with_another_batch_size(root):  # was an epoch of 6 of 7 samples
    command = resume_cmd(root, mid_epoch_checkpoint(root, 1))
    command[command.index('--batch_size') + 1] = '4'
    return command


@case('model_last.pth: "partial_sums" counts 3 steps but "resume_step" is 1: the checkpoint is damaged')
def resume_step_and_partial_sums_disagree(root):
    mid_epoch_checkpoint(root, 1)
    return resume_cmd(root, edited_checkpoint(root, partial_sums=dict(loss=1.0, norm=1.0, steps=3, score=0.0,
                                                                      samples=6)))


@case('model_last.pth stops at step 1 of an epoch but does not record the batch size and data it was saved with')
def mid_epoch_checkpoint_without_run_record(root):  # written before checkpoints had one
    mid_epoch_checkpoint(root, 1)
    path = edited_checkpoint(root)
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint['run']
    torch.save(checkpoint, path)
    return resume_cmd(root, path)


@case('model_last.pth has finished epoch 0, so --epochs 1 leaves nothing to train', 'pass --epochs 2')
def resume_with_no_epoch_left(root):
    return main_cmd(root) + ['--input', os.path.join(root, 'model', 'model_last.pth')]


@pytest.mark.parametrize('name', cases_of(__name__))
def test_bad_input_gives_one_line_error_and_no_output(cli_results, name):
    check_one_line_error(cli_results, name)


def test_batch_runner_matches_a_real_subprocess(vqa_root, tmp_path):
    """The runpy batch of tests/helpers/bad_inputs.py behaves as `python3 <script>`: same status, same stderr."""
    root = shutil.copytree(vqa_root, str(tmp_path / 'data'))
    command = checkpoint_truncated(root)
    real = subprocess.run([sys.executable] + command, cwd=str(REPO), capture_output=True, text=True, timeout=120)
    batch = run_batch([(command[0], command[1:], {})], str(tmp_path))[0]
    assert (real.returncode, real.stderr) == (batch['returncode'], batch['stderr'])
    assert real.returncode == 2 and real.stderr.count('\n') == 1
