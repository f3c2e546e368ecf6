"""Training and evaluation engine for VQA and Flickr30k grounding.

`train_one_epoch` and `evaluate` take their dependencies explicitly and
return metric dicts; `train` runs the recipe (FORMATS §9): Adamax, gradual
warm-up over epochs 0-3, x0.25 decay at epochs 10, 12, ..., gradient norm
clipped to 0.25, saving the best epoch (or every epoch from 3 without a
validation split), exact resume, Ctrl-C checkpoints.
"""
import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import nullcontext

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import BatchSampler, Sampler
from tqdm import tqdm

import runtime
from base_model import unwrap
from utils import UserError, atomic_write

GRAD_CLIP = 0.25
WARMUP_FACTORS = (0.5, 1.0, 1.5, 2.0)  # x base lr at epochs 0..3
DECAY_EPOCHS = range(10, 20, 2)  # x0.25 at each of these
DECAY_RATE = 0.25
FIRST_SAVED_EPOCH = 3  # without a validation split, save every epoch from here
LAST_CHECKPOINT = 'model_last.pth'


class NonFiniteLoss(UserError):
    """Training diverged: the message names the epoch and step."""


# ----------------------------------------------------------------- recipe

def base_learning_rate(has_validation):
    """1e-3 with a held-out validation split, 7e-4 training on train+val(+VG)."""
    return 1e-3 if has_validation else 7e-4


def learning_rate(base_lr, epoch):
    """The original's schedule as a pure function of the epoch (so resume is exact)."""
    if epoch < len(WARMUP_FACTORS):
        return WARMUP_FACTORS[epoch] * base_lr
    decays = sum(1 for decay_epoch in DECAY_EPOCHS if decay_epoch <= epoch)
    return WARMUP_FACTORS[-1] * base_lr * DECAY_RATE ** decays


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

class VQATask:
    """Batches (v, b, q, target); loss = the recipe's BCE; score = VQA soft score.

    With `keep_answers` evaluation also returns 'answers': the arg-max label of
    every item in loader order (for the official metric, without a second pass).
    """
    name = 'vqa'
    concatenated = ('answers',)  # per-item lists that evaluate() joins instead of adding

    def __init__(self, keep_answers=False):
        self.keep_answers = keep_answers

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
        return sums

    @staticmethod
    def summarise(sums):
        samples = max(sums.get('samples', 0), 1)
        result = {'score': 100.0 * sums.get('score', 0.0) / samples,
                  'upper_bound': 100.0 * sums.get('upper_bound', 0.0) / samples,
                  'samples': int(sums.get('samples', 0))}
        if 'entropy' in sums:
            result['entropy'] = [value / samples for value in sums['entropy']]
        if 'answers' in sums:
            result['answers'] = sums['answers']
        return result


class FlickrTask:
    """Batches (v, b, q, e_pos, e_num, target, entity_ids, entity_types);
    loss = summed BCE over the valid entities' box logits / batch."""
    name = 'flickr'
    concatenated = ()

    @staticmethod
    def to_device(batch, device):
        v, b, q, e, n, target, ids, types = batch
        moved = [item.to(device, non_blocking=True) for item in (v, b, q, e, n, target)]
        return moved + [ids, types]

    def train_step(self, model, batch):
        import dataset_flickr
        v, b, q, e, n, target = batch[:6]
        _, att_logits = model(v, b, q, e, None)  # [B,1,N,16]
        loss = dataset_flickr.grounding_loss(att_logits.float(), n, target)
        logits, labels = dataset_flickr.merge_entity_logits(att_logits.detach().float(), n, target)
        hits = dataset_flickr.recall_hits(logits, labels, (1,))
        return loss, {'score': float(hits[1]), 'samples': logits.size(0)}

    def eval_step(self, model, batch):
        import dataset_flickr
        v, b, q, e, n, target, _, types = batch
        _, att_logits = model(v, b, q, e, None)
        logits, labels = dataset_flickr.merge_entity_logits(att_logits.float(), n, target)
        sums = {'samples': logits.size(0), 'upper_bound': float(dataset_flickr.entities_with_target(labels))}
        for k, hits in dataset_flickr.recall_hits(logits, labels, (1, 5, 10)).items():
            sums['r@%d' % k] = float(hits)
        merged_types = torch.cat([t[:int(count)] for t, count in zip(types, n[:, 0].tolist())], 0)  # [E,3]
        by_type = dataset_flickr.recall_hits_by_type(logits, labels, merged_types, (1,))
        for type_name, counts in by_type.items():
            sums['n_' + type_name] = float(counts['entities'])
            sums['r@1_' + type_name] = float(counts['hits'][1])
        return sums

    def summarise(self, sums):
        from dataset_flickr import ENTITY_TYPES
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
                per_type[type_name] = {'entities': int(count),
                                       'recall@1': 100.0 * sums['r@1_' + type_name] / count}
        if per_type:
            result['recall@1_per_type'] = per_type
        return result


TASKS = {'vqa': VQATask, 'flickr': FlickrTask}


# ----------------------------------------------------------------- sampling

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
    """A batch sampler that leaves out the first `skip` batches of the next
    epoch (resuming an interrupted epoch without loading its done batches)."""

    def __init__(self, batch_sampler):
        self.batch_sampler = batch_sampler
        self.skip = 0

    def set_epoch(self, epoch):
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
        from samplers import BucketBatchSampler
        sampler = BucketBatchSampler(lengths, batch_size, shuffle=True, seed=seed,
                                     num_replicas=ctx.world_size, rank=ctx.rank)
    elif ctx.enabled:
        from torch.utils.data.distributed import DistributedSampler
        sampler = BatchSampler(DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=seed),
                               batch_size, drop_last=False)
    else:
        sampler = BatchSampler(EpochShuffle(len(dataset), seed), batch_size, drop_last=False)
    return SkipBatches(sampler)


# ----------------------------------------------------------------- engine

def _autocast(device, amp):
    if amp in (None, 'off'):
        return nullcontext()
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)


def _all_reduce_sums(sums, ctx, device):
    """Sum scalar metrics over ranks (training statistics)."""
    if not ctx.enabled:
        return sums
    keys = sorted(sums)
    values = torch.tensor([float(sums[key]) for key in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    return dict(zip(keys, values.tolist()))


def train_one_epoch(model, loader, optimizer, task, device, epoch, grad_clip=GRAD_CLIP, amp='off',
                    scaler=None, ctx=None, start_step=0, partial=None, on_step=None):
    """One pass over `loader`. Returns {'train_loss', 'grad_norm', 'train_score',
    'samples', 'seconds', 'samples_per_s'}; `start_step`/`partial` continue an
    interrupted epoch; `on_step(step, sums)` is called after each step (used to
    checkpoint on Ctrl-C)."""
    ctx = ctx or runtime.DistContext()
    model.train()
    sums = dict(partial or {'loss': 0.0, 'norm': 0.0, 'steps': 0, 'score': 0.0, 'samples': 0})
    started = time.time()
    seen_here = 0
    progress = tqdm(loader, desc='epoch %d' % epoch, disable=not (ctx.is_main and sys.stderr.isatty()), leave=False,
                    initial=start_step, total=start_step + len(loader), dynamic_ncols=True)
    for step, batch in enumerate(progress, start=start_step):
        batch = task.to_device(batch, device)
        with _autocast(device, amp):
            loss, stats = task.train_step(model, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLoss('loss became %s at epoch %d, step %d; lower the learning rate or check '
                                'the features for NaN/inf (the converters reject them)'
                                % (loss.item(), epoch, step))
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        norm = nn.utils.clip_grad_norm_(unwrap(model).parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        sums['loss'] += loss.item() * stats['samples']
        sums['norm'] += norm.item()
        sums['steps'] += 1
        sums['score'] += stats['score']
        sums['samples'] += stats['samples']
        seen_here += stats['samples']
        elapsed = max(time.time() - started, 1e-9)
        progress.set_postfix(loss='%.3f' % loss.item(), samples_s='%.0f' % (seen_here / elapsed))
        if on_step is not None:
            on_step(step + 1, sums)
    progress.close()
    total = _all_reduce_sums(sums, ctx, device)
    samples = max(total['samples'], 1)
    seconds = time.time() - started
    return {'train_loss': total['loss'] / samples, 'grad_norm': total['norm'] / max(total['steps'], 1),
            'train_score': 100.0 * total['score'] / samples, 'samples': int(total['samples']),
            'seconds': seconds, 'samples_per_s': seen_here * ctx.world_size / max(seconds, 1e-9)}


@torch.no_grad()
def evaluate(model, loader, task, device, ctx=None, amp='off'):
    """Metrics of `model` on `loader` (built with ShardedBatches under torchrun).

    Per-batch sums are gathered from every rank and added in batch order, so
    the result equals a single-process evaluation exactly."""
    ctx = ctx or runtime.DistContext()
    model.eval()
    per_batch = []
    batch_ids = loader.batch_sampler if isinstance(loader.batch_sampler, ShardedBatches) else None
    for position, batch in enumerate(tqdm(loader, desc='eval', disable=not (ctx.is_main and sys.stderr.isatty()),
                                          leave=False)):
        batch = task.to_device(batch, device)
        with _autocast(device, amp):
            sums = task.eval_step(model, batch)
        index = position * ctx.world_size + ctx.rank if batch_ids is not None else position
        per_batch.append((index, sums))
    if ctx.enabled:
        gathered = [None] * ctx.world_size
        dist.all_gather_object(gathered, per_batch)
        per_batch = [item for rank_items in gathered for item in rank_items]
    totals = {}
    for _, sums in sorted(per_batch, key=lambda item: item[0]):
        for key, value in sums.items():
            if key in task.concatenated:
                totals.setdefault(key, []).extend(value)
            elif isinstance(value, list):
                totals[key] = [a + b for a, b in zip(totals.get(key, [0.0] * len(value)), value)]
            else:
                totals[key] = totals.get(key, 0.0) + value
    return task.summarise(totals)


# ----------------------------------------------------------------- logging

class RunLog:
    """Human-readable lines in <output>/log.txt, one JSON object per epoch in
    <output>/log.jsonl; rank 0 only; appended to on resume."""

    def __init__(self, output, enabled=True):
        self.enabled = enabled
        self.text_path = os.path.join(output, 'log.txt')
        self.json_path = os.path.join(output, 'log.jsonl')
        if enabled:
            os.makedirs(output, exist_ok=True)

    def write(self, line):
        if not self.enabled:
            return
        print(line, flush=True)
        with open(self.text_path, 'a', encoding='utf-8') as handle:
            handle.write(line + '\n')

    def write_json(self, record):
        if not self.enabled:
            return
        with open(self.json_path, 'a', encoding='utf-8') as handle:
            handle.write(json.dumps(record, sort_keys=True) + '\n')

    def drop_epochs_from(self, epoch):
        """Resuming at `epoch`: keep only the log.jsonl records of earlier
        epochs. A run stopped after logging an epoch but before saving its
        checkpoint re-runs that epoch, which would otherwise be logged twice;
        a line torn by a crash goes too."""
        if not self.enabled or not os.path.exists(self.json_path):
            return
        kept = []
        with open(self.json_path, 'r', encoding='utf-8') as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get('epoch'), int) and record['epoch'] < epoch:
                    kept.append(line.rstrip('\n') + '\n')
        with atomic_write(self.json_path, 'w') as handle:
            handle.write(''.join(kept))


def _rng_state():
    """The generators that training draws from (dropout): torch CPU and CUDA.
    Shuffling has its own per-epoch generator."""
    state = {'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state):
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class GracefulInterrupt:
    """First Ctrl-C: finish the current step, then raise KeyboardInterrupt at a
    step boundary (so the saved state is consistent). Second Ctrl-C: at once.

    DataLoader workers forked meanwhile inherit the handler, and Ctrl-C
    reaches them too: there it does nothing, so the message is printed once."""

    def __init__(self):
        self.requested = False
        self.previous = None
        self.pid = os.getpid()

    def _handle(self, signum, frame):
        if os.getpid() != self.pid:  # a forked worker: the main process acts
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        stderr('interrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort)')

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _epoch_lines(epoch, stats, metrics):
    lines = ['epoch %d, time: %.2f' % (epoch, stats['seconds']),
             '\ttrain_loss: %.2f, norm: %.4f, score: %.2f' % (stats['train_loss'], stats['grad_norm'],
                                                            stats['train_score'])]
    if metrics is not None:
        lines.append('\teval score: %.2f (%.2f)' % (metrics['score'], metrics['upper_bound']))
        if 'entropy' in metrics:
            lines.append('\tentropy: ' + ' '.join('%.2f' % value for value in metrics['entropy']))
        for k in (5, 10):
            if 'recall@%d' % k in metrics:
                lines.append('\trecall@%d: %.2f' % (k, metrics['recall@%d' % k]))
    return lines


def train(model, train_loader, eval_loader, num_epochs, output, optimizer, task, device, ctx=None,
          start_epoch=0, resume=None, amp='off', base_lr=None):
    """The recipe's epoch loop. `resume` is a checkpoint dict of ours (optional
    fields best_eval_score, rng_state, resume_step, partial_sums)."""
    ctx = ctx or runtime.DistContext()
    resume = resume or {}
    base_lr = base_lr or base_learning_rate(eval_loader is not None)
    log = RunLog(output, ctx.is_main)
    if resume:
        log.drop_epochs_from(start_epoch)
    scaler = torch.amp.GradScaler(device.type) if amp == 'fp16' else None
    best_eval_score = resume.get('best_eval_score', -math.inf)
    if 'rng_state' in resume:
        _restore_rng(resume['rng_state'])
    start_step, partial = resume.get('resume_step', 0), resume.get('partial_sums')
    if start_epoch == 0 and not start_step:
        log.write('optim: adamax lr=%.4f, decay_step=%d, decay_rate=%.2f, grad_clip=%.2f'
                  % (base_lr, DECAY_EPOCHS.step, DECAY_RATE, GRAD_CLIP))
    for epoch in range(start_epoch, num_epochs):
        lr = learning_rate(base_lr, epoch)
        for group in optimizer.param_groups:
            group['lr'] = lr
        log.write('lr: %.6f' % lr)
        train_loader.batch_sampler.set_epoch(epoch)
        train_loader.batch_sampler.skip = start_step
        interrupt_state = {'step': start_step, 'sums': partial, 'rng': _rng_state()}

        def remember(step, sums):
            interrupt_state.update(step=step, sums=dict(sums), rng=_rng_state())
            if interrupt.requested:
                raise KeyboardInterrupt

        try:
            with GracefulInterrupt() as interrupt:
                stats = train_one_epoch(model, train_loader, optimizer, task, device, epoch, amp=amp, scaler=scaler,
                                        ctx=ctx, start_step=start_step, partial=partial, on_step=remember)
        except KeyboardInterrupt:
            if ctx.is_main:
                path = os.path.join(output, 'model_interrupted.pth')
                runtime.save_checkpoint(path, model, optimizer, epoch - 1, {
                    'best_eval_score': best_eval_score, 'rng_state': interrupt_state['rng'],
                    'resume_step': interrupt_state['step'], 'partial_sums': interrupt_state['sums']})
                log.write('interrupted at epoch %d, step %d: saved %s (resume with --input %s)'
                          % (epoch, interrupt_state['step'], path, path))
            raise
        start_step, partial = 0, None
        metrics = evaluate(model, eval_loader, task, device, ctx, amp) if eval_loader is not None else None
        for line in _epoch_lines(epoch, stats, metrics):
            log.write(line)
        record = {'epoch': epoch, 'lr': lr, **{k: v for k, v in stats.items()}}
        if metrics is not None:
            record.update({'eval_' + key: value for key, value in metrics.items()})
        log.write_json(record)
        improved = metrics is not None and metrics['score'] > best_eval_score
        if improved:
            best_eval_score = metrics['score']
        if ctx.is_main:
            extra = {'best_eval_score': best_eval_score, 'rng_state': _rng_state()}
            if improved or (eval_loader is None and epoch >= FIRST_SAVED_EPOCH):
                runtime.save_checkpoint(runtime.checkpoint_path(output, epoch), model, optimizer, epoch, extra)
            # always resumable from the last finished epoch, whatever the saving rule kept
            runtime.save_checkpoint(os.path.join(output, LAST_CHECKPOINT), model, optimizer, epoch, extra)
        if ctx.enabled:
            dist.barrier()
    return best_eval_score


def stderr(message):
    print(message, file=sys.stderr, flush=True)
