"""The tf-idf word graph of the `c` embedding: parity with tfidf_case.pt,
computed by the original from the inputs in tfidf_case/."""
import itertools
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from formats import glove, vqa_files
from formats.dictionary import Dictionary
from formats.tfidf import tfidf_from_questions
from utils import UserError

REFERENCE = Path(__file__).resolve().parent / 'golden'
NAMES = ['train', 'val', 'test2015']


def rel_err(actual, expected):
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.fixture()
def case_root(tmp_path):
    root = shutil.copytree(str(REFERENCE / 'tfidf_case' / 'data'), str(tmp_path / 'data'))
    os.chmod(root, 0o755)
    return root


@pytest.fixture(scope='module')
def reference():
    return torch.load(str(REFERENCE / 'tfidf_case.pt'), weights_only=True)


def base_dictionary(root):
    dictionary = Dictionary()
    for name in NAMES:
        for question in vqa_files.load_questions(root, name):
            dictionary.tokenize(question['question'], True)
    return dictionary


def test_tfidf_matches_reference(case_root, reference):
    dictionary = base_dictionary(case_root)
    assert dictionary.idx2word == reference['base_idx2word']
    base_glove, _ = glove.create_glove_embedding_init(dictionary.idx2word,
                                                         os.path.join(case_root, 'glove', 'glove.6B.300d.txt'))
    assert torch.equal(torch.from_numpy(base_glove), reference['base_glove'])
    tfidf, extended_glove = tfidf_from_questions(NAMES, dictionary, case_root)
    assert dictionary.idx2word == reference['extended_idx2word']  # extended in place, in order of appearance
    assert tfidf.is_sparse and tfidf.dtype == torch.float32
    assert tfidf.shape == reference['tfidf'].shape == (23, 31)
    assert rel_err(tfidf.to_dense(), reference['tfidf']) < 1e-6
    assert torch.allclose(tfidf.to_dense().sum(1), torch.ones(23))
    assert torch.equal(torch.from_numpy(extended_glove), reference['extended_glove'])
    emb_init = tfidf.matmul(torch.cat([torch.from_numpy(base_glove), torch.from_numpy(extended_glove)]))
    assert rel_err(emb_init, reference['emb_init']) < 1e-6


def _textbook_tfidf(root):
    """FORMATS §6 read literally: every entry divided by the document
    frequency of its column token (no positional quirk)."""
    dictionary = base_dictionary(root)
    num_base = dictionary.ntoken
    sentences = [q['question'] for name in NAMES for q in vqa_files.load_questions(root, name)]
    sentences += [qa['question'] for image in json.load(open(os.path.join(root, 'question_answers.json')))
                  for qa in image['qas']]
    for split in ('train2017', 'val2017'):
        with open(os.path.join(root, 'annotations', 'captions_%s.json' % split)) as handle:
            sentences += [c['caption'] for c in json.load(handle)['annotations']]
    token_lists = [dictionary.tokenize(sentence, True) for sentence in sentences]
    doc_freq = torch.bincount(torch.tensor(sum(token_lists, [])), minlength=dictionary.ntoken).double()
    dense = torch.zeros(num_base, dictionary.ntoken, dtype=torch.float64)
    for tokens in token_lists:
        for a, b in itertools.combinations(tokens, 2):
            for row, col in ((a, b), (b, a)):
                if row < num_base:
                    dense[row, col] += 1.0 / doc_freq[col]
    return (dense / dense.sum(1, keepdim=True)).float()


def test_reference_has_the_original_idf_indexing_quirk(case_root, reference):
    """The documented rule does NOT give the reference; dataset.py keeps the quirk."""
    assert rel_err(_textbook_tfidf(case_root), reference['tfidf']) > 1e-2


def test_missing_sources_are_named(case_root):
    os.remove(os.path.join(case_root, 'question_answers.json'))
    with pytest.raises(UserError, match='question_answers.json.*tools/download.sh'):
        tfidf_from_questions(NAMES, base_dictionary(case_root), case_root)
    tfidf, weights = tfidf_from_questions(NAMES, base_dictionary(case_root), case_root,
                                                  target=['vqa', 'cap'])
    assert tfidf.shape[0] == 23 and weights.shape[1] == 300
    with pytest.raises(UserError, match='unknown tf-idf source'):
        tfidf_from_questions(NAMES, base_dictionary(case_root), case_root, target=['vqa', 'flickr'])
