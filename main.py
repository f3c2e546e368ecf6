"""Train BAN on VQA 2.0 (default) or Flickr30k Entities (--task flickr).

    python3 main.py --use_both True --use_vg True    # train+val+VG, save every epoch from 3
    python3 main.py                                  # train, validate each epoch, keep the best
    python3 main.py --task flickr --out saved_models/flickr
    torchrun --nproc_per_node 4 main.py ...          # DistributedDataParallel
    python3 main.py --input saved_models/ban/model_last.pth   # resume exactly
    python3 main.py --input saved_models/ban                  # the same: the newest of model_last/interrupted
    python3 main.py --evaluate --input saved_models/ban/model_epoch12.pth

With --input the model's settings come from the checkpoint when it records
them (ours), else from the flags (the original's).
"""
import argparse
import math
import signal
import sys
import threading

import torch
from torch.utils.data import ConcatDataset

import base_model
import evaluate
import train
from dataset import (
    Flickr30kFeatureDataset,
    VisualGenomeFeatureDataset,
    VQAFeatureDataset,
)
from formats.dictionary import load_dictionary
from formats.glove import glove_init_path
from formats.paths import glove_text_file, task_root
from formats.tfidf import tfidf_from_questions
from runs import checkpoints, curves, rundir, runtime
from runs.flags import (
    SEED,
    add_model_flags,
    apply_task_overrides,
    check_output_folder,
    parse_command_line,
    positive_int,
    refuse_ignored_flags,
    str2bool,
)
from runs.loaders import eval_loader_for, make_loader, stop_workers
from runs.samplers import train_batch_sampler
from runs.tasks import TASKS
from utils import UserError, note, run_cli, seed_everything


def bool_flag(parser, name, default, bare_means, help_text):
    """A flag usable as `--x`, `--x True` or `--x false`. A bare `--tfidf`
    means False, as the original's store_false flag did."""
    parser.add_argument(name, type=str2bool, nargs='?', const=bare_means, default=default, help=help_text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(parser)
    parser.add_argument('--epochs', type=positive_int, default=13,
                        help='epochs in all (a resumed run continues up to this number)')
    bool_flag(parser, '--use_both', False, True, 'train on train+val (no validation)')
    bool_flag(parser, '--use_vg', False, True, 'add Visual Genome questions')
    bool_flag(parser, '--tfidf', True, False, 'tf-idf embedding table for op "c" (a bare --tfidf turns it '
                                              'OFF, as in the original)')
    parser.add_argument('--tfidf_sources', type=str, default='vqa,vg,cap',
                        help='sentences of the tf-idf graph: vqa (questions), vg (Visual Genome questions), cap '
                             '(COCO captions); drop cap to skip the captions, as the original README suggests')
    parser.add_argument('--input', type=str, default=None,
                        help='checkpoint to resume from (--evaluate: to evaluate): a file, or the folder a run saved '
                             'into (resume: its newest model_last.pth or model_interrupted.pth; --evaluate: its '
                             'highest model_epoch<N>.pth)')
    parser.add_argument('--output', type=str, default=None,
                        help='checkpoint folder (default saved_models/ban, or saved_models/flickr); one run per '
                             'folder: a fresh run refuses a folder holding another run\'s checkpoints')
    parser.add_argument('--overwrite', action='store_true',
                        help='let a fresh run delete the checkpoints and logs of the run in --output')
    parser.add_argument('--batch_size', type=positive_int, default=256,
                        help='global batch (split over torchrun processes)')
    parser.add_argument('--seed', type=SEED, default=1204, help='random seed (offset by rank)')
    parser.add_argument('--amp', choices=['off', 'bf16', 'fp16'], default='off', help='mixed precision')
    parser.add_argument('--lr', type=float, default=None, help='base lr (default 1e-3 with validation, '
                                                               '7e-4 with --use_both)')
    bool_flag(parser, '--bucket', False, True, 'batch images of similar box counts together')
    bool_flag(parser, '--load_in_memory', False, True, 'read all features into RAM (fast, needs ~32 GB)')
    bool_flag(parser, '--fix_alignment', False, True, 'Flickr30k: correct the phrase/token alignment quirk')
    bool_flag(parser, '--evaluate', False, True, 'only evaluate --input (val for vqa, test for flickr)')
    args = parse_command_line(parser, argv)
    refuse_ignored_flags(parser, argv, ignored_flag_rules(args))
    if args.input is not None:
        pick = (lambda path: checkpoints.choose(path)[0]) if args.evaluate else checkpoints.resume_file
        args.input = pick(args.input)
        checkpoints.adopt_from_file(args, args.input)
    if args.output is None:
        args.output = 'saved_models/flickr' if args.task == 'flickr' else 'saved_models/ban'
    args.split = 'test' if args.task == 'flickr' else 'val'  # the split --evaluate scores
    if args.lr is not None and not 0 < args.lr < math.inf:
        parser.error('argument --lr: must be > 0 and finite, got %r' % args.lr)
    return apply_task_overrides(args)


def ignored_flag_rules(args):
    """[(flag dest, would it be ignored?, why)] for refuse_ignored_flags."""
    rules = []
    if args.task == 'flickr':
        vqa_only = 'Flickr30k trains on its train split and validates on val; this flag is for --task vqa'
        rules += [('use_both', args.use_both, vqa_only), ('use_vg', args.use_vg, vqa_only),
                  ('tfidf', args.tfidf, 'the tf-idf table is for --task vqa with --op c'),
                  ('tfidf_sources', True, 'the tf-idf table is for --task vqa with --op c'),
                  ('op', args.op != '', "Flickr30k uses --op '' (as the original does); drop the flag"),
                  ('gamma', args.gamma != 1, 'Flickr30k uses one glimpse (as the original does); drop the flag')]
    else:
        rules.append(('fix_alignment', args.fix_alignment, 'the phrase alignment is for --task flickr'))
        if 'c' not in args.op:
            rules += [('tfidf', args.tfidf, "the tf-idf table exists only with --op c"),
                      ('tfidf_sources', True, "the tf-idf table exists only with --op c")]
        elif not args.tfidf:
            rules.append(('tfidf_sources', True, 'the tf-idf table is turned off (--tfidf false)'))
    if args.evaluate:
        only = '--evaluate only evaluates --input; this flag is for training'
        rules += [(dest, True, only) for dest in ('epochs', 'lr', 'tfidf', 'tfidf_sources')]
        rules += [('use_both', args.use_both, only), ('use_vg', args.use_vg, only), ('bucket', args.bucket, only),
                  ('amp', args.amp != 'off', only), ('load_in_memory', args.load_in_memory, only),
                  ('output', True, '--evaluate prints the metrics and writes no file (evaluate.py --output '
                                   'writes them to a JSON file)')]
    return rules


# ----------------------------------------------------------------- data

def load_vqa_splits(args, dictionary, names):
    return {name: VQAFeatureDataset(name, dictionary, dataroot=args.dataroot, adaptive=True,
                                    load_in_memory=args.load_in_memory) for name in names}


def load_vg_splits(args, dictionary, vqa_splits):
    return [VisualGenomeFeatureDataset(name, vqa_splits[name], dictionary, dataroot=args.dataroot)
            for name in vqa_splits]


def training_data(args, dictionary):
    """(train dataset, validation dataset or None) following --use_both / --use_vg."""
    if args.task == 'flickr':
        root = task_root(args.dataroot, 'flickr')
        splits = [Flickr30kFeatureDataset(name, dictionary, dataroot=root, fix_alignment=args.fix_alignment,
                                          load_in_memory=args.load_in_memory) for name in ('train', 'val')]
        return splits[0], splits[1]
    if args.use_both:
        splits = load_vqa_splits(args, dictionary, ['train', 'val'])
        parts = [splits['train'], splits['val']]
        if args.use_vg:
            parts += load_vg_splits(args, dictionary, splits)
        return ConcatDataset(parts), None
    splits = load_vqa_splits(args, dictionary, ['train', 'val'])
    train_set = splits['train']
    if args.use_vg:  # VG questions of train images only: val stays held out
        train_set = ConcatDataset([train_set] + load_vg_splits(args, dictionary, {'train': train_set}))
    return train_set, splits['val']


def leaf_datasets(dataset):
    """The datasets that a ConcatDataset joins (the dataset itself otherwise)."""
    if isinstance(dataset, ConcatDataset):
        return [leaf for part in dataset.datasets for leaf in leaf_datasets(part)]
    return [dataset]


def check_feature_widths(train_set, val_set):
    """Every split of the run (train, val, Visual Genome) must hold features
    of the width the model is built for (read from the HDF5 metadata)."""
    parts = leaf_datasets(train_set) + (leaf_datasets(val_set) if val_set is not None else [])
    first = parts[0]
    for part in parts[1:]:
        if (part.v_dim, part.s_dim) != (first.v_dim, first.s_dim):
            raise UserError('%s holds features of width %d (and %d spatial values) but %s holds %d (and %d): the '
                            'splits come from different feature files; convert all of them from the same release '
                            '(tools/process.sh)' % (features_file(part), part.v_dim, part.s_dim, features_file(first),
                                                    first.v_dim, first.s_dim))


def features_file(dataset):
    return getattr(dataset, 'feature_store', dataset).h5_path


def box_counts(dataset):
    """Boxes per item, for --bucket."""
    return [count for part in leaf_datasets(dataset) for count in part.box_counts()]


# ----------------------------------------------------------------- model

def uses_tfidf(args):
    """The tf-idf matrix initialises (and so makes trainable) the table `emb_`
    of op 'c' for VQA unless --tfidf is off, as in the original."""
    return args.task == 'vqa' and args.tfidf and 'c' in args.op


def init_word_embedding(model, args, dictionary):
    """GloVe init, plus the tf-idf table for op 'c' (FORMATS §6)."""
    tfidf, weights = None, None
    if uses_tfidf(args):
        extended = dictionary.copy()  # grows with VG/caption words; the datasets keep the original
        glove_text = glove_text_file(args.dataroot, args.emb_dim)
        tfidf, weights = tfidf_from_questions(['train', 'val', 'test2015'], extended, dataroot=args.dataroot,
                                              target=args.tfidf_sources.split(','), glove_file=glove_text)
    model.w_emb.init_embedding(glove_init_path(args.dataroot, args.task, args.emb_dim), tfidf, weights)


def load_resumed_weights(model, args, checkpoint, ctx):
    """--input: the checkpoint's weights replace any initialisation (so the
    tf-idf matrix is not rebuilt), and `emb_` trains or stays frozen as in the
    run that saved the checkpoint, which must be known before the optimizer
    is built. A checkpoint without optimizer state follows --tfidf."""
    config = checkpoints.saved_config(checkpoint, args.input)
    if config is not None:
        checkpoints.check_data(config, model.config, args.input, args.dataroot)
    checkpoints.load_model_state(model, checkpoint['model_state'], args.input)
    if 'c' not in args.op:
        return
    model.w_emb.set_table_trainable(uses_tfidf(args))
    if checkpoints.match_table_to_optimizer_state(model, checkpoint.get('optimizer_state')) and ctx.is_main:
        if model.w_emb.emb_.weight.requires_grad:
            print('note: %s was trained with the tf-idf table emb_ trainable (its optimizer state has an entry '
                  'for it); it keeps training, whatever --tfidf says' % args.input)
        else:
            print('note: %s was trained with the tf-idf table emb_ frozen (its optimizer state has no entry for '
                  'it: --tfidf off, or a checkpoint of an older version of this code); it stays frozen' % args.input)


def require_epochs_left(start_epoch, args):
    if start_epoch >= args.epochs:
        raise UserError('%s has finished epoch %d, so --epochs %d leaves nothing to train; pass --epochs %d or '
                        'more to train on' % (args.input, start_epoch - 1, args.epochs, start_epoch + 1))


def per_rank_batch(args, ctx):
    if args.batch_size % ctx.world_size:
        raise UserError('--batch_size %d is not divisible by the %d torchrun processes'
                        % (args.batch_size, ctx.world_size))
    return args.batch_size // ctx.world_size


def run(args):
    ctx, device = runtime.init_distributed(args.device)
    seed_everything(args.seed + ctx.rank)
    with runtime.deterministic_on_cpu(device):
        return train_or_evaluate(args, ctx, device)


def train_or_evaluate(args, ctx, device):
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    task = TASKS[args.task]()
    if not args.evaluate:
        check_output_folder(args.output, '--output', 'main.py writes its checkpoints and logs into')
    dictionary = load_dictionary(args.dataroot, args.task)
    batch_size = per_rank_batch(args, ctx)
    if args.evaluate:
        return evaluate_only(args, dictionary, task, device, ctx, batch_size)
    # claimed before the data is read: a second run into it fails at once
    with rundir.OutputFolder(args.output, args.overwrite, args.input) if ctx.is_main else rundir.NoFolder() as folder:
        return train_run(args, dictionary, task, device, ctx, batch_size, folder)


def train_run(args, dictionary, task, device, ctx, batch_size, folder):
    """Read the data, build the model and optimizer, check everything that can
    be checked before the first step, then train into `folder`."""
    train_set, val_set = training_data(args, dictionary)
    check_feature_widths(train_set, val_set)
    first = train_set.datasets[0] if isinstance(train_set, ConcatDataset) else train_set
    config = base_model.ModelConfig.from_flags(args, args.task, dictionary.ntoken, first.v_dim, first.num_ans_candidates)
    model = base_model.build_model(config)
    resume = {} if args.input is None else checkpoints.load_checkpoint(args.input, map_location=device)
    if resume:
        checkpoints.check_resume_fields(resume, args.input)
        load_resumed_weights(model, args, resume, ctx)
    else:
        init_word_embedding(model, args, dictionary)
    model = model.to(device)
    base_lr = args.lr or train.base_learning_rate(val_set is not None)
    # the original's filter(requires_grad, model.parameters()): its order gives the state's indices
    optimizer = torch.optim.Adamax([p for p in model.parameters() if p.requires_grad], lr=base_lr)
    start_epoch = 0
    if resume:
        start_epoch = checkpoints.resume_epoch(resume, args.input) + 1
        require_epochs_left(start_epoch, args)
        if 'optimizer_state' in resume:
            checkpoints.load_optimizer_state(optimizer, resume['optimizer_state'], args.input)
        if ctx.is_main:
            print('resuming from %s at epoch %d%s' % (args.input, start_epoch, ', step %d' % resume['resume_step']
                                                      if resume.get('resume_step') else ''))
    model = runtime.wrap_model(model, device, ctx)
    lengths = box_counts(train_set) if args.bucket else None
    train_loader = make_loader(train_set, train_batch_sampler(train_set, batch_size, args.seed, ctx, lengths),
                               args, device, quiet_workers=True)
    eval_loader = (eval_loader_for(val_set, args, device, ctx, batch_size, quiet_workers=True)
                   if val_set is not None else None)
    run_record = run_fields(args, ctx, train_set, train_loader)
    checkpoints.check_resume_position(resume, args.input, run_record)
    if ctx.is_main:
        print('%d training items, %s validation items, %d parameters, device %s, %d process(es)'
              % (len(train_set), len(val_set) if val_set is not None else 'no', sum(p.numel() for p in
                 model.parameters()), device, ctx.world_size))
    folder.begin()
    try:
        best = train.train(model, train_loader, eval_loader, args.epochs, args.output, optimizer, task, device, ctx,
                            start_epoch=start_epoch, resume=resume, amp=args.amp, base_lr=base_lr, run=run_record)
    finally:
        stop_workers(train_loader, eval_loader)
    if ctx.is_main:
        plot_curves(args.output)
    return best


def run_fields(args, ctx, train_set, train_loader):
    """This run's checkpoints.RUN_FIELDS: what a mid-epoch checkpoint must share with it."""
    return {'batch_size': args.batch_size, 'world_size': ctx.world_size, 'seed': args.seed,
            'bucket': bool(args.bucket), 'train_items': len(train_set), 'batches_per_epoch': len(train_loader)}


def plot_curves(output):
    """<output>/curves.png from the run's log (tools/plot_log.py); a missing
    matplotlib or an empty log is a note, never a failed training."""
    try:
        print('wrote %s' % curves.write_curves(output))
    except curves.MissingMatplotlib:
        note('no %s/curves.png: matplotlib is not installed (pip install matplotlib, then python3 '
             'tools/plot_log.py %s)' % (output, output))
    except UserError as err:
        note('no %s/curves.png: %s' % (output, err))


def evaluate_only(args, dictionary, task, device, ctx, batch_size):
    if args.input is None:
        raise UserError('--evaluate needs --input <checkpoint file>')
    metrics = evaluate.evaluate_checkpoint(args, dictionary, args.input, device, ctx, batch_size)
    if ctx.is_main:
        evaluate.print_metrics(metrics)
    return metrics


def _sigterm_as_ctrl_c(signum, frame):
    """SIGTERM (a scheduler's preemption, `kill`) does what Ctrl-C does. While
    training, train.GracefulInterrupt handles both (the step finishes and
    model_interrupted.pth is saved); before, the run stops at once."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


def main(argv=None):
    args = parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c) if in_main_thread else None
    try:
        return run(args)
    except train.SecondInterrupt:
        print('stopped at once by a second Ctrl-C: nothing saved, the checkpoints in %s are as they were'
              % args.output, file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print('stopped by Ctrl-C or SIGTERM', file=sys.stderr)
        sys.exit(130)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == '__main__':
    run_cli(main)
