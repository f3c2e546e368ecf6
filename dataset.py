"""VQA 2.0 and Visual Genome question datasets (FORMATS.md sections 1, 4 and
5): entries of question tokens, answer targets and feature rows, read from
the files by `vqa_files`, `dictionary` and `features`."""
import hashlib
import json
import os

import numpy as np
import torch
from torch.utils.data import Dataset

import utils
from answers import preprocess_answer
from dictionary import DICTIONARY_FIX, QUESTION_LENGTH, pad_tokens, split_words
from features import FeatureStore, feature_split
from utils import UserError
from vqa_files import (DOWNLOAD_FIX, SOFTSCORE_FIX, VG_FIX, VQA_SPLITS, check_target, load_answer_maps, load_questions,
                       load_targets,
                       question_path)


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
                return self._checked(cached['entries'], json_path)
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
