"""TSV -> HDF5 feature conversion (adaptive, fixed-36, Flickr30k): exact
contents, streaming validation with file:line errors, and no output left
behind by a failure or an interruption."""
import os
import pickle
import subprocess
import sys

import h5py
import numpy as np
import pytest

from data_helpers import (
    FEATURE_DIM,
    TEST_ORDER,
    TRAIN_ORDER,
    TRAINVAL_TSV,
    VAL_ORDER,
    boxes_of,
    image_record,
    write_raw_root,
)
from tools import adaptive_detection_features_converter as converter
from tools import detection_features_converter
from tools.features_tsv import encode_record, iter_tsv_records, write_tsv
from utils import UserError, safe_pickle_load

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(path):
    with open(path, 'rb') as handle:
        return pickle.load(handle)  # trusted: written by the converter under test


def _expected_spatials(boxes, width, height):
    w, h = (boxes[:, 2] - boxes[:, 0]) / width, (boxes[:, 3] - boxes[:, 1]) / height
    x, y = boxes[:, 0] / width, boxes[:, 1] / height
    return np.stack([x, y, x + w, y + h, w, h], 1)


def _outputs(root):
    return sorted(name for name in os.listdir(root) if name.endswith(('.hdf5', '.pkl', '.tmp')))


@pytest.fixture()
def raw_root(tmp_path):
    return write_raw_root(tmp_path)


def test_adaptive_conversion_contents(raw_root, capsys):
    converter.main(['--dataroot', raw_root, '--feature_dim', str(FEATURE_DIM)])
    assert 'skipped 1 TSV images' in capsys.readouterr().out  # image 99: no question
    for split, order in (('train', TRAIN_ORDER), ('val', VAL_ORDER), ('test2015', TEST_ORDER)):
        img_id2idx = _load(os.path.join(raw_root, '%s_imgid2idx.pkl' % split))
        assert type(img_id2idx) is dict and img_id2idx == {image_id: row for row, image_id in enumerate(order)}
        with h5py.File(os.path.join(raw_root, '%s.hdf5' % split), 'r') as h5:
            assert set(h5) == {'image_features', 'image_bb', 'spatial_features', 'pos_boxes'}
            assert h5['pos_boxes'].dtype == np.int32 and h5['image_features'].dtype == np.float32
            assert h5.attrs['split'] == split
            counts = [boxes_of(image_id) for image_id in order]
            ends = np.cumsum(counts)
            np.testing.assert_array_equal(h5['pos_boxes'][()], np.stack([ends - counts, ends], 1))
            assert h5['image_features'].shape == (sum(counts), FEATURE_DIM)
            for row, image_id in enumerate(order):
                _, width, height, boxes, features = image_record(image_id, boxes_of(image_id))
                start, end = h5['pos_boxes'][row]
                np.testing.assert_array_equal(h5['image_features'][start:end], features)
                np.testing.assert_array_equal(h5['image_bb'][start:end], boxes)
                spatials = h5['spatial_features'][start:end]
                np.testing.assert_array_equal(spatials, _expected_spatials(boxes, width, height))
                np.testing.assert_allclose(spatials[:, 2], boxes[:, 2] / width, rtol=1e-6)


# the original converter's reading order of the adaptive trainval files (FORMATS section 2)
ORIGINAL_TRAINVAL_ORDER = ['trainval/karpathy_test_resnet101_faster_rcnn_genome.tsv',
                           'trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.0',
                           'trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.1',
                           'trainval/karpathy_val_resnet101_faster_rcnn_genome.tsv']


def test_trainval_files_are_read_in_the_original_order(raw_root):
    """The rows of {split}_imgid2idx.pkl follow the files in the original's
    order; train image 2 lies in the karpathy_val file, so reading val before
    train would put it first."""
    def images_in_order(files, wanted):
        return [image_id for name in files for image_id, _ in TRAINVAL_TSV[name] if image_id in wanted]

    converter.main(['--dataroot', raw_root, '--split', 'train', 'val', '--feature_dim', str(FEATURE_DIM)])
    for split, wanted in (('train', {1, 2, 3}), ('val', {4, 5})):
        expected = images_in_order(ORIGINAL_TRAINVAL_ORDER, wanted)
        rows = _load(os.path.join(raw_root, '%s_imgid2idx.pkl' % split))
        assert list(rows.items()) == [(image_id, row) for row, image_id in enumerate(expected)]
    val_first = [ORIGINAL_TRAINVAL_ORDER[i] for i in (0, 3, 1, 2)]
    assert images_in_order(val_first, {1, 2, 3}) != images_in_order(ORIGINAL_TRAINVAL_ORDER, {1, 2, 3})


def test_fixed_box_conversion_with_explicit_tsv(tmp_path):
    root = write_raw_root(tmp_path)
    records = [image_record(image_id, 36, 4) for image_id in (3, 1, 2, 42)]
    write_tsv(str(tmp_path / 'trainval36.tsv'), records)
    detection_features_converter.main(['--dataroot', root, '--split', 'train', '--feature_dim', '4',
                                       '--tsv', str(tmp_path / 'trainval36.tsv')])
    assert _load(os.path.join(root, 'train36_imgid2idx.pkl')) == {3: 0, 1: 1, 2: 2}
    with h5py.File(os.path.join(root, 'train36.hdf5'), 'r') as h5:
        assert set(h5) == {'image_features', 'image_bb', 'spatial_features'}
        assert h5['image_features'].shape == (3, 36, 4) and h5['spatial_features'].shape == (3, 36, 6)
        np.testing.assert_array_equal(h5['image_features'][1], records[1][4])
        np.testing.assert_array_equal(h5['image_bb'][2], records[2][3])
    write_tsv(str(tmp_path / 'wrong.tsv'), [image_record(1, 10, 4)])
    with pytest.raises(UserError, match=r'wrong.tsv:1: image 1 has 10 boxes; .* 36'):
        detection_features_converter.main(['--dataroot', root, '--split', 'val', '--feature_dim', '4',
                                           '--tsv', str(tmp_path / 'wrong.tsv')])


def test_flickr_task_reads_split_files(tmp_path, capsys):
    root = tmp_path / 'flickr30k'
    (root / 'Flickr30kEntities').mkdir(parents=True)
    for split, ids in (('train', [11, 12]), ('val', [13]), ('test', [14])):
        (root / 'Flickr30kEntities' / ('%s.txt' % split)).write_text(''.join('%d\n' % i for i in ids))
    write_tsv(str(root / 'train_flickr30k_resnet101_faster_rcnn_genome.tsv.1'), [image_record(12, 3)])
    write_tsv(str(root / 'train_flickr30k_resnet101_faster_rcnn_genome.tsv.2'), [image_record(11, 2)])
    write_tsv(str(root / 'val_flickr30k_resnet101_faster_rcnn_genome.tsv.3'), [image_record(13, 4)])
    write_tsv(str(root / 'test_flickr30k_resnet101_faster_rcnn_genome.tsv.3'), [image_record(14, 1)])
    converter.main(['--task', 'flickr', '--dataroot', str(root), '--feature_dim', str(FEATURE_DIM)])
    assert _load(str(root / 'train_imgid2idx.pkl')) == {12: 0, 11: 1}
    with h5py.File(str(root / 'train.hdf5'), 'r') as h5:
        np.testing.assert_array_equal(h5['image_bb'][3:5], image_record(11, 2)[3])
    assert {'val.hdf5', 'test.hdf5', 'val_imgid2idx.pkl', 'test_imgid2idx.pkl'} <= set(os.listdir(root))
    # like the original, the converter writes the absent <split>_ids.pkl: every image id, as a set
    assert 'note: no %s' % (root / 'flickr30k_images') in capsys.readouterr().out
    for split in ('train', 'val', 'test'):
        assert safe_pickle_load(str(root / ('%s_ids.pkl' % split))) == {11, 12, 13, 14}


def _tsv_line(image_id=1, num_boxes=2, dim=FEATURE_DIM):
    record = image_record(image_id, num_boxes, dim)
    return encode_record(*record).split('\t')


def _with_bad_line(fields_or_text):
    """Train images 3, 1 (line 2: the bad one) and 2."""
    text = fields_or_text if isinstance(fields_or_text, str) else '\t'.join(fields_or_text)
    return '\n'.join([encode_record(*image_record(3, 2)), text, encode_record(*image_record(2, 5))]) + '\n'


def _nan_features():
    fields = _tsv_line()
    features = image_record(1, 2)[4].copy()
    features[1, 2] = np.nan
    fields[5] = encode_record(1, 1, 1, np.zeros((2, 4)), features).split('\t')[5]
    return fields


def _inverted_box():
    image_id, width, height, boxes, features = image_record(1, 2)
    boxes[1, [0, 2]] = boxes[1, [2, 0]]
    return encode_record(image_id, width, height, boxes, features)


BAD_LINES = {
    'field count': (_tsv_line()[:5], r'5 tab-separated fields, expected 6'),
    'base64': (_tsv_line()[:4] + ['@@not base64@@', _tsv_line()[5]], r'boxes field is not valid base64'),
    'feature size': (_tsv_line(dim=FEATURE_DIM + 2), r'features field holds .* pass --feature_dim 8'),
    'box count': (_tsv_line()[:3] + ['3'] + _tsv_line()[4:], r'boxes field holds 32 bytes, expected 48'),
    'nan': (_nan_features(), r'features field has NaN or infinite values \(box 1\)'),
    'inverted box': (_inverted_box(), r'image 1 box 1 is inverted'),
    'header': (['one'] + _tsv_line()[1:], r'must be numbers'),
    'duplicate': (encode_record(*image_record(3, 2)), r'image 3 appears again \(first at .*:1\)'),
}


@pytest.mark.parametrize('case', sorted(BAD_LINES))
def test_malformed_line_is_named_and_leaves_no_output(tmp_path, case):
    root = write_raw_root(tmp_path)
    line, message = BAD_LINES[case]
    bad_tsv = tmp_path / 'bad.tsv'
    bad_tsv.write_text(_with_bad_line(line))
    before = _outputs(root)
    with pytest.raises(UserError, match=r'bad.tsv:2: .*' + message):
        converter.main(['--dataroot', root, '--split', 'train', '--feature_dim', str(FEATURE_DIM),
                        '--tsv', str(bad_tsv)])
    assert _outputs(root) == before == []


def test_reader_yields_validated_records(tmp_path):
    path = str(tmp_path / 'f.tsv')
    write_tsv(path, [image_record(5, 3), image_record(6, 1)])
    records = list(iter_tsv_records([path], FEATURE_DIM, decode={6}))
    assert [(r['image_id'], r['num_boxes'], r['where']) for r in records] == [(5, 3, path + ':1'), (6, 1, path + ':2')]
    assert records[0]['features'] is None and records[1]['features'].dtype == np.float32
    np.testing.assert_array_equal(records[1]['boxes'], image_record(6, 1)[3])


def test_missing_image_is_named(tmp_path):
    root = write_raw_root(tmp_path)
    os.remove(os.path.join(root, 'trainval', 'karpathy_val_resnet101_faster_rcnn_genome.tsv'))
    write_tsv(os.path.join(root, 'trainval', 'karpathy_val_resnet101_faster_rcnn_genome.tsv'), [])
    with pytest.raises(UserError, match=r'split train: image 2 \(and 0 more\) .*has no line in'):
        converter.main(['--dataroot', root, '--split', 'train', '--feature_dim', str(FEATURE_DIM)])
    os.remove(os.path.join(root, 'trainval', 'karpathy_val_resnet101_faster_rcnn_genome.tsv'))
    with pytest.raises(UserError, match=r'karpathy_val_resnet101_faster_rcnn_genome.tsv.*tools/download.sh'):
        converter.main(['--dataroot', root, '--feature_dim', str(FEATURE_DIM)])
    assert _outputs(root) == []


def test_interrupted_conversion_leaves_no_output(tmp_path, monkeypatch):
    root = write_raw_root(tmp_path)
    calls = []
    original_add = converter._SplitWriter.add

    def add_then_interrupt(self, record):
        calls.append(record['image_id'])
        if len(calls) == 3:
            raise KeyboardInterrupt
        original_add(self, record)

    monkeypatch.setattr(converter._SplitWriter, 'add', add_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        converter.main(['--dataroot', root, '--feature_dim', str(FEATURE_DIM)])
    assert len(calls) == 3 and _outputs(root) == []


def test_command_line_reports_errors_without_traceback(tmp_path):
    root = write_raw_root(tmp_path)
    for name in TRAINVAL_TSV:
        os.remove(os.path.join(root, name))
    result = subprocess.run([sys.executable, 'tools/adaptive_detection_features_converter.py', '--dataroot', root,
                             '--split', 'val', '--feature_dim', str(FEATURE_DIM)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith('error: missing file ') and 'karpathy_test' in result.stderr
    assert 'Traceback' not in result.stderr
