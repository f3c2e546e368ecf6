"""DataLoaders of main.py and evaluate.py: the collate function of each task,
a loader with its own seeded generator, and sharded evaluation batches."""
import torch
from torch.utils.data import DataLoader

from collate import flickr_collate, pad_collate
from samplers import ShardedBatches


def collate_for(task):
    return flickr_collate if task == 'flickr' else pad_collate


def make_loader(dataset, batch_sampler, args, device):
    # its own generator, so creating an iterator never draws from the global RNG (exact resume)
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=args.workers,
                      collate_fn=collate_for(args.task), pin_memory=device.type == 'cuda',
                      persistent_workers=args.workers > 0, generator=torch.Generator().manual_seed(getattr(args, 'seed', 0)))


def eval_loader_for(dataset, args, device, ctx, batch_size):
    """Evaluation batches in order (each torchrun rank takes every world_size-th)."""
    sampler = ShardedBatches(len(dataset), batch_size, ctx.rank, ctx.world_size)
    return make_loader(dataset, sampler, args, device)
