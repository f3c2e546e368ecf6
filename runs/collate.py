"""Batching of dataset items: zero-row padding of per-image box tensors,
built in shared memory inside DataLoader workers."""
import numpy as np
import torch


def pad_collate(batch):
    """Batch items of the VQA / VG datasets. Tensors with more than one
    dimension (features [n_i, v_dim], spatials [n_i, 6]) are padded to the
    batch's largest box count with all-zero rows (a zero feature row means
    "no box"); other tensors are stacked; ints (test question ids) become a
    LongTensor."""
    return tuple(_collate_column(column) for column in zip(*batch))


def _collate_column(values):
    first = values[0]
    if torch.is_tensor(first):
        if first.dim() > 1:
            return pad_rows(values)  # [B, N_max, ...], zero rows
        return stack_batch(values)  # [B, ...]
    if isinstance(first, (int, np.integer)):
        return torch.tensor([int(value) for value in values], dtype=torch.long)  # [B]
    if isinstance(first, float):
        return torch.tensor(values, dtype=torch.float32)  # [B]
    raise TypeError('pad_collate cannot batch items of type %s' % type(first).__name__)


def _batch_buffer(like, shape):
    """An uninitialised tensor of `shape` with `like`'s dtype. In a DataLoader
    worker it lives in shared memory, so handing the batch to the main process
    needs no copy (torch's default_collate does the same)."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=like.dtype)
    numel = int(np.prod(shape))
    storage = like._typed_storage()._new_shared(numel, device=like.device)
    return like.new(storage).view(shape)


def stack_batch(values):
    """torch.stack of same-shape tensors into [B, ...] (in shared memory in a worker)."""
    first = values[0]
    return torch.stack(values, 0, out=_batch_buffer(first, (len(values),) + tuple(first.shape)))


def pad_rows(values):
    """Stack [n_i, ...] tensors into [B, N_max, ...], padding with zero rows
    (in shared memory in a worker)."""
    first = values[0]
    num_rows = max(value.size(0) for value in values)
    out = _batch_buffer(first, (len(values), num_rows) + tuple(first.shape[1:])).zero_()  # [B, N_max, ...]
    for index, value in enumerate(values):
        out[index].narrow(0, 0, value.size(0)).copy_(value)
    return out


def flickr_collate(batch):
    """Batch Flickr30k items: features and spatials are padded with zero rows
    to the largest box count of the batch ([B, N, v_dim], [B, N, 6]); the
    fixed-size tensors are stacked; entity_types stays a list of [n_i, 3].
    In a DataLoader worker the tensors are built in shared memory, as
    pad_collate's."""
    columns = list(zip(*batch))
    features, spatials = pad_rows(columns[0]), pad_rows(columns[1])
    stacked = [stack_batch(column) for column in columns[2:7]]
    return (features, spatials, *stacked, list(columns[7]))
