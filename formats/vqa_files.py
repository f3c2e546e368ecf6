"""Validated readers of the VQA 2.0 files (FORMATS.md sections 1 and 4): the
question and annotation files, and the answer caches written by tools/compute_softscore.py."""
import hashlib
import json
import os

import utils
from formats.dictionary import split_words
from formats.paths import (
    annotation_path,
    answer_cache_files,
    question_path,
    target_file,
)
from utils import UserError

VQA_SPLITS = ('train', 'val', 'test2015', 'test-dev2015')
ANNOTATED_SPLITS = ('train', 'val')
HUMAN_ANSWERS = 10
DOWNLOAD_FIX = 'download it with tools/download.sh'
SOFTSCORE_FIX = 'run tools/compute_softscore.py (part of tools/process.sh)'
VG_FIX = 'download Visual Genome v1.2 with tools/download.sh'


def load_questions(dataroot, name):
    """The `questions` list of the VQA v2 question file of split `name`, checked."""
    if name not in VQA_SPLITS:
        raise UserError('unknown VQA split %r; expected one of %s' % (name, ', '.join(VQA_SPLITS)))
    path = question_path(dataroot, name)
    return check_questions(utils.load_json(path, DOWNLOAD_FIX), path)


def check_questions(data, source, fix=DOWNLOAD_FIX):
    """The `questions` list of a loaded VQA v2 question file, checked item by
    item; `source` names the file in errors, `fix` says what to do."""
    questions = data.get('questions') if isinstance(data, dict) else None
    if not isinstance(questions, list):
        raise UserError('%s: no "questions" list; it is not a VQA v2 question file; %s' % (source, fix))
    position_of = {}
    for position, question in enumerate(questions):
        if not (isinstance(question, dict) and isinstance(question.get('question'), str)
                and utils.is_id(question.get('question_id')) and utils.is_id(question.get('image_id'))):
            raise UserError('%s: questions[%d] needs an int "question_id", an int "image_id" (0 to 2**63-1) and '
                            'a str "question", got %s; %s' % (source, position, utils.brief(question), fix))
        question_id = question['question_id']
        if question_id in position_of:
            raise UserError('%s: question_id %d appears twice (questions[%d] and questions[%d]); the file is '
                            'corrupt; %s' % (source, question_id, position_of[question_id], position, fix))
        position_of[question_id] = position
        if not split_words(question['question']):
            raise UserError('%s: questions[%d] (question_id %d) has no words (%r); the file is corrupt; %s'
                            % (source, position, question_id, question['question'], fix))
    return questions


def load_annotations(dataroot, name):
    """The `annotations` list of the VQA v2 annotation file of split `name`, checked."""
    path = annotation_path(dataroot, name)
    return check_annotations(utils.load_json(path, DOWNLOAD_FIX), path)


def _is_annotation(item):
    return (isinstance(item, dict) and utils.is_id(item.get('question_id')) and utils.is_id(item.get('image_id'))
            and all(isinstance(item.get(key), str) for key in ('multiple_choice_answer', 'question_type',
                                                                'answer_type'))
            and isinstance(item.get('answers'), list))


def check_annotations(data, source, fix=DOWNLOAD_FIX):
    """The `annotations` list of a loaded VQA v2 annotation file, checked item
    by item (what the soft scores and the official metric read)."""
    annotations = data.get('annotations') if isinstance(data, dict) else None
    if not isinstance(annotations, list):
        raise UserError('%s: no "annotations" list; it is not a VQA v2 annotation file; %s' % (source, fix))
    position_of = {}
    for position, item in enumerate(annotations):
        if not _is_annotation(item):
            raise UserError('%s: annotations[%d] (question %s) needs int question_id and image_id, str '
                            'multiple_choice_answer, question_type and answer_type, and answers '
                            '[{"answer": str}, ...]; %s'
                            % (source, position, item.get('question_id') if isinstance(item, dict) else '?', fix))
        for index, answer in enumerate(item['answers']):
            if not (isinstance(answer, dict) and isinstance(answer.get('answer'), str)):
                raise UserError('%s: annotations[%d] (question %d): answers[%d] has no string key "answer"; %s'
                                % (source, position, item['question_id'], index, fix))
        if len(item['answers']) != HUMAN_ANSWERS:
            raise UserError('%s: annotations[%d] (question %d) has %d human answers; VQA annotations have %d, '
                            'and the soft scores assume it; %s' % (source, position, item['question_id'],
                                                                  len(item['answers']), HUMAN_ANSWERS, fix))
        if item['question_id'] in position_of:
            raise UserError('%s: question %d is annotated twice (annotations[%d] and annotations[%d]); %s'
                            % (source, item['question_id'], position_of[item['question_id']], position, fix))
        position_of[item['question_id']] = position
    return annotations


def load_answer_maps(dataroot):
    """(ans2label dict, label2ans list) from the caches of compute_softscore."""
    ans2label_path, label2ans_path = answer_cache_files(dataroot)
    ans2label = utils.safe_pickle_load(ans2label_path, SOFTSCORE_FIX)
    label2ans = utils.safe_pickle_load(label2ans_path, SOFTSCORE_FIX)
    if not isinstance(ans2label, dict) or not isinstance(label2ans, list):
        raise UserError('%s / %s: expected a dict answer->label and a list of answers; %s'
                        % (ans2label_path, label2ans_path, SOFTSCORE_FIX))
    for answer, label in ans2label.items():
        if not isinstance(answer, str) or type(label) is not int:
            raise UserError('%s: maps %s to %s; expected an answer (str) to a label (int); %s'
                            % (ans2label_path, utils.brief(answer), utils.brief(label), SOFTSCORE_FIX))
    bad = next((answer for answer in label2ans if not isinstance(answer, str)), None)
    if bad is not None:
        raise UserError('%s holds %s, not an answer (str); %s' % (label2ans_path, utils.brief(bad), SOFTSCORE_FIX))
    if any(ans2label.get(answer) != label for label, answer in enumerate(label2ans)) \
            or len(ans2label) != len(label2ans):
        raise UserError('%s and %s disagree (written by different runs?); %s'
                        % (ans2label_path, label2ans_path, SOFTSCORE_FIX))
    return ans2label, label2ans


ANS2LABEL_DIGEST = 'ans2label_sha256'  # key of a target file's sidecar: digest of its vocabulary


def ans2label_digest(ans2label):
    """Hex SHA-256 of an answer -> label mapping."""
    pairs = sorted((str(answer), int(label)) for answer, label in ans2label.items())
    return hashlib.sha256(json.dumps(pairs).encode('utf-8')).hexdigest()


def target_meta(ans2label):
    """Content of `cache/{name}_target.pkl.meta.json`: the vocabulary the
    targets were computed against (written by compute_softscore)."""
    return {ANS2LABEL_DIGEST: ans2label_digest(ans2label)}


def check_target_meta(path, ans2label, ans2label_path):
    """UserError when the sidecar of target file `path` names another
    vocabulary than `ans2label` (e.g. compute_softscore was interrupted
    between the two). Target files without a sidecar (the released caches)
    are not checked."""
    meta_path = path + '.meta.json'
    if not os.path.exists(meta_path):
        utils.note('%s has no %s (released or older cache): not checked against %s'
                   % (path, os.path.basename(meta_path), ans2label_path))
        return
    meta = utils.load_json(meta_path, SOFTSCORE_FIX)
    if not isinstance(meta, dict) or not isinstance(meta.get(ANS2LABEL_DIGEST), str):
        raise UserError('%s: expected {"%s": hex digest}; %s' % (meta_path, ANS2LABEL_DIGEST, SOFTSCORE_FIX))
    if meta[ANS2LABEL_DIGEST] != ans2label_digest(ans2label):
        raise UserError('%s was computed against another answer vocabulary than %s (an interrupted or mixed '
                        'run); re-run tools/compute_softscore.py (part of tools/process.sh) to recompute the '
                        'targets against it' % (path, ans2label_path))


def load_targets(dataroot, name, ans2label):
    """cache/{name}_target.pkl as a dict question_id -> target item, checked
    against the answer vocabulary `ans2label`."""
    path = target_file(dataroot, name)
    ans2label_path = answer_cache_files(dataroot)[0]
    targets = utils.safe_pickle_load(path, SOFTSCORE_FIX)
    if not isinstance(targets, list):
        raise UserError('%s: expected a list of targets; %s' % (path, SOFTSCORE_FIX))
    check_target_meta(path, ans2label, ans2label_path)
    num_answers = len(ans2label)
    by_question = {}
    for position, item in enumerate(targets):
        check_target(path, position, item, num_answers, ans2label_path)
        if item['question_id'] in by_question:
            raise UserError('%s: question %d has two targets; %s' % (path, item['question_id'], SOFTSCORE_FIX))
        by_question[item['question_id']] = item
    return path, by_question


def check_target(path, position, item, num_answers, ans2label_path, fix=SOFTSCORE_FIX):
    """UserError unless `item` is {question_id, image_id, labels: distinct
    labels < num_answers, scores: soft scores in [0, 1]}."""
    if not (isinstance(item, dict) and utils.is_id(item.get('question_id')) and utils.is_id(item.get('image_id'))
            and isinstance(item.get('labels'), list) and isinstance(item.get('scores'), list)
            and len(item['labels']) == len(item['scores'])):
        raise UserError('%s: target [%d] is %s; expected {"question_id": int, "image_id": int, "labels": [int], '
                        '"scores": [float]} with as many scores as labels; %s'
                        % (path, position, utils.brief(item), fix))
    labels, scores = item['labels'], item['scores']
    if any(type(label) is not int or not 0 <= label < num_answers for label in labels) \
            or len(set(labels)) != len(labels):
        raise UserError('%s: question %d has labels %s, not distinct labels of the %d answers of %s (stale cache); '
                        '%s' % (path, item['question_id'], utils.brief(labels), num_answers, ans2label_path, fix))
    if any(type(score) not in (int, float) or not 0.0 <= score <= 1.0 for score in scores):
        raise UserError('%s: question %d has scores %s; soft scores lie in [0, 1]; %s'
                        % (path, item['question_id'], utils.brief(scores), fix))
