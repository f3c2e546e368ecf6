"""Official VQA accuracy: hand-computed cases, the unanimity rule, per-type
breakdown, the CLI, and errors on bad files."""
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats import vqa_metric
from formats.answers import answers_for_metric
from tools import vqa_eval
from utils import UserError

REPO = Path(__file__).resolve().parents[1]


def human_records(texts):
    return [{'answer': text, 'answer_confidence': 'yes', 'answer_id': index + 1}
            for index, text in enumerate(texts)]


def annotation(question_id, texts, answer_type='other', question_type='what is'):
    return {'question_id': question_id, 'image_id': 7, 'question_type': question_type,
            'answer_type': answer_type, 'multiple_choice_answer': texts[0],
            'answers': human_records(texts)}


def questions_file(annotations):
    return {'info': {}, 'task_type': 'Open-Ended', 'data_type': 'mscoco', 'data_subtype': 'val2014',
            'license': {}, 'questions': [{'image_id': 7, 'question': 'q?', 'question_id': a['question_id']}
                                         for a in annotations]}


def write_split(tmp_path, annotations, results):
    paths = {name: tmp_path / (name + '.json') for name in ('questions', 'annotations', 'results')}
    paths['questions'].write_text(json.dumps(questions_file(annotations)))
    paths['annotations'].write_text(json.dumps({'annotations': annotations}))
    paths['results'].write_text(json.dumps(results))
    return paths


@pytest.mark.parametrize('n_matching, expected', [
    (0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (9, 1.0), (10, 1.0)])
def test_leave_one_out_accuracy(n_matching, expected):
    texts = ['red'] * n_matching + ['blue', 'green'] * 5
    accuracy = vqa_metric.question_accuracy(human_records(texts[:10]), 'red')
    assert accuracy == pytest.approx(expected, abs=1e-12)


def test_unanimous_answers_are_compared_without_normalisation():
    humans = human_records(['Yes'] * 10)
    assert vqa_metric.question_accuracy(humans, 'Yes') == 1.0
    assert vqa_metric.question_accuracy(humans, ' Yes\n') == 1.0   # whitespace is always cleaned
    assert vqa_metric.question_accuracy(humans, 'yes') == 0.0      # but no lower-casing
    assert vqa_metric.question_accuracy(human_records(['two'] * 10), '2') == 0.0


def test_mixed_answers_are_normalised_on_both_sides():
    humans = human_records(['Two'] * 3 + ['2.'] * 2 + ['three'] * 5)
    assert vqa_metric.question_accuracy(humans, 'two!') == 1.0     # 5 humans say "2" after normalising
    humans = human_records(['Yes'] * 9 + ['no'])
    assert vqa_metric.question_accuracy(humans, 'YES') == 1.0
    assert vqa_metric.question_accuracy(humans, 'no') == pytest.approx(0.3)


def test_records_that_compare_equal_are_left_out_together():
    # The official code leaves out every record equal to the current one; with
    # the real data's distinct answer_ids that is exactly one record. Here a
    # left-out 'yes' record takes all 4 'yes' records with it (accuracy 0),
    # a left-out 'no' record leaves 4 matches (accuracy 1): (4*0 + 6*1) / 10.
    humans = [{'answer': 'yes'}] * 4 + human_records(['no'] * 6)
    assert vqa_metric.question_accuracy(humans, 'yes') == pytest.approx(0.6)
    assert vqa_metric.question_accuracy(human_records(['yes'] * 4 + ['no'] * 6), 'yes') == 1.0


def accuracy_over_nine_of_ten(texts, result):
    """Independent formulation: mean over the 10 subsets of 9 annotators."""
    humans, result = answers_for_metric(texts, result)
    subsets = itertools.combinations(range(10), 9)
    return sum(min(1.0, sum(humans[i] == result for i in subset) / 3) for subset in subsets) / 10


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(['yes', 'Yes', 'no', 'two', '2', 'a dog', 'dog', ' red ']),
                min_size=10, max_size=10),
       st.sampled_from(['yes', 'no', '2', 'dog', 'red', 'Two']))
def test_matches_the_nine_of_ten_definition(texts, result):
    assert vqa_metric.question_accuracy(human_records(texts), result) == pytest.approx(
        accuracy_over_nine_of_ten(texts, result), abs=1e-12)


def small_split():
    annotations = [
        annotation(1, ['yes'] * 10, 'yes/no', 'is this'),
        annotation(2, ['no'] * 3 + ['yes'] * 7, 'yes/no', 'is this'),
        annotation(3, ['2'] * 2 + ['3'] * 8, 'number', 'how many'),
        annotation(4, ['red'] * 10, 'other', 'what color'),
    ]
    results = [{'question_id': 1, 'answer': 'yes'}, {'question_id': 2, 'answer': 'no'},
               {'question_id': 3, 'answer': 'two'}, {'question_id': 4, 'answer': 'blue'}]
    return annotations, results


def test_evaluate_results_breakdown(tmp_path):
    annotations, results = small_split()
    paths = write_split(tmp_path, annotations, results)
    metrics = vqa_metric.evaluate_results(results, paths['questions'], paths['annotations'])
    assert metrics['n_questions'] == 4
    assert metrics['per_question'] == pytest.approx({1: 100.0, 2: 90.0, 3: 60.0, 4: 0.0})
    assert metrics['overall'] == pytest.approx(62.5)
    assert metrics['per_answer_type'] == pytest.approx({'yes/no': 95.0, 'number': 60.0, 'other': 0.0})
    assert metrics['per_question_type'] == pytest.approx({'is this': 95.0, 'how many': 60.0,
                                                         'what color': 0.0})
    assert metrics['rounded']['overall'] == 62.5


def test_evaluate_results_rounds_like_the_official_code():
    annotations = [annotation(1, ['a'] * 10), annotation(2, ['b'] * 10), annotation(3, ['c'] * 10)]
    results = [{'question_id': 1, 'answer': 'a'}, {'question_id': 2, 'answer': 'x'},
               {'question_id': 3, 'answer': 'x'}]
    metrics = vqa_metric.evaluate_results(results, questions_file(annotations), {'annotations': annotations})
    assert metrics['overall'] == 100 / 3
    assert metrics['rounded']['overall'] == 33.33


def test_cli_prints_table_and_writes_metrics(tmp_path):
    annotations, results = small_split()
    paths = write_split(tmp_path, annotations, results)
    out = tmp_path / 'metrics' / 'val.json'
    completed = subprocess.run(
        [sys.executable, 'tools/vqa_eval.py', '--results', str(paths['results']), '--questions',
         str(paths['questions']), '--annotations', str(paths['annotations']), '--out', str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert re.search(r'^overall +62\.50$', completed.stdout, re.M)
    assert re.search(r'^yes/no +95\.00$', completed.stdout, re.M)
    assert re.search(r'^how many +60\.00$', completed.stdout, re.M)
    saved = json.loads(out.read_text())
    assert saved['overall'] == pytest.approx(62.5) and 'per_question' not in saved
    assert [p.name for p in out.parent.iterdir()] == ['val.json']


def test_cli_default_files_come_from_dataroot(tmp_path, capsys):
    annotations, results = small_split()
    paths = write_split(tmp_path, annotations, results)
    paths['questions'].rename(tmp_path / 'v2_OpenEnded_mscoco_val2014_questions.json')
    paths['annotations'].rename(tmp_path / 'v2_mscoco_val2014_annotations.json')
    metrics = vqa_eval.main(['--results', str(paths['results']), '--dataroot', str(tmp_path),
                             '--out', str(tmp_path / 'm.json'), '--per-question'])
    assert metrics['overall'] == pytest.approx(62.5)
    assert json.loads((tmp_path / 'm.json').read_text())['per_question']['3'] == pytest.approx(60.0)


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    annotations, results = small_split()
    paths = write_split(tmp_path, annotations, results[:3])
    completed = subprocess.run(
        [sys.executable, 'tools/vqa_eval.py', '--results', str(paths['results']), '--questions',
         str(paths['questions']), '--annotations', str(paths['annotations'])],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert completed.stderr.count('\n') == 1 and completed.stderr.startswith('error: ')
    assert 'no result for 1 of the 4 questions' in completed.stderr
    assert 'question_id 4' in completed.stderr


def evaluate_error(tmp_path, annotations, results, questions=None):
    paths = write_split(tmp_path, annotations, results)
    if questions is not None:
        paths['questions'].write_text(json.dumps(questions))
    with pytest.raises(UserError) as caught:
        vqa_metric.evaluate_results(paths['results'], paths['questions'], paths['annotations'])
    return str(caught.value)


def test_error_results_not_a_list(tmp_path):
    annotations, _ = small_split()
    message = evaluate_error(tmp_path, annotations, {'question_id': 1, 'answer': 'yes'})
    assert 'results.json' in message and 'expected a JSON list' in message


def test_error_result_without_answer(tmp_path):
    annotations, results = small_split()
    results[2] = {'question_id': 3, 'answer': 2}
    message = evaluate_error(tmp_path, annotations, results)
    assert 'item 2 (question_id 3) has no string "answer"' in message and 'test.py' in message


def test_error_result_with_bad_question_id(tmp_path):
    annotations, results = small_split()
    results[0] = {'question_id': '1', 'answer': 'yes'}
    assert 'item 0 has no integer "question_id"' in evaluate_error(tmp_path, annotations, results)


def test_error_duplicate_result(tmp_path):
    annotations, results = small_split()
    message = evaluate_error(tmp_path, annotations, results + [{'question_id': 2, 'answer': 'yes'}])
    assert 'question_id 2 appears twice (items 1 and 4)' in message


def test_error_unknown_question(tmp_path):
    annotations, results = small_split()
    message = evaluate_error(tmp_path, annotations, results + [{'question_id': 99, 'answer': 'yes'}])
    assert 'results.json: 1 results are for questions not in' in message and 'question_id 99' in message


def test_error_annotation_with_nine_answers(tmp_path):
    annotations, results = small_split()
    annotations[1]['answers'].pop()
    message = evaluate_error(tmp_path, annotations, results)
    assert 'annotations.json: annotations[1] (question 2) has 9 human answers' in message
    assert 'VQA annotations have 10' in message


def test_error_annotation_missing_key(tmp_path):
    annotations, results = small_split()
    del annotations[2]['answer_type']
    message = evaluate_error(tmp_path, annotations, results)
    assert 'annotations[2] (question 3) needs' in message and 'answer_type' in message and 'download' in message


def test_error_human_answer_without_text(tmp_path):
    annotations, results = small_split()
    del annotations[0]['answers'][5]['answer']
    assert '(question 1): answers[5] has no string key "answer"' in evaluate_error(
        tmp_path, annotations, results)


def test_error_questions_of_another_split(tmp_path):
    annotations, results = small_split()
    message = evaluate_error(tmp_path, annotations, results, questions_file(annotations[:2]))
    assert '2 annotated questions are not in' in message and 'questions.json' in message


def test_error_missing_file(tmp_path):
    with pytest.raises(UserError, match='missing file .*nothing.json'):
        vqa_metric.load_results(str(tmp_path / 'nothing.json'))
