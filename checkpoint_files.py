"""Which checkpoint file `--input` (and `--epoch`) name, the same in every CLI.

`--input` is a checkpoint file, or a folder main.py wrote (`--output`):
  * test.py, evaluate.py, ask.py, visualize.py, main.py --evaluate: in a
    folder, `--epoch N` picks model_epoch<N>.pth (0 or less: model.pth, the
    original's name for a hand-picked model; 0 falls back to
    model_epoch0.pth). Without --epoch: the highest N there. Training with a
    validation split keeps an epoch only when it beats the ones before, so
    that is the best epoch; training on train+val keeps every epoch from 3,
    so it is the last, as the released model_epoch12.pth. A folder with no
    model_epoch<N>.pth falls back to model.pth, then model_last.pth.
  * main.py (resume): in a folder, the newer of model_interrupted.pth and
    model_last.pth, else the checkpoint the rule above picks.
A missing file is an error listing the checkpoints the folder holds.
"""
import os
import re

import model_config
from checkpoints import checkpoint_path as epoch_file
from utils import UserError, note

EPOCH_FILE = re.compile(r'model_epoch(\d+)\.pth$')
ORIGINAL_NAME = 'model.pth'
LAST = 'model_last.pth'
INTERRUPTED = 'model_interrupted.pth'


def saved_epochs(folder):
    """Sorted N of the model_epoch<N>.pth files in `folder`."""
    return sorted(int(match.group(1)) for match in map(EPOCH_FILE.match, os.listdir(folder)) if match)


def epoch_of(path):
    """N of a model_epoch<N>.pth path, else None."""
    match = EPOCH_FILE.match(os.path.basename(path))
    return int(match.group(1)) if match else None


def describe(folder):
    """What checkpoints `folder` holds, for error messages."""
    epochs = saved_epochs(folder)
    others = [name for name in (ORIGINAL_NAME, LAST, INTERRUPTED) if os.path.isfile(os.path.join(folder, name))]
    parts = (['epochs %s (model_epoch<N>.pth)' % ', '.join(map(str, epochs))] if epochs else []) + others
    return ' and '.join([', '.join(parts[:-1]), parts[-1]]) if len(parts) > 1 else (parts[0] if parts else '')


def _missing(folder, wanted=None):
    """The error for a checkpoint `wanted` (None: any finished one) that `folder` lacks."""
    held = describe(folder)
    if not held:
        return UserError('%s holds no checkpoint (model_epoch<N>.pth, %s, %s): train one with main.py --output %s, '
                         'or download the released model (README)' % (folder, ORIGINAL_NAME, LAST, folder))
    if wanted is None:
        return UserError('%s holds no model_epoch<N>.pth, %s or %s, only %s: pass that file as --input'
                         % (folder, ORIGINAL_NAME, LAST, held))
    return UserError('%s does not exist; %s holds %s: pass one of those epochs with --epoch, or omit --epoch for the '
                     'highest' % (wanted, folder, held))


def _check_input(path):
    if not os.path.exists(path):
        raise UserError('--input %s does not exist; pass a checkpoint file or the folder a training run saved into '
                        '(main.py --output), or download the released model (README)' % path)


def choose(path, epoch=None):
    """(checkpoint file, its epoch N or None) for `--input path --epoch epoch`
    (the rule in this module's docstring); `note` lines say what was picked
    when --epoch was not given."""
    _check_input(path)
    if os.path.isfile(path):
        if epoch is not None:
            raise UserError('--input %s is a file, and --epoch picks a file in a folder: drop --epoch, or pass the '
                            'folder as --input' % path)
        return path, epoch_of(path)
    if epoch is not None:
        return _chosen_epoch(path, epoch)
    epochs = saved_epochs(path)
    if epochs:
        chosen = epoch_file(path, epochs[-1])
        note('using %s, the highest epoch in %s (--epoch picks another)' % (chosen, path))
        return chosen, epochs[-1]
    for name in (ORIGINAL_NAME, LAST):
        if os.path.isfile(os.path.join(path, name)):
            note('%s has no model_epoch<N>.pth; using %s' % (path, name))
            return os.path.join(path, name), None
    raise _missing(path)


def _chosen_epoch(folder, epoch):
    original, numbered = os.path.join(folder, ORIGINAL_NAME), epoch_file(folder, epoch)
    if epoch < 0 or (epoch == 0 and os.path.isfile(original)):
        if not os.path.isfile(original):
            raise _missing(folder, original)
        return original, None
    if not os.path.isfile(numbered):
        raise _missing(folder, numbered)
    return numbered, epoch


def resume_file(path):
    """The checkpoint main.py --input resumes from: a file as it is; in a
    folder the newer of model_interrupted.pth and model_last.pth, else the
    highest model_epoch<N>.pth (or model.pth)."""
    _check_input(path)
    if os.path.isfile(path):
        return path
    states = [os.path.join(path, name) for name in (INTERRUPTED, LAST) if os.path.isfile(os.path.join(path, name))]
    if states:
        newest = max(states, key=os.path.getmtime)
        note('resuming from %s, the newest of %s in %s' % (newest, ' and '.join(os.path.basename(s) for s in
                                                                                        states), path))
        return newest
    return choose(path)[0]


def settle(args):
    """Resolve `args.input`/`args.epoch` to `args.checkpoint` (a file) and
    `args.epoch` (its N, or -1 when the file has none), and take the model
    flags from the config saved in it (model_config.adopt)."""
    args.checkpoint, epoch = choose(args.input, args.epoch)
    args.epoch = -1 if epoch is None else epoch
    model_config.adopt_from_file(args, args.checkpoint)
    return args


def add_epoch_flag(parser):
    parser.add_argument('--epoch', type=int, default=None,
                        help='in an --input folder: model_epoch<N>.pth (default: the highest N, i.e. the best epoch '
                             'of a run with validation, the last of a --use_both run); 0 or less: model.pth')
