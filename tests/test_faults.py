"""Bad input and faults outside the data files (docs/ROBUSTNESS.md, rows
35-67 and the sections on interruptions and safe loading): operating-system
errors on the user's paths, Ctrl-C and SIGTERM,
temporary files of killed runs, the limits of the restricted unpickler,
flags a run would ignore, and the GloVe look-up of tools/process_flickr.sh.
The data-file rows are the `@case` tables of tests/test_bad_*.py."""
import argparse
import errno
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest
import torch

import tiny_flickr
import utils
from data_helpers import FEATURE_DIM, GLOVE_DIM, prepared_root
from formats import vqa_metric
from formats.dictionary import Dictionary
from formats.vqa_files import load_targets
from runs import checkpoints, flags, runtime
from utils import UserError

REPO = Path(__file__).resolve().parents[1]
EVAL_FLAGS = ['--num_hid', '8', '--gamma', '1', '--op', '', '--workers', '0', '--device', 'cpu']
TRAIN_FLAGS = EVAL_FLAGS + ['--emb_dim', str(GLOVE_DIM), '--batch_size', '2', '--epochs', '1']


@pytest.fixture(scope='module')
def trained_root(tmp_path_factory):
    """A prepared VQA data root with a 1-epoch model in <root>/model."""
    import main
    root = prepared_root(tmp_path_factory.mktemp('bad_input') / 'data')
    main.main(['--dataroot', root, '--output', os.path.join(root, 'model')] + TRAIN_FLAGS)
    return root


def temporary_files(folder):
    return sorted(str(path) for path in Path(folder).rglob('*.tmp'))


def contents(folder):
    """{relative path: bytes} of every file under `folder`."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in Path(folder).rglob('*') if path.is_file()}


def cli_status(capsys, main, argv=None):
    """(exit status, stderr) of `utils.run_cli(main, argv)`."""
    with pytest.raises(SystemExit) as stopped:
        utils.run_cli(main, argv)
    return stopped.value.code, capsys.readouterr().err


# ----------------------------------------------------------------- operating-system errors

@pytest.mark.parametrize('error, expected', [
    (OSError(errno.ENOSPC, 'No space left on device', '/out/model_last.pth'),
     'error: /out/model_last.pth: no space left on device; free some space on that disk or write somewhere else\n'),
    (PermissionError(errno.EACCES, 'Permission denied', '/data/train.hdf5'),
     'error: /data/train.hdf5: permission denied; fix its permissions or use another path\n'),
    (OSError(errno.EROFS, 'Read-only file system', '/ro/results'),
     'error: /ro/results: read-only file system; write somewhere writable\n'),
    (IsADirectoryError(errno.EISDIR, 'Is a directory', '/data/dictionary.pkl'),
     'error: /data/dictionary.pkl: is a folder, but a file is expected here\n'),
    # h5py reports errno and file in its message; the temporary file is named by its target
    (OSError("Unable to synchronously create file (unable to open file: name = '/d/.val.hdf5.h.1.x_y.tmp', "
             "errno = 28, error message = 'No space left on device')"),
     'error: /d/val.hdf5: no space left on device; free some space on that disk or write somewhere else\n'),
], ids=['enospc', 'eacces', 'erofs', 'eisdir', 'h5py'])
def test_operating_system_errors_are_one_line_naming_the_path(capsys, error, expected):
    def fails(argv):
        raise error
    assert cli_status(capsys, fails) == (2, expected)


def test_a_full_disk_mid_write_names_the_target_and_leaves_no_temporary_file(tmp_path, capsys):
    target = tmp_path / 'results.json'
    target.write_text('[]')

    def write_then_fill_the_disk(argv):
        with utils.atomic_write(str(target), 'w') as handle:
            handle.write('[{"question_id": 1')
            raise OSError(errno.ENOSPC, 'No space left on device')
    status, err = cli_status(capsys, write_then_fill_the_disk)
    assert (status, err) == (2, 'error: %s: no space left on device; free some space on that disk or write '
                                'somewhere else\n' % target)
    assert target.read_text() == '[]' and temporary_files(tmp_path) == []


def test_writing_over_a_folder_removes_the_temporary_file(tmp_path):
    (tmp_path / 'val.hdf5').mkdir()
    with pytest.raises(IsADirectoryError) as raised:
        with utils.atomic_path(str(tmp_path / 'val.hdf5')) as temporary:
            Path(temporary).write_bytes(b'hdf5')
    assert raised.value.filename == str(tmp_path / 'val.hdf5') and temporary_files(tmp_path) == []


def run_in_a_small_tmpfs(mount_point, script, size, mount_options=''):
    """Run bash `script` in a new user and mount namespace where $SMALL, the
    empty folder `mount_point`, is a tmpfs of `size` (a real full or
    read-only disk, no root needed). The tmpfs goes with the namespace; the
    folder stays empty."""
    if shutil.which('unshare') is None or subprocess.run(['unshare', '-Urm', 'true'],
                                                         capture_output=True).returncode != 0:
        pytest.skip('no user namespaces (unshare -Urm) to mount a small tmpfs')
    wrapper = ('set -e; export SMALL=%s; mount -t tmpfs -o size=%s%s tmpfs "$SMALL"; %s'
               % (shlex.quote(str(mount_point)), size, mount_options, script))
    finished = subprocess.run(['unshare', '-Urm', 'bash', '-c', wrapper], cwd=str(REPO), capture_output=True,
                              text=True, timeout=300)
    assert os.listdir(str(mount_point)) == []
    return finished


def test_a_really_full_disk_under_training_and_a_read_only_results_folder(trained_root, tmp_path):
    main_run = run_in_a_small_tmpfs(
        tmp_path,
        '%s main.py --dataroot %s --output "$SMALL/run" %s || echo "status $?"; ls -a "$SMALL/run"'
        % (sys.executable, trained_root, ' '.join("'%s'" % flag for flag in TRAIN_FLAGS)), '24k')
    assert 'Traceback' not in main_run.stderr and 'status 2' in main_run.stdout, main_run.stderr
    assert main_run.stderr.count('\n') == 1 and main_run.stderr.startswith('error: ')
    assert '/run/model_epoch0.pth: no space left on device' in main_run.stderr
    assert '.tmp' not in main_run.stdout  # the listing of the output folder
    test_run = run_in_a_small_tmpfs(
        tmp_path,
        '%s test.py --dataroot %s --input %s/model --epoch 0 --output "$SMALL" %s || echo "status $?"; ls -a "$SMALL"'
        % (sys.executable, trained_root, trained_root, ' '.join("'%s'" % flag for flag in EVAL_FLAGS)), '16k', ',ro')
    assert 'status 2' in test_run.stdout and test_run.stderr.count('\n') == 1, test_run.stderr
    assert test_run.stderr.startswith('error: ') and ': read-only file system; write somewhere writable' in \
        test_run.stderr


# ----------------------------------------------------------------- Ctrl-C and SIGTERM

SIGNAL_DRIVER = textwrap.dedent('''
    import os, runpy, signal, sys
    sys.path[:0] = [{repo!r}, {tools!r}]
    module = __import__({module!r})
    owner = {owner!r}
    target = getattr(module, owner) if owner else module
    original = getattr(target, {name!r})

    def stop_here(*args, **kwargs):
        os.kill(os.getpid(), getattr(signal, {signal!r}))
        return original(*args, **kwargs)
    setattr(target, {name!r}, stop_here)
    sys.argv = [{script!r}] + {argv!r}
    import utils
    utils.run_cli(module.main)
''')


def run_until_signal(script, module, owner, name, signal_name, argv):
    """Run `script` in a real process in which calling `module.owner.name`
    first sends the process `signal_name`."""
    code = SIGNAL_DRIVER.format(repo=str(REPO), tools=str(REPO / 'tools'), module=module, owner=owner, name=name,
                                signal=signal_name, script=script, argv=argv)
    return subprocess.run([sys.executable, '-c', code], cwd=str(REPO), capture_output=True, text=True, timeout=300)


def dead_pid():
    finished = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True,
                              text=True)
    return int(finished.stdout)


@pytest.mark.parametrize('signal_name', ['SIGTERM', 'SIGINT'])
def test_conversion_stopped_by_a_signal_leaves_nothing_and_its_temporary_goes_next_time(trained_root, tmp_path,
                                                                                        signal_name):
    root = shutil.copytree(trained_root, str(tmp_path / 'data'))
    before = contents(root)
    stopped = run_until_signal('tools/adaptive_detection_features_converter.py',
                               'adaptive_detection_features_converter', '_SplitWriter', 'flush', signal_name,
                               ['--dataroot', root, '--split', 'val', '--feature_dim', str(FEATURE_DIM)])
    assert stopped.returncode == 130 and 'Traceback' not in stopped.stderr, stopped.stderr
    assert stopped.stderr == 'stopped by Ctrl-C or SIGTERM; unfinished outputs were removed\n'
    assert contents(root) == before and temporary_files(root) == []
    # a run killed with SIGKILL cleans up nothing: the next writer of the same file does
    stale = os.path.join(root, '.val.hdf5.%s.%d.abc_12.tmp' % (utils.HOST, dead_pid()))
    alive = os.path.join(root, '.val.hdf5.%s.%d.abc_12.tmp' % (utils.HOST, os.getpid()))
    for path in (stale, alive):
        Path(path).write_bytes(b'half an HDF5 file')
    from tools import adaptive_detection_features_converter as converter
    converter.main(['--dataroot', root, '--split', 'val', '--feature_dim', str(FEATURE_DIM)])
    assert temporary_files(root) == [alive]  # a live writer's file is left alone


def test_test_py_stopped_by_ctrl_c_exits_130_without_output(trained_root, tmp_path):
    stopped = run_until_signal('test.py', 'test', '', 'predict_logits', 'SIGINT',
                               ['--dataroot', trained_root, '--input', os.path.join(trained_root, 'model'),
                                '--epoch', '0', '--output', str(tmp_path)] + EVAL_FLAGS)
    assert stopped.returncode == 130 and stopped.stderr == ('stopped by Ctrl-C or SIGTERM; unfinished outputs '
                                                            'were removed\n'), stopped.stderr
    assert os.listdir(str(tmp_path)) == []


def test_sigterm_handler_is_restored_after_a_command(capsys):
    previous = signal.getsignal(signal.SIGTERM)

    def terminated(argv):
        signal.raise_signal(signal.SIGTERM)
    assert cli_status(capsys, terminated)[0] == 130 and signal.getsignal(signal.SIGTERM) is previous


def test_stale_temporaries_of_other_files_and_hosts_are_kept(tmp_path):
    pid = dead_pid()
    names = ['.model.pth.%s.%d.a1.tmp' % (utils.HOST, pid),        # this file, dead writer: removed
             '.model.pth.other-host.%d.a1.tmp' % pid,                # another host's writer: unknown, kept
             '.model_last.pth.%s.%d.a1.tmp' % (utils.HOST, pid)]    # another file: kept
    for name in names:
        (tmp_path / name).write_bytes(b'x')
    utils.torch_save_atomic({'epoch': 1}, str(tmp_path / 'model.pth'))
    assert sorted(os.listdir(str(tmp_path))) == sorted(names[1:] + ['model.pth'])


# ----------------------------------------------------------------- the restricted unpickler

def write_bytes(path, data):
    path.write_bytes(data)
    return str(path)


def test_a_huge_memo_index_allocates_nothing(tmp_path):
    """The C unpickler grows its memo array to 2 x the index: LONG_BINPUT
    2**24 made it allocate 256 MiB (2**31: 32 GiB) for an 11-byte file."""
    path = write_bytes(tmp_path / 'dictionary.pkl', b'\x80\x02]r\x00\x00\x00\x01.')
    tracemalloc.start()
    try:
        assert utils.safe_pickle_load(path) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2 ** 20


@pytest.mark.parametrize('data, refused', [
    (b'\x80\x02c__builtin__\nbytearray\n\x8a\x05\x00\x00\x00\xc0\x00\x85R.', 'refusing to load __builtin__.bytearray'),
    (b'\x80\x02cbuiltins\nbytes\nJ\x00\x00\x00@\x85R.', 'refusing to load builtins.bytes'),
    (b'\x80\x02cbuiltins\nstr\n]\x85R.', 'refusing to load builtins.str'),  # str() of a shared deep list explodes
    (b'\x80\x05\x96\x00\x00\x00@\x00\x00\x00\x00.', "opcode b'\\\\x96'"),  # BYTEARRAY8 of 1 GiB
    (b'\x80\x02}b.', "opcode b'b'"),                                       # BUILD: __setstate__ of an instance
], ids=['bytearray', 'bytes', 'str', 'bytearray8', 'build'])
def test_only_what_the_released_caches_hold_is_admitted(tmp_path, data, refused):
    with pytest.raises(UserError, match='cache.pkl: unsafe or unreadable pickle .*%s' % refused):
        utils.safe_pickle_load(write_bytes(tmp_path / 'cache.pkl', data))


def test_released_cache_contents_still_load(tmp_path):
    content = [{'question_id': 1, 'image_id': 2, 'labels': [0, 3], 'scores': [0.3, 1.0]}, {'a': (1, None, True)},
               {5, 6}, frozenset({7}), 'caf\xe9', 2 ** 70, -1.5]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert utils.safe_pickle_load(write_bytes(tmp_path / 'c.pkl', pickle.dumps(content, protocol))) == content
    python2_str = b'\x80\x02]q\x00U\x03dogq\x01a.'  # a Python 2 str (SHORT_BINSTRING): read as latin-1 text
    assert utils.safe_pickle_load(write_bytes(tmp_path / 'p2.pkl', python2_str)) == ['dog']


def test_a_pickle_larger_than_any_cache_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(utils, 'MAX_PICKLE_BYTES', 64)
    with pytest.raises(UserError, match='big.pkl: larger than 0 MiB, which no cache of this code is'):
        utils.safe_pickle_load(write_bytes(tmp_path / 'big.pkl', pickle.dumps(list(range(100)))))


def test_a_refused_checkpoint_names_its_global_and_never_advises_weights_only_false(tmp_path):
    path = tmp_path / 'model.pth'
    torch.save({'model_state': {'w': torch.zeros(1)}, 'epoch': argparse.Namespace(a=1)}, str(path))
    with pytest.raises(UserError) as refused:
        checkpoints.load_checkpoint(str(path))
    assert 'refused: it carries the Python global argparse.Namespace' in str(refused.value)
    assert 'weights_only' not in str(refused.value)


# ----------------------------------------------------------------- caches with impossible contents

def dictionary_file(tmp_path, word2idx, idx2word):
    return write_bytes(tmp_path / 'dictionary.pkl', pickle.dumps([word2idx, idx2word], protocol=2))


@pytest.mark.parametrize('word2idx, idx2word, message', [
    ({'a': 0, 'b': 0}, ['a', 'b'], "the words 'a' and 'b' share index 0"),
    ({'a': 1, 'b': 0}, ['a', 'b'], "idx2word\\[0\\] is 'a' but word2idx gives it 1"),
    ({'a': 0, 'b': 1}, ['a', 2], 'idx2word holds 2, not a word'),
    ({'a': '0'}, ['a'], "word2idx maps 'a' to '0'"),
], ids=['shared index', 'swapped', 'non-word', 'string index'])
def test_dictionary_halves_must_be_inverse_maps(tmp_path, word2idx, idx2word, message):
    with pytest.raises(UserError, match='dictionary.pkl: %s' % message):
        Dictionary.load_from_file(dictionary_file(tmp_path, word2idx, idx2word))


@pytest.mark.parametrize('target, message', [
    ({'labels': [0], 'scores': [float('nan')]}, r'scores \[nan\]; soft scores lie in \[0, 1\]'),
    ({'labels': [0], 'scores': [-0.3]}, r'scores \[-0.3\]'),
    ({'labels': [1, 1], 'scores': [0.3, 0.3]}, r'labels \[1, 1\], not distinct labels'),
    ({'labels': [True], 'scores': [1.0]}, r'labels \[True\]'),
    ({'labels': [0], 'scores': []}, r'target \[0\] is'),
], ids=['nan', 'negative', 'repeated label', 'bool label', 'lengths'])
def test_targets_must_be_soft_scores_of_distinct_labels(tmp_path, target, message):
    (tmp_path / 'cache').mkdir()
    item = dict(target, question_id=7, image_id=1)
    write_bytes(tmp_path / 'cache' / 'train_target.pkl', pickle.dumps([item], protocol=2))
    with pytest.raises(UserError, match='train_target.pkl: .*' + message):
        load_targets(str(tmp_path), 'train', {'yes': 0, 'no': 1})


def test_a_bad_byte_is_named_on_its_own_line(tmp_path):
    """The text layer decodes 8 kB at a time: the error came at line 1 and
    was reported 'after line 0' for a bad byte on line 400."""
    lines = [('word%d ' % n) + ' '.join(['0.5'] * 5) for n in range(1, 600)]
    lines[399] = 'w\xe9rd 0.5 0.5 0.5 0.5 0.5'
    path = tmp_path / 'glove.txt'
    path.write_bytes('\n'.join(lines).encode('latin-1'))
    from formats.glove import create_glove_embedding_init
    with pytest.raises(UserError, match=r'glove.txt:400: not UTF-8 text \(byte 2: invalid continuation byte\)'):
        create_glove_embedding_init(['word1'], str(path))


# ----------------------------------------------------------------- flags and environment

def test_more_workers_than_cpus_are_capped_with_a_note(capsys):
    cpus = flags.available_cpus()
    assert flags.worker_count('5000') == cpus and flags.worker_count(str(cpus)) == cpus
    assert capsys.readouterr().out == 'note: --workers 5000 capped to %d, the CPUs available\n' % cpus


@pytest.mark.parametrize('environment, message', [
    ({'WORLD_SIZE': '2'}, 'WORLD_SIZE=2 is set but RANK is not'),
    ({'WORLD_SIZE': 'two'}, "WORLD_SIZE='two' is not an integer >= 1"),
    ({'WORLD_SIZE': '2', 'RANK': '2'}, "RANK='2' is not an integer from 0 to 1"),
], ids=['no rank', 'not a number', 'rank too large'])
def test_torchrun_environment_is_checked(monkeypatch, environment, message):
    for name in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK'):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=message):
        runtime.init_distributed('cpu')


# ----------------------------------------------------------------- tools/process_flickr.sh finds GloVe

def run_process_flickr(flickr, cwd, **env):
    environment = dict(os.environ, PYTHON=sys.executable, **env)
    environment.pop('GLOVE', None)
    environment.update(env)
    return subprocess.run(['bash', str(REPO / 'tools' / 'process_flickr.sh'), flickr], cwd=str(cwd),
                          env=environment, capture_output=True, text=True, timeout=300)


def test_process_flickr_finds_glove_beside_the_data_root_and_takes_the_glove_override(tmp_path):
    flickr = tiny_flickr.write_raw(tmp_path / 'data')
    glove = tmp_path / 'data' / 'glove' / 'glove.6B.300d.txt'  # where tools/download_flickr.sh puts it
    (tmp_path / 'data' / 'glove' / ('glove.6B.%dd.txt' % tiny_flickr.GLOVE_DIM)).rename(glove)
    elsewhere = tmp_path / 'elsewhere'  # not the repository: no data/glove relative to the working folder
    elsewhere.mkdir()
    found = run_process_flickr(flickr, elsewhere, FEATURE_DIM=str(tiny_flickr.FEATURE_DIM))
    assert found.returncode == 0, found.stderr
    assert (Path(flickr) / ('glove6b_init_%dd.npy' % tiny_flickr.GLOVE_DIM)).exists()
    moved = tmp_path / 'vectors.txt'
    glove.rename(moved)
    missing = run_process_flickr(flickr, elsewhere)
    assert missing.returncode == 2 and missing.stderr.count('\n') == 1
    assert 'error: no GloVe file: neither %s/glove/glove.6B.300d.txt nor %s exists' % (flickr, glove) in missing.stderr
    os.remove(os.path.join(flickr, 'dictionary.pkl'))
    overridden = run_process_flickr(flickr, elsewhere, GLOVE=str(moved), FEATURE_DIM=str(tiny_flickr.FEATURE_DIM))
    assert overridden.returncode == 0, overridden.stderr
    assert (Path(flickr) / 'dictionary.pkl').exists()


def test_a_path_with_a_nul_byte_is_named_not_a_traceback():
    """os.stat raises ValueError for a NUL byte (hypothesis found it through
    the metric's results path); every reader goes through require_file."""
    with pytest.raises(utils.UserError, match=r"^'a\\x00b' is not a file name \(it holds a NUL byte\); run step X$"):
        utils.require_file('a\x00b', 'run step X')
    with pytest.raises(utils.UserError, match=r'holds a NUL byte\); write it with test.py'):
        vqa_metric.evaluate_results('\x00', {'questions': []}, None)
