"""Validated readers of the Flickr30k Entities release files (FORMATS §7):
annotated captions, box annotations, split lists and the pickled id sets
that order the dictionary; box matching and entity-position padding.

Layout under the data root (default `data/flickr30k`):
    Flickr30kEntities/Sentences/<image_id>.txt   five annotated captions
    Flickr30kEntities/Annotations/<image_id>.xml boxes of the coreference chains
    Flickr30kEntities/{train,val,test}.txt       image ids of each split
    flickr30k_images/<image_id>.jpg              the images (optional: only their names are read)
    {split}.hdf5, {split}_imgid2idx.pkl          converted detector features
    {split}_ids.pkl                              the original's pickled sets of image ids (written
                                                 by the converter); they order the dictionary
    dictionary.pkl, glove6b_init_300d.npy        written by create_flickr_dictionary
"""
import glob
import os
import re
import xml.etree.ElementTree as ElementTree
from typing import NamedTuple

import numpy as np

from formats.features import boxes_far_outside
from utils import UserError, is_id, note, require_file, safe_pickle_load, utf8_lines

SPLITS = ('train', 'val', 'test')
MAX_SENTENCE_TOKENS = 82
MAX_ENTITIES = 16
MAX_BOXES = 100
MAX_TYPES_PER_ENTITY = 3
IOU_THRESHOLD = 0.5
ENTITY_TYPES = ('people', 'clothing', 'bodyparts', 'animals', 'vehicles', 'instruments', 'scene',
                'other')
TYPE_INDEX = {name: index for index, name in enumerate(ENTITY_TYPES)}
NOT_VISUAL = 'notvisual'
GLOVE_NAME = 'glove.6B.300d.txt'

ANNOTATIONS_FIX = ('download annotations.zip of Flickr30k Entities (see tools/download_flickr.sh) '
                   'and unpack it with tools/process_flickr.sh')
FEATURES_FIX = ('convert the Flickr30k detector features with tools/process_flickr.sh '
                '(tools/adaptive_detection_features_converter.py --task flickr)')
GLOVE_FIX = ('download GloVe with tools/download_flickr.sh, or name the GloVe text file (GLOVE=<file> '
             'tools/process_flickr.sh, or tools/create_dictionary.py --glove <file>)')
IMAGE_FOLDER = 'flickr30k_images'
IDS_FIX = ('delete it: tools/adaptive_detection_features_converter.py --task flickr writes it again from '
           'the image names of flickr30k_images/')

_PHRASE_INFO = re.compile(r'/EN#(\d+)((?:/[^/\s\[\]]+)+)')
_ANNOTATION_HEAD = re.compile(r'\[[^ ]+ ')


# ----------------------------------------------------------------- sentences

class Phrase(NamedTuple):
    """One annotated phrase `[/EN#<chain_id>/<type>... words]` of a caption."""
    chain_id: int
    types: list          # type names, e.g. ['people'] or ['people', 'other']
    words: list          # the phrase split on single spaces
    text_through_phrase: str  # de-annotated caption up to the phrase's last character


def remove_annotations(line):
    """The caption without its `[/EN#.. ` heads and `]` closers (the
    original's rule: delete every `[` + non-space run + space, then every `]`)."""
    return _ANNOTATION_HEAD.sub('', line).replace(']', '')


def _bracket_spans(line, where):
    """(open, close) character indices of every `[...]`; nesting and
    unbalanced brackets are UserErrors naming `where` (file:line)."""
    spans, open_at = [], None
    for index, char in enumerate(line):
        if char == '[':
            if open_at is not None:
                raise UserError('%s: nested "[" at column %d in %r; phrases are [/EN#<chain>/<type> '
                                'words] and do not nest; %s' % (where, index + 1, line, ANNOTATIONS_FIX))
            open_at = index
        elif char == ']':
            if open_at is None:
                raise UserError('%s: "]" without "[" at column %d in %r; %s'
                                % (where, index + 1, line, ANNOTATIONS_FIX))
            spans.append((open_at, index))
            open_at = None
    if open_at is not None:
        raise UserError('%s: "[" at column %d is never closed in %r; %s'
                        % (where, open_at + 1, line, ANNOTATIONS_FIX))
    return spans


def parse_sentence_line(line, where):
    """Parse one annotated caption.

    Returns (sentence, phrases): the de-annotated caption (original rule,
    `remove_annotations`) and a `Phrase` per bracket, in order. Malformed
    brackets, non-integer chain ids and unknown types are UserErrors naming
    `where` (file:line)."""
    phrases = []
    for open_at, close_at in _bracket_spans(line, where):
        content = line[open_at + 1:close_at]
        info, _, text = content.partition(' ')
        match = _PHRASE_INFO.fullmatch(info)
        if match is None or not text:
            raise UserError('%s: bad phrase annotation [%s]; expected [/EN#<integer chain id>/<type>'
                            '[/<type>...] word ...]; %s' % (where, content, ANNOTATIONS_FIX))
        types = info.split('/')[2:]
        for type_name in types:
            if type_name not in TYPE_INDEX and type_name != NOT_VISUAL:
                raise UserError('%s: unknown entity type %r in [%s]; known types: %s, %s; %s'
                                % (where, type_name, content, ', '.join(ENTITY_TYPES), NOT_VISUAL,
                                   ANNOTATIONS_FIX))
        phrases.append(Phrase(int(match.group(1)), types, text.split(' '),
                              remove_annotations(line[:close_at])))
    return remove_annotations(line), phrases


def find_last_word_of_first_occurrence(words, phrase_words):
    """Index of the last word of the FIRST occurrence of `phrase_words` as a
    contiguous run in `words` (the original's sublist search), or -1."""
    length = len(phrase_words)
    for start in range(len(words) - length + 1):
        if words[start:start + length] == phrase_words:
            return start + length - 1
    return -1


# ----------------------------------------------------------------- boxes

def parse_annotation_file(path):
    """Ground-truth boxes of an `Annotations/<id>.xml` file.

    Returns {chain_id: [[xmin, ymin, xmax, ymax], ...]} in pixels. Every
    `<object>` with a non-empty `<bndbox>` adds its box to each chain id of
    its `<name>` elements; objects with only `<nobndbox>`/`<scene>` flags
    add nothing, so their chains are absent. A box more than a whole image
    width or height outside the image its `<size>` gives (features.FAR_OUTSIDE)
    is refused: it would match no detected box and lower the recall silently."""
    require_file(path, ANNOTATIONS_FIX)
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as err:
        raise UserError('%s: malformed XML (%s); %s' % (path, err, ANNOTATIONS_FIX)) from None
    image_size = _image_size(root)
    chain_boxes = {}
    for obj in root.findall('object'):
        bndbox = obj.find('bndbox')
        if bndbox is None or len(bndbox) == 0:
            continue
        box = [_xml_int(bndbox, tag, path) for tag in ('xmin', 'ymin', 'xmax', 'ymax')]
        if box[2] < box[0] or box[3] < box[1]:
            raise UserError('%s: box %s is inverted (xmax < xmin or ymax < ymin); %s'
                            % (path, box, ANNOTATIONS_FIX))
        if image_size is not None and boxes_far_outside(box, *image_size)[0].size:
            raise UserError('%s: box %s lies more than a whole image width or height outside the %d x %d image of '
                            'its <size>; the file is damaged: %s' % (path, box, image_size[0], image_size[1],
                                                                    ANNOTATIONS_FIX))
        for name in obj.findall('name'):
            chain_id = _xml_int_text(name.text, 'name', path)
            if chain_id <= 0 or not is_id(chain_id):
                raise UserError('%s: <name>%d</name> is not a chain id (1 to 2**63-1); %s'
                                % (path, chain_id, ANNOTATIONS_FIX))
            chain_boxes.setdefault(chain_id, []).append(box)
    return chain_boxes


def _image_size(root):
    """(width, height) of an annotation's `<size>`, or None where it gives no
    positive integers (the original reads no size, so none is required)."""
    try:
        size = [int(root.findtext('size/%s' % tag)) for tag in ('width', 'height')]
    except (TypeError, ValueError):
        return None
    return size if min(size) > 0 else None


def _xml_int(parent, tag, path):
    return _xml_int_text(parent.findtext(tag), tag, path)


def _xml_int_text(text, tag, path):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise UserError('%s: <%s> holds %r, expected an integer; %s'
                        % (path, tag, text, ANNOTATIONS_FIX)) from None


def box_iou(boxes_a, boxes_b):
    """IoU matrix [A, B] of pixel boxes (x1, y1, x2, y2); area is
    (x2-x1)(y2-y1) without +1, disjoint boxes give 0 (as the original)."""
    boxes_a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    boxes_b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    left = np.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0])  # [A, B]
    top = np.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1])
    right = np.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2])
    bottom = np.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3])
    disjoint = (left > right) | (top > bottom)
    intersection = np.where(disjoint, 0.0, (right - left) * (bottom - top))  # [A, B]
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])  # [A]
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])  # [B]
    union = area_a[:, None] + area_b[None, :] - intersection  # [A, B]
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(union != 0, intersection / np.where(union != 0, union, 1.0), 0.0)


def match_boxes(gt_boxes, detected_boxes, threshold=IOU_THRESHOLD):
    """Sorted indices of detected boxes whose IoU with ANY ground-truth box
    is >= threshold."""
    if len(gt_boxes) == 0 or len(detected_boxes) == 0:
        return []
    hits = (box_iou(gt_boxes, detected_boxes) >= threshold).any(axis=0)  # [D]
    return np.flatnonzero(hits).tolist()


def pad_entity_positions(positions, max_entities=MAX_ENTITIES, max_length=MAX_SENTENCE_TOKENS):
    """The original's padding of entity positions to `max_entities`: append
    the indices of range(max_length) not already among `positions`, in
    increasing order, then cut. E.g. [8, 11, 14] -> [8, 11, 14, 0, 1, ..., 7,
    9, 10, 12, 13, 15]."""
    taken = set(positions)
    padded = list(positions) + [index for index in range(max_length) if index not in taken]
    return padded[:max_entities]


# ----------------------------------------------------------------- split files

def split_path(dataroot, split):
    return os.path.join(dataroot, 'Flickr30kEntities', '%s.txt' % split)


def read_split_ids(dataroot, split):
    """Image ids of a split from `Flickr30kEntities/<split>.txt` (one per
    line). (The original's `<split>_ids.pkl` are no split lists: each holds
    every image, see `converter_id_set`.)"""
    txt_path = split_path(dataroot, split)
    require_file(txt_path, ANNOTATIONS_FIX)
    image_ids = []
    with open(txt_path, 'r', encoding='utf-8') as handle:
        for line_no, line in utf8_lines(handle, txt_path, ANNOTATIONS_FIX):
            if not line.strip():
                continue
            try:
                image_id = int(line)
            except ValueError:
                image_id = None
            if not is_id(image_id):
                raise UserError('%s:%d: %r is not an image id (integer, 0 to 2**63-1); %s'
                                % (txt_path, line_no, line.strip(), ANNOTATIONS_FIX))
            image_ids.append(image_id)
    return image_ids


# ----------------------------------------------------------------- id sets (dictionary order)

def ids_path(dataroot, split):
    return os.path.join(dataroot, '%s_ids.pkl' % split)


def converter_id_set(dataroot):
    """The set of image ids the original's feature converter pickles into
    each absent `<split>_ids.pkl`, whatever the split: the ids of every
    `<id>.jpg` of `<dataroot>/flickr30k_images/`, added to an empty set in
    sorted file-name order ('100.jpg' < '20.jpg'). Its iteration order is
    CPython's, fixed by those insertions.

    Without the image folder, the ids of the train, val and test split files
    stand in for the file names (in the release they are the same 31,783
    images, so the set and its order are the same), with a note."""
    folder = os.path.join(dataroot, IMAGE_FOLDER)
    if os.path.isdir(folder):
        names = [os.path.basename(path) for path in glob.glob(os.path.join(glob.escape(folder), '*.jpg'))]
    else:
        note('no %s; the image ids that order the Flickr dictionary are those of the train, val '
             'and test split files, taken as the image names <id>.jpg' % folder)
        names = ['%d.jpg' % image_id for split in SPLITS for image_id in read_split_ids(dataroot, split)]
    image_ids = set()
    for name in sorted(names):
        image_ids.add(_jpg_image_id(name, folder))
    return image_ids


def _jpg_image_id(name, folder):
    try:
        return int(name[:-len('.jpg')])
    except ValueError:
        raise UserError('%s: %s is not named <image id>.jpg; the image ids are read from the names of the '
                        '.jpg files there: move that file out' % (folder, name)) from None


def unpickled(image_ids):
    """The set that pickling `image_ids` and loading it back gives: a new set
    filled in the iteration order of `image_ids` (what unpickling does). Its
    own iteration order can differ where ids collided in the table."""
    rebuilt = set()
    for image_id in image_ids:
        rebuilt.add(image_id)
    return rebuilt


def load_id_set(path):
    """Image ids of a `<split>_ids.pkl`, in the iteration order of the
    unpickled set."""
    image_ids = safe_pickle_load(path, IDS_FIX)
    if not isinstance(image_ids, (set, frozenset, list, tuple)) or not all(
            type(image_id) is int for image_id in image_ids):
        raise UserError('%s: expected a pickled set of integer image ids, found %s; %s'
                        % (path, type(image_ids).__name__, IDS_FIX))
    return list(image_ids)


def dictionary_image_ids(dataroot):
    """{split: image ids} in the order the original's dictionary builder reads
    them (train, val, test): the iteration order of each unpickled
    `<split>_ids.pkl`, or, where that file is absent, of the set the
    converter would write there, as read back from its pickle."""
    written = None
    orders = {}
    for split in SPLITS:
        path = ids_path(dataroot, split)
        if os.path.exists(path):
            orders[split] = load_id_set(path)
            continue
        if written is None:
            written = list(unpickled(converter_id_set(dataroot)))
        orders[split] = written
    return orders


def sentence_path(dataroot, image_id):
    return os.path.join(dataroot, 'Flickr30kEntities', 'Sentences', '%d.txt' % image_id)


def annotation_path(dataroot, image_id):
    return os.path.join(dataroot, 'Flickr30kEntities', 'Annotations', '%d.xml' % image_id)


def read_sentence_lines(path):
    """The stripped lines of a Sentences file (five captions)."""
    require_file(path, ANNOTATIONS_FIX)
    with open(path, 'r', encoding='utf-8') as handle:
        return [line.strip() for _, line in utf8_lines(handle, path, ANNOTATIONS_FIX)]


def default_glove_path(dataroot):
    """The GloVe file of the Flickr dictionary when none is named:
    `<dataroot>/glove/glove.6B.300d.txt`, else the `glove/` folder beside
    `<dataroot>` (data/glove for data/flickr30k: where tools/download_flickr.sh
    puts it, and the VQA data root's GloVe folder)."""
    candidates = [os.path.join(dataroot, 'glove', GLOVE_NAME),
                  os.path.normpath(os.path.join(dataroot, os.pardir, 'glove', GLOVE_NAME))]
    for path in candidates:
        if os.path.exists(path):
            return path
    raise UserError('no GloVe file: neither %s nor %s exists; %s' % (candidates[0], candidates[1], GLOVE_FIX))
