"""Exact resume and signals (docs/ROBUSTNESS.md): a crash between logging and
saving an epoch, Ctrl-C or SIGTERM (with DataLoader workers, during
evaluation, twice) leaves a run that resumes to the same weights."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import utils
from data_helpers import TRAIN_FLAGS
from robust_helpers import snapshot, temporary_files
from runs import checkpoints
from utils import UserError

REPO = Path(__file__).resolve().parents[1]

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
    from runs import tasks
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
    before = snapshot(str(stopped))
    with pytest.raises(UserError, match='model_interrupted.pth was saved at step 2 of an epoch with batch_size 2, '
                                        'but this run has 1; resume with the same --batch_size'):
        run_training(vqa_root, stopped, '--epochs', '2', '--batch_size', '1',
                     '--input', str(stopped / 'model_interrupted.pth'))
    assert snapshot(str(stopped)) == before  # refused before anything was written


def training_process(root, output, *extra):
    """main.py in a process group of its own, as a cluster scheduler starts it."""
    command = [sys.executable, 'main.py', '--dataroot', root, '--output', str(output), '--use_both', '--seed', '5']
    return subprocess.Popen(command + TRAIN_FLAGS + list(extra), cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(condition, process, seconds=120):
    import time
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)


def test_sigterm_to_the_process_group_with_workers_saves_and_resumes_exactly(vqa_root, tmp_path, capsys):
    """A scheduler's SIGTERM reaches the main process and its DataLoader
    workers: no worker traceback, model_interrupted.pth saved at a step
    boundary, and resuming from it gives the weights of an uninterrupted run.
    A second training into the folder meanwhile is refused."""
    import main
    stopped, straight = tmp_path / 'stopped', tmp_path / 'straight'
    process = training_process(vqa_root, stopped, '--workers', '2', '--epochs', '1000')
    try:
        wait_for(lambda: (stopped / 'log.jsonl').exists() and (stopped / 'log.jsonl').stat().st_size, process)
        with pytest.raises(SystemExit) as refused:
            utils.run_cli(main.main, ['--dataroot', vqa_root, '--output', str(stopped), '--epochs', '1'] + TRAIN_FLAGS)
        assert refused.value.code == 2
        assert ('%s is in use by another training (pid %d)' % (stopped, process.pid)) in capsys.readouterr().err
        os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130 and 'Traceback' not in err, err
    assert 'SIGTERM: finishing this step' in err and 'stopped by Ctrl-C or SIGTERM' in err
    assert not temporary_files(str(stopped))
    assert not (stopped / '.lock').exists()
    checkpoint = torch.load(stopped / 'model_interrupted.pth', weights_only=True)
    epochs = str(checkpoint['epoch'] + 2)  # to the end of the interrupted epoch
    run_training(vqa_root, stopped, '--epochs', epochs, '--input', str(stopped / 'model_interrupted.pth'))
    run_training(vqa_root, straight, '--epochs', epochs)
    assert json_log(stopped) == json_log(straight)
    assert same_weights(straight / 'model_last.pth', stopped / 'model_last.pth')


@pytest.mark.parametrize('signals, saved', [(['SIGINT', 'SIGINT'], False), (['SIGTERM', 'SIGTERM'], True)],
                         ids=['second_ctrl_c_stops_at_once', 'repeated_sigterm_is_one'])
def test_a_second_ctrl_c_stops_at_once_and_saves_nothing(vqa_root, tmp_path, monkeypatch, capsys, signals, saved):
    """A second Ctrl-C in the middle of a step stops there: a checkpoint of a
    half-applied step must not be saved. A SIGTERM delivered twice (by the
    scheduler and by a launcher forwarding it) is one request."""
    from runs import tasks
    output = tmp_path / 'out'
    original_step, calls = tasks.VQATask.train_step, []

    def step_signalled_twice(self, model, batch):
        calls.append(1)
        if len(calls) == 6:  # epoch 1, second step
            for name in signals:
                signal.raise_signal(getattr(signal, name))
        return original_step(self, model, batch)
    monkeypatch.setattr(tasks.VQATask, 'train_step', step_signalled_twice)
    monkeypatch.setattr(utils.GracefulStop, 'REPEAT_AFTER_S', 0.0)
    with pytest.raises(SystemExit) as status:
        run_training(vqa_root, output, '--epochs', '2')
    assert status.value.code == 130
    assert (output / 'model_interrupted.pth').exists() == saved
    assert torch.load(output / 'model_last.pth', weights_only=True)['epoch'] == 0 and not temporary_files(str(output))
    if not saved:
        assert 'stopped at once by a second Ctrl-C: nothing saved' in capsys.readouterr().err


def test_sigterm_during_evaluation_saves_the_trained_epoch_and_resumes_exactly(vqa_root, tmp_path, monkeypatch):
    from runs import tasks
    stopped, straight = tmp_path / 'stopped', tmp_path / 'straight'
    run_training(vqa_root, straight, '--epochs', '2', '--use_both', 'false')
    original_eval, calls = tasks.VQATask.eval_step, []

    def eval_then_sigterm(self, model, batch):
        calls.append(1)
        if len(calls) == 3:  # epoch 1's evaluation (3 val questions in batches of 2), first batch
            signal.raise_signal(signal.SIGTERM)
        return original_eval(self, model, batch)
    monkeypatch.setattr(tasks.VQATask, 'eval_step', eval_then_sigterm)
    with pytest.raises(SystemExit):
        run_training(vqa_root, stopped, '--epochs', '2', '--use_both', 'false')
    checkpoint = torch.load(stopped / 'model_interrupted.pth', weights_only=True)
    assert (checkpoint['epoch'], checkpoint['resume_step']) == (0, 2)  # both steps of epoch 1 done
    monkeypatch.setattr(tasks.VQATask, 'eval_step', original_eval)
    run_training(vqa_root, stopped, '--epochs', '2', '--use_both', 'false',
                 '--input', str(stopped / 'model_interrupted.pth'))
    assert json_log(stopped) == json_log(straight)  # (timings left out)
    assert same_weights(straight / 'model_last.pth', stopped / 'model_last.pth')
