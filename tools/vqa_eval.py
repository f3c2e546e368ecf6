"""Official VQA accuracy of a results file (the metric is formats/vqa_metric.py).

Usage:
  python3 tools/vqa_eval.py --results results/val_ban.json [--split val]
      [--questions Q.json --annotations A.json] [--out metrics.json]

--split test2015 and test-dev2015 need the test2015 annotations, which only
the demo data has (tools/make_demo_data.py); test-dev2015 scores the
test-dev questions with them, as the evaluation server does.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from formats.paths import annotation_path, question_path  # noqa: E402
from formats.vqa_files import ANNOTATED_SPLITS  # noqa: E402
from formats.vqa_metric import evaluate_results  # noqa: E402
from runs.flags import FlagParser  # noqa: E402
from utils import run_cli, save_json  # noqa: E402

ANSWER_TYPE_ORDER = ('yes/no', 'number', 'other')


# ----------------------------------------------------------------- CLI

def _ordered_answer_types(per_answer_type):
    known = [name for name in ANSWER_TYPE_ORDER if name in per_answer_type]
    return known + sorted(name for name in per_answer_type if name not in ANSWER_TYPE_ORDER)


def format_table(metrics):
    """Text table of the accuracies (2 decimals, as the official code prints)."""
    rounded = metrics['rounded']
    width = max([len('overall')] + [len(name) for name in rounded['per_question_type']])
    row = '%-' + str(width) + 's  %6.2f'
    lines = ['questions: %d' % metrics['n_questions'], row % ('overall', rounded['overall']),
             '', 'per answer type:']
    lines += [row % (name, rounded['per_answer_type'][name])
              for name in _ordered_answer_types(rounded['per_answer_type'])]
    lines += ['', 'per question type:']
    lines += [row % (name, rounded['per_question_type'][name])
              for name in sorted(rounded['per_question_type'])]
    return '\n'.join(lines)


def build_parser():
    parser = FlagParser(description='Official VQA accuracy of a results JSON file.')
    parser.add_argument('--results', required=True,
                        help='results JSON: [{"question_id": int, "answer": str}] (written by test.py)')
    parser.add_argument('--dataroot', default='data', help='folder of the VQA 2.0 JSON files')
    parser.add_argument('--split', default='val', choices=ANNOTATED_SPLITS + ('test2015', 'test-dev2015'),
                        help='split whose original files under --dataroot are used by default (test2015 and '
                             'test-dev2015: with the demo data\'s test2015 annotations)')
    parser.add_argument('--questions', help='question JSON (default: the --split file under --dataroot)')
    parser.add_argument('--annotations', help='annotation JSON (default: the --split file under --dataroot)')
    parser.add_argument('--out', help='also write the metrics to this JSON file')
    parser.add_argument('--per-question', action='store_true',
                        help='include every question\'s accuracy in --out')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    questions = args.questions or question_path(args.dataroot, args.split)
    annotated_split = 'test2015' if args.split == 'test-dev2015' else args.split  # test-dev is part of test
    annotations = args.annotations or annotation_path(args.dataroot, annotated_split)
    metrics = evaluate_results(args.results, questions, annotations)
    print(format_table(metrics))
    if args.out:
        saved = dict(metrics)
        if args.per_question:
            saved['per_question'] = {str(qid): value for qid, value in metrics['per_question'].items()}
        else:
            del saved['per_question']
        save_json(saved, args.out)
        print('metrics written to %s' % args.out)
    return metrics


if __name__ == '__main__':
    run_cli(main)
