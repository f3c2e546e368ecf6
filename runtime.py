"""Set-up shared by main.py, test.py, evaluate.py and ask.py: devices, the
distributed context, model wrapping, data-root paths and the shared flags."""
import argparse
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from dictionary import Dictionary
from paths import dictionary_file, glove_init_file, task_root
from utils import UserError


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


# ----------------------------------------------------------------- data

def load_dictionary(dataroot, task):
    path = dictionary_file(task_root(dataroot, task))
    step = 'tools/process_flickr.sh' if task == 'flickr' else 'tools/process.sh (tools/create_dictionary.py)'
    if not os.path.exists(path):
        raise UserError('missing file %s: run %s first' % (path, step))
    return Dictionary.load_from_file(path)


def glove_init_path(dataroot, task, emb_dim):
    path = glove_init_file(task_root(dataroot, task), emb_dim)
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
