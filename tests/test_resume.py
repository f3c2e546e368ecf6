"""Exact resume (docs/ROBUSTNESS.md): a crash between logging and saving an
epoch, or SIGTERM, leaves a run that resumes to the same weights."""
import json
import os
import signal

import pytest
import torch

import checkpoints
from robust_helpers import temporary_files
from test_data_helpers import TRAIN_FLAGS

def run_training(root, output, *extra):
    import main
    return main.main(['--dataroot', root, '--output', str(output), '--use_both', '--seed', '5'] + TRAIN_FLAGS
                     + list(extra))


def json_log(output):
    with open(os.path.join(output, 'log.jsonl')) as handle:
        return [{k: v for k, v in json.loads(line).items() if k not in ('seconds', 'samples_per_s')}
                for line in handle]


def same_weights(path_a, path_b):
    state_a = torch.load(path_a, weights_only=True)['model_state']
    state_b = torch.load(path_b, weights_only=True)['model_state']
    return state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_crash_between_logging_and_saving_an_epoch_resumes_exactly(vqa_root, tmp_path, monkeypatch):
    straight, crashed = tmp_path / 'straight', tmp_path / 'crashed'
    run_training(vqa_root, straight, '--epochs', '2')
    original_save = checkpoints.save_checkpoint

    def crash_at_epoch_1(path, model, optimizer, epoch, extra=None):
        if epoch == 1:
            raise OSError(5, 'I/O error')
        original_save(path, model, optimizer, epoch, extra)
    monkeypatch.setattr(checkpoints, 'save_checkpoint', crash_at_epoch_1)
    with pytest.raises(OSError):
        run_training(vqa_root, crashed, '--epochs', '2')
    assert [record['epoch'] for record in json_log(crashed)] == [0, 1]  # epoch 1 logged, not saved
    monkeypatch.setattr(checkpoints, 'save_checkpoint', original_save)
    run_training(vqa_root, crashed, '--epochs', '2', '--input', str(crashed / 'model_last.pth'))
    assert json_log(crashed) == json_log(straight)  # epoch 1 once, with the same numbers
    assert same_weights(straight / 'model_last.pth', crashed / 'model_last.pth')
    assert not temporary_files(str(crashed))


def test_sigterm_saves_a_resumable_checkpoint_like_ctrl_c(vqa_root, tmp_path, monkeypatch):
    """A scheduler's SIGTERM takes the Ctrl-C path (whose exact mid-epoch resume
    is tested in test_cli.py): the step finishes, model_interrupted.pth is saved."""
    import tasks
    stopped = tmp_path / 'stopped'
    original_step, calls = tasks.VQATask.train_step, []

    def step_then_sigterm(self, model, batch):
        calls.append(1)
        if len(calls) == 6:  # epoch 1 (7 items in batches of 2: 4 steps per epoch), second step
            signal.raise_signal(signal.SIGTERM)
        return original_step(self, model, batch)
    monkeypatch.setattr(tasks.VQATask, 'train_step', step_then_sigterm)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as status:
        run_training(vqa_root, stopped, '--epochs', '2')
    assert status.value.code == 130 and signal.getsignal(signal.SIGTERM) is previous
    checkpoint = torch.load(stopped / 'model_interrupted.pth', weights_only=True)
    assert checkpoint['epoch'] == 0 and checkpoint['resume_step'] == 2 and len(calls) == 6
    assert [record['epoch'] for record in json_log(stopped)] == [0] and not temporary_files(str(stopped))
