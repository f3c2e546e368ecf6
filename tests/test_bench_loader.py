"""tools/bench_loader.py on a tiny generated split: rates per worker count,
bucketed batches pad less, clean-up, and bad options."""
import json
import os

import pytest

from tools import bench_loader
from utils import UserError

TINY = ['--images', '40', '--questions', '120', '--feature_dim', '16', '--batch_size', '8',
        '--batches', '3', '--warmup', '1', '--repeats', '1']


def test_rates_for_each_worker_count_and_bucketing_pads_less(tmp_path):
    workdir = str(tmp_path / 'split')
    out = tmp_path / 'loader.json'
    random_batches = bench_loader.main(TINY + ['--workdir', workdir, '--workers', '0,1', '--keep',
                                               '--step_rate', '10', '--json', str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(random_batches))
    assert [result['workers'] for result in random_batches['results']] == [0, 1]
    for result in random_batches['results']:
        assert result['samples_per_s'] > 0 and len(result['runs']) == 1
        assert result['loader_over_step_rate'] == pytest.approx(result['samples_per_s'] / 10)
        assert 10 <= result['mean_padded_boxes'] <= 100
    assert os.path.exists(os.path.join(workdir, 'train.hdf5'))  # --keep
    bucketed = bench_loader.main(TINY + ['--workdir', workdir, '--workers', '0', '--bucket'])
    assert bucketed['bucket'] and 'loader_over_step_rate' not in bucketed['results'][0]
    assert bucketed['results'][0]['mean_padded_boxes'] < random_batches['results'][0]['mean_padded_boxes']
    assert not os.path.exists(workdir)  # removed without --keep


def test_more_batches_than_questions_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match='raise --questions or lower --batches'):
        bench_loader.main(TINY[:-6] + ['--batches', '50', '--workdir', str(tmp_path / 'split')])
    assert not (tmp_path / 'split').exists()


@pytest.mark.parametrize('argv', [['--workers', '0,x'], ['--workers', '-1']])
def test_bad_worker_lists_are_rejected(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_loader.main(argv)
    assert exit_info.value.code == 2 and 'non-negative integers' in capsys.readouterr().err


def test_zero_batches_is_rejected():
    with pytest.raises(UserError, match='--batches'):
        bench_loader.main(['--batches', '0'])
