"""Prediction files: the logits of a model on a test split, written by
`test.py --logits` and averaged by tools/ensemble.py.

Prediction file, either
  - ours (`logits/<model><op><num_hid>_<label>/logits<index>.pth`, e.g.
    `logits/banc1280_mytest/logits0.pth`):
        torch.save({"question_ids": LongTensor [Q],
                    "logits": FloatTensor [Q, n_answers],
                    "label2ans": list of n_answers str})
  - or the original's: a bare tensor, torch.save(logits) of [Q, n_answers].
    Its rows are the questions of the test split in dataset order (sorted by
    question_id, from the data root's question file) and its columns the
    answers of `<dataroot>/cache/trainval_label2ans.pkl`; the counts must
    match.
loaded with weights_only=True.
"""
import functools
import zipfile

import torch

from formats.paths import answer_cache_files, question_path
from formats.vqa_files import load_answer_maps, load_questions
from utils import UserError, describe_torch_load_error, require_file, torch_save_atomic

PREDICTION_FIX = 'write it with test.py --logits'
TEST_SPLITS = ('test2015', 'test-dev2015')


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
        raise UserError('%s: bare logits of %d questions, but %s has %d; pass the --split and --dataroot the '
                        'logits were made for' % (source, logits.shape[0], question_path(dataroot, split),
                                                  question_ids.numel()))
    if logits.shape[1] != len(label2ans):
        raise UserError('%s: bare logits of %d answers, but %s lists %d; pass the --dataroot whose answer cache '
                        'the model was trained with' % (source, logits.shape[1], answer_cache_files(dataroot)[1], len(label2ans)))
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
