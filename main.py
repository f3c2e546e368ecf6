"""Train BAN on VQA 2.0 (default) or Flickr30k Entities (--task flickr).

    python3 main.py --use_both True --use_vg True    # train+val+VG, save every epoch from 3
    python3 main.py                                  # train, validate each epoch, keep the best
    python3 main.py --task flickr --out saved_models/flickr
    torchrun --nproc_per_node 4 main.py ...          # DistributedDataParallel
    python3 main.py --input saved_models/ban/model_last.pth   # resume exactly
    python3 main.py --input saved_models/ban                  # the same: the newest of model_last/interrupted
    python3 main.py --evaluate --input saved_models/ban/model_epoch12.pth

With --input the model's settings come from the checkpoint when it records
them (ours), else from the flags (the original's). A resume also takes the
run's own settings saved in the checkpoint (data root, output folder, epochs,
recipe flags) unless the command line gives them; a flag that changes the
run says so in a note.
"""

import torch
from torch.utils.data import ConcatDataset

import base_model
import evaluate
import train
from dataset import (
    Flickr30kFeatureDataset,
    VisualGenomeFeatureDataset,
    VQAFeatureDataset,
    check_feature_widths,
    leaf_datasets,
)
from formats.dictionary import load_dictionary
from formats.glove import glove_init_path
from formats.paths import glove_text_file, task_root
from formats.tfidf import tfidf_from_questions
from runs import checkpoints, curves, rundir, runtime
from runs.flags import apply_task_overrides, check_output_folder, main_parser
from runs.loaders import eval_loader_for, make_loader, stop_workers
from runs.samplers import train_batch_sampler
from runs.tasks import TASKS
from utils import UserError, exit_when_interrupted, note, run_cli, seed_everything


def parse_args(argv=None):
    parser = main_parser(__doc__)
    args = parser.parse(argv)
    if args.input is not None and args.evaluate:
        args.input = checkpoints.choose(args.input)[0]
        checkpoints.adopt_saved_settings(args, args.input)
    elif args.input is not None:  # resume the run, with its settings unless the command line changes them
        args.input = checkpoints.resume_file(args.input)
        checkpoints.adopt_saved_settings(args, args.input, resume=True)
        parser.check(parser, args)  # the flags given, again, with the run's task and settings
    if args.output is None:
        args.output = 'saved_models/flickr' if args.task == 'flickr' else 'saved_models/ban'
    args.split = 'test' if args.task == 'flickr' else 'val'  # the split --evaluate scores
    return apply_task_overrides(args)


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
    batch_size = runtime.per_rank_batch(args.batch_size, ctx)
    if args.evaluate:
        return evaluate_only(args, dictionary, task, device, ctx, batch_size)
    # claimed before the data is read: a second run into it fails at once
    with rundir.OutputFolder(args.output, args.overwrite, args.input) if ctx.is_main else rundir.NoFolder() as folder:
        return train_run(args, dictionary, task, device, ctx, batch_size, folder)


def train_run(args, dictionary, task, device, ctx, batch_size, folder):
    """Read the data, build the model and optimizer, check everything that can
    be checked before the first step, then train into `folder`."""
    train_set, val_set = training_data(args, dictionary)
    check_feature_widths(leaf_datasets(train_set) + leaf_datasets(val_set))
    first = leaf_datasets(train_set)[0]
    config = base_model.ModelConfig.from_flags(args, args.task, dictionary.ntoken, first.v_dim, first.num_ans_candidates)
    model = base_model.build_model(config)
    resume = {} if args.input is None else checkpoints.load_checkpoint(args.input, map_location=device)
    if resume:
        checkpoints.check_resume_fields(resume, args.input)
        checkpoints.load_resumed_weights(model, resume, args.input, args.dataroot, uses_tfidf(args), ctx.is_main)
    else:
        init_word_embedding(model, args, dictionary)
    model = model.to(device)
    base_lr = args.lr or train.base_learning_rate(val_set is not None)
    # the original's filter(requires_grad, model.parameters()): its order gives the state's indices
    optimizer = torch.optim.Adamax([p for p in model.parameters() if p.requires_grad], lr=base_lr)
    start_epoch = 0
    if resume:
        start_epoch = checkpoints.first_epoch(resume, args.input, args.epochs)
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
                            start_epoch=start_epoch, resume=resume, amp=args.amp, base_lr=base_lr, run=run_record,
                            settings=checkpoints.run_settings(args))
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


def main(argv=None):
    """Train or evaluate as the flags say; Ctrl-C or SIGTERM ends it with one
    line and exit status 130 (during training after saving
    model_interrupted.pth, see train.train)."""
    args = parse_args(argv)
    try:
        with exit_when_interrupted():
            return run(args)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == '__main__':
    run_cli(main)
