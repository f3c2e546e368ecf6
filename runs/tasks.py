"""The two training tasks: how a batch is moved, its loss and score, and how
evaluation sums become metrics. VQA: the recipe's BCE and the VQA soft
score; Flickr30k: the grounding loss and Recall@k (FORMATS §7, §9)."""
import torch
import torch.nn.functional as F

from formats import grounding
from formats.flickr_files import ENTITY_TYPES


def instance_bce_with_logits(logits, labels, reduction='mean'):
    """BCE with logits; with 'mean', multiplied by the number of answers."""
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction=reduction)
    if reduction == 'mean':
        loss = loss * labels.size(1)
    return loss


def compute_score_with_logits(logits, labels):
    """Soft score of the arg-max answer per question: [B, n_ans] -> [B]."""
    picked = logits.argmax(1, keepdim=True)  # [B,1]
    return labels.gather(1, picked).squeeze(1)  # [B]


def calc_entropy(att):
    """Attention entropy summed over the batch, per glimpse: [B,G,N,L] -> [G]."""
    p = att.reshape(att.size(0), att.size(1), -1).float()  # [B,G,N*L]
    return (-p * (p + 1e-8).log()).sum(2).sum(0)  # [G]


# ----------------------------------------------------------------- tasks

TOP_KEPT = 5  # answers (or boxes, x2) kept per item for the report


def top_answers(logits, count=TOP_KEPT):
    """Per item [(label, probability)] of its `count` most probable answers
    (sigmoid of the logits, what the BCE trains), most probable first."""
    top = torch.sigmoid(logits.float()).topk(min(count, logits.size(1)), dim=1)
    return [list(zip(labels, [round(p, 6) for p in probs]))
            for labels, probs in zip(top.indices.tolist(), top.values.tolist())]


def entity_records(logits, labels, entity_counts, types):
    """One dict per entity row of logits [E, N] (rows in batch order, each
    sample's entities in order): 'entity' (its index in the sample), 'top'
    (the 10 most probable boxes as [box, probability]), 'targets' (its
    ground-truth boxes), 'types' (entity type indices)."""
    top = torch.sigmoid(logits).topk(min(2 * TOP_KEPT, logits.size(1)), dim=1)
    records = []
    row = 0
    for count in entity_counts:
        for entity in range(int(count)):
            records.append({'entity': entity,
                            'top': [[box, round(p, 6)] for box, p in zip(top.indices[row].tolist(),
                                                                         top.values[row].tolist())],
                            'targets': (labels[row] > 0).nonzero().flatten().tolist(),
                            'types': [t for t in types[row].tolist() if t >= 0]})
            row += 1
    return records


class VQATask:
    """Batches (v, b, q, target); loss = the recipe's BCE; score = VQA soft score.

    With `keep_answers` evaluation also returns 'answers': the arg-max label of
    every item in loader order (for the official metric, without a second pass).
    """
    name = 'vqa'
    concatenated = ('answers', 'top_answers')  # per-item lists that evaluate() joins instead of adding

    def __init__(self, keep_answers=False, keep_top=False):
        self.keep_answers = keep_answers
        self.keep_top = keep_top

    @staticmethod
    def to_device(batch, device):
        return [item.to(device, non_blocking=True) for item in batch]

    def train_step(self, model, batch):
        v, b, q, target = batch
        logits, _ = model(v, b, q, target)  # [B,n_ans]
        loss = instance_bce_with_logits(logits.float(), target)
        score = compute_score_with_logits(logits.detach(), target).sum()
        return loss, {'score': score.item(), 'samples': v.size(0)}

    def eval_step(self, model, batch):
        v, b, q, target = batch
        logits, att = model(v, b, q, None)
        sums = {'score': compute_score_with_logits(logits, target).sum().item(),
                'upper_bound': target.max(1)[0].sum().item(),
                'samples': v.size(0),
                'entropy': calc_entropy(att).tolist()}
        if self.keep_answers:
            sums['answers'] = logits.argmax(1).tolist()
        if self.keep_top:
            sums['top_answers'] = top_answers(logits)
        return sums

    @staticmethod
    def summarise(sums):
        samples = max(sums.get('samples', 0), 1)
        result = {'score': 100.0 * sums.get('score', 0.0) / samples,
                  'upper_bound': 100.0 * sums.get('upper_bound', 0.0) / samples,
                  'samples': int(sums.get('samples', 0))}
        if 'entropy' in sums:
            result['entropy'] = [value / samples for value in sums['entropy']]
        for key in VQATask.concatenated:
            if key in sums:
                result[key] = sums[key]
        return result


class FlickrTask:
    """Batches (v, b, q, e_pos, e_num, target, entity_ids, entity_types);
    loss = summed BCE over the valid entities' box logits / batch.

    With `keep_entities` evaluation also returns 'entities_kept': one record
    per entity in loader order (entity_record), for evaluate.py --report."""
    name = 'flickr'
    concatenated = ('entities_kept',)

    def __init__(self, keep_entities=False):
        self.keep_entities = keep_entities

    @staticmethod
    def to_device(batch, device):
        v, b, q, e, n, target, ids, types = batch
        moved = [item.to(device, non_blocking=True) for item in (v, b, q, e, n, target)]
        return moved + [ids, types]

    def train_step(self, model, batch):
        v, b, q, e, n, target = batch[:6]
        _, att_logits = model(v, b, q, e, None)  # [B,1,N,16]
        loss = grounding.grounding_loss(att_logits.float(), n, target)
        logits, labels = grounding.merge_entity_logits(att_logits.detach().float(), n, target)
        hits = grounding.recall_hits(logits, labels, (1,))
        return loss, {'score': float(hits[1]), 'samples': logits.size(0)}

    def eval_step(self, model, batch):
        v, b, q, e, n, target, _, types = batch
        _, att_logits = model(v, b, q, e, None)
        logits, labels = grounding.merge_entity_logits(att_logits.float(), n, target)
        sums = {'samples': logits.size(0), 'upper_bound': float(grounding.entities_with_target(labels))}
        for k, hits in grounding.recall_hits(logits, labels, (1, 5, 10)).items():
            sums['r@%d' % k] = float(hits)
        merged_types = torch.cat([t[:int(count)] for t, count in zip(types, n[:, 0].tolist())], 0)  # [E,3]
        by_type = grounding.recall_hits_by_type(logits, labels, merged_types, (1, 5, 10))
        for type_name, counts in by_type.items():
            sums['n_' + type_name] = float(counts['entities'])
            for k, hits in counts['hits'].items():
                sums['r@%d_%s' % (k, type_name)] = float(hits)
        if self.keep_entities:
            sums['entities_kept'] = entity_records(logits, labels, n[:, 0].tolist(), merged_types)
        return sums

    def summarise(self, sums):
        entities = max(sums.get('samples', 0), 1)
        result = {'entities': int(sums.get('samples', 0)),
                  'upper_bound': 100.0 * sums.get('upper_bound', 0.0) / entities}
        for k in (1, 5, 10):
            if 'r@%d' % k in sums:
                result['recall@%d' % k] = 100.0 * sums['r@%d' % k] / entities
        result['score'] = result.get('recall@1', 100.0 * sums.get('score', 0.0) / entities)
        per_type = {}
        for type_name in ENTITY_TYPES:
            count = sums.get('n_' + type_name, 0)
            if count:
                per_type[type_name] = {'entities': int(count)}
                for k in (1, 5, 10):
                    if 'r@%d_%s' % (k, type_name) in sums:
                        per_type[type_name]['recall@%d' % k] = 100.0 * sums['r@%d_%s' % (k, type_name)] / count
        if per_type:
            result['recall@1_per_type'] = per_type
        if 'entities_kept' in sums:
            result['entities_kept'] = sums['entities_kept']
        return result


TASKS = {'vqa': VQATask, 'flickr': FlickrTask}
