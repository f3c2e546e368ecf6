"""Batch samplers: length-bucketed training batches, the seeded per-epoch
shuffle, resumable epochs (SkipBatches) and ordered evaluation shards.

Length-bucketed batch sampling.

Batches pad every image to the largest box count in the batch, so a batch
drawn at random from the adaptive features (10-100 boxes, mean about 32) is
mostly padding. `BucketBatchSampler` puts images of similar box counts into
the same batch and still reshuffles every epoch:

1. shuffle all indices (seeded by `seed` and the epoch);
2. cut the shuffled list into chunks of `bucket_size * batch_size` items;
3. sort each chunk by length (a stable sort, so ties keep the random order);
4. cut each chunk into batches of `batch_size`;
5. shuffle the order of the batches;
6. with several replicas (DDP), give each rank every `num_replicas`-th batch.

Use it as `DataLoader(dataset, batch_sampler=BucketBatchSampler(...))` and
call `set_epoch(epoch)` before every epoch, as with DistributedSampler.
"""
import numpy as np
import torch
from torch.utils.data import BatchSampler, Sampler
from torch.utils.data.distributed import DistributedSampler

DEFAULT_BUCKET_SIZE = 50  # batches per sorted chunk


class BucketBatchSampler(Sampler):
    """Yields lists of dataset indices, grouped by similar `lengths`.

    Every rank gets the same number of batches, and the ranks' batches are
    disjoint. Without `drop_last` they also cover every index exactly once per
    epoch: when the batch count does not divide by `num_replicas`, the largest
    batches are halved until it does (no index is repeated). With `drop_last`
    the final short batch and, for DDP, up to `num_replicas - 1` further
    batches are dropped. With `shuffle=False` the order is fixed (chunks
    sorted by length, batches in chunk order), e.g. for evaluation.
    """

    def __init__(self, lengths, batch_size, shuffle=True, seed=0, drop_last=False,
                 num_replicas=1, rank=0, bucket_size=DEFAULT_BUCKET_SIZE):
        self.lengths = np.asarray(lengths)
        if self.lengths.ndim != 1 or self.lengths.size == 0:
            raise ValueError('lengths must be a non-empty 1-D sequence, got shape %s'
                             % (self.lengths.shape,))
        if batch_size < 1 or bucket_size < 1:
            raise ValueError('batch_size and bucket_size must be >= 1 (got %d, %d)'
                             % (batch_size, bucket_size))
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError('rank must lie in [0, num_replicas) (got rank %d of %d)'
                             % (rank, num_replicas))
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.bucket_size = bucket_size
        self.epoch = 0
        if not drop_last and self.lengths.size < len(self) * num_replicas:
            raise ValueError('%d items cannot fill %d batches on each of %d replicas without '
                             'repeating items; use drop_last=True'
                             % (self.lengths.size, len(self), num_replicas))

    def set_epoch(self, epoch):
        """Select the epoch whose (deterministic) order the next iteration yields."""
        self.epoch = epoch

    def __len__(self):
        num_items = self.lengths.size
        if self.drop_last:
            num_batches = num_items // self.batch_size
            return num_batches // self.num_replicas
        num_batches = -(-num_items // self.batch_size)
        return -(-num_batches // self.num_replicas)

    def __iter__(self):
        batches = self.epoch_batches()
        for batch in batches[self.rank::self.num_replicas]:
            yield batch.tolist()

    def epoch_batches(self):
        """All replicas' batches of the current epoch (arrays of indices), in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        num_items = self.lengths.size
        order = rng.permutation(num_items) if self.shuffle else np.arange(num_items)
        chunk_items = self.bucket_size * self.batch_size
        batches = []
        for start in range(0, num_items, chunk_items):
            chunk = order[start:start + chunk_items]
            chunk = chunk[np.argsort(self.lengths[chunk], kind='stable')]
            batches.extend(chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return self._fit_replicas(batches)

    def _fit_replicas(self, batches):
        """Make the batch count a multiple of num_replicas (drop or halve batches)."""
        if self.drop_last:
            return batches[:len(batches) - len(batches) % self.num_replicas]
        while len(batches) % self.num_replicas:
            largest = max(range(len(batches)), key=lambda i: len(batches[i]))
            half = (len(batches[largest]) + 1) // 2
            batches[largest:largest + 1] = [batches[largest][:half], batches[largest][half:]]
        return batches


def padding_waste(lengths, batches):
    """(padded slots, real items) when every batch pads to its longest item:
    padded = sum over batches of (max length * batch size - sum of lengths)."""
    lengths = np.asarray(lengths)
    padded = sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)
    return padded, int(lengths.sum())


class EpochShuffle(Sampler):
    """A permutation of range(n) fixed by (seed, epoch): the same on resume."""

    def __init__(self, num_items, seed):
        self.num_items = num_items
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return iter(torch.randperm(self.num_items, generator=generator).tolist())

    def __len__(self):
        return self.num_items


class SkipBatches(Sampler):
    """A batch sampler whose epoch can start after its first `skip` batches
    (resuming an interrupted epoch without loading its done batches)."""

    def __init__(self, batch_sampler):
        self.batch_sampler = batch_sampler
        self.skip = 0

    def set_epoch(self, epoch, skip=0):
        """Draw the batches of `epoch` next, leaving out the first `skip`."""
        self.skip = skip
        for holder in (self.batch_sampler, getattr(self.batch_sampler, 'sampler', None)):
            if hasattr(holder, 'set_epoch'):
                holder.set_epoch(epoch)

    def __iter__(self):
        skip, self.skip = self.skip, 0
        for index, batch in enumerate(self.batch_sampler):
            if index >= skip:
                yield batch

    def __len__(self):
        return len(self.batch_sampler)


class ShardedBatches(Sampler):
    """Evaluation batches in order; rank r takes batches r, r+W, ... so each
    batch is composed exactly as in a single-process run."""

    def __init__(self, num_items, batch_size, rank=0, world_size=1):
        self.batches = [list(range(start, min(start + batch_size, num_items)))
                        for start in range(0, num_items, batch_size)]
        self.rank = rank
        self.world_size = world_size

    def __iter__(self):
        return iter(self.batches[self.rank::self.world_size])

    def __len__(self):
        return len(self.batches[self.rank::self.world_size])


def train_batch_sampler(dataset, batch_size, seed, ctx, lengths=None):
    """Shuffled batches; with `lengths` (box counts) batches group similar sizes."""
    if lengths is not None:
        sampler = BucketBatchSampler(lengths, batch_size, shuffle=True, seed=seed,
                                     num_replicas=ctx.world_size, rank=ctx.rank)
    elif ctx.enabled:
        sampler = BatchSampler(DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=seed),
                               batch_size, drop_last=False)
    else:
        sampler = BatchSampler(EpochShuffle(len(dataset), seed), batch_size, drop_last=False)
    return SkipBatches(sampler)
