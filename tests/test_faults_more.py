"""Seven faults a probe found (docs/ROBUSTNESS.md rows 71 and 74-78): each ends in one
error line naming the file and the fix, with nothing written and the previous
output intact. A checkpoint whose weights are NaN; a full disk while
converting features and while saving a checkpoint; an empty Flickr30k split
file; a Visual Genome cache without its entries; a Flickr30k ground-truth box
far outside its image; a Flickr30k checkpoint given to VQA evaluate.py."""
import errno
import io
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ask
import base_model
import evaluate
import main
import test
import utils
from data_helpers import EVAL_FLAGS, FEATURE_DIM, image_record
from dataset import Flickr30kFeatureDataset, VisualGenomeFeatureDataset, VQAFeatureDataset
from formats.dictionary import Dictionary, load_dictionary
from robust_helpers import snapshot
from runs import checkpoints
from tools import adaptive_detection_features_converter
from tools.features_tsv import write_tsv
from utils import UserError

REPO = Path(__file__).resolve().parents[1]
NO_SPACE = 'no space left on device; free some space on that disk or write somewhere else'


def cli_status(capsys, command, argv):
    """(exit status, stderr) of `utils.run_cli(command, argv)`."""
    with pytest.raises(SystemExit) as stopped:
        utils.run_cli(command, argv)
    return stopped.value.code, capsys.readouterr().err


def one_error_line(err):
    assert err.startswith('error: ') and err.count('\n') == 1 and 'Traceback' not in err, err
    return err


# ----------------------------------------------------------------- a checkpoint whose weights are NaN

@pytest.fixture(scope='module')
def nan_checkpoint(vqa_root, tmp_path_factory):
    """(a finite checkpoint, the same with every weight NaN), both without an epoch in their name."""
    folder = tmp_path_factory.mktemp('nan')
    good = folder / 'good.pth'
    shutil.copy(os.path.join(vqa_root, 'model', 'model_epoch0.pth'), good)
    saved = torch.load(good, weights_only=True)
    saved['model_state'] = {key: torch.full_like(value, float('nan')) for key, value in saved['model_state'].items()}
    torch.save(saved, folder / 'nan.pth')
    return str(good), str(folder / 'nan.pth')


def test_test_py_refuses_nan_scores_and_keeps_the_previous_submission(vqa_root, nan_checkpoint, tmp_path, capsys):
    good, nan = nan_checkpoint
    argv = ['--dataroot', vqa_root, '--output', str(tmp_path)] + EVAL_FLAGS
    written = test.main(argv + ['--input', good])  # the previous submission, of the same name
    before = snapshot(str(tmp_path))
    status, err = cli_status(capsys, test.main, argv + ['--input', nan])
    assert status == 2 and one_error_line(err).startswith('error: %s gives NaN or infinite scores: ' % nan)
    assert 'of its weights are NaN or infinite' in err and 'use another checkpoint' in err
    assert snapshot(str(tmp_path)) == before and os.path.basename(written) in before


def test_evaluate_and_ask_refuse_nan_scores_naming_the_checkpoint(vqa_root, nan_checkpoint, tmp_path, capsys):
    _, nan = nan_checkpoint
    metrics = tmp_path / 'metrics.json'
    metrics.write_text('{"previous": true}')
    status, err = cli_status(capsys, evaluate.main, ['--dataroot', vqa_root, '--input', nan, '--output',
                                                     str(metrics)] + EVAL_FLAGS)
    assert status == 2 and one_error_line(err).startswith('error: %s gives NaN or infinite scores' % nan)
    assert metrics.read_text() == '{"previous": true}'
    status, err = cli_status(capsys, ask.main, ['--dataroot', vqa_root, '--input', nan, '--image_id', '4',
                                                '--question', 'Is it raining?', '--device', 'cpu'])
    assert status == 2 and one_error_line(err).startswith('error: %s gives NaN or infinite scores' % nan)


def test_the_flickr_model_s_box_scores_are_checked_too():
    class Grounding(torch.nn.Module):  # returns what BanModelFlickr returns: (None, box logits)
        def forward(self, logits):
            return None, logits
    model = Grounding()
    checkpoints.refuse_non_finite_scores(model, 'flickr.pth')
    model(torch.zeros(2, 3))
    with pytest.raises(UserError, match=r'^flickr.pth gives NaN or infinite scores: its weights are finite, but its '
                                        r'scores overflow on this input'):
        model(torch.tensor([[0.0, float('inf')]]))


# ----------------------------------------------------------------- a full disk

HDF5_CLOSE_ERROR = ("Disable slist on flush dest failure failed (file write failed: time = Sun Dec  6 03:28:31 2026\n"
                    ", filename = '%s', file descriptor = 3, errno = 28, error message = 'No space left on device', "
                    "buf = 0x557c23494ff0, total write size = 4096, bytes this sub-write = 4096, offset = 6144)")


def test_a_full_disk_while_converting_names_the_hdf5_file_and_keeps_the_previous_one(vqa_root, tmp_path, capsys,
                                                                                    monkeypatch):
    """h5py reports the failed writes of a full disk when the file is closed, as a RuntimeError (its text is
    what a full tmpfs gave); the previous features stay."""
    root = shutil.copytree(vqa_root, str(tmp_path / 'data'))
    before = snapshot(root)

    def fill_the_disk(writer):
        temporary = writer.datasets['image_features'].file.filename
        raise RuntimeError(HDF5_CLOSE_ERROR % temporary)
    monkeypatch.setattr(adaptive_detection_features_converter._SplitWriter, 'finish', fill_the_disk)
    status, err = cli_status(capsys, adaptive_detection_features_converter.main,
                             ['--dataroot', root, '--split', 'val', '--feature_dim', str(FEATURE_DIM)])
    assert (status, err) == (2, 'error: %s: %s\n' % (os.path.join(root, 'val.hdf5'), NO_SPACE))
    assert snapshot(root) == before


def small_tmpfs_or_skip():
    if shutil.which('unshare') is None or subprocess.run(['unshare', '-Urm', 'true'],
                                                         capture_output=True).returncode != 0:
        pytest.skip('no user namespaces (unshare -Urm) to mount a small tmpfs')


def run_with_a_full_disk(mount_point, size, command, previous):
    """Run `command` (python code calling utils.run_cli) with a tmpfs of
    `size` mounted on `mount_point` (in a user and mount namespace: a real
    full disk, no root needed), after writing b'previous' to `previous` there.
    Returns the process; its stdout lists the tmpfs afterwards and what
    `previous` then holds."""
    code = textwrap.dedent('''
        import os, sys
        sys.path.insert(0, '.')
        import utils
        open({previous!r}, 'w').write('previous')
        try:
            {command}
        finally:
            print(sorted(os.listdir({folder!r})), open({previous!r}).read())
    ''').format(previous=os.path.join(str(mount_point), previous), command=command, folder=str(mount_point))
    script = 'mount -t tmpfs -o size=%s tmpfs "%s" && "%s" -c "$0"' % (size, mount_point, sys.executable)
    return subprocess.run(['unshare', '-Urm', 'bash', '-c', script, code], cwd=str(REPO), capture_output=True,
                          text=True, timeout=300)


def test_a_really_full_disk_while_converting_and_while_saving_a_checkpoint(vqa_root, tmp_path):
    small_tmpfs_or_skip()
    small = tmp_path / 'small'
    small.mkdir()
    tsv = tmp_path / 'big.tsv'  # 2 x 50 boxes of 2048 values: 800 kB of features for a 200 kB disk
    write_tsv(str(tsv), [image_record(image_id, 50, 2048) for image_id in (4, 5)])
    questions = os.path.join(vqa_root, 'v2_OpenEnded_mscoco_val2014_questions.json')
    converted = run_with_a_full_disk(small, '200k', (
        'import shutil; shutil.copy(%r, %r); from tools import adaptive_detection_features_converter; '
        'utils.run_cli(adaptive_detection_features_converter.main, ["--dataroot", %r, "--split", "val", "--tsv", %r])'
        % (questions, str(small), str(small), str(tsv))), 'val.hdf5')
    assert converted.returncode == 2 and converted.stderr == 'error: %s/val.hdf5: %s\n' % (small, NO_SPACE), \
        converted.stderr
    assert converted.stdout == "['v2_OpenEnded_mscoco_val2014_questions.json', 'val.hdf5'] previous\n"
    saved = run_with_a_full_disk(small, '64k', (
        'import torch; from runs import checkpoints; model = torch.nn.Linear(200, 200); '
        'utils.run_cli(lambda argv: checkpoints.save_checkpoint(%r, model, torch.optim.Adamax(model.parameters()), 0))'
        % os.path.join(str(small), 'model_last.pth')), 'model_last.pth')
    assert saved.returncode == 2 and saved.stderr == 'error: %s/model_last.pth: %s\n' % (small, NO_SPACE), \
        saved.stderr
    assert saved.stdout == "['model_last.pth'] previous\n"
    assert os.listdir(str(small)) == []  # the tmpfs went with its namespace; nothing was written here


class FullDisk(io.FileIO):
    """A file on a disk that fills up after `room` bytes: write() then fails with ENOSPC."""
    room = 1000

    def write(self, data):
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_a_full_disk_while_saving_a_checkpoint_names_it_and_keeps_the_previous_one(tmp_path, capsys, monkeypatch):
    """torch's zip writer turns the write's OSError into "unexpected pos N vs M"; the error says the disk is full."""
    target = tmp_path / 'model_last.pth'
    target.write_bytes(b'previous')
    monkeypatch.setattr(utils.os, 'fdopen', lambda fd, mode: FullDisk(fd, 'wb'))
    model = torch.nn.Linear(50, 50)

    def save(argv):
        checkpoints.save_checkpoint(str(target), model, torch.optim.Adamax(model.parameters()), 0)
    status, err = cli_status(capsys, save, [])
    monkeypatch.undo()
    assert (status, err) == (2, 'error: %s: %s\n' % (target, NO_SPACE))
    assert target.read_bytes() == b'previous' and os.listdir(str(tmp_path)) == ['model_last.pth']


def test_a_torch_save_error_that_is_no_write_error_stays_as_it_is(tmp_path, monkeypatch):
    def fails(obj, handle):
        raise RuntimeError('something else')
    monkeypatch.setattr(torch, 'save', fails)
    with pytest.raises(RuntimeError, match='something else'):
        utils.torch_save_atomic({}, str(tmp_path / 'x.pth'))


# ----------------------------------------------------------------- data files

def test_an_empty_flickr_split_file_is_refused_naming_it(flickr_root, tmp_path, capsys):
    root = shutil.copytree(flickr_root, str(tmp_path / 'data'))
    flickr = os.path.join(root, 'flickr30k')
    split_file = os.path.join(flickr, 'Flickr30kEntities', 'train.txt')
    Path(split_file).write_text('')
    with pytest.raises(UserError, match='^%s lists no images; download annotations.zip' % split_file):
        Flickr30kFeatureDataset('train', load_dictionary(root, 'flickr'), flickr)
    output = tmp_path / 'run'
    status, err = cli_status(capsys, main.main, ['--task', 'flickr', '--dataroot', root, '--output', str(output),
                                                 '--epochs', '1', '--num_hid', '8', '--emb_dim', '8',
                                                 '--workers', '0', '--device', 'cpu'])
    assert status == 2 and one_error_line(err).startswith('error: %s lists no images' % split_file)
    assert not output.exists()


def test_a_flickr_ground_truth_box_far_outside_its_image_names_the_annotation_file(flickr_root, tmp_path):
    root = shutil.copytree(flickr_root, str(tmp_path / 'data'))
    path = os.path.join(root, 'flickr30k', 'Flickr30kEntities', 'Annotations', '301.xml')
    text = Path(path).read_text()
    start, end = text.index('<bndbox>'), text.index('</bndbox>')
    Path(path).write_text(text[:start] + '<bndbox><xmin>-5000</xmin><ymin>10</ymin><xmax>90000</xmax><ymax>300</ymax>'
                          + text[end:])
    with pytest.raises(UserError, match=r'^%s: box \[-5000, 10, 90000, 300\] lies more than a whole image width or '
                                        r'height outside the 500 x 400 image' % path):
        Flickr30kFeatureDataset('test', load_dictionary(root, 'flickr'), os.path.join(root, 'flickr30k'))


def test_a_visual_genome_cache_without_entries_is_rebuilt_on_request(vqa_root, tmp_path):
    root = shutil.copytree(vqa_root, str(tmp_path / 'data'))
    dictionary = Dictionary.load_from_file(os.path.join(root, 'dictionary.pkl'))
    train = VQAFeatureDataset('train', dictionary, root)
    VisualGenomeFeatureDataset('train', train, dictionary, root)  # writes the cache
    cache = os.path.join(root, 'cache', 'vg_train_adaptive_target.json')
    cached = utils.load_json(cache, '')
    utils.save_json({'key': cached['key'], 'entries': [{'question_id': 1}]}, cache)
    with pytest.raises(UserError, match=r'^%s: malformed entry .*; delete %s to rebuild it$' % (cache, cache)):
        VisualGenomeFeatureDataset('train', train, dictionary, root)
    utils.save_json({'key': cached['key']}, cache)
    with pytest.raises(UserError, match=r'^%s: expected a list of entries; delete %s to rebuild it$' % (cache, cache)):
        VisualGenomeFeatureDataset('train', train, dictionary, root)
    os.remove(cache)
    assert len(VisualGenomeFeatureDataset('train', train, dictionary, root).entries) == len(cached['entries'])


# ----------------------------------------------------------------- a checkpoint of the other task

@pytest.fixture(scope='module')
def flickr_checkpoint(tmp_path_factory):
    """(a Flickr30k checkpoint of ours, the same without its saved settings: the original's kind)."""
    folder = tmp_path_factory.mktemp('flickr_model')
    config = base_model.ModelConfig(task='flickr', num_hid=8, gamma=1, op='', emb_dim=5, ntoken=20,
                                    v_dim=FEATURE_DIM, num_answers=100)
    model = base_model.build_model(config)
    ours = str(folder / 'model_epoch3.pth')
    checkpoints.save_checkpoint(ours, model, torch.optim.Adamax(model.parameters()), 3)
    original = torch.load(ours, weights_only=True)
    del original['config']
    torch.save(original, folder / 'original.pth')
    return ours, str(folder / 'original.pth')


@pytest.mark.parametrize('flags, fix', [(['--gamma', '8'], 'pass --task flickr and drop --gamma 8'),
                                        (['--task', 'vqa'], 'pass --task flickr'),
                                        (['--task', 'vqa', '--op', 'c'], 'pass --task flickr and drop --op c')],
                         ids=['vqa_gamma', 'task_vqa', 'task_vqa_op_c'])
def test_a_flickr_checkpoint_given_to_vqa_evaluate_says_so(vqa_root, flickr_checkpoint, capsys, flags, fix):
    ours, _ = flickr_checkpoint
    status, err = cli_status(capsys, evaluate.main, ['--dataroot', vqa_root, '--input', ours, '--workers', '0',
                                                     '--device', 'cpu'] + flags)
    assert (status, err) == (2, 'error: %s is a Flickr30k model (main.py --task flickr): %s\n' % (ours, fix))


def test_a_flickr_checkpoint_without_saved_settings_is_named_a_flickr_model(vqa_root, flickr_checkpoint, capsys):
    _, original = flickr_checkpoint
    status, err = cli_status(capsys, evaluate.main, ['--dataroot', vqa_root, '--input', original] + EVAL_FLAGS)
    assert (status, err) == (2, 'error: %s is a Flickr30k model; pass --task flickr\n' % original)


def test_a_vqa_checkpoint_given_to_flickr_evaluate_says_so(vqa_root, capsys):
    path = os.path.join(vqa_root, 'model', 'model_epoch0.pth')
    status, err = cli_status(capsys, evaluate.main, ['--task', 'flickr', '--input', path, '--device', 'cpu'])
    assert (status, err) == (2, 'error: %s is a VQA model (main.py --task vqa): pass --task vqa\n' % path)
