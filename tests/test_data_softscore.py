"""tools/compute_softscore.py: answer vocabulary, label order and soft-score
targets in the original's cache layouts."""
import json
import os
import pickle

import pytest

import compute_softscore
from test_data_helpers import LABELS_MIN1, TARGETS_MIN1, write_raw_root
from utils import UserError


def _load(path):
    with open(path, 'rb') as handle:
        return pickle.load(handle)  # trusted: written by the test itself


@pytest.fixture()
def raw_root(tmp_path):
    return write_raw_root(tmp_path)


def test_vocabulary_and_targets(raw_root):
    compute_softscore.main(['--dataroot', raw_root, '--min_occurrence', '1'])
    cache = os.path.join(raw_root, 'cache')
    ans2label = _load(os.path.join(cache, 'trainval_ans2label.pkl'))
    label2ans = _load(os.path.join(cache, 'trainval_label2ans.pkl'))
    assert type(ans2label) is dict and type(label2ans) is list
    assert label2ans == LABELS_MIN1
    assert ans2label == {answer: label for label, answer in enumerate(LABELS_MIN1)}
    for name, first_qid in (('train', 101), ('val', 201)):
        targets = _load(os.path.join(cache, '%s_target.pkl' % name))
        assert type(targets) is list and targets[0]['question_id'] == first_qid
        for item in targets:
            assert set(item) == {'question_id', 'image_id', 'labels', 'scores'}
            got = {label2ans[label]: score for label, score in zip(item['labels'], item['scores'])}
            assert got == pytest.approx(TARGETS_MIN1[item['question_id']])


def test_min_occurrence_counts_distinct_questions(raw_root):
    ans2label, label2ans = compute_softscore.main(['--dataroot', raw_root, '--min_occurrence', '2'])
    assert label2ans == ['2'] and ans2label == {'2': 0}  # questions 102 and 202
    targets = _load(os.path.join(raw_root, 'cache', 'val_target.pkl'))
    assert [(t['question_id'], t['labels'], t['scores']) for t in targets] == [
        (201, [], []), (202, [0], [1.0]), (203, [], [])]
    with pytest.raises(UserError, match='lower --min_occurrence'):
        compute_softscore.main(['--dataroot', raw_root, '--min_occurrence', '3'])


def test_missing_and_malformed_annotations_are_named(raw_root):
    path = os.path.join(raw_root, 'v2_mscoco_val2014_annotations.json')
    with open(path) as handle:
        data = json.load(handle)
    del data['annotations'][1]['multiple_choice_answer']
    with open(path, 'w') as handle:
        json.dump(data, handle)
    with pytest.raises(UserError, match=r'val2014_annotations.json: annotations\[1\] \(question 202\)'):
        compute_softscore.main(['--dataroot', raw_root])
    os.remove(path)
    with pytest.raises(UserError, match='missing file .*v2_mscoco_val2014_annotations.json.*tools/download.sh'):
        compute_softscore.main(['--dataroot', raw_root])
    assert not os.path.exists(os.path.join(raw_root, 'cache'))
