"""tools/gpu_check.py: the CPU dry run runs every part at tiny size and writes
the report (every part present and passing, figures numeric); without CUDA
the script says so and exits 0; a part past its time limit is stopped,
reported, and the next part runs."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tools import gpu_check

REPO = Path(__file__).resolve().parents[1]


def numbers(value):
    """Every number inside a JSON value (bools excluded)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, (int, float)):
        return [value]
    items = value.values() if isinstance(value, dict) else value
    return [number for item in items for number in numbers(item)]


@pytest.fixture(scope='module')
def dry_run(tmp_path_factory):
    output = tmp_path_factory.mktemp('gpu_check') / 'gpu_check.json'
    done = subprocess.run([sys.executable, 'tools/gpu_check.py', '--cpu-dry-run', '--output', str(output)],
                          cwd=str(REPO), capture_output=True, text=True, timeout=1200)
    return done, output


def test_dry_run_passes_every_part(dry_run):
    done, output = dry_run
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(output.read_text())
    assert report['mode'] == 'dry' and list(report['parts']) == list(gpu_check.PARTS)
    for name, part in report['parts'].items():
        assert part['pass'] is True, (name, part['summary'])
        assert part['seconds'] > 0
    lines = done.stdout.splitlines()
    for name in gpu_check.PARTS:  # one line per part
        assert sum(line.startswith(name + ' ') for line in lines) == 1, name


def test_dry_run_figures(dry_run):
    _, output = dry_run
    parts = json.loads(output.read_text())['parts']
    for name, part in parts.items():
        found = numbers(part['figures'])
        assert found and all(math.isfinite(number) for number in found), name
    parity = parts['parity']['figures']
    assert parity['fp32']['max_output_error'] < gpu_check.FP32_TOLERANCES['outputs']
    assert parity['fp32']['max_gradient_error'] < gpu_check.FP32_TOLERANCES['gradients']
    assert 0 < parity['bf16']['max_output_error'] < gpu_check.AUTOCAST_BOUNDS['bf16']['outputs']
    assert parity['fp32']['flickr']['masked_exactly_-99_same_places'] is True
    assert parts['determinism']['figures']['differing_tensors'] == 0
    speed = parts['speed']['figures']
    for precision in ('fp32', 'bf16', 'fp16'):
        assert speed[precision]['train_samples_per_s'] > 0 and speed[precision]['infer_samples_per_s'] > 0
        assert speed[precision]['train_peak_memory_gb'] > 0
    assert speed['loader']['best_samples_per_s'] > 0
    ddp = parts['ddp']['figures']
    assert ddp['processes'] == 2 and ddp['process_group'] and ddp['single'] == ddp['torchrun']
    detector = parts['detector']['figures']
    assert detector['fp32']['pool5_rel_error_vs_cpu'] <= gpu_check.DETECTOR_BOUNDS['fp32']
    assert all(detector[precision]['seconds_per_image_median'] > 0 for precision in ('fp32', 'fp16', 'bf16'))


def test_markdown_table_has_a_row_per_part(dry_run):
    _, output = dry_run
    table = output.with_suffix('.md').read_text()
    for name in gpu_check.PARTS:
        assert '| %s | pass |' % name in table


def test_without_cuda_says_so_and_exits_0_even_when_a_part_overruns(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setitem(gpu_check.PART_LIMITS_S, 'dry',
                        dict(gpu_check.PART_LIMITS_S['dry'], parity=0.5, determinism=0.5))
    output = tmp_path / 'check.json'
    assert gpu_check.main(['--parts', 'parity,determinism', '--output', str(output)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('no CUDA device')
    assert lines[1].startswith('parity') and lines[2].startswith('determinism')  # went on after the first
    report = json.loads(output.read_text())
    for name in ('parity', 'determinism'):
        assert report['parts'][name]['pass'] is False
        assert report['parts'][name]['summary'] == 'stopped at its 0.5 s limit'
    assert report['parts']['speed']['summary'] == 'not run (--parts)'


def test_a_part_out_of_time_keeps_what_it_measured(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.PART_LIMITS_S, 'dry', dict(gpu_check.PART_LIMITS_S['dry'], determinism=0.5))
    (tmp_path / 'determinism.partial.json').write_text(json.dumps(
        {'pass': False, 'summary': 'two seeded runs differ in 3 of 61 tensors', 'figures': {'differing_tensors': 3}}))
    result = gpu_check.launch('determinism', 'dry', tmp_path)
    assert result['summary'] == 'stopped at its 0.5 s limit; so far: two seeded runs differ in 3 of 61 tensors'
    assert result['figures'] == {'differing_tensors': 3} and result['pass'] is False
