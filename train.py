"""Training and evaluation engine for VQA and Flickr30k grounding.

`train_one_epoch` and `evaluate` take their dependencies explicitly and
return metric dicts; `train` runs the recipe (FORMATS §9): Adamax, gradual
warm-up over epochs 0-3, x0.25 decay at epochs 10, 12, ..., gradient norm
clipped to 0.25, saving the best epoch (or every epoch from 3 without a
validation split), exact resume, Ctrl-C checkpoints.
"""
import math
import os
import time
from contextlib import nullcontext

import torch
import torch.distributed as dist
import torch.nn as nn

from base_model import unwrap
from runs import checkpoints, runtime
from runs.checkpoints import EMPTY_SUMS, INTERRUPTED_CHECKPOINT, LAST_CHECKPOINT
from runs.progress import Progress
from runs.runlog import RunLog
from runs.samplers import ShardedBatches
from utils import SecondInterrupt, UserError, graceful_stop

GRAD_CLIP = 0.25
WARMUP_FACTORS = (0.5, 1.0, 1.5, 2.0)  # x base lr at epochs 0..3
DECAY_EPOCHS = range(10, 20, 2)  # x0.25 at each of these
DECAY_RATE = 0.25
FIRST_SAVED_EPOCH = 3  # without a validation split, save every epoch from here


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
    sums = dict(partial or EMPTY_SUMS)
    started = time.time()
    seen_here = 0
    progress = Progress(loader, 'epoch %d' % epoch, total=start_step + len(loader), unit='batches', initial=start_step,
                        enabled=ctx.is_main)
    for step, batch in enumerate(progress, start=start_step):
        batch = task.to_device(batch, device)
        with _autocast(device, amp):
            loss, stats = task.train_step(model, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLoss('loss became %s at epoch %d, step %d; %s'
                                % (loss.item(), epoch, step, _diagnosis(batch)))
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        norm = nn.utils.clip_grad_norm_(unwrap(model).parameters(), grad_clip)
        if scaler is None and not torch.isfinite(norm):  # (with fp16 the scaler skips such steps itself)
            raise NonFiniteLoss('gradient norm became %s at epoch %d, step %d (the loss was %.4g); %s'
                                % (norm.item(), epoch, step, loss.item(), _diagnosis(batch)))
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
        progress.add_samples(stats['samples'])
        progress.set_postfix(loss='%.3f' % loss.item())
        if on_step is not None:
            on_step(step + 1, sums)
    progress.close()
    total = _all_reduce_sums(sums, ctx, device)
    samples = max(total['samples'], 1)
    seconds = time.time() - started
    return {'train_loss': total['loss'] / samples, 'grad_norm': total['norm'] / max(total['steps'], 1),
            'train_score': 100.0 * total['score'] / samples, 'samples': int(total['samples']),
            'seconds': seconds, 'samples_per_s': seen_here * ctx.world_size / max(seconds, 1e-9)}


def _diagnosis(batch):
    """The likely cause of a non-finite loss or gradient, from the batch's
    features and boxes (the first two items of a VQA or Flickr batch)."""
    if not all(torch.isfinite(item).all() for item in batch[:2]):
        return ('this batch\'s features or boxes hold NaN or infinite values: a feature file was not written by our '
                'converters (they refuse such values); re-convert it with tools/process.sh')
    return 'lower the learning rate (--lr), or check the features for NaN/inf (the converters reject them)'


@torch.no_grad()
def evaluate(model, loader, task, device, ctx=None, amp='off', on_batch=None):
    """Metrics of `model` on `loader` (built with ShardedBatches under torchrun).

    Per-batch sums are gathered from every rank and added in batch order, so
    the result equals a single-process evaluation exactly. `on_batch()` is
    called after each batch (train() stops there on Ctrl-C)."""
    ctx = ctx or runtime.DistContext()
    model.eval()
    per_batch = []
    batch_ids = loader.batch_sampler if isinstance(loader.batch_sampler, ShardedBatches) else None
    progress = Progress(loader, 'eval', unit='batches', enabled=ctx.is_main)
    for position, batch in enumerate(progress):
        progress.add_samples(len(batch[0]))
        batch = task.to_device(batch, device)
        with _autocast(device, amp):
            sums = task.eval_step(model, batch)
        index = position * ctx.world_size + ctx.rank if batch_ids is not None else position
        per_batch.append((index, sums))
        if on_batch is not None:
            on_batch()
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


# ----------------------------------------------------------------- state

def _rng_state():
    """The generators that training draws from (dropout): torch CPU and CUDA.
    Shuffling has its own per-epoch generator."""
    state = {'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state):
    # a checkpoint loaded with map_location='cuda' holds the states on the GPU; the generators take CPU bytes
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([part.cpu() for part in state['cuda']])


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
          start_epoch=0, resume=None, amp='off', base_lr=None, run=None, settings=None):
    """The recipe's epoch loop. `resume` is a checkpoint dict of ours (optional
    fields best_eval_score, rng_state, resume_step, partial_sums), checked
    beforehand with check_resume_fields and check_resume_position; `run` (the
    RUN_FIELDS of this run) goes into every checkpoint for that check, and
    `settings` (main.py's RUN_SETTINGS) for a resume to take."""
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
    # Ctrl-C and SIGTERM stop only where the state is consistent: after a whole step (optimizer.step done),
    # between evaluation batches and after an epoch's checkpoints; a second Ctrl-C stops at once, saving nothing
    announce = ('finishing this step, then saving %s (Ctrl-C again to stop at once without saving)'
                % INTERRUPTED_CHECKPOINT)
    stopped_at_once = ('stopped at once by a second Ctrl-C: nothing saved, the checkpoints in %s are as they were'
                       % output)
    with graceful_stop(announce, stopped_at_once) as interrupt:
        for epoch in range(start_epoch, num_epochs):
            lr = learning_rate(base_lr, epoch)
            for group in optimizer.param_groups:
                group['lr'] = lr
            log.write('lr: %.6f' % lr)
            train_loader.batch_sampler.set_epoch(epoch, skip=start_step)
            position = {'step': start_step, 'sums': partial, 'rng': _rng_state()}

            def remember(step, sums):
                position.update(step=step, sums=dict(sums), rng=_rng_state())
                interrupt.check()

            try:
                stats = train_one_epoch(model, train_loader, optimizer, task, device, epoch, amp=amp, scaler=scaler,
                                        ctx=ctx, start_step=start_step, partial=partial, on_step=remember)
                metrics = (evaluate(model, eval_loader, task, device, ctx, amp, on_batch=interrupt.check)
                           if eval_loader is not None else None)
            except SecondInterrupt:
                raise
            except KeyboardInterrupt:  # at a step boundary, or in the evaluation after the last step
                _stop_after_saving(output, model, optimizer, epoch - 1, {
                    'best_eval_score': best_eval_score, 'rng_state': position['rng'], 'resume_step': position['step'],
                    'partial_sums': position['sums'], 'run': run, 'settings': settings}, log, ctx,
                    'at epoch %d, step %d' % (epoch, position['step']))
            start_step, partial = 0, None
            for line in _epoch_lines(epoch, stats, metrics):
                log.write(line)
            record = {'epoch': epoch, 'lr': lr, **{k: v for k, v in stats.items()}}
            if metrics is not None:
                record.update({'eval_' + key: value for key, value in metrics.items()})
            log.write_json(record)
            improved = metrics is not None and metrics['score'] > best_eval_score
            if improved:
                best_eval_score = metrics['score']
            extra = {'best_eval_score': best_eval_score, 'rng_state': _rng_state(), 'run': run, 'settings': settings}
            if ctx.is_main:
                if improved or (eval_loader is None and epoch >= FIRST_SAVED_EPOCH):
                    checkpoints.save_checkpoint(checkpoints.checkpoint_path(output, epoch), model, optimizer, epoch, extra)
                # always resumable from the last finished epoch, whatever the saving rule kept
                checkpoints.save_checkpoint(os.path.join(output, LAST_CHECKPOINT), model, optimizer, epoch, extra)
            if ctx.enabled:
                dist.barrier()
            if interrupt.requested:  # came during the logging or saving above
                _stop_after_saving(output, model, optimizer, epoch, extra, log, ctx, 'at the end of epoch %d' % epoch)
    return best_eval_score


def _stop_after_saving(output, model, optimizer, epoch, extra, log, ctx, where):
    """Save model_interrupted.pth (the main process does) and stop the run:
    a KeyboardInterrupt whose message says what was saved."""
    if not ctx.is_main:
        raise KeyboardInterrupt
    path = os.path.join(output, INTERRUPTED_CHECKPOINT)
    checkpoints.save_checkpoint(path, model, optimizer, epoch, extra)
    log.write('interrupted %s: saved %s (resume with --input %s)' % (where, path, path))
    raise KeyboardInterrupt('stopped by Ctrl-C or SIGTERM %s: saved %s; resume with --input %s'
                            % (where, path, path)) from None
