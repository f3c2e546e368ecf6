"""BucketBatchSampler: coverage, determinism, padding waste, DDP shards."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from runs.samplers import BucketBatchSampler, padding_waste
from tools.benchmark import sample_box_counts


def realistic_lengths(num_images=20000, seed=0):
    return sample_box_counts(num_images, np.random.default_rng(seed))


def flat(batches):
    return [index for batch in batches for index in batch]


@pytest.mark.parametrize('num_items,batch_size,bucket_size', [(1000, 32, 5), (1001, 32, 5), (7, 3, 1),
                                                              (5, 10, 50)])
def test_every_index_exactly_once_per_epoch(num_items, batch_size, bucket_size):
    lengths = np.random.default_rng(1).integers(10, 101, num_items)
    sampler = BucketBatchSampler(lengths, batch_size, seed=3, bucket_size=bucket_size)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(flat(batches)) == list(range(num_items))
        assert len(batches) == len(sampler) == -(-num_items // batch_size)
        assert all(1 <= len(batch) <= batch_size for batch in batches)
        assert sum(len(batch) < batch_size for batch in batches) <= 1


def test_order_is_deterministic_per_seed_and_epoch():
    lengths = realistic_lengths(3000)

    def epoch_order(seed, epoch):
        sampler = BucketBatchSampler(lengths, 64, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_order(0, 0) == epoch_order(0, 0)
    assert epoch_order(0, 5) == epoch_order(0, 5)
    assert epoch_order(0, 0) != epoch_order(0, 1)
    assert epoch_order(0, 0) != epoch_order(1, 0)
    # not merely the batch order: the grouping of items changes between epochs too
    assert {tuple(sorted(b)) for b in epoch_order(0, 0)} != {tuple(sorted(b)) for b in epoch_order(0, 1)}


def test_bucketing_cuts_padding_and_keeps_batches_shuffled():
    lengths = realistic_lengths()
    bucketed = list(BucketBatchSampler(lengths, 256, seed=0))
    shuffled = np.random.default_rng(0).permutation(len(lengths))
    random_batches = [shuffled[i:i + 256] for i in range(0, len(lengths), 256)]
    bucket_padded, real = padding_waste(lengths, bucketed)
    random_padded, _ = padding_waste(lengths, random_batches)
    assert random_padded > real  # random batches of 256 are mostly padding
    assert bucket_padded < 0.05 * random_padded
    batch_max = [int(lengths[b].max()) for b in bucketed]
    assert batch_max != sorted(batch_max) and batch_max != sorted(batch_max, reverse=True)


def test_without_shuffle_order_is_fixed_and_complete():
    lengths = realistic_lengths(500)
    sampler = BucketBatchSampler(lengths, 32, shuffle=False, bucket_size=4)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) == first
    assert sorted(flat(first)) == list(range(500))


@pytest.mark.parametrize('num_items,num_replicas', [(1000, 4), (1003, 3), (33, 4)])
def test_rank_shards_are_disjoint_equal_and_covering(num_items, num_replicas):
    lengths = realistic_lengths(num_items)
    shards = []
    for rank in range(num_replicas):
        sampler = BucketBatchSampler(lengths, 16, seed=7, num_replicas=num_replicas, rank=rank,
                                     bucket_size=3)
        sampler.set_epoch(2)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler)
    assert len({len(shard) for shard in shards}) == 1  # same number of steps on every rank
    items = [flat(shard) for shard in shards]
    assert sorted(sum(items, [])) == list(range(num_items))  # disjoint and covering
    assert all(1 <= len(batch) <= 16 for shard in shards for batch in shard)


def test_drop_last_shards_hold_full_batches_only():
    lengths = realistic_lengths(1003)
    shards = [list(BucketBatchSampler(lengths, 16, drop_last=True, num_replicas=3, rank=rank))
              for rank in range(3)]
    assert [len(shard) for shard in shards] == [62 // 3] * 3
    assert all(len(batch) == 16 for shard in shards for batch in shard)
    items = sum((flat(shard) for shard in shards), [])
    assert len(items) == len(set(items)) == 3 * (62 // 3) * 16


@settings(max_examples=60, deadline=None)
@given(num_items=st.integers(1, 300), batch_size=st.integers(1, 40), bucket_size=st.integers(1, 6),
       num_replicas=st.integers(1, 4), drop_last=st.booleans(), epoch=st.integers(0, 3))
def test_shards_partition_the_items_for_any_configuration(num_items, batch_size, bucket_size,
                                                         num_replicas, drop_last, epoch):
    lengths = np.random.default_rng(num_items).integers(10, 101, num_items)
    try:
        samplers = [BucketBatchSampler(lengths, batch_size, seed=1, drop_last=drop_last,
                                       num_replicas=num_replicas, rank=rank, bucket_size=bucket_size)
                    for rank in range(num_replicas)]
    except ValueError as err:
        assert not drop_last and 'without repeating items' in str(err)
        return
    shards = []
    for sampler in samplers:
        sampler.set_epoch(epoch)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler)
    items = sum((flat(shard) for shard in shards), [])
    assert len(items) == len(set(items))
    if not drop_last:
        assert sorted(items) == list(range(num_items))
    assert all(0 < len(batch) <= batch_size for shard in shards for batch in shard)


def test_works_as_a_dataloader_batch_sampler():
    lengths = [10, 50, 11, 51, 30, 31]
    dataset = torch.utils.data.TensorDataset(torch.arange(6))
    sampler = BucketBatchSampler(lengths, 2, seed=0, bucket_size=3)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)
    batches = [batch[0].tolist() for batch in loader]
    assert sorted(flat(batches)) == list(range(6))
    assert all(abs(lengths[a] - lengths[b]) == 1 for a, b in batches)  # similar lengths together


@pytest.mark.parametrize('kwargs,message', [
    ({'lengths': [], 'batch_size': 2}, 'non-empty'),
    ({'lengths': [3, 4], 'batch_size': 0}, 'batch_size'),
    ({'lengths': [3, 4], 'batch_size': 1, 'num_replicas': 2, 'rank': 2}, 'rank'),
    ({'lengths': [3, 4, 5], 'batch_size': 2, 'num_replicas': 4}, 'drop_last=True'),
])
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BucketBatchSampler(**kwargs)
