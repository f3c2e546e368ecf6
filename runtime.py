"""Set-up shared by main.py, test.py, evaluate.py and ask.py: devices,
distributed context, model construction and checkpoint I/O."""
import os
from contextlib import contextmanager
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

import base_model
import model_config
from utils import UserError, load_checkpoint, strip_module_prefix, torch_save_atomic


# ----------------------------------------------------------------- devices

def resolve_device(name='auto', local_rank=0):
    """'auto' -> cuda:<local_rank> when a GPU is present, else cpu."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    if name.startswith('cuda'):
        if not torch.cuda.is_available():
            raise UserError('--device %s requested but no CUDA GPU is available; use --device cpu' % name)
        if name == 'cuda':
            name = 'cuda:%d' % local_rank
        index, count = name[len('cuda:'):], torch.cuda.device_count()
        if not (name.startswith('cuda:') and index.isdigit() and int(index) < count):
            raise UserError('--device %s: this machine has %d CUDA GPU(s), cuda:0 to cuda:%d (under torchrun, '
                            'LOCAL_RANK picks one: start at most %d processes per machine)'
                            % (name, count, count - 1, count))
    elif name != 'cpu':
        raise UserError('--device must be auto, cpu, cuda or cuda:N (got %r)' % name)
    return torch.device(name)


@contextmanager
def deterministic_on_cpu(device):
    """Within: a seeded run on CPU repeats bit for bit (same machine, same
    torch thread count); the previous setting comes back on exit.

    Turns on torch.use_deterministic_algorithms. On CPU the one op of the
    model it changes is the backward of indexing with a tensor (the counter's
    piecewise-linear functions): with several threads torch accumulates it
    with atomic float adds in whatever order the threads run, so two runs from
    one seed drift apart; in this mode it adds serially. (The mode also fills
    torch.empty tensors with NaN first.) GPU runs are left as they are: see
    docs/REPRODUCIBILITY.md.
    """
    if device.type != 'cpu':
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


@dataclass
class DistContext:
    """Where this process stands in a torchrun job (world 1 without torchrun)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def enabled(self):
        return self.world_size > 1


def init_distributed(device_name='auto'):
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and start the
    process group: NCCL on GPUs, gloo on CPU. Returns (DistContext, device)."""
    world_size = _environment_int('WORLD_SIZE', '1', 1)
    if world_size <= 1:
        return DistContext(), resolve_device(device_name)
    if 'RANK' not in os.environ:
        raise UserError('WORLD_SIZE=%d is set but RANK is not: start the processes with torchrun (which sets '
                        'both), or unset WORLD_SIZE for one process' % world_size)
    ctx = DistContext(rank=_environment_int('RANK', None, 0, world_size - 1), world_size=world_size,
                      local_rank=_environment_int('LOCAL_RANK', '0', 0))
    device = resolve_device(device_name, ctx.local_rank)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo')
    return ctx, device


def _environment_int(name, default, minimum, maximum=None):
    """The integer in environment variable `name` (torchrun's), checked."""
    text = os.environ.get(name, default)
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        raise UserError('environment variable %s=%r is not an integer %s; torchrun sets it: unset it or start '
                        'with torchrun' % (name, text, '>= %d' % minimum if maximum is None
                                           else 'from %d to %d' % (minimum, maximum)))
    return value


# ----------------------------------------------------------------- model

def build_model(dataset, args, task):
    """BAN from the original's flags (--model --num_hid --op --gamma --emb_dim)
    for `dataset`; the model keeps its ModelConfig for the checkpoints."""
    return model_config.build(model_config.ModelConfig.for_data(args, dataset, task))


def wrap_model(model, device, ctx):
    """DistributedDataParallel under torchrun, DataParallel over several GPUs in
    one process (as the original), the bare model otherwise."""
    model = model.to(device)
    if ctx.enabled:
        device_ids = [device.index] if device.type == 'cuda' else None
        # the counter's functions f[8..15] exist (released layout) but never receive gradients
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
    if device.type == 'cuda' and torch.cuda.device_count() > 1:
        return torch.nn.DataParallel(model)
    return model


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


def model_from_checkpoint(dataset, args, task, path, device):
    """Build BAN for `dataset` and load the checkpoint at `path` into it: of
    the config saved in it (ours), else of the flags in `args`, the
    word-embedding width taken from the weights (300 for released models)."""
    ckpt = load_checkpoint(path, map_location='cpu')
    config = model_config.saved_config(ckpt, path)
    if config is None:
        state = strip_module_prefix(ckpt['model_state'])
        if 'w_emb.emb.weight' in state:
            args.emb_dim = int(state['w_emb.emb.weight'].shape[1])
        model = build_model(dataset, args, task)
    else:
        model_config.adopt(args, config, path)
        wanted = model_config.ModelConfig.for_data(args, dataset, config.task)
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


# ----------------------------------------------------------------- data

def task_root(dataroot, task):
    """VQA files live in <dataroot>, Flickr30k Entities in <dataroot>/flickr30k."""
    return os.path.join(dataroot, 'flickr30k') if task == 'flickr' else dataroot


def load_dictionary(dataroot, task):
    from dataset import Dictionary
    path = os.path.join(task_root(dataroot, task), 'dictionary.pkl')
    step = 'tools/process_flickr.sh' if task == 'flickr' else 'tools/process.sh (tools/create_dictionary.py)'
    if not os.path.exists(path):
        raise UserError('missing file %s: run %s first' % (path, step))
    return Dictionary.load_from_file(path)


def glove_init_path(dataroot, task, emb_dim):
    path = os.path.join(task_root(dataroot, task), 'glove6b_init_%dd.npy' % emb_dim)
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


def int_at_least(minimum, maximum=None):
    """argparse type: an integer >= minimum (and <= maximum when given); the
    error names the bounds."""
    import argparse
    bounds = '>= %d' % minimum if maximum is None else 'from %d to %d' % (minimum, maximum)

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError('expected an integer %s, got %r' % (bounds, text)) from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError('must be %s, got %d' % (bounds, value))
        return value
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
SEED = int_at_least(0, 2 ** 32 - 1)  # what numpy accepts; torch takes it too, offset by rank and epoch
MAX_NUM_HID = 16384  # 12.8x the released model's 1280; beyond, the model alone needs tens of GB
MAX_GLIMPSES = 64


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(text):
    """argparse type of --workers: an integer >= 0, capped (with a note) to
    the CPUs this process may use: more workers than CPUs only add memory
    and start-up time, and thousands exhaust the open-file limit."""
    value = non_negative_int(text)
    cpus = available_cpus()
    if value > cpus:
        print('note: --workers %d capped to %d, the CPUs available' % (value, cpus), file=sys.stderr)
        return cpus
    return value


def add_model_flags(parser, task_default='vqa'):
    """The original's model flags, shared by main.py, test.py, evaluate.py and ask.py."""
    model = parser.add_argument_group('model settings (taken from an --input checkpoint that records them)')
    model.add_argument('--task', choices=['vqa', 'flickr'], default=task_default,
                       help='vqa (VQA 2.0 answers) or flickr (Flickr30k Entities grounding; forces --op "" and '
                            '--gamma 1) (default: %(default)s)')
    model.add_argument('--num_hid', type=int_at_least(1, MAX_NUM_HID), default=1280,
                       help='hidden size (default: %(default)s)')
    model.add_argument('--model', type=str, default='ban', help='model family; only "ban" (default: %(default)s)')
    model.add_argument('--op', type=str, choices=['', 'c'], default='c',
                       help='"c": add a second word-embedding table, tf-idf initialised; "": no table '
                            '(default: %(default)s)')
    model.add_argument('--gamma', type=int_at_least(1, MAX_GLIMPSES), default=8, help='glimpses (default: %(default)s)')
    model.add_argument('--emb_dim', type=positive_int, default=300,
                       help='GloVe width: 300, or 50 for the demo (default: %(default)s)')
    parser.add_argument('--dataroot', type=str, default='data',
                        help='the prepared data (tools/process.sh; Flickr30k under <dataroot>/flickr30k) '
                             '(default: %(default)s)')
    parser.add_argument('--device', type=str, default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--workers', type=worker_count, default=min(4, available_cpus()),
                        help='DataLoader worker processes (at most the CPUs available)')


def apply_task_overrides(args):
    """The original forces op '' and one glimpse for Flickr30k."""
    if args.task == 'flickr':
        args.op = ''
        args.gamma = 1
    return args
