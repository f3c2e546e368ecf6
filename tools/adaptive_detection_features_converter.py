"""Convert bottom-up-attention TSV features into one HDF5 file per split
(FORMATS.md sections 2, 3 and 7).

Adaptive (10-100 boxes per image), written as `{split}.hdf5` with
image_features [total_boxes, D], image_bb [total_boxes, 4],
spatial_features [total_boxes, 6], pos_boxes int32 [num_images, 2], plus
`{split}_imgid2idx.pkl` (dict image_id -> row of pos_boxes, in TSV order).
tools/detection_features_converter.py reuses this for the fixed-36 release.

The images of a split are those of its questions (VQA: train2014 -> train,
val2014 -> val, test2015 -> test2015) or of its split file (Flickr30k).
The VQA trainval files are read in the original's order (test, train.0,
train.1, val). With --task flickr, an absent `<split>_ids.pkl` is written
as by the original (the set of every image id of flickr30k_images/, which
orders the Flickr dictionary; see flickr_files.converter_id_set).
Two streaming passes: the first counts the boxes, the second writes row
blocks into preallocated datasets, so memory does not grow with the input.
Outputs go to temporary paths renamed only on success: an interrupted run or
a malformed line (reported as file:line) leaves no output file. The HDF5 file
records its split (attribute `split`) and the SHA-256 of its imgid2idx mapping
(`imgid2idx_sha256`), so the readers and `--check` (which tools/process.sh
uses to skip finished work) tell a finished conversion from the halves of two
runs.

Usage: python3 tools/adaptive_detection_features_converter.py [--dataroot data]
       [--task vqa|flickr] [--split S ... [--tsv FILE ...]] [--feature_dim 2048] [--check]
"""
import contextlib
import os
import pickle
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from formats import (
    dictionary,  # noqa: E402
    features,  # noqa: E402
    flickr_files,  # noqa: E402
    vqa_files,  # noqa: E402
)
from formats.paths import feature_files, question_path  # noqa: E402
from runs.flags import FlagParser  # noqa: E402
from runs.progress import Progress  # noqa: E402
from tools.features_tsv import FEATURES_FIX, iter_tsv_records  # noqa: E402
from utils import UserError, atomic_path, atomic_write, hdf5_os_error, require_file, run_cli  # noqa: E402

VQA_SPLITS = ('train', 'val', 'test2015')
FLICKR_SPLITS = ('train', 'val', 'test')
VQA_ADAPTIVE_TSV = {  # in the original's reading order, which fixes the rows of {split}_imgid2idx.pkl
    'trainval': ['trainval/karpathy_test_resnet101_faster_rcnn_genome.tsv',
                 'trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.0',
                 'trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.1',
                 'trainval/karpathy_val_resnet101_faster_rcnn_genome.tsv'],
    'test2015': ['test2015/test2015_resnet101_faster_rcnn_genome.tsv'],
}
VQA_FIXED_TSV = {
    'trainval': ['trainval_36/trainval_resnet101_faster_rcnn_genome_36.tsv'],
    'test2015': ['test2015_36/test2015_resnet101_faster_rcnn_genome_36.tsv'],
}
FLICKR_TSV = {
    'train': ['train_flickr30k_resnet101_faster_rcnn_genome.tsv.1',
              'train_flickr30k_resnet101_faster_rcnn_genome.tsv.2'],
    'val': ['val_flickr30k_resnet101_faster_rcnn_genome.tsv.3'],
    'test': ['test_flickr30k_resnet101_faster_rcnn_genome.tsv.3'],
}
BLOCK_BYTES = 64 * 2 ** 20  # features buffered before each HDF5 write


class _SplitWriter:
    """Writes the records of one split, in TSV order, into preallocated datasets."""

    def __init__(self, h5, split, layout, feature_dim, fixed_boxes):
        self.split = split
        self.layout = layout  # [(image_id, num_boxes)] in TSV order, from the counting pass
        self.fixed = fixed_boxes is not None
        num_images = len(layout)
        if self.fixed:
            shape = (num_images, fixed_boxes)
        else:
            counts = np.array([n for _, n in layout], dtype=np.int64)
            ends = np.cumsum(counts)
            shape = (int(ends[-1]) if num_images else 0,)
            pos_boxes = np.stack([ends - counts, ends], axis=1).astype(np.int32)  # [num_images, 2]
            h5.create_dataset('pos_boxes', data=pos_boxes.reshape(num_images, 2), dtype='int32')
        self.datasets = {
            'image_features': h5.create_dataset('image_features', shape + (feature_dim,), dtype='f4'),
            'image_bb': h5.create_dataset('image_bb', shape + (4,), dtype='f4'),
            'spatial_features': h5.create_dataset('spatial_features', shape + (6,), dtype='f4'),
        }
        h5.attrs['split'] = split
        h5.attrs[features.IMGID2IDX_DIGEST] = features.imgid2idx_digest(image_rows(layout))
        self.block_rows = max(1, BLOCK_BYTES // (4 * feature_dim * (fixed_boxes or 1)))
        self.pending = []
        self.pending_rows = 0
        self.next_image = 0
        self.next_row = 0

    def add(self, record):
        if self.next_image >= len(self.layout) or self.layout[self.next_image] != (
                record['image_id'], record['num_boxes']):
            raise UserError('%s: image %d differs from the counting pass: the TSV file changed '
                            'during the conversion' % (record['where'], record['image_id']))
        self.next_image += 1
        spatials = features.spatial_features(record['boxes'], record['image_w'], record['image_h'])
        self.pending.append((record['features'], record['boxes'], spatials))
        self.pending_rows += 1 if self.fixed else record['num_boxes']
        if self.pending_rows >= self.block_rows:
            self.flush()

    def flush(self):
        if not self.pending:
            return
        join = np.stack if self.fixed else np.concatenate
        features, boxes, spatials = (join(column) for column in zip(*self.pending))
        rows = slice(self.next_row, self.next_row + len(features))
        self.datasets['image_features'][rows] = features
        self.datasets['image_bb'][rows] = boxes
        self.datasets['spatial_features'][rows] = spatials
        self.next_row += len(features)
        self.pending = []
        self.pending_rows = 0

    def finish(self):
        self.flush()
        if self.next_image != len(self.layout):
            raise UserError('split %s: %d of %d images were found again in the writing pass: the TSV '
                            'files changed during the conversion' % (self.split, self.next_image, len(self.layout)))


def image_rows(layout):
    """{image_id: row} of a split layout [(image_id, num_boxes)] in TSV order."""
    return {image_id: row for row, (image_id, _) in enumerate(layout)}


def _image_owners(split_images):
    owners = {}
    for split, image_ids in split_images.items():
        for image_id in image_ids:
            owners.setdefault(image_id, []).append(split)
    return owners


def count_boxes(tsv_paths, split_images, feature_dim, fixed_boxes=None):
    """First pass: per split, [(image_id, num_boxes)] in TSV order; and the
    number of TSV images no split needs. A needed image absent from the TSV
    is a UserError naming it."""
    owners = _image_owners(split_images)
    layouts = {split: [] for split in split_images}
    skipped = 0
    for record in Progress(iter_tsv_records(tsv_paths, feature_dim, decode=False, num_boxes=fixed_boxes),
                           'counting boxes', unit='images'):
        splits = owners.get(record['image_id'], ())
        for split in splits:
            layouts[split].append((record['image_id'], record['num_boxes']))
        skipped += not splits
    for split, image_ids in split_images.items():
        missing = sorted(set(image_ids) - {image_id for image_id, _ in layouts[split]})
        if missing:
            raise UserError('split %s: image %d (and %d more) has no line in %s; these are not the '
                            'features of this split, or the download is incomplete; %s'
                            % (split, missing[0], len(missing) - 1, ', '.join(tsv_paths), FEATURES_FIX))
    return layouts, skipped


def convert(tsv_paths, split_images, outputs, feature_dim=2048, fixed_boxes=None, log=print):
    """Convert the images of each split found in `tsv_paths`.

    split_images: {split: iterable of image ids}; outputs: {split: (hdf5 path,
    imgid2idx pickle path)}. Returns {split: {image_id: row}}.
    """
    for path in tsv_paths:
        require_file(path, FEATURES_FIX)
    split_images = {split: set(ids) for split, ids in split_images.items()}
    layouts, skipped = count_boxes(tsv_paths, split_images, feature_dim, fixed_boxes)
    owners = _image_owners(split_images)
    zero_area = 0
    try:
        with contextlib.ExitStack() as stack:
            writers = {}
            for split, layout in layouts.items():
                temporary = stack.enter_context(atomic_path(outputs[split][0]))
                h5 = stack.enter_context(h5py.File(temporary, 'w'))
                writers[split] = _SplitWriter(h5, split, layout, feature_dim, fixed_boxes)
            lines = skipped + len({image_id for layout in layouts.values() for image_id, _ in layout})
            for record in Progress(iter_tsv_records(tsv_paths, feature_dim, decode=owners, num_boxes=fixed_boxes),
                                   'converting', total=lines, unit='images'):
                for split in owners.get(record['image_id'], ()):
                    writers[split].add(record)
                zero_area += record['zero_area_boxes']
            for writer in writers.values():
                writer.finish()
    except RuntimeError as err:  # h5py closing a file whose writes failed (a full disk)
        failed_write = hdf5_os_error(err)
        if failed_write is None:
            raise
        raise failed_write from None
    img_id2idx = {}
    for split, layout in layouts.items():
        img_id2idx[split] = image_rows(layout)
        with atomic_write(outputs[split][1], 'wb') as handle:
            pickle.dump(img_id2idx[split], handle, protocol=dictionary.PICKLE_PROTOCOL)
        log('%s: %d images, %d boxes -> %s, %s' % (split, len(layout), sum(n for _, n in layout),
                                                  outputs[split][0], outputs[split][1]))
    log('skipped %d TSV images no question needs; kept %d zero-area boxes' % (skipped, zero_area))
    return img_id2idx


def unfinished_reason(h5_path, pkl_path, split):
    """Why `h5_path` + `pkl_path` are not a finished conversion of `split`
    (missing, unreadable, another split, or halves of different runs, as an
    interrupted re-conversion can leave them), or None when they are."""
    for path in (h5_path, pkl_path):
        if not os.path.exists(path):
            return '%s is missing' % path
    try:
        mapping = features.load_imgid2idx(pkl_path, 're-convert it')
        with h5py.File(h5_path, 'r') as h5:
            written_for = h5.attrs.get('split')
            digest = h5.attrs.get(features.IMGID2IDX_DIGEST)
            num_rows = len(h5['pos_boxes'] if 'pos_boxes' in h5 else h5['image_features'])
    except (UserError, OSError, KeyError) as err:
        return '%s or %s is unreadable (%s)' % (h5_path, pkl_path, err)
    if written_for is not None and str(written_for) != split:
        return '%s holds split %s' % (h5_path, written_for)
    if digest is not None and str(digest) != features.imgid2idx_digest(mapping):
        return '%s and %s come from different runs' % (h5_path, pkl_path)
    if len(mapping) != num_rows:
        return '%s maps %d images but %s holds %d' % (pkl_path, len(mapping), h5_path, num_rows)
    return None


# ----------------------------------------------------------------- command line

def _vqa_images(dataroot, split):
    return {question['image_id'] for question in vqa_files.load_questions(dataroot, split)}


def _flickr_images(dataroot, split):
    return set(flickr_files.read_split_ids(dataroot, split))


def write_flickr_id_sets(dataroot, splits, log=print):
    """Write `<split>_ids.pkl` for each of `splits` lacking it, as the
    original's converter does: the pickled set of every image id
    (flickr_files.converter_id_set), whose order the Flickr dictionary
    follows. Existing files are kept."""
    missing = [split for split in splits if not os.path.exists(flickr_files.ids_path(dataroot, split))]
    image_ids = flickr_files.converter_id_set(dataroot) if missing else None
    for split in missing:
        path = flickr_files.ids_path(dataroot, split)
        with atomic_write(path, 'wb') as handle:
            pickle.dump(image_ids, handle, protocol=dictionary.PICKLE_PROTOCOL)
        log('%s: %d image ids -> %s' % (split, len(image_ids), path))


def plan_jobs(args, fixed_boxes):
    """[(tsv paths, [splits])]: the TSV files read together and the splits they fill."""
    if args.tsv:
        return [(args.tsv, args.split)]
    join = lambda names: [os.path.join(args.dataroot, name) for name in names]  # noqa: E731
    if args.task == 'flickr':
        return [(join(FLICKR_TSV[split]), [split]) for split in (args.split or FLICKR_SPLITS)]
    files = VQA_FIXED_TSV if fixed_boxes else VQA_ADAPTIVE_TSV
    wanted = args.split or VQA_SPLITS
    jobs = [(join(files['trainval']), [split for split in wanted if split in ('train', 'val')]),
            (join(files['test2015']), [split for split in wanted if split == 'test2015'])]
    return [(paths, splits) for paths, splits in jobs if splits]


def build_parser(fixed):
    parser = FlagParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataroot', default=None,
                        help='data root (default: data, or data/flickr30k with --task flickr)')
    parser.add_argument('--task', default='vqa', choices=['vqa'] if fixed else ['vqa', 'flickr'])
    parser.add_argument('--split', nargs='+', default=None,
                        help='convert only these splits (vqa: train, val, test2015; flickr: train, val, test)')
    parser.add_argument('--tsv', nargs='+', default=None,
                        help='explicit input TSV file(s) holding the images of --split '
                             '(default: the release file names under the data root)')
    parser.add_argument('--feature_dim', type=int, default=2048, help='feature values per box (default 2048)')
    parser.add_argument('--check', action='store_true',
                        help='convert nothing: exit 0 when the outputs of the splits are a finished conversion, '
                             '1 (naming the reason) otherwise; used by tools/process.sh to skip done work')
    if fixed:
        parser.add_argument('--num_boxes', type=int, default=36, help='boxes per image (default 36)')
    return parser


def main(argv=None, fixed=False):
    args = build_parser(fixed).parse_args(argv)
    if args.dataroot is None:
        args.dataroot = 'data/flickr30k' if args.task == 'flickr' else 'data'
    splits = FLICKR_SPLITS if args.task == 'flickr' else VQA_SPLITS
    unknown = [split for split in args.split or () if split not in splits]
    if unknown:
        raise UserError('--split %s: not a %s split; choose from %s' % (unknown[0], args.task, ', '.join(splits)))
    if args.tsv and not args.split:
        raise UserError('--tsv needs --split: name the split(s) whose images the files hold')
    if args.feature_dim < 1:
        raise UserError('--feature_dim must be positive, got %d' % args.feature_dim)
    fixed_boxes = args.num_boxes if fixed else None
    if args.check:
        return check_outputs(args.dataroot, args.split or splits, not fixed)
    images_of = _flickr_images if args.task == 'flickr' else _vqa_images
    if args.task == 'flickr':
        write_flickr_id_sets(args.dataroot, args.split or splits)
    for tsv_paths, job_splits in plan_jobs(args, fixed_boxes):
        split_images = {split: images_of(args.dataroot, split) for split in job_splits}
        empty = [split for split in job_splits if not split_images[split]]
        if empty:
            raise UserError('split %s has no images: its %s lists none; %s'
                            % (empty[0], 'split file Flickr30kEntities/%s.txt' % empty[0] if args.task == 'flickr'
                               else 'question file %s' % question_path(args.dataroot, empty[0]),
                               'download it again (tools/download%s.sh)' % ('_flickr' if args.task == 'flickr'
                                                                           else '')))
        outputs = {split: feature_files(args.dataroot, split, not fixed) for split in job_splits}
        convert(tsv_paths, split_images, outputs, args.feature_dim, fixed_boxes)


def check_outputs(dataroot, splits, adaptive):
    """--check: exit status 1 naming the first split not (completely) converted."""
    for split in splits:
        reason = unfinished_reason(*feature_files(dataroot, split, adaptive), split)
        if reason is not None:
            print('not converted: %s' % reason)
            sys.exit(1)
    print('converted: %s' % ', '.join(splits))


if __name__ == '__main__':
    run_cli(main)  # Ctrl-C and SIGTERM remove the temporary outputs and exit with status 130
