"""The whole chain: raw files -> tools -> VQAFeatureDataset /
VisualGenomeFeatureDataset -> padded batches; released cache layouts; and
errors that name the offending id."""
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_helpers import (
    FEATURE_DIM,
    LABELS_MIN1,
    TARGETS_MIN1,
    TEST_DEV_IDS,
    TRAIN_QUESTIONS,
    boxes_of,
    image_record,
    prepared_root,
    write_raw_root,
)
from dataset import VisualGenomeFeatureDataset, VQAFeatureDataset
from formats import features, paths
from formats.dictionary import Dictionary
from runs.collate import pad_collate
from utils import UserError


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
    return prepared_root(tmp_path_factory.mktemp('vqa'))


@pytest.fixture()
def root(prepared, tmp_path):
    """A private copy for tests that alter files."""
    return shutil.copytree(prepared, str(tmp_path / 'data'))


@pytest.fixture(scope='module')
def dictionary(prepared):
    return Dictionary.load_from_file(os.path.join(prepared, 'dictionary.pkl'))


def test_train_items(prepared, dictionary):
    train = VQAFeatureDataset('train', dictionary, prepared)
    assert len(train) == len(TRAIN_QUESTIONS) and train.num_ans_candidates == len(LABELS_MIN1)
    assert train.label2ans == LABELS_MIN1 and train.v_dim == FEATURE_DIM
    assert [e['question_id'] for e in train.entries] == [101, 102, 103, 104]
    entry = train.entries[3]
    assert set(entry) >= {'question_id', 'image_id', 'image', 'question', 'q_token', 'answer'}
    assert entry['image'] == train.img_id2idx[3]
    assert entry['answer'] == {'labels': [LABELS_MIN1.index(answer) for answer in TARGETS_MIN1[104]],
                               'scores': list(TARGETS_MIN1[104].values())}
    for index, (qid, image_id, text) in enumerate(TRAIN_QUESTIONS):
        features, spatials, question, target = train[index]
        _, width, height, boxes, expected = image_record(image_id, boxes_of(image_id))
        assert features.dtype == torch.float32 and features.shape == (boxes_of(image_id), FEATURE_DIM)
        np.testing.assert_array_equal(features.numpy(), expected)
        np.testing.assert_allclose(spatials[:, :4].numpy(), boxes / [width, height, width, height], rtol=1e-5)
        tokens = dictionary.tokenize(text, False)
        assert question.dtype == torch.long and question.shape == (14,)
        assert question.tolist() == (tokens + [dictionary.padding_idx] * 14)[:14]  # cut to 14, padded at the end
        expected_target = torch.zeros(len(LABELS_MIN1))
        for answer, score in TARGETS_MIN1[qid].items():
            expected_target[LABELS_MIN1.index(answer)] = score
        assert torch.equal(target, expected_target)


def test_val_soft_scores(prepared, dictionary):
    val = VQAFeatureDataset('val', dictionary, prepared)
    target = val[0][3]  # question 201: 'no' x7, 'yes' x3
    assert target[LABELS_MIN1.index('no')] == 1.0 and target[LABELS_MIN1.index('yes')] == pytest.approx(0.9)
    assert target.sum().item() == pytest.approx(1.9)


def test_test_splits_return_question_ids_and_share_test2015_features(prepared, dictionary):
    test = VQAFeatureDataset('test2015', dictionary, prepared)
    test_dev = VQAFeatureDataset('test-dev2015', dictionary, prepared, features=test.feature_store)
    assert [e['question_id'] for e in test_dev.entries] == list(TEST_DEV_IDS)
    assert test_dev.feature_store is test.feature_store
    features, _, question, question_id = test_dev[1]
    assert question_id == 302 and features.shape[0] == boxes_of(7)
    assert question.tolist()[:5] == dictionary.tokenize('Where is the cat?', False) + [dictionary.padding_idx]
    batch = pad_collate([test[0], test[1], test[2]])
    assert batch[3].dtype == torch.long and batch[3].tolist() == [301, 302, 303]


def test_padded_batches_from_worker_processes(prepared, dictionary):
    train = VQAFeatureDataset('train', dictionary, prepared)
    train[0]  # the parent opens its own handle before the workers fork
    assert train.box_counts().tolist() == [boxes_of(image_id) for _, image_id, _ in TRAIN_QUESTIONS]
    loader = DataLoader(train, batch_size=4, collate_fn=pad_collate, num_workers=2)
    features, spatials, questions, targets = next(iter(loader))
    counts = [boxes_of(image_id) for _, image_id, _ in TRAIN_QUESTIONS]
    assert features.shape == (4, max(counts), FEATURE_DIM) and spatials.shape == (4, max(counts), 6)
    assert questions.shape == (4, 14) and targets.shape == (4, len(LABELS_MIN1))
    for row, count in enumerate(counts):
        assert torch.equal(features[row, :count], train[row][0])
        assert not features[row, count:].any() and not spatials[row, count:].any()  # zero rows = no box
        assert features[row, :count].abs().sum(1).gt(0).all()


def test_load_in_memory_gives_the_same_items(prepared, dictionary):
    on_demand = VQAFeatureDataset('val', dictionary, prepared)
    in_memory = VQAFeatureDataset('val', dictionary, prepared, load_in_memory=True)
    for index in range(len(on_demand)):
        for got, expected in zip(in_memory[index], on_demand[index]):
            assert torch.equal(got, expected)


def test_visual_genome_shares_features_and_caches_entries(root, dictionary):
    train = VQAFeatureDataset('train', dictionary, root)
    vg = VisualGenomeFeatureDataset('train', train, dictionary, root)
    assert vg.feature_store is train.feature_store
    # 5001: COCO image 1 (train), 'Brown.' -> 'brown'; 5002 answer unknown; 5003-5005 not train images
    assert [(e['question_id'], e['image_id'], e['answer']) for e in vg.entries] == [
        (5001, 1, {'labels': [LABELS_MIN1.index('brown')], 'scores': [1.0]})]
    features, _, question, target = vg[0]
    assert torch.equal(features, train[0][0])  # question 101 is on image 1 too
    assert target.tolist() == [1.0, 0, 0, 0, 0, 0]
    assert question[4].item() == dictionary.ntoken - 1  # 'frisbee' is not a question word
    val = VQAFeatureDataset('val', dictionary, root)
    assert [e['question_id'] for e in VisualGenomeFeatureDataset('val', val.feature_store, dictionary,
                                                                 root).entries] == [5003]
    # a second construction reads the cache, not the raw files
    with open(os.path.join(root, 'question_answers.json'), 'w') as handle:
        handle.write('not json')
    again = VisualGenomeFeatureDataset('train', train, dictionary, root)
    assert [e['question_id'] for e in again.entries] == [5001]
    with pytest.raises(UserError, match='needs the train features'):
        VisualGenomeFeatureDataset('train', val, dictionary, root)


def test_released_vg_pickle_cache_is_read(root, dictionary):
    train = VQAFeatureDataset('train', dictionary, root)
    released = [{'question_id': 7, 'image_id': 3, 'image': train.img_id2idx[3], 'question': 'Is it cake?',
                 'answer': {'labels': [3], 'scores': [1.0]}}]
    with open(os.path.join(root, 'cache', 'vg_train_adaptive_target.pkl'), 'wb') as handle:
        pickle.dump(released, handle, protocol=2)
    vg = VisualGenomeFeatureDataset('train', train, dictionary, root)
    assert [e['question_id'] for e in vg.entries] == [7] and vg[0][3][3] == 1.0


def test_released_caches_in_the_original_layout_are_read(root, dictionary):
    """Protocol-2 pickles of plain containers, as the original wrote them."""
    ans2label = {'yes': 0, 'no': 1}
    cache = os.path.join(root, 'cache')
    for name, obj in (('trainval_ans2label', ans2label), ('trainval_label2ans', ['yes', 'no']),
                      ('train_target', [{'question_id': qid, 'image_id': image_id, 'labels': [0], 'scores': [0.3]}
                                        for qid, image_id, _ in TRAIN_QUESTIONS])):
        with open(os.path.join(cache, name + '.pkl'), 'wb') as handle:
            pickle.dump(obj, handle, protocol=2)
    os.remove(os.path.join(cache, 'train_target.pkl.meta.json'))  # the released caches have no sidecar
    train = VQAFeatureDataset('train', dictionary, root)
    assert train.num_ans_candidates == 2 and train[2][3].tolist() == pytest.approx([0.3, 0.0])


def _edit_questions(root, name, edit):
    path = paths.question_path(root, name)
    with open(path) as handle:
        data = json.load(handle)
    edit(data['questions'])
    with open(path, 'w') as handle:
        json.dump(data, handle)


def test_annotation_without_question_is_named(root, dictionary):
    _edit_questions(root, 'train', lambda questions: questions.pop(1))  # question 102
    with pytest.raises(UserError, match=r'annotation of question 102 .*has no question in'):
        VQAFeatureDataset('train', dictionary, root)


def test_question_without_target_is_named(root, dictionary):
    _edit_questions(root, 'val', lambda questions: questions.append(
        {'image_id': 5, 'question': 'Why?', 'question_id': 299}))
    with pytest.raises(UserError, match=r'question 299 has no answer target .*compute_softscore'):
        VQAFeatureDataset('val', dictionary, root)


def test_question_whose_image_has_no_features_is_named(root, dictionary):
    _edit_questions(root, 'test2015', lambda questions: questions.append(
        {'image_id': 77, 'question': 'Why?', 'question_id': 399}))
    with pytest.raises(UserError, match=r'question 399: image 77 has no features in .*test2015.hdf5'):
        VQAFeatureDataset('test2015', dictionary, root)


def test_feature_file_of_another_split_is_refused(root, dictionary):
    shutil.copy(os.path.join(root, 'val.hdf5'), os.path.join(root, 'train.hdf5'))
    with pytest.raises(UserError, match="train.hdf5 holds the features of split 'val', not 'train'"):
        VQAFeatureDataset('train', dictionary, root)
    with h5py.File(os.path.join(root, 'train.hdf5'), 'a') as h5:
        del h5.attrs['split']  # as in files converted by the original
    shutil.copy(os.path.join(root, 'val_imgid2idx.pkl'), os.path.join(root, 'train_imgid2idx.pkl'))
    with pytest.raises(UserError, match=r'question 101: image 1 has no features'):
        VQAFeatureDataset('train', dictionary, root)


def test_mismatched_imgid2idx_is_refused(root, dictionary):
    shutil.copy(os.path.join(root, 'test2015_imgid2idx.pkl'), os.path.join(root, 'train_imgid2idx.pkl'))
    with pytest.raises(UserError, match=r'train_imgid2idx.pkl maps 2 images but .*train.hdf5 holds 3'):
        VQAFeatureDataset('train', dictionary, root)


def test_missing_inputs_name_the_step(root, dictionary):
    os.remove(os.path.join(root, 'val.hdf5'))
    with pytest.raises(UserError, match=r'missing file .*val.hdf5.*adaptive_detection_features_converter.py'):
        VQAFeatureDataset('val', dictionary, root)
    os.remove(os.path.join(root, 'cache', 'trainval_label2ans.pkl'))
    with pytest.raises(UserError, match=r'missing file .*trainval_label2ans.pkl.*compute_softscore.py'):
        VQAFeatureDataset('train', dictionary, root)
    shutil.copy(os.path.join(root, 'train.hdf5'), os.path.join(root, 'train36.hdf5'))
    shutil.copy(os.path.join(root, 'train_imgid2idx.pkl'), os.path.join(root, 'train36_imgid2idx.pkl'))
    with pytest.raises(UserError, match='train36.hdf5: image_features is 2-d, so it is not a fixed-36'):
        features.FeatureStore(root, 'train', adaptive=False)


def test_pad_collate_pads_any_box_dimension():
    items = [(torch.ones(2, 3), torch.ones(2, 6), torch.arange(14), torch.tensor([0.5, 1.0])),
             (torch.full((4, 3), 2.0), torch.ones(4, 6), torch.arange(14), torch.tensor([0.0, 0.3]))]
    features, spatials, questions, targets = pad_collate(items)
    assert features.shape == (2, 4, 3) and spatials.shape == (2, 4, 6)
    assert features[0, 2:].abs().sum() == 0 and features[0, :2].eq(1).all() and features[1].eq(2).all()
    assert questions.shape == (2, 14) and torch.equal(targets, torch.tensor([[0.5, 1.0], [0.0, 0.3]]))


def test_process_sh_prepares_a_data_root(tmp_path, dictionary):
    root = write_raw_root(tmp_path / 'data')
    env = dict(os.environ, FEATURE_DIM=str(FEATURE_DIM), MIN_OCCURRENCE='1', PYTHON=sys.executable)
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools', 'process.sh')
    result = subprocess.run(['bash', script, root], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert Dictionary.load_from_file(os.path.join(root, 'dictionary.pkl')).idx2word == dictionary.idx2word
    val = VQAFeatureDataset('val', dictionary, root)
    assert val.label2ans == LABELS_MIN1 and len(val) == 3
    again = subprocess.run(['bash', script, root], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and '[skip] adaptive features already converted' in again.stdout


def test_process_sh_keeps_a_released_answer_cache(tmp_path, dictionary):
    """As the original: an existing cache/trainval_ans2label.pkl is reused
    (trainval_label2ans.pkl left alone) and the targets follow its labels."""
    root = write_raw_root(tmp_path / 'data')
    cache = os.path.join(root, 'cache')
    os.makedirs(cache)
    released = ['red', 'no', 'giraffe', 'cake', 'yes', '2', 'brown']  # not the order a rebuild gives
    files = {}
    for name, obj in (('trainval_ans2label', {answer: label for label, answer in enumerate(released)}),
                      ('trainval_label2ans', released)):
        files[name] = os.path.join(cache, name + '.pkl')
        with open(files[name], 'wb') as handle:
            pickle.dump(obj, handle, protocol=2)
    before = {name: open(path, 'rb').read() for name, path in files.items()}
    env = dict(os.environ, FEATURE_DIM=str(FEATURE_DIM), MIN_OCCURRENCE='1', PYTHON=sys.executable)
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools', 'process.sh')
    result = subprocess.run(['bash', script, root], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'reusing the existing answer vocabulary' in result.stdout
    assert {name: open(path, 'rb').read() for name, path in files.items()} == before
    train = VQAFeatureDataset('train', dictionary, root)
    assert train.label2ans == released
    for index, (qid, _, _) in enumerate(TRAIN_QUESTIONS):
        expected = torch.zeros(len(released))
        for answer, score in TARGETS_MIN1[qid].items():
            expected[released.index(answer)] = score
        assert torch.equal(train[index][3], expected), qid


RELEASED_CACHE = {'trainval_ans2label.pkl': b'released vocabulary', 'trainval_label2ans.pkl': b'released labels',
                  'train_target.pkl': b'released targets'}
FAKE_WGET = """#!/bin/sh
out=
while [ $# -gt 0 ]; do
  if [ "$1" = -O ]; then out=$2; shift; fi
  shift
done
echo "$out" >> "$FAKE_LOG"
if [ -n "$FAKE_TGZ" ]; then cp "$FAKE_TGZ" "$out"; else echo '<html>Google Drive: confirm</html>' > "$out"; fi
"""


def _run_download_sh(tmp_path, root, fake_tgz=''):
    """tools/download.sh on a data root that has every other download, with a
    fake wget that serves `fake_tgz` (or a Google Drive confirmation page)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / 'wget').write_text(FAKE_WGET)
    (bin_dir / 'wget').chmod(0o755)
    log = tmp_path / 'wget.log'
    if log.exists():
        log.unlink()
    env = dict(os.environ, PATH='%s:%s' % (bin_dir, os.environ['PATH']), FAKE_LOG=str(log), FAKE_TGZ=fake_tgz)
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools', 'download.sh')
    result = subprocess.run(['bash', script, root], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout, log.read_text().split() if log.exists() else []


def _released_tgz(path):
    with tarfile.open(path, 'w:gz') as archive:
        for name, content in RELEASED_CACHE.items():
            (path.parent / name).write_bytes(content)
            archive.add(str(path.parent / name), arcname=name)
    return str(path)


def _cache_files(root):
    cache = os.path.join(root, 'cache')
    return {name: open(os.path.join(cache, name), 'rb').read() for name in sorted(os.listdir(cache))}


def test_download_sh_unpacks_the_released_caches_without_overwriting(tmp_path):
    root = write_raw_root(tmp_path / 'data')
    tgz = _released_tgz(tmp_path / 'cache.pkl.tgz')
    os.makedirs(os.path.join(root, 'cache'))
    shutil.copy(tgz, os.path.join(root, 'cache', 'cache.pkl.tgz'))  # downloaded by hand
    with open(os.path.join(root, 'cache', 'train_target.pkl'), 'wb') as handle:
        handle.write(b'mine')
    out, fetched = _run_download_sh(tmp_path, root)
    assert fetched == []  # the archive was there: nothing downloaded
    files = _cache_files(root)
    assert files.pop('cache.pkl.tgz') == open(tgz, 'rb').read()  # kept: one of its files was not unpacked
    assert files == dict(RELEASED_CACHE, **{'train_target.pkl': b'mine'})
    assert 'kept the existing %s/cache/train_target.pkl' % root in out
    os.remove(os.path.join(root, 'cache', 'train_target.pkl'))
    _run_download_sh(tmp_path, root)
    assert _cache_files(root) == RELEASED_CACHE  # all unpacked: the archive is removed, as the original does


def test_download_sh_fetches_the_released_caches_or_asks_for_a_manual_download(tmp_path):
    root = write_raw_root(tmp_path / 'data')
    out, fetched = _run_download_sh(tmp_path, root)  # Google Drive answers with a page, not the archive
    assert fetched == [os.path.join(root, 'cache', 'cache.pkl.tgz.part')]
    assert 'download by hand' in out and 'id=1m5pL9gOkcnLZ_NuANmnDFIcil3NQVmZc' in out
    assert _cache_files(root) == {}  # no partial or HTML file left behind
    _run_download_sh(tmp_path, root, _released_tgz(tmp_path / 'cache.pkl.tgz'))
    assert _cache_files(root) == RELEASED_CACHE
    out, fetched = _run_download_sh(tmp_path, root)
    assert '[skip] released caches' in out and fetched == []  # no second download


def _collate_and_report_sharing(batch):
    features, spatials, questions, targets = pad_collate(batch)
    return [tensor.is_shared() for tensor in (features, spatials, questions, targets)]


def test_worker_batches_are_built_in_shared_memory(prepared, dictionary):
    train = VQAFeatureDataset('train', dictionary, prepared)
    in_worker = next(iter(DataLoader(train, batch_size=4, collate_fn=_collate_and_report_sharing, num_workers=1)))
    assert in_worker == [True] * 4  # no copy when the batch is handed to the main process
    in_main = _collate_and_report_sharing([train[0], train[1]])
    assert in_main == [False] * 4
