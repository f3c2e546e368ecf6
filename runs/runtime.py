"""Where a run executes: the device, the torchrun distributed context,
seeded-CPU determinism and model wrapping (DDP / DataParallel)."""
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

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


def per_rank_batch(batch_size, ctx):
    """Each torchrun process's share of the global --batch_size."""
    if batch_size % ctx.world_size:
        raise UserError('--batch_size %d is not divisible by the %d torchrun processes' % (batch_size, ctx.world_size))
    return batch_size // ctx.world_size


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
