"""Official VQA accuracy of a results file (the algorithm of the VQA
evaluation code, re-implemented).

For every question of the annotation file:
  * the result answer and the 10 human answers get tabs/newlines replaced by
    spaces and their ends stripped;
  * only when those 10 human answers are not all identical, the human answers
    and the result answer are normalised (`answers.normalize_answer`);
  * accuracy = mean over the 10 human answers h of
    min(1, #(other human answers equal to the result) / 3), "other" meaning
    every annotation record different from h (leave-one-out).
Overall, per-answer-type and per-question-type accuracies are the means of
the question accuracies, in percent.

Usage:
  python3 tools/vqa_eval.py --results results/val_ban.json [--split val]
      [--questions Q.json --annotations A.json] [--out metrics.json]

The command line is tools/vqa_eval.py.
"""
import os

from formats.answers import answers_for_metric
from formats.vqa_files import check_annotations, check_questions
from utils import UserError, is_id, load_json

MATCHES_FOR_FULL_CREDIT = 3
TEST_DEV_IN_TEST = ('test-dev2015', 'test2015')  # data_subtype of the question file, of the annotation file
RESULTS_FIX = 'write it with test.py: a JSON list of {"question_id": int, "answer": str}'
VQA_FIX = 'download the VQA 2.0 questions and annotations into the data root (tools/download.sh)'

# ----------------------------------------------------------------- loading

def _load(path_or_obj, fix):
    """Return (object, name for messages) for a JSON path or a loaded object."""
    if isinstance(path_or_obj, (str, os.PathLike)):
        return load_json(os.fspath(path_or_obj), fix), os.fspath(path_or_obj)
    return path_or_obj, '<in-memory %s>' % type(path_or_obj).__name__


def load_results(path):
    """Load and validate a results file: a list of {"question_id", "answer"}."""
    results = load_json(path, RESULTS_FIX)
    _index_results(results, path)
    return results


def _index_results(results, source):
    """Map question_id -> answer, checking types and duplicates."""
    if not isinstance(results, list):
        raise UserError('%s: expected a JSON list of {"question_id": int, "answer": str}, got %s; %s'
                        % (source, type(results).__name__, RESULTS_FIX))
    answer_of = {}
    position_of = {}
    for position, item in enumerate(results):
        if not isinstance(item, dict) or not is_id(item.get('question_id')):
            raise UserError('%s: item %d has no integer "question_id"; %s' % (source, position, RESULTS_FIX))
        question_id = item['question_id']
        if not isinstance(item.get('answer'), str):
            raise UserError('%s: item %d (question_id %d) has no string "answer"; %s'
                            % (source, position, question_id, RESULTS_FIX))
        if question_id in answer_of:
            raise UserError('%s: question_id %d appears twice (items %d and %d); keep one answer per '
                            'question' % (source, question_id, position_of[question_id], position))
        answer_of[question_id] = item['answer']
        position_of[question_id] = position
    return answer_of


def _load_annotations(annotations):
    """(checked annotation list, data_subtype, name for messages) of a path or a loaded object."""
    data, source = _load(annotations, VQA_FIX)
    return check_annotations(data, source, VQA_FIX), data.get('data_subtype'), source


def _load_question_ids(questions):
    """(set of question ids, data_subtype, name for messages) of a path or a loaded object."""
    data, source = _load(questions, VQA_FIX)
    return ({question['question_id'] for question in check_questions(data, source, VQA_FIX)},
            data.get('data_subtype'), source)


def _scored_annotations(annotation_list, annotations_subtype, question_ids, questions_subtype):
    """The annotations to score: all of them; or, for the test-dev2015
    questions with test2015 annotations (test-dev is a subset of test2015;
    only the demo data has such annotations), those of the test-dev
    questions, as the evaluation server scores test-dev."""
    if (questions_subtype, annotations_subtype) == TEST_DEV_IN_TEST:
        return [annotation for annotation in annotation_list if annotation['question_id'] in question_ids]
    return annotation_list


def _check_coverage(answer_of, results_source, annotations, annotations_source,
                    question_ids, questions_source):
    """Every annotated question must be in the question file and have exactly
    one result; a result for any other question is an error."""
    annotated_ids = [annotation['question_id'] for annotation in annotations]
    not_asked = [qid for qid in annotated_ids if qid not in question_ids]
    if not_asked:
        raise UserError('%s: %d annotated questions are not in %s (e.g. question_id %d); use the question '
                        'and annotation files of the same split'
                        % (annotations_source, len(not_asked), questions_source, not_asked[0]))
    unknown = sorted(set(answer_of) - set(annotated_ids))
    if unknown:
        raise UserError('%s: %d results are for questions not in %s (e.g. question_id %d); evaluate '
                        'against the annotations of the split the results were made for'
                        % (results_source, len(unknown), annotations_source, unknown[0]))
    missing = [qid for qid in annotated_ids if qid not in answer_of]
    if missing:
        raise UserError('%s: no result for %d of the %d questions of %s (e.g. question_id %d); the '
                        'official evaluation needs an answer for every question'
                        % (results_source, len(missing), len(annotated_ids), annotations_source, missing[0]))


# ----------------------------------------------------------------- metric

def question_accuracy(human_answers, result_answer):
    """Accuracy in [0, 1] of `result_answer` against the 10 human answer
    records of one annotation (dicts with at least "answer").

    Leave-one-out as the official code: for each record, the others are the
    records that compare unequal to it (with unique "answer_id"s, the other
    nine)."""
    human_texts, result = answers_for_metric([record['answer'] for record in human_answers], result_answer)
    records = [dict(record, answer=text) for record, text in zip(human_answers, human_texts)]
    matching = [record for record in records if record['answer'] == result]
    per_left_out = []
    for left_out in records:
        matches = sum(1 for record in matching if record != left_out)
        per_left_out.append(min(1, matches / MATCHES_FOR_FULL_CREDIT))
    return float(sum(per_left_out)) / len(per_left_out)


def _percent(accuracies):
    return 100 * float(sum(accuracies)) / len(accuracies)


def evaluate_results(results, questions, annotations):
    """Official VQA accuracy.

    results: list of {"question_id": int, "answer": str} or a path to one;
    questions / annotations: VQA 2.0 JSON paths or loaded objects.
    Returns {"overall": %, "per_answer_type": {type: %}, "per_question_type":
    {type: %}, "questions_per_answer_type": {type: count},
    "questions_per_question_type": {type: count}, "n_questions": int,
    "per_question": {question_id: %},
    "rounded": the three accuracies rounded to 2 decimals as the official code
    reports them}. Percentages are unrounded floats.
    """
    if isinstance(results, (str, os.PathLike)):
        results_source = os.fspath(results)
        results = load_results(results_source)
    else:
        results_source = '<in-memory results>'
    answer_of = _index_results(results, results_source)
    annotation_list, annotations_subtype, annotations_source = _load_annotations(annotations)
    question_ids, questions_subtype, questions_source = _load_question_ids(questions)
    annotation_list = _scored_annotations(annotation_list, annotations_subtype, question_ids, questions_subtype)
    _check_coverage(answer_of, results_source, annotation_list, annotations_source,
                    question_ids, questions_source)

    accuracies = []
    by_answer_type = {}
    by_question_type = {}
    for annotation in annotation_list:
        accuracy = question_accuracy(annotation['answers'], answer_of[annotation['question_id']])
        accuracies.append(accuracy)
        by_answer_type.setdefault(annotation['answer_type'], []).append(accuracy)
        by_question_type.setdefault(annotation['question_type'], []).append(accuracy)
    if not accuracies:
        raise UserError('%s: no annotations to evaluate; %s' % (annotations_source, VQA_FIX))

    overall = _percent(accuracies)
    per_answer_type = {name: _percent(values) for name, values in by_answer_type.items()}
    per_question_type = {name: _percent(values) for name, values in by_question_type.items()}
    return {
        'overall': overall,
        'per_answer_type': per_answer_type,
        'per_question_type': per_question_type,
        'questions_per_answer_type': {name: len(values) for name, values in by_answer_type.items()},
        'questions_per_question_type': {name: len(values) for name, values in by_question_type.items()},
        'n_questions': len(accuracies),
        'per_question': {annotation['question_id']: 100 * accuracy
                         for annotation, accuracy in zip(annotation_list, accuracies)},
        'rounded': {
            'overall': round(overall, 2),
            'per_answer_type': {name: round(value, 2) for name, value in per_answer_type.items()},
            'per_question_type': {name: round(value, 2) for name, value in per_question_type.items()},
        },
    }


def question_type_table(metrics):
    """[(question type, accuracy %, questions)] of evaluate_results' metrics,
    most accurate first (equal accuracies: by name): the order evaluate.py
    prints and the report draws."""
    counts = metrics['questions_per_question_type']
    return sorted(((name, value, counts[name]) for name, value in metrics['per_question_type'].items()),
                  key=lambda row: (-row[1], row[0]))
