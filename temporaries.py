"""Names of the temporary files that utils.atomic_write writes beside their
target, and the removal of those a killed run left behind."""
import contextlib
import os
import re
import socket

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


def remove_stale_temporaries(directory, name):
    """Delete the temporary files of `name` that a run killed on this host
    left in `directory` (SIGKILL, a power cut: no cleanup ran); those of a
    live process are kept. Returns how many were removed."""
    stale = re.compile(re.escape('.%s.%s.' % (name, HOST)) + r'(\d+)\.[A-Za-z0-9_]+\.tmp')
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            found = stale.fullmatch(entry)
            if found and not process_alive(int(found.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(directory, entry))
                    removed += 1
    return removed
