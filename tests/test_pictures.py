"""The pictures: VQA attention, Flickr30k grounding, training curves. Each
is checked on what it must show (boxes, labels, scale, size), computed from
the inputs."""
import io
import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip('matplotlib')
from PIL import Image  # noqa: E402  (a matplotlib dependency)

import main  # noqa: E402
import visualize  # noqa: E402
from formats.dictionary import Dictionary  # noqa: E402
from runs import curves  # noqa: E402
from tools import plot_log  # noqa: E402
from utils import UserError  # noqa: E402

WORDS = ['what', 'color', 'is', 'the', 'ball']


def attention(glimpses, boxes, length=14, seed=0):
    """Peaked attention [G, N, L] whose entries sum to 1 per glimpse."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(glimpses, boxes, length, generator=generator) * 3
    return torch.softmax(logits.view(glimpses, -1), 1).view(glimpses, boxes, length)


def spatials(boxes, seed=0):
    rng = np.random.default_rng(seed)
    x1, y1 = rng.uniform(0, .6, boxes), rng.uniform(0, .6, boxes)
    x2, y2 = x1 + rng.uniform(.1, .4, boxes), y1 + rng.uniform(.1, .4, boxes)
    return torch.tensor(np.stack([x1, y1, x2, y2, x2 - x1, y2 - y1], 1), dtype=torch.float32)


def png_of(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=visualize.DPI)
    buffer.seek(0)
    return Image.open(buffer)


def thick_boxes(ax):
    return [patch for patch in ax.patches if patch.get_linewidth() == 3.0]


def tags(ax):
    return [text.get_text() for text in ax.texts if text.get_bbox_patch() is not None]


# ----------------------------------------------------------------- VQA attention

def test_attended_boxes_are_each_glimpses_top_and_the_most_attended():
    att = torch.zeros(2, 6, 14)
    att[0, 4, 0], att[0, 1, 1], att[0, 2, 2] = 0.6, 0.3, 0.1  # glimpse 1: box 4, then 1, 2
    att[1, 5, 3], att[1, 1, 4] = 0.55, 0.45  # glimpse 2: box 5, then 1
    weights, tops, shown = visualize.attended_boxes(att, rows=3)
    assert tops == [4, 5]
    assert shown == [1, 4, 5]  # by total weight: 0.75, 0.6, 0.55
    assert torch.allclose(weights.sum(1), torch.ones(2))
    assert visualize.attended_boxes(att, rows=1)[2] == [4, 5]  # every glimpse's top box stays


@pytest.mark.parametrize('glimpses', [1, 2, 8])
def test_attention_figure_draws_each_glimpses_top_box_with_its_weight(glimpses):
    att, boxes = attention(glimpses, 20), spatials(20)
    image = np.full((480, 640, 3), 200, dtype=np.uint8)
    figure = visualize.attention_figure(image, boxes, att, WORDS, [False, False, False, False, True], 'Q: x', rows=6)
    weights, tops, shown = visualize.attended_boxes(att, 6)
    image_ax, *map_axes, colour_bar = figure.axes
    assert len(thick_boxes(image_ax)) == glimpses
    for glimpse, top in enumerate(tops):
        assert 'G%d  #%d  %.2f' % (glimpse + 1, top, float(weights[glimpse, top])) in tags(image_ax)
    numbered = [box for box in shown if box not in tops]
    assert sorted(tags(image_ax)) == sorted(['#%d' % box for box in numbered] + [
        'G%d  #%d  %.2f' % (g + 1, top, float(weights[g, top])) for g, top in enumerate(tops)])
    assert len(map_axes) == glimpses
    for glimpse, ax in enumerate(map_axes):
        assert [label.get_text() for label in ax.get_yticklabels()] == ['#%d' % box for box in shown]
        assert [label.get_text() for label in ax.get_xticklabels()] == WORDS[:4] + ['ball*']
        assert ax.get_title() == 'glimpse %d: top box #%d' % (glimpse + 1, tops[glimpse])
        assert np.allclose(ax.images[0].get_array(), att[glimpse][shown][:, :5].numpy())
    assert colour_bar.get_ylabel() == 'attention weight of (box, word)'
    assert colour_bar.get_ylim()[1] == pytest.approx(float(att[:, shown, :5].max()))  # one scale for all maps
    picture = png_of(figure)
    assert picture.size == tuple(int(round(inches * visualize.DPI)) for inches in figure.get_size_inches())
    assert picture.height >= visualize.PANEL_HEIGHT[0] * visualize.DPI  # the image at least 6 inches tall


def test_attention_figure_shows_the_image_at_its_pixels():
    image = np.zeros((300, 400, 3), dtype=np.uint8)
    image[:, :200] = 255
    figure = visualize.attention_figure(image, spatials(5), attention(1, 5), WORDS, [False] * 5, 'Q')
    image_ax = figure.axes[0]
    assert np.array_equal(image_ax.images[0].get_array(), image)
    x0, x1 = image_ax.get_xlim()
    assert (x0, x1) == (0, 400)  # the whole image, its pixel edges at the boxes' coordinates
    top = thick_boxes(image_ax)[0]
    box = visualize.attended_boxes(attention(1, 5), 10)[1][0]
    assert top.get_x() == pytest.approx(float(spatials(5)[box, 0]) * 400, abs=1e-3)


def test_without_an_image_the_picture_says_so():
    figure = visualize.attention_figure(None, spatials(5), attention(2, 5), WORDS, [False] * 5, 'Q')
    image_ax = figure.axes[0]
    assert not image_ax.images
    assert image_ax.get_xlabel() == visualize.NO_IMAGE
    assert len(thick_boxes(image_ax)) == 2


# ----------------------------------------------------------------- Flickr grounding

def dictionary(*words):
    built = Dictionary()
    for word in words:
        built.add_word(word)
    return built


def test_phrases_are_found_at_their_last_word():
    caption = 'A man wears a red shirt , a red shirt .'
    words = dictionary('a', 'man', 'wears', 'red', 'shirt', '.')
    assert visualize.phrase_positions(caption, ['a man', 'a red shirt', 'shirt'], words, 82) == [1, 5, 5]


@pytest.mark.parametrize('phrase, message', [
    ('a blue shirt', "--phrase 'a blue shirt' is not a run of words of the caption"),
    ('a', "--phrase 'a' ends at the caption's first word"),
    ('', "--phrase '' is not a run of words"),
])
def test_a_phrase_the_model_cannot_ground_is_named(phrase, message):
    with pytest.raises(UserError, match=message):
        visualize.phrase_positions('A man wears a red shirt .', [phrase], dictionary('a'), 82)


def test_grounding_figure_draws_each_phrases_top_box():
    probabilities = torch.tensor([[.1, .9, .2, .3], [.2, .1, .3, .8]])
    figure = visualize.grounding_figure(np.zeros((400, 500, 3), np.uint8), spatials(4), ['a man', 'a red shirt'],
                                        probabilities, 'A man wears a red shirt .')
    ax = figure.axes[0]
    assert len(thick_boxes(ax)) == 2
    assert sorted(tags(ax)) == ['#0', '#2', 'a man  #1  0.90', 'a red shirt  #3  0.80']  # + the runners-up
    texts = [text.get_text() for text in figure.texts]
    assert texts[0] == 'A man wears a red shirt .'
    assert '"a man" -> #1 (0.90)\n    next: #3 0.30, #2 0.20' in texts
    assert png_of(figure).width >= 1400


# ----------------------------------------------------------------- training curves

def write_log(path, records, torn=False):
    with open(path, 'w') as handle:
        for record in records:
            handle.write(json.dumps(record) + '\n')
        if torn:
            handle.write('{"epoch": 9, "lr"')


RECORDS = [{'epoch': e, 'lr': lr, 'train_loss': loss, 'train_score': train, 'eval_score': val,
            'eval_upper_bound': 90.0} for e, lr, loss, train, val in
           [(0, 5e-4, 6.0, 20.0, 30.0), (1, 1e-3, 4.0, 40.0, 52.5), (2, 1.5e-3, 3.0, 60.0, 51.0)]]


def test_the_log_is_read_in_epoch_order_keeping_the_last_record_of_an_epoch(tmp_path, capsys):
    path = str(tmp_path / 'log.jsonl')
    write_log(path, [RECORDS[1], RECORDS[0], dict(RECORDS[1], eval_score=55.0), RECORDS[2]], torn=True)
    records = curves.read_log(path)
    assert [r['epoch'] for r in records] == [0, 1, 2] and records[1]['eval_score'] == 55.0
    assert curves.best_epoch(records) == (1, 55.0)
    assert 'skipped 1 line(s)' in capsys.readouterr().out


def test_curves_show_loss_scores_and_lr_per_epoch_with_the_best_epoch(tmp_path):
    write_log(str(tmp_path / 'log.jsonl'), RECORDS)
    path = plot_log.main([str(tmp_path)])
    assert path == str(tmp_path / 'curves.png')
    assert Image.open(path).size == (1500, 480)
    figure = curves.curves_figure(RECORDS, 'run')
    loss, scores, lr = figure.axes
    assert list(loss.lines[0].get_ydata()) == [6.0, 4.0, 3.0]
    assert [line.get_label() for line in scores.lines] == ['train score', 'val score', 'val upper bound',
                                                            'best: epoch 1, 52.50']
    assert list(scores.lines[-1].get_xdata()) == [1] and list(scores.lines[-1].get_ydata()) == [52.5]
    assert list(lr.lines[0].get_ydata()) == [5e-4, 1e-3, 1.5e-3]


def test_a_log_without_epochs_is_a_user_error(tmp_path):
    write_log(str(tmp_path / 'log.jsonl'), [])
    with pytest.raises(UserError, match='has no epoch records yet'):
        curves.write_curves(str(tmp_path))
    with pytest.raises(UserError, match='nothere does not exist; pass a run folder'):
        curves.write_curves(str(tmp_path / 'nothere'))
    assert not os.path.exists(tmp_path / 'curves.png')


def test_training_without_matplotlib_ends_with_a_note(tmp_path, monkeypatch, capsys):
    def missing(*args):
        raise curves.MissingMatplotlib('plotting the curves needs matplotlib')
    write_log(str(tmp_path / 'log.jsonl'), RECORDS)
    monkeypatch.setattr(curves, 'curves_figure', missing)
    main.plot_curves(str(tmp_path))
    assert 'note: no %s/curves.png: matplotlib is not installed' % tmp_path in capsys.readouterr().out
