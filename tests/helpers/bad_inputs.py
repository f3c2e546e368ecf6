"""The `@case` table of the bad-input suites (tests/test_bad_*.py, one file
per reader; docs/ROBUSTNESS.md lists the rows).

A case is a builder registered with `@case(fragments...)`: it corrupts a
private copy of a prepared data root and returns the command to run (or
`(command, options)`). The expected error must name every fragment (file,
key and fix). `ARGPARSE_CASES` holds argparse's own errors:
`{name: (command, last line of stderr)}`.

All registered commands run as `__main__` (`runpy`) in ONE child process, so
that torch is imported once for the whole table: the session fixture
`cli_results` (tests/conftest.py) calls `run_cases` with every case the
collected test files registered.
"""
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py

import tiny_flickr
import utils
from data_helpers import EVAL_FLAGS, TRAIN_FLAGS
from robust_helpers import read_json, snapshot

REPO = Path(__file__).resolve().parents[2]
FLICKR_FLAGS = ['--task', 'flickr', '--emb_dim', str(tiny_flickr.GLOVE_DIM), '--num_hid', '8', '--batch_size', '4',
                '--workers', '0', '--device', 'cpu', '--epochs', '1']

# Runs [(script, argv, options), ...] given as JSON in argv[1], as `python3 script argv...` would, and
# writes [{returncode, stdout, stderr}] to argv[2]. An uncaught exception prints its traceback (code 1).
# options: "env" (variables set for that job only), "file_size_limit" (bytes a file may grow to, as
# `ulimit -f`: a write beyond fails with EFBIG, a real failing write through every layer).
BATCH_RUNNER = r'''
import contextlib, io, json, os, resource, runpy, signal, sys, traceback

@contextlib.contextmanager
def job_options(options):
    saved_env = {name: os.environ.get(name) for name in options.get('env', {})}
    os.environ.update(options.get('env', {}))
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    if 'file_size_limit' in options:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (options['file_size_limit'], limits[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

jobs_path, results_path = sys.argv[1:3]
jobs = json.load(open(jobs_path))
results = []
for script, argv, options in jobs:
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [script] + argv
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), job_options(options):
        try:
            runpy.run_path(script, run_name='__main__')
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append({'returncode': code, 'stdout': out.getvalue(), 'stderr': err.getvalue()})
json.dump(results, open(results_path, 'w'))
'''

CASES = {}  # name -> (builder, fragments, data root kind 'vqa' or 'flickr', module that registered it)
ARGPARSE_CASES = {}  # name -> (command, the last line argparse prints)


def case(*fragments, data='vqa'):
    """Register the decorated builder as the case of its name."""
    def register(build):
        assert build.__name__ not in CASES, 'two bad-input cases named %s' % build.__name__
        CASES[build.__name__] = (build, fragments, data, build.__module__)
        return build
    return register


def argparse_cases(cases):
    """Register {name: (command, last stderr line)} as argparse cases; returns their sorted names."""
    assert not set(cases) & set(ARGPARSE_CASES), 'argparse cases registered twice: %s' % sorted(cases)
    ARGPARSE_CASES.update(cases)
    return sorted(cases)


def cases_of(module):
    """Sorted names of the cases registered by `module` (a test file's __name__)."""
    return sorted(name for name, (_, _, _, owner) in CASES.items() if owner == module)


def write_json(path, data):
    with open(path, 'w') as handle:
        json.dump(data, handle)


def edit_json(path, edit):
    data = read_json(path)
    edit(data)
    write_json(path, data)


def edit_text(path, edit):
    """Replace a text file's content by `edit(content)`."""
    with open(path) as handle:
        text = handle.read()
    with open(path, 'w') as handle:
        handle.write(edit(text))


def rewrite_pickle(path, edit):
    """Replace a cache pickle's content by `edit(content)` (edited in place when it returns None)."""
    data = utils.safe_pickle_load(path)
    edited = edit(data)
    with open(path, 'wb') as handle:
        pickle.dump(data if edited is None else edited, handle, protocol=2)


def rewrite_hdf5_dataset(path, name, values):
    with h5py.File(path, 'a') as h5:
        del h5[name]
        h5[name] = values


def val_questions(root):
    return os.path.join(root, 'v2_OpenEnded_mscoco_val2014_questions.json')


def val_annotations(root):
    return os.path.join(root, 'v2_mscoco_val2014_annotations.json')


def main_cmd(root):
    return ['main.py', '--dataroot', root, '--output', os.path.join(root, 'out'), '--epochs', '1'] + TRAIN_FLAGS


def evaluate_cmd(root, checkpoint_folder, *extra):
    return ['evaluate.py', '--dataroot', root, '--input', checkpoint_folder, '--epoch', '0'] + EVAL_FLAGS + list(extra)


def flickr_main_cmd(root):
    return ['main.py', '--dataroot', root, '--output', os.path.join(root, 'out')] + FLICKR_FLAGS


def run_batch(jobs, folder):
    jobs_path, results_path = os.path.join(folder, 'jobs.json'), os.path.join(folder, 'results.json')
    write_json(jobs_path, jobs)
    completed = subprocess.run([sys.executable, '-c', BATCH_RUNNER, jobs_path, results_path], cwd=str(REPO),
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    return read_json(results_path)


def run_cases(vqa_root, flickr_root, base):
    """{case: (result, its data root, snapshot of that root before the command)} of every registered
    case, run in one batch under the folder `base` (root and snapshot are None for ARGPARSE_CASES)."""
    jobs, names, prepared = [], [], {}
    for name, (build, _, data, _) in CASES.items():
        root = shutil.copytree(vqa_root if data == 'vqa' else flickr_root, str(Path(base) / name), symlinks=True)
        command = build(root)
        command, options = command if isinstance(command, tuple) else (command, {})
        prepared[name] = (root, snapshot(root))
        jobs.append((command[0], command[1:], options))
        names.append(name)
    for name, (command, _) in ARGPARSE_CASES.items():
        jobs.append((command[0], command[1:], {}))
        names.append(name)
    results = run_batch(jobs, str(base))
    return {name: (result,) + prepared.get(name, (None, None)) for name, result in zip(names, results)}


def check_one_line_error(cli_results, name):
    """The case `name` failed with one `error: ...` line naming its fragments, exit status 2, and left
    its data root as it was (nothing written, nothing half-written, no temporary file)."""
    result, root, before = cli_results[name]
    assert 'Traceback' not in result['stderr'], result['stderr']
    assert result['returncode'] == 2, result
    assert result['stderr'].startswith('error: ') and result['stderr'].count('\n') == 1, result['stderr']
    for fragment in CASES[name][1]:
        assert fragment in result['stderr'], (fragment, result['stderr'])
    assert snapshot(root) == before  # nothing written, nothing half-written, no temporary file left
    assert not os.path.exists(os.path.join(root, 'PWNED'))
    assert 'weights_only' not in result['stderr']  # never the advice to load code-carrying files


def check_argparse_error(cli_results, name):
    """argparse's usage, then its one `<prog>: error: argument --flag: ...` line, exit status 2."""
    result = cli_results[name][0]
    assert result['returncode'] == 2 and 'Traceback' not in result['stderr']
    lines = result['stderr'].splitlines()
    assert lines[0].startswith('usage: ') and lines[-1] == ARGPARSE_CASES[name][1]
