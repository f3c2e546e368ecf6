"""The output folder of a training run (main.py --output): one run per folder.

`OutputFolder` holds an exclusive `flock` on `<output>/.lock` while a run
trains (the kernel drops it when the process ends, however it ends, so a
killed run leaves no stale lock), and refuses a fresh run in a folder holding
another run's checkpoints or logs unless it resumes from there (--input) or
replaces them (--overwrite). A run that stops before training (a user error)
leaves the folder as it found it: the lock file and the folders it created go.
"""
import fcntl
import os
import re

from runs.checkpoints import INTERRUPTED_CHECKPOINT, LAST_CHECKPOINT, RUN_CHECKPOINTS
from runs.runlog import JSON_LOG, TEXT_LOG
from utils import UserError, remove_stale_temporaries

LOCK_FILE = '.lock'
RUN_FILE = re.compile('(%s|%s|%s)$' % (RUN_CHECKPOINTS, re.escape(TEXT_LOG), re.escape(JSON_LOG)))
WRITTEN_ATOMICALLY = '%s|%s' % (RUN_CHECKPOINTS, re.escape(JSON_LOG))  # with temporaries of utils.atomic_write


def run_files(folder):
    """Names of the checkpoints and logs of a run in `folder`, sorted."""
    return sorted(name for name in os.listdir(folder) if RUN_FILE.match(name))


def _shown(names, limit=5):
    listed = ', '.join(names[:limit])
    return listed + (' and %d more' % (len(names) - limit) if len(names) > limit else '')


class OutputFolder:
    """Context manager claiming `path` for one training run.

    `resume_from` (the --input checkpoint) inside `path` continues the run
    there; `overwrite` lets a fresh run replace the files found, which
    `begin()` deletes once the run is ready to train."""

    def __init__(self, path, overwrite=False, resume_from=None):
        self.path = path
        self.lock_path = os.path.join(path, LOCK_FILE)
        self.overwrite = overwrite
        self.resume_from = resume_from
        self.replaced = []
        self._created = []
        self._fd = None

    def __enter__(self):
        self._make_folder()
        try:
            self._lock()
            self._check_previous_run()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc):
        self._release()
        return False

    def _make_folder(self):
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise UserError('--output %s is a file, not a folder; pass a folder for the checkpoints' % self.path)
        head = os.path.abspath(self.path)
        while not os.path.exists(head):
            self._created.append(head)  # deepest first
            head = os.path.dirname(head)
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as err:
            raise UserError('cannot create --output %s (%s); pass a writable folder'
                            % (self.path, err.strerror or err)) from None

    def _lock(self):
        """Take the lock; a lock file unlinked by a run that just ended is retried."""
        while self._fd is None:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as err:
                raise UserError('cannot write in --output %s (%s); pass a writable folder'
                                % (self.path, err.strerror or err)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode('ascii', 'replace').strip() or 'unknown'
                os.close(fd)
                raise UserError('%s is in use by another training (pid %s); wait for it to end, stop it, or pass '
                                'another --output' % (self.path, holder)) from None
            try:
                same_file = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same_file = False
            if not same_file:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode('ascii'))
            self._fd = fd

    def _resumes_here(self):
        if self.resume_from is None:
            return False
        return os.path.realpath(os.path.dirname(os.path.abspath(self.resume_from))) == os.path.realpath(self.path)

    def _check_previous_run(self):
        found = run_files(self.path)
        if not found:
            return
        if self._resumes_here():
            if self.overwrite:
                raise UserError('--overwrite would delete %s, the checkpoint to resume from; drop --overwrite to '
                                'continue that run, or pass another --output' % self.resume_from)
            return
        if self.overwrite:
            self.replaced = found
            return
        checkpoints = [name for name in (INTERRUPTED_CHECKPOINT, LAST_CHECKPOINT) if name in found]
        resume = (', --input %s to resume it' % os.path.join(self.path, max(
            checkpoints, key=lambda name: os.path.getmtime(os.path.join(self.path, name))))) if checkpoints else ''
        raise UserError('--output %s holds another run (%s); pass --overwrite to replace it%s, or another --output'
                        % (self.path, _shown(found), resume))

    def begin(self):
        """Just before the first step: delete the previous run's files (with
        --overwrite) and temporary files that a killed run left behind."""
        for name in self.replaced:
            os.remove(os.path.join(self.path, name))
        if self.replaced:
            print('--overwrite: removed the previous run in %s (%s)' % (self.path, _shown(self.replaced)))
        stale = remove_stale_temporaries(self.path, WRITTEN_ATOMICALLY, any_writer=True)  # the folder is locked
        if stale:
            print('removed %d temporary file(s) that a killed run left in %s' % (stale, self.path))

    def _release(self):
        if self._fd is not None:
            os.remove(self.lock_path)  # while still locked, so no one else holds this file
            os.close(self._fd)
            self._fd = None
        for folder in self._created:
            try:
                os.rmdir(folder)  # only while empty: a run that wrote something keeps its folder
            except OSError:
                break
        self._created = []


class NoFolder:
    """What the processes other than rank 0 of a torchrun job hold: they write no files."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def begin(self):
        pass
