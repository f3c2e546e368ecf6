"""tools/demo.py prints each command so that it can be pasted into a shell and re-run as is."""
import os
import shlex
import sys

import pytest

from tools import demo

AWKWARD = ['visualize.py', '--question', 'what is the red shape?', '--label', "it's", '--x', '$HOME', '--y', '',
           '--z', 'a"b;c|d', '--epoch', 12]


@pytest.fixture
def ran(monkeypatch):
    """The argv lists that demo.run hands to subprocess.run (nothing runs)."""
    calls = []
    monkeypatch.setattr(demo.subprocess, 'run', lambda argv, cwd, check: calls.append((argv, cwd)))
    return calls


def printed_commands(capsys):
    return [line[2:] for line in capsys.readouterr().out.splitlines() if line.startswith('$ ')]


def test_printed_line_parses_back_to_the_argv_that_ran(ran, capsys):
    demo.run(*AWKWARD)
    [(argv, cwd)] = ran
    [line] = printed_commands(capsys)
    assert shlex.split(line) == argv
    assert argv[1:] == [str(part) for part in AWKWARD] and cwd == demo.REPO
    assert os.path.samefile(os.path.join(cwd, argv[0]), sys.executable)  # the interpreter running the demo


def test_interpreter_inside_the_repository_is_named_relative(ran, capsys, monkeypatch):
    monkeypatch.setattr(demo.sys, 'executable', os.path.join(demo.REPO, '.venv', 'bin', 'python'))
    demo.run('main.py', '--epochs', 1)
    assert printed_commands(capsys) == ['.venv/bin/python main.py --epochs 1']
    assert ran[0][0][0] == '.venv/bin/python'


def test_interpreter_elsewhere_is_named_absolute(ran, capsys, monkeypatch, tmp_path):
    outside = str(tmp_path / 'my env' / 'bin' / 'python3')
    monkeypatch.setattr(demo.sys, 'executable', outside)
    demo.run('main.py')
    [line] = printed_commands(capsys)
    assert shlex.split(line) == [outside, 'main.py'] == ran[0][0]
    assert line.startswith("'")  # the space in the path is quoted


def test_interpreter_at_the_repository_top_keeps_a_path(monkeypatch):
    monkeypatch.setattr(demo.sys, 'executable', os.path.join(demo.REPO, 'python'))
    assert demo.interpreter() == os.path.join(os.curdir, 'python')  # not a bare name looked up on PATH


# ----------------------------------------------------------------- seeds and targets

def test_each_seed_trains_into_its_own_folder_and_the_default_keeps_the_plain_names():
    assert demo.seed_suffix(demo.DEFAULT_SEED) == ''
    assert demo.seed_suffix(7) == '_seed7' and demo.seed_suffix(0) == '_seed0'
    assert demo.parse_args([]).seed == demo.DEFAULT_SEED == 1204  # main.py's default
    with pytest.raises(SystemExit):
        demo.parse_args(['--seed', '-1'])


def test_training_is_reused_only_when_it_ran_with_the_same_arguments(ran, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(demo, 'REPO', str(tmp_path))
    output = tmp_path / 'saved_models' / 'demo_seed3'
    output.mkdir(parents=True)
    demo.train('saved_models/demo_seed3', ['--num_hid', 8], 2, 3)  # nothing recorded: trains
    [(argv, _)] = ran
    assert argv[argv.index('--seed') + 1] == '3' and argv[-1] == '--overwrite'
    demo.save_json({'seconds': 12.5, 'arguments': argv[2:-1]}, str(output / 'demo_train_seconds.json'))
    assert demo.train('saved_models/demo_seed3', ['--num_hid', 8], 2, 3) == 12.5 and len(ran) == 1
    for other in ((['--num_hid', 8], 2, 4), (['--num_hid', 16], 2, 3), (['--num_hid', 8], 3, 3)):
        demo.train('saved_models/demo_seed3', *other)  # another seed, model or epoch count trains again
    assert len(ran) == 4
    demo.save_json({'seconds': 12.5}, str(output / 'demo_train_seconds.json'))  # from before arguments were kept
    demo.train('saved_models/demo_seed3', ['--num_hid', 8], 2, 3)
    assert len(ran) == 5


def test_a_missed_target_names_the_figure_and_what_to_do_next():
    summary = {'vqa_accuracy': 98.5, 'grounding_recall_at_1': 99.0}
    assert demo.missed_targets(summary) == ['vqa_accuracy 98.50 < 99']
    assert demo.missed_targets({'vqa_accuracy': 99.0, 'grounding_recall_at_1': 95.0}) == []
    advice = demo.next_steps(5, '_seed5')
    assert 'results/demo_summary_seed5.json' in advice and 'saved_models/demo_seed5/log.txt' in advice
    assert 'bash demo.sh --seed 6' in advice and 'torch==2.13.0' in advice
