"""A tiny Flickr30k Entities data root (Sentences, Annotations XML, split
files, detection TSV under the release names), prepared with the real tools.

Every image shows a person and a shirt; the detector's box that matches each
object carries a one-hot of the object's kind in its features, so a small
grounding model learns to pick it.
"""
import os

import numpy as np

from tiny_vqa import FEATURE_DIM, GLOVE_DIM, tsv_line

SPLITS = {'train': (100, 12), 'val': (200, 4), 'test': (300, 4)}
TSV_NAMES = {'train': ['train_flickr30k_resnet101_faster_rcnn_genome.tsv.1',
                       'train_flickr30k_resnet101_faster_rcnn_genome.tsv.2'],
             'val': ['val_flickr30k_resnet101_faster_rcnn_genome.tsv.3'],
             'test': ['test_flickr30k_resnet101_faster_rcnn_genome.tsv.3']}
SENTENCES = ['[/EN#1/people A man] wears [/EN#2/clothing a red shirt] .',
             '[/EN#1/people The person] is smiling .',
             '[/EN#2/clothing A shirt] on [/EN#1/people a man] .',
             '[/EN#1/people Someone] stands outside .',
             '[/EN#3/notvisual Nobody] sees [/EN#2/clothing the shirt] .']
WORDS = ['a', 'man', 'wears', 'red', 'shirt', 'the', 'person', 'is', 'smiling', 'on', 'someone', 'stands',
         'outside', 'nobody', 'sees']


def _annotation_xml(boxes):
    objects = ''.join('<object><name>%d</name><bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax>'
                      '</bndbox></object>' % ((chain,) + tuple(int(v) for v in box))
                      for chain, box in boxes.items())
    return ('<annotation><filename>x.jpg</filename><size><width>500</width><height>400</height><depth>3</depth>'
            '</size>%s<object><name>4</name><scene>1</scene></object></annotation>' % objects)


def _image(image_id, rng):
    """(tsv line, ground-truth boxes by chain) of one image."""
    num_boxes = int(rng.integers(10, 13))
    x1 = rng.integers(1, 200, num_boxes)
    y1 = rng.integers(1, 150, num_boxes)
    boxes = np.stack([x1, y1, x1 + rng.integers(30, 250, num_boxes), y1 + rng.integers(30, 200, num_boxes)], 1)
    features = rng.normal(0, 0.1, (num_boxes, FEATURE_DIM)).astype(np.float32) + 0.05
    person, shirt = rng.choice(num_boxes, 2, replace=False)
    features[person, 0] += 1.0
    features[shirt, 1] += 1.0
    line = tsv_line(image_id, 500, 400, boxes.astype(np.float32), features)
    return line, {1: boxes[person], 2: boxes[shirt]}


def write_raw(root, seed=0):
    """Write <root>/flickr30k in the release layout; returns that folder."""
    rng = np.random.default_rng(seed)
    flickr = os.path.join(str(root), 'flickr30k')
    entities = os.path.join(flickr, 'Flickr30kEntities')
    for folder in ('Sentences', 'Annotations'):
        os.makedirs(os.path.join(entities, folder), exist_ok=True)
    for split, (first_id, count) in SPLITS.items():
        lines = []
        ids = list(range(first_id, first_id + count))
        for image_id in ids:
            line, gt_boxes = _image(image_id, rng)
            lines.append(line)
            with open(os.path.join(entities, 'Sentences', '%d.txt' % image_id), 'w') as handle:
                handle.write('\n'.join(SENTENCES) + '\n')
            with open(os.path.join(entities, 'Annotations', '%d.xml' % image_id), 'w') as handle:
                handle.write(_annotation_xml(gt_boxes))
        with open(os.path.join(entities, '%s.txt' % split), 'w') as handle:
            handle.write('\n'.join(str(i) for i in ids) + '\n')
        names = TSV_NAMES[split]
        for part, name in enumerate(names):
            with open(os.path.join(flickr, name), 'w') as handle:
                handle.write(''.join(l + '\n' for l in lines[part::len(names)]))
    glove = os.path.join(str(root), 'glove', 'glove.6B.%dd.txt' % GLOVE_DIM)
    os.makedirs(os.path.dirname(glove), exist_ok=True)
    with open(glove, 'w') as handle:
        for word in WORDS:
            handle.write(word + ' ' + ' '.join('%.5f' % v for v in rng.normal(0, 1, GLOVE_DIM)) + '\n')
    return flickr


def prepare(root):
    from tools import adaptive_detection_features_converter as converter
    from tools import create_dictionary
    flickr = os.path.join(str(root), 'flickr30k')
    glove = os.path.join(str(root), 'glove', 'glove.6B.%dd.txt' % GLOVE_DIM)
    create_dictionary.main(['--task', 'flickr', '--dataroot', flickr, '--glove', glove])
    converter.main(['--task', 'flickr', '--dataroot', flickr, '--feature_dim', str(FEATURE_DIM)])
    return flickr
