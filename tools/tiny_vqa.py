"""A tiny VQA 2.0 data root in the exact release formats, with a learnable
signal, prepared with the real tools/ scripts. Used by the CLI tests
(through tests/tiny_vqa.py) and by tools/gpu_check.py, which must run
without the tests.

Each image has 10-13 boxes whose features carry the image's colour (one-hot in
the first four values, plus noise); questions ask for the colour or whether it
is red, so a small BAN learns them in a few epochs.
"""
import json
import os

import numpy as np

from tools import adaptive_detection_features_converter, compute_softscore, create_dictionary
from tools.features_tsv import encode_record

COLOURS = ['red', 'green', 'blue', 'yellow']
FEATURE_DIM = 16
GLOVE_DIM = 8
WORDS = ['what', 'color', 'is', 'the', 'ball', 'red', 'green', 'blue', 'yellow', 'a', 'there', 'on', 'table',
         'sitting', 'man', 'dog', 'yes', 'no']


def _image_record(image_id, colour_index, rng):
    num_boxes = int(rng.integers(10, 14))
    width, height = 640, 480
    x1 = rng.uniform(0, width / 2, num_boxes)
    y1 = rng.uniform(0, height / 2, num_boxes)
    boxes = np.stack([x1, y1, x1 + rng.uniform(20, width / 2, num_boxes),
                      y1 + rng.uniform(20, height / 2, num_boxes)], 1).astype(np.float32)
    features = (rng.normal(0, 0.1, (num_boxes, FEATURE_DIM)) + 0.05).astype(np.float32)
    features[:, colour_index] += 1.0
    return image_id, width, height, boxes, features


tsv_line = encode_record  # one TSV line of the release format (tools/features_tsv.py)


def _questions(image_id, colour, first_question_id):
    """(question dicts, answers) for one image."""
    texts = [('What color is the ball?', colour),
             ('Is the ball red?', 'yes' if colour == 'red' else 'no'),
             ("What's the ball's color?", colour)]
    questions = [{'image_id': image_id, 'question': text, 'question_id': first_question_id + k}
                 for k, (text, _) in enumerate(texts)]
    return questions, [answer for _, answer in texts]


def _annotation(question, answer):
    answer_type = 'yes/no' if answer in ('yes', 'no') else 'other'
    return {'question_id': question['question_id'], 'image_id': question['image_id'],
            'question_type': ' '.join(question['question'].lower().split()[:2]), 'answer_type': answer_type,
            'multiple_choice_answer': answer,
            'answers': [{'answer': answer if k < 8 else answer.capitalize() + '!', 'answer_confidence': 'yes',
                         'answer_id': k + 1} for k in range(10)]}


def _dump(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        json.dump(obj, handle)


def write_raw(root, images_per_split=(40, 16, 16), seed=0):
    """Write the downloads of a data root: question/annotation JSON, feature
    TSVs under the release names, GloVe text, VG and COCO caption files."""
    rng = np.random.default_rng(seed)
    root = str(root)
    splits = {'train': ('train2014', 1000), 'val': ('val2014', 2000), 'test2015': ('test2015', 3000)}
    tsv_lines = {'train': [], 'val': [], 'test2015': []}
    for (name, (subtype, first_image)), count in zip(splits.items(), images_per_split):
        questions, annotations = [], []
        for offset in range(count):
            image_id = first_image + offset
            colour_index = int(rng.integers(0, len(COLOURS)))
            tsv_lines[name].append(tsv_line(*_image_record(image_id, colour_index, rng)))
            image_questions, answers = _questions(image_id, COLOURS[colour_index], image_id * 10)
            questions += image_questions
            annotations += [_annotation(q, a) for q, a in zip(image_questions, answers)]
        header = {'info': {}, 'task_type': 'Open-Ended', 'data_type': 'mscoco', 'license': {}}
        _dump(os.path.join(root, 'v2_OpenEnded_mscoco_%s_questions.json' % subtype),
              dict(header, data_subtype=subtype, questions=questions))
        if name == 'test2015':
            _dump(os.path.join(root, 'v2_OpenEnded_mscoco_test-dev2015_questions.json'),
                  dict(header, data_subtype='test-dev2015', questions=questions[::2]))
        else:
            _dump(os.path.join(root, 'v2_mscoco_%s_annotations.json' % subtype),
                  dict(header, data_subtype=subtype, annotations=annotations))
    trainval = tsv_lines['train'] + tsv_lines['val']
    release = {'trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.0': trainval[0::4],
               'trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.1': trainval[1::4],
               'trainval/karpathy_val_resnet101_faster_rcnn_genome.tsv': trainval[2::4],
               'trainval/karpathy_test_resnet101_faster_rcnn_genome.tsv': trainval[3::4],
               'test2015/test2015_resnet101_faster_rcnn_genome.tsv': tsv_lines['test2015']}
    for relative, lines in release.items():
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(''.join(line + '\n' for line in lines))
    _write_glove(root, rng)
    _write_vg_and_captions(root)
    return root


def _write_glove(root, rng):
    path = os.path.join(root, 'glove', 'glove.6B.%dd.txt' % GLOVE_DIM)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        for word in WORDS + ['giraffe', 'kitchen']:
            handle.write(word + ' ' + ' '.join('%.5f' % v for v in rng.normal(0, 1, GLOVE_DIM)) + '\n')


def _write_vg_and_captions(root):
    qas = [{'id': 1, 'qas': [{'qa_id': 1, 'image_id': 1, 'question': 'What color is the giraffe?',
                              'answer': 'Yellow.'},
                             {'qa_id': 2, 'image_id': 1, 'question': 'Is the ball red?', 'answer': 'maybe'}]},
           {'id': 2, 'qas': [{'qa_id': 3, 'image_id': 2, 'question': 'What color is the ball?', 'answer': 'blue'}]},
           {'id': 3, 'qas': [{'qa_id': 4, 'image_id': 3, 'question': 'What color is the kitchen?',
                              'answer': 'green'}]}]
    image_data = [{'image_id': 1, 'coco_id': 1000, 'width': 640, 'height': 480, 'url': ''},
                  {'image_id': 2, 'coco_id': 2001, 'width': 640, 'height': 480, 'url': ''},
                  {'image_id': 3, 'coco_id': None, 'width': 640, 'height': 480, 'url': ''}]
    _dump(os.path.join(root, 'question_answers.json'), qas)
    _dump(os.path.join(root, 'image_data.json'), image_data)
    for split in ('train2017', 'val2017'):
        _dump(os.path.join(root, 'annotations', 'captions_%s.json' % split),
              {'annotations': [{'image_id': 1000, 'id': 1, 'caption': 'A man sitting on the table.'},
                               {'image_id': 2001, 'id': 2, 'caption': 'A giraffe in a kitchen'}]})


def prepare(root):
    """Run the real preparation tools on a raw tiny root."""
    root = str(root)
    create_dictionary.main(['--dataroot', root, '--glove', os.path.join(root, 'glove', 'glove.6B.%dd.txt'
                                                                        % GLOVE_DIM)])
    compute_softscore.main(['--dataroot', root, '--min_occurrence', '1'])
    adaptive_detection_features_converter.main(['--dataroot', root, '--feature_dim', str(FEATURE_DIM)])
    return root
