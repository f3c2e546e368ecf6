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
