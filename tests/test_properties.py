"""Property-based tests of the parsers of third-party text (docs/ROBUSTNESS.md):
whatever the input, they return a well-formed result or raise the project's
own UserError, never another exception. Normalisation properties of the
answers themselves are in test_answers.py; these add the metric and the
soft-score side."""
import json
import pickle
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dataset
import utils
from formats import flickr_files, glove, paths, vqa_files, vqa_metric
from formats.answers import SCORE_OF_COUNT, answers_for_metric, get_score
from formats.dictionary import Dictionary, split_words
from tools import compute_softscore
from tools.features_tsv import encode_record, iter_tsv_records
from utils import UserError

FEW = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SOME = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

TEXT = st.text(max_size=80)
BRACKETY = st.lists(st.sampled_from(['[', ']', '/EN#', '/', '#', ' ', '1', '12', '0', '-3', 'x', 'people', 'other',
                                     'notvisual', 'A', 'man', ',', "'s", '\u0663', '\t']),
                    max_size=30).map(''.join)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=16)


@pytest.fixture(scope='module')
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp('properties')


def write_bytes(path, data):
    with open(path, 'wb') as handle:
        handle.write(data)
    return str(path)


def returns_or_user_error(function, *args):
    """function(*args), or None when it raised a UserError (any other exception fails the test)."""
    try:
        return function(*args)
    except UserError as err:
        assert str(err), 'a UserError must say something'
        return None


# ----------------------------------------------------------------- tokenizer

@pytest.fixture(scope='module')
def dictionary():
    words = Dictionary()
    words.tokenize("What color is the man's shirt, and how many dogs are there?", True)
    return words


@FEW
@given(TEXT | BRACKETY)
def test_tokenize_maps_any_text_into_the_vocabulary(dictionary, text):
    tokens = dictionary.tokenize(text, False)
    assert len(tokens) == len(split_words(text))
    assert all(0 <= token < dictionary.ntoken for token in tokens)  # unknown words: ntoken - 1
    for word, token in zip(split_words(text), tokens):
        assert token == dictionary.word2idx.get(word, dictionary.ntoken - 1)


@FEW
@given(st.lists(TEXT, max_size=5))
def test_adding_words_then_tokenizing_gives_the_same_ids(sentences):
    words = Dictionary()
    added = [words.tokenize(sentence, True) for sentence in sentences]
    assert [words.tokenize(sentence, False) for sentence in sentences] == added
    assert len(words.word2idx) == len(words.idx2word) == words.ntoken
    assert all(words.idx2word[index] == word for word, index in words.word2idx.items())
    assert all(' ' not in word and ',' not in word and '?' not in word for word in words.idx2word)


# ----------------------------------------------------------------- answers and the metric

@FEW
@given(st.lists(TEXT, min_size=10, max_size=10), TEXT)
def test_question_accuracy_is_a_fraction_for_any_answers(humans, result):
    records = [{'answer': text, 'answer_id': index + 1} for index, text in enumerate(humans)]
    accuracy = vqa_metric.question_accuracy(records, result)
    assert 0.0 <= accuracy <= 1.0
    human_texts, result_text = answers_for_metric(humans, result)
    if sum(text == result_text for text in human_texts) >= 4:
        assert accuracy == 1.0


@FEW
@given(st.lists(TEXT, min_size=10, max_size=10), st.booleans())
def test_soft_scores_follow_the_answer_counts(humans, normalize):
    """Raw answer strings are counted (the original's rule), or normalised
    ones with `normalize`."""
    as_counted = compute_softscore.preprocess_answer if normalize else (lambda text: text)
    annotation = {'question_id': 1, 'image_id': 2, 'answers': [{'answer': text} for text in humans]}
    vocabulary = sorted({as_counted(text) for text in humans[:5]})
    ans2label = {answer: label for label, answer in enumerate(vocabulary)}
    target, = compute_softscore.compute_target([annotation], ans2label, normalize)
    assert sorted(target['labels']) == sorted(ans2label.values())  # every listed answer was given
    for label, score in zip(target['labels'], target['scores']):
        count = sum(as_counted(text) == vocabulary[label] for text in humans)
        assert score == get_score(count) and score in SCORE_OF_COUNT + (1.0,)


# ----------------------------------------------------------------- feature TSV lines

VALID_LINE = encode_record(7, 640.0, 480.0, np.array([[1, 2, 30, 40], [5, 5, 9, 9]], np.float32),
                           np.arange(12, dtype=np.float32).reshape(2, 6))


def read_tsv(path):
    return list(iter_tsv_records([path], feature_dim=6))


@FEW
@given(st.text(alphabet=st.characters(blacklist_categories=['Cs']), max_size=200)
       | st.binary(max_size=200).map(lambda data: data.decode('latin-1')))
def test_any_tsv_text_is_parsed_or_named(scratch, text):
    path = write_bytes(scratch / 'any.tsv', text.encode('utf-8', 'surrogatepass'))
    records = returns_or_user_error(read_tsv, path)
    for record in records or []:
        assert record['boxes'].shape == (record['num_boxes'], 4) and record['features'].shape[1] == 6
        assert np.isfinite(record['features']).all() and record['image_w'] > 0


@FEW
@given(st.integers(0, len(VALID_LINE) - 1), st.integers(1, 40), st.sampled_from(['', '\t', 'A', '=', '9', '-', '@']))
def test_damaged_tsv_lines_are_refused_with_their_line_number(scratch, start, length, replacement):
    damaged = VALID_LINE[:start] + replacement + VALID_LINE[start + length:]
    path = write_bytes(scratch / 'damaged.tsv', (VALID_LINE + '\n' + damaged + '\n').encode('ascii'))
    try:
        records = read_tsv(path)
    except UserError as err:
        assert 'damaged.tsv:' in str(err) and 're-download' in str(err)
        return
    assert [record['image_id'] for record in records][0] == 7
    for record in records:  # a damage that still decodes must still be a consistent record
        assert record['boxes'].shape == (record['num_boxes'], 4) and np.isfinite(record['boxes']).all()


# ----------------------------------------------------------------- Flickr30k sentences and XML

@FEW
@given(TEXT | BRACKETY)
def test_any_sentence_line_is_parsed_or_named(text):
    parsed = returns_or_user_error(flickr_files.parse_sentence_line, text, 'Sentences/1.txt:1')
    if parsed is None:
        return
    sentence, phrases = parsed
    assert '[' not in sentence and ']' not in sentence
    for phrase in phrases:
        assert isinstance(phrase.chain_id, int) and phrase.chain_id >= 0 and phrase.types and phrase.words


PHRASE = st.tuples(st.integers(0, 10 ** 6), st.lists(st.sampled_from(flickr_files.ENTITY_TYPES), min_size=1,
                                                     max_size=3),
                   st.lists(st.text(alphabet='abcxyz,.\'', min_size=1, max_size=6), min_size=1, max_size=4))


@FEW
@given(st.lists(PHRASE, max_size=5), st.lists(st.text(alphabet='abc .,', max_size=6), min_size=6, max_size=6))
def test_well_formed_sentences_give_back_their_phrases(phrases, fillers):
    line = ''.join(filler + ' [/EN#%d/%s %s] ' % (chain, '/'.join(types), ' '.join(words))
                   for filler, (chain, types, words) in zip(fillers, phrases)) + fillers[-1]
    sentence, parsed = flickr_files.parse_sentence_line(line, 'Sentences/1.txt:1')
    assert [(p.chain_id, p.types, p.words) for p in parsed] == [(c, t, w) for c, t, w in phrases]
    assert sentence == flickr_files.remove_annotations(line)


XML_PIECES = st.sampled_from(['<annotation>', '</annotation>', '<object>', '</object>', '<name>', '</name>',
                              '<bndbox>', '</bndbox>', '<xmin>', '</xmin>', '<ymax>', '</ymax>',
                              '<nobndbox>1</nobndbox>', '3', '-1', 'x', '&amp;', '&bogus;',
                              '<!DOCTYPE a [<!ENTITY e "x">]>', '<?xml version="1.0"?>',
                              '<?xml version="1.0" encoding="utf-16"?>', '\xe9', '<![CDATA[7]]>', ' '])


@FEW
@given(st.binary(max_size=300) | st.lists(XML_PIECES, max_size=30).map(lambda parts: ''.join(parts).encode('utf-8')))
def test_any_annotation_bytes_are_parsed_or_named(scratch, data):
    path = write_bytes(scratch / 'annotation.xml', data)
    chains = returns_or_user_error(flickr_files.parse_annotation_file, path)
    for chain_id, boxes in (chains or {}).items():
        assert isinstance(chain_id, int) and chain_id > 0
        for xmin, ymin, xmax, ymax in boxes:
            assert xmin <= xmax and ymin <= ymax


@SOME
@given(st.lists(st.tuples(st.lists(st.integers(-5, 50), min_size=1, max_size=2),
                          st.lists(st.integers(-10, 600), min_size=4, max_size=4)), max_size=4))
def test_well_formed_annotations_give_back_their_boxes(scratch, objects):
    xml = '<annotation>%s</annotation>' % ''.join(
        '<object>%s<bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object>'
        % ((''.join('<name>%d</name>' % chain for chain in chains),) + tuple(box)) for chains, box in objects)
    path = write_bytes(scratch / 'well_formed.xml', xml.encode('utf-8'))
    valid = all(chain > 0 for chains, _ in objects for chain in chains) and all(
        box[0] <= box[2] and box[1] <= box[3] for _, box in objects)
    if not valid:
        with pytest.raises(UserError, match='well_formed.xml'):
            flickr_files.parse_annotation_file(path)
        return
    expected = {}
    for chains, box in objects:
        for chain in chains:
            expected.setdefault(chain, []).append(box)
    assert flickr_files.parse_annotation_file(path) == expected


# ----------------------------------------------------------------- GloVe text

@FEW
@given(st.binary(max_size=300) | st.lists(st.sampled_from(['what', 'is', ' ', '0.5', '-1e3', 'nan', 'inf', 'x',
                                                          '\n', '\t', '\r\n', '1_0', '\xe9']),
                                          max_size=40).map(lambda parts: ''.join(parts).encode('utf-8')))
def test_any_glove_text_is_read_or_named(scratch, data):
    path = write_bytes(scratch / 'glove.txt', data)
    result = returns_or_user_error(glove.create_glove_embedding_init, ['what', 'is', 'dog'], path)
    if result is not None:
        weights, word2emb = result
        assert weights.dtype == np.float32 and weights.shape[0] == 3 and np.isfinite(weights).all()
        assert set(word2emb) <= {'what', 'is', 'dog'} and not weights[2].any()


@SOME
@given(st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=6))
def test_well_formed_glove_lines_give_back_their_vectors(scratch, values):
    line = ' '.join(repr(value) for value in values)
    path = write_bytes(scratch / 'glove_ok.txt', ('what %s\nis %s\n' % (line, line)).encode('utf-8'))
    weights, _ = glove.create_glove_embedding_init(['is', 'dog'], path)
    np.testing.assert_array_equal(weights[0], np.array(values, dtype=np.float32))
    assert weights.shape == (2, len(values)) and not weights[1].any()


# ----------------------------------------------------------------- question / annotation JSON

QUESTION_VALUES = st.one_of(JSON_SCALARS, st.integers(0, 3), st.sampled_from(['', '?', 'What is it?', ', ?']))
SHAPED_QUESTIONS = st.fixed_dictionaries({'questions': st.lists(st.dictionaries(
    st.sampled_from(['question', 'question_id', 'image_id', 'extra']), QUESTION_VALUES, max_size=4), max_size=4)})
SHAPED_ANNOTATIONS = st.fixed_dictionaries({'annotations': st.lists(st.dictionaries(
    st.sampled_from(['question_id', 'image_id', 'multiple_choice_answer', 'answers', 'answer_type', 'question_type']),
    st.one_of(QUESTION_VALUES, st.lists(st.one_of(JSON_SCALARS, st.fixed_dictionaries({'answer': QUESTION_VALUES})),
                                        min_size=8, max_size=11)), max_size=6), max_size=3)})


def json_bytes(data):
    return json.dumps(data).encode('utf-8')


@FEW
@given(JSON | SHAPED_QUESTIONS)
def test_any_question_json_is_loaded_or_named(scratch, data):
    write_bytes(paths.question_path(str(scratch), 'val'), json_bytes(data))
    questions = returns_or_user_error(vqa_files.load_questions, str(scratch), 'val')
    for question in questions or []:
        assert isinstance(question['question_id'], int) and isinstance(question['image_id'], int)
        assert split_words(question['question'])
    if questions is not None:
        assert len({question['question_id'] for question in questions}) == len(questions)


@FEW
@given(JSON | SHAPED_ANNOTATIONS)
def test_any_annotation_json_is_loaded_or_named(scratch, data):
    write_bytes(paths.annotation_path(str(scratch), 'val'), json_bytes(data))
    annotations = returns_or_user_error(vqa_files.load_annotations, str(scratch), 'val')
    for annotation in annotations or []:
        assert len(annotation['answers']) == 10
    if annotations:
        targets = compute_softscore.compute_target(annotations, {'yes': 0})
        assert all(set(target['labels']) <= {0} for target in targets)


@FEW
@given(JSON | SHAPED_ANNOTATIONS, JSON | SHAPED_QUESTIONS, JSON)
def test_the_metric_loads_any_json_or_names_it(annotations, questions, results):
    outcome = returns_or_user_error(vqa_metric.evaluate_results, results, questions, annotations)
    if outcome is not None:
        assert 0.0 <= outcome['overall'] <= 100.0


@SOME
@given(st.binary(max_size=200))
def test_any_json_file_bytes_are_loaded_or_named(scratch, data):
    path = write_bytes(scratch / 'any.json', data)
    returns_or_user_error(utils.load_json, path, 'fix')


VG_QAS = st.lists(st.one_of(JSON, st.fixed_dictionaries({'id': st.integers(0, 3), 'qas': st.lists(
    st.one_of(JSON, st.fixed_dictionaries({'qa_id': st.integers(), 'question': QUESTION_VALUES,
                                           'answer': QUESTION_VALUES})), max_size=3)})), max_size=3)
VG_IMAGES = st.lists(st.one_of(JSON, st.fixed_dictionaries({'image_id': st.integers(0, 3),
                                                           'coco_id': st.none() | st.integers(0, 3)})), max_size=4)


@SOME
@given(st.one_of(JSON, VG_QAS), st.one_of(JSON, VG_IMAGES))
def test_any_visual_genome_json_is_loaded_or_named(scratch, capsys, qas, images):
    write_bytes(scratch / 'question_answers.json', json_bytes(qas))
    write_bytes(scratch / 'image_data.json', json_bytes(images))
    reader = dataset.VisualGenomeFeatureDataset.__new__(dataset.VisualGenomeFeatureDataset)
    reader.name, reader.img_id2idx, reader.ans2label = 'train', {1: 0, 2: 1}, {'what is it': 0, '': 1}
    entries = returns_or_user_error(reader._build_entries, str(scratch))
    for entry in entries or []:
        assert entry['image'] in (0, 1) and split_words(entry['question'])
    capsys.readouterr()


# ----------------------------------------------------------------- legacy pickles

@FEW
@given(st.binary(max_size=120) | st.builds(lambda obj, cut: pickle.dumps(obj, protocol=2)[:cut], JSON,
                                           st.integers(0, 200)))
def test_any_pickle_bytes_are_loaded_safely_or_named(scratch, data):
    path = write_bytes(scratch / 'cache.pkl', data)
    loaded = returns_or_user_error(utils.safe_pickle_load, path, 'fix')
    assert loaded is None or not callable(loaded)


@pytest.mark.parametrize('protocol', range(pickle.HIGHEST_PROTOCOL + 1))
def test_sets_of_image_ids_load_at_every_protocol(scratch, protocol):
    """The original's Flickr `<split>_ids.pkl` are pickled sets of ints;
    protocols 0-2 (and Python 2) name the class `__builtin__.set`. Loading
    keeps the order that unpickling gives."""
    ids = set()
    for image_id in (137, 155, 181, 187, 26, 38, 80):
        ids.add(image_id)
    data = pickle.dumps(ids, protocol=protocol)
    loaded = utils.safe_pickle_load(write_bytes(scratch / 'ids.pkl', data), 'fix')
    assert type(loaded) is set and loaded == ids
    assert list(loaded) == list(pickle.loads(data))


def test_python2_set_pickle_loads(scratch):
    data = b'c__builtin__\nset\np0\n((lp1\nI16\naI1\naI9\natp2\nRp3\n.'  # Python 2, protocol 0
    assert utils.safe_pickle_load(write_bytes(scratch / 'ids.pkl', data), 'fix') == {16, 1, 9}


@pytest.mark.parametrize('data, refused', [
    (b'\x80\x02cposix\nsystem\nq\x00.', 'posix.system'),                        # GLOBAL
    (b'\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.', 'builtins.eval'),      # GLOBAL + REDUCE
    (b'(S"a"\ni__main__\nX\n.', '__main__.X'),                                  # INST
], ids=['global', 'reduce', 'inst'])
def test_pickle_opcodes_that_import_are_refused(scratch, data, refused):
    with pytest.raises(UserError, match='refusing to load %s' % re.escape(refused)):
        utils.safe_pickle_load(write_bytes(scratch / 'op.pkl', data), 'fix')


@pytest.mark.parametrize('data', [
    b'\x80\x05\x95' + b'\x00' * 7 + b'\xc0N.',                  # FRAME longer than any file
    b'\x80\x04\x8e' + b'\xff' * 7 + b'\x7fN.',                  # BINBYTES8 of 2**63 bytes
    b'\x80\x02h\x05.',                                      # BINGET of an empty memo
], ids=['frame', 'binbytes8', 'binget'])
def test_damaged_pickle_length_fields_are_named_not_allocated(scratch, data):
    with pytest.raises(UserError, match='cache.pkl: (corrupt|unsafe or unreadable) pickle'):
        utils.safe_pickle_load(write_bytes(scratch / 'cache.pkl', data), 'fix')
