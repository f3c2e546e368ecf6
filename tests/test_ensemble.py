"""Ensembling saved predictions: averaging rules, alignment of question ids,
the CLI and errors on inconsistent inputs."""
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from formats import predictions
from tools import ensemble
from utils import UserError

REPO = Path(__file__).resolve().parents[1]
LABEL2ANS = ['yes', 'no', '2']


def made_predictions(question_ids, logits, label2ans=LABEL2ANS):
    return {'question_ids': torch.tensor(question_ids, dtype=torch.long),
            'logits': torch.tensor(logits, dtype=torch.float32), 'label2ans': list(label2ans)}


# Model A is very sure of "yes" for question 10, model B very sure against it;
# both mildly like "no". Mean logits pick "yes" (5 > 2), mean probabilities "no".
MODEL_A = made_predictions([10, 11], [[20.0, 2.0, -5.0], [0.0, 0.0, 3.0]])
MODEL_B = made_predictions([10, 11], [[-10.0, 2.0, -5.0], [1.0, 0.0, 0.0]])


def test_prob_average_is_mean_of_sigmoids():
    ensembled = ensemble.ensemble_logits([MODEL_A, MODEL_B], 'prob')
    expected = (torch.sigmoid(MODEL_A['logits']) + torch.sigmoid(MODEL_B['logits'])) / 2
    assert torch.allclose(ensembled['scores'], expected, atol=1e-7)
    assert ensembled['question_ids'].tolist() == [10, 11] and ensembled['label2ans'] == LABEL2ANS
    assert ensemble.to_submission(ensembled) == [{'question_id': 10, 'answer': 'no'},
                                                 {'question_id': 11, 'answer': '2'}]


def test_logit_average_is_mean_of_logits():
    ensembled = ensemble.ensemble_logits([MODEL_A, MODEL_B], 'logit')
    assert torch.allclose(ensembled['scores'], torch.tensor([[5.0, 2.0, -5.0], [0.5, 0.0, 1.5]]))
    assert [item['answer'] for item in ensemble.to_submission(ensembled)] == ['yes', '2']


def test_inputs_in_another_question_order_are_aligned():
    shuffled_b = made_predictions([11, 10], MODEL_B['logits'].flip(0).tolist())
    aligned = ensemble.ensemble_logits([MODEL_A, MODEL_B], 'prob')
    realigned = ensemble.ensemble_logits([MODEL_A, shuffled_b], 'prob')
    assert torch.equal(aligned['scores'], realigned['scores'])
    assert realigned['question_ids'].tolist() == [10, 11]


def test_single_model_gives_its_own_argmax():
    submission = ensemble.to_submission(ensemble.ensemble_logits([MODEL_B]))
    assert submission == [{'question_id': 10, 'answer': 'no'}, {'question_id': 11, 'answer': 'yes'}]


def test_different_question_sets_are_rejected():
    other = made_predictions([10, 12], MODEL_B['logits'].tolist())
    with pytest.raises(UserError, match=r'predictions\[1\]: its question ids differ .*1 missing, 1 extra'):
        ensemble.ensemble_logits([MODEL_A, other])


def test_different_vocabularies_are_rejected():
    other = made_predictions([10, 11], MODEL_B['logits'].tolist(), ['yes', '2', 'no'])
    with pytest.raises(UserError, match=r'predictions\[1\]: its label2ans differs'):
        ensemble.ensemble_logits([MODEL_A, other])


@pytest.mark.parametrize('broken, message', [
    ({'question_ids': torch.tensor([1]), 'logits': torch.zeros(1, 3)}, 'missing key "label2ans"'),
    (made_predictions([1, 2], [[0.0, 0.0, 0.0]]), r'shape \(1, 3\) but there are 2 question ids'),
    (made_predictions([1, 1], [[0.0] * 3] * 2), 'question_id 1 appears more than once'),
    ({'question_ids': torch.tensor([1.0]), 'logits': torch.zeros(1, 3), 'label2ans': LABEL2ANS},
     '1-d int64'),
])
def test_malformed_predictions_are_rejected(broken, message):
    with pytest.raises(UserError, match=message):
        ensemble.ensemble_logits([broken])


def test_unknown_average_is_rejected():
    with pytest.raises(UserError, match="unknown --average 'median'"):
        ensemble.ensemble_logits([MODEL_A], 'median')


def test_help_names_the_files_test_py_writes(capsys):
    from types import SimpleNamespace

    import test as submission
    with pytest.raises(SystemExit):
        ensemble.main(['--help'])
    shown = capsys.readouterr().out
    written = submission.logits_file(SimpleNamespace(model='ban', op='c', num_hid=1280, label='mytest', index=0))
    assert written in shown and 'logits/<model><op><num_hid>_<label>/logits<index>.pth' in shown
    assert '_logits.pth' not in shown  # the name nothing writes


def test_cli_writes_submission(tmp_path):
    path_a, path_b = str(tmp_path / 'a_logits.pth'), str(tmp_path / 'b_logits.pth')
    for path, model in ((path_a, MODEL_A), (path_b, MODEL_B)):
        predictions.save_predictions(path, model['question_ids'], model['logits'], model['label2ans'])
    output = tmp_path / 'results' / 'ensemble.json'
    completed = subprocess.run(
        [sys.executable, 'tools/ensemble.py', '--inputs', path_a, path_b, '--output', str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(output.read_text()) == [{'question_id': 10, 'answer': 'no'},
                                              {'question_id': 11, 'answer': '2'}]
    assert [p.name for p in output.parent.iterdir()] == ['ensemble.json']
    ensemble.main(['--inputs', path_a, path_b, '--output', str(output), '--average', 'logit'])
    assert [item['answer'] for item in json.loads(output.read_text())] == ['yes', '2']


def test_cli_names_the_inconsistent_file(tmp_path):
    path_a, path_b = str(tmp_path / 'a_logits.pth'), str(tmp_path / 'b_logits.pth')
    predictions.save_predictions(path_a, MODEL_A['question_ids'], MODEL_A['logits'], LABEL2ANS)
    predictions.save_predictions(path_b, MODEL_B['question_ids'], MODEL_B['logits'], ['yes', 'no', '3'])
    completed = subprocess.run(
        [sys.executable, 'tools/ensemble.py', '--inputs', path_a, path_b, '--output',
         str(tmp_path / 'out.json')], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert completed.stderr == 'error: %s: its label2ans differs from that of %s; ensemble models ' \
        'trained with the same answer vocabulary (cache/trainval_label2ans.pkl)\n' % (path_b, path_a)
    assert not (tmp_path / 'out.json').exists()


def test_unreadable_file_is_a_user_error(tmp_path):
    corrupt = tmp_path / 'x_logits.pth'
    corrupt.write_bytes(b'not a torch file')
    with pytest.raises(UserError, match='x_logits.pth: cannot read prediction file'):
        predictions.load_predictions(str(corrupt))
    with pytest.raises(UserError, match='missing file'):
        predictions.load_predictions(str(tmp_path / 'absent.pth'))


# ----------------------------------------------------------------- the original's bare logits tensors

def write_test_split(root, question_ids, label2ans=LABEL2ANS, split='test2015'):
    """A data root holding what a bare logits file needs: the split's
    question file (ids in file order) and the answer cache."""
    questions = [{'image_id': 1, 'question': 'What is it?', 'question_id': qid} for qid in question_ids]
    (root / 'cache').mkdir(parents=True, exist_ok=True)
    (root / ('v2_OpenEnded_mscoco_%s_questions.json' % split)).write_text(json.dumps({'questions': questions}))
    for name, obj in (('trainval_ans2label', {a: i for i, a in enumerate(label2ans)}),
                      ('trainval_label2ans', list(label2ans))):
        (root / 'cache' / (name + '.pkl')).write_bytes(pickle.dumps(obj, protocol=2))
    return str(root)


def test_bare_logits_take_ids_in_dataset_order_from_the_question_file(tmp_path):
    root = write_test_split(tmp_path / 'data', [11, 10])  # file order; dataset order is sorted: 10, 11
    bare = tmp_path / 'original_logits0.pth'
    torch.save(MODEL_B['logits'].clone(), bare, _use_new_zipfile_serialization=False)  # pre-1.6 format too
    ours = tmp_path / 'a_logits.pth'
    predictions.save_predictions(str(ours), [11, 10], MODEL_A['logits'].flip(0), LABEL2ANS)
    loaded = predictions.load_predictions(str(bare), root)
    assert loaded['question_ids'].tolist() == [10, 11] and loaded['label2ans'] == LABEL2ANS
    assert torch.equal(loaded['logits'], MODEL_B['logits'])
    output = tmp_path / 'ensemble.json'
    submission = ensemble.main(['--inputs', str(bare), str(ours), '--output', str(output), '--dataroot', root])
    expected = ensemble.to_submission(ensemble.ensemble_logits([MODEL_B, MODEL_A]))
    assert submission == expected == json.loads(output.read_text())


@pytest.mark.parametrize('question_ids, label2ans, message', [
    ([10, 11, 12], LABEL2ANS, r'bare logits of 2 questions, but .*test2015_questions.json has 3; pass the --split'),
    ([10, 11], ['yes', 'no'], r'bare logits of 3 answers, but .*trainval_label2ans.pkl lists 2'),
])
def test_bare_logits_of_another_split_or_vocabulary_are_named(tmp_path, question_ids, label2ans, message):
    root = write_test_split(tmp_path / 'data', question_ids, label2ans)
    bare = tmp_path / 'logits0.pth'
    torch.save(MODEL_A['logits'].clone(), bare)
    completed = subprocess.run([sys.executable, 'tools/ensemble.py', '--inputs', str(bare), '--dataroot', root,
                                '--output', str(tmp_path / 'out.json')], cwd=REPO, capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 2 and completed.stderr.startswith('error: %s: ' % bare)
    assert completed.stderr.count('\n') == 1
    assert re.search(message, completed.stderr), completed.stderr
    assert not (tmp_path / 'out.json').exists()


def test_bare_tensor_that_is_not_logits_is_refused(tmp_path):
    bare = tmp_path / 'logits0.pth'
    torch.save(torch.zeros(4, dtype=torch.long), bare)
    with pytest.raises(UserError, match=r'logits0.pth: a bare tensor must be 2-d floating logits'):
        predictions.load_predictions(str(bare), str(tmp_path))
