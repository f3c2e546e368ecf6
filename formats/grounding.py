"""Flickr30k grounding loss and recall counts (FORMATS §7), used by the
trainer's Flickr task and the evaluator."""
import torch
import torch.nn.functional as F

from formats.flickr_files import ENTITY_TYPES


def merge_entity_logits(att_logits, e_num, targets):
    """Gather the valid entities of a batch.

    att_logits [B, 1, N, 16] (glimpse 0 is used), e_num [B, 1], targets
    [B, 16, 100] -> (logits [E, N], labels [E, N]) with E = sum(e_num): for
    each sample j in order, att_logits[j, 0, :, :n_j] transposed and
    targets[j, :n_j, :N]."""
    n_boxes, max_entities = att_logits.size(2), att_logits.size(3)
    device = att_logits.device
    valid = torch.arange(max_entities, device=device)[None, :] < e_num.to(device).view(-1, 1)  # [B, 16]
    logits = att_logits[:, 0].transpose(1, 2)[valid]  # [E, N]
    labels = targets.to(device)[:, :max_entities, :n_boxes][valid]  # [E, N]
    return logits, labels.to(logits.dtype)


def grounding_loss(att_logits, e_num, targets):
    """Summed BCE-with-logits over the valid entities' box logits, divided by
    the batch size (the original Flickr30k loss)."""
    logits, labels = merge_entity_logits(att_logits, e_num, targets)
    return F.binary_cross_entropy_with_logits(logits, labels, reduction='sum') / att_logits.size(0)


def top_k_hits(logits, labels, k):
    """BoolTensor [E]: whether each entity's k highest-logit boxes (all boxes
    when N < k) include a target box; ties are ordered by torch.sort, as the
    original."""
    order = torch.sort(logits, dim=1, descending=True)[1]  # [E, N]
    return (labels > 0).gather(1, order[:, :k]).any(dim=1)  # [E]


def recall_hits(logits, labels, ks=(1, 5, 10)):
    """{k: number of entities (rows of logits [E, N]) whose top-k boxes include
    a target box of labels [E, N]}."""
    return {k: int(top_k_hits(logits, labels, k).sum()) for k in ks}


def entities_with_target(labels):
    """Number of entities having any target box: the recall upper bound's numerator."""
    return int((labels > 0).any(dim=1).sum())


def recall_hits_by_type(logits, labels, entity_types, ks=(1, 5, 10)):
    """Recall counts per entity type: {type name: {'entities': count,
    'hits': {k: count}, 'upper_bound': count}} for every type of
    ENTITY_TYPES; entity_types [E, 3] (-1 padded, rows aligned with `logits`:
    the `torch.cat` of a batch's entity_types list). An entity counts for each
    type it has."""
    breakdown = {}
    for type_index, type_name in enumerate(ENTITY_TYPES):
        rows = (entity_types == type_index).any(dim=1).to(logits.device)  # [E]
        breakdown[type_name] = {'entities': int(rows.sum()),
                                'hits': recall_hits(logits[rows], labels[rows], ks),
                                'upper_bound': entities_with_target(labels[rows])}
    return breakdown
