"""The demo's region proposer and descriptor (tools/make_demo_data.py): boxes
of the coloured shape of an easy-VQA image and a small feature vector per
box, on numpy arrays (see docs/DEMO_DATA.md)."""
import dataclasses

import numpy as np

# The eight easy-VQA colours (exact RGB values of the rendered shapes), in
# the order of the colour histogram of the descriptor.
PALETTE_NAMES = ('red', 'green', 'blue', 'yellow', 'teal', 'brown', 'gray', 'black')
PALETTE_RGB = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0],
                        [0, 128, 128], [165, 42, 42], [128, 128, 128], [0, 0, 0]], dtype=np.float32)
SHAPE_NAMES = ('circle', 'rectangle', 'triangle')

MIN_CONTRAST = 48.0        # RGB distance below which an image counts as blank
CORE_FRACTION = 0.75       # pixels this close to the object's full contrast give its colour
MIN_COMPONENT_AREA = 4     # smaller connected components are treated as noise
MAX_COMPONENTS = 3         # object boxes per image (largest first)
BASE_FEATURE_DIM = 32      # length of the descriptor; --feature_dim pads with zeros
CORNER_FRACTION = 0.25     # corner cells are the outer quarter of the box in x and y
PROFILE_ROWS = (1 / 6, 1 / 2, 5 / 6)  # rows (fraction of box height) of the width profile

# ----------------------------------------------------------- region proposer

@dataclasses.dataclass
class ColourTable:
    """The distinct colours of an image and, per pixel, which one it is."""
    colours: np.ndarray   # uint8 [u, 3] distinct RGB values, sorted by packed 0xRRGGBB
    counts: np.ndarray    # int64 [u] pixels of each colour
    inverse: np.ndarray   # int64 [H, W] index into `colours` of every pixel


def colour_table(image):
    """Distinct colours of `image` (uint8 [H, W, 3]); per-colour work on this
    table (at most a few dozen colours in easy-VQA) replaces per-pixel work."""
    height, width = image.shape[:2]
    pixels = image.reshape(-1, 3).astype(np.int64)
    packed = (pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2]  # [H*W]
    values, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
    colours = np.stack([(values >> 16) & 255, (values >> 8) & 255, values & 255], axis=1).astype(np.uint8)
    return ColourTable(colours, counts, inverse.reshape(height, width))


def background_colour(table):
    """Most frequent colour (ties: smallest packed value), float32 [3]."""
    return table.colours[np.argmax(table.counts)].astype(np.float32)


def contrast_map(table):
    """Euclidean RGB distance of every pixel to the background colour,
    float32 [H, W]."""
    difference = table.colours.astype(np.float32) - background_colour(table)  # [u, 3]
    return np.sqrt((difference ** 2).sum(axis=1))[table.inverse]


def foreground_mask(contrast):
    """Pixels at least half as far from the background as the most distinct
    pixel (so anti-aliased edges split at 50 % coverage); empty when the
    image has no pixel MIN_CONTRAST away from the background."""
    peak = float(contrast.max())
    if peak < MIN_CONTRAST:
        return np.zeros(contrast.shape, dtype=bool)
    return contrast >= 0.5 * peak


def label_components(mask):
    """8-connected components of a bool [H, W] mask. Returns int64 [H, W]:
    -1 off the mask, else the smallest raster index of the pixel's component.

    Min-label propagation over the 3x3 neighbourhood, with pointer jumping
    (a pixel adopts its label's label) so a blob converges in a few rounds."""
    height, width = mask.shape
    outside = height * width
    raster = np.arange(outside, dtype=np.int64).reshape(height, width)
    labels = np.where(mask, raster, outside)  # [H, W]
    while True:
        padded = np.pad(labels, 1, constant_values=outside)  # [H+2, W+2]
        neighbour_min = labels.copy()
        for dy in range(3):
            for dx in range(3):
                np.minimum(neighbour_min, padded[dy:dy + height, dx:dx + width], out=neighbour_min)
        updated = np.where(mask, neighbour_min, outside)
        flat = np.append(updated.ravel(), outside)  # index `outside` maps to itself
        updated = np.where(mask, flat[updated], outside)  # pointer jumping
        if np.array_equal(updated, labels):
            return np.where(mask, labels, -1)
        labels = updated


def component_regions(mask):
    """Boxes and pixel masks of the largest components of `mask`.

    Returns (boxes int64 [k, 4] as x1, y1, x2, y2 with x2/y2 exclusive, so a
    box spans exactly the component's pixels; masks bool [k, H, W]); at most
    MAX_COMPONENTS components of at least MIN_COMPONENT_AREA pixels, largest
    first, ties in raster order of their first pixel."""
    height, width = mask.shape
    labels = label_components(mask)
    ids, areas = np.unique(labels[mask], return_counts=True)
    keep = areas >= MIN_COMPONENT_AREA
    ids, areas = ids[keep], areas[keep]
    order = np.lexsort((ids, -areas))[:MAX_COMPONENTS]
    masks = labels[None] == ids[order][:, None, None]  # [k, H, W]
    rows_used = masks.any(axis=2)  # [k, H]
    cols_used = masks.any(axis=1)  # [k, W]
    x1 = cols_used.argmax(axis=1)
    x2 = width - cols_used[:, ::-1].argmax(axis=1)
    y1 = rows_used.argmax(axis=1)
    y2 = height - rows_used[:, ::-1].argmax(axis=1)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)  # [k, 4]
    return boxes, masks


def grid_boxes(height, width):
    """Fixed context boxes: the whole image, then the 2x2 quadrants
    (top-left, top-right, bottom-left, bottom-right). int64 [5, 4]; an
    image under 2 pixels wide or high gets the whole-image box only."""
    whole = np.array([[0, 0, width, height]], dtype=np.int64)
    if width < 2 or height < 2:
        return whole
    mid_x, mid_y = width // 2, height // 2
    quadrants = np.array([[0, 0, mid_x, mid_y], [mid_x, 0, width, mid_y],
                          [0, mid_y, mid_x, height], [mid_x, mid_y, width, height]], dtype=np.int64)
    return np.concatenate([whole, quadrants], axis=0)


@dataclasses.dataclass
class Regions:
    """Proposed regions of one image (n = components + grid boxes)."""
    boxes: np.ndarray          # int64 [n, 4] x1, y1, x2 (exclusive), y2 (exclusive)
    object_masks: np.ndarray   # bool [n, H, W] foreground pixels credited to each box
    is_component: np.ndarray   # bool [n]
    colours: ColourTable       # the image's colours (reused by the descriptor)
    contrast: np.ndarray       # float32 [H, W] distance to the background colour


def propose_regions(image):
    """Object boxes (connected components of the foreground) followed by the
    grid boxes. A component box owns its component's pixels; a grid box owns
    every foreground pixel inside it. Every box has positive area."""
    height, width = image.shape[:2]
    table = colour_table(image)
    contrast = contrast_map(table)
    mask = foreground_mask(contrast)
    component_boxes, component_masks = component_regions(mask)
    grid = grid_boxes(height, width)
    inside_grid = boxes_to_masks(grid, height, width)  # [g, H, W]
    boxes = np.concatenate([component_boxes, grid], axis=0)  # [n, 4]
    object_masks = np.concatenate([component_masks, inside_grid & mask[None]], axis=0)
    is_component = np.arange(len(boxes)) < len(component_boxes)
    return Regions(boxes, object_masks, is_component, table, contrast)


def boxes_to_masks(boxes, height, width):
    """bool [n, H, W]: True inside each integer box (x2, y2 exclusive)."""
    ys = np.arange(height)[None, :, None]
    xs = np.arange(width)[None, None, :]
    x1, y1, x2, y2 = (boxes[:, k, None, None] for k in range(4))
    return (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)


# ---------------------------------------------------------------- descriptor

FEATURE_LAYOUT = (  # (name, width) in descriptor order; widths sum to BASE_FEATURE_DIM
    ('object_rgb', 3), ('box_rgb', 3), ('palette_histogram', 8), ('fill_ratio', 1),
    ('aspect', 1), ('box_area', 1), ('object_area', 1), ('box_coords', 4),
    ('centroid', 2), ('width_profile', 3), ('corner_fill', 4), ('is_component', 1),
)


def feature_slices():
    """Name -> slice of the descriptor, from FEATURE_LAYOUT."""
    slices, start = {}, 0
    for name, size in FEATURE_LAYOUT:
        slices[name] = slice(start, start + size)
        start += size
    return slices


def nearest_palette_index(colours):
    """int64 [u]: index into PALETTE_RGB of the nearest easy-VQA colour of
    each RGB row of `colours` ([u, 3])."""
    difference = colours.astype(np.float32)[:, None, :] - PALETTE_RGB  # [u, 8, 3]
    return (difference ** 2).sum(axis=2).argmin(axis=1)


def describe_regions(image, regions, feature_dim=BASE_FEATURE_DIM):
    """Descriptor of every proposed region, float32 [n, feature_dim], all
    values in [0, 1]; columns past BASE_FEATURE_DIM are zero. Layout in
    FEATURE_LAYOUT and docs/DEMO_DATA.md. No row is all zero (every box has
    a positive area and size), so padding rows stay distinct."""
    height, width = image.shape[:2]
    count = len(regions.boxes)
    boxes = regions.boxes.astype(np.float64)
    objects = regions.object_masks.reshape(count, -1).astype(np.float64)  # [n, P]
    inside = boxes_to_masks(regions.boxes, height, width).reshape(count, -1)  # [n, P]
    box_w = boxes[:, 2] - boxes[:, 0]
    box_h = boxes[:, 3] - boxes[:, 1]
    box_area = box_w * box_h
    object_count = objects.sum(axis=1)

    # colour pixels: object pixels close to the object's full contrast
    contrast = regions.contrast.reshape(-1)  # [P]
    peak = (objects * contrast).max(axis=1)  # [n]
    core = objects * (contrast[None] >= CORE_FRACTION * peak[:, None])  # [n, P]
    core_count = core.sum(axis=1)
    safe_core = np.maximum(core_count, 1.0)[:, None]
    rgb = image.reshape(-1, 3).astype(np.float64) / 255.0  # [P, 3]
    palette = np.eye(len(PALETTE_NAMES))[nearest_palette_index(regions.colours.colours)]  # [u, 8]
    pixel_palette = palette[regions.colours.inverse.reshape(-1)]  # [P, 8]

    ys, xs = np.mgrid[0:height, 0:width].reshape(2, -1) + 0.5  # pixel centres, [P] each
    safe_count = np.maximum(object_count, 1.0)
    centroid = np.stack([(objects @ xs / safe_count - boxes[:, 0]) / box_w,
                         (objects @ ys / safe_count - boxes[:, 1]) / box_h], axis=1)  # [n, 2]
    centroid[object_count == 0] = 0.0

    object_grid = regions.object_masks  # [n, H, W]
    profile_rows = (boxes[:, 1, None] + np.floor(np.array(PROFILE_ROWS)[None] * box_h[:, None])).astype(np.int64)
    row_pixels = object_grid[np.arange(count)[:, None], profile_rows]  # [n, 3, W]
    width_profile = row_pixels.sum(axis=2) / box_w[:, None]

    rel_x = (xs[None] - boxes[:, 0, None]) / box_w[:, None]  # [n, P]
    rel_y = (ys[None] - boxes[:, 1, None]) / box_h[:, None]
    corner_fill = []
    for low_y in (True, False):
        for low_x in (True, False):
            in_x = rel_x < CORNER_FRACTION if low_x else rel_x > 1.0 - CORNER_FRACTION
            in_y = rel_y < CORNER_FRACTION if low_y else rel_y > 1.0 - CORNER_FRACTION
            cell = inside & in_x & in_y  # [n, P]
            corner_fill.append((objects * cell).sum(axis=1) / np.maximum(cell.sum(axis=1), 1))

    columns = {
        'object_rgb': core @ rgb / safe_core,
        'box_rgb': inside @ rgb / box_area[:, None],
        'palette_histogram': core @ pixel_palette / safe_core,
        'fill_ratio': object_count / box_area,
        'aspect': box_w / (box_w + box_h),
        'box_area': box_area / (height * width),
        'object_area': object_count / (height * width),
        'box_coords': boxes / np.array([width, height, width, height], dtype=np.float64),
        'centroid': centroid,
        'width_profile': width_profile,
        'corner_fill': np.stack(corner_fill, axis=1),
        'is_component': regions.is_component.astype(np.float64),
    }
    features = np.zeros((count, feature_dim), dtype=np.float32)  # [n, D]
    for name, part in feature_slices().items():
        features[:, part] = np.asarray(columns[name]).reshape(count, -1)
    return features


def colour_name(object_rgb):
    """Nearest easy-VQA colour name of an RGB triple in [0, 1]."""
    distance = ((PALETTE_RGB / 255.0 - np.asarray(object_rgb)[None]) ** 2).sum(axis=1)
    return PALETTE_NAMES[int(distance.argmin())]


def shape_name(fill_ratio, top_width, corner_fill):
    """Shape of a component from its descriptor. Measured on all 5,000
    easy-VQA images: rectangles have mean corner fill >= 0.83 (circles
    <= 0.63, triangles <= 0.5); circles have fill >= 0.74 and width >= 0.6
    at 1/6 of their height, triangles (pointing up) fill <= 0.64 and
    width <= 0.38 there."""
    if corner_fill >= 0.75:
        return 'rectangle'
    if fill_ratio >= 0.69 and top_width >= 0.5:
        return 'circle'
    return 'triangle'


def classify_main_object(features):
    """(colour, shape) of the first (largest) component of an image, from
    its descriptor rows; None when the image has no component."""
    slices = feature_slices()
    if not features.shape[0] or features[0, slices['is_component']][0] != 1.0:
        return None
    row = features[0]
    shape = shape_name(float(row[slices['fill_ratio']][0]), float(row[slices['width_profile']][0]),
                       float(row[slices['corner_fill']].mean()))
    return colour_name(row[slices['object_rgb']]), shape
