"""Average the saved predictions of several models into one submission.

Prediction file, either
  - ours (written by `test.py --logits` as `logits/<model><op><num_hid>_<label>/logits<index>.pth`,
    e.g. `logits/banc1280_mytest/logits0.pth`):
        torch.save({"question_ids": LongTensor [Q],
                    "logits": FloatTensor [Q, n_answers],
                    "label2ans": list of n_answers str})
  - or the original's: a bare tensor, torch.save(logits) of [Q, n_answers].
    Its rows are the questions of the test split `--split` in dataset order
    (sorted by question_id, from `<dataroot>` question file) and its columns
    the answers of `<dataroot>/cache/trainval_label2ans.pkl`; the counts must
    match.
loaded with weights_only=True. All inputs must hold the same set of question
ids (any order; the output follows the first input's order) and the same
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
import functools
import os
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils import (UserError, describe_torch_load_error, require_file, run_cli, save_json,  # noqa: E402
                   torch_save_atomic)

AVERAGES = ('prob', 'logit')
PREDICTION_FIX = 'write it with test.py --logits'
TEST_SPLITS = ('test2015', 'test-dev2015')
ROWS_PER_CHUNK = 65536  # bounds the temporaries when a file holds the whole test set


def save_predictions(path, question_ids, logits, label2ans):
    """Write a prediction file atomically in the format above."""
    torch_save_atomic({'question_ids': torch.as_tensor(question_ids, dtype=torch.long).cpu(),  # [Q]
                       'logits': logits.detach().float().cpu(),  # [Q, n_answers]
                       'label2ans': [str(answer) for answer in label2ans]}, path)


def validate_predictions(predictions, source):
    """Check keys, types and shapes of one prediction dict; `source` names it
    in errors."""
    if not isinstance(predictions, dict):
        raise UserError('%s: expected a dict with question_ids, logits, label2ans (or a bare logits tensor), '
                        'got %s; %s' % (source, type(predictions).__name__, PREDICTION_FIX))
    for key in ('question_ids', 'logits', 'label2ans'):
        if key not in predictions:
            raise UserError('%s: missing key "%s"; %s' % (source, key, PREDICTION_FIX))
    question_ids, logits, label2ans = (predictions['question_ids'], predictions['logits'],
                                       predictions['label2ans'])
    if not isinstance(question_ids, torch.Tensor) or question_ids.dim() != 1 \
            or question_ids.dtype != torch.long:
        raise UserError('%s: "question_ids" must be a 1-d int64 tensor; %s' % (source, PREDICTION_FIX))
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        raise UserError('%s: "logits" must be a 2-d floating tensor [questions, answers]; %s'
                        % (source, PREDICTION_FIX))
    if not isinstance(label2ans, (list, tuple)) or not all(isinstance(a, str) for a in label2ans):
        raise UserError('%s: "label2ans" must be a list of strings; %s' % (source, PREDICTION_FIX))
    if logits.shape != (question_ids.numel(), len(label2ans)):
        raise UserError('%s: "logits" has shape %s but there are %d question ids and %d answers; %s'
                        % (source, tuple(logits.shape), question_ids.numel(), len(label2ans),
                           PREDICTION_FIX))
    sorted_ids = torch.sort(question_ids).values  # [Q]
    repeated = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
    if repeated.numel():
        raise UserError('%s: question_id %d appears more than once; %s'
                        % (source, int(repeated[0]), PREDICTION_FIX))


@functools.lru_cache(maxsize=2)
def split_rows_and_columns(dataroot, split):
    """(question ids LongTensor [Q] in dataset order, label2ans list) of a
    test split: what the rows and columns of a bare logits tensor stand for."""
    from dataset import load_answer_maps, load_questions
    question_ids = sorted(question['question_id'] for question in load_questions(dataroot, split))
    return torch.tensor(question_ids, dtype=torch.long), load_answer_maps(dataroot)[1]


def from_bare_logits(logits, source, dataroot, split):
    """The prediction dict of a bare logits tensor [Q, n_answers] (the
    original's test.py --logits), its ids and answers taken from `dataroot`."""
    if logits.dim() != 2 or not logits.is_floating_point():
        raise UserError('%s: a bare tensor must be 2-d floating logits [questions, answers], got %s %s; %s'
                        % (source, str(logits.dtype), tuple(logits.shape), PREDICTION_FIX))
    question_ids, label2ans = split_rows_and_columns(dataroot, split)
    if logits.shape[0] != question_ids.numel():
        from dataset import question_path
        raise UserError('%s: bare logits of %d questions, but %s has %d; pass the --split and --dataroot the '
                        'logits were made for' % (source, logits.shape[0], question_path(dataroot, split),
                                                  question_ids.numel()))
    if logits.shape[1] != len(label2ans):
        raise UserError('%s: bare logits of %d answers, but %s lists %d; pass the --dataroot whose answer cache '
                        'the model was trained with' % (source, logits.shape[1], os.path.join(
                            dataroot, 'cache', 'trainval_label2ans.pkl'), len(label2ans)))
    return {'question_ids': question_ids, 'logits': logits, 'label2ans': list(label2ans)}


def load_predictions(path, dataroot='data', split='test2015'):
    """Load and validate one prediction file (weights only; memory-mapped
    unless it is in the pre-1.6 torch.save format). A bare tensor takes its
    question ids and answers from the test split `split` under `dataroot`."""
    require_file(path, PREDICTION_FIX)
    try:
        predictions = torch.load(path, map_location='cpu', weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise UserError('%s: cannot read prediction file (%s); %s'
                        % (path, describe_torch_load_error(err), PREDICTION_FIX)) from None
    if torch.is_tensor(predictions):
        predictions = from_bare_logits(predictions, path, dataroot, split)
    validate_predictions(predictions, path)
    return predictions


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
