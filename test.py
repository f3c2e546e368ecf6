"""Write a VQA 2.0 test submission.

    python3 test.py --label mytest        # results/test2015_banc1280_mytest_epoch12.json
    python3 test.py --split test-dev2015 --input saved_models/ban --epoch 12 --logits True

--input is a checkpoint file or the folder main.py saved into; there,
--epoch N picks model_epoch<N>.pth (default: the highest N). The model's
settings come from the checkpoint when it records them (ours), else from the
flags (the original's).
"""
import os

import torch
from torch.utils.data import DataLoader

from dataset import VQAFeatureDataset
from formats.dictionary import load_dictionary
from formats.predictions import save_predictions
from runs import checkpoints, runtime
from runs.collate import pad_collate
from runs.flags import check_output_folder, test_parser
from runs.progress import Progress
from utils import UserError, run_cli, save_json


def parse_args(argv=None):
    parser = test_parser(__doc__)
    args = checkpoints.settle(parser.parse(argv))
    if args.task != 'vqa':
        parser.error('argument --task: test.py writes VQA submissions; use evaluate.py --task flickr')
    return args


def model_label(args):
    """The original's naming: {model}{op}{num_hid}_{label}."""
    return '%s%s%d_%s' % (args.model, args.op, args.num_hid, args.label)


def logits_file(args):
    """Where --logits saves the predictions (the input of tools/ensemble.py)."""
    return os.path.join('logits', model_label(args), 'logits%d.pth' % args.index)


def results_path(args):
    label = model_label(args) + ('_epoch%d' % args.epoch if args.epoch >= 0 else '')
    return os.path.join(args.output, '%s_%s.json' % (args.split, label))


def decode_question(tokens, dictionary):
    return ' '.join(dictionary.idx2word[t] for t in tokens.tolist() if t < len(dictionary.idx2word))


@torch.no_grad()
def predict_logits(model, loader, device, debug_dictionary=None, label2ans=None):
    """Logits for every item, in loader order: (ids or None [Q], logits [Q, n_ans])."""
    model.eval()
    all_logits, all_ids = [], []
    progress = Progress(loader, 'predict', unit='batches')
    for v, b, q, last in progress:
        progress.add_samples(len(v))
        logits, _ = model(v.to(device), b.to(device), q.to(device), None)  # [B,n_ans]
        all_logits.append(logits.float().cpu())
        if not torch.is_floating_point(last):
            all_ids.append(last.view(-1))
        if debug_dictionary is not None:
            print(decode_question(q[0], debug_dictionary), '->', label2ans[int(logits[0].argmax())])
    ids = torch.cat(all_ids) if all_ids else None
    return ids, torch.cat(all_logits)


def answers_from_logits(question_ids, logits, label2ans):
    picked = logits.argmax(1).tolist()
    return [{'question_id': int(qid), 'answer': label2ans[label]}
            for qid, label in zip(question_ids.tolist(), picked)]


def run(args):
    device = runtime.resolve_device(args.device)
    check_output_folder(args.output, '--output', 'test.py writes its results file into')
    dictionary = load_dictionary(args.dataroot, 'vqa')
    dataset = VQAFeatureDataset(args.split, dictionary, dataroot=args.dataroot, adaptive=True)
    model, _ = checkpoints.model_from_checkpoint(args, 'vqa', args.checkpoint, device, dictionary.ntoken,
                                                 dataset.v_dim, dataset.num_ans_candidates)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=args.workers,
                        collate_fn=pad_collate)
    ids, logits = predict_logits(model, loader, device, dictionary if args.debug else None, dataset.label2ans)
    results = answers_from_logits(ids, logits, dataset.label2ans)
    expected = {entry['question_id'] for entry in dataset.entries}
    if len(results) != len(expected) or {r['question_id'] for r in results} != expected:
        raise UserError('internal check failed: %d answers for %d questions of %s'
                        % (len(results), len(expected), args.split))
    path = results_path(args)
    save_json(results, path)
    print('wrote %d answers to %s' % (len(results), path))
    if args.logits:
        logits_path = logits_file(args)
        save_predictions(logits_path, ids, logits, list(dataset.label2ans))
        print('wrote logits to %s' % logits_path)
    return path


def main(argv=None):
    return run(parse_args(argv))


if __name__ == '__main__':
    run_cli(main)
