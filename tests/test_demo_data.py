"""tools/make_demo_data.py on synthetic images drawn here (no demo-only
packages needed): region proposer, descriptor, format writers, and a full
build of a tiny demo data root."""
import base64
import csv
import importlib.util
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('make_demo_data', REPO / 'tools' / 'make_demo_data.py')
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)
from tools import demo_formats, demo_regions, demo_sources  # noqa: E402  (the module above put the repo root on sys.path)
from tools.features_tsv import encode_record  # noqa: E402
from utils import UserError  # noqa: E402

csv.field_size_limit(sys.maxsize)

WHITE = (255, 255, 255)
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


# ------------------------------------------------------------ drawing helpers

def blank(size=64, colour=WHITE):
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = colour
    return image


def pixel_centres(size=64):
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    return xs, ys


def circle_mask(cx, cy, radius, size=64):
    xs, ys = pixel_centres(size)
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= radius ** 2


def rectangle_mask(x1, y1, x2, y2, size=64):
    mask = np.zeros((size, size), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def triangle_mask(apex_x, top, bottom, half_base, size=64):
    """Upward-pointing isosceles triangle (as in easy-VQA)."""
    xs, ys = pixel_centres(size)
    depth = (ys - top) / (bottom - top)
    return (ys >= top) & (ys <= bottom) & (np.abs(xs - apex_x) <= depth * half_base)


def bbox(mask):
    rows, cols = np.nonzero(mask)
    return [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def paint(image, mask, colour):
    image[mask] = colour
    return image


SHAPES = {  # name -> (mask, colour, colour name)
    'circle': (circle_mask(20, 22, 11), RED, 'red'),
    'rectangle': (rectangle_mask(36, 6, 58, 24), BLUE, 'blue'),
    'triangle': (triangle_mask(45, 32, 58, 14), GREEN, 'green'),
}


def single_shape_image(name, background=WHITE):
    mask, colour, _ = SHAPES[name]
    return paint(blank(colour=background), mask, colour)


def three_shape_image():
    image = blank()
    for mask, colour, _ in SHAPES.values():
        paint(image, mask, colour)
    return image


def reference_components(mask):
    """Breadth-first 8-connected labelling, for checking label_components."""
    labels = -np.ones(mask.shape, dtype=np.int64)
    height, width = mask.shape
    for start in zip(*np.nonzero(mask)):
        if labels[start] >= 0:
            continue
        label = start[0] * width + start[1]
        queue = deque([start])
        labels[start] = label
        while queue:
            y, x = queue.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and labels[ny, nx] < 0:
                        labels[ny, nx] = label
                        queue.append((ny, nx))
    return labels


def decode_tsv(path):
    """image id -> (width, height, boxes [n,4], features [n,D])."""
    rows = {}
    with open(path, newline='') as handle:
        for fields in csv.reader(handle, delimiter='\t'):
            assert len(fields) == 6
            count = int(fields[3])
            boxes = np.frombuffer(base64.b64decode(fields[4]), dtype='<f4').reshape(count, 4)
            features = np.frombuffer(base64.b64decode(fields[5]), dtype='<f4').reshape(count, -1)
            rows[int(fields[0])] = (int(fields[1]), int(fields[2]), boxes, features)
    return rows


# ------------------------------------------------------------ region proposer

@pytest.mark.parametrize('seed', range(6))
def test_label_components_matches_breadth_first_search(seed):
    mask = np.random.default_rng(seed).random((23, 31)) < 0.45
    assert np.array_equal(demo_regions.label_components(mask), reference_components(mask))


def test_label_components_joins_diagonal_neighbours_and_snakes():
    snake = np.zeros((9, 9), dtype=bool)
    snake[0, :] = snake[:, 8] = snake[8, :] = snake[2:, 0] = snake[2, :7] = True
    snake[4, 4] = snake[5, 5] = True  # a separate diagonal pair
    labels = demo_regions.label_components(snake)
    assert len(np.unique(labels[snake])) == 2
    assert labels[4, 4] == labels[5, 5] == 4 * 9 + 4
    assert labels[2, 0] == 0


@pytest.mark.parametrize('name', sorted(SHAPES))
def test_single_shape_box_matches_drawn_bbox(name):
    mask = SHAPES[name][0]
    regions = demo_regions.propose_regions(single_shape_image(name, background=(240, 236, 247)))
    assert regions.is_component.tolist() == [True] + [False] * 5
    assert regions.boxes[0].tolist() == bbox(mask)
    assert regions.boxes[1:].tolist() == [[0, 0, 64, 64], [0, 0, 32, 32], [32, 0, 64, 32],
                                          [0, 32, 32, 64], [32, 32, 64, 64]]
    assert np.array_equal(regions.object_masks[0], mask)


def test_three_shapes_give_three_components_largest_first():
    regions = demo_regions.propose_regions(three_shape_image())
    areas = sorted(((m.sum(), name) for name, (m, _, _) in SHAPES.items()), reverse=True)
    expected = [bbox(SHAPES[name][0]) for _, name in areas]
    assert regions.boxes[:3].tolist() == expected
    assert len(regions.boxes) == 8
    assert np.all(regions.boxes[:, 2] > regions.boxes[:, 0]) and np.all(regions.boxes[:, 3] > regions.boxes[:, 1])


def test_blank_and_noisy_images_still_get_grid_boxes():
    regions = demo_regions.propose_regions(blank(colour=(235, 240, 250)))
    assert len(regions.boxes) == 5 and not regions.is_component.any()
    noisy = blank()
    noisy[10, 10] = noisy[40, 50] = (0, 0, 0)  # specks under MIN_COMPONENT_AREA
    regions = demo_regions.propose_regions(noisy)
    assert len(regions.boxes) == 5
    tiny = demo_regions.propose_regions(blank(size=1))
    assert tiny.boxes.tolist() == [[0, 0, 1, 1]]


# ------------------------------------------------------------ descriptor

def main_row(image, feature_dim=demo_regions.BASE_FEATURE_DIM):
    regions = demo_regions.propose_regions(image)
    return demo_regions.describe_regions(image, regions, feature_dim)


def test_descriptor_separates_shapes_and_colours():
    slices = demo_regions.feature_slices()
    rows = {name: main_row(single_shape_image(name))[0] for name in SHAPES}
    fill = {name: float(row[slices['fill_ratio']][0]) for name, row in rows.items()}
    assert fill['rectangle'] == pytest.approx(1.0)
    assert fill['circle'] == pytest.approx(np.pi / 4, abs=0.05)
    assert fill['triangle'] == pytest.approx(0.5, abs=0.08)
    for name, row in rows.items():
        colour_name = SHAPES[name][2]
        histogram = row[slices['palette_histogram']]
        assert demo_regions.PALETTE_NAMES[int(histogram.argmax())] == colour_name
        assert histogram.max() == pytest.approx(1.0)
        assert demo_regions.classify_main_object(row[None]) == (colour_name, name)
    assert rows['triangle'][slices['centroid']][1] > 0.6  # mass low in an upward triangle
    assert rows['rectangle'][slices['corner_fill']].tolist() == [1.0] * 4


def test_descriptor_range_padding_and_no_zero_rows():
    features = main_row(three_shape_image(), feature_dim=40)
    assert features.shape == (8, 40) and features.dtype == np.float32
    assert np.all(features[:, 32:] == 0)
    assert features.min() >= 0.0 and features.max() <= 1.0
    assert np.all(np.abs(features).sum(axis=1) > 0)
    slices = demo_regions.feature_slices()
    largest = max(SHAPES.values(), key=lambda shape: shape[0].sum())[0]
    assert features[0, slices['box_coords']].tolist() == pytest.approx((np.array(bbox(largest)) / 64).tolist())
    assert features[3, slices['box_area']][0] == 1.0  # the whole image
    assert features[4, slices['box_area']][0] == 0.25  # the top-left quadrant
    assert sum(size for _, size in demo_regions.FEATURE_LAYOUT) == demo_regions.BASE_FEATURE_DIM


# ------------------------------------------------------------ writers

def test_tsv_line_decodes_back(tmp_path):
    boxes = np.array([[1, 2, 30, 40], [0, 0, 64, 64]], dtype=np.int64)
    features = np.random.default_rng(0).random((2, 32)).astype(np.float32)
    path = tmp_path / 'x.tsv'
    path.write_text(encode_record(123, 64, 48, boxes, features) + '\n')
    width, height, got_boxes, got_features = decode_tsv(path)[123]
    assert (width, height) == (64, 48)
    assert np.array_equal(got_boxes, boxes.astype(np.float32))
    assert np.array_equal(got_features, features)
    with pytest.raises(ValueError):
        encode_record(1, 64, 64, boxes, features[:1])


@pytest.mark.parametrize('question, answer, kind, answer_kind', [
    ('what color is the triangle?', 'red', 'what color is the', 'other'),
    ('what is the color of the shape?', 'blue', 'what is the color of the', 'other'),
    ('what is the blue shape?', 'circle', 'what is the', 'other'),
    ('what shape does the image contain?', 'circle', 'what shape', 'other'),
    ('does the image not contain a gray shape?', 'yes', 'does the image not contain', 'yes/no'),
    ('is there not a circle in the image?', 'no', 'is there not a', 'yes/no'),
    ('is no red shape present?', 'yes', 'is no', 'yes/no'),
    ('how big is it?', 'yes', 'how big', 'yes/no'),
])
def test_question_and_answer_types(question, answer, kind, answer_kind):
    annotation = demo_formats.vqa_annotation(7, 3, question, answer)
    assert annotation['question_type'] == kind
    assert annotation['answer_type'] == answer_kind
    assert [a['answer_id'] for a in annotation['answers']] == list(range(1, 11))
    assert {(a['answer'], a['answer_confidence']) for a in annotation['answers']} == {(answer, 'yes')}


def test_flickr_xml_and_sentences():
    root = ET.fromstring(demo_formats.flickr_annotation_xml(100007, 64, 64, [0, 5, 20, 30]))
    assert root.findtext('size/width') == '64' and root.findtext('size/depth') == '3'
    boxed, scene = root.findall('object')
    assert [int(boxed.findtext('bndbox/' + k)) for k in ('xmin', 'ymin', 'xmax', 'ymax')] == [1, 5, 20, 30]
    assert scene.find('bndbox') is None and scene.findtext('scene') == '1'
    sentences = demo_formats.flickr_sentences(100007, 'teal', 'circle')
    assert len(sentences) == 5 and len(set(sentences)) == 5
    for sentence in sentences:
        plain = demo_formats.remove_phrase_annotations(sentence)
        assert '[' not in plain and ']' not in plain and '/EN#' not in plain
        phrases = re.findall(r'\[/EN#(\d+)/(\w+) ([^\]]+)\]', sentence)
        assert sentence.count('[') == sentence.count(']') == len(phrases) >= 1
        for chain, kind, phrase in phrases:
            assert (chain, kind) in {('1', 'other'), ('2', 'scene')}
            assert phrase in plain
        assert 'teal' in plain or 'circle' in plain


def test_glove_text_round_trips_float32():
    vectors = {'red': np.array([0.418, -1.2e-05, 3.0], dtype=np.float32), '.': np.array([1, 2, 3], np.float32)}
    text = demo_formats.glove_text(['red', '.'], vectors)
    lines = text.splitlines()
    assert lines[1] == '. 1 2 3'
    values = np.array(lines[0].split(' ')[1:], dtype=np.float32)
    assert np.array_equal(values, vectors['red'])


# ------------------------------------------------------------ full build

COLOURS = ('red', 'green', 'blue')
SHAPE_ORDER = ('circle', 'rectangle', 'triangle')


def synthetic_source(count, offset):
    """A SourceSplit of `count` images cycling through shapes and colours,
    with easy-VQA style questions."""
    palette = {'red': RED, 'green': GREEN, 'blue': BLUE}
    facts = {n: (COLOURS[(n + offset) % 3], SHAPE_ORDER[n % 3]) for n in range(count)}
    questions = []
    for n, (colour, shape) in facts.items():
        questions += [('what color is the %s?' % shape, colour, n),
                      ('what is the %s shape?' % colour, shape, n),
                      ('is there a black shape?', 'no', n),
                      ("does the image contain a %s, or not?" % shape, 'yes', n)]

    def read_image(number):
        colour, shape = facts[number]
        return paint(blank(colour=(245, 240, 235)), SHAPES[shape][0], palette[colour])
    return demo_sources.SourceSplit(questions, list(range(count)), read_image), facts


def fake_glove(words):
    """Deterministic vectors for every word but 'or'."""
    return {w: (np.arange(50, dtype=np.float32) + len(w)) / 7 for w in words if w != 'or'}


def build(root, **options):
    train, _ = synthetic_source(12, 0)
    test, _ = synthetic_source(5, 1)
    messages = []
    summary = demo.build_demo_data(str(root), train, test, fake_glove, log=messages.append, **options)
    return summary, messages


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def test_build_writes_vqa_files(tmp_path):
    summary, _ = build(tmp_path)
    assert {k: v['images'] for k, v in summary.items()} == {'train': 11, 'val': 1, 'test2015': 5,
                                                            'test-dev2015': 2}
    assert summary['train']['questions'] == 44 and summary['train']['max_boxes'] == 6
    seen_images, seen_questions = {}, set()
    for split, subtype in (('train', 'train2014'), ('val', 'val2014'), ('test2015', 'test2015')):
        questions = read_json(tmp_path / ('v2_OpenEnded_mscoco_%s_questions.json' % subtype))
        annotations = read_json(tmp_path / ('v2_mscoco_%s_annotations.json' % subtype))
        assert questions['data_subtype'] == subtype and questions['data_type'] == 'mscoco'
        assert set(questions) >= {'info', 'task_type', 'data_type', 'data_subtype', 'license', 'questions'}
        assert [set(q) for q in questions['questions']] == [{'image_id', 'question', 'question_id'}] * len(
            questions['questions'])
        for question, annotation in zip(questions['questions'], annotations['annotations']):
            assert question['question_id'] == annotation['question_id']
            assert question['image_id'] == annotation['image_id']
            assert len(annotation['answers']) == 10
            assert annotation['multiple_choice_answer'] == annotation['answers'][0]['answer']
            assert question['question_id'] not in seen_questions
            seen_questions.add(question['question_id'])
        seen_images[split] = {q['image_id'] for q in questions['questions']}
        tsv = decode_tsv(tmp_path / 'demo_features' / ('%s.tsv' % split))
        assert set(tsv) == seen_images[split]
    assert seen_images['val'] == {100009}  # easy-VQA image 9: number % 10 == 9
    assert seen_images['train'] == {100000 + n for n in range(12) if n != 9}
    assert min(seen_images['test2015']) == 200000
    testdev = read_json(tmp_path / 'v2_OpenEnded_mscoco_test-dev2015_questions.json')['questions']
    assert {q['image_id'] for q in testdev} == {200000, 200004}


def test_build_writes_flickr_and_glove(tmp_path):
    build(tmp_path, feature_dim=36)
    entities = tmp_path / 'flickr30k' / 'Flickr30kEntities'
    _, facts = synthetic_source(12, 0)
    train_ids = [int(line) for line in (entities / 'train.txt').read_text().split()]
    assert train_ids == [100000 + n for n in range(12) if n != 9]
    assert (entities / 'test.txt').read_text().split()[0] == '200000'
    features = decode_tsv(tmp_path / 'flickr30k' / 'demo_features' / 'train.tsv')
    assert list(features) == train_ids
    for image_id in train_ids:
        colour, shape = facts[image_id - 100000]
        root = ET.parse(entities / 'Annotations' / ('%d.xml' % image_id)).getroot()
        gt = [int(root.findtext('object/bndbox/' + k)) for k in ('xmin', 'ymin', 'xmax', 'ymax')]
        assert gt == bbox(SHAPES[shape][0])
        assert features[image_id][2][0].tolist() == gt  # IoU 1 with the proposed component box
        assert features[image_id][3].shape == (6, 36)
        lines = (entities / 'Sentences' / ('%d.txt' % image_id)).read_text().splitlines()
        assert len(lines) == 5
        assert all(line.count('[') == line.count(']') for line in lines)
        assert any('%s %s]' % (colour, shape) in line for line in lines)
    glove_lines = (tmp_path / 'glove' / 'glove.6B.50d.txt').read_text().splitlines()
    words = [line.split(' ')[0] for line in glove_lines]
    assert words[:4] == ['what', 'color', 'is', 'the']
    assert 'or' not in words and '.' in words and 'picture' in words and 'black' in words
    assert len(words) == len(set(words))
    assert all(len(line.split(' ')) == 51 for line in glove_lines)


def test_build_is_deterministic_and_skips_when_complete(tmp_path):
    first, second = tmp_path / 'a', tmp_path / 'b'
    build(first, limit=3)
    build(second, limit=3)
    files = sorted(p.relative_to(first) for p in first.rglob('*') if p.is_file())
    assert Path('.demo_data_complete') in files and Path('.demo_data_in_progress') not in files
    assert not [p for p in files if p.name.endswith('.tmp')]
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
    assert json.loads((first / '.demo_data_complete').read_text())['version'] == demo_formats.VERSION
    stamp_time = os.stat(first / 'demo_features' / 'train.tsv').st_mtime_ns
    summary, messages = build(first, limit=3)
    assert summary is None and 'nothing to do' in messages[0]
    assert os.stat(first / 'demo_features' / 'train.tsv').st_mtime_ns == stamp_time
    summary, _ = build(first, limit=2)  # other options: rebuilt in place
    assert summary['train']['images'] == 2
    assert len(list((first / 'flickr30k' / 'Flickr30kEntities' / 'Sentences').iterdir())) == 2 + 1 + 2


def test_build_refuses_foreign_root_and_bad_options(tmp_path):
    (tmp_path / 'v2_OpenEnded_mscoco_train2014_questions.json').write_text('{}')
    with pytest.raises(UserError, match='did not write'):
        build(tmp_path)
    with pytest.raises(UserError, match='feature_dim'):
        build(tmp_path / 'x', feature_dim=16)
    with pytest.raises(UserError, match='--limit'):
        build(tmp_path / 'y', limit=0)
    with pytest.raises(UserError, match='pip install no-such-package'):
        demo_sources.demo_import('no_such_module_for_demo', 'no-such-package')
