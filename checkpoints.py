"""Checkpoints: building BAN from the flags, loading released and saved
checkpoints (weights_only), saving ours atomically, and the resume fields
(epoch, optimizer state, the tf-idf table's trainability)."""
import math
import os

import torch

import base_model
import model_config
from utils import UserError, describe_torch_load_error, refused_global, require_file, torch_save_atomic

EMPTY_SUMS = {'loss': 0.0, 'norm': 0.0, 'steps': 0, 'score': 0.0, 'samples': 0}  # an epoch's running sums
# What a checkpoint saved mid-epoch must share with the run resuming it (its "run" field), and what sets each.
RUN_FIELDS = {'batch_size': '--batch_size', 'world_size': 'number of torchrun processes', 'seed': '--seed',
              'bucket': '--bucket', 'train_items': '--use_both, --use_vg and --dataroot',
              'batches_per_epoch': '--batch_size and --bucket'}
LAST_CHECKPOINT = 'model_last.pth'
INTERRUPTED_CHECKPOINT = 'model_interrupted.pth'


def build_model(args, task, ntoken, v_dim, num_answers, emb_dim=None):
    """BAN from the original's flags (--model --num_hid --op --gamma --emb_dim)
    and the data sizes: vocabulary, feature width and answers. `emb_dim`
    overrides --emb_dim (a checkpoint's own width). The model keeps its
    ModelConfig for the checkpoints."""
    return model_config.build(model_config.ModelConfig.from_flags(args, task, ntoken, v_dim, num_answers, emb_dim))


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
    if mismatch:
        shown = '; '.join(mismatch[:8]) + ('; ... %d more' % (len(mismatch) - 8) if len(mismatch) > 8 else '')
        raise UserError('%s does not fit this model (%d mismatches: %s); pass the --num_hid, --gamma, '
                        '--op and --task it was trained with, and the same dictionary'
                        % (path, len(mismatch), shown))
    model.load_state_dict(state_dict)


def resume_epoch(checkpoint, path):
    """The last finished epoch recorded in a checkpoint (-1 for a Ctrl-C
    checkpoint of epoch 0)."""
    epoch = checkpoint.get('epoch')
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < -1:
        raise UserError('%s: "epoch" is %r, not an epoch number, so training cannot resume from it; resume from '
                        'a model_last.pth or model_interrupted.pth written by main.py' % (path, epoch))
    return epoch


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
    return os.path.join(directory, 'model_epoch%d.pth' % epoch)


def model_from_checkpoint(args, task, path, device, ntoken, v_dim, num_answers):
    """Build BAN for the given sizes and load the checkpoint at `path` into
    it: of the config saved in it (ours), else of the flags in `args`, the
    word-embedding width taken from the weights (300 for released models),
    whatever --emb_dim says."""
    ckpt = load_checkpoint(path, map_location='cpu')
    config = model_config.saved_config(ckpt, path)
    if config is None:
        state = strip_module_prefix(ckpt['model_state'])
        emb_dim = int(state['w_emb.emb.weight'].shape[1]) if 'w_emb.emb.weight' in state else None
        model = build_model(args, task, ntoken, v_dim, num_answers, emb_dim)
    else:
        model_config.adopt(args, config, path)
        wanted = model_config.ModelConfig.from_flags(args, config.task, ntoken, v_dim, num_answers)
        model_config.check_data(config, wanted, path, getattr(args, 'dataroot', 'data'))
        model = model_config.build(config)
    load_model_state(model, ckpt['model_state'], path)
    return model.to(device), ckpt


def save_checkpoint(path, model, optimizer, epoch, extra=None):
    """The original's layout {epoch, model_state (module. keys), optimizer_state}
    plus the model's config (model_config.py) and our resume fields; written
    atomically."""
    state = {'epoch': epoch, 'model_state': base_model.checkpoint_state(model),
             'optimizer_state': optimizer.state_dict()}
    config = getattr(base_model.unwrap(model), 'config', None)
    if config is not None:
        state['config'] = config.to_dict()
    state.update(extra or {})
    torch_save_atomic(state, path)


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
