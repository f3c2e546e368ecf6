"""Peak host memory of one epoch over VQAFeatureDataset: features read on
demand from HDF5 versus `load_in_memory=True` (docs/DATA_MEMORY.md).

Generates a train split of realistic shape in a work folder (default: 10,000
images with 10-100 boxes, mean ~32, 2048-d features -> ~2.6 GB HDF5, and
40,000 questions; the files have the converter's layout), then iterates one
epoch with DataLoader + pad_collate in a fresh process per configuration and
reports the peak RSS (the main process; DataLoader workers separately).

Usage: python3 tools/bench_data_memory.py [--workdir /tmp/ban_data_memory]
       [--images 10000] [--questions 40000] [--feature_dim 2048] [--keep]
"""
import argparse
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dataset import VQAFeatureDataset  # noqa: E402
from formats.dictionary import Dictionary  # noqa: E402
from formats.paths import (  # noqa: E402
    answer_cache_files,
    dictionary_file,
    feature_files,
    question_path,
    target_file,
)
from runs.collate import pad_collate  # noqa: E402
from runs.flags import FlagParser  # noqa: E402
from utils import atomic_path, atomic_write, run_cli, save_json  # noqa: E402

CONFIGURATIONS = [  # (label, load_in_memory, num_workers)
    ('on demand, 0 workers', False, 0),
    ('on demand, 2 workers', False, 2),
    ('load_in_memory, 0 workers', True, 0),
]
WORDS = ['what', 'color', 'is', 'the', 'how', 'many', 'are', 'there', 'on', 'table', 'man', 'dog',
         'wearing', 'this', 'in', 'picture', 'kind', 'of', 'where', 'person']
NUM_ANSWERS = 3129


def _dump_pickle(obj, path):
    with atomic_write(path, 'wb') as handle:
        pickle.dump(obj, handle, protocol=2)


def box_counts(rng, num_images):
    """10-100 boxes per image, mean ~32 (as the adaptive release)."""
    return np.clip(np.rint(rng.lognormal(np.log(29.0), 0.45, num_images)), 10, 100).astype(np.int64)


def generate(workdir, num_images, num_questions, feature_dim, seed=0):
    """Write train.hdf5, train_imgid2idx.pkl, the train questions, the answer
    caches and a dictionary under `workdir`; returns the HDF5 size in bytes."""
    rng = np.random.default_rng(seed)
    counts = box_counts(rng, num_images)
    ends = np.cumsum(counts)
    image_ids = np.arange(1, num_images + 1) * 7
    h5_path, imgid2idx_path = feature_files(workdir, 'train')
    with atomic_path(h5_path) as temporary, h5py.File(temporary, 'w') as h5:
        h5.create_dataset('pos_boxes', data=np.stack([ends - counts, ends], 1).astype(np.int32))
        features = h5.create_dataset('image_features', (int(ends[-1]), feature_dim), dtype='f4')
        spatials = h5.create_dataset('spatial_features', (int(ends[-1]), 6), dtype='f4')
        h5.create_dataset('image_bb', (int(ends[-1]), 4), dtype='f4')
        h5.attrs['split'] = 'train'
        block = 16384
        for start in range(0, int(ends[-1]), block):
            rows = min(block, int(ends[-1]) - start)
            features[start:start + rows] = rng.random((rows, feature_dim), dtype=np.float32)
            spatials[start:start + rows] = rng.random((rows, 6), dtype=np.float32)
    _dump_pickle({int(i): row for row, i in enumerate(image_ids)}, imgid2idx_path)
    question_images = rng.integers(0, num_images, num_questions)
    lengths = rng.integers(4, 12, num_questions)
    questions = [{'image_id': int(image_ids[img]), 'question_id': qid,
                  'question': ' '.join(rng.choice(WORDS, length)) + '?'}
                 for qid, (img, length) in enumerate(zip(question_images, lengths))]
    save_json({'questions': questions}, question_path(workdir, 'train'))
    answers = ['answer%d' % i for i in range(NUM_ANSWERS)]
    ans2label_path, label2ans_path = answer_cache_files(workdir)
    _dump_pickle({a: i for i, a in enumerate(answers)}, ans2label_path)
    _dump_pickle(answers, label2ans_path)
    targets = [{'question_id': q['question_id'], 'image_id': q['image_id'],
                'labels': [int(x) for x in rng.integers(0, NUM_ANSWERS, 3)], 'scores': [1.0, 0.6, 0.3]}
               for q in questions]
    _dump_pickle(targets, target_file(workdir, 'train'))
    _dump_pickle([{w: i for i, w in enumerate(WORDS)}, list(WORDS)], dictionary_file(workdir))
    return os.path.getsize(h5_path), float(counts.mean())


def measure(workdir, load_in_memory, num_workers, batch_size):
    """Iterate one epoch; return peak RSS (MiB) of this process and of the workers."""
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.time()
    dictionary = Dictionary.load_from_file(dictionary_file(workdir))
    train = VQAFeatureDataset('train', dictionary, workdir, load_in_memory=load_in_memory)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, collate_fn=pad_collate,
                        num_workers=num_workers, generator=torch.Generator().manual_seed(0))
    batches = padded_rows = 0
    for features, spatials, _, _ in loader:
        batches += 1
        padded_rows += features.shape[0] * features.shape[1]
        # touch every memory page of the batch once, as a copy to the GPU would
        features.view(-1)[::1024].sum() + spatials.view(-1)[::1024].sum()
    return {'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            'worker_peak_rss_mib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            'baseline_rss_mib': baseline, 'seconds': time.time() - started, 'batches': batches,
            'questions': len(train), 'padded_box_rows': padded_rows}


def add_split_flags(parser, workdir):
    """The flags of the generated split (`generate`) and its batch size."""
    parser.add_argument('--workdir', default=workdir)
    parser.add_argument('--images', type=int, default=10000)
    parser.add_argument('--questions', type=int, default=40000)
    parser.add_argument('--feature_dim', type=int, default=2048)
    parser.add_argument('--batch_size', type=int, default=256)


def main(argv=None):
    parser = FlagParser(description=__doc__.split('\n\n')[0])
    add_split_flags(parser, '/tmp/ban_data_memory')
    parser.add_argument('--keep', action='store_true', help='keep the generated files')
    parser.add_argument('--measure', default=None, help=argparse.SUPPRESS)  # internal: one configuration
    args = parser.parse_args(argv)
    if args.measure is not None:
        load_in_memory, num_workers = json.loads(args.measure)
        print(json.dumps(measure(args.workdir, load_in_memory, num_workers, args.batch_size)))
        return None
    os.makedirs(args.workdir, exist_ok=True)
    started = time.time()
    size, mean_boxes = generate(args.workdir, args.images, args.questions, args.feature_dim)
    print('generated %.2f GB train.hdf5 (%d images, mean %.1f boxes, %d-d), %d questions in %.0f s'
          % (size / 1e9, args.images, mean_boxes, args.feature_dim, args.questions, time.time() - started))
    results = []
    try:
        for label, load_in_memory, num_workers in CONFIGURATIONS:
            output = subprocess.run([sys.executable, os.path.abspath(__file__), '--workdir', args.workdir,
                                     '--batch_size', str(args.batch_size),
                                     '--measure', json.dumps([load_in_memory, num_workers])],
                                    check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            results.append((label, result))
            workers = '%5.0f MiB' % result['worker_peak_rss_mib'] if num_workers else '    -    '
            print('%-26s peak RSS %6.0f MiB (after imports %4.0f), each worker at most %s, '
                  '%3d batches in %.0f s' % (label, result['peak_rss_mib'], result['baseline_rss_mib'],
                                              workers, result['batches'], result['seconds']))
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    return results


if __name__ == '__main__':
    run_cli(main)
