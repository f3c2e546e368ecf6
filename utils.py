"""Shared helpers: user-facing errors and the CLI wrapper, the one handler
of Ctrl-C and SIGTERM (with training's graceful stop), atomic writes,
JSON and UTF-8 reading, the restricted unpickler for legacy pickles, the
wording of torch.load refusals, seeding and notes.

Every module that reads a user's file raises `UserError` for bad input; the
CLIs turn it into a one-line message and exit status 2.
"""
import contextlib
import errno
import gc
import io
import json
import os
import pickle
import re
import reprlib
import signal
import socket
import stat
import sys
import tempfile
import threading
import time

import numpy as np
import torch


class UserError(Exception):
    """A problem with the user's input (file, flag, data): the message names
    the file, line or key and the step that fixes it."""


def require_file(path, fix):
    """Raise a UserError naming `path` and the step `fix` unless `path` is a
    regular file: missing, a folder, or a device or pipe (/dev/zero would
    be read forever)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise UserError('missing file %s: %s' % (path, fix)) from None
    except OSError as err:  # no permission on a folder of the path, a symlink loop, a name too long
        raise UserError('cannot read %s; %s' % (describe_os_error(err), fix)) from None
    except ValueError:  # a NUL byte: no file system has such a name
        raise UserError('%r is not a file name (it holds a NUL byte); %s' % (path, fix)) from None
    if stat.S_ISDIR(mode):
        raise UserError('%s is a folder, but a file is expected here: %s' % (path, fix))
    if not stat.S_ISREG(mode):
        raise UserError('%s is not a regular file (a device, pipe or socket); %s' % (path, fix))
    return path


def brief(value, limit=200):
    """A repr of `value` cut to about `limit` characters without building the
    whole repr first (a crafted cache can share one list many times over, so
    its full repr would be huge)."""
    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother = 3, 60, 60
    shortener.maxlist = shortener.maxtuple = shortener.maxdict = shortener.maxset = 6
    text = shortener.repr(value)
    return text if len(text) <= limit else text[:limit] + '...'


MAX_ID = 2 ** 63 - 1  # ids become int64 tensors


def is_id(value):
    """True for an int (not a bool) in 0..2**63-1: a question, image or chain id."""
    return type(value) is int and 0 <= value <= MAX_ID


def first_line(text, limit=300):
    """The first line of `text` (any object's str), cut to `limit` characters."""
    lines = str(text).splitlines()
    line = lines[0] if lines else ''
    return line if len(line) <= limit else line[:limit] + '...'


def run_cli(main, argv=None):
    """Run `main(argv)` as a command. A UserError, or an operating-system
    error on a file (a folder where a file is expected, no permission, a full
    or read-only disk), becomes one line `error: <message>` and exit status
    2; Ctrl-C or SIGTERM one line and exit status 130 (exit_when_interrupted).
    Either way the temporary files of `atomic_write` / `atomic_path` are
    removed on the way out, so no half-written output is left."""
    try:
        with exit_when_interrupted():
            return main(argv)
    except UserError as err:
        _exit_with_line('error: %s' % err, 2)
    except OSError as err:
        _exit_with_line('error: %s' % describe_os_error(err), 2)


def _exit_with_line(message, status):
    print(' '.join(message.splitlines()), file=sys.stderr)  # always one line
    sys.exit(status)


# ----------------------------------------------------------------- Ctrl-C and SIGTERM
# The one handler of both signals for the whole process. SIGTERM (`kill`, a
# scheduler's preemption) does what Ctrl-C does. Outside a graceful section
# either raises KeyboardInterrupt at once, so the `finally`/`except` clauses
# that remove temporary files run; inside one (training) the first only
# requests a stop, which the caller honours where its state is consistent.

INTERRUPTED_STATUS = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOPPED = 'stopped by Ctrl-C or SIGTERM; unfinished outputs were removed'


class SecondInterrupt(KeyboardInterrupt):
    """Ctrl-C a second time in a graceful section: stop at once, saving
    nothing (the step under way may be half applied)."""


class GracefulStop:
    """The stop request of a graceful section (see `graceful_stop`)."""
    REPEAT_AFTER_S = 1.0  # a second Ctrl-C sooner than this is the same keypress forwarded twice

    def __init__(self, announce, stopped_at_once):
        self.announce, self.stopped_at_once = announce, stopped_at_once
        self.requested = False
        self.requested_at = None

    def receive(self, signum):
        """The first signal sets `requested` and prints `announce`; a second
        SIGINT at least REPEAT_AFTER_S later raises SecondInterrupt (with the
        message `stopped_at_once`); other
        repeats are ignored: a launcher (torchrun, timeout) forwarding the
        signal that the scheduler also sent to the whole process group
        delivers it twice within milliseconds."""
        if not self.requested:
            self.requested, self.requested_at = True, time.monotonic()
            print('%s: %s' % (signal.Signals(signum).name, self.announce), file=sys.stderr, flush=True)
        elif signum == signal.SIGINT and time.monotonic() - self.requested_at >= self.REPEAT_AFTER_S:
            raise SecondInterrupt(self.stopped_at_once)

    def check(self):
        """KeyboardInterrupt when a stop was requested: call where stopping is safe."""
        if self.requested:
            raise KeyboardInterrupt


_graceful_sections = []  # the GracefulStop of each open graceful section, innermost last


def _on_stop_signal(signum, frame):
    if not _graceful_sections:
        raise KeyboardInterrupt
    _graceful_sections[-1].receive(signum)


@contextlib.contextmanager
def signals_handled():
    """Within (in the main thread; other threads receive no signals): SIGINT
    and SIGTERM go to this module's handler; the previous handlers come back
    on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _on_stop_signal) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def graceful_stop(announce, stopped_at_once):
    """A graceful section: yields a GracefulStop whose `check()` raises
    KeyboardInterrupt once Ctrl-C or SIGTERM came (printing `announce` when
    it comes); a second Ctrl-C raises SecondInterrupt(`stopped_at_once`) at
    once, wherever the process is."""
    stop = GracefulStop(announce, stopped_at_once)
    _graceful_sections.append(stop)
    try:
        with signals_handled():
            yield stop
    finally:
        _graceful_sections.remove(stop)


@contextlib.contextmanager
def exit_when_interrupted():
    """Within: signals_handled; a KeyboardInterrupt leaving the block becomes
    one line on stderr (its own message, else STOPPED) and exit status 130."""
    try:
        with signals_handled():
            yield
    except KeyboardInterrupt as err:
        _exit_with_line(str(err) or STOPPED, INTERRUPTED_STATUS)


def quiet_worker(worker_id):
    """worker_init_fn of DataLoaders: Ctrl-C and a scheduler's SIGTERM reach
    the whole process group, and only the main process acts on them (it
    finishes the step, saves, then shuts the workers down): a worker that
    died of them would make the main process fail with a traceback instead."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


_OS_ERROR_ADVICE = {
    errno.ENOSPC: 'no space left on device; free some space on that disk or write somewhere else',
    errno.EDQUOT: 'disk quota exceeded; free some space or write somewhere else',
    errno.EROFS: 'read-only file system; write somewhere writable',
    errno.EACCES: 'permission denied; fix its permissions or use another path',
    errno.EPERM: 'operation not permitted; fix its permissions or use another path',
    errno.EISDIR: 'is a folder, but a file is expected here',
    errno.ENOTDIR: 'a part of this path is a file, not a folder',
    errno.ENOENT: 'no such file or folder',
    errno.EEXIST: 'a file of that name exists where a folder is needed',
    errno.EFBIG: 'file too large for the file system or for the file-size limit (ulimit -f)',
    errno.EMFILE: 'too many open files; raise the limit (ulimit -n) or lower --workers',
    errno.ENFILE: 'too many open files on this system; lower --workers',
    errno.EIO: 'input/output error: the disk or network file system failed; check it and retry',
    errno.ENAMETOOLONG: 'file name too long',
    errno.ELOOP: 'too many levels of symbolic links',
    errno.ENXIO: 'no such device',
}


def describe_os_error(err):
    """`<path>: <what happened>; <what to do>` for an OSError, from its errno
    (h5py puts `errno = N` and `name = '...'` in its message instead). A
    temporary file of `atomic_write` is named by the file it stands for."""
    code, path, text = err.errno, err.filename, str(err)
    hdf5_code, hdf5_path = _hdf5_errno_and_name(text)
    code = hdf5_code if code is None else code
    path = hdf5_path if path is None else path
    advice = _OS_ERROR_ADVICE.get(code) or err.strerror or text or type(err).__name__
    if path is None:
        return advice
    where = target_of_temporary(os.fspath(path))
    if err.filename2 is not None:
        where += ' -> %s' % target_of_temporary(os.fspath(err.filename2))
    return '%s: %s' % (where, advice)


# ----------------------------------------------------------------- writing

def _make_temporary(path):
    """(fd, path) of a new temporary file beside `path`, after removing
    those that killed runs left for it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    name = os.path.basename(path)
    remove_stale_temporaries(directory, re.escape(name))
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=temporary_prefix(name), suffix='.tmp')
    os.chmod(tmp_path, _default_file_mode())
    return fd, tmp_path


def _name_the_target(err, path, tmp_path):
    """An OSError raised while writing the temporary file names `path`."""
    if isinstance(err, OSError) and err.filename in (None, tmp_path):
        err.filename, err.filename2 = path, None


# ----------------------------------------------------------------- temporary files
# Names of the temporary files that atomic_write writes beside their target,
# and the removal of those a killed run left behind.

HOST = re.sub(r'[^A-Za-z0-9-]', '-', socket.gethostname())[:40] or 'host'


def temporary_prefix(name):
    """Temporary files beside `name` are `.<name>.<host>.<pid>.<random>.tmp`:
    the host and process id tell a later run whether their writer is gone."""
    return '.%s.%s.%d.' % (name, HOST, os.getpid())


def target_of_temporary(path):
    """The file a temporary file of `atomic_write` stands for (other paths unchanged)."""
    found = re.fullmatch(r'\.(.+)\.[A-Za-z0-9-]+\.\d+\.[A-Za-z0-9_]+\.tmp', os.path.basename(path))
    return os.path.join(os.path.dirname(path), found.group(1)) if found else path


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, of another user
        return True
    return True


def remove_stale_temporaries(directory, targets, any_writer=False):
    """Delete the temporary files that killed runs (SIGKILL, a power cut: no
    cleanup ran) left in `directory` for the files whose names the regular
    expression `targets` matches. Only those whose writer was a process of
    this host that is gone: a live writer's file, or another host's, may be
    in use; with `any_writer` (the caller holds the folder's lock, so no
    one else writes there) every one. Returns how many were removed."""
    temporary = re.compile(r'\.(?:%s)\.(.+)\.tmp' % targets)
    writer = re.compile(re.escape(HOST) + r'\.(\d+)\.[A-Za-z0-9_]+')
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            found = temporary.fullmatch(entry)
            if not found:
                continue
            wrote = writer.fullmatch(found.group(1))
            if any_writer or (wrote and not process_alive(int(wrote.group(1)))):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(directory, entry))
                    removed += 1
    return removed


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Open a temporary file beside `path`; rename it over `path` only when
    the block finishes without an exception, so readers never see a
    half-written file. On any exception (a full disk, Ctrl-C, SIGTERM under
    `run_cli`) the temporary file is deleted."""
    fd, tmp_path = _make_temporary(path)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        _name_the_target(err, path, tmp_path)
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
        fd, self.tmp_path = _make_temporary(path)
        os.close(fd)

    def __enter__(self):
        return self.tmp_path

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                os.replace(self.tmp_path, self.path)
            except OSError as err:  # e.g. `path` is a folder
                self._discard(err)
                raise
            return False
        self._discard(exc)
        return False

    def _discard(self, err):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.tmp_path)
        _name_the_target(err, self.path, self.tmp_path)


def save_json(obj, path):
    text = json.dumps(obj)  # one string: much faster than json.dump's chunked writes
    with atomic_write(path, 'w') as handle:
        handle.write(text)


def torch_save_atomic(obj, path):
    with atomic_write(path, 'wb') as handle:
        try:
            torch.save(obj, handle)
        except RuntimeError as err:
            # torch's zip writer reports a failed write (a full disk) as "unexpected pos N vs M";
            # the OSError of that write, which names the cause, is the exception it was handling
            if isinstance(err.__context__, OSError):
                raise err.__context__ from None
            raise


def hdf5_os_error(err):
    """The OSError that an HDF5 error (h5py raises RuntimeError when closing a
    file whose last writes failed) reports as `errno = N` and `filename =
    '...'`, or None when its message names no errno."""
    code, path = _hdf5_errno_and_name(str(err))
    return None if code is None else OSError(code, os.strerror(code), path)


def _hdf5_errno_and_name(text):
    """(errno, file name) that an h5py error message states as `errno = N`
    and `name = '...'`; None for what it does not state."""
    code = re.search(r'errno = (\d+)', text)
    path = re.search(r"name = '([^']*)'", text)
    return int(code.group(1)) if code else None, path.group(1) if path else None


# ----------------------------------------------------------------- reading

def load_json(path, fix):
    """Load a JSON file; a missing or malformed file is a UserError."""
    require_file(path, fix)
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except OSError as err:  # no permission, an I/O error
        raise UserError('cannot read %s; %s' % (describe_os_error(err), fix)) from None
    try:
        return json.loads(data.decode('utf-8'))
    except UnicodeDecodeError as err:
        raise UserError('%s is not UTF-8 text (%s: %s); %s'
                        % (path, _byte_place(data, err.start), err.reason, fix)) from None
    except json.JSONDecodeError as err:
        raise UserError('%s is not valid JSON (line %d, column %d: %s); %s'
                        % (path, err.lineno, err.colno, err.msg, fix)) from None
    except RecursionError:
        raise UserError('%s nests JSON too deeply to be a data file; %s' % (path, fix)) from None


def _byte_place(data, offset):
    """'line l, byte b' of the byte at `offset` of `data` (both counted from 1)."""
    line_start = data.rfind(b'\n', 0, offset) + 1
    return 'line %d, byte %d' % (data.count(b'\n', 0, offset) + 1, offset - line_start + 1)


def utf8_lines(handle, path, fix):
    """Yield (line number, line) of a text file opened with encoding='utf-8'
    (read through its binary buffer, one line at a time, so that a byte that
    is not UTF-8 is a UserError naming its own line, not the first line of
    the chunk the text layer decodes)."""
    for line_no, raw in enumerate(handle.buffer, 1):
        try:
            line = raw.decode('utf-8')
        except UnicodeDecodeError as err:
            raise UserError('%s:%d: not UTF-8 text (byte %d: %s); %s'
                            % (path, line_no, err.start + 1, err.reason, fix)) from None
        if line.endswith('\r\n'):  # what the text layer's newline translation gave
            line = line[:-2] + '\n'
        yield line_no, line


MAX_PICKLE_BYTES = 2 ** 30  # the released caches are at most tens of MB

# Opcodes of pickles of plain data (protocols 0-5, Python 2 and 3). Left out:
# persistent ids, BUILD/OBJ/NEWOBJ (instances), the extension registry,
# bytes, bytearray and out-of-band buffers: no released cache holds them.
_PLAIN_OPCODES = frozenset(b'().012FGIJKLMNRSTUVX]acdeghijlpqrstu}'
                           b'\x80\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8f\x90\x91\x93\x94\x95')
_PLAIN_CLASSES = {'set': set, 'frozenset': frozenset}  # protocols 0-3 pickle a set as set([...])


class _OpcodeTable(dict):
    def __missing__(self, code):
        raise pickle.UnpicklingError('opcode %r, which no plain-data cache uses' % bytes([code]))


class _PlainUnpickler(pickle._Unpickler):
    """Admits what the released caches hold: dicts, lists, tuples, sets,
    strings, numbers, booleans and None; refuses every other global or
    opcode. The pure-Python unpickler is used on purpose: its memo is a dict,
    whereas the C unpickler's memo is an array that an 11-byte pickle can make
    it grow to gigabytes (`LONG_BINPUT 2**31`: 32 GiB)."""

    dispatch = _OpcodeTable({code: load for code, load in pickle._Unpickler.dispatch.items()
                             if code in _PLAIN_OPCODES})

    def find_class(self, module, name):
        # pickles of protocol 0-2 (and Python 2's) name builtins `__builtin__`
        if module in ('builtins', '__builtin__') and name in _PLAIN_CLASSES:
            return _PLAIN_CLASSES[name]
        raise pickle.UnpicklingError('refusing to load %s.%s' % (module, name))


def safe_pickle_load(path, fix='re-create it with the tools/ scripts'):
    """Load a legacy pickle (the original's caches) through a restricted
    unpickler; a pickle that names any class or function other than set,
    uses any other opcode, or is larger than MAX_PICKLE_BYTES is refused."""
    require_file(path, fix)
    with open(path, 'rb') as handle:
        if os.fstat(handle.fileno()).st_size > MAX_PICKLE_BYTES:
            raise UserError('%s: larger than %d MiB, which no cache of this code is; it is not a cache file; %s'
                            % (path, MAX_PICKLE_BYTES >> 20, fix))
        data = handle.read()
    collecting = gc.isenabled()
    gc.disable()  # the collector would walk the growing containers again and again
    try:
        return _PlainUnpickler(io.BytesIO(data), encoding='latin1').load()
    except pickle.UnpicklingError as err:
        raise UserError('%s: unsafe or unreadable pickle (%s); only plain containers, strings and '
                        'numbers are accepted; %s' % (path, err, fix)) from None
    except Exception as err:  # truncated or damaged: EOFError, ValueError, KeyError, OverflowError, MemoryError...
        raise UserError('%s: corrupt pickle (%s: %s); %s' % (path, type(err).__name__, first_line(err), fix)) from None
    finally:
        if collecting:
            gc.enable()


def refused_global(message):
    """The `module.name` a weights-only torch.load refused, from its message."""
    found = re.search(r'GLOBAL\s+([A-Za-z_][\w.]*)', message)
    return found.group(1) if found else None


def describe_torch_load_error(err):
    """Why torch.load(weights_only=True) failed, in one line, without
    torch's advice to load with weights_only=False (which runs any code
    the file carries)."""
    message = str(err)
    refused = refused_global(message)
    if refused:
        return ('it carries the Python global %s, which a weights-only load refuses (a checkpoint of this code '
                'holds only tensors and plain values: this file is another program\'s or was tampered with)'
                % refused)
    lines = [line for line in message.splitlines() if line.strip() and 'weights_only' not in line]
    return '%s: %s' % (type(err).__name__, first_line(lines[0] if lines else ''))


# ----------------------------------------------------------------- misc

def seed_everything(seed):
    import random
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def note(message):
    """Print `note: message` once per job (rank 0 only under torchrun)."""
    if os.environ.get('RANK', '0') == '0':
        print('note: ' + message, flush=True)
