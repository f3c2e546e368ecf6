r"""Draw what BAN attends to, to a PNG.

VQA: the boxes and words each glimpse attends to.

    python3 visualize.py --input saved_models/ban --image_id 42 --question "What color is the bus?" \
        --image COCO_val2014_000000000042.jpg --output results/attention.png
    python3 visualize.py --input saved_models/ban --image my.jpg \
        --detector_weights resnet101_faster_rcnn_final.caffemodel --question "What is the man holding?"

With --image and no --image_id the photo's region features are extracted on
the fly (as ask.py does) and the attended boxes are drawn on it.

Left: the image with each glimpse's most attended box drawn thick in the
glimpse's colour and labelled with its number and weight (the share of the
glimpse's attention it gets), and the other boxes of the maps drawn thin
with their numbers. Right: each glimpse's box x word attention map; rows are
the boxes numbered as on the image (each glimpse's top box and the most
attended ones overall, --top in all), columns the words the model read, one
colour scale for all maps.

Flickr30k Entities: the box a grounding model picks for each phrase.

    python3 visualize.py --task flickr --input saved_models/flickr --image_id 1000092795 \
        --question "Two young guys with shaggy hair look at their hands ." \
        --phrase "two young guys" --phrase "their hands" --image 1000092795.jpg

Each phrase's top box is drawn in its colour with its probability (the
sigmoid of its logit, what the grounding loss trains). A phrase is located
at its last word, as the model was trained to read it.

Without --image the boxes are drawn on an empty frame, and the picture says
so. Needs matplotlib (`pip install matplotlib`), used only here and by
tools/plot_log.py.
"""
import math
import os

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
MIN_WIDTH = 14.0  # inches: 1400 px at DPI
CELL = (0.3, 0.26)  # inches per heat-map cell (word column, box row)
PANEL_HEIGHT = (6.0, 8.0)  # inches: the image panel's least and greatest height
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


def _draw_frame(ax, image):
    if image is not None:
        small = max(image.shape[:2]) < 300  # enlarge small images crisply instead of blurring them
        ax.imshow(image, interpolation='nearest' if small else 'antialiased')
        return
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)
    ax.set_aspect('equal')
    ax.set_facecolor('#f7f7f7')
    ax.set_xlabel(NO_IMAGE, fontsize=11, color='#c00000')


def _box_patch(ax, box, colour, width, inset=0.0, style='-'):
    from matplotlib.patches import Rectangle
    x1, y1, x2, y2 = box
    ax.add_patch(Rectangle((x1 + inset, y1 + inset), max(x2 - x1 - 2 * inset, 0), max(y2 - y1 - 2 * inset, 0),
                           fill=False, edgecolor=colour, linewidth=width, linestyle=style))


def _tag(ax, box, text, colour, line=0, size=9):
    """A label in a coloured block at the box's top-left corner, the
    `line`-th one there."""
    ax.annotate(text, xy=(box[0], box[1]), xytext=(3, -3 - 15 * line), textcoords='offset points', ha='left',
                va='top', fontsize=size, color='white', fontweight='bold',
                bbox=dict(boxstyle='square,pad=0.2', facecolor=colour, edgecolor='none', alpha=0.9))


def _numbered_box(ax, box, number):
    """A thin dotted box (visible on light and dark pictures) with its number."""
    _box_patch(ax, box, 'white', 1.2)
    _box_patch(ax, box, 'black', 0.6, style=':')
    _tag(ax, box, '#%d' % number, '#333333', size=8)


def draw_attention_boxes(ax, image, spatials, weights, tops, shown):
    """The image panel: thin numbered boxes for the heat-map rows, each
    glimpse's top box thick in its colour with its weight."""
    _draw_frame(ax, image)
    boxes = _pixel_boxes(spatials, image)
    extent = 1.0 if image is None else image.shape[1]
    for box in shown:
        if box not in tops:
            _numbered_box(ax, boxes[box], box)
    for box in dict.fromkeys(tops):
        glimpses = [g for g, top in enumerate(tops) if top == box]
        for line, glimpse in enumerate(glimpses):
            colour = GLIMPSE_COLOURS[glimpse % len(GLIMPSE_COLOURS)]
            _box_patch(ax, boxes[box], colour, 3.0, inset=line * 0.006 * extent)
            _tag(ax, boxes[box], 'G%d  #%d  %.2f' % (glimpse + 1, box, float(weights[glimpse, box])), colour, line)
    ax.set_xticks([])
    ax.set_yticks([])


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
    columns = 1 if glimpses == 1 else 2
    map_w, map_h = len(words) * CELL[0] + 0.9, len(shown) * CELL[1] + 1.1  # + tick labels, title
    maps_h = math.ceil(glimpses / columns) * map_h
    notes = list(notes) + [HOW_TO_READ]
    header = 0.6 + 0.25 * len(notes)
    panel_w, panel_h = _panel_size(image, min(max(maps_h, PANEL_HEIGHT[0]), PANEL_HEIGHT[1]))
    body_h = max(panel_h, maps_h)
    width = max(0.3 + panel_w + 1.1 + columns * map_w + 0.6, MIN_WIDTH)
    height = header + body_h + 0.2 + (NO_IMAGE_SPACE if image is None else 0.0)
    figure = Figure(figsize=_whole_pixels(width, height), dpi=DPI)
    _header(figure, width, height, title, notes)
    top = height - header  # inches from the bottom to the body's top
    image_ax = figure.add_axes([0.3 / width, (top - panel_h) / height, panel_w / width, panel_h / height])
    draw_attention_boxes(image_ax, image, spatials, weights, tops, shown)
    att = att[:, :, :len(words)]  # [G, N, W]
    scale = float(att[:, shown].max()) or 1.0
    left = 0.3 + panel_w + 1.1
    for glimpse in range(glimpses):
        row, column = divmod(glimpse, columns)
        ax = figure.add_axes([(left + column * map_w) / width, (top - (row + 1) * map_h + 0.85) / height,
                              (map_w - 0.9) / width, (map_h - 1.1) / height])
        mappable = draw_attention_map(ax, att[glimpse][shown].numpy(), shown, words, unknown, tops[glimpse],
                                      GLIMPSE_COLOURS[glimpse % len(GLIMPSE_COLOURS)], glimpse, scale)
    colour_bar = figure.add_axes([(left + columns * map_w - 0.6) / width, (top - maps_h + 0.85) / height, 0.18 / width,
                                  (maps_h - 1.1) / height])
    figure.colorbar(mappable, cax=colour_bar).set_label('attention weight of (box, word)', fontsize=9)
    return figure


def _whole_pixels(width, height):
    """(width, height) in inches rounded up to whole pixels at DPI."""
    return math.ceil(width * DPI) / DPI, math.ceil(height * DPI) / DPI


def _header(figure, width, height, title, notes):
    """The title line and the note lines under it (red; the last one grey)."""
    figure.text(0.3 / width, 1 - 0.25 / height, title, fontsize=13, fontweight='bold', va='top')
    for line, text in enumerate(notes):
        colour = '#555555' if line == len(notes) - 1 else '#c00000'
        figure.text(0.3 / width, 1 - (0.6 + 0.25 * line) / height, text, fontsize=10, color=colour, va='top')


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
    height = header + panel_h + 0.3 + (NO_IMAGE_SPACE if image is None else 0.0)
    figure = Figure(figsize=_whole_pixels(width, height), dpi=DPI)
    figure.text(0.3 / width, 1 - 0.3 / height, title, fontsize=13, fontweight='bold', va='top')
    for line, text in enumerate(notes):
        figure.text(0.3 / width, 1 - (0.55 + 0.25 * (line + 1)) / height, text, fontsize=10, color='#c00000',
                    va='top')
    ax = figure.add_axes([0.3 / width, (height - header - panel_h) / height, panel_w / width, panel_h / height])
    _draw_frame(ax, image)
    boxes = _pixel_boxes(spatials, image)
    tops = probabilities.argmax(1).tolist()
    extent = 1.0 if image is None else image.shape[1]
    runners_up = {int(box) for row in probabilities.topk(min(3, probabilities.size(1)), 1).indices
                  for box in row[1:]} - set(tops)
    for box in sorted(runners_up):
        _numbered_box(ax, boxes[box], box)
    listing = []
    for index, (phrase, top) in enumerate(zip(phrases, tops)):
        colour = GLIMPSE_COLOURS[index % len(GLIMPSE_COLOURS)]
        line = tops[:index].count(top)
        _box_patch(ax, boxes[top], colour, 3.0, inset=line * 0.006 * extent)
        _tag(ax, boxes[top], '%s  #%d  %.2f' % (phrase, top, float(probabilities[index, top])), colour, line, size=10)
        listing.append((phrase, top, colour))
    ax.set_xticks([])
    ax.set_yticks([])
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
    return checkpoints.settle(visualize_parser(__doc__).parse(argv))


def main(argv=None):
    args = parse_args(argv)
    if args.phrase and args.task != 'flickr':
        raise UserError('--phrase names phrases for a grounding model (--task flickr); %s is a model for --task %s'
                        % (args.checkpoint, args.task))
    check_image_flag(args.image)
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
