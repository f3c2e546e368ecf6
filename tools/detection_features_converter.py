"""Convert the fixed-36-box bottom-up-attention TSV features into
`{split}36.hdf5` (image_features [num_images, 36, D], image_bb
[num_images, 36, 4], spatial_features [num_images, 36, 6]; no pos_boxes)
and `{split}36_imgid2idx.pkl` (FORMATS.md section 3).

Same streaming, validation and atomic outputs as
tools/adaptive_detection_features_converter.py; default inputs
`trainval_36/trainval_resnet101_faster_rcnn_genome_36.tsv` (train, val) and
`test2015_36/test2015_resnet101_faster_rcnn_genome_36.tsv` (test2015).

Usage: python3 tools/detection_features_converter.py [--dataroot data]
       [--split S ... [--tsv FILE ...]] [--feature_dim 2048] [--num_boxes 36]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import adaptive_detection_features_converter as converter  # noqa: E402
from utils import run_cli  # noqa: E402


def main(argv=None):
    return converter.main(argv, fixed=True)


if __name__ == '__main__':
    run_cli(main)
