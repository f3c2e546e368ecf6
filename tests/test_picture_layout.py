"""What the pictures look like, measured on the rendered figure: labels
beside (not over) the box they name and never over each other, a thick
box visible on a shape of its own colour, no half-empty canvas, and curves
of a one-epoch run with whole-epoch ticks and legends that cover no point."""
import io

import numpy as np
import pytest
import torch

pytest.importorskip('matplotlib')
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from PIL import Image  # noqa: E402

import visualize  # noqa: E402
from runs import curves  # noqa: E402

WORDS = ['what', 'is', 'the', 'color', 'of', 'the', 'circle']
SHAPE = (20, 18, 50, 46)  # x1, y1, x2, y2 of the red shape in the 64 x 64 picture
# the demo's proposals: the shape, the whole image, the four quarters (two share the image's top-left corner)
BOXES = [SHAPE, (0, 0, 64, 64), (0, 0, 32, 32), (32, 0, 64, 32), (0, 32, 32, 64), (32, 32, 64, 64)]


def easy_vqa_like():
    """A 64 x 64 light picture with a red shape, and the spatials [6, 6] of BOXES."""
    image = np.full((64, 64, 3), 245, dtype=np.uint8)
    image[SHAPE[1]:SHAPE[3], SHAPE[0]:SHAPE[2]] = (255, 0, 0)
    boxes = torch.tensor(BOXES, dtype=torch.float32) / 64
    return image, torch.cat([boxes, boxes[:, 2:] - boxes[:, :2]], 1)


def peaked(tops, boxes=len(BOXES), length=14):
    """Attention [G, N, L] with glimpse g's weight mostly on box tops[g]."""
    att = torch.full((len(tops), boxes, length), 0.1 / (boxes * length))
    for glimpse, top in enumerate(tops):
        att[glimpse, top, 3] += 0.9
    return att


def drawn(figure):
    FigureCanvasAgg(figure).draw()
    return figure.canvas.get_renderer()


def label_extents(ax, renderer):
    """{text: display bbox of its coloured block} of the box labels."""
    return {text.get_text(): text.get_bbox_patch().get_window_extent(renderer) for text in ax.texts
            if text.get_bbox_patch() is not None}


def box_extent(ax, box):
    (left, top), (right, bottom) = ax.transData.transform([(box[0], box[1]), (box[2], box[3])])
    return left, bottom, right, top


def overlap(a, b):
    """Overlap in pixels of two (x0, y0, x1, y1) rectangles along each axis (both > 0: they overlap)."""
    return min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])


@pytest.mark.parametrize('tops', [[0, 0], [0, 1], [1, 0], [0, 0, 0, 1, 2, 3, 4, 5]])
def test_labels_sit_beside_their_box_and_hide_no_other_label(tops):
    image, spatials = easy_vqa_like()
    figure = visualize.attention_figure(image, spatials, peaked(tops), WORDS, [False] * len(WORDS), 'Q', rows=6)
    renderer = drawn(figure)
    image_ax = figure.axes[0]
    extents = label_extents(image_ax, renderer)
    assert len(extents) == len(tops) + len(set(range(len(BOXES))) - set(tops))  # every label drawn
    rects = {text: (e.x0, e.y0, e.x1, e.y1) for text, e in extents.items()}
    names = sorted(rects)
    for index, first in enumerate(names):
        for second in names[index + 1:]:
            assert min(overlap(rects[first], rects[second])) <= 1, (first, second)
    for glimpse, top in enumerate(tops):
        label = next(rect for text, rect in rects.items() if text.startswith('G%d ' % (glimpse + 1)))
        assert min(overlap(label, box_extent(image_ax, BOXES[top]))) <= 1, 'G%d covers its box' % (glimpse + 1)
        panel = image_ax.get_window_extent(renderer)
        assert panel.x0 - 1 <= label[0] and label[2] <= panel.x1 + 1 and panel.y0 - 1 <= label[1] <= panel.y1


def test_a_red_glimpse_box_shows_on_a_red_shape():
    image, spatials = easy_vqa_like()
    image[:] = (255, 0, 0)  # all red
    figure = visualize.attention_figure(image, spatials, peaked([0]), WORDS, [False] * len(WORDS), 'Q', rows=1)
    drawn(figure)
    image_ax = figure.axes[0]
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=visualize.DPI)
    picture = np.asarray(Image.open(buffer).convert('RGB')).astype(int)
    x, y = image_ax.transData.transform((SHAPE[0], (SHAPE[1] + SHAPE[3]) / 2))  # the box's left side, half-way
    row = picture[picture.shape[0] - int(round(y)), int(round(x)) - 8:int(round(x)) + 9]  # across that side
    assert (row.min(1) >= 235).any(), 'no white edging: the red box cannot be told from the red shape'


def test_the_maps_fill_the_height_beside_the_image():
    image, spatials = easy_vqa_like()
    figure = visualize.attention_figure(image, spatials, peaked([0, 1]), WORDS, [False] * len(WORDS), 'Q', rows=6)
    renderer = drawn(figure)
    image_ax, *maps, colour_bar = figure.axes
    panel = image_ax.get_window_extent(renderer)
    lowest = min(ax.get_tightbbox(renderer).y0 for ax in maps)
    highest = max(ax.get_tightbbox(renderer).y1 for ax in maps)
    assert highest - lowest >= 0.85 * panel.height  # the maps beside the image are about as tall as it
    used = sum(ax.get_tightbbox(renderer).width * ax.get_tightbbox(renderer).height for ax in figure.axes)
    assert used >= 0.65 * figure.bbox.width * figure.bbox.height  # was 0.49: half the canvas empty


RECORD = {'epoch': 0, 'lr': 1.5e-3, 'train_loss': 1.25, 'train_score': 75.5, 'eval_score': 86.4,
          'eval_upper_bound': 100.0}


@pytest.mark.parametrize('epochs', [1, 2, 12])
def test_curves_tick_whole_epochs_and_legends_cover_no_point(epochs):
    records = [dict(RECORD, epoch=epoch, eval_score=86.4 + epoch) for epoch in range(epochs)]
    figure = curves.curves_figure(records, 'run')
    renderer = drawn(figure)
    for ax in figure.axes:
        low, high = ax.get_xlim()
        ticks = [tick for tick in ax.get_xticks() if low <= tick <= high]
        assert ticks and all(float(tick).is_integer() and 0 <= tick < epochs for tick in ticks)
        assert 0 in ticks
        legend = ax.get_legend().get_window_extent(renderer)
        area = ax.get_window_extent(renderer)
        assert min(overlap((legend.x0, legend.y0, legend.x1, legend.y1), (area.x0, area.y0, area.x1, area.y1))) <= 0
    scores = figure.axes[1]
    best = scores.lines[-1]
    assert best.get_label().startswith('best: epoch %d' % (epochs - 1))
    assert best.get_markerfacecolor() == 'none'  # a ring: the val score point stays visible inside it
