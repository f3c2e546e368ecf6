"""tools/compute_softscore.py: answer vocabulary, label order and soft-score
targets in the original's cache layouts."""
import json
import os
import pickle

import pytest

from data_helpers import (
    LABELS_MIN1,
    TARGETS_MIN1,
    TRAIN_QUESTIONS,
    rule_targets,
    write_raw_root,
)
from formats import vqa_files
from formats.answers import preprocess_answer
from tools import compute_softscore
from utils import UserError


def _load(path):
    with open(path, 'rb') as handle:
        return pickle.load(handle)  # trusted: written by the test itself


@pytest.fixture()
def raw_root(tmp_path):
    return write_raw_root(tmp_path)


def _assert_targets(got, expected):
    assert got.keys() == expected.keys()
    for qid in expected:
        assert got[qid] == pytest.approx(expected[qid]), qid


def _targets_by_answer(cache, label2ans):
    """question_id -> {answer: score} of the train and val target files."""
    got = {}
    for name, first_qid in (('train', 101), ('val', 201)):
        targets = _load(os.path.join(cache, '%s_target.pkl' % name))
        assert type(targets) is list and targets[0]['question_id'] == first_qid
        for item in targets:
            assert set(item) == {'question_id', 'image_id', 'labels', 'scores'}
            got[item['question_id']] = {label2ans[label]: score
                                        for label, score in zip(item['labels'], item['scores'])}
    return got


def test_vocabulary_and_targets_count_the_raw_answer_strings(raw_root):
    compute_softscore.main(['--dataroot', raw_root, '--min_occurrence', '1'])
    cache = os.path.join(raw_root, 'cache')
    ans2label = _load(os.path.join(cache, 'trainval_ans2label.pkl'))
    label2ans = _load(os.path.join(cache, 'trainval_label2ans.pkl'))
    assert type(ans2label) is dict and type(label2ans) is list
    assert label2ans == LABELS_MIN1
    assert ans2label == {answer: label for label, answer in enumerate(LABELS_MIN1)}
    got = _targets_by_answer(cache, label2ans)
    _assert_targets(got, TARGETS_MIN1)
    # the variants do not count for their label: 'Brown.' (101), 'a cake' (104), 'two' (202), 'Red' (203)
    assert got[101] == pytest.approx({'brown': 0.9}) and got[104] == pytest.approx({'cake': 0.9})
    assert got[202] == {} and got[203] == {}


def test_normalize_answers_counts_the_normalised_strings(raw_root):
    compute_softscore.main(['--dataroot', raw_root, '--min_occurrence', '1', '--normalize_answers'])
    got = _targets_by_answer(os.path.join(raw_root, 'cache'), LABELS_MIN1)
    _assert_targets(got, rule_targets(LABELS_MIN1, preprocess_answer))
    assert got[203] == {'red': 1.0} and got[101] == {'brown': 1.0}


def test_an_existing_vocabulary_is_reused(raw_root, capsys):
    cache = os.path.join(raw_root, 'cache')
    os.makedirs(cache)
    released = list(reversed(LABELS_MIN1)) + ['giraffe']  # another order than a rebuild gives
    with open(os.path.join(cache, 'trainval_ans2label.pkl'), 'wb') as handle:
        pickle.dump({answer: label for label, answer in enumerate(released)}, handle, protocol=2)
    ans2label, label2ans = compute_softscore.main(['--dataroot', raw_root, '--min_occurrence', '1'])
    assert label2ans == released and ans2label == {answer: label for label, answer in enumerate(released)}
    assert 'reusing the existing answer vocabulary' in capsys.readouterr().out
    assert _load(os.path.join(cache, 'trainval_label2ans.pkl')) == released  # written only as it was missing
    _assert_targets(_targets_by_answer(cache, released), TARGETS_MIN1)
    with open(os.path.join(cache, 'trainval_ans2label.pkl'), 'wb') as handle:
        pickle.dump({'yes': 1}, handle, protocol=2)
    with pytest.raises(UserError, match='trainval_ans2label.pkl: expected a dict .*delete it to rebuild'):
        compute_softscore.main(['--dataroot', raw_root])


def test_targets_from_another_vocabulary_are_refused(raw_root):
    """compute_softscore killed after writing a vocabulary but before the
    targets: the old targets must not be read against the new labels."""
    compute_softscore.main(['--dataroot', raw_root, '--min_occurrence', '1'])
    cache = os.path.join(raw_root, 'cache')
    assert vqa_files.load_targets(raw_root, 'train', vqa_files.load_answer_maps(raw_root)[0])[1].keys() == \
        {qid for qid, _, _ in TRAIN_QUESTIONS}
    new_vocabulary = list(reversed(LABELS_MIN1))  # same size: the label-range check cannot see it
    for name, obj in (('trainval_ans2label', {a: i for i, a in enumerate(new_vocabulary)}),
                      ('trainval_label2ans', new_vocabulary)):
        with open(os.path.join(cache, name + '.pkl'), 'wb') as handle:
            pickle.dump(obj, handle, protocol=2)
    ans2label, _ = vqa_files.load_answer_maps(raw_root)
    with pytest.raises(UserError, match=r'train_target.pkl was computed against another answer vocabulary than '
                                        r'.*trainval_ans2label.pkl.*re-run tools/compute_softscore.py'):
        vqa_files.load_targets(raw_root, 'train', ans2label)
    compute_softscore.main(['--dataroot', raw_root])  # the fix: targets recomputed against that vocabulary
    labels = vqa_files.load_targets(raw_root, 'train', ans2label)[1][103]['labels']
    assert labels == [new_vocabulary.index('yes')]


def test_targets_without_sidecar_load_unchecked(raw_root, capsys):
    compute_softscore.main(['--dataroot', raw_root, '--min_occurrence', '1'])
    os.remove(os.path.join(raw_root, 'cache', 'val_target.pkl.meta.json'))
    _, targets = vqa_files.load_targets(raw_root, 'val', vqa_files.load_answer_maps(raw_root)[0])
    assert sorted(targets) == [201, 202, 203]
    assert 'val_target.pkl has no val_target.pkl.meta.json' in capsys.readouterr().out


def test_min_occurrence_counts_distinct_questions(raw_root):
    ans2label, label2ans = compute_softscore.main(['--dataroot', raw_root, '--min_occurrence', '2'])
    assert label2ans == ['2'] and ans2label == {'2': 0}  # questions 102 and 202
    targets = _load(os.path.join(raw_root, 'cache', 'val_target.pkl'))
    expected = rule_targets(['2'])
    assert [(t['question_id'], t['labels'], t['scores']) for t in targets] == [
        (qid, [0] * len(expected[qid]), list(expected[qid].values())) for qid in (201, 202, 203)]
    os.remove(os.path.join(raw_root, 'cache', 'trainval_ans2label.pkl'))  # else it is reused
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
