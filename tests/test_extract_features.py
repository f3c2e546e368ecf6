"""tools/extract_features.py: images -> rows of the released TSV format that
the converter accepts; resuming, atomic output and unreadable images. The
detector is the narrow tiny_detector.TINY with random weights written as a
.caffemodel (the real layout). §N: a section of docs/FEATURE_EXTRACTION.md."""
import os

import h5py
import numpy as np
import pytest

import tiny_detector
from detection import detector
from tools import extract_features
from tools.features_tsv import iter_tsv_records
from utils import UserError


@pytest.fixture(scope='module')
def tiny_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp('detector') / 'tiny.caffemodel'
    blobs = tiny_detector.random_caffe_blobs(tiny_detector.tiny_caffe_layers(), seed=2)
    path.write_bytes(tiny_detector.encode_caffemodel(blobs))
    return str(path)


@pytest.fixture
def tiny_network(monkeypatch):
    monkeypatch.setattr(detector, 'ARCHITECTURE', tiny_detector.TINY)


def test_extracted_rows_are_release_format_and_convert(tmp_path, tiny_weights, tiny_network):
    from tools.adaptive_detection_features_converter import convert
    folder = tmp_path / 'photos'
    folder.mkdir()
    tiny_detector.write_photo(folder / 'COCO_val2014_000000000042.jpg', 150, 200, seed=1)
    tiny_detector.write_photo(folder / '7.png', 90, 60, seed=2)
    output = tmp_path / 'features.tsv'
    extract_features.main(['--images', str(folder), '--output', str(output), '--detector_weights', tiny_weights,
                           '--device', 'cpu'])
    raw = output.read_bytes()
    lines = raw.split(b'\r\n')
    assert lines[-1] == b'' and len(lines) == 3 and b'\n' not in lines[0]  # CR LF after every row (§11)
    assert lines[0].startswith(b'7\t60\t90\t') and lines[1].startswith(b'42\t200\t150\t')  # ints, original size
    records = list(iter_tsv_records([str(output)], feature_dim=tiny_detector.TINY.feature_dim))
    for record, (width, height) in zip(records, [(60, 90), (200, 150)]):
        assert 10 <= record['num_boxes'] <= 100
        boxes = record['boxes']
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert np.isfinite(record['features']).all() and record['features'].std() > 0
    h5_path, pkl_path = str(tmp_path / 'val.hdf5'), str(tmp_path / 'val_imgid2idx.pkl')
    mapping = convert([str(output)], {'val': {7, 42}}, {'val': (h5_path, pkl_path)},
                      feature_dim=tiny_detector.TINY.feature_dim, log=lambda *_: None)
    assert mapping['val'] == {7: 0, 42: 1}
    with h5py.File(h5_path, 'r') as h5:
        counts = [record['num_boxes'] for record in records]
        assert h5['pos_boxes'][:].tolist() == [[0, counts[0]], [counts[0], sum(counts)]]
        assert np.array_equal(h5['image_features'][:counts[0]], records[0]['features'])


# ----------------------------------------------------------------- inputs, resuming, errors (fast: a stub detector)

class StubDetector:
    """Counts the images it is asked about; rows depend on the image only."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, image, conf_thresh, min_boxes, max_boxes, name):
        self.calls.append(os.path.basename(name))
        height, width = image.shape[:2]
        boxes = np.array([[0, 0, width - 1, height - 1]] * min_boxes, np.float32)
        return detector.Regions(width, height, boxes, np.full((min_boxes, 4), image.mean(), np.float32))


@pytest.fixture
def stub(monkeypatch):
    fake = StubDetector()
    monkeypatch.setattr(detector, 'extract_regions', fake)
    monkeypatch.setattr('detection.weight_files.load_detector', lambda path, device='cpu', arch=None: 'model')
    return fake


def run(tmp_path, *images, extra=()):
    output = tmp_path / 'out' / 'features.tsv'
    extract_features.main(['--images', *map(str, images), '--output', str(output), '--detector_weights', 'w.pth',
                           '--device', 'cpu', *extra], log=lambda *_: None)
    return output


def ids(path):
    return [record['image_id'] for record in iter_tsv_records([str(path)], decode=False)]


def test_list_files_give_ids_and_paths_relative_to_the_list(tmp_path, stub):
    tiny_detector.write_photo(tmp_path / 'a photo.jpg', 20, 30)
    tiny_detector.write_photo(tmp_path / 'b.jpg', 20, 30)
    listing = tmp_path / 'images.txt'
    listing.write_text('# my photos\na photo.jpg 5\n\nb.jpg 9\n')
    assert ids(run(tmp_path, listing)) == [5, 9]


@pytest.mark.parametrize('name, message', [
    ('holiday.jpg', 'holiday.jpg: no image id in its name'),
    (None, 'image id 3 is used by both')])
def test_image_ids_must_exist_and_be_unique(tmp_path, stub, name, message):
    tiny_detector.write_photo(tmp_path / '3.jpg', 20, 30)
    second = tmp_path / (name or 'IMG_0003.jpg')
    tiny_detector.write_photo(second, 20, 30)
    with pytest.raises(UserError, match=message):
        run(tmp_path, tmp_path / '3.jpg', second)


def test_resume_skips_finished_images_and_keeps_their_rows(tmp_path, stub):
    first, second = tmp_path / '1.jpg', tmp_path / '2.jpg'
    tiny_detector.write_photo(first, 20, 30, seed=1)
    tiny_detector.write_photo(second, 25, 30, seed=2)
    output = run(tmp_path, first)
    before = output.read_bytes()
    assert stub.calls == ['1.jpg']
    run(tmp_path, first, second)
    assert stub.calls == ['1.jpg', '2.jpg'] and ids(output) == [1, 2]
    assert output.read_bytes().startswith(before)
    run(tmp_path, first, second)  # nothing left to do: the file is not rewritten
    assert stub.calls == ['1.jpg', '2.jpg'] and not os.path.exists(str(output) + '.partial')


def test_interrupted_run_resumes_from_the_partial_file(tmp_path, stub):
    photos = [tiny_detector.write_photo(tmp_path / ('%d.jpg' % k), 20, 30, seed=k) for k in (1, 2, 3)]
    complete = run(tmp_path, *photos).read_bytes()
    rows = complete.split(b'\r\n')
    output = tmp_path / 'out' / 'features.tsv'
    os.remove(output)
    partial = tmp_path / 'out' / 'features.tsv.partial'
    partial.write_bytes(rows[0] + b'\r\n' + rows[1][:50])  # killed in the middle of row 2
    stub.calls.clear()
    run(tmp_path, *photos)
    assert stub.calls == ['2.jpg', '3.jpg'] and output.read_bytes() == complete and not partial.exists()


def test_unreadable_image_stops_with_its_name_or_is_skipped(tmp_path, stub, capsys):
    good, bad = tmp_path / '1.jpg', tmp_path / '2.jpg'
    tiny_detector.write_photo(good, 20, 30)
    bad.write_bytes(b'\xff\xd8 truncated jpeg')
    output = tmp_path / 'out' / 'features.tsv'
    with pytest.raises(UserError, match=r'2.jpg: not a readable image.*kept in .*features.tsv.partial'):
        run(tmp_path, good, bad)
    assert not output.exists()
    assert ids(str(output) + '.partial') == [1]
    run(tmp_path, good, bad, extra=['--skip_unreadable'])
    assert ids(output) == [1] and 'warning: skipped' in capsys.readouterr().err
    assert stub.calls == ['1.jpg']  # the first run's row was kept, not extracted again


@pytest.mark.parametrize('flags, message', [
    (['--min_boxes', '0'], '--min_boxes 0 --max_boxes 100'),
    (['--min_boxes', '50', '--max_boxes', '36'], 'min_boxes <= max_boxes'),
    (['--conf_thresh', '2'], '--conf_thresh 2: must lie in')])
def test_bad_flags_are_user_errors(tmp_path, stub, flags, message):
    tiny_detector.write_photo(tmp_path / '1.jpg', 20, 30)
    with pytest.raises(UserError, match=message):
        run(tmp_path, tmp_path / '1.jpg', extra=flags)


def test_missing_weights_is_a_one_line_error(tmp_path):
    import subprocess
    import sys
    tiny_detector.write_photo(tmp_path / '1.jpg', 20, 30)
    result = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'tools',
                                                          'extract_features.py'),
                             '--images', str(tmp_path / '1.jpg'), '--output', str(tmp_path / 'o.tsv'),
                             '--detector_weights', str(tmp_path / 'none.caffemodel'), '--device', 'cpu'],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith('error: missing file')
    assert 'peteanderson80/bottom-up-attention' in result.stderr and 'Traceback' not in result.stderr
    assert not (tmp_path / 'o.tsv').exists() and not (tmp_path / 'o.tsv.partial').exists()
