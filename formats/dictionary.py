"""The question dictionary (FORMATS.md section 4): word <-> index maps, the
original's word splitting, and tokenise-and-pad."""
import os
import pickle

import utils
from formats.paths import dictionary_file, task_root
from utils import UserError

QUESTION_LENGTH = 14
PICKLE_PROTOCOL = 2  # readable by the original (Python 2 and 3) code
DICTIONARY_FIX = 'run tools/create_dictionary.py (part of tools/process.sh)'


def pad_tokens(tokens, length, padding_idx):
    """`tokens` cut to `length` and padded AT THE END with `padding_idx`."""
    tokens = list(tokens[:length])
    return tokens + [padding_idx] * (length - len(tokens))


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

    def encode(self, sentence, length=QUESTION_LENGTH):
        """Look-up tokens of `sentence` (unknown words -> ntoken - 1), cut to
        `length` and padded at the end with padding_idx, as the datasets feed them."""
        return pad_tokens(self.tokenize(sentence, False), length, self.padding_idx)

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


def load_dictionary(dataroot, task):
    """The dictionary of the data root `dataroot` (--dataroot) for `task`;
    a data root that is no folder is named as such, before the file."""
    path = dictionary_file(task_root(dataroot, task))
    step = 'tools/process_flickr.sh' if task == 'flickr' else 'tools/process.sh (tools/create_dictionary.py)'
    if not os.path.isdir(dataroot):
        raise UserError('--dataroot %s %s: pass the folder that holds the prepared data (%s writes it)'
                        % (dataroot, 'is a file, not a folder' if os.path.exists(dataroot) else 'does not exist',
                           step))
    if not os.path.exists(path):
        raise UserError('missing file %s: run %s first' % (path, step))
    return Dictionary.load_from_file(path)
