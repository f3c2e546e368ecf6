"""Shared helpers: user-facing errors, atomic writes, safe loading of legacy
pickles and checkpoints, and small tensor utilities.

Every module that reads a user's file raises `UserError` for bad input; the
CLIs turn it into a one-line message and exit status 2.
"""
import contextlib
import io
import json
import os
import pickle
import sys
import tempfile

import numpy as np
import torch


class UserError(Exception):
    """A problem with the user's input (file, flag, data): the message names
    the file, line or key and the step that fixes it."""


def require_file(path, fix):
    """Raise a UserError naming `path` and the step `fix` when it is missing."""
    if not os.path.exists(path):
        raise UserError('missing file %s: %s' % (path, fix))
    return path


def run_cli(main, argv=None):
    """Run `main(argv)`; a UserError becomes `error: <message>` and exit 2."""
    try:
        return main(argv)
    except UserError as err:
        print('error: %s' % ' '.join(str(err).splitlines()), file=sys.stderr)  # always one line
        sys.exit(2)


# ----------------------------------------------------------------- writing

@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Open a temporary file beside `path`; rename it over `path` only when
    the block finishes without an exception, so readers never see a
    half-written file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.',
                                    suffix='.tmp')
    os.chmod(tmp_path, _default_file_mode())
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        raise


def _default_file_mode():
    """0666 minus the umask: what open() would give (mkstemp makes 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_path(path):
    """Context manager yielding a temporary path beside `path` (for writers
    such as h5py that open files by name); renamed over `path` on success."""
    return _AtomicPath(path)


class _AtomicPath:
    def __init__(self, path):
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, self.tmp_path = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.',
                                             suffix='.tmp')
        os.close(fd)
        os.chmod(self.tmp_path, _default_file_mode())

    def __enter__(self):
        return self.tmp_path

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            os.replace(self.tmp_path, self.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.tmp_path)
        return False


def save_json(obj, path):
    text = json.dumps(obj)  # one string: much faster than json.dump's chunked writes
    with atomic_write(path, 'w') as handle:
        handle.write(text)


def torch_save_atomic(obj, path):
    with atomic_write(path, 'wb') as handle:
        torch.save(obj, handle)


# ----------------------------------------------------------------- reading

def load_json(path, fix):
    """Load a JSON file; a missing or malformed file is a UserError."""
    require_file(path, fix)
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise UserError('%s is not valid JSON (line %d, column %d: %s); %s'
                        % (path, err.lineno, err.colno, err.msg, fix)) from None
    except UnicodeDecodeError as err:
        raise UserError('%s is not UTF-8 text (byte %d: %s); %s' % (path, err.start, err.reason, fix)) from None
    except RecursionError:
        raise UserError('%s nests JSON too deeply to be a data file; %s' % (path, fix)) from None
    except OSError as err:  # a folder, no permission, an I/O error
        raise UserError('cannot read %s (%s); %s' % (path, err.strerror or err, fix)) from None


def utf8_lines(handle, path, fix):
    """Yield (line number, line) of a text file opened with encoding='utf-8';
    bytes that are not UTF-8 are a UserError naming the file and the place."""
    line_no = 0
    try:
        for line_no, line in enumerate(handle, 1):
            yield line_no, line
    except UnicodeDecodeError as err:
        raise UserError('%s: not UTF-8 text after line %d (%s); %s' % (path, line_no, err.reason, fix)) from None


_SAFE_BUILTINS = {'dict', 'list', 'tuple', 'set', 'frozenset', 'int', 'float', 'str',
                  'bytes', 'bool', 'complex', 'bytearray'}


class _PlainUnpickler(pickle.Unpickler):
    """Admits only plain containers, strings and numbers (and numpy scalars /
    arrays of plain dtypes, which the original caches sometimes hold)."""

    def find_class(self, module, name):
        # pickles of protocol 0-2 (and Python 2's) name builtins `__builtin__`, e.g. a set of ids
        if module in ('builtins', '__builtin__') and name in _SAFE_BUILTINS:
            return getattr(__import__('builtins'), name)
        if module == 'collections' and name == 'OrderedDict':
            import collections
            return collections.OrderedDict
        if module in ('numpy.core.multiarray', 'numpy._core.multiarray') and name in ('scalar', '_reconstruct'):
            return getattr(np.core.multiarray if hasattr(np, 'core') else np._core.multiarray, name)
        if module == 'numpy' and name in ('dtype', 'ndarray'):
            return getattr(np, name)
        raise pickle.UnpicklingError('refusing to load %s.%s' % (module, name))


def safe_pickle_load(path, fix='re-create it with the tools/ scripts'):
    """Load a legacy pickle (the original's caches) through a restricted
    unpickler; a pickle that names any other class or function is refused."""
    require_file(path, fix)
    with open(path, 'rb') as handle:
        data = handle.read()
    try:
        return _PlainUnpickler(io.BytesIO(data), encoding='latin1').load()
    except pickle.UnpicklingError as err:
        raise UserError('%s: unsafe or unreadable pickle (%s); only plain containers, strings and '
                        'numbers are accepted; %s' % (path, err, fix)) from None
    except Exception as err:  # truncated or damaged: EOFError, ValueError, KeyError, OverflowError, MemoryError...
        raise UserError('%s: corrupt pickle (%s: %s); %s' % (path, type(err).__name__, err, fix)) from None


def load_checkpoint(path, map_location='cpu'):
    """Load a checkpoint with weights_only=True; errors name the file."""
    require_file(path, 'train a model with main.py or download the released checkpoint '
                       '(see README)')
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for truncated/corrupt files
        raise UserError('%s: cannot read checkpoint (%s: %s); the file is truncated, corrupt or '
                        'not a weights-only checkpoint; re-download or re-train it'
                        % (path, type(err).__name__, str(err).splitlines()[0] if str(err) else '')) from None
    if not isinstance(ckpt, dict) or 'model_state' not in ckpt:
        raise UserError('%s: not a BAN checkpoint (no "model_state" key)' % path)
    state = ckpt['model_state']
    if not isinstance(state, dict) or not all(isinstance(key, str) and torch.is_tensor(value)
                                              for key, value in state.items()):
        raise UserError('%s: "model_state" is not a dict of named tensors, so this is not a BAN checkpoint; '
                        're-download or re-train it' % path)
    return ckpt


def strip_module_prefix(state_dict):
    """Drop the `module.` prefix that DataParallel/DDP checkpoints carry."""
    if state_dict and all(key.startswith('module.') for key in state_dict):
        return {key[len('module.'):]: value for key, value in state_dict.items()}
    return dict(state_dict)


# ----------------------------------------------------------------- misc

def str2bool(value):
    """argparse type accepting true/false spellings (True, false, 1, 0, yes, no)."""
    import argparse
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ('true', 't', 'yes', 'y', '1'):
        return True
    if lowered in ('false', 'f', 'no', 'n', '0'):
        return False
    raise argparse.ArgumentTypeError('expected True or False, got %r' % value)


def seed_everything(seed):
    import random
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def note(message):
    """Print `note: message` once per job (rank 0 only under torchrun)."""
    if os.environ.get('RANK', '0') == '0':
        print('note: ' + message, flush=True)
