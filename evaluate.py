"""Evaluate a trained checkpoint.

    python3 evaluate.py --input saved_models/ban --epoch 12          # VQA val score, upper bound,
                                                                    # official accuracy per answer type
    python3 evaluate.py --task flickr --input saved_models/flickr --epoch 5   # test Recall@1/5/10
    python3 evaluate.py --input saved_models/ban --epoch 0           # <input>/model.pth (any --epoch <= 0)

--input is a checkpoint file or the folder main.py saved into; there,
--epoch N picks model_epoch<N>.pth (default: the highest N). The model's
settings (--task too) come from the checkpoint when it records them (ours),
else from the flags (the original's).
"""
import os

import torch.distributed as dist

import train
from dataset import Flickr30kFeatureDataset, VQAFeatureDataset
from formats.dictionary import load_dictionary
from formats.paths import annotation_path, question_path, task_root
from formats.vqa_metric import evaluate_results
from runs import checkpoints, runtime
from runs.flags import apply_task_overrides, check_evaluate_split, evaluate_parser
from runs.loaders import eval_loader_for
from runs.tasks import TASKS, VQATask
from utils import run_cli, save_json


def parse_args(argv=None):
    parser = evaluate_parser(__doc__)
    args = parser.parse(argv)
    if args.input is None:
        args.input = 'saved_models/flickr' if args.task == 'flickr' else 'saved_models/ban'
    checkpoints.settle(args)
    check_evaluate_split(parser, args)
    return apply_task_overrides(args)


def eval_dataset(args, dictionary):
    if args.task == 'flickr':
        return Flickr30kFeatureDataset(args.split, dictionary, dataroot=task_root(args.dataroot, 'flickr'),
                                       fix_alignment=args.fix_alignment)
    return VQAFeatureDataset(args.split, dictionary, dataroot=args.dataroot, adaptive=True)


def official_files(args):
    """(questions, annotations) JSON paths of args.split, or None when either is missing."""
    files = question_path(args.dataroot, args.split), annotation_path(args.dataroot, args.split)
    return files if all(os.path.exists(path) for path in files) else None


def official_accuracy(dataset, answer_labels, files):
    """The official VQA metric of the predicted labels (one per entry, in order)."""
    results = [{'question_id': int(entry['question_id']), 'answer': dataset.label2ans[label]}
               for entry, label in zip(dataset.entries, answer_labels)]
    return evaluate_results(results, *files)


def evaluate_checkpoint(args, dictionary, path, device, ctx, batch_size):
    """Metrics dict of the checkpoint at `path` on args.split."""
    dataset = eval_dataset(args, dictionary)
    model, ckpt = checkpoints.model_from_checkpoint(args, args.task, path, device, dictionary.ntoken,
                                                     dataset.v_dim, dataset.num_ans_candidates)
    loader = eval_loader_for(dataset, args, device, ctx, batch_size)
    files = official_files(args) if args.task == 'vqa' else None
    task = VQATask(keep_answers=True) if files else TASKS[args.task]()
    metrics = train.evaluate(model, loader, task, device, ctx)
    answer_labels = metrics.pop('answers', None)
    metrics.update(checkpoint=path, epoch=ckpt.get('epoch'), split=args.split)
    if files and ctx.is_main:
        metrics['official'] = official_accuracy(dataset, answer_labels, files)
    return metrics


def print_metrics(metrics):
    print('%s (epoch %s) on %s:' % (metrics['checkpoint'], metrics['epoch'], metrics['split']))
    if 'recall@1' in metrics:
        print('\tRecall@1 %.2f  Recall@5 %.2f  Recall@10 %.2f  (upper bound %.2f, %d entities)'
              % (metrics['recall@1'], metrics['recall@5'], metrics['recall@10'], metrics['upper_bound'],
                 metrics['entities']))
        for type_name, values in metrics.get('recall@1_per_type', {}).items():
            print('\t  %-12s R@1 %6.2f  (%d entities)' % (type_name, values['recall@1'], values['entities']))
        return
    print('\tscore %.2f (upper bound %.2f) on %d questions' % (metrics['score'], metrics['upper_bound'],
                                                               metrics['samples']))
    if 'entropy' in metrics:
        print('\tattention entropy per glimpse: ' + ' '.join('%.2f' % e for e in metrics['entropy']))
    official = metrics.get('official')
    if official:
        per_type = ', '.join('%s %.2f' % item for item in sorted(official['per_answer_type'].items()))
        print('\tofficial VQA accuracy %.2f (%s)' % (official['overall'], per_type))


def main(argv=None):
    args = parse_args(argv)
    ctx, device = runtime.init_distributed(args.device)
    dictionary = load_dictionary(args.dataroot, args.task)
    metrics = evaluate_checkpoint(args, dictionary, args.checkpoint, device, ctx, args.batch_size)
    if ctx.is_main:
        print_metrics(metrics)
        if args.output:
            save_json(metrics, args.output)
    if ctx.enabled:
        dist.barrier()
        dist.destroy_process_group()
    return metrics


if __name__ == '__main__':
    run_cli(main)
