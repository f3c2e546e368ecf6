"""Set-up shared by main.py, test.py, evaluate.py and ask.py: devices, the
distributed context, model wrapping, data-root paths and the shared flags."""
import argparse
import os
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
    elif name != 'cpu':
        raise UserError('--device must be auto, cpu, cuda or cuda:N (got %r)' % name)
    return torch.device(name)


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
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    if world_size <= 1:
        return DistContext(), resolve_device(device_name)
    ctx = DistContext(rank=int(os.environ['RANK']), world_size=world_size,
                      local_rank=int(os.environ.get('LOCAL_RANK', '0')))
    device = resolve_device(device_name, ctx.local_rank)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo')
    return ctx, device


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


def int_at_least(minimum):
    """argparse type: an integer >= minimum (the error names the bound)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError('expected an integer >= %d, got %r' % (minimum, text)) from None
        if value < minimum:
            raise argparse.ArgumentTypeError('must be >= %d, got %d' % (minimum, value))
        return value
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def add_model_flags(parser, task_default='vqa'):
    """The original's model flags, shared by main.py, test.py, evaluate.py and ask.py."""
    parser.add_argument('--task', choices=['vqa', 'flickr'], default=task_default, help='vqa or flickr')
    parser.add_argument('--num_hid', type=positive_int, default=1280)
    parser.add_argument('--model', type=str, default='ban')
    parser.add_argument('--op', type=str, choices=['', 'c'], default='c',
                        help='"c": add the tf-idf embedding table; "": no table')
    parser.add_argument('--gamma', type=positive_int, default=8, help='glimpses')
    parser.add_argument('--emb_dim', type=positive_int, default=300, help='GloVe width (50 for the demo)')
    parser.add_argument('--dataroot', type=str, default='data')
    parser.add_argument('--device', type=str, default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--workers', type=non_negative_int, default=min(4, os.cpu_count() or 1),
                        help='DataLoader worker processes')


def apply_task_overrides(args):
    """The original forces op '' and one glimpse for Flickr30k."""
    if args.task == 'flickr':
        args.op = ''
        args.gamma = 1
    return args
