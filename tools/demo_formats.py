"""The demo's text writers (tools/make_demo_data.py): VQA 2.0 question and
annotation records, Flickr30k Entities captions and box XML, GloVe text."""
import numpy as np

from formats.dictionary import split_words

VERSION = 'easy-vqa-demo-v1'

# question_type: the longest of these prefixes that starts the question
QUESTION_TYPES = ('what color is the', 'what is the color of the', 'what is the',
                  'what shape', 'does the image contain', 'does the image not contain',
                  'is there a', 'is there not a', 'is a', 'is no')

# Flickr30k Entities style captions: chain 1 is the shape (one box), chain 2
# the whole scene (no box). Five consecutive templates (cyclically, starting
# at image_id % 8) are written per image.
SENTENCE_TEMPLATES = (
    '[/EN#1/other A {colour} {shape}] is in [/EN#2/scene the image] .',
    '[/EN#2/scene The image] contains [/EN#1/other a {colour} {shape}] .',
    'There is [/EN#1/other a {shape}] in [/EN#2/scene the image] .',
    '[/EN#1/other The {colour} shape] is present .',
    '[/EN#1/other A {colour} shape] is in [/EN#2/scene the picture] .',
    '[/EN#2/scene The picture] shows [/EN#1/other one {colour} {shape}] .',
    '[/EN#1/other The {shape}] in [/EN#2/scene this image] is {colour} .',
    '[/EN#1/other A {shape}] of {colour} color is present .',
)
SENTENCES_PER_IMAGE = 5

# ----------------------------------------------------------------- writers

def question_type(question):
    """Longest QUESTION_TYPES prefix of the question (word-aligned); else its
    first two words."""
    words = split_words(question)
    matches = [prefix for prefix in QUESTION_TYPES if words[:len(prefix.split())] == prefix.split()]
    return max(matches, key=len) if matches else ' '.join(words[:2])


def answer_type(answer):
    """easy-VQA has no numbers: yes/no or other (colours, shapes)."""
    return 'yes/no' if answer in ('yes', 'no') else 'other'


def vqa_annotation(question_id, image_id, question, answer):
    """A VQA 2.0 annotation: ten identical, confident human answers."""
    return {
        'question_type': question_type(question),
        'multiple_choice_answer': answer,
        'answers': [{'answer': answer, 'answer_confidence': 'yes', 'answer_id': k} for k in range(1, 11)],
        'image_id': image_id,
        'answer_type': answer_type(answer),
        'question_id': question_id,
    }


def vqa_questions_file(subtype, questions):
    """`questions`: list of {"image_id", "question", "question_id"}."""
    return {'info': demo_info(), 'task_type': 'Open-Ended', 'data_type': 'mscoco',
            'license': demo_license(), 'data_subtype': subtype, 'questions': questions}


def vqa_annotations_file(subtype, annotations):
    return {'info': demo_info(), 'license': demo_license(), 'data_subtype': subtype,
            'annotations': annotations, 'data_type': 'mscoco'}


def demo_info():
    return {'description': 'easy-VQA converted to the VQA 2.0 format by tools/make_demo_data.py',
            'version': VERSION}


def demo_license():
    return {'name': 'MIT (easy-VQA)', 'url': 'https://github.com/vzhou842/easy-VQA'}


def flickr_sentences(image_id, colour, shape):
    """SENTENCES_PER_IMAGE Flickr30k Entities caption lines for one image."""
    start = image_id % len(SENTENCE_TEMPLATES)
    chosen = [SENTENCE_TEMPLATES[(start + k) % len(SENTENCE_TEMPLATES)] for k in range(SENTENCES_PER_IMAGE)]
    return [template.format(colour=colour, shape=shape) for template in chosen]


def flickr_annotation_xml(image_id, width, height, box):
    """PASCAL-VOC-like annotation: chain 1 with `box` (x1, y1, x2, y2 integer
    pixels, written as they are in the TSV so that IoU with the proposed
    component box is 1; xmin/ymin are raised to at least 1 because the
    original loader asserts positive left/top), chain 2 a scene without box."""
    parts = ['<annotation>',
             '<filename>%d.jpg</filename>' % image_id,
             '<size><width>%d</width><height>%d</height><depth>3</depth></size>' % (width, height)]
    x1, y1, x2, y2 = (int(v) for v in box)
    parts.append('<object><name>1</name><bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax>'
                 '<ymax>%d</ymax></bndbox></object>' % (max(x1, 1), max(y1, 1), x2, y2))
    parts.append('<object><name>2</name><nobndbox>0</nobndbox><scene>1</scene></object>')
    parts.append('</annotation>')
    return '\n'.join(parts) + '\n'


def remove_phrase_annotations(sentence):
    """De-annotated caption: '[/EN#1/other A red circle] is ...' -> 'A red circle is ...'."""
    words = []
    for word in sentence.split(' '):
        if word.startswith('[/EN#'):
            continue
        words.append(word.rstrip(']'))
    return ' '.join(words)


def format_glove_value(value):
    """Shortest decimal text that reads back as the same float32."""
    return np.format_float_positional(np.float32(value), unique=True, trim='-')


def glove_text(words, vectors):
    """GloVe text lines `word v1 ... vD` for `words` (vectors: word -> [D])."""
    lines = [' '.join([word] + [format_glove_value(v) for v in vectors[word]]) for word in words]
    return ''.join(line + '\n' for line in lines)
