"""Bad Flickr30k Entities files (docs/ROBUSTNESS.md): sentences, annotation
XML, split files and the converted features, read by `formats.flickr_files`,
the converter and `Flickr30kFeatureDataset`. Each case is answered by a
one-line `error: ...` naming the file/line and the fix, exit status 2 and no
output. The `@case` machinery is tests/helpers/bad_inputs.py."""
import os

import h5py
import numpy as np
import pytest

import tiny_flickr
from bad_inputs import case, cases_of, check_one_line_error, edit_text, flickr_main_cmd, rewrite_hdf5_dataset


def flickr_file(root, folder, name):
    return os.path.join(root, 'flickr30k', 'Flickr30kEntities', folder, name)


# ----------------------------------------------------------------- sentences, annotations, split files

@case('Annotations/100.xml: malformed XML', 'process_flickr.sh', data='flickr')
def flickr_malformed_xml(root):
    with open(os.path.join(root, 'flickr30k', 'Flickr30kEntities', 'Annotations', '100.xml'), 'w') as handle:
        handle.write('<annotation><object><name>1</name>')
    return flickr_main_cmd(root)


@case("Annotations/101.xml: <xmin> holds 'ten', expected an integer",
      'process_flickr.sh', data='flickr')
def flickr_xml_non_integer_coordinate(root):
    edit_text(flickr_file(root, 'Annotations', '101.xml'),
              lambda text: text[:text.index('<xmin>') + len('<xmin>')] + 'ten' + text[text.index('</xmin>'):])
    return flickr_main_cmd(root)


@case("Annotations/100.xml: <name> holds 'one', expected an integer",
      'process_flickr.sh', data='flickr')
def flickr_xml_non_integer_chain_id(root):
    edit_text(flickr_file(root, 'Annotations', '100.xml'),
              lambda text: text.replace('<name>1</name>', '<name>one</name>', 1))
    return flickr_main_cmd(root)


@case('Annotations/100.xml: box [', 'is inverted', 'process_flickr.sh', data='flickr')
def flickr_xml_inverted_box(root):
    edit_text(flickr_file(root, 'Annotations', '100.xml'), lambda text: text.replace('<xmin>', '<xmin>9999', 1))
    return flickr_main_cmd(root)


@case('Annotations/100.xml: <name>100000000000000000000</name> is not a chain id', 'process_flickr.sh',
      data='flickr')
def flickr_chain_id_overflowing_int64(root):
    edit_text(flickr_file(root, 'Annotations', '100.xml'),
              lambda text: text.replace('<name>1</name>', '<name>%d</name>' % 10 ** 20, 1))
    return flickr_main_cmd(root)


@case('Sentences/102.txt:3: "[" at column 29 is never closed', 'process_flickr.sh',
      data='flickr')
def flickr_unbalanced_brackets(root):
    def open_third_line(text):
        lines = text.split('\n')
        lines[2] = lines[2].replace('a man]', 'a man')
        return '\n'.join(lines)
    edit_text(flickr_file(root, 'Sentences', '102.txt'), open_third_line)
    return flickr_main_cmd(root)


@case('Sentences/103.txt:2: bad phrase annotation [/EN#one/people',
      'process_flickr.sh', data='flickr')
def flickr_non_integer_chain_id_in_sentence(root):
    edit_text(flickr_file(root, 'Sentences', '103.txt'),
              lambda text: text.replace('[/EN#1/people The person]', '[/EN#one/people The person]'))
    return flickr_main_cmd(root)


@case('Sentences/101.txt:4: not UTF-8 text', 'process_flickr.sh', data='flickr')
def flickr_sentence_bad_byte_on_line_4(root):
    path = flickr_file(root, 'Sentences', '101.txt')
    with open(path, 'rb') as handle:
        lines = handle.read().split(b'\n')
    lines[3] = b'\xe9' + lines[3]
    with open(path, 'wb') as handle:
        handle.write(b'\n'.join(lines))
    return flickr_main_cmd(root)


@case("Flickr30kEntities/val.txt:2: '2O1' is not an image id", 'process_flickr.sh',
      data='flickr')
def flickr_non_integer_split_id(root):
    with open(os.path.join(root, 'flickr30k', 'Flickr30kEntities', 'val.txt'), 'w') as handle:
        handle.write('200\n2O1\n')
    # the split files choose the images the converter keeps (the dictionary reads the _ids.pkl sets)
    return ['tools/adaptive_detection_features_converter.py', '--task', 'flickr', '--dataroot',
            os.path.join(root, 'flickr30k'), '--feature_dim', str(tiny_flickr.FEATURE_DIM)]


@case('split val has no images: its split file Flickr30kEntities/val.txt lists none', 'download_flickr.sh',
      data='flickr')
def flickr_empty_split_conversion(root):
    with open(flickr_file(root, '', 'val.txt'), 'w') as handle:
        handle.write('\n')
    return ['tools/adaptive_detection_features_converter.py', '--task', 'flickr', '--dataroot',
            os.path.join(root, 'flickr30k'), '--feature_dim', str(tiny_flickr.FEATURE_DIM), '--split', 'val']


# ----------------------------------------------------------------- converted features

@case('flickr30k/train.hdf5: the box rows disagree (image_features', 'image_bb', 'process_flickr.sh',
      data='flickr')
def flickr_fewer_feature_rows_than_boxes(root):
    path = os.path.join(root, 'flickr30k', 'train.hdf5')
    with h5py.File(path, 'r') as h5:
        features = h5['image_features'][()]
    rewrite_hdf5_dataset(path, 'image_features', features[:-3])
    return flickr_main_cmd(root)


@case('flickr30k/val.hdf5: image_features holds float16 values, expected float32', 'process_flickr.sh',
      data='flickr')
def flickr_float16_features(root):
    path = os.path.join(root, 'flickr30k', 'val.hdf5')
    with h5py.File(path, 'r') as h5:
        features = h5['image_features'][()]
    rewrite_hdf5_dataset(path, 'image_features', features.astype(np.float16))
    return flickr_main_cmd(root)


@pytest.mark.parametrize('name', cases_of(__name__))
def test_bad_input_gives_one_line_error_and_no_output(cli_results, name):
    check_one_line_error(cli_results, name)
