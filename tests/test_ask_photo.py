"""ask.py / visualize.py --image PHOTO without --image_id: the photo's region
features are extracted on the fly (a narrow random-weight detector whose 16
values per box fit the tiny VQA model) and the attended boxes are drawn on it."""
import numpy as np
import pytest

import tiny_detector
import tiny_vqa
from detection import detector
from utils import UserError

EVAL = ['--num_hid', '16', '--gamma', '2', '--workers', '0', '--device', 'cpu', '--epoch', '3']


@pytest.fixture(scope='module')
def photo_and_weights(tmp_path_factory):
    assert tiny_detector.TINY.feature_dim == tiny_vqa.FEATURE_DIM
    folder = tmp_path_factory.mktemp('photo')
    weights = folder / 'tiny.caffemodel'
    weights.write_bytes(tiny_detector.encode_caffemodel(
        tiny_detector.random_caffe_blobs(tiny_detector.tiny_caffe_layers(), seed=3)))
    return str(tiny_detector.write_photo(folder / 'my.jpg', 96, 128, seed=4)), str(weights)


@pytest.fixture
def extractions(monkeypatch):
    """The tiny network, and a record of every extraction."""
    monkeypatch.setattr(detector, 'ARCHITECTURE', tiny_detector.TINY)
    calls, real = [], detector.extract_regions

    def recording(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]
    monkeypatch.setattr(detector, 'extract_regions', recording)
    return calls


def test_ask_about_a_photo(tiny_root, trained, photo_and_weights, extractions, capsys):
    import ask
    photo, weights = photo_and_weights
    answers = ask.main(['--dataroot', tiny_root, '--input', str(trained), '--image', photo,
                        '--detector_weights', weights, '--question', 'What color is the ball?'] + EVAL)
    assert len(extractions) == 1 and 10 <= len(extractions[0].boxes) <= 100
    assert (extractions[0].image_w, extractions[0].image_h) == (128, 96)
    assert len(answers) == 5 and answers == sorted(answers, key=lambda item: -item[1])
    assert 'Q: What color is the ball?' in capsys.readouterr().out


def test_visualize_draws_on_the_photo(tiny_root, trained, photo_and_weights, extractions, tmp_path, monkeypatch):
    from PIL import Image

    import visualize
    photo, weights = photo_and_weights
    output = tmp_path / 'att.png'
    drawn = []
    real_figure = visualize.attention_figure

    def recording(image, spatials, *args, **kwargs):
        drawn.append((image, spatials))
        return real_figure(image, spatials, *args, **kwargs)

    monkeypatch.setattr(visualize, 'attention_figure', recording)
    visualize.main(['--dataroot', tiny_root, '--input', str(trained), '--image', photo, '--detector_weights', weights,
                    '--question', 'What color is the ball?', '--output', str(output)] + EVAL)
    assert len(extractions) == 1 and len(drawn) == 1
    image, spatials = drawn[0]
    assert np.array_equal(image, np.asarray(Image.open(photo).convert('RGB')))  # the photo itself is the panel
    regions = extractions[0]
    assert spatials.shape == (len(regions.boxes), 6)  # the boxes extracted from it, normalised by its size
    assert np.allclose(spatials[:, 0].numpy(), regions.boxes[:, 0] / regions.image_w, atol=1e-6)
    assert Image.open(output).size[1] >= visualize.PANEL_HEIGHT[0] * visualize.DPI  # the photo at least 6 in tall


@pytest.mark.parametrize('flags, message', [
    (['--image', 'my.jpg'], '--image my.jpg without --image_id .* pass --detector_weights PATH'),
    ([], 'name the image: --image_id N .* or --image PHOTO')])
def test_photo_needs_weights_and_an_image(tiny_root, trained, flags, message):
    import ask
    with pytest.raises(UserError, match=message):
        ask.main(['--dataroot', tiny_root, '--input', str(trained), '--question', 'What color is the ball?']
                 + flags + EVAL)
