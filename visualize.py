"""Draw what BAN attends to for one question, to a PNG.

    python3 visualize.py --input saved_models/ban --epoch 12 --image_id 42 \
        --question "What color is the bus?" [--image photo.jpg] --output results/attention.png

Left: the image (or a blank canvas of the image's proportions when no image
file is given) with the most attended boxes of each glimpse, one colour per
glimpse. Right: each glimpse's box x word attention map (rows: boxes, most
attended first; columns: the question's words). Needs Pillow
(`pip install pillow`), used only here.
"""

import ask
from utils import UserError, atomic_write, require_file, run_cli

GLIMPSE_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                   (70, 240, 240), (240, 50, 230), (128, 128, 0)]
PANEL = 320  # pixel size of the image panel
CELL = 14  # pixel size of one attention cell


def _pillow():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise UserError('visualize.py draws with Pillow: pip install pillow') from None
    return Image, ImageDraw, ImageFont


def box_scores(att):
    """Attention mass of each box per glimpse: [G, N, L] -> [G, N]."""
    return att.sum(2)


def draw_image_panel(image_path, spatials, scores, top, Image, ImageDraw):
    """The image with the `top` most attended boxes of every glimpse."""
    if image_path:
        require_file(image_path, 'pass an image file with --image')
        panel = Image.open(image_path).convert('RGB').resize((PANEL, PANEL))
    else:
        panel = Image.new('RGB', (PANEL, PANEL), (235, 235, 235))
    draw = ImageDraw.Draw(panel)
    for glimpse, glimpse_scores in enumerate(scores):
        colour = GLIMPSE_COLOURS[glimpse % len(GLIMPSE_COLOURS)]
        for box in glimpse_scores.topk(min(top, len(glimpse_scores))).indices.tolist():
            x1, y1, x2, y2 = (float(c) * PANEL for c in spatials[box, :4])  # normalised coords
            inset = glimpse  # offset so the glimpses' outlines stay visible when boxes coincide
            draw.rectangle([x1 + inset, y1 + inset, x2 - inset, y2 - inset], outline=colour, width=2)
    return panel


def draw_attention_maps(att, words, order, Image, ImageDraw, font):
    """One heat map per glimpse, rows = boxes in `order`, columns = words."""
    glimpses, _, _ = att.shape
    label_height = 60
    width = glimpses * (len(words) * CELL + 30)
    height = label_height + len(order) * CELL + 20
    canvas = Image.new('RGB', (max(width, 1), height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for glimpse in range(glimpses):
        left = glimpse * (len(words) * CELL + 30) + 10
        glimpse_map = att[glimpse][order][:, :len(words)]  # [N, W]
        peak = float(glimpse_map.max()) or 1.0
        colour = GLIMPSE_COLOURS[glimpse % len(GLIMPSE_COLOURS)]
        draw.text((left, 2), 'glimpse %d' % (glimpse + 1), fill=colour, font=font)
        for column, word in enumerate(words):
            draw.text((left + column * CELL + 2, 16 + (column % 3) * 14), word[:8], fill=(0, 0, 0), font=font)
        for row in range(len(order)):
            for column in range(len(words)):
                shade = int(255 * (1 - float(glimpse_map[row, column]) / peak))
                x, y = left + column * CELL, label_height + row * CELL
                draw.rectangle([x, y, x + CELL - 1, y + CELL - 1], fill=(shade, shade, 255))
    return canvas


def render(image_path, question, answer_text, spatials, att, words, top):
    """Compose the PNG image: title, image panel, attention maps."""
    Image, ImageDraw, ImageFont = _pillow()
    font = ImageFont.load_default()
    scores = box_scores(att)  # [G, N]
    order = scores.sum(0).argsort(descending=True)[:20]  # at most 20 rows, most attended first
    image_panel = draw_image_panel(image_path, spatials, scores, top, Image, ImageDraw)
    maps = draw_attention_maps(att, words, order, Image, ImageDraw, font)
    title_height = 30
    figure = Image.new('RGB', (PANEL + maps.width + 20, title_height + max(PANEL, maps.height)), (255, 255, 255))
    ImageDraw.Draw(figure).text((10, 8), 'Q: %s   A: %s' % (question, answer_text), fill=(0, 0, 0), font=font)
    figure.paste(image_panel, (10, title_height))
    figure.paste(maps, (PANEL + 20, title_height))
    return figure


def main(argv=None):
    parser = ask.parse_args(description=__doc__)
    parser.add_argument('--image', type=str, default=None, help='image file to draw the boxes on')
    parser.add_argument('--output', type=str, default='results/attention.png')
    args = parser.parse_args(argv)
    _pillow()  # fail early, before loading the model
    model, dictionary, vocabulary, features, spatials, device = ask.load_question_model(args)
    tokens = ask.encode_question(args.question, dictionary)  # [1,14]
    probabilities, att = ask.answer(model, features, spatials, tokens, device)  # [n_ans], [G,N,14]
    words = [dictionary.idx2word[t] if t < dictionary.ntoken else '' for t in tokens[0].tolist()]
    words = [word for word in words if word]
    best = int(probabilities.argmax())
    answer_text = '%s (%.2f)' % (vocabulary.label2ans[best], float(probabilities[best]))
    figure = render(args.image, args.question, answer_text, spatials, att, words, args.top)
    with atomic_write(args.output, 'wb') as handle:
        figure.save(handle, format='PNG')
    print('wrote %s (answer: %s)' % (args.output, answer_text))
    return args.output


if __name__ == '__main__':
    run_cli(main)
