"""Boxes outside their image (docs/ROBUSTNESS.md): a box a few pixels past an
edge is the original's data and is converted exactly as written, counted in
one note per file; a box more than a whole image width or height past an
edge (formats.features.FAR_OUTSIDE) is refused, by the VQA converters (adaptive
and fixed-36) and the Flickr30k converter alike, and so is a Flickr30k
ground-truth box far outside its image."""
import os

import numpy as np
import pytest

from data_helpers import FEATURE_DIM, questions_json, write_json
from formats import flickr_files
from formats.features import FeatureStore
from tools import adaptive_detection_features_converter, detection_features_converter
from tools.features_tsv import write_tsv
from utils import UserError

WIDTH, HEIGHT = 500.0, 400.0
NUM_BOXES = 4
EDGE_BOXES = np.array([[-2.0, 10.0, 50.0, 60.0],          # 2 pixels left of the image
                       [5.0, -0.5, 40.0, 40.0],           # half a pixel above it
                       [10.0, 10.0, WIDTH + 1.5, HEIGHT],  # 1.5 pixels past the right edge
                       [0.0, 0.0, WIDTH, HEIGHT]], dtype=np.float32)  # the whole image: inside
FAR_BOX = [10.0, 10.0, 3 * WIDTH, 300.0]  # x2 at three times the width: two widths past the edge
IMAGES = (4, 5)  # the images of the val questions below


def features(image_id):
    return np.random.default_rng(image_id).uniform(0.1, 2.0, (NUM_BOXES, FEATURE_DIM)).astype(np.float32)


def write_records(path, boxes_of):
    write_tsv(str(path), [(image_id, WIDTH, HEIGHT, boxes_of(image_id), features(image_id)) for image_id in IMAGES])


def vqa_root(tmp_path):
    root = tmp_path / 'data'
    write_json(str(root / 'v2_OpenEnded_mscoco_val2014_questions.json'),
               questions_json('val2014', [(201, 4, 'Is it raining?'), (202, 5, 'How many people?')]))
    return root


def flickr_root(tmp_path):
    root = tmp_path / 'flickr30k'
    (root / 'Flickr30kEntities').mkdir(parents=True)
    for split, ids in (('train', [1]), ('val', IMAGES), ('test', [9])):
        (root / 'Flickr30kEntities' / ('%s.txt' % split)).write_text(''.join('%d\n' % i for i in ids))
    return root


def convert_vqa(tmp_path, boxes_of):
    root, tsv = vqa_root(tmp_path), tmp_path / 'val.tsv'
    write_records(tsv, boxes_of)
    adaptive_detection_features_converter.main(['--dataroot', str(root), '--split', 'val', '--feature_dim',
                                                str(FEATURE_DIM), '--tsv', str(tsv)])
    return FeatureStore(str(root), 'val', with_image_bb=True), str(tsv)


def convert_vqa_fixed(tmp_path, boxes_of):
    root, tsv = vqa_root(tmp_path), tmp_path / 'val36.tsv'
    write_records(tsv, boxes_of)
    detection_features_converter.main(['--dataroot', str(root), '--split', 'val', '--feature_dim', str(FEATURE_DIM),
                                       '--num_boxes', str(NUM_BOXES), '--tsv', str(tsv)])
    return FeatureStore(str(root), 'val', adaptive=False, with_image_bb=True), str(tsv)


def convert_flickr(tmp_path, boxes_of):
    root = flickr_root(tmp_path)
    tsv = root / 'val_flickr30k_resnet101_faster_rcnn_genome.tsv.3'
    write_records(tsv, boxes_of)
    adaptive_detection_features_converter.main(['--task', 'flickr', '--dataroot', str(root), '--split', 'val',
                                                '--feature_dim', str(FEATURE_DIM)])
    return FeatureStore(str(root), 'val', with_image_bb=True, splits=flickr_files.SPLITS), str(tsv)


CONVERTERS = pytest.mark.parametrize('convert', [convert_vqa, convert_vqa_fixed, convert_flickr],
                                     ids=['vqa', 'vqa-fixed36', 'flickr'])


@CONVERTERS
def test_boxes_a_few_pixels_outside_are_kept_as_written_and_noted_once_per_file(tmp_path, capsys, convert):
    store, tsv = convert(tmp_path, lambda image_id: EDGE_BOXES)
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith('note: %s' % tsv)]
    assert notes == ['note: %s: 6 boxes of 2 images reach up to 2 pixels outside their image; kept as written, as '
                     'the original uses them' % tsv]
    for image_id in IMAGES:
        row = store.img_id2idx[image_id]
        np.testing.assert_array_equal(store.image_boxes(row), EDGE_BOXES)  # exactly as written
        feature_rows, spatials = store.get(row)
        np.testing.assert_array_equal(feature_rows.numpy(), features(image_id))
        assert spatials[0, 0] == np.float32(-2.0 / WIDTH) and spatials[2, 2] == np.float32(
            10.0 / WIDTH + (WIDTH + 1.5 - 10.0) / WIDTH)


@CONVERTERS
def test_a_box_three_image_widths_out_is_refused_and_nothing_is_written(tmp_path, convert):
    def one_far_box(image_id):
        boxes = EDGE_BOXES.copy()
        if image_id == 5:
            boxes[1] = FAR_BOX
        return boxes
    with pytest.raises(UserError, match=r'\.tsv(\.3)?:2: image 5 box 1 \(x1, y1, x2, y2 = \[10\.0, 10\.0, 1500\.0, '
                                        r'300\.0\]\) lies outside the 500 x 400 image, as do 0 more of its 4 boxes: '
                                        r'more than a whole image width or height past an edge'):
        convert(tmp_path, one_far_box)
    written = [name for name in os.listdir(tmp_path / ('flickr30k' if convert is convert_flickr else 'data'))
               if name.endswith(('.hdf5', 'imgid2idx.pkl', '.tmp'))]
    assert written == []


def test_a_box_a_whole_width_out_is_the_last_one_kept(tmp_path):
    """The threshold: x2 = 2 w (one width past the edge) is kept, a pixel more is refused."""
    boxes = np.array([[0.0, 0.0, 2 * WIDTH, HEIGHT]], dtype=np.float32)
    root = vqa_root(tmp_path)
    for name, x2 in (('kept.tsv', 2 * WIDTH), ('refused.tsv', 2 * WIDTH + 1)):
        boxes[0, 2] = x2
        write_tsv(str(tmp_path / name), [(image_id, WIDTH, HEIGHT, boxes, features(image_id)[:1])
                                         for image_id in IMAGES])
    argv = ['--dataroot', str(root), '--split', 'val', '--feature_dim', str(FEATURE_DIM), '--tsv']
    adaptive_detection_features_converter.main(argv + [str(tmp_path / 'kept.tsv')])
    with pytest.raises(UserError, match='refused.tsv:1: image 4 box 0'):
        adaptive_detection_features_converter.main(argv + [str(tmp_path / 'refused.tsv')])


def annotation(box, size='<size><width>500</width><height>400</height><depth>3</depth></size>'):
    return ('<annotation><filename>7.jpg</filename>%s<object><name>1</name><bndbox><xmin>%d</xmin><ymin>%d</ymin>'
            '<xmax>%d</xmax><ymax>%d</ymax></bndbox></object></annotation>' % ((size,) + tuple(box)))


@pytest.mark.parametrize('box', [[-2, 10, 501, 400], [0, -1, 50, 402]])
def test_flickr_ground_truth_boxes_a_few_pixels_outside_are_kept(tmp_path, box):
    path = tmp_path / '7.xml'
    path.write_text(annotation(box))
    assert flickr_files.parse_annotation_file(str(path)) == {1: [box]}


def test_flickr_ground_truth_box_far_outside_its_image_names_the_annotation_file(tmp_path):
    path = tmp_path / '7.xml'
    path.write_text(annotation([-5000, 10, 90000, 300]))
    with pytest.raises(UserError, match=r'7\.xml: box \[-5000, 10, 90000, 300\] lies more than a whole image width '
                                        r'or height outside the 500 x 400 image of its <size>; the file is damaged: '
                                        r'download annotations\.zip'):
        flickr_files.parse_annotation_file(str(path))
    path.write_text(annotation([-5000, 10, 90000, 300], size=''))  # no <size>: nothing to compare with, as the original
    assert flickr_files.parse_annotation_file(str(path)) == {1: [[-5000, 10, 90000, 300]]}
