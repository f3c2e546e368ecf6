"""A bad dictionary, GloVe text, GloVe init matrix or tf-idf input
(docs/ROBUSTNESS.md), read by `formats.dictionary`, `formats.glove` and
`formats.tfidf`: each case is answered by a one-line `error: ...` naming the
file/line and the fix, exit status 2 and no output. The `@case` machinery is
tests/helpers/bad_inputs.py."""
import os

import numpy as np
import pytest

from bad_inputs import case, cases_of, check_one_line_error, edit_json, main_cmd, rewrite_pickle, val_questions
from data_helpers import GLOVE_DIM
from robust_helpers import parser_built_by


def add_a_question_word(root):
    """A new word: a dictionary written before GloVe is read would differ from the old one."""
    edit_json(val_questions(root), lambda data: data['questions'][2].update(question='What color is the zebra?'))


# ----------------------------------------------------------------- GloVe text and the init matrix

@case('glove.6B.300d.txt:3: 4 values where line 1 has 5', 'download GloVe')
def glove_line_of_wrong_width(root):
    add_a_question_word(root)
    path = os.path.join(root, 'glove', 'glove.6B.300d.txt')
    with open(path) as handle:
        lines = handle.read().split('\n')
    lines[2] = lines[2].rsplit(' ', 1)[0]
    with open(path, 'w') as handle:
        handle.write('\n'.join(lines))
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('glove.6B.300d.txt:2: NaN or infinite vector value', 'download GloVe')
def glove_nan_value(root):
    add_a_question_word(root)
    path = os.path.join(root, 'glove', 'glove.6B.300d.txt')
    with open(path) as handle:
        lines = handle.read().split('\n')
    lines[1] = ' '.join(lines[1].split(' ')[:2] + ['nan'] + lines[1].split(' ')[3:])
    with open(path, 'w') as handle:
        handle.write('\n'.join(lines))
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('glove.6B.300d.txt is not a regular file (a device, pipe or socket)', 'download GloVe')
def glove_is_dev_zero(root):
    path = os.path.join(root, 'glove', 'glove.6B.300d.txt')
    os.remove(path)
    os.symlink('/dev/zero', path)  # read forever before
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('glove.6B.300d.txt:4: not UTF-8 text (byte 3', 'download GloVe')
def glove_bad_byte_on_line_4(root):
    path = os.path.join(root, 'glove', 'glove.6B.300d.txt')
    with open(path, 'rb') as handle:
        lines = handle.read().split(b'\n')
    lines[3] = lines[3][:2] + b'\xff' + lines[3][3:]
    with open(path, 'wb') as handle:
        handle.write(b'\n'.join(lines))
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('glove6b_init_5d.npy is not a readable .npy matrix', 'tools/create_dictionary.py')
def glove_init_truncated(root):
    path = os.path.join(root, 'glove6b_init_%dd.npy' % GLOVE_DIM)
    with open(path, 'rb') as handle:
        head = handle.read(150)
    with open(path, 'wb') as handle:
        handle.write(head)
    return main_cmd(root)


@case('glove6b_init_5d.npy: row 3 (word 3 of dictionary.pkl) holds NaN or infinite values',
      'tools/create_dictionary.py')
def glove_init_nan_row(root):
    path = os.path.join(root, 'glove6b_init_%dd.npy' % GLOVE_DIM)
    matrix = np.load(path)
    matrix[3, 1] = np.nan
    np.save(path, matrix)
    return main_cmd(root)


@case('glove6b_init_5d.npy holds a (', ', 5) embedding matrix but the dictionary has', 'tools/create_dictionary.py')
def glove_init_of_another_dictionary(root):
    path = os.path.join(root, 'glove6b_init_%dd.npy' % GLOVE_DIM)
    np.save(path, np.load(path)[:-1])
    return main_cmd(root)


# ----------------------------------------------------------------- dictionary.pkl

@case('dictionary.pkl: the words', 'share index 0 in word2idx', 'tools/create_dictionary.py')
def dictionary_words_share_an_index(root):
    rewrite_pickle(os.path.join(root, 'dictionary.pkl'), lambda data: data[0].update({data[1][1]: 0}))
    return main_cmd(root)


@case('dictionary.pkl: unsafe or unreadable pickle (refusing to load __builtin__.bytearray)',
      'tools/create_dictionary.py')
def dictionary_that_allocates_3_gib(root):
    with open(os.path.join(root, 'dictionary.pkl'), 'wb') as handle:  # 35 bytes: bytearray(3 * 2**30)
        handle.write(b'\x80\x02c__builtin__\nbytearray\n\x8a\x05\x00\x00\x00\xc0\x00\x85R.')
    return main_cmd(root)


# ----------------------------------------------------------------- the tf-idf table of op c

def with_tfidf_table(command):
    """The command with --op c: the tf-idf table reads VG questions, COCO captions and GloVe text."""
    command[command.index('--op') + 1] = 'c'
    return command


@case('question_answers.json', 'tools/download.sh', 'leave vg out of --tfidf_sources', '--tfidf_sources vqa,cap')
def tfidf_without_visual_genome(root):  # the hint named only the download
    os.remove(os.path.join(root, 'question_answers.json'))
    return with_tfidf_table(main_cmd(root))


@case('glove.6B.%dd.txt' % GLOVE_DIM, 'tools/download.sh', 'train without the table: --tfidf false')
def tfidf_without_glove_text(root):  # the hint named --glove kumo, a flag main.py does not have
    return with_tfidf_table(main_cmd(root))


def test_main_py_hints_name_only_flags_it_has(cli_results, monkeypatch):
    import main
    parser = parser_built_by(monkeypatch, lambda: main.parse_args([]))
    flags = {option for action in parser._actions for option in action.option_strings}
    for name in ('tfidf_without_visual_genome', 'tfidf_without_glove_text'):
        named = {word.rstrip(',;:)') for word in cli_results[name][0]['stderr'].split() if word.startswith('--')}
        assert named and named <= flags, (name, named - flags)


@pytest.mark.parametrize('name', cases_of(__name__))
def test_bad_input_gives_one_line_error_and_no_output(cli_results, name):
    check_one_line_error(cli_results, name)
