"""Streaming reader (and writer, for tests and demos) of the bottom-up-attention
region-feature TSV files (FORMATS.md section 2).

One image per line, tab-separated, no header:
    image_id, image_w, image_h, num_boxes, boxes, features
with `boxes` / `features` base64 of little-endian float32 [num_boxes, 4] /
[num_boxes, D]. Lines are read one at a time, so memory does not depend on
the file size. Every problem is a UserError naming `file:line`.
"""
import base64
import binascii
import csv
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from formats.features import boxes_far_outside  # noqa: E402
from utils import UserError, atomic_write, is_id, note, require_file  # noqa: E402

FIELDNAMES = ('image_id', 'image_w', 'image_h', 'num_boxes', 'boxes', 'features')
RELEASE_LINE_END = '\r\n'  # the released files end every row as Python's csv writer does
FEATURES_FIX = 'download the bottom-up-attention features with tools/download.sh'
LINE_FIX = ('the file is corrupt or truncated: re-download it (tools/download.sh), or check the --tsv, '
            '--feature_dim and --num_boxes options')


def raise_csv_field_size_limit():
    """A features field is ~100 kB-1 MB of base64: lift csv's 128 kB limit."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 10


def _decode_array(text, num_boxes, width, name, where, feature_flag=None):
    """float32 [num_boxes, width] from base64 `text`, checked for size and finiteness."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UserError('%s: the %s field is not valid base64' % (where, name)) from None
    expected = num_boxes * width * 4
    if len(raw) != expected:
        hint = ''
        if feature_flag and len(raw) % (num_boxes * 4) == 0:
            hint = ' (it holds %d values per box: pass %s %d)' % (len(raw) // (num_boxes * 4), feature_flag,
                                                                  len(raw) // (num_boxes * 4))
        raise UserError('%s: the %s field holds %d bytes, expected %d (num_boxes %d x %d float32)%s'
                        % (where, name, len(raw), expected, num_boxes, width, hint))
    array = np.frombuffer(raw, dtype='<f4').reshape(num_boxes, width).astype(np.float32)
    if not np.isfinite(array).all():
        bad_box = int(np.nonzero(~np.isfinite(array).all(axis=1))[0][0])
        raise UserError('%s: the %s field has NaN or infinite values (box %d)' % (where, name, bad_box))
    return array


def _parse_header(fields, where):
    """(image_id, image_w, image_h, num_boxes) of a split line."""
    if len(fields) != len(FIELDNAMES):
        raise UserError('%s: %d tab-separated fields, expected %d (%s)'
                        % (where, len(fields), len(FIELDNAMES), ', '.join(FIELDNAMES)))
    try:
        image_id = int(fields[0])
        image_w, image_h = float(fields[1]), float(fields[2])
        num_boxes = int(fields[3])
    except ValueError:
        raise UserError('%s: image_id, image_w, image_h, num_boxes must be numbers, got %.60r'
                        % (where, fields[:4])) from None
    if not (math.isfinite(image_w) and math.isfinite(image_h) and image_w > 0 and image_h > 0):
        raise UserError('%s: image %d has size %r x %r; width and height must be positive'
                        % (where, image_id, image_w, image_h))
    if not is_id(image_id):
        raise UserError('%s: image_id %d is outside 0 to 2**63-1' % (where, image_id))
    if num_boxes < 1:
        raise UserError('%s: image %d has num_boxes %d; at least one box is needed' % (where, image_id, num_boxes))
    return image_id, image_w, image_h, num_boxes


def _check_boxes(boxes, where, image_id, image_w, image_h):
    """Refuse inverted boxes (x2 < x1 or y2 < y1) and boxes more than
    formats.features.FAR_OUTSIDE times the image's width or height past an edge. Returns
    (zero-area boxes, boxes partly outside the image, their largest distance
    past an edge in pixels); both kinds are kept exactly as written."""
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    inverted = np.nonzero((widths < 0) | (heights < 0))[0]
    if inverted.size:
        box = int(inverted[0])
        raise UserError('%s: image %d box %d is inverted (x1, y1, x2, y2 = %s): x2 < x1 or y2 < y1'
                        % (where, image_id, box, boxes[box].tolist()))
    far, past_edge = boxes_far_outside(boxes, image_w, image_h)
    if far.size:
        box = int(far[0])
        raise UserError('%s: image %d box %d (x1, y1, x2, y2 = %s) lies outside the %g x %g image, as do %d more '
                        'of its %d boxes: more than a whole image width or height past an edge, which no detector '
                        'emits; the image size or the boxes are wrong'
                        % (where, image_id, box, boxes[box].tolist(), image_w, image_h, far.size - 1, len(boxes)))
    outside = past_edge > 0  # [n]
    return (int(((widths == 0) | (heights == 0)).sum()), int(outside.sum()),
            float(past_edge.max()) if outside.any() else 0.0)


def iter_tsv_records(paths, feature_dim=2048, decode=True, num_boxes=None, feature_flag='--feature_dim'):
    """Yield one dict per line of the TSV files `paths`, in order:
    image_id, image_w, image_h, num_boxes, boxes float32 [n, 4] and features
    float32 [n, D] (None when not decoded), zero_area_boxes, outside_boxes
    (those partly outside the image, kept as written), and `where`
    ('file:line'). After each file with boxes outside their image, one note
    says how many and how far.

    `decode`: True decodes and validates every record, False none (a cheap
    pass over image ids and box counts), or a container of the image ids to
    decode. `num_boxes`, when given, is the box count every line must have.
    An image appearing twice over all the files is an error.
    """
    raise_csv_field_size_limit()
    seen = {}
    for path in paths:
        require_file(path, FEATURES_FIX)
        outside_boxes = outside_images = 0
        farthest = 0.0
        with open(path, 'r', newline='', encoding='ascii', errors='replace') as handle:
            reader = csv.reader(handle, delimiter='\t', quoting=csv.QUOTE_NONE)
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except csv.Error as err:
                    raise UserError('%s:%d: unreadable line (%s); %s'
                                    % (path, reader.line_num, err, LINE_FIX)) from None
                if not fields:
                    continue
                where = '%s:%d' % (path, reader.line_num)
                try:
                    record = _record(fields, where, seen, feature_dim, decode, num_boxes, feature_flag)
                except UserError as err:
                    raise UserError('%s; %s' % (err, LINE_FIX)) from None
                outside_boxes += record['outside_boxes']
                outside_images += record['outside_boxes'] > 0
                farthest = max(farthest, record['farthest_outside'])
                yield record
        if outside_boxes:
            note('%s: %d boxes of %d images reach up to %.4g pixels outside their image; kept as written, as the '
                 'original uses them' % (path, outside_boxes, outside_images, farthest))


def _record(fields, where, seen, feature_dim, decode, fixed_boxes, feature_flag):
    image_id, image_w, image_h, num_boxes = _parse_header(fields, where)
    if image_id in seen:
        raise UserError('%s: image %d appears again (first at %s); each image must appear once'
                        % (where, image_id, seen[image_id]))
    seen[image_id] = where
    if fixed_boxes is not None and num_boxes != fixed_boxes:
        raise UserError('%s: image %d has %d boxes; the fixed-box features have %d per image'
                        % (where, image_id, num_boxes, fixed_boxes))
    record = {'image_id': image_id, 'image_w': image_w, 'image_h': image_h, 'num_boxes': num_boxes,
              'boxes': None, 'features': None, 'zero_area_boxes': 0, 'outside_boxes': 0, 'farthest_outside': 0.0,
              'where': where}
    if decode is True or (decode is not False and image_id in decode):
        record['boxes'] = _decode_array(fields[4], num_boxes, 4, 'boxes', where)  # [n, 4]
        record['features'] = _decode_array(fields[5], num_boxes, feature_dim, 'features', where,
                                           feature_flag)  # [n, D]
        (record['zero_area_boxes'], record['outside_boxes'],
         record['farthest_outside']) = _check_boxes(record['boxes'], where, image_id, image_w, image_h)
    return record


def encode_array(array):
    """A boxes or features field: base64 of the little-endian float32 bytes."""
    return base64.b64encode(np.ascontiguousarray(array, dtype='<f4').tobytes()).decode('ascii')


def encode_record(image_id, image_w, image_h, boxes, features):
    """One TSV line (without newline) in the release format; boxes [n, 4], features [n, D]."""
    boxes = np.ascontiguousarray(boxes, dtype='<f4')
    features = np.ascontiguousarray(features, dtype='<f4')
    if boxes.ndim != 2 or boxes.shape[1] != 4 or features.ndim != 2 or len(features) != len(boxes):
        raise ValueError('boxes must be [n, 4] and features [n, D], got %s and %s'
                         % (boxes.shape, features.shape))
    return '\t'.join([str(int(image_id)), _size_text(image_w), _size_text(image_h), str(len(boxes)),
                      encode_array(boxes), encode_array(features)])


def _size_text(value):
    """An image size as the release writes it: an integer, or a float when it has a fraction."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_tsv(path, records):
    """Write (image_id, image_w, image_h, boxes, features) tuples as a TSV file."""
    with atomic_write(path, 'w') as handle:
        for record in records:
            handle.write(encode_record(*record) + '\n')
