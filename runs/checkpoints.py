"""Checkpoints: their file names, which file `--input` and `--epoch` name,
the model settings and main.py's run settings saved in them (and taken by
a resume), loading released and saved checkpoints (weights_only), saving
ours atomically, and the resume fields and checks (epoch, optimizer state,
the tf-idf table's trainability).

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
import math
import os
import re
import zipfile

import torch

import base_model
from utils import (
    UserError,
    describe_torch_load_error,
    note,
    refused_global,
    require_file,
    torch_save_atomic,
)

EMPTY_SUMS = {'loss': 0.0, 'norm': 0.0, 'steps': 0, 'score': 0.0, 'samples': 0}  # an epoch's running sums
# What a checkpoint saved mid-epoch must share with the run resuming it (its "run" field), and what sets each.
RUN_FIELDS = {'batch_size': '--batch_size', 'world_size': 'number of torchrun processes', 'seed': '--seed',
              'bucket': '--bucket', 'train_items': '--use_both, --use_vg and --dataroot',
              'batches_per_epoch': '--batch_size and --bucket'}
# main.py's settings of a training run, saved in its checkpoints ("settings") as the model's are ("config"):
# a resume takes them unless the command line gives them.
RUN_SETTINGS = ('dataroot', 'output', 'epochs', 'use_both', 'use_vg', 'tfidf', 'tfidf_sources', 'batch_size', 'seed',
                'amp', 'lr', 'bucket', 'fix_alignment')
# Those that, changed, make a resume from the middle of an epoch inexact, beyond RUN_FIELDS (checked once the
# data is read): the rest of the epoch would not be the one the checkpoint's steps began.
SAME_MID_EPOCH = ('lr', 'amp', 'use_both', 'use_vg', 'fix_alignment')
# The file names of a run folder.
EPOCH_NAME = 'model_epoch%d.pth'  # a finished epoch
EPOCH_FILE = re.compile(r'model_epoch(\d+)\.pth$')
ORIGINAL_CHECKPOINT = 'model.pth'  # the original's name for a hand-picked model
LAST_CHECKPOINT = 'model_last.pth'  # rewritten after every epoch
INTERRUPTED_CHECKPOINT = 'model_interrupted.pth'  # saved on Ctrl-C / SIGTERM
# (a regular expression of) every name main.py gives the checkpoints it writes into a run folder
RUN_CHECKPOINTS = r'model_epoch\d+\.pth|%s|%s' % (re.escape(LAST_CHECKPOINT), re.escape(INTERRUPTED_CHECKPOINT))


def load_checkpoint(path, map_location='cpu'):
    """Load a checkpoint with weights_only=True; errors name the file."""
    require_file(path, 'train a model with main.py or download the released checkpoint '
                       '(see README)')
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for truncated/corrupt files
        if refused_global(str(err)):
            raise UserError('%s: refused: %s; re-download or re-train it'
                            % (path, describe_torch_load_error(err))) from None
        raise UserError('%s: cannot read checkpoint (%s); the file is truncated or corrupt; re-download or '
                        're-train it' % (path, describe_torch_load_error(err))) from None
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


def describe_mismatch(model, state_dict):
    """Lines naming the keys missing, unexpected or of another shape."""
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    theirs = {key: tuple(value.shape) for key, value in strip_module_prefix(state_dict).items()}
    lines = ['missing %s %s' % (key, ours[key]) for key in ours if key not in theirs]
    lines += ['unexpected %s %s' % (key, theirs[key]) for key in theirs if key not in ours]
    lines += ['%s: checkpoint %s, model %s' % (key, theirs[key], ours[key])
              for key in ours if key in theirs and theirs[key] != ours[key]]
    return lines


def load_model_state(model, state_dict, path):
    """Strictly load a released or saved state dict; a checkpoint of another
    configuration is a UserError listing the mismatched keys and shapes."""
    model = base_model.unwrap(model)
    mismatch = describe_mismatch(model, state_dict)
    other_task = _task_of_state(state_dict)
    if mismatch and other_task != _task_of_state(model.state_dict()):
        raise UserError('%s is a %s model; %s' % (path, TASK_NAMES[other_task], _task_fix(other_task)))
    if mismatch:
        shown = '; '.join(mismatch[:8]) + ('; ... %d more' % (len(mismatch) - 8) if len(mismatch) > 8 else '')
        raise UserError('%s does not fit this model (%d mismatches: %s); pass the --num_hid, --gamma, '
                        '--op and --task it was trained with, and the same dictionary'
                        % (path, len(mismatch), shown))
    model.load_state_dict(state_dict)


TASK_NAMES = {'vqa': 'VQA', 'flickr': 'Flickr30k'}


def _task_of_state(state_dict):
    """'vqa' for the weights of a VQA model (they have an answer classifier), else 'flickr'."""
    return 'vqa' if any('classifier.' in key for key in state_dict) else 'flickr'


def _task_fix(task):
    """What to do with a checkpoint of `task` given to a command of the other task."""
    return 'pass --task %s' % task


def resume_epoch(checkpoint, path):
    """The last finished epoch recorded in a checkpoint (-1 for a Ctrl-C
    checkpoint of epoch 0)."""
    epoch = checkpoint.get('epoch')
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < -1:
        raise UserError('%s: "epoch" is %r, not an epoch number, so training cannot resume from it; resume from '
                        'a model_last.pth or model_interrupted.pth written by main.py' % (path, epoch))
    return epoch


def load_resumed_weights(model, checkpoint, path, dataroot, table_trainable, is_main=True):
    """main.py --input: the weights of `checkpoint` (the file `path`) replace
    any initialisation of `model` (so the tf-idf matrix is not rebuilt), once
    its config is checked against the data under `dataroot`; the tf-idf
    table `emb_` (op 'c') trains as `table_trainable` says (main.py's
    --tfidf) unless the checkpoint's optimizer state shows that the run that
    saved it did otherwise, which must be known before the optimizer is
    built: the state wins, with a note (on the main process)."""
    config = saved_config(checkpoint, path)
    if config is not None:
        check_data(config, model.config, path, dataroot)
    load_model_state(model, checkpoint['model_state'], path)
    if not hasattr(model.w_emb, 'emb_'):
        return
    model.w_emb.set_table_trainable(table_trainable)
    if match_table_to_optimizer_state(model, checkpoint.get('optimizer_state')) and is_main:
        if model.w_emb.emb_.weight.requires_grad:
            note('%s was trained with the tf-idf table emb_ trainable (its optimizer state has an entry '
                 'for it); it keeps training, whatever --tfidf says' % path)
        else:
            note('%s was trained with the tf-idf table emb_ frozen (its optimizer state has no entry for '
                 'it: --tfidf off, or a checkpoint of an older version of this code); it stays frozen' % path)


def first_epoch(checkpoint, path, epochs):
    """The epoch a run resumed from `checkpoint` (the file `path`) trains
    first; a UserError when its `epochs` in all leave none to train."""
    start = resume_epoch(checkpoint, path) + 1
    if start >= epochs:
        raise UserError('%s has finished epoch %d, so --epochs %d leaves nothing to train; pass --epochs %d or '
                        'more to train on' % (path, start - 1, epochs, start + 1))
    return start


def load_optimizer_state(optimizer, state, path):
    """Restore the optimizer of a resumed run; a state of another model is a UserError."""
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise UserError('%s: its optimizer state does not fit this model (%s); resume with the flags it was '
                        'trained with' % (path, str(err).splitlines()[0] if str(err) else type(err).__name__)) from None


def saved_param_count(state):
    """Parameters an optimizer state_dict covers, or None when it is malformed
    (load_optimizer_state then names the problem)."""
    try:
        return sum(len(group['params']) for group in state['param_groups'])
    except (KeyError, TypeError):
        return None


def match_table_to_optimizer_state(model, state):
    """Train or freeze the tf-idf table `emb_` (op 'c') as the run that saved
    the optimizer `state` did: with the table trainable (the original's
    default) the state covers one parameter more (FORMATS §6). The model
    state is already checked against the model, so the table is the only
    parameter whose presence can differ. Returns True when the table's
    setting was changed to fit, else False."""
    w_emb = base_model.unwrap(model).w_emb
    if not hasattr(w_emb, 'emb_'):
        return False
    trainable = w_emb.emb_.weight.requires_grad
    ours = sum(1 for param in model.parameters() if param.requires_grad)
    saved = saved_param_count(state)
    if saved != ours + (-1 if trainable else 1):
        return False
    w_emb.set_table_trainable(not trainable)
    return True


def checkpoint_path(directory, epoch):
    return os.path.join(directory, EPOCH_NAME % epoch)


def model_from_checkpoint(args, task, path, device, ntoken, v_dim, num_answers):
    """Build BAN for the given sizes and load the checkpoint at `path` into
    it: of the config saved in it (ours), else of the flags in `args`, the
    word-embedding width taken from the weights (300 for released models),
    whatever --emb_dim says."""
    ckpt = load_checkpoint(path, map_location='cpu')
    config = saved_config(ckpt, path)
    if config is None:
        state = strip_module_prefix(ckpt['model_state'])
        emb_dim = int(state['w_emb.emb.weight'].shape[1]) if 'w_emb.emb.weight' in state else None
        model = base_model.build_model(base_model.ModelConfig.from_flags(args, task, ntoken, v_dim, num_answers,
                                                                          emb_dim))
    else:
        adopt(args, config, path)
        wanted = base_model.ModelConfig.from_flags(args, config.task, ntoken, v_dim, num_answers)
        check_data(config, wanted, path, getattr(args, 'dataroot', 'data'))
        model = base_model.build_model(config)
    load_model_state(model, ckpt['model_state'], path)
    refuse_non_finite_scores(model, path)
    return model.to(device), ckpt


def refuse_non_finite_scores(model, path):
    """Make `model`, loaded from the checkpoint `path`, raise a UserError
    naming it when its scores (VQA: answer logits; Flickr30k: box logits)
    hold NaN or infinity: their arg-max is an arbitrary answer or box that
    would pass for a result."""
    def check(module, inputs, outputs):
        scores = outputs[0] if outputs[0] is not None else outputs[1]  # the Flickr30k model returns (None, logits)
        if torch.isfinite(scores).all():
            return
        damaged = sum(int((~torch.isfinite(param)).sum()) for param in module.parameters())
        cause = ('%d of its weights are NaN or infinite (a training that diverged, or a damaged file)' % damaged
                 if damaged else 'its weights are finite, but its scores overflow on this input')
        raise UserError('%s gives NaN or infinite scores: %s; use another checkpoint (an earlier epoch) or train '
                        'again' % (path, cause))
    model.register_forward_hook(check)


def save_checkpoint(path, model, optimizer, epoch, extra=None):
    """The original's layout {epoch, model_state (module. keys), optimizer_state}
    plus the model's config (base_model.py) and our resume fields; written
    atomically."""
    state = {'epoch': epoch, 'model_state': base_model.checkpoint_state(model),
             'optimizer_state': optimizer.state_dict()}
    config = getattr(base_model.unwrap(model), 'config', None)
    if config is not None:
        state['config'] = config.to_dict()
    state.update(extra or {})
    torch_save_atomic(state, path)


# ----------------------------------------------------------------- which file --input names

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
    others = [name for name in (ORIGINAL_CHECKPOINT, LAST_CHECKPOINT, INTERRUPTED_CHECKPOINT) if os.path.isfile(os.path.join(folder, name))]
    parts = (['epochs %s (model_epoch<N>.pth)' % ', '.join(map(str, epochs))] if epochs else []) + others
    return ' and '.join([', '.join(parts[:-1]), parts[-1]]) if len(parts) > 1 else (parts[0] if parts else '')


def _missing(folder, wanted=None):
    """The error for a checkpoint `wanted` (None: any finished one) that `folder` lacks."""
    held = describe(folder)
    if not held:
        return UserError('%s holds no checkpoint (model_epoch<N>.pth, %s, %s): train one with main.py --output %s, '
                         'or download the released model (README)' % (folder, ORIGINAL_CHECKPOINT, LAST_CHECKPOINT, folder))
    if wanted is None:
        return UserError('%s holds no model_epoch<N>.pth, %s or %s, only %s: pass that file as --input'
                         % (folder, ORIGINAL_CHECKPOINT, LAST_CHECKPOINT, held))
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
        chosen = checkpoint_path(path, epochs[-1])
        note('using %s, the highest epoch in %s (--epoch picks another)' % (chosen, path))
        return chosen, epochs[-1]
    for name in (ORIGINAL_CHECKPOINT, LAST_CHECKPOINT):
        if os.path.isfile(os.path.join(path, name)):
            note('%s has no model_epoch<N>.pth; using %s' % (path, name))
            return os.path.join(path, name), None
    raise _missing(path)


def _chosen_epoch(folder, epoch):
    original, numbered = os.path.join(folder, ORIGINAL_CHECKPOINT), checkpoint_path(folder, epoch)
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
    states = [os.path.join(path, name) for name in (INTERRUPTED_CHECKPOINT, LAST_CHECKPOINT) if os.path.isfile(os.path.join(path, name))]
    if states:
        newest = max(states, key=os.path.getmtime)
        note('resuming from %s, the newest of %s in %s' % (newest, ' and '.join(os.path.basename(s) for s in
                                                                                        states), path))
        return newest
    return choose(path)[0]


def settle(args):
    """Resolve `args.input`/`args.epoch` to `args.checkpoint` (a file) and
    `args.epoch` (its N, or -1 when the file has none), and take the model
    flags from the config saved in it (adopt) and, without --dataroot, the
    data root it was trained on (adopt_data_root)."""
    args.checkpoint, epoch = choose(args.input, args.epoch)
    args.epoch = -1 if epoch is None else epoch
    adopt_saved_settings(args, args.checkpoint)
    return args


# ----------------------------------------------------------------- settings saved in a checkpoint

def saved_config(checkpoint, source):
    """The ModelConfig of a loaded checkpoint dict, or None (the original's checkpoints)."""
    if 'config' not in checkpoint:
        return None
    return base_model.ModelConfig.from_dict(checkpoint['config'], source)


def peek(path):
    """The checkpoint dict at `path` read without copying the weights (mmap);
    {} for a checkpoint of the original (not a zip file) or a file that does
    not load (the full load then names the problem)."""
    if not zipfile.is_zipfile(path):
        return {}
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception:  # corrupt or foreign: load_checkpoint reports it
        return {}
    return checkpoint if isinstance(checkpoint, dict) else {}


def adopt(args, config, source):
    """Set the model flags in `args` to `config`'s (the checkpoint `source`
    was trained with); a flag the command line gave with another value is a
    UserError naming both. Returns the names of the flags that changed."""
    given = getattr(args, 'given_flags', frozenset())
    differing = [name for name in base_model.MODEL_FLAGS
                 if name in given and getattr(args, name) != getattr(config, name)]
    if differing and config.task != args.task:  # e.g. VQA flags for a Flickr30k model
        dropped = ['--%s %s' % (name, _shown(getattr(args, name))) for name in differing if name != 'task']
        raise UserError('%s is a %s model (main.py --task %s): %s%s'
                        % (source, TASK_NAMES[config.task], config.task, _task_fix(config.task),
                           ' and drop %s' % ' '.join(dropped) if dropped else ''))
    if differing:
        raise UserError('%s cannot be loaded with %s: its weights fit only the settings saved in it; drop %s'
                        % (source, ', '.join('--%s %s (it was trained with --%s %s)'
                                             % (name, _shown(getattr(args, name)), name, _shown(getattr(config, name)))
                                             for name in differing),
                           'those flags' if len(differing) > 1 else 'the flag'))
    changed = [name for name in base_model.MODEL_FLAGS if getattr(args, name) != getattr(config, name)]
    for name in base_model.MODEL_FLAGS:
        setattr(args, name, getattr(config, name))
    return changed


def adopt_saved_settings(args, path, resume=False):
    """Take what the checkpoint file `path` records, reading it once (peek):
    the model flags (`adopt`, with a note when that changed a flag's value)
    and, for main.py's resume, the run's settings (adopt_run_settings), else
    the data root it was trained on (adopt_data_root)."""
    checkpoint = peek(path)
    config = saved_config(checkpoint, path)
    if config is not None:
        changed = adopt(args, config, path)
        if changed:
            note('settings saved in %s: %s' % (path, ' '.join('--%s %s' % (name, _shown(getattr(config, name)))
                                                                     for name in changed)))
    if resume:
        adopt_run_settings(args, checkpoint, path)
    else:
        adopt_data_root(args, checkpoint, path)


def check_data(config, wanted, source, dataroot):
    """The checkpoint `source` (of `config`) must fit the data under
    `dataroot`, for which the model `wanted` is built: the same dictionary,
    features and answers. Otherwise a UserError names what differs."""
    vqa = config.task == 'vqa'
    sizes = (('ntoken', 'a dictionary of %d words', 'the dictionary of --dataroot %s has %d'),
             ('v_dim', 'features of width %d', 'the features of --dataroot %s have width %d'),
             ('num_answers', '%d answers' if vqa else '%d boxes per image',
              'the answer vocabulary of --dataroot %s has %d' if vqa else '--dataroot %s has %d'))
    for name, trained, found in sizes:
        if getattr(config, name) != getattr(wanted, name):
            raise UserError('%s was trained with %s, but %s; pass the --dataroot it was trained on'
                            % (source, trained % getattr(config, name), found % (dataroot, getattr(wanted, name))))


def _shown(value):
    return "''" if value == '' else str(value)


def run_settings(args):
    """This run's RUN_SETTINGS, as main.py saves them in its checkpoints."""
    return {name: getattr(args, name) for name in RUN_SETTINGS}


def saved_settings(checkpoint, source):
    """The main.py settings saved in a checkpoint dict of the file `source`,
    or {} (the original's and older checkpoints record none)."""
    settings = checkpoint.get('settings')
    if settings is None:
        return {}
    if not (isinstance(settings, dict) and set(settings) <= set(RUN_SETTINGS) and all(
            value is None or isinstance(value, (str, int, float)) for value in settings.values())):
        raise UserError('%s: "settings" is not a dict of the main.py settings %s; it is damaged or was not written by '
                        'main.py: use another checkpoint (model_last.pth, model_epoch<N>.pth)'
                        % (source, ', '.join(RUN_SETTINGS)))
    return settings


def _value_text(value):
    return 'its default' if value is None else _shown(value)


def _flag_text(name, value):
    return '--%s %s' % (name, _value_text(value))


def _change(name, saved, value):
    """How setting `name` to `value` changes a run saved with `saved`."""
    if name == 'epochs':
        return '--epochs %d %s it (it was to train %d epochs)' % (value, 'extends' if value > saved else 'shortens',
                                                                   saved)
    if name == 'output':
        return '--output %s: it continues there (it was saved in %s)' % (value, saved)
    return '%s (it ran with %s)' % (_flag_text(name, value), _value_text(saved))


def adopt_run_settings(args, checkpoint, path):
    """main.py --input `path` (resume; `checkpoint` is its peek): take the RUN_SETTINGS saved in it for
    the flags the command line did not give (a note names those that
    differ from the defaults). A flag given with another value than the
    saved one changes the run: one note says how; from a checkpoint saved in
    the middle of an epoch a change of SAME_MID_EPOCH is a UserError, since
    the resume could not be exact. A checkpoint that records no settings
    leaves the flags as they are. The run's folder is where the checkpoint
    is: a run folder moved or copied elsewhere continues there."""
    settings = dict(saved_settings(checkpoint, path))
    here = os.path.dirname(path) or '.'
    if 'output' in settings and os.path.realpath(settings['output']) != os.path.realpath(here):
        settings['output'] = here
    given = getattr(args, 'given_flags', frozenset())
    taken = [name for name in RUN_SETTINGS if name in settings and name not in given
             and getattr(args, name) != settings[name]]
    changed = [name for name in RUN_SETTINGS if name in settings and name in given
               and getattr(args, name) != settings[name]]
    step = checkpoint.get('resume_step', 0)
    inexact = [name for name in changed if name in SAME_MID_EPOCH] if step else []
    if inexact:
        raise UserError('%s was saved at step %d of an epoch with %s, but this run has %s: the rest of that epoch '
                        'would not continue it exactly; drop %s, or restart that epoch from %s'
                        % (path, step, ' '.join(_flag_text(name, settings[name]) for name in inexact),
                           ' '.join(_flag_text(name, getattr(args, name)) for name in inexact),
                           'that flag' if len(inexact) == 1 else 'those flags',
                           os.path.join(os.path.dirname(path) or '.', LAST_CHECKPOINT)))
    for name in taken:
        setattr(args, name, settings[name])
    if taken:
        note('run settings saved in %s: %s' % (path, ' '.join(_flag_text(name, settings[name]) for name in taken)))
    if changed:
        note('changing the run saved in %s: %s' % (path, '; '.join(_change(name, settings[name], getattr(args, name))
                                                                     for name in changed)))


def adopt_data_root(args, checkpoint, path):
    """Without --dataroot on the command line, use the data root that the
    checkpoint `path` (`checkpoint`: its peek) was trained on, when it
    records one (with a note)."""
    saved = saved_settings(checkpoint, path).get('dataroot')
    if saved is not None and 'dataroot' not in getattr(args, 'given_flags', frozenset()) and saved != args.dataroot:
        args.dataroot = saved
        note('--dataroot %s, the data root %s was trained on (pass --dataroot to use another)' % (saved, path))


# ----------------------------------------------------------------- resume checks

def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_rng_state(state):
    def is_bytes(value):
        return torch.is_tensor(value) and value.dtype == torch.uint8 and value.dim() == 1
    return (isinstance(state, dict) and is_bytes(state.get('torch'))
            and state['torch'].numel() == torch.get_rng_state().numel()
            and (isinstance(state.get('cuda', []), list) and all(is_bytes(part) for part in state.get('cuda', []))))


def _field_problems(checkpoint):
    """What is wrong with the types of a checkpoint's resume fields."""
    problems = []
    optimizer_state = checkpoint.get('optimizer_state', {'param_groups': []})
    if not (isinstance(optimizer_state, dict) and isinstance(optimizer_state.get('param_groups'), list)):
        problems.append('"optimizer_state" is not an optimizer state dict')
    best = checkpoint.get('best_eval_score', 0.0)
    if not _is_number(best) or math.isnan(best):
        problems.append('"best_eval_score" is %r, not a number' % (best,))
    if 'rng_state' in checkpoint and not _is_rng_state(checkpoint['rng_state']):
        problems.append('"rng_state" is not the random generator states of torch %s' % torch.__version__)
    if not _is_count(checkpoint.get('resume_step', 0)):
        problems.append('"resume_step" is %r, not a step number' % (checkpoint['resume_step'],))
    sums = checkpoint.get('partial_sums')
    if sums is not None and not (isinstance(sums, dict) and all(_is_number(sums.get(key)) for key in EMPTY_SUMS)):
        problems.append('"partial_sums" is not a dict of the numbers %s' % ', '.join(EMPTY_SUMS))
    run = checkpoint.get('run')
    if run is not None and not (isinstance(run, dict) and set(RUN_FIELDS) <= set(run)):
        problems.append('"run" is not a dict of %s' % ', '.join(RUN_FIELDS))
    return problems


def check_resume_fields(checkpoint, path):
    """Before anything uses them: the types of the resume fields of the
    checkpoint at `path` (a damaged or foreign one is a UserError naming them)."""
    problems = _field_problems(checkpoint)
    if problems:
        raise UserError('%s: %s; it is damaged or was not written by main.py: resume from another checkpoint '
                        '(model_last.pth, model_epoch<N>.pth)' % (path, '; '.join(problems)))


def check_resume_position(checkpoint, path, run):
    """A checkpoint saved mid-epoch (resume_step > 0) resumes only a run that
    makes the same batches: same RUN_FIELDS as `run`, the current run's."""
    step = checkpoint.get('resume_step', 0)
    if not step:
        return
    restart = ('restart that epoch from %s if there is one'
               % os.path.join(os.path.dirname(path) or '.', LAST_CHECKPOINT))
    if step > run['batches_per_epoch']:
        raise UserError('%s: "resume_step" %d is past the %d batches of an epoch of this run; resume with the '
                        'settings it was saved with, or %s' % (path, step, run['batches_per_epoch'], restart))
    sums = checkpoint.get('partial_sums')
    if sums is None or sums['steps'] != step:
        raise UserError('%s: "partial_sums" counts %s steps but "resume_step" is %d: the checkpoint is damaged; %s'
                        % (path, sums['steps'] if sums else 'no', step, restart))
    saved = checkpoint.get('run')
    if saved is None:
        raise UserError('%s stops at step %d of an epoch but does not record the batch size and data it was saved '
                        'with (an older checkpoint), so that cannot be checked; %s' % (path, step, restart))
    for field, setting in RUN_FIELDS.items():
        if saved[field] != run[field]:
            raise UserError('%s was saved at step %d of an epoch with %s %r, but this run has %r; resume with the '
                            'same %s, or %s' % (path, step, field, saved[field], run[field], setting, restart))
