"""Average the saved predictions of several models into one submission.

Inputs are prediction files (see formats/predictions.py: ours, written by
`test.py --logits` as `logits/<model><op><num_hid>_<label>/logits<index>.pth`,
e.g. `logits/banc1280_mytest/logits0.pth`, or the original's bare logits
tensor, whose rows and columns come from `--dataroot` and `--split`), loaded
with weights_only=True. All inputs must hold the same set of question ids
(any order; the output follows the first input's order) and the same
label2ans list.

Usage:
  python3 tools/ensemble.py --inputs logits/*/logits0.pth
      --output results/ensemble.json [--average prob|logit]
      [--dataroot data --split test2015]   (for bare-tensor inputs)

`prob` (default) averages sigmoid(logits), i.e. the predicted answer
probabilities; `logit` averages the raw logits. The answer of a question is
the label with the highest average (the first one on ties).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from formats.predictions import TEST_SPLITS, load_predictions, validate_predictions  # noqa: E402
from runs.flags import FlagParser  # noqa: E402
from utils import UserError, run_cli, save_json  # noqa: E402

AVERAGES = ('prob', 'logit')
ROWS_PER_CHUNK = 65536  # bounds the temporaries when a file holds the whole test set


def _rows_in_reference_order(reference_ids, question_ids, source, reference_source):
    """Index into `question_ids` giving the rows in `reference_ids` order, or
    None when the order is already the same; error when the sets differ."""
    if torch.equal(reference_ids, question_ids):
        return None
    sorted_ids, sort_index = torch.sort(question_ids)  # [Q], [Q]
    if question_ids.numel() == reference_ids.numel():
        position = torch.searchsorted(sorted_ids, reference_ids).clamp_(max=max(len(sorted_ids) - 1, 0))  # [Q]
        found = sorted_ids[position] == reference_ids  # [Q]
        if bool(found.all()):
            return sort_index[position]
    missing = reference_ids[~torch.isin(reference_ids, question_ids)]
    extra = question_ids[~torch.isin(question_ids, reference_ids)]
    example = ('question_id %d is missing' % int(missing[0]) if missing.numel()
               else 'question_id %d is extra' % int(extra[0]))
    raise UserError('%s: its question ids differ from those of %s (%d missing, %d extra; e.g. %s); '
                    'ensemble predictions of the same split'
                    % (source, reference_source, missing.numel(), extra.numel(), example))


class _Accumulator:
    """Running sum of per-model scores, aligned to the first model's rows."""

    def __init__(self, average):
        if average not in AVERAGES:
            raise UserError('unknown --average %r; use one of %s' % (average, ', '.join(AVERAGES)))
        self.average = average
        self.total = None  # [Q, n_answers] float32
        self.count = 0

    def add(self, predictions, source):
        if self.total is None:
            self.question_ids = predictions['question_ids'].clone()  # [Q]
            self.label2ans = list(predictions['label2ans'])
            self.source = source
            self.total = torch.zeros(predictions['logits'].shape, dtype=torch.float32)  # [Q, n_answers]
            rows = None
        else:
            if list(predictions['label2ans']) != self.label2ans:
                raise UserError('%s: its label2ans differs from that of %s; ensemble models trained with '
                                'the same answer vocabulary (cache/trainval_label2ans.pkl)'
                                % (source, self.source))
            rows = _rows_in_reference_order(self.question_ids, predictions['question_ids'], source,
                                            self.source)
        self._add_scores(predictions['logits'], rows)
        self.count += 1

    def _add_scores(self, logits, rows):
        for start in range(0, self.total.shape[0], ROWS_PER_CHUNK):
            stop = min(start + ROWS_PER_CHUNK, self.total.shape[0])
            chunk = logits[start:stop] if rows is None else logits[rows[start:stop]]  # [C, n_answers]
            chunk = chunk.float()
            if self.average == 'prob':
                chunk = torch.sigmoid(chunk)  # [C, n_answers]
            self.total[start:stop] += chunk

    def result(self):
        if self.count == 0:
            raise UserError('no predictions to ensemble; pass at least one file to --inputs')
        return {'question_ids': self.question_ids,  # [Q]
                'scores': self.total / self.count,  # [Q, n_answers]
                'label2ans': self.label2ans}


def ensemble_logits(predictions_list, average='prob'):
    """Average several prediction dicts (format above).

    Returns {"question_ids": [Q] (first input's order), "scores": [Q, n_answers]
    mean of sigmoid(logits) for average="prob" or of logits for "logit",
    "label2ans": list}."""
    accumulator = _Accumulator(average)
    for index, predictions in enumerate(predictions_list):
        source = 'predictions[%d]' % index
        validate_predictions(predictions, source)
        accumulator.add(predictions, source)
    return accumulator.result()


def to_submission(ensembled):
    """Submission list [{"question_id", "answer"}] from ensembled scores."""
    best = ensembled['scores'].argmax(dim=1)  # [Q]
    label2ans = ensembled['label2ans']
    return [{'question_id': int(question_id), 'answer': label2ans[int(label)]}
            for question_id, label in zip(ensembled['question_ids'].tolist(), best.tolist())]


def build_parser():
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--inputs', nargs='+', required=True,
                        help='prediction files written by test.py --logits, ours or the original\'s bare tensors')
    parser.add_argument('--output', default='results/ensemble.json', help='submission JSON to write')
    parser.add_argument('--average', default='prob', choices=AVERAGES,
                        help='prob: mean of sigmoid(logits) (default); logit: mean of logits')
    parser.add_argument('--dataroot', default='data',
                        help='bare-tensor inputs: data root of the question file and cache/trainval_label2ans.pkl')
    parser.add_argument('--split', default='test2015', choices=TEST_SPLITS,
                        help='bare-tensor inputs: the test split they were made for (rows in question_id order)')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    accumulator = _Accumulator(args.average)
    for path in args.inputs:
        accumulator.add(load_predictions(path, args.dataroot, args.split), path)  # one file in memory at a time
    submission = to_submission(accumulator.result())
    save_json(submission, args.output)
    print('ensembled %d models over %d questions (%s average) -> %s'
          % (len(args.inputs), len(submission), args.average, args.output))
    return submission


if __name__ == '__main__':
    run_cli(main)
