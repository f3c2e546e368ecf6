"""Bad region features (docs/ROBUSTNESS.md): the bottom-up-attention TSV read
by the converters, the HDF5 files and `*_imgid2idx.pkl` they write, read by
`formats.features`. Each case is answered by a one-line `error: ...` naming
the file/line/key and the fix, exit status 2 and no output; a zero-area box
is a documented keep with a count. The `@case` machinery is
tests/helpers/bad_inputs.py."""
import os
import pickle
import shutil

import h5py
import numpy as np
import pytest

import utils
from bad_inputs import (
    case,
    cases_of,
    check_one_line_error,
    evaluate_cmd,
    main_cmd,
    rewrite_hdf5_dataset,
    rewrite_pickle,
)
from data_helpers import FEATURE_DIM, image_record, prepared_root
from robust_helpers import RunsCode, converter_cmd
from tools import adaptive_detection_features_converter as converter
from tools.features_tsv import encode_array


def rewrite_tsv_line(root, image_id, edit):
    """Replace the TSV line of `image_id` (under trainval/) by `edit(fields)`
    (a list of fields or a whole line); returns 'file:line' of it."""
    folder = os.path.join(root, 'trainval')
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        with open(path) as handle:
            lines = handle.read().split('\n')
        for index, line in enumerate(lines):
            if line.split('\t', 1)[0] == str(image_id):
                new = edit(line.split('\t'))
                lines[index] = new if isinstance(new, str) else '\t'.join(new)
                with open(path, 'w') as handle:
                    handle.write('\n'.join(lines))
                return '%s:%d' % (name, index + 1)
    raise KeyError(image_id)


# ----------------------------------------------------------------- the TSV, read by the converters

@case('karpathy_train_resnet101_faster_rcnn_genome.tsv.0:2', 'features field', 're-download')
def tsv_truncated_line(root):
    rewrite_tsv_line(root, 5, lambda fields: '\t'.join(fields)[:-7])  # an interrupted download
    return converter_cmd(root)


@case('karpathy_train_resnet101_faster_rcnn_genome.tsv.0:2', 'boxes field is not valid base64',
      're-download')
def tsv_base64_garbage(root):
    rewrite_tsv_line(root, 5, lambda fields: fields[:4] + ['@@@@not base64@@@@'] + fields[5:])
    return converter_cmd(root)


@case('tsv.0:2', 'boxes field holds 16 bytes, expected 32 (num_boxes 2', 're-download')
def tsv_box_count_disagrees(root):
    rewrite_tsv_line(root, 5, lambda fields: fields[:3] + ['2'] + fields[4:])
    return converter_cmd(root)


@case('tsv.0:2', 'features field has NaN or infinite values (box 0)', 're-download')
def tsv_nan_features(root):
    def nan_features(fields):
        features = image_record(5, 1)[4].copy()
        features[0, 3] = np.nan
        return fields[:5] + [encode_array(features)]
    rewrite_tsv_line(root, 5, nan_features)
    return converter_cmd(root)


@case('tsv.0:2', 'boxes field has NaN or infinite values (box 0)', 're-download')
def tsv_inf_boxes(root):
    def inf_boxes(fields):
        boxes = image_record(5, 1)[3].copy()
        boxes[0, 2] = np.inf
        return fields[:4] + [encode_array(boxes)] + fields[5:]
    rewrite_tsv_line(root, 5, inf_boxes)
    return converter_cmd(root)


@case('tsv.0:2', 'image 5 box 0 is inverted', 're-download')
def tsv_negative_area_box(root):
    def inverted(fields):
        boxes = image_record(5, 1)[3].copy()
        boxes[0, [1, 3]] = boxes[0, [3, 1]]
        return fields[:4] + [encode_array(boxes)] + fields[5:]
    rewrite_tsv_line(root, 5, inverted)
    return converter_cmd(root)


@case('tsv.0:2', 'image 5 has size 0.0 x', 'must be positive', 're-download')
def tsv_zero_image_size(root):
    rewrite_tsv_line(root, 5, lambda fields: fields[:1] + ['0'] + fields[2:])
    return converter_cmd(root)


@case('tsv.0:2', 'image 5 has num_boxes 0', 're-download')
def tsv_no_boxes(root):
    rewrite_tsv_line(root, 5, lambda fields: fields[:3] + ['0', '', ''])
    return converter_cmd(root)


@case('karpathy_test_resnet101_faster_rcnn_genome.tsv:1',
      'features field holds 96 bytes, expected 128', 'pass --feature_dim 6')
def tsv_wrong_feature_dim(root):
    return converter_cmd(root)[:-1] + ['8']


@case('tsv.0:2: image 5 box 0', 'lies outside the 645 x 475 image, as do 0 more of its 1 boxes', 're-download')
def tsv_box_outside_the_image(root):
    def far_outside(fields):
        boxes = image_record(5, 1)[3].copy()
        boxes[0, [0, 2]] += 10000.0
        return fields[:4] + [encode_array(boxes)] + fields[5:]
    rewrite_tsv_line(root, 5, far_outside)
    return converter_cmd(root)


@case('val.hdf5: is a folder, but a file is expected here')
def converter_output_is_a_folder(root):
    os.remove(os.path.join(root, 'val.hdf5'))
    os.makedirs(os.path.join(root, 'val.hdf5', 'keep'))
    return converter_cmd(root)


@case('val.hdf5: file too large for the file system or for the file-size limit')
def converter_writing_past_the_file_size_limit(root):
    return converter_cmd(root), {'file_size_limit': 4096}


# ----------------------------------------------------------------- the HDF5 files and *_imgid2idx.pkl

@case('train.hdf5: dataset(s) pos_boxes missing', 'adaptive_detection_features_converter.py')
def hdf5_missing_dataset(root):
    with h5py.File(os.path.join(root, 'train.hdf5'), 'a') as h5:
        del h5['pos_boxes']
    return main_cmd(root)


@case("train.hdf5 holds the features of split 'val', not 'train'",
      'adaptive_detection_features_converter.py')
def hdf5_of_another_split(root):
    shutil.copy(os.path.join(root, 'val.hdf5'), os.path.join(root, 'train.hdf5'))
    return main_cmd(root)


@case('train.hdf5: cannot read HDF5 file', 'adaptive_detection_features_converter.py')
def hdf5_truncated(root):
    path = os.path.join(root, 'train.hdf5')
    with open(path, 'rb') as handle:
        head = handle.read(2048)
    with open(path, 'wb') as handle:
        handle.write(head)
    return main_cmd(root)


@case('train.hdf5 and', 'train_imgid2idx.pkl come from different conversions',
      'adaptive_detection_features_converter.py')
def hdf5_and_imgid2idx_of_different_runs(root):
    path = os.path.join(root, 'train_imgid2idx.pkl')
    mapping = utils.safe_pickle_load(path)
    images = sorted(mapping, key=mapping.get)
    with open(path, 'wb') as handle:  # same images, rows in another order: silently wrong features otherwise
        pickle.dump({image_id: row for row, image_id in enumerate(reversed(images))}, handle, protocol=2)
    return main_cmd(root)


@case('val.hdf5 holds features of width %d' % (FEATURE_DIM - 2), 'train.hdf5 holds %d' % FEATURE_DIM,
      'tools/process.sh')
def val_features_of_another_width(root):
    with h5py.File(os.path.join(root, 'val.hdf5'), 'a') as h5:  # found at validation, after an epoch, before
        features = h5['image_features'][()]
        del h5['image_features']
        h5['image_features'] = features[:, :FEATURE_DIM - 2]
    return main_cmd(root)


@case('train_imgid2idx.pkl: unsafe or unreadable pickle', 'refusing to load',
      'adaptive_detection_features_converter.py')
def pickle_that_carries_code(root):
    with open(os.path.join(root, 'train_imgid2idx.pkl'), 'wb') as handle:
        pickle.dump({1: RunsCode(os.path.join(root, 'PWNED'))}, handle)
    return main_cmd(root)


@case("train_imgid2idx.pkl: maps '1' to 0", 'must be integers', 'adaptive_detection_features_converter.py')
def imgid2idx_with_string_ids(root):
    rewrite_pickle(os.path.join(root, 'train_imgid2idx.pkl'),
                   lambda mapping: {str(image_id): row for image_id, row in mapping.items()})
    return main_cmd(root)


@case('train.hdf5: image_features holds float64 values, expected float32',
      'adaptive_detection_features_converter.py')
def hdf5_float64_features(root):
    path = os.path.join(root, 'train.hdf5')
    with h5py.File(path, 'r') as h5:
        features = h5['image_features'][()]
    rewrite_hdf5_dataset(path, 'image_features', features.astype(np.float64))
    return main_cmd(root)


@case('val.hdf5: spatial_features is a group, not a dataset', 'adaptive_detection_features_converter.py')
def hdf5_group_for_a_dataset(root):
    with h5py.File(os.path.join(root, 'val.hdf5'), 'a') as h5:
        del h5['spatial_features']
        h5.create_group('spatial_features')
    return evaluate_cmd(root, os.path.join(root, 'model'))


@case('train.hdf5: image 1 has no boxes (and 0 more images)', 'adaptive_detection_features_converter.py')
def hdf5_image_without_boxes(root):
    path = os.path.join(root, 'train.hdf5')
    row = utils.safe_pickle_load(os.path.join(root, 'train_imgid2idx.pkl'))[1]
    with h5py.File(path, 'r') as h5:
        pos_boxes = h5['pos_boxes'][()]
    pos_boxes[row, 1] = pos_boxes[row, 0]
    rewrite_hdf5_dataset(path, 'pos_boxes', pos_boxes)
    return main_cmd(root)


@case('val_imgid2idx.pkl: unsafe or unreadable pickle (refusing to load numpy', 'adaptive_detection_features_converter.py')
def imgid2idx_of_numpy_objects(root):
    path = os.path.join(root, 'val_imgid2idx.pkl')
    mapping = utils.safe_pickle_load(path)
    with open(path, 'wb') as handle:
        pickle.dump({np.int64(image_id): np.int64(row) for image_id, row in mapping.items()}, handle, protocol=2)
    return evaluate_cmd(root, os.path.join(root, 'model'))


@pytest.mark.parametrize('name', cases_of(__name__))
def test_bad_input_gives_one_line_error_and_no_output(cli_results, name):
    check_one_line_error(cli_results, name)


# ----------------------------------------------------------------- documented skips and counts

def test_zero_area_boxes_are_kept_and_counted(tmp_path, capsys):
    root = prepared_root(tmp_path / 'data')
    capsys.readouterr()

    def zero_width(fields):
        boxes = image_record(5, 1)[3].copy()
        boxes[0, 2] = boxes[0, 0]
        return fields[:4] + [encode_array(boxes)] + fields[5:]
    rewrite_tsv_line(root, 5, zero_width)
    converter.main(converter_cmd(root)[1:])
    assert 'kept 1 zero-area boxes' in capsys.readouterr().out
    row = utils.safe_pickle_load(os.path.join(root, 'val_imgid2idx.pkl'))[5]
    with h5py.File(os.path.join(root, 'val.hdf5'), 'r') as h5:
        start, end = h5['pos_boxes'][row]
        assert end - start == 1 and h5['spatial_features'][start, 4] == 0.0  # width 0, kept as the original
