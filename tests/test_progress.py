"""Progress in a log file (runs/progress.py): with stderr not a terminal,
long work prints one line per interval with steps done/total, rate and time
left; on a terminal it is tqdm's bar."""
import io
import json
import os
import re
import subprocess
import sys

import pytest

from runs import progress
from tools import features_tsv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r'^(?P<desc>[^:]+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+) \(\d+%\), [\d.e+]+ \w+/s'
                  r'(, (?P<samples>\d+) samples/s)?, (?P<left>.+) left')


class Clock:
    """A clock that advances `step` seconds each time it is read."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run_steps(steps, interval, clock_step, **options):
    stream = io.StringIO()
    work = progress.Progress(range(steps), 'epoch 0', unit='batches', stream=stream, clock=Clock(clock_step),
                             interval=interval, **options)
    for _ in work:
        work.add_samples(8)
        work.set_postfix(loss='0.500')
    work.close()
    return stream.getvalue().splitlines()


def test_a_log_line_has_done_total_rate_samples_and_time_left():
    lines = run_steps(10, interval=5.0, clock_step=1.0)
    assert lines, 'no progress line written to a file'
    first = LINE.match(lines[0])
    assert first, lines[0]
    assert first['desc'] == 'epoch 0' and first['unit'] == 'batches' and first['total'] == '10'
    assert int(first['samples']) > 0
    assert lines[0].endswith('loss=0.500')


def test_lines_follow_the_interval():
    # the clock advances 1 s per reading, and each step reads it once (plus once per line written)
    assert len(run_steps(100, interval=10.0, clock_step=1.0)) in range(8, 11)
    assert len(run_steps(100, interval=1000.0, clock_step=1.0)) == 0
    assert len(run_steps(20, interval=0.0, clock_step=1.0)) == 20


def test_time_left_is_the_remaining_steps_at_the_rate_so_far():
    stream = io.StringIO()
    clock = Clock(0.0)
    work = progress.Progress(range(100), 'converting', unit='images', stream=stream, clock=clock, interval=60.0)
    for index, _ in enumerate(work):
        clock.now = 2.0 * (index + 1)  # 2 s per image
    lines = stream.getvalue().splitlines()
    # the first line after 60 s: 30 images done, 70 left at 0.5 image/s = 140 s
    assert lines[0] == 'converting: 30/100 images (30%), 0.5 images/s, 2 min 20 s left'


def test_a_resumed_epoch_counts_from_its_first_step():
    stream = io.StringIO()
    clock = Clock(0.0)
    work = progress.Progress(range(50), 'epoch 2', total=150, initial=100, unit='batches', stream=stream, clock=clock,
                             interval=10.0)
    for index, _ in enumerate(work):
        clock.now = index + 1.0
    assert stream.getvalue().splitlines()[0] == 'epoch 2: 110/150 batches (73%), 1 batches/s, 40 s left'


def test_unknown_total_gives_the_count_and_rate():
    stream = io.StringIO()
    work = progress.Progress(iter(range(3)), 'counting boxes', unit='images', stream=stream, clock=Clock(1.0),
                             interval=0.0)
    list(work)
    assert stream.getvalue().splitlines()[0].startswith('counting boxes: 1 images, ')
    assert 'left' not in stream.getvalue()


def test_terminal_gets_tqdm_and_disabled_prints_nothing():
    terminal = Terminal()
    list(progress.Progress(range(5), 'eval', unit='batches', stream=terminal, interval=0.0))
    assert '\r' in terminal.getvalue() and 'eval' in terminal.getvalue()  # a bar redrawn in place
    silent = io.StringIO()
    list(progress.Progress(range(5), 'eval', stream=silent, enabled=False, interval=0.0))
    assert silent.getvalue() == ''


@pytest.mark.parametrize('value, expected', [('', progress.DEFAULT_INTERVAL), ('2.5', 2.5), ('0', 0.0),
                                             ('soon', progress.DEFAULT_INTERVAL), ('-1', progress.DEFAULT_INTERVAL)])
def test_interval_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(progress.INTERVAL_VARIABLE, value)
    assert progress.interval_seconds() == expected


@pytest.mark.parametrize('seconds, text', [(44.6, '45 s'), (200, '3 min 20 s'), (7500, '2 h 05 min')])
def test_duration(seconds, text):
    assert progress.duration(seconds) == text


def test_conversion_with_stderr_in_a_file_logs_progress(tmp_path):
    """The converter as a user runs it under nohup: stderr redirected to a file."""
    tsv = tmp_path / 'train.tsv'
    records = [(100 + i, 64, 48, [[0, 0, 10, 10], [5, 5, 30, 40]], [[float(i)] * 4, [1.0] * 4]) for i in range(5)]
    features_tsv.write_tsv(str(tsv), records)
    questions = {'questions': [{'image_id': 100 + i, 'question': 'what?', 'question_id': i} for i in range(5)]}
    (tmp_path / 'v2_OpenEnded_mscoco_train2014_questions.json').write_text(json.dumps(questions))
    log = tmp_path / 'log.txt'
    with open(log, 'w') as handle:
        subprocess.run([sys.executable, 'tools/adaptive_detection_features_converter.py', '--dataroot', str(tmp_path),
                        '--split', 'train', '--tsv', str(tsv), '--feature_dim', '4'], cwd=REPO, check=True,
                       stderr=handle, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, **{progress.INTERVAL_VARIABLE: '0'}))
    lines = log.read_text().splitlines()
    assert any(line.startswith('counting boxes: 5 images, ') for line in lines), lines
    converting = [LINE.match(line) for line in lines if line.startswith('converting:')]
    assert [match['done'] for match in converting] == ['1', '2', '3', '4', '5']
    assert all(match['total'] == '5' for match in converting)


def test_training_with_stderr_in_a_file_logs_epoch_and_evaluation_progress(tiny_root, tmp_path, monkeypatch, capfd):
    import main
    import tiny_vqa
    monkeypatch.setenv(progress.INTERVAL_VARIABLE, '0')
    main.main(['--dataroot', tiny_root, '--output', str(tmp_path / 'run'), '--epochs', '1', '--emb_dim',
               str(tiny_vqa.GLOVE_DIM), '--num_hid', '16', '--batch_size', '16', '--workers', '0', '--device', 'cpu'])
    lines = capfd.readouterr().err.splitlines()  # pytest's capture: not a terminal
    training = [LINE.match(line) for line in lines if line.startswith('epoch 0: ')]
    evaluation = [LINE.match(line) for line in lines if line.startswith('eval: ')]
    assert training and all(training) and evaluation and all(evaluation), lines
    assert [int(match['done']) for match in training] == list(range(1, len(training) + 1))
    assert training[-1]['done'] == training[-1]['total'] and training[-1]['left'] == '0 s'
    assert all(int(match['samples']) > 0 for match in training + evaluation)
    assert all(re.search(r', loss=\d+\.\d{3}$', line) for line in lines if line.startswith('epoch 0: '))


def test_a_bad_interval_is_warned_about_once(monkeypatch, capsys):
    monkeypatch.setenv(progress.INTERVAL_VARIABLE, 'every minute')
    for _ in range(3):
        assert progress.interval_seconds() == progress.DEFAULT_INTERVAL
    assert capsys.readouterr().err.count('warning: BAN_PROGRESS_SECONDS=') == 1
