"""A resume keeps its run: main.py saves its settings in every checkpoint,
and `main.py --input <checkpoint>` takes them (output folder, epochs, data
root, recipe) unless the command line gives them; a change says so in one
note, one that would make a mid-epoch resume inexact is refused. The other
command lines take the checkpoint's data root without --dataroot."""
import os
import signal

import pytest
import torch

import evaluate
import main
from data_helpers import EVAL_FLAGS, TRAIN_FLAGS
from runs import checkpoints
from utils import UserError

MACHINE = ['--workers', '0', '--device', 'cpu']  # not settings of the run: where it runs


def train(root, output, *extra):
    return main.main(['--dataroot', root, '--output', str(output), '--use_both', '--seed', '5'] + TRAIN_FLAGS
                     + list(extra))


def interrupted_run(root, output, monkeypatch, at_call, *extra):
    """A run of 2 epochs stopped by Ctrl-C in training step call `at_call`."""
    from runs import tasks
    original_step, calls = tasks.VQATask.train_step, []

    def step_then_interrupt(self, model, batch):
        calls.append(1)
        if len(calls) == at_call:
            signal.raise_signal(signal.SIGINT)
        return original_step(self, model, batch)
    monkeypatch.setattr(tasks.VQATask, 'train_step', step_then_interrupt)
    with pytest.raises(SystemExit):
        train(root, output, '--epochs', '2', *extra)
    monkeypatch.setattr(tasks.VQATask, 'train_step', original_step)
    return output / 'model_interrupted.pth'


def test_every_checkpoint_records_the_settings_of_main_py(vqa_root, tmp_path):
    output = tmp_path / 'run'
    train(vqa_root, output, '--epochs', '1', '--lr', '0.002')
    settings = torch.load(output / 'model_last.pth', weights_only=True)['settings']
    assert set(settings) == set(checkpoints.RUN_SETTINGS)
    assert (settings['dataroot'], settings['output'], settings['epochs'], settings['lr'], settings['seed'],
            settings['use_both'], settings['batch_size']) == (vqa_root, str(output), 1, 0.002, 5, True, 2)


def test_resuming_with_only_input_finishes_the_run_in_its_own_folder_exactly(vqa_root, tmp_path, monkeypatch,
                                                                              capsys):
    """The issue's case: after Ctrl-C, `main.py --input <model_interrupted.pth>`
    (with no other flag of the run) finishes that run, where it was, as if
    never stopped."""
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    train(vqa_root, straight, '--epochs', '2')
    checkpoint = interrupted_run(vqa_root, stopped, monkeypatch, 6)  # epoch 1, second step
    assert capsys.readouterr().err.endswith('stopped by Ctrl-C or SIGTERM at epoch 1, step 2: saved %s; resume with '
                                            '--input %s\n' % (checkpoint, checkpoint))
    main.main(['--input', str(checkpoint)] + MACHINE)
    out = capsys.readouterr().out
    assert 'note: run settings saved in %s: --dataroot %s --output %s --epochs 2' % (checkpoint, vqa_root, stopped) \
        in out
    resumed = torch.load(stopped / 'model_last.pth', weights_only=True)
    assert resumed['epoch'] == 1
    assert all(torch.equal(value, resumed['model_state'][key])
               for key, value in torch.load(straight / 'model_last.pth', weights_only=True)['model_state'].items())


def test_more_epochs_extend_the_run_with_a_note(vqa_root, tmp_path, capsys):
    output = tmp_path / 'run'
    train(vqa_root, output, '--epochs', '1')
    capsys.readouterr()
    main.main(['--input', str(output), '--epochs', '2'] + MACHINE)
    out = capsys.readouterr().out
    assert 'note: changing the run saved in %s: --epochs 2 extends it (it was to train 1 epochs)' \
        % (output / 'model_last.pth') in out
    assert torch.load(output / 'model_last.pth', weights_only=True)['epoch'] == 1


def test_a_change_that_breaks_a_mid_epoch_resume_is_refused(vqa_root, tmp_path, monkeypatch):
    output = tmp_path / 'run'
    checkpoint = interrupted_run(vqa_root, output, monkeypatch, 6)
    with pytest.raises(UserError, match=r'model_interrupted.pth was saved at step 2 of an epoch with --lr its '
                                        r'default, but this run has --lr 0.01: the rest of that epoch would not '
                                        r'continue it exactly; drop that flag, or restart that epoch from '
                                        r'.*model_last.pth'):
        main.parse_args(['--input', str(checkpoint), '--lr', '0.01'])
    args = main.parse_args(['--input', str(output / 'model_last.pth'), '--lr', '0.01'])  # at an epoch's end
    assert args.lr == 0.01 and args.output == str(output)


def test_a_checkpoint_without_settings_resumes_with_the_flags_as_before(vqa_root, tmp_path):
    output = tmp_path / 'run'
    train(vqa_root, output, '--epochs', '1')
    saved = torch.load(output / 'model_last.pth', weights_only=True)
    del saved['settings']
    older = tmp_path / 'older.pth'
    torch.save(saved, older)
    args = main.parse_args(['--input', str(older)])
    assert (args.output, args.epochs, args.dataroot, args.use_both) == ('saved_models/ban', 13, 'data', False)


def test_a_damaged_settings_field_is_named(vqa_root, tmp_path):
    output = tmp_path / 'run'
    train(vqa_root, output, '--epochs', '1')
    saved = torch.load(output / 'model_last.pth', weights_only=True)
    saved['settings'] = {'epochs': [1]}
    damaged = tmp_path / 'damaged.pth'
    torch.save(saved, damaged)
    with pytest.raises(UserError, match='damaged.pth: "settings" is not a dict of the main.py settings'):
        main.parse_args(['--input', str(damaged)])


def test_a_flag_ignored_under_the_resumed_runs_settings_is_refused(vqa_root, tmp_path, capsys):
    output = tmp_path / 'run'
    train(vqa_root, output, '--epochs', '1', '--op', 'c', '--tfidf', 'false')
    with pytest.raises(SystemExit) as stopped:
        main.parse_args(['--input', str(output), '--tfidf_sources', 'vqa'])
    assert stopped.value.code == 2
    assert ('error: argument --tfidf_sources: the tf-idf table is turned off (--tfidf false)'
            in capsys.readouterr().err)


def test_evaluate_without_dataroot_uses_the_checkpoints(vqa_root, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no ./data here
    checkpoint = os.path.join(vqa_root, 'model', 'model_last.pth')
    metrics = evaluate.main(['--input', checkpoint] + EVAL_FLAGS)
    assert metrics['checkpoint'] == checkpoint
    assert ('note: --dataroot %s, the data root %s was trained on (pass --dataroot to use another)'
            % (vqa_root, checkpoint)) in capsys.readouterr().out
    assert evaluate.parse_args(['--input', checkpoint, '--dataroot', 'elsewhere']).dataroot == 'elsewhere'


def test_a_moved_run_folder_continues_where_its_checkpoint_is(vqa_root, tmp_path):
    import shutil
    output, moved = tmp_path / 'run', tmp_path / 'moved'
    train(vqa_root, output, '--epochs', '1')
    shutil.move(str(output), str(moved))
    args = main.parse_args(['--input', str(moved)])
    assert (args.output, args.epochs, args.dataroot) == (str(moved), 1, vqa_root)


@pytest.mark.parametrize('cli', ['test', 'ask', 'visualize'])
def test_the_other_command_lines_take_the_checkpoints_data_root(cli, vqa_root, capsys):
    import importlib
    checkpoint = os.path.join(vqa_root, 'model', 'model_last.pth')
    extra = ['--question', 'what?'] if cli in ('ask', 'visualize') else []
    args = importlib.import_module(cli).parse_args(['--input', checkpoint] + extra)
    assert args.dataroot == vqa_root
    assert 'note: --dataroot %s, the data root %s was trained on' % (vqa_root, checkpoint) in capsys.readouterr().out
    given = importlib.import_module(cli).parse_args(['--input', checkpoint, '--dataroot', 'mine'] + extra)
    assert given.dataroot == 'mine'
