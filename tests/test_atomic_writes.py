"""No lost work (docs/ROBUSTNESS.md): a write failing halfway keeps the
previous file; an interrupted conversion is detected and redone."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import utils
from data_helpers import FEATURE_DIM
from dataset import VQAFeatureDataset
from formats.dictionary import Dictionary
from robust_helpers import converter_cmd, read_json, snapshot, temporary_files
from runs import checkpoints
from tools import adaptive_detection_features_converter as converter
from tools import compute_softscore
from utils import UserError

REPO = Path(__file__).resolve().parents[1]

def fail_halfway(monkeypatch, module, name, after_bytes=10):
    """Make `module.name(obj, handle, ...)` write `after_bytes` bytes, then fail like a full disk."""
    def write_then_fail(obj, handle, *args, **kwargs):
        handle.write(b'\0' * after_bytes)
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(module, name, write_then_fail)


def test_checkpoint_save_failing_halfway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adamax(model.parameters())
    path = str(tmp_path / 'model_last.pth')
    checkpoints.save_checkpoint(path, model, optimizer, 4)
    before = snapshot(str(tmp_path))
    fail_halfway(monkeypatch, torch, 'save')
    with pytest.raises(OSError, match='No space left'):
        checkpoints.save_checkpoint(path, model, optimizer, 5)
    assert snapshot(str(tmp_path)) == before and not temporary_files(str(tmp_path))
    assert checkpoints.load_checkpoint(path)['epoch'] == 4


def test_json_and_pickle_writes_failing_halfway_keep_the_previous_files(vqa_root, tmp_path, monkeypatch):
    results = str(tmp_path / 'results.json')
    utils.save_json([{'question_id': 1, 'answer': 'yes'}], results)
    def failing_fsync(fd):  # the data is written, the flush to disk fails
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(utils.os, 'fsync', failing_fsync)
    with pytest.raises(OSError):
        utils.save_json([{'question_id': 1, 'answer': 'no'}], results)
    monkeypatch.undo()
    assert read_json(results) == [{'question_id': 1, 'answer': 'yes'}] and not temporary_files(str(tmp_path))

    root = shutil.copytree(vqa_root, str(tmp_path / 'data'))
    cache = os.path.join(root, 'cache')
    before = snapshot(cache)
    fail_halfway(monkeypatch, compute_softscore.pickle, 'dump')
    with pytest.raises(OSError):
        compute_softscore.main(['--dataroot', root, '--min_occurrence', '1'])
    assert snapshot(cache) == before and not temporary_files(cache)


def test_conversion_failing_mid_write_keeps_the_previous_features(vqa_root, tmp_path, monkeypatch):
    root = shutil.copytree(vqa_root, str(tmp_path / 'data'))
    before = snapshot(root)
    original_flush, calls = converter._SplitWriter.flush, []

    def flush_then_fail(self):
        original_flush(self)
        calls.append(1)
        if len(calls) == 2:  # train's and val's rows are in their temporary HDF5 files
            raise OSError(28, 'No space left on device')
    monkeypatch.setattr(converter._SplitWriter, 'flush', flush_then_fail)
    with pytest.raises(OSError):
        converter.main(['--dataroot', root, '--feature_dim', str(FEATURE_DIM)])
    assert calls == [1, 1] and snapshot(root) == before and not temporary_files(root)


def test_interrupted_reconversion_is_detected_and_redone(vqa_root, tmp_path, monkeypatch):
    """A re-conversion stopped after its HDF5 file was renamed but before its
    imgid2idx was written leaves a new HDF5 beside an old mapping: readers and
    tools/process.sh must not take that pair for finished features."""
    root = shutil.copytree(vqa_root, str(tmp_path / 'data'))
    first = os.path.join(root, 'trainval', 'karpathy_val_resnet101_faster_rcnn_genome.tsv')  # image 2
    second = os.path.join(root, 'trainval', 'karpathy_train_resnet101_faster_rcnn_genome.tsv.0')  # images 1, 5
    os.rename(first, first + '.swap')
    os.rename(second, first)
    os.rename(first + '.swap', second)  # the train images now come as 2, 3, 1 instead of 1, 3, 2
    original_write = converter.atomic_write

    def stop_before_the_mapping(path, mode='wb'):
        raise KeyboardInterrupt
    monkeypatch.setattr(converter, 'atomic_write', stop_before_the_mapping)
    with pytest.raises(KeyboardInterrupt):
        converter.main(converter_cmd(root, 'train')[1:])
    monkeypatch.setattr(converter, 'atomic_write', original_write)
    assert not temporary_files(root)
    dictionary = Dictionary.load_from_file(os.path.join(root, 'dictionary.pkl'))
    with pytest.raises(UserError, match='train.hdf5 and .*train_imgid2idx.pkl come from different conversions'):
        VQAFeatureDataset('train', dictionary, root)
    with pytest.raises(SystemExit) as status:
        converter.main(['--dataroot', root, '--check', '--split', 'train'])
    assert status.value.code == 1
    env = dict(os.environ, FEATURE_DIM=str(FEATURE_DIM), MIN_OCCURRENCE='1')
    done = subprocess.run(['bash', str(REPO / 'tools' / 'process.sh'), root], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'come from different runs' in done.stdout and '[skip] adaptive' not in done.stdout
    assert VQAFeatureDataset('train', dictionary, root).img_id2idx == {2: 0, 3: 1, 1: 2}
    converter.main(['--dataroot', root, '--check'])  # all three splits finished: no SystemExit
