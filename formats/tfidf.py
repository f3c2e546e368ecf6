"""The tf-idf word graph of the `c` embedding (FORMATS.md section 6)."""
import os

import numpy as np
import torch

import utils
from formats.glove import create_glove_embedding_init
from formats.paths import glove_text_file
from formats.vqa_files import DOWNLOAD_FIX, VG_FIX, load_questions
from utils import UserError

TFIDF_GLOVE_FIX = ('download GloVe with tools/download.sh: the tf-idf table of --op c needs the vectors of the words '
                   'that Visual Genome questions and COCO captions add; or train without the table: --tfidf false')

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
        glove_file = glove_text_file(dataroot)
    weights, _ = create_glove_embedding_init(dictionary.idx2word[num_base:], glove_file, TFIDF_GLOVE_FIX)
    print('tf-idf stochastic matrix (%d x %d) is generated.' % (num_base, num_total))
    return tfidf, weights
