"""DataLoaders of main.py and evaluate.py: the collate function of each task,
a loader with its own seeded generator, sharded evaluation batches, and
workers that leave Ctrl-C/SIGTERM to the main process."""
import torch
from torch.utils.data import DataLoader

from runs.collate import flickr_collate, pad_collate
from runs.samplers import ShardedBatches
from utils import quiet_worker


def collate_for(task):
    return flickr_collate if task == 'flickr' else pad_collate


def make_loader(dataset, batch_sampler, args, device, quiet_workers=False):
    """With `quiet_workers` the workers ignore Ctrl-C and SIGTERM (see
    utils.quiet_worker): call stop_workers before the process exits."""
    # its own generator, so creating an iterator never draws from the global RNG (exact resume)
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=args.workers,
                      collate_fn=collate_for(args.task), pin_memory=device.type == 'cuda',
                      persistent_workers=args.workers > 0, worker_init_fn=quiet_worker if quiet_workers else None,
                      generator=torch.Generator().manual_seed(getattr(args, 'seed', 0)))


def eval_loader_for(dataset, args, device, ctx, batch_size, quiet_workers=False):
    """Evaluation batches in order (each torchrun rank takes every world_size-th)."""
    sampler = ShardedBatches(len(dataset), batch_size, ctx.rank, ctx.world_size)
    return make_loader(dataset, sampler, args, device, quiet_workers)


def stop_workers(*loaders):
    """Shut down the persistent worker processes of `loaders` now. Quiet
    workers must not outlive the loop: at exit, multiprocessing stops
    daemon processes with SIGTERM, which they ignore, and would wait forever."""
    for loader in loaders:
        iterator = getattr(loader, '_iterator', None)  # DataLoader has no public call for this
        if iterator is not None:
            iterator._shutdown_workers()
            loader._iterator = None
