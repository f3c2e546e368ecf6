r"""Draw what BAN attends to, to a PNG.

VQA: the boxes and words each glimpse attends to.

    python3 visualize.py --input saved_models/ban --image_id 42 --question "What color is the bus?" \
        --image COCO_val2014_000000000042.jpg --output results/attention.png
    python3 visualize.py --input saved_models/ban --image my.jpg \
        --detector_weights resnet101_faster_rcnn_final.caffemodel --question "What is the man holding?"

With --image and no --image_id the photo's region features are extracted on
the fly (as ask.py does) and the attended boxes are drawn on it.

Left: the image with each glimpse's most attended box drawn thick in the
glimpse's colour (edged in white, so it shows on a shape of that colour) and
labelled, just outside the box so the label hides nothing the box holds,
with its number and weight (the share of the glimpse's attention it gets);
the other boxes of the maps drawn thin with their numbers in a corner. No
label covers another. Right: each glimpse's box x word attention map, in a
column as tall as the image (two columns for more than two glimpses); rows
are the boxes numbered as on the image (each glimpse's top box and the most
attended ones overall, --top in all), columns the words the model read, one
colour scale for all maps.

Flickr30k Entities: the box a grounding model picks for each phrase.

    python3 visualize.py --task flickr --input saved_models/flickr --image_id 1000092795 \
        --question "Two young guys with shaggy hair look at their hands ." \
        --phrase "two young guys" --phrase "their hands" --image 1000092795.jpg

Each phrase's top box is drawn in its colour with its probability (the
sigmoid of its logit, what the grounding loss trains), labelled as above. A phrase is located
at its last word, as the model was trained to read it.

Without --image the boxes are drawn on an empty frame, and the picture says
so. Needs matplotlib (`pip install matplotlib`), used only here and by
tools/plot_log.py.
"""
import math
import os
import textwrap

import numpy as np
import torch

import ask
from formats.dictionary import load_dictionary, split_words
from formats.flickr_files import (
    MAX_BOXES,
    MAX_SENTENCE_TOKENS,
    SPLITS,
    find_last_word_of_first_occurrence,
    pad_entity_positions,
)
from formats.paths import task_root
from runs import checkpoints, runtime
from runs.flags import visualize_parser
from utils import UserError, atomic_write, note, run_cli

DPI = 100
MIN_WIDTH = 14.0  # inches: the grounding picture's least width, 1400 px at DPI
CELL = (0.3, 0.26)  # inches per heat-map cell (word column, box row), at the least
CELL_GROWTH = 1.7  # the cells grow up to this factor to fill the height beside the image
MAP_FRAME = (0.9, 1.1)  # inches around a map's cells for its tick labels and title (width, height)
PANEL_HEIGHT = (6.0, 8.0)  # inches: the image's least and greatest height in its panel
LABEL_MARGIN = 0.45  # inches of panel above and below the image, for the labels of boxes at its edges
HALO_WIDTH = 2.5  # points of white edging a thick box
GLIMPSE_COLOURS = ['#e6194b', '#3cb44b', '#0082c8', '#f58231', '#911eb4', '#46d0d0', '#f032e6', '#808000']
MAP_COLOURS = 'viridis'
HOW_TO_READ = ('Thick boxes: the most attended box of each glimpse (G<glimpse> #<box> <its share of the glimpse\'s '
               'attention>); dotted: the other boxes of the maps. Maps: the attention of each (box, word).')
NO_IMAGE = ('no --image given: the boxes are drawn at their places on an empty frame\n'
            '(pass --image PHOTO to see them on the picture)')
NO_IMAGE_SPACE = 0.55  # inches under the frame for NO_IMAGE


def figure_class():
    """matplotlib's Figure (the object API: no pyplot state, no GUI backend);
    a missing matplotlib is a UserError."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError('visualize.py draws with matplotlib: pip install matplotlib') from None
    return Figure


def load_image(path):
    """RGB array [H, W, 3] of an image file; a file Pillow cannot read is a UserError."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert('RGB'))
    except (UnidentifiedImageError, OSError) as err:
        raise UserError('--image %s is not an image Pillow can read (%s)' % (path, err)) from None


def check_image_flag(path):
    """--image must name a file: checked before anything is loaded."""
    if path is not None and not os.path.isfile(path):
        raise UserError('--image %s does not exist; pass the photo the features were extracted from' % path)


# ----------------------------------------------------------------- VQA attention

def attended_boxes(att, rows):
    """What the attention picture shows, from att [G, N, L].

    Returns (weights [G, N]: each box's share of a glimpse's attention (over
    all L question positions, padding included, as the glimpse pools them),
    tops: the most attended box of each glimpse, shown: the boxes of the
    heat-map rows, most attended overall first: every glimpse's top box,
    then the most attended others up to `rows` boxes)."""
    weights = att.sum(2)  # [G, N]
    tops = weights.argmax(1).tolist()  # [G]
    total = weights.sum(0)  # [N]
    by_total = total.argsort(descending=True).tolist()
    shown = set(tops)
    for box in by_total:
        if len(shown) >= max(rows, len(set(tops))):
            break
        shown.add(box)
    return weights, tops, sorted(shown, key=lambda box: -float(total[box]))


def _pixel_boxes(spatials, image):
    """Boxes [N, 4] (x1, y1, x2, y2) in the panel's coordinates: pixels of
    the image, or the unit square without one."""
    boxes = spatials[:, :4].double().numpy()  # normalised by the image size
    if image is None:
        return boxes
    height, width = image.shape[:2]
    return boxes * np.array([width, height, width, height])


def _panel_size(image, height):
    """(width, height) in inches of an image panel `height` inches tall."""
    aspect = 1.0 if image is None else image.shape[1] / image.shape[0]
    return min(height * aspect, 2.0 * height), height


def _draw_frame(ax, image, panel_h):
    """The image (or an empty unit frame) with LABEL_MARGIN inches of room
    above and below it for the labels of boxes at its edges; `panel_h`: the
    image's height in inches."""
    from matplotlib.patches import Rectangle
    if image is not None:
        small = max(image.shape[:2]) < 300  # enlarge small images crisply instead of blurring them
        height, width = image.shape[:2]
        # pixel edges at whole coordinates, as the detector's boxes have them (imshow's default centres pixels there)
        ax.imshow(image, interpolation='nearest' if small else 'antialiased', extent=(0, width, height, 0))
        ax.set_ylim(height + LABEL_MARGIN * height / panel_h, -LABEL_MARGIN * height / panel_h)
        frame = (0, 0), width, height
    else:
        ax.set_xlim(0, 1)
        ax.set_ylim(1 + LABEL_MARGIN / panel_h, -LABEL_MARGIN / panel_h)
        ax.set_aspect('equal')
        ax.add_patch(Rectangle((0, 0), 1, 1, facecolor='#f7f7f7', edgecolor='none'))
        ax.set_xlabel(NO_IMAGE, fontsize=11, color='#c00000')
        frame = (0, 0), 1, 1
    ax.add_patch(Rectangle(*frame, fill=False, edgecolor='#999999', linewidth=0.8))
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xticks([])
    ax.set_yticks([])


def _box_patch(ax, box, colour, width, inset=0.0, style='-', halo=False):
    """A box outline; `halo` edges it in white, so that it shows on a shape of its own colour."""
    from matplotlib.patches import Rectangle
    from matplotlib.patheffects import withStroke
    x1, y1, x2, y2 = box
    effects = [withStroke(linewidth=width + HALO_WIDTH, foreground='white')] if halo else []
    ax.add_patch(Rectangle((x1 + inset, y1 + inset), max(x2 - x1 - 2 * inset, 0), max(y2 - y1 - 2 * inset, 0),
                           fill=False, edgecolor=colour, linewidth=width, linestyle=style, path_effects=effects))


def _thick_box(ax, box, colour, line):
    """A glimpse's (or phrase's) top box; the `line`-th on the same box is
    drawn inside the previous ones."""
    points = (3.0 + HALO_WIDTH) * line  # line widths are in points
    inset = points / 72 * ax.figure.dpi / abs(ax.transData.transform((1, 0))[0] - ax.transData.transform((0, 0))[0])
    _box_patch(ax, box, colour, 3.0, inset=inset, halo=True)


def _area(box):
    return (box[2] - box[0]) * (box[3] - box[1])


def _numbered_box(ax, box):
    """A thin dotted box (visible on light and dark pictures)."""
    _box_patch(ax, box, 'white', 1.2)
    _box_patch(ax, box, 'black', 0.6, style=':')


class BoxLabels:
    """Labels of the boxes of an image panel, each put where it hides no
    label placed before it: glimpse and phrase labels outside their box
    (above it, stacked, else below: never over what the box holds), box
    numbers in a corner inside theirs; where there is room, over no thick box
    except one around their own box."""
    GAP = 3  # pixels between a label and its box, or two labels
    ROWS = 4  # rows of labels tried above and below a box

    def __init__(self, ax):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        self.ax = ax
        self.renderer = FigureCanvasAgg(ax.figure).get_renderer()
        ax.apply_aspect()  # the axes' final place, for the display coordinates below
        self.area = ax.get_window_extent(self.renderer)
        self.taken = []  # placed labels, display rectangles (x0, y0, x1, y1)
        self.thick = []  # thick boxes, display rectangles

    def _corners(self, box):
        """(left, bottom, right, top) of a box in display pixels (y grows upwards there)."""
        (left, top), (right, bottom) = self.ax.transData.transform([(box[0], box[1]), (box[2], box[3])])
        return left, bottom, right, top

    def add_thick_box(self, box):
        self.thick.append(self._corners(box))

    def _candidates(self, box, width, height, outside):
        left, bottom, right, top = self._corners(box)
        if outside:  # above the box, row by row, then below it
            steps = [row * (height + self.GAP) for row in range(self.ROWS)]
            rows = [top + self.GAP + step for step in steps] + [bottom - self.GAP - height - step for step in steps]
        else:
            rows = [top - self.GAP - height, bottom + self.GAP]
        for y in rows:
            for x in (left + self.GAP * (not outside), right - width - self.GAP * (not outside)):
                x = min(max(x, self.area.x0), self.area.x1 - width)
                if self.area.y0 <= y and y + height <= self.area.y1:
                    yield x, y, x + width, y + height

    @staticmethod
    def _contains(outer, inner):
        return (outer[0] <= inner[0] + 1 and outer[1] <= inner[1] + 1 and inner[2] <= outer[2] + 1
                and inner[3] <= outer[3] + 1)

    @staticmethod
    def _overlaps(rect, others):
        return any(rect[0] < other[2] - 1 and other[0] < rect[2] - 1 and rect[1] < other[3] - 1
                   and other[1] < rect[3] - 1 for other in others)

    def add(self, box, text, colour, size=9, outside=True):
        """Label `box` (x1, y1, x2, y2 in data coordinates) with `text` in a `colour` block."""
        pad = 0.2
        label = self.ax.text(0, 0, text, fontsize=size, color='white', fontweight='bold', ha='left', va='bottom',
                             bbox=dict(boxstyle='square,pad=%g' % pad, facecolor=colour, alpha=0.9,
                                       edgecolor='white', linewidth=0.8))  # edged: visible on its own colour
        extent = label.get_window_extent(self.renderer)
        margin = pad * size / 72 * self.ax.figure.dpi  # the block's padding, pixels
        width, height = extent.width + 2 * margin, extent.height + 2 * margin
        candidates = list(self._candidates(box, width, height, outside))
        own = self._corners(box)
        avoid = [rect for rect in self.thick if not self._contains(rect, own)]  # (one around it cannot be avoided)
        chosen = next((rect for rect in candidates if not self._overlaps(rect, self.taken + avoid)),
                      next((rect for rect in candidates if not self._overlaps(rect, self.taken)),
                           candidates[0] if candidates else None))
        if chosen is None:  # no room in the panel at all (a box far outside the image): at its corner
            left, bottom, _, top = self._corners(box)
            chosen = (left, top, left + width, top + height)
        self.taken.append(chosen)
        label.set_position(self.ax.transData.inverted().transform((chosen[0] + margin, chosen[1] + margin)))


def draw_attention_boxes(ax, image, spatials, weights, tops, shown, panel_h):
    """The image panel (`panel_h` inches tall): thin numbered boxes for the
    heat-map rows, each glimpse's top box thick in its colour with its weight."""
    _draw_frame(ax, image, panel_h)
    boxes = _pixel_boxes(spatials, image)
    labels = BoxLabels(ax)
    numbered = [box for box in shown if box not in tops]
    for box in numbered:
        _numbered_box(ax, boxes[box])
    for box in sorted(set(tops), key=lambda box: -_area(boxes[box])):  # a small box over a large one
        labels.add_thick_box(boxes[box])
        for line, glimpse in enumerate(g for g, top in enumerate(tops) if top == box):
            _thick_box(ax, boxes[box], GLIMPSE_COLOURS[glimpse % len(GLIMPSE_COLOURS)], line)
    for glimpse, box in enumerate(tops):
        labels.add(boxes[box], 'G%d  #%d  %.2f' % (glimpse + 1, box, float(weights[glimpse, box])),
                   GLIMPSE_COLOURS[glimpse % len(GLIMPSE_COLOURS)])
    for box in numbered:
        labels.add(boxes[box], '#%d' % box, '#333333', size=8, outside=False)


def draw_attention_map(ax, values, shown, words, unknown, top, colour, glimpse, scale):
    """One glimpse's heat map: rows = boxes `shown`, columns = `words`."""
    image = ax.imshow(values, cmap=MAP_COLOURS, vmin=0.0, vmax=scale, aspect='auto', interpolation='nearest')
    ax.set_yticks(range(len(shown)), ['#%d' % box for box in shown], fontsize=9)
    ax.set_xticks(range(len(words)), [word + ('*' if flag else '') for word, flag in zip(words, unknown)],
                  rotation=50, ha='right', rotation_mode='anchor', fontsize=9)
    for label, box in zip(ax.get_yticklabels(), shown):
        if box == top:
            label.set_color(colour)
            label.set_fontweight('bold')
    for label, flag in zip(ax.get_xticklabels(), unknown):
        if flag:
            label.set_color('#c00000')
    ax.set_title('glimpse %d: top box #%d' % (glimpse + 1, top), color=colour, fontsize=10, fontweight='bold')
    return image


def attention_figure(image, spatials, att, words, unknown, title, notes=(), rows=10):
    """The VQA attention picture (a matplotlib Figure).

    image: RGB array [H, W, 3] or None; spatials [N, 6]; att [G, N, L] the
    attention over the question positions, of which the first W are the
    `words` read; unknown: W flags (word outside the dictionary); title:
    question and answers; notes: lines under it."""
    Figure = figure_class()
    weights, tops, shown = attended_boxes(att, rows)
    glimpses = att.size(0)
    columns = 1 if glimpses <= 2 else 2  # the maps in a column beside the image, two columns for more glimpses
    map_rows = math.ceil(glimpses / columns)
    least_maps_h = map_rows * (len(shown) * CELL[1] + MAP_FRAME[1])
    panel_w, panel_h = _panel_size(image, min(max(least_maps_h - 2 * LABEL_MARGIN, PANEL_HEIGHT[0]), PANEL_HEIGHT[1]))
    body_h = panel_h + 2 * LABEL_MARGIN
    # the cells grow (up to CELL_GROWTH times) until the maps are as tall as the image panel
    growth = min(max((body_h / map_rows - MAP_FRAME[1]) / (len(shown) * CELL[1]), 1.0), CELL_GROWTH)
    map_w, map_h = len(words) * CELL[0] * growth + MAP_FRAME[0], len(shown) * CELL[1] * growth + MAP_FRAME[1]
    maps_h = map_rows * map_h
    body_h = max(body_h, maps_h)
    width = 0.3 + panel_w + 1.1 + columns * map_w + 0.6
    title_lines, notes = _wrapped_header(title, notes, width)
    header = 0.35 + 0.3 * len(title_lines) + 0.25 * len(notes)
    height = header + body_h + 0.2 + (NO_IMAGE_SPACE if image is None else 0.0)
    figure = Figure(figsize=_whole_pixels(width, height), dpi=DPI)
    _header(figure, width, height, title_lines, notes)
    top = height - header  # inches from the bottom to the body's top
    image_ax = figure.add_axes([0.3 / width, (top - panel_h - 2 * LABEL_MARGIN) / height, panel_w / width,
                                (panel_h + 2 * LABEL_MARGIN) / height])
    draw_attention_boxes(image_ax, image, spatials, weights, tops, shown, panel_h)
    att = att[:, :, :len(words)]  # [G, N, W]
    scale = float(att[:, shown].max()) or 1.0
    left = 0.3 + panel_w + 1.1
    for glimpse in range(glimpses):
        row, column = divmod(glimpse, columns)
        ax = figure.add_axes([(left + column * map_w) / width, (top - (row + 1) * map_h + 0.85) / height,
                              (map_w - MAP_FRAME[0]) / width, (map_h - MAP_FRAME[1]) / height])
        mappable = draw_attention_map(ax, att[glimpse][shown].numpy(), shown, words, unknown, tops[glimpse],
                                      GLIMPSE_COLOURS[glimpse % len(GLIMPSE_COLOURS)], glimpse, scale)
    colour_bar = figure.add_axes([(left + columns * map_w - 0.6) / width, (top - maps_h + 0.85) / height, 0.18 / width,
                                  (maps_h - MAP_FRAME[1]) / height])
    figure.colorbar(mappable, cax=colour_bar).set_label('attention weight of (box, word)', fontsize=9)
    return figure


def _whole_pixels(width, height):
    """(width, height) in inches rounded up to whole pixels at DPI."""
    return math.ceil(width * DPI) / DPI, math.ceil(height * DPI) / DPI


def _wrapped_header(title, notes, width):
    """(title lines, [(note line, colour)]) wrapped to fit `width` inches
    (about 0.6 of the font size per character): `notes` in red, then
    HOW_TO_READ in grey."""
    def wrap(text, points):
        return textwrap.wrap(text, max(int((width - 0.6) * 72 / (0.6 * points)), 20)) or ['']
    lines = [(line, '#c00000') for note in notes for line in wrap(note, 10)]
    return wrap(title, 13), lines + [(line, '#555555') for line in wrap(HOW_TO_READ, 10)]


def _header(figure, width, height, title_lines, notes):
    """The title and the note lines under it."""
    figure.text(0.3 / width, 1 - 0.25 / height, '\n'.join(title_lines), fontsize=13, fontweight='bold', va='top')
    below_title = 0.35 + 0.3 * len(title_lines)
    for line, (text, colour) in enumerate(notes):
        figure.text(0.3 / width, 1 - (below_title + 0.25 * line) / height, text, fontsize=10, color=colour, va='top')


def answer_title(question, probabilities, label2ans, count=3):
    top = probabilities.topk(min(count, len(probabilities)))
    answers = ', '.join('%s %.2f' % (label2ans[label], p) for p, label in zip(top.values.tolist(),
                                                                              top.indices.tolist()))
    return 'Q: %s    A: %s' % (question, answers)


def draw_vqa(args, image):
    model, dictionary, label2ans, features, spatials, device = ask.load_question_model(args)
    encoded = ask.encode_question(args.question, dictionary)
    notes = ask.reading_notes(encoded, dictionary)
    probabilities, att = ask.answer(model, features, spatials, encoded.tokens, device)  # [n_ans], [G,N,14]
    unknown = [word in encoded.unknown for word in encoded.words]
    figure = attention_figure(image, spatials, att, encoded.words, unknown,
                              answer_title(args.question, probabilities, label2ans),
                              [('* ' if line.startswith('not in') else '') + line for line in notes], args.top)
    return figure, notes


# ----------------------------------------------------------------- Flickr30k grounding

def phrase_positions(caption, phrases, dictionary, length):
    """Token position of each phrase's last word (its first occurrence in the
    caption, as in training); a phrase that is not there is a UserError."""
    words = split_words(caption)
    positions = []
    for phrase in phrases:
        position = find_last_word_of_first_occurrence(words, split_words(phrase)) if split_words(phrase) else -1
        if position < 0:
            raise UserError('--phrase %r is not a run of words of the caption %r (compared after lower-casing and '
                            'removing "," and "?")' % (phrase, caption))
        if position == 0:
            raise UserError('--phrase %r ends at the caption\'s first word, a position the grounding model masks '
                            '(its padding slot, as in the original); put a word before it in --question' % phrase)
        if position >= length:
            raise UserError('--phrase %r ends at word %d, past the %d words the model reads' % (phrase, position + 1,
                                                                                                length))
        positions.append(position)
    return positions


def load_grounding_model(args):
    """(model in eval mode, dictionary, features, spatials, device) for --task flickr."""
    device = runtime.resolve_device(args.device)
    dictionary = load_dictionary(args.dataroot, 'flickr')
    root = task_root(args.dataroot, 'flickr')
    if args.image_id is None:
        raise UserError('--task flickr grounds a caption of an image of the data root: pass --image_id N')
    features, spatials, _ = ask.find_image_features(root, args.image_id, SPLITS)
    features, spatials = features[:MAX_BOXES], spatials[:MAX_BOXES]  # as the dataset cuts them
    model, _ = checkpoints.model_from_checkpoint(args, 'flickr', args.checkpoint, device, dictionary.ntoken,
                                                 features.size(1), MAX_BOXES)
    return model.eval(), dictionary, features, spatials, device


@torch.no_grad()
def ground(model, features, spatials, tokens, positions, device):
    """Probability [P, N] of every box for each phrase at `positions`."""
    padded = torch.tensor([pad_entity_positions(positions)], dtype=torch.long)  # [1, 16]
    _, logits = model(features.unsqueeze(0).to(device), spatials.unsqueeze(0).to(device), tokens.to(device),
                      padded.to(device))  # [1, 1, N, 16]
    return torch.sigmoid(logits[0, 0, :, :len(positions)].t()).cpu()  # [P, N]


def grounding_figure(image, spatials, phrases, probabilities, title, notes=()):
    """The grounding picture: each phrase's top box in its colour, labelled
    with the phrase and its probability; a list of the phrases beside it."""
    Figure = figure_class()
    panel_w, panel_h = _panel_size(image, 8.0)
    width = max(0.3 + panel_w + 0.4 + 4.5, MIN_WIDTH)
    header = 0.5 + 0.25 * (1 + len(notes))
    height = header + panel_h + 2 * LABEL_MARGIN + 0.3 + (NO_IMAGE_SPACE if image is None else 0.0)
    figure = Figure(figsize=_whole_pixels(width, height), dpi=DPI)
    figure.text(0.3 / width, 1 - 0.3 / height, title, fontsize=13, fontweight='bold', va='top')
    for line, text in enumerate(notes):
        figure.text(0.3 / width, 1 - (0.55 + 0.25 * (line + 1)) / height, text, fontsize=10, color='#c00000',
                    va='top')
    ax = figure.add_axes([0.3 / width, (height - header - panel_h - 2 * LABEL_MARGIN) / height, panel_w / width,
                          (panel_h + 2 * LABEL_MARGIN) / height])
    _draw_frame(ax, image, panel_h)
    boxes = _pixel_boxes(spatials, image)
    tops = probabilities.argmax(1).tolist()
    runners_up = {int(box) for row in probabilities.topk(min(3, probabilities.size(1)), 1).indices
                  for box in row[1:]} - set(tops)
    labels = BoxLabels(ax)
    for box in sorted(runners_up):
        _numbered_box(ax, boxes[box])
    for box in sorted(set(tops), key=lambda box: -_area(boxes[box])):  # a small box over a large one
        labels.add_thick_box(boxes[box])
        for line, index in enumerate(index for index, top in enumerate(tops) if top == box):
            _thick_box(ax, boxes[box], GLIMPSE_COLOURS[index % len(GLIMPSE_COLOURS)], line)
    listing = []
    for index, (phrase, top) in enumerate(zip(phrases, tops)):
        colour = GLIMPSE_COLOURS[index % len(GLIMPSE_COLOURS)]
        labels.add(boxes[top], '%s  #%d  %.2f' % (phrase, top, float(probabilities[index, top])), colour, size=10)
        listing.append((phrase, top, colour))
    for box in sorted(runners_up):
        labels.add(boxes[box], '#%d' % box, '#333333', size=8, outside=False)
    left = (0.3 + panel_w + 0.4) / width
    figure.text(left, 1 - (header + 0.1) / height, 'phrase -> top box (probability); next best (dotted)',
                fontsize=11, va='top')
    for row, (phrase, top, colour) in enumerate(listing):
        runner_up = probabilities[row].topk(min(3, probabilities.size(1)))
        others = ', '.join('#%d %.2f' % (box, p) for p, box in zip(runner_up.values.tolist()[1:],
                                                                  runner_up.indices.tolist()[1:]))
        figure.text(left, 1 - (header + 0.45 + 0.5 * row) / height,
                    '"%s" -> #%d (%.2f)\n    next: %s' % (phrase, top, float(probabilities[row, top]), others or '-'),
                    fontsize=10, color=colour, va='top')
    return figure


def draw_flickr(args, image):
    if not args.phrase:
        raise UserError('--task flickr grounds phrases of the caption: name each with --phrase')
    model, dictionary, features, spatials, device = load_grounding_model(args)
    encoded = ask.encode_question(args.question, dictionary, MAX_SENTENCE_TOKENS)
    notes = ask.reading_notes(encoded, dictionary, what='caption')
    positions = phrase_positions(args.question, args.phrase, dictionary, MAX_SENTENCE_TOKENS)
    probabilities = ground(model, features, spatials, encoded.tokens, positions, device)  # [P, N], tokens [1, 82]
    return grounding_figure(image, spatials, args.phrase, probabilities, args.question, notes), notes


# ----------------------------------------------------------------- command line

def parse_args(argv=None):
    """Parse, take the checkpoint's settings, then check the flags that depend on its task."""
    args = checkpoints.settle(visualize_parser(__doc__).parse(argv))
    if args.phrase and args.task != 'flickr':
        raise UserError('--phrase names phrases for a grounding model (--task flickr); %s is a model for --task %s'
                        % (args.checkpoint, args.task))
    check_image_flag(args.image)
    return args


def main(argv=None):
    args = parse_args(argv)
    figure_class()  # fail early, before the model loads
    image = load_image(args.image) if args.image else None
    if image is None:
        note('no --image: the boxes are drawn on an empty frame; pass --image PHOTO to see them on the picture')
    draw = draw_flickr if args.task == 'flickr' else draw_vqa
    figure, notes = draw(args, image)
    for line in notes:
        note(line)
    with atomic_write(args.output, 'wb') as handle:
        figure.savefig(handle, format='png', dpi=DPI)
    print('wrote %s (%d x %d pixels)' % (args.output, *(figure.get_size_inches() * DPI).round().astype(int)))
    return args.output


if __name__ == '__main__':
    run_cli(main)
