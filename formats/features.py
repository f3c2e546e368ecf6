"""The region-feature store: `{split}.hdf5` + `{split}_imgid2idx.pkl`
written by the converters (FORMATS.md section 3).

Features stay in their HDF5 file and are read on demand (one handle per
process, reopened after a fork), so host memory does not grow with the
feature file; `load_in_memory=True` trades memory for speed.
"""
import hashlib
import json
import os

import h5py
import numpy as np
import torch

import utils
from formats.paths import feature_files
from utils import UserError

FEATURE_SPLITS = ('train', 'val', 'test2015')
# How far past an edge of its image a box may reach, as a fraction of the
# image's width or height. A box a few pixels outside its image (y1 = -2,
# x2 = w + 1.5) is data the original converts and uses as written, so it is
# kept. A box more than a whole image width or height past an edge (spatial
# features below -1 or above 2) is no detector's or annotator's box of that
# image: the recorded image size is wrong (another image's, or a rescaled
# copy's) or the box belongs to another image. Used by the TSV reader
# (tools/features_tsv.py) and the Flickr30k annotation reader.
FAR_OUTSIDE = 1.0


def boxes_far_outside(boxes, image_w, image_h):
    """Indices of the boxes [n, 4] (x1, y1, x2, y2) more than FAR_OUTSIDE
    times the image's width or height past an edge, and the pixels each box
    reaches past its farthest edge [n] (0 or less: inside the image)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sizes = np.array([image_w, image_h, image_w, image_h], dtype=np.float64)  # [4]
    past_edge = np.maximum(-boxes, boxes - sizes)  # [n, 4] pixels past the nearer edge (negative: inside)
    far = np.nonzero((past_edge > FAR_OUTSIDE * sizes).any(axis=1))[0]
    return far, past_edge.max(axis=1)


def converter_fix(adaptive):
    tool = 'adaptive_detection_features_converter.py' if adaptive else 'detection_features_converter.py'
    return 'run tools/%s (part of tools/process.sh)' % tool


def feature_split(name):
    """test-dev images are a subset of test2015: test-dev reads test2015 features."""
    return 'test2015' if name == 'test-dev2015' else name


IMGID2IDX_DIGEST = 'imgid2idx_sha256'  # HDF5 attribute: digest of the imgid2idx written with it


def imgid2idx_digest(img_id2idx):
    """Hex SHA-256 of an image_id -> row mapping. The converters store it in
    the HDF5 file (attribute `imgid2idx_sha256`) so that readers can tell a
    matching `*_imgid2idx.pkl` from one of another (e.g. interrupted) run."""
    pairs = sorted((int(image_id), int(row)) for image_id, row in img_id2idx.items())
    return hashlib.sha256(json.dumps(pairs).encode('ascii')).hexdigest()


def check_imgid2idx_digest(h5_path, written_digest, pkl_path, img_id2idx, fix):
    """UserError when the HDF5 file names another imgid2idx than `img_id2idx`
    (files converted by the original carry no digest and pass)."""
    if written_digest is not None and str(written_digest) != imgid2idx_digest(img_id2idx):
        raise UserError('%s and %s come from different conversions (an interrupted or mixed run); '
                        're-convert them: %s' % (h5_path, pkl_path, fix))


def load_imgid2idx(path, fix):
    """{image_id: feature row} of a `*_imgid2idx.pkl` file (restricted unpickler)."""
    mapping = utils.safe_pickle_load(path, fix)
    if not isinstance(mapping, dict):
        raise UserError('%s: expected a dict image_id -> row, found %s; %s' % (path, type(mapping).__name__, fix))
    for image_id, row in mapping.items():
        if not utils.is_id(image_id) or type(row) is not int:
            raise UserError('%s: maps %s to %s; image ids and rows must be integers; %s'
                            % (path, utils.brief(image_id), utils.brief(row), fix))
    return dict(mapping)


def check_feature_datasets(h5, path, names, fix):
    """UserError unless each of `names` in the open HDF5 file `h5` is a
    dataset (not a group) of the converter's dtype: float32 features, boxes
    and spatials (another dtype would reach the model as it is), integer
    pos_boxes."""
    for name in names:
        item = h5[name]
        if not isinstance(item, h5py.Dataset):
            raise UserError('%s: %s is a group, not a dataset; the file was not written by the feature converter; %s'
                            % (path, name, fix))
        if name == 'pos_boxes':
            if item.dtype.kind not in 'iu':
                raise UserError('%s: pos_boxes holds %s, expected integers; %s' % (path, item.dtype, fix))
        elif item.dtype != np.float32:
            raise UserError('%s: %s holds %s values, expected float32 (what the converter writes); %s'
                            % (path, name, item.dtype, fix))


def check_no_empty_images(path, boxes_per_row, img_id2idx, fix):
    """UserError naming an image with no box (its attention would be over
    nothing): the converters refuse num_boxes 0, so the file was altered."""
    empty = np.flatnonzero(np.asarray(boxes_per_row) <= 0)
    if empty.size:
        image_of = {row: image_id for image_id, row in img_id2idx.items()}
        raise UserError('%s: image %s has no boxes (and %d more images); every image needs at least one; %s'
                        % (path, image_of.get(int(empty[0]), 'of row %d' % empty[0]), empty.size - 1, fix))


class FeatureStore:
    """Region features of one split: `{split}.hdf5` + `{split}_imgid2idx.pkl`
    (adaptive) or `{split}36.hdf5` + `{split}36_imgid2idx.pkl` (fixed 36), for
    VQA, Visual Genome and Flickr30k.

    `get(row)` returns (features [n_boxes, v_dim], spatials [n_boxes, 6]) as
    float32 tensors. The HDF5 file is opened lazily by each process that reads
    (a handle never crosses a fork); `load_in_memory=True` reads both arrays
    into RAM once. `max_boxes` keeps only the first boxes of each image
    (Flickr30k: 100); `with_image_bb` also reads the pixel boxes `image_bb`
    (`image_boxes(row)`). `splits` are the valid split names and `fix` the
    advice of every error (default: the VQA converters').
    """

    def __init__(self, dataroot, split, adaptive=True, load_in_memory=False, max_boxes=None, with_image_bb=False,
                 splits=FEATURE_SPLITS, fix=None):
        if split not in splits:
            raise UserError('no features for split %r; expected one of %s'
                            % (split, ', '.join(splits)))
        fix = fix or converter_fix(adaptive)
        self.split = split
        self.adaptive = adaptive
        self.max_boxes = max_boxes
        self.with_image_bb = with_image_bb
        self.h5_path, self.imgid2idx_path = feature_files(dataroot, split, adaptive)
        self.img_id2idx = load_imgid2idx(self.imgid2idx_path, fix)
        utils.require_file(self.h5_path, fix)
        self._read_layout(fix)
        self._check_rows(fix)
        self._h5 = None
        self._h5_pid = None
        self._features = self._spatials = None
        if load_in_memory:
            with self._open(fix) as h5:
                self._features = h5['image_features'][()]
                self._spatials = h5['spatial_features'][()]

    def _open(self, fix):
        try:
            return h5py.File(self.h5_path, 'r')
        except OSError as err:
            raise UserError('%s: cannot read HDF5 file (%s); %s' % (self.h5_path, err, fix)) from None

    def _read_layout(self, fix):
        needed = (['image_features', 'spatial_features'] + (['pos_boxes'] if self.adaptive else [])
                  + (['image_bb'] if self.with_image_bb else []))
        with self._open(fix) as h5:
            missing = [key for key in needed if key not in h5]
            if missing:
                raise UserError('%s: dataset(s) %s missing (%s features file expected); %s'
                                % (self.h5_path, ', '.join(missing),
                                   'adaptive' if self.adaptive else 'fixed-36', fix))
            written_for = h5.attrs.get('split')
            if written_for is not None and str(written_for) != self.split:
                raise UserError('%s holds the features of split %r, not %r; %s'
                                % (self.h5_path, str(written_for), self.split, fix))
            self._written_digest = h5.attrs.get(IMGID2IDX_DIGEST)
            check_feature_datasets(h5, self.h5_path, needed, fix)
            features = h5['image_features']
            if features.ndim != (2 if self.adaptive else 3):
                raise UserError('%s: image_features is %d-d, so it is not a %s features file; %s'
                                % (self.h5_path, features.ndim,
                                   'adaptive' if self.adaptive else 'fixed-36', fix))
            self.image_bb = (np.asarray(h5['image_bb'], dtype=np.float32)  # [total boxes, 4]
                             if self.with_image_bb else None)
            self.v_dim = int(features.shape[-1])
            self.s_dim = int(h5['spatial_features'].shape[-1])
            if self.s_dim != 6:
                raise UserError('%s: spatial_features has %d values per box, expected 6 (x1/w, y1/h, x2/w, y2/h, '
                                'w, h); %s' % (self.h5_path, self.s_dim, fix))
            if self.with_image_bb and self.image_bb.shape != features.shape[:-1] + (4,):
                raise UserError('%s: the box rows disagree (image_features %s, image_bb %s); each box needs a row in '
                                'every dataset, image_bb 4 values; %s'
                                % (self.h5_path, features.shape, self.image_bb.shape, fix))
            if h5['spatial_features'].shape[:-1] != features.shape[:-1]:
                raise UserError('%s: spatial_features %s and image_features %s disagree on the boxes; %s'
                                % (self.h5_path, h5['spatial_features'].shape, features.shape, fix))
            if self.adaptive:
                self.pos_boxes = h5['pos_boxes'][()].astype(np.int64)  # [num_images, 2]
                if self.pos_boxes.ndim != 2 or self.pos_boxes.shape[1] != 2:
                    raise UserError('%s: pos_boxes has shape %s, expected [images, 2]; %s'
                                    % (self.h5_path, self.pos_boxes.shape, fix))
                self.num_images = len(self.pos_boxes)
                total_boxes = features.shape[0]
                if len(self.pos_boxes) and (self.pos_boxes.min() < 0 or self.pos_boxes.max() > total_boxes
                                            or (self.pos_boxes[:, 0] > self.pos_boxes[:, 1]).any()):
                    raise UserError('%s: pos_boxes points outside the %d feature rows; %s'
                                    % (self.h5_path, total_boxes, fix))
            else:
                self.pos_boxes = None
                self.num_images = int(features.shape[0])
                self.fixed_boxes = int(features.shape[1])

    def _check_rows(self, fix):
        rows = set(self.img_id2idx.values())
        if len(self.img_id2idx) != self.num_images or rows != set(range(self.num_images)):
            raise UserError('%s maps %d images but %s holds %d: the two files come from different '
                            'conversions or splits; %s' % (self.imgid2idx_path, len(self.img_id2idx),
                                                           self.h5_path, self.num_images, fix))
        check_imgid2idx_digest(self.h5_path, self._written_digest, self.imgid2idx_path, self.img_id2idx, fix)
        check_no_empty_images(self.h5_path, self.boxes_per_row(), self.img_id2idx, fix)

    def row_of_image(self, image_id, where):
        """Feature row of `image_id`; `where` names who asked (for the error)."""
        row = self.img_id2idx.get(image_id)
        if row is None:
            raise UserError('%s: image %d has no features in %s (%d images); the feature file is '
                            'from another split or incomplete; %s'
                            % (where, image_id, self.h5_path, self.num_images,
                               converter_fix(self.adaptive)))
        return row

    def _datasets(self):
        """(image_features, spatial_features) h5py datasets of this process's handle."""
        if self._h5 is None or self._h5_pid != os.getpid():
            handle = h5py.File(self.h5_path, 'r')
            self._h5 = (handle, handle['image_features'], handle['spatial_features'])
            self._h5_pid = os.getpid()
        return self._h5[1], self._h5[2]

    def _stored_boxes_per_row(self):
        if self.adaptive:
            return self.pos_boxes[:, 1] - self.pos_boxes[:, 0]
        return np.full(self.num_images, self.fixed_boxes, dtype=np.int64)

    def boxes_per_row(self):
        """int64 [num_images]: the box count each feature row yields (at most max_boxes)."""
        counts = self._stored_boxes_per_row()
        return counts if self.max_boxes is None else np.minimum(counts, self.max_boxes)

    @property
    def cut_images(self):
        """Images with more than max_boxes boxes (only their first max_boxes are read)."""
        return 0 if self.max_boxes is None else int((self._stored_boxes_per_row() > self.max_boxes).sum())

    def _box_range(self, row):
        if self.adaptive:
            start, end = (int(x) for x in self.pos_boxes[row])
            if self.max_boxes is not None:
                end = min(end, start + self.max_boxes)
            return slice(start, end)
        return row

    def image_boxes(self, row):
        """float32 [n_boxes, 4]: the pixel boxes (x1, y1, x2, y2) of feature row
        `row` (needs with_image_bb)."""
        return self.image_bb[self._box_range(row)]

    def get(self, row):
        """(features [n_boxes, v_dim], spatials [n_boxes, 6]) of feature row `row`."""
        boxes = self._box_range(row)
        if self._features is not None:
            features, spatials = self._features[boxes], self._spatials[boxes]
        else:
            features_data, spatials_data = self._datasets()
            features, spatials = features_data[boxes], spatials_data[boxes]
        return (torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(spatials, dtype=np.float32)))

    def close(self):
        if self._h5 is not None and self._h5_pid == os.getpid():
            self._h5[0].close()
        self._h5 = self._h5_pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_h5'] = state['_h5_pid'] = None
        return state


def spatial_features(boxes, image_w, image_h):
    """[n, 6] = x1/w, y1/h, x2/w, y2/h, (x2-x1)/w, (y2-y1)/h, computed as the
    original (x2/w as x1/w + width/w) so float32 values match it."""
    scaled_w = (boxes[:, 2] - boxes[:, 0]) / image_w
    scaled_h = (boxes[:, 3] - boxes[:, 1]) / image_h
    scaled_x = boxes[:, 0] / image_w
    scaled_y = boxes[:, 1] / image_h
    return np.stack([scaled_x, scaled_y, scaled_x + scaled_w, scaled_y + scaled_h, scaled_w, scaled_h],
                    axis=1).astype(np.float32)  # [n, 6]
