"""Validated readers of the VQA 2.0 files (FORMATS.md sections 1 and 4): the
question and annotation files, and the answer caches written by tools/compute_softscore.py."""
import hashlib
import json
import os

import utils
from dictionary import split_words
from paths import annotation_path, answer_cache_files, question_path, target_file
from utils import UserError

VQA_SPLITS = ('train', 'val', 'test2015', 'test-dev2015')
ANNOTATED_SPLITS = ('train', 'val')
HUMAN_ANSWERS = 10
DOWNLOAD_FIX = 'download it with tools/download.sh'
SOFTSCORE_FIX = 'run tools/compute_softscore.py (part of tools/process.sh)'


def is_int(value):
    """An int and not a bool (JSON true is no id)."""
    return isinstance(value, int) and not isinstance(value, bool)


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
                and is_int(question.get('question_id')) and is_int(question.get('image_id'))):
            raise UserError('%s: questions[%d] needs an int "question_id", an int "image_id" and a '
                            'str "question", got %.200r; %s' % (source, position, question, fix))
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
    return (isinstance(item, dict) and is_int(item.get('question_id')) and is_int(item.get('image_id'))
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
        print('note: %s has no %s (released or older cache): not checked against %s'
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
    for item in targets:
        if not (isinstance(item, dict) and {'question_id', 'image_id', 'labels', 'scores'} <= set(item)
                and len(item['labels']) == len(item['scores'])):
            raise UserError('%s: malformed target %.200r; %s' % (path, item, SOFTSCORE_FIX))
        if any(not 0 <= int(label) < num_answers for label in item['labels']):
            raise UserError('%s: question %s has a label outside the %d answers of %s (stale cache); %s'
                            % (path, item['question_id'], num_answers, ans2label_path, SOFTSCORE_FIX))
        by_question[item['question_id']] = item
    return path, by_question
