"""Evaluate a trained checkpoint.

    python3 evaluate.py --input saved_models/ban --epoch 12          # VQA val score, upper bound,
                                                                    # official accuracy per answer type
    python3 evaluate.py --task flickr --input saved_models/flickr --epoch 5   # test Recall@1/5/10
    python3 evaluate.py --input saved_models/ban --epoch 0           # <input>/model.pth (any --epoch <= 0)
    python3 evaluate.py --input saved_models/ban --report results/report --images data/val2014
                                    # also results/report/index.html: the tables, a gallery, the run

--report DIR writes a page that opens offline from the file system: the
accuracies (VQA: per answer and question type, against the number of regions
and the question length, the most frequent confusions; Flickr30k: Recall@k
per entity type), a gallery of --report_items questions or phrases (a seeded
random sample and the most confident wrong ones, with the attention of every
glimpse, drawn on the photo when --images holds it), and the run's settings
and curves. The tables take one pass over the predictions; only the gallery
is drawn.

--input is a checkpoint file or the folder main.py saved into; there,
--epoch N picks model_epoch<N>.pth (default: the highest N). The model's
settings (--task too) come from the checkpoint when it records them (ours),
else from the flags (the original's).
"""
import os
import shlex
import sys

import torch
import torch.distributed as dist

import ask
import train
import visualize
from dataset import Flickr30kFeatureDataset, VQAFeatureDataset
from formats.dictionary import load_dictionary
from formats.paths import annotation_path, question_path, task_root
from formats.vqa_files import check_annotations
from formats.vqa_metric import VQA_FIX, evaluate_results, question_type_table
from report import build
from report.page import check_report_folder
from runs import checkpoints, runtime
from runs.flags import apply_task_overrides, check_evaluate_split, evaluate_parser
from runs.loaders import eval_loader_for
from runs.tasks import TASKS, VQATask
from utils import load_json, run_cli, save_json


def parse_args(argv=None):
    parser = evaluate_parser(__doc__)
    args = parser.parse(argv)
    if args.report is not None:
        check_report_folder(args.report)
        visualize.figure_class()  # the gallery draws with matplotlib: a missing one fails before evaluating
    if args.input is None:
        args.input = 'saved_models/flickr' if args.task == 'flickr' else 'saved_models/ban'
    checkpoints.settle(args)
    check_evaluate_split(parser, args)
    if args.report is not None and args.task == 'vqa' and official_files(args) is None:
        parser.error('argument --report: the report needs the questions and annotations of split %s (%s and %s); %s'
                     % (args.split, question_path(args.dataroot, args.split),
                        annotation_path(args.dataroot, args.split), VQA_FIX))
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
    reporting = getattr(args, 'report', None) is not None
    if files:
        task = VQATask(keep_answers=True, keep_top=reporting)
    else:
        task = TASKS[args.task](keep_entities=True) if reporting else TASKS[args.task]()
    metrics = train.evaluate(model, loader, task, device, ctx)
    answer_labels = metrics.pop('answers', None)
    kept = {key: metrics.pop(key) for key in ('top_answers', 'entities_kept') if key in metrics}
    metrics.update(checkpoint=path, epoch=ckpt.get('epoch'), split=args.split)
    if files and ctx.is_main:
        metrics['official'] = official_accuracy(dataset, answer_labels, files)
    if reporting and ctx.is_main:
        metrics['report'], figures = write_report(args, dataset, model, ckpt, metrics, answer_labels, kept, files,
                                                  device)
        if 'tables' in figures:
            metrics['report_tables'] = figures['tables']
    return metrics


# ----------------------------------------------------------------- --report

def _photo(images, image_id):
    path = images.get(image_id)
    return visualize.load_image(path) if path else None


def write_report(args, dataset, model, ckpt, metrics, answer_labels, kept, files, device):
    """Write the --report folder; returns (the page's path, its figures)."""
    model.eval()
    images = build.image_files(args.images)
    command = shlex.join(['python3', 'evaluate.py'] + args.argv)
    title = '%s on %s' % ('BAN' if args.task == 'vqa' else 'BAN grounding', args.split)
    meta = build.run_meta(title, args, metrics['checkpoint'], metrics['epoch'], ckpt.get('config'), command)
    if args.task == 'flickr':
        return build.write_flickr_report(args.report, meta, dataset.dataroot, dataset.entries, metrics,
                                         kept['entities_kept'], args.report_items,
                                         lambda *item: draw_phrase(dataset, model, device, images, *item))
    dictionary = dataset.dictionary
    annotations = check_annotations(load_json(files[1], VQA_FIX), files[1], VQA_FIX)

    def draw(index, path):
        entry = dataset.entries[index]
        features, spatials = dataset.feature_store.get(entry['image'])
        probabilities, att = ask.answer(model, features, spatials,
                                        torch.tensor([entry['q_token']], dtype=torch.long), device)
        encoded = ask.encode_question(entry['question'], dictionary)
        photo = _photo(images, entry['image_id'])
        figure = visualize.attention_figure(photo, spatials, att, encoded.words,
                                            [word in encoded.unknown for word in encoded.words],
                                            visualize.answer_title(entry['question'], probabilities,
                                                                   dataset.label2ans),
                                            ask.reading_notes(encoded, dictionary))
        figure.savefig(path, format='png', dpi=visualize.DPI)
        return photo is not None

    return build.write_vqa_report(args.report, meta, dataset.entries, dataset.label2ans, answer_labels,
                                  kept['top_answers'], metrics['official'], annotations, dataset.box_counts().tolist(),
                                  args.report_items, draw)


def draw_phrase(dataset, model, device, images, index, entity, phrase, record, path):
    """One phrase's picture: its predicted top box (visualize.py's grounding
    picture) and its ground-truth boxes, dashed."""
    from matplotlib.patches import Rectangle
    entry = dataset.entries[index]
    features, spatials, tokens = dataset[index][:3]
    probabilities = visualize.ground(model, features, spatials, tokens.unsqueeze(0), entry['entity_positions'],
                                     device)[entity:entity + 1]  # [1, N]
    photo = _photo(images, entry['image_id'])
    figure = visualize.grounding_figure(photo, spatials, [phrase], probabilities, entry['sentence'],
                                        ['dashed yellow: the ground-truth boxes (%d)' % len(record['targets'])])
    ax = figure.axes[0]
    scale = [1.0] * 4 if photo is None else [photo.shape[1], photo.shape[0]] * 2
    for box in record['targets']:
        x1, y1, x2, y2 = [float(value) * factor for value, factor in zip(spatials[box, :4], scale)]
        for colour, width, style in (('black', 3.5, '-'), ('#ffd700', 2.0, '--')):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=width,
                                   linestyle=style))
    figure.savefig(path, format='png', dpi=visualize.DPI)
    return photo is not None


def print_metrics(metrics):
    print('%s (epoch %s) on %s:' % (metrics['checkpoint'], metrics['epoch'], metrics['split']))
    if 'recall@1' in metrics:
        print('\tRecall@1 %.2f  Recall@5 %.2f  Recall@10 %.2f  (upper bound %.2f, %d entities)'
              % (metrics['recall@1'], metrics['recall@5'], metrics['recall@10'], metrics['upper_bound'],
                 metrics['entities']))
        for type_name, values in metrics.get('recall@1_per_type', {}).items():
            print('\t  %-12s R@1 %6.2f  R@5 %6.2f  R@10 %6.2f  (%d entities)'
                  % (type_name, values['recall@1'], values['recall@5'], values['recall@10'], values['entities']))
        return
    print('\tscore %.2f (upper bound %.2f) on %d questions' % (metrics['score'], metrics['upper_bound'],
                                                               metrics['samples']))
    if 'entropy' in metrics:
        print('\tattention entropy per glimpse: ' + ' '.join('%.2f' % e for e in metrics['entropy']))
    official = metrics.get('official')
    if official:
        per_type = ', '.join('%s %.2f' % item for item in sorted(official['per_answer_type'].items()))
        print('\tofficial VQA accuracy %.2f (%s)' % (official['overall'], per_type))
        table = question_type_table(official)
        print('\tper question type (%d types, most accurate first):' % len(table))
        width = max(len(name) for name, _, _ in table)
        for name, value, count in table:
            print('\t  %-*s %6.2f  (%d questions)' % (width, name, value, count))
    tables = metrics.get('report_tables')
    if tables:
        for key, what in (('by_regions', 'the number of regions'), ('by_length', 'the question length (words)')):
            print('\taccuracy against %s:' % what)
            for row in tables[key]:
                print('\t  %-6s %6.2f  (%d questions)' % (row['label'], row['accuracy'], row['questions']))
        print('\tmost frequent confusions, predicted -> the humans\' most common answer (%d questions differ):'
              % tables['differing'])
        for row in tables['confusions']:
            print('\t  %s -> %s  (%d questions)' % (row['predicted'], row['common'], row['questions']))


def main(argv=None):
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the report's "command"
    ctx, device = runtime.init_distributed(args.device)
    dictionary = load_dictionary(args.dataroot, args.task)
    metrics = evaluate_checkpoint(args, dictionary, args.checkpoint, device, ctx, args.batch_size)
    if ctx.is_main:
        print_metrics(metrics)
        if metrics.get('report'):
            print('report: %s' % metrics['report'])
        if args.output:
            save_json(metrics, args.output)
    if ctx.enabled:
        dist.barrier()
        dist.destroy_process_group()
    return metrics


if __name__ == '__main__':
    run_cli(main)
