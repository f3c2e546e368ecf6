"""One run per output folder, and non-finite values stopping training
(docs/ROBUSTNESS.md rows 49-55)."""
import os
import re
import shutil

import h5py
import numpy as np
import pytest
import torch
from test_resume import json_log, run_training

import utils
from data_helpers import TRAIN_FLAGS
from robust_helpers import snapshot
from utils import UserError


def test_a_folder_in_use_by_another_training_is_refused(vqa_root, tmp_path, capsys):
    import main
    from runs import rundir
    output = tmp_path / 'busy'
    with rundir.OutputFolder(str(output)):  # what a training holds while it runs
        with pytest.raises(SystemExit) as status:
            utils.run_cli(main.main, ['--dataroot', vqa_root, '--output', str(output), '--epochs', '1'] + TRAIN_FLAGS)
        assert os.listdir(output) == ['.lock']
    assert status.value.code == 2
    err = capsys.readouterr().err
    assert err == 'error: %s is in use by another training (pid %d); wait for it to end, stop it, or pass another ' \
                  '--output\n' % (output, os.getpid())
    assert not output.exists()  # the folder the lock created goes with it
    run_training(vqa_root, output, '--epochs', '1')  # free again
    assert [record['epoch'] for record in json_log(output)] == [0] and not (output / '.lock').exists()


def test_overwrite_replaces_the_previous_run(vqa_root, tmp_path, capsys):
    output = tmp_path / 'out'
    run_training(vqa_root, output, '--epochs', '4')
    (output / 'notes.txt').write_text('mine')
    (output / '.model_last.pth.x1y2.tmp').write_bytes(b'\0' * 10)  # left by a killed save
    before = snapshot(str(output))
    with pytest.raises(UserError, match='holds another run'):
        run_training(vqa_root, output, '--epochs', '1')
    assert snapshot(str(output)) == before
    capsys.readouterr()
    run_training(vqa_root, output, '--epochs', '1', '--overwrite')
    assert sorted(os.listdir(output)) == ['curves.png', 'log.jsonl', 'log.txt', 'model_last.pth', 'notes.txt']
    assert [record['epoch'] for record in json_log(output)] == [0]
    assert (output / 'log.txt').read_text().count('optim: adamax') == 1
    out = capsys.readouterr().out
    assert ('--overwrite: removed the previous run in %s (log.jsonl, log.txt, model_epoch3.pth, model_last.pth)'
            % output) in out and 'removed 1 temporary file(s)' in out
    with pytest.raises(UserError, match='--overwrite would delete .*model_last.pth, the checkpoint to resume from'):
        run_training(vqa_root, output, '--epochs', '2', '--overwrite', '--input', str(output / 'model_last.pth'))


# ----------------------------------------------------------------- non-finite values

def test_nan_features_stop_training_naming_epoch_step_and_cause(vqa_root, tmp_path, capsys):
    """Features written by another tool are not scanned at start (row 'Not
    checked'); NaN among them stops training with the documented message (it
    was an IndexError in counting.py)."""
    import main
    root = shutil.copytree(vqa_root, str(tmp_path / 'data'))
    with h5py.File(os.path.join(root, 'train.hdf5'), 'a') as h5:
        h5['image_features'][0, 0] = np.nan
    with pytest.raises(SystemExit) as status:
        utils.run_cli(main.main, ['--dataroot', root, '--output', str(tmp_path / 'out'), '--epochs', '1']
                      + TRAIN_FLAGS)
    err = capsys.readouterr().err
    assert status.value.code == 2 and err.count('\n') == 1
    assert re.match(r"error: loss became nan at epoch 0, step [01]; this batch's features or boxes hold NaN or "
                    r"infinite values: .*re-convert it with tools/process.sh\n$", err), err
    assert not [name for name in os.listdir(tmp_path / 'out') if name.endswith('.pth')]


def test_non_finite_gradient_stops_before_the_step():
    """A finite loss with a NaN gradient would make every weight NaN through
    the clipping; training stops before optimizer.step instead."""
    import train

    class SqrtAtZero:  # d sqrt(x)/dx at 0 is inf; times the 0 of x = w * 0: NaN
        @staticmethod
        def to_device(batch, device):
            return batch

        @staticmethod
        def train_step(model, batch):
            return (model.weight * 0).sqrt().sum(), {'score': 0.0, 'samples': 1}

    model = torch.nn.Linear(2, 1)
    before = model.weight.detach().clone()
    optimizer = torch.optim.Adamax(model.parameters())
    with pytest.raises(train.NonFiniteLoss, match=r'gradient norm became nan at epoch 3, step 0 \(the loss was 0\); '
                                                  'lower the learning rate'):
        train.train_one_epoch(model, [[torch.zeros(1, 2)]], optimizer, SqrtAtZero(), torch.device('cpu'), 3)
    assert torch.equal(model.weight, before)


def test_the_counter_passes_nan_on_instead_of_failing():
    from counting import Counter
    boxes = torch.rand(2, 4, 12)
    attention = torch.randn(2, 12)
    attention[0, 3] = float('nan')
    counts = Counter(10)(boxes, attention)  # [2, 11]
    assert torch.isnan(counts[0]).all() and torch.isfinite(counts[1]).all()


