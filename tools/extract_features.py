"""Extract bottom-up-attention region features from your own images into the
TSV format of the released files (FORMATS.md section 2), so that
tools/adaptive_detection_features_converter.py and everything after it run
unchanged.

    python3 tools/extract_features.py --detector_weights resnet101_faster_rcnn_final.caffemodel \\
        --images photos/ more.jpg list.txt --output data/my_features.tsv

--images takes image files, folders (their image files, sorted by name) and
list files (.txt: one image per line, `path [image_id]`, paths relative to
the list). An image's id is the one its list line gives, else the last run of
digits in its file name (COCO_val2014_000000000042.jpg -> 42).

The detector is docs/FEATURE_EXTRACTION.md's (detection/detector.py); --detector_weights
takes the original .caffemodel or MILVLG's .pth. Defaults reproduce the
10-100 adaptive release (--min_boxes 10 --max_boxes 100 --conf_thresh 0.2);
--min_boxes 36 --max_boxes 36 the fixed-36 one (whose release used another
caffemodel: resnet101_faster_rcnn_final_iter_320000.caffemodel).

Rows are appended to OUTPUT.partial, one complete row at a time, and the file
is renamed to OUTPUT when every image is done: an interrupted run leaves
OUTPUT untouched and resumes from OUTPUT.partial; images already in OUTPUT are
skipped. An unreadable image is an error naming it (or, with
--skip_unreadable, a warning), never a half-written row.
"""
import argparse
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detection import (
    detector,  # noqa: E402
    regions,  # noqa: E402
    weight_files,  # noqa: E402
)
from runs import runtime  # noqa: E402
from runs.flags import FlagParser  # noqa: E402
from runs.progress import Progress  # noqa: E402
from tools.features_tsv import RELEASE_LINE_END, encode_record, iter_tsv_records  # noqa: E402
from utils import UserError, run_cli  # noqa: E402

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.jp2', '.pgm', '.ppm')
LIST_EXTENSIONS = ('.txt', '.lst', '.list')
PARTIAL_SUFFIX = '.partial'
TAIL_BLOCK = 2 ** 20


def image_id_from_name(path):
    """The last run of digits in the file name (without extension), or None."""
    digits = re.findall(r'\d+', os.path.splitext(os.path.basename(path))[0])
    return int(digits[-1]) if digits else None


def _list_entries(list_path):
    """[(image path, image id or None)] of a list file."""
    base = os.path.dirname(os.path.abspath(list_path))
    entries = []
    with open(list_path, 'r', encoding='utf-8') as handle:
        for line_no, line in enumerate(handle, 1):
            fields = line.strip().rsplit(None, 1) if line.strip() and not line.lstrip().startswith('#') else []
            if not fields:
                continue
            if len(fields) == 2 and not fields[1].lstrip('-').isdigit():  # a path with a space, no id
                fields = [line.strip()]
            if len(fields) == 2 and int(fields[1]) < 0:
                raise UserError('%s:%d: image id %s is negative; ids are integers >= 0'
                                % (list_path, line_no, fields[1]))
            entries.append((os.path.join(base, fields[0]), int(fields[1]) if len(fields) == 2 else None))
    return entries


def collect_images(inputs):
    """[(image path, image id)] in input order; an unknown input, a folder
    without images, a name without an id or an id used twice is a UserError."""
    entries = []
    for item in inputs:
        if os.path.isdir(item):
            names = sorted(name for name in os.listdir(item) if name.lower().endswith(IMAGE_EXTENSIONS))
            if not names:
                raise UserError('--images %s: the folder holds no image (%s)' % (item, ', '.join(IMAGE_EXTENSIONS)))
            entries += [(os.path.join(item, name), None) for name in names]
        elif item.lower().endswith(LIST_EXTENSIONS) and os.path.isfile(item):
            entries += _list_entries(item)
        elif os.path.isfile(item):
            entries.append((item, None))
        else:
            raise UserError('--images %s: no such file or folder' % item)
    images, owner = [], {}
    for path, image_id in entries:
        image_id = image_id_from_name(path) if image_id is None else image_id
        if image_id is None:
            raise UserError('%s: no image id in its name; name it with its id (e.g. 42.jpg) or list it in a .txt '
                            'file of "path image_id" lines' % path)
        if image_id in owner:
            raise UserError('image id %d is used by both %s and %s; ids must be unique'
                            % (image_id, owner[image_id], path))
        owner[image_id] = path
        images.append((path, image_id))
    return images


# ----------------------------------------------------------------- output and resuming

def drop_incomplete_row(path):
    """Truncate `path` after its last line end (an interrupted write)."""
    with open(path, 'r+b') as handle:
        end = handle.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            start = max(0, position - TAIL_BLOCK)
            handle.seek(start)
            block = handle.read(position - start)
            newline = block.rfind(b'\n')
            if newline >= 0:
                handle.truncate(start + newline + 1)
                return
            position = start
        handle.truncate(0)


def finished_ids(output):
    """Image ids already extracted: the rows of OUTPUT.partial (an
    interrupted run; an incomplete last row is dropped), else of OUTPUT."""
    partial = output + PARTIAL_SUFFIX
    if os.path.exists(partial):
        drop_incomplete_row(partial)
        return {record['image_id'] for record in iter_tsv_records([partial], decode=False)}
    if os.path.exists(output):
        return {record['image_id'] for record in iter_tsv_records([output], decode=False)}
    return set()


def start_partial(output):
    """OUTPUT.partial, continued, else started as a copy of OUTPUT (which is
    never written in place), else empty."""
    partial = output + PARTIAL_SUFFIX
    if not os.path.exists(partial):
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        if os.path.exists(output):
            shutil.copyfile(output, partial)
        else:
            open(partial, 'wb').close()
    return partial


def extract_all(model, pending, partial, args):
    """Append one row per image of `pending` to `partial`; returns (rows written, images skipped)."""
    written, skipped = 0, 0
    with open(partial, 'ab') as handle:
        for path, image_id in Progress(pending, 'extracting', unit='images'):
            try:
                image = detector.load_image(path, args.apply_exif_orientation)
                regions = detector.extract_regions(model, image, args.conf_thresh, args.min_boxes, args.max_boxes,
                                                   name=path)
            except detector.ImageError as err:
                if not args.skip_unreadable:
                    raise UserError('%s; the rows written so far are kept in %s: fix or remove the image (or pass '
                                    '--skip_unreadable) and run the same command again to resume'
                                    % (err, partial)) from None
                print('warning: skipped %s' % err, file=sys.stderr)
                skipped += 1
                continue
            row = encode_record(image_id, regions.image_w, regions.image_h, regions.boxes, regions.features)
            handle.write((row + RELEASE_LINE_END).encode('ascii'))  # one complete row per write
            handle.flush()
            written += 1
        os.fsync(handle.fileno())
    return written, skipped


# ----------------------------------------------------------------- command line

def build_parser():
    parser = FlagParser(description=__doc__.split('\n\n')[0],
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--images', nargs='+', required=True, help='image files, folders and .txt list files')
    parser.add_argument('--output', required=True, help='the TSV file to write (or to complete)')
    parser.add_argument('--detector_weights', required=True,
                        help='resnet101_faster_rcnn_final.caffemodel or bua-caffe-frcn-r101-k10-100.pth')
    parser.add_argument('--min_boxes', type=int, default=regions.MIN_BOXES, help='default 10 (fixed variant: 36)')
    parser.add_argument('--max_boxes', type=int, default=regions.MAX_BOXES, help='default 100 (fixed variant: 36)')
    parser.add_argument('--conf_thresh', type=float, default=regions.CONF_THRESH, help='default 0.2')
    parser.add_argument('--device', default='auto', help='auto (a GPU when present), cpu, cuda or cuda:N')
    parser.add_argument('--skip_unreadable', action='store_true',
                        help='warn about an image that cannot be decoded and go on (default: stop with an error)')
    parser.add_argument('--apply_exif_orientation', action='store_true',
                        help='rotate images by their EXIF orientation tag (the 2017 extraction most likely did not)')
    return parser


def check_args(args):
    if args.min_boxes < 1 or args.max_boxes < args.min_boxes:
        raise UserError('--min_boxes %d --max_boxes %d: need 1 <= min_boxes <= max_boxes'
                        % (args.min_boxes, args.max_boxes))
    if not 0.0 <= args.conf_thresh <= 1.0:
        raise UserError('--conf_thresh %g: must lie in [0, 1]' % args.conf_thresh)
    if os.path.isdir(args.output):
        raise UserError('--output %s is a folder; give the TSV file name' % args.output)


def main(argv=None, log=print):
    args = build_parser().parse_args(argv)
    check_args(args)
    images = collect_images(args.images)
    done = finished_ids(args.output)
    pending = [(path, image_id) for path, image_id in images if image_id not in done]
    if not pending and not os.path.exists(args.output + PARTIAL_SUFFIX):
        log('all %d images are already in %s' % (len(images), args.output))
        return args.output
    model = None
    if pending:
        model = weight_files.load_detector(args.detector_weights, runtime.resolve_device(args.device))
    partial = start_partial(args.output)
    written, skipped = extract_all(model, pending, partial, args)
    os.replace(partial, args.output)
    log('wrote %s: %d new rows, %d images already there%s' % (
        args.output, written, len(images) - len(pending),
        ', %d unreadable images skipped' % skipped if skipped else ''))
    return args.output


if __name__ == '__main__':
    run_cli(main)
