"""Tiny VQA / Visual Genome / COCO-caption / GloVe / feature-TSV data roots in
the exact release formats, shared by the tests/test_data_*.py files (no tests
here)."""
import json
import os

import numpy as np

from tools.features_tsv import write_tsv

FEATURE_DIM = 6
GLOVE_DIM = 5
# a small BAN on these roots (the robustness suites)
TRAIN_FLAGS = ['--emb_dim', str(GLOVE_DIM), '--num_hid', '8', '--gamma', '1', '--op', '', '--batch_size', '2',
               '--workers', '0', '--device', 'cpu']
EVAL_FLAGS = ['--num_hid', '8', '--gamma', '1', '--op', '', '--workers', '0', '--device', 'cpu']

TRAIN_QUESTIONS = [  # (question_id, image_id, question)
    (101, 1, 'What color is the dog?'),
    (102, 1, 'How many dogs are there?'),
    (103, 2, "Is the man's shirt red?"),
    (104, 3, 'What is on the table, on the left side of the photograph that was taken today in the kitchen?'),
]
VAL_QUESTIONS = [
    (201, 4, 'Is it raining?'),
    (202, 5, 'How many people?'),
    (203, 4, 'What color is the car?'),
]
TEST_QUESTIONS = [
    (301, 6, 'What is this?'),
    (302, 7, 'Where is the cat?'),
    (303, 6, "Who's there?"),
]
TEST_DEV_IDS = (301, 302)

# question_id -> (multiple_choice_answer, 10 human answers). Raw variants of a
# label ('Brown.', 'a cake', 'Red') count for it only when answers are normalised.
ANSWERS = {
    101: ('brown', ['brown'] * 3 + ['Brown.'] * 3 + ['tan'] * 4),
    102: ('2', ['two'] * 4 + ['2'] * 3 + ['3'] * 3),
    103: ('yes', ['yes'] * 10),
    104: ('cake', ['a cake'] * 5 + ['cake'] * 3 + ['pie'] * 2),
    201: ('no', ['no'] * 7 + ['yes'] * 3),
    202: ('2', ['two'] * 10),
    203: ('red', ['Red'] * 9 + ['blue']),
}
# min_occurrence 1: consensus answers in first-occurrence order (train, then val)
LABELS_MIN1 = ['brown', '2', 'yes', 'cake', 'no', 'red']
SCORE_OF_COUNT = (0.0, 0.3, 0.6, 0.9)  # FORMATS section 1; 1.0 from 4 answers on


def rule_targets(labels, normalize=None):
    """question_id -> {label: score} by the rule of FORMATS section 1: the
    human answers (passed through `normalize` when given, else raw) equal to
    a label, counted k times, score .3 k up to 3 and 1.0 from 4."""
    targets = {}
    for qid, (_, answers) in ANSWERS.items():
        texts = [normalize(text) if normalize else text for text in answers]
        counts = {label: texts.count(label) for label in labels if label in texts}
        targets[qid] = {label: SCORE_OF_COUNT[k] if k < 4 else 1.0 for label, k in counts.items()}
    return targets


TARGETS_MIN1 = rule_targets(LABELS_MIN1)  # question_id -> {answer: score}

# TSV layout: file -> [(image_id, num_boxes)]; image 99 is needed by no question.
TRAINVAL_TSV = {
    'trainval/karpathy_test_resnet101_faster_rcnn_genome.tsv': [(4, 4), (99, 2)],
    'trainval/karpathy_val_resnet101_faster_rcnn_genome.tsv': [(2, 5)],
    'trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.0': [(1, 3), (5, 1)],
    'trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.1': [(3, 2)],
}
TEST_TSV = {'test2015/test2015_resnet101_faster_rcnn_genome.tsv': [(7, 2), (6, 3)]}
TRAIN_ORDER = [1, 3, 2]  # TSV order of the train images (files read test, train.0, train.1, val)
VAL_ORDER = [4, 5]
TEST_ORDER = [7, 6]

VG_IMAGES = [
    {'image_id': 1001, 'coco_id': 1, 'width': 640, 'height': 480, 'url': 'u1'},
    {'image_id': 1002, 'coco_id': 4, 'width': 640, 'height': 480, 'url': 'u2'},
    {'image_id': 1003, 'coco_id': None, 'width': 640, 'height': 480, 'url': 'u3'},
    {'image_id': 1004, 'coco_id': 6, 'width': 640, 'height': 480, 'url': 'u4'},
]
VG_QAS = [
    {'id': 1001, 'qas': [
        {'qa_id': 5001, 'image_id': 1001, 'question': 'What color is the frisbee?', 'answer': 'Brown.'},
        {'qa_id': 5002, 'image_id': 1001, 'question': 'What is in the sky?', 'answer': 'clouds'}]},
    {'id': 1002, 'qas': [{'qa_id': 5003, 'image_id': 1002, 'question': 'How many cars?', 'answer': 'Two'}]},
    {'id': 1003, 'qas': [{'qa_id': 5004, 'image_id': 1003, 'question': 'Is it day?', 'answer': 'yes'}]},
    {'id': 1004, 'qas': [{'qa_id': 5005, 'image_id': 1004, 'question': 'Is it night?', 'answer': 'yes'}]},
]
CAPTIONS = {
    'train2017': [{'image_id': 1, 'id': 1, 'caption': 'A brown dog on a sofa.'}],
    'val2017': [{'image_id': 4, 'id': 2, 'caption': 'a red car in the rain'}],
}
GLOVE_WORDS = ['what', 'color', 'is', 'the', 'dog', 'how', 'many', 'red', 'frisbee', 'sofa', 'zebra']


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        json.dump(obj, handle)


def questions_json(subtype, questions):
    return {'info': {}, 'task_type': 'Open-Ended', 'data_type': 'mscoco', 'data_subtype': subtype,
            'license': {}, 'questions': [{'image_id': image_id, 'question': text, 'question_id': qid}
                                         for qid, image_id, text in questions]}


def annotations_json(questions):
    annotations = []
    for qid, image_id, text in questions:
        consensus, answers = ANSWERS[qid]
        annotations.append({
            'question_id': qid, 'image_id': image_id, 'question_type': text.split()[0].lower(),
            'answer_type': 'other', 'multiple_choice_answer': consensus,
            'answers': [{'answer': answer, 'answer_confidence': 'yes', 'answer_id': index + 1}
                        for index, answer in enumerate(answers)]})
    return {'info': {}, 'license': {}, 'data_subtype': 'x', 'annotations': annotations}


def image_record(image_id, num_boxes, feature_dim=FEATURE_DIM):
    """Deterministic (image_id, w, h, boxes [n, 4], features [n, D]) of an image."""
    rng = np.random.default_rng(image_id)
    width, height = 640.0 + image_id, 480.0 - image_id
    x1 = rng.uniform(0, width / 2, num_boxes)
    y1 = rng.uniform(0, height / 2, num_boxes)
    boxes = np.stack([x1, y1, x1 + rng.uniform(1, width / 2, num_boxes),
                      y1 + rng.uniform(1, height / 2, num_boxes)], axis=1).astype(np.float32)
    features = rng.uniform(0.1, 2.0, (num_boxes, feature_dim)).astype(np.float32)
    return image_id, width, height, boxes, features


def glove_vectors():
    rng = np.random.default_rng(7)
    return {word: np.round(rng.normal(size=GLOVE_DIM), 5) for word in GLOVE_WORDS}


def write_glove(path, vectors):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        for word, vector in vectors.items():
            handle.write(word + ' ' + ' '.join('%.5f' % value for value in vector) + '\n')


def write_raw_root(root):
    """Everything tools/download.sh would leave under a data root."""
    root = str(root)
    write_json(os.path.join(root, 'v2_OpenEnded_mscoco_train2014_questions.json'),
               questions_json('train2014', TRAIN_QUESTIONS))
    write_json(os.path.join(root, 'v2_OpenEnded_mscoco_val2014_questions.json'),
               questions_json('val2014', VAL_QUESTIONS))
    write_json(os.path.join(root, 'v2_OpenEnded_mscoco_test2015_questions.json'),
               questions_json('test2015', TEST_QUESTIONS))
    write_json(os.path.join(root, 'v2_OpenEnded_mscoco_test-dev2015_questions.json'),
               questions_json('test-dev2015', [q for q in TEST_QUESTIONS if q[0] in TEST_DEV_IDS]))
    write_json(os.path.join(root, 'v2_mscoco_train2014_annotations.json'), annotations_json(TRAIN_QUESTIONS))
    write_json(os.path.join(root, 'v2_mscoco_val2014_annotations.json'), annotations_json(VAL_QUESTIONS))
    for name, layout in list(TRAINVAL_TSV.items()) + list(TEST_TSV.items()):
        write_tsv(os.path.join(root, name), [image_record(image_id, n) for image_id, n in layout])
    write_glove(os.path.join(root, 'glove', 'glove.6B.300d.txt'), glove_vectors())
    write_json(os.path.join(root, 'question_answers.json'), VG_QAS)
    write_json(os.path.join(root, 'image_data.json'), VG_IMAGES)
    for split, annotations in CAPTIONS.items():
        write_json(os.path.join(root, 'annotations', 'captions_%s.json' % split),
                   {'info': {}, 'images': [], 'licenses': [], 'annotations': annotations})
    return root


def boxes_of(image_id):
    """num_boxes of an image in the TSV layout."""
    for layout in list(TRAINVAL_TSV.values()) + list(TEST_TSV.values()):
        for candidate, num_boxes in layout:
            if candidate == image_id:
                return num_boxes
    raise KeyError(image_id)


def prepared_root(root, min_occurrence=1):
    """A raw root after tools/process.sh (the three python steps)."""
    from tools import adaptive_detection_features_converter as converter
    from tools import compute_softscore, create_dictionary
    write_raw_root(root)
    create_dictionary.main(['--dataroot', str(root)])
    compute_softscore.main(['--dataroot', str(root), '--min_occurrence', str(min_occurrence)])
    converter.main(['--dataroot', str(root), '--feature_dim', str(FEATURE_DIM)])
    return str(root)
