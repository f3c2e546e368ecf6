"""Samples per second that the VQA DataLoader delivers with features read on
demand from HDF5, for several worker counts (docs/PERFORMANCE.md, "Data loading").

Generates (or reuses with --keep) a train split of realistic shape with
tools/bench_data_memory.py's generator: 10-100 boxes per image (mean ~32),
2048-d float32 features in the converter's HDF5 layout. For each worker count
a fresh DataLoader (pad_collate, batches of 256, random or --bucket batches)
runs `--warmup` batches untimed (worker start-up), then `--batches` timed
ones; every batch's memory is touched once, as a copy to the GPU would. With
--step_rate (training samples/s of the model on the target device) the table
also gives the loader's rate divided by it: above 1 the model never waits.

Usage: python3 tools/bench_loader.py [--workers 0,1,2] [--bucket]
       [--step_rate 5000] [--keep] [--json loader.json]
"""
import argparse
import os
import shutil
import statistics
import sys
import time

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dataset import VQAFeatureDataset  # noqa: E402
from formats.dictionary import Dictionary  # noqa: E402
from formats.paths import dictionary_file, feature_files  # noqa: E402
from runs.collate import pad_collate  # noqa: E402
from runs.flags import FlagParser  # noqa: E402
from runs.samplers import BucketBatchSampler  # noqa: E402
from tools.bench_data_memory import add_split_flags, generate  # noqa: E402
from utils import UserError, run_cli, save_json  # noqa: E402


def parse_workers(text):
    try:
        counts = [int(part) for part in text.split(',')]
    except ValueError:
        counts = [-1]
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError('expected non-negative integers separated by commas, got %r' % text)
    return counts


def parse_args(argv):
    parser = FlagParser(description=__doc__.split('\n\n')[0])
    add_split_flags(parser, '/tmp/ban_loader')
    parser.add_argument('--workers', type=parse_workers, default=[0, 1, 2],
                        help='worker counts to measure, e.g. 0,2,4')
    parser.add_argument('--batches', type=int, default=30, help='timed batches per worker count')
    parser.add_argument('--warmup', type=int, default=3, help='untimed batches first')
    parser.add_argument('--repeats', type=int, default=3, help='runs per worker count (median reported)')
    parser.add_argument('--bucket', action='store_true', help='BucketBatchSampler batches instead of random')
    parser.add_argument('--step_rate', type=float, default=0.0,
                        help='training samples/s of the model to compare with (0: none)')
    parser.add_argument('--keep', action='store_true', help='keep (and reuse) the generated files')
    parser.add_argument('--json', default=None, help='also write the results here')
    args = parser.parse_args(argv)
    if args.batches < 1 or args.warmup < 0 or args.repeats < 1 or args.batch_size < 1:
        raise UserError('--batches, --repeats and --batch_size must be at least 1, --warmup at least 0')
    return args


def build_loader(dataset, args, num_workers, seed):
    generator = torch.Generator().manual_seed(seed)
    if args.bucket:
        batches = BucketBatchSampler(list(dataset.box_counts()), args.batch_size, seed=seed)
    else:
        batches = BatchSampler(RandomSampler(dataset, generator=generator), args.batch_size, drop_last=False)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=pad_collate, num_workers=num_workers,
                      generator=generator)


def time_loader(loader, warmup, timed):
    """Seconds for `timed` batches after `warmup` untimed ones, and the samples and
    padded box rows in the timed ones."""
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    samples = rows = 0
    started = time.perf_counter()
    for _ in range(timed):
        features, spatials, _, _ = next(iterator)
        features.view(-1)[::1024].sum() + spatials.view(-1)[::1024].sum()  # touch every page once
        samples += features.size(0)
        rows += features.size(0) * features.size(1)
    return time.perf_counter() - started, samples, rows


def measure(args):
    dictionary = Dictionary.load_from_file(dictionary_file(args.workdir))
    dataset = VQAFeatureDataset('train', dictionary, args.workdir)
    needed = (args.warmup + args.batches) * args.batch_size
    if needed > len(dataset):
        raise UserError('%d warm-up + timed batches of %d need %d questions but the generated split has %d; '
                        'raise --questions or lower --batches' % (args.warmup, args.batch_size, needed,
                                                                  len(dataset)))
    results = []
    for num_workers in args.workers:
        rates = []
        for repeat in range(args.repeats):
            seconds, samples, rows = time_loader(build_loader(dataset, args, num_workers, seed=repeat),
                                                 args.warmup, args.batches)
            rates.append(samples / seconds)
        result = {'workers': num_workers, 'samples_per_s': statistics.median(rates), 'runs': rates,
                  'mean_padded_boxes': rows / samples}
        if args.step_rate > 0:
            result['loader_over_step_rate'] = result['samples_per_s'] / args.step_rate
        results.append(result)
        print('%d workers: %7.0f samples/s (runs %s), %.1f box rows per sample%s'
              % (num_workers, result['samples_per_s'], ' / '.join('%.0f' % rate for rate in rates),
                 rows / samples, ', %.2fx the step rate' % result['loader_over_step_rate']
                 if args.step_rate > 0 else ''))
    return results


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    if not (args.keep and os.path.exists(feature_files(args.workdir, 'train')[0])):
        size, mean_boxes = generate(args.workdir, args.images, args.questions, args.feature_dim)
        print('generated %.2f GB train.hdf5 (%d images, mean %.1f boxes), %d questions'
              % (size / 1e9, args.images, mean_boxes, args.questions))
    try:
        results = measure(args)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    report = {'cpu_count': os.cpu_count(), 'batch_size': args.batch_size, 'bucket': args.bucket,
              'feature_dim': args.feature_dim, 'step_rate': args.step_rate or None,
              'date': time.strftime('%Y-%m-%d'), 'results': results,
              'best_samples_per_s': float(np.max([r['samples_per_s'] for r in results]))}
    if args.json:
        save_json(report, args.json)
    return report


if __name__ == '__main__':
    run_cli(main)
