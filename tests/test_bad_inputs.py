"""Bad inputs (docs/ROBUSTNESS.md): every bad input of the table is answered
by a one-line `error: ...` naming the file/line/key and the fix, exit status 2
and no output, or by a documented skip with a count.

The command-line rows run the real scripts as `__main__` (`runpy`), all in
ONE child process so that torch is imported once; one row is also run as a
plain `python3 <script>` subprocess to show that both agree.
"""
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tiny_flickr
import torch
from robust_helpers import RunsCode, converter_cmd, parser_built_by, read_json, snapshot
from test_data_helpers import (
    EVAL_FLAGS,
    FEATURE_DIM,
    GLOVE_DIM,
    TRAIN_FLAGS,
    image_record,
    prepared_root,
)

import utils
from dataset import VisualGenomeFeatureDataset, VQAFeatureDataset
from formats.dictionary import Dictionary
from tools import adaptive_detection_features_converter as converter
from tools.features_tsv import encode_array
from utils import UserError

REPO = Path(__file__).resolve().parents[1]
FLICKR_FLAGS = ['--task', 'flickr', '--emb_dim', str(tiny_flickr.GLOVE_DIM), '--num_hid', '8', '--batch_size', '4',
                '--workers', '0', '--device', 'cpu', '--epochs', '1']

# Runs [(script, argv, options), ...] given as JSON in argv[1], as `python3 script argv...` would, and
# writes [{returncode, stdout, stderr}] to argv[2]. An uncaught exception prints its traceback (code 1).
# options: "env" (variables set for that job only), "file_size_limit" (bytes a file may grow to, as
# `ulimit -f`: a write beyond fails with EFBIG, a real failing write through every layer).
BATCH_RUNNER = r'''
import contextlib, io, json, os, resource, runpy, signal, sys, traceback

@contextlib.contextmanager
def job_options(options):
    saved_env = {name: os.environ.get(name) for name in options.get('env', {})}
    os.environ.update(options.get('env', {}))
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    if 'file_size_limit' in options:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (options['file_size_limit'], limits[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

jobs_path, results_path = sys.argv[1:3]
jobs = json.load(open(jobs_path))
results = []
for script, argv, options in jobs:
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [script] + argv
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), job_options(options):
        try:
            runpy.run_path(script, run_name='__main__')
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append({'returncode': code, 'stdout': out.getvalue(), 'stderr': err.getvalue()})
json.dump(results, open(results_path, 'w'))
'''


def write_json(path, data):
    with open(path, 'w') as handle:
        json.dump(data, handle)


def edit_json(path, edit):
    data = read_json(path)
    edit(data)
    write_json(path, data)


def edit_text(path, edit):
    """Replace a text file's content by `edit(content)`."""
    with open(path) as handle:
        text = handle.read()
    with open(path, 'w') as handle:
        handle.write(edit(text))


def flickr_file(root, folder, name):
    return os.path.join(root, 'flickr30k', 'Flickr30kEntities', folder, name)


def val_questions(root):
    return os.path.join(root, 'v2_OpenEnded_mscoco_val2014_questions.json')


def val_annotations(root):
    return os.path.join(root, 'v2_mscoco_val2014_annotations.json')


def rewrite_tsv_line(root, image_id, edit):
    """Replace the TSV line of `image_id` (under trainval/) by `edit(fields)`
    (a list of fields or a whole line); returns 'file:line' of it."""
    folder = os.path.join(root, 'trainval')
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        with open(path) as handle:
            lines = handle.read().split('\n')
        for index, line in enumerate(lines):
            if line.split('\t', 1)[0] == str(image_id):
                new = edit(line.split('\t'))
                lines[index] = new if isinstance(new, str) else '\t'.join(new)
                with open(path, 'w') as handle:
                    handle.write('\n'.join(lines))
                return '%s:%d' % (name, index + 1)
    raise KeyError(image_id)


# ----------------------------------------------------------------- command-line rows
#
# Each case corrupts a private copy of a prepared root and returns the command;
# the expected error must name `fragments` (file, key and fix).

CASES = {}


def case(*fragments, data='vqa'):
    """Register the decorated builder as the case of its name."""
    def register(build):
        CASES[build.__name__] = (build, fragments, data)
        return build
    return register


def main_cmd(root):
    return ['main.py', '--dataroot', root, '--output', os.path.join(root, 'out'), '--epochs', '1'] + TRAIN_FLAGS


def evaluate_cmd(root, checkpoint_folder, *extra):
    return ['evaluate.py', '--dataroot', root, '--input', checkpoint_folder, '--epoch', '0'] + EVAL_FLAGS + list(extra)


def flickr_main_cmd(root):
    return ['main.py', '--dataroot', root, '--output', os.path.join(root, 'out')] + FLICKR_FLAGS


@case('karpathy_train_resnet101_faster_rcnn_genome.tsv.0:2', 'features field', 're-download')
def tsv_truncated_line(root):
    rewrite_tsv_line(root, 5, lambda fields: '\t'.join(fields)[:-7])  # an interrupted download
    return converter_cmd(root)


@case('karpathy_train_resnet101_faster_rcnn_genome.tsv.0:2', 'boxes field is not valid base64',
      're-download')
def tsv_base64_garbage(root):
    rewrite_tsv_line(root, 5, lambda fields: fields[:4] + ['@@@@not base64@@@@'] + fields[5:])
    return converter_cmd(root)


@case('tsv.0:2', 'boxes field holds 16 bytes, expected 32 (num_boxes 2', 're-download')
def tsv_box_count_disagrees(root):
    rewrite_tsv_line(root, 5, lambda fields: fields[:3] + ['2'] + fields[4:])
    return converter_cmd(root)


@case('tsv.0:2', 'features field has NaN or infinite values (box 0)', 're-download')
def tsv_nan_features(root):
    def nan_features(fields):
        features = image_record(5, 1)[4].copy()
        features[0, 3] = np.nan
        return fields[:5] + [encode_array(features)]
    rewrite_tsv_line(root, 5, nan_features)
    return converter_cmd(root)


@case('tsv.0:2', 'boxes field has NaN or infinite values (box 0)', 're-download')
def tsv_inf_boxes(root):
    def inf_boxes(fields):
        boxes = image_record(5, 1)[3].copy()
        boxes[0, 2] = np.inf
        return fields[:4] + [encode_array(boxes)] + fields[5:]
    rewrite_tsv_line(root, 5, inf_boxes)
    return converter_cmd(root)


@case('tsv.0:2', 'image 5 box 0 is inverted', 're-download')
def tsv_negative_area_box(root):
    def inverted(fields):
        boxes = image_record(5, 1)[3].copy()
        boxes[0, [1, 3]] = boxes[0, [3, 1]]
        return fields[:4] + [encode_array(boxes)] + fields[5:]
    rewrite_tsv_line(root, 5, inverted)
    return converter_cmd(root)


@case('tsv.0:2', 'image 5 has size 0.0 x', 'must be positive', 're-download')
def tsv_zero_image_size(root):
    rewrite_tsv_line(root, 5, lambda fields: fields[:1] + ['0'] + fields[2:])
    return converter_cmd(root)


@case('tsv.0:2', 'image 5 has num_boxes 0', 're-download')
def tsv_no_boxes(root):
    rewrite_tsv_line(root, 5, lambda fields: fields[:3] + ['0', '', ''])
    return converter_cmd(root)


@case('karpathy_test_resnet101_faster_rcnn_genome.tsv:1',
      'features field holds 96 bytes, expected 128', 'pass --feature_dim 6')
def tsv_wrong_feature_dim(root):
    return converter_cmd(root)[:-1] + ['8']


@case('v2_OpenEnded_mscoco_val2014_questions.json is not valid JSON (line 1',
      'tools/download.sh')
def questions_truncated_json(root):
    edit_text(val_questions(root), lambda text: text[:len(text) // 2])
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('v2_OpenEnded_mscoco_val2014_questions.json is not UTF-8 text (line 1, byte 1',
      'tools/download.sh')
def questions_not_utf8(root):
    with open(val_questions(root), 'wb') as handle:
        handle.write(b'\xff\xfe{"questions": []}')
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('val2014_questions.json: questions[1] needs an int "question_id", an int "image_id"',
      'tools/download.sh')
def question_missing_key(root):
    edit_json(val_questions(root), lambda data: data['questions'][1].pop('image_id'))
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('val2014_questions.json: question_id 201 appears twice (questions[0] and questions[2])',
      'tools/download.sh')
def question_duplicate_id(root):
    edit_json(val_questions(root), lambda data: data['questions'][2].update(question_id=201))
    return ['tools/create_dictionary.py', '--dataroot', root]


@case("val2014_questions.json: questions[1] (question_id 202) has no words (' ? ')",
      'tools/download.sh')
def question_empty(root):
    edit_json(val_questions(root), lambda data: data['questions'][1].update(question=' ? '))
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('val2014_annotations.json: annotations[2] (question 203) needs',
      'multiple_choice_answer', 'tools/download.sh')
def annotation_missing_key(root):
    edit_json(val_annotations(root), lambda data: data['annotations'][2].pop('multiple_choice_answer'))
    return ['tools/compute_softscore.py', '--dataroot', root, '--min_occurrence', '1']


@case('val2014_annotations.json: annotations[0] (question 201) has 9 human answers',
      'VQA annotations have 10', 'tools/download.sh')
def annotation_nine_answers(root):
    edit_json(val_annotations(root), lambda data: data['annotations'][0]['answers'].pop())
    return ['tools/compute_softscore.py', '--dataroot', root, '--min_occurrence', '1']


@case('val2014_annotations.json: question 202 is annotated twice', 'tools/download.sh')
def annotation_duplicate_id(root):
    edit_json(val_annotations(root), lambda data: data['annotations'].append(dict(data['annotations'][1])))
    return ['tools/compute_softscore.py', '--dataroot', root, '--min_occurrence', '1']


@case('val2014_questions.json: question 299 has no answer target in',
      'val_target.pkl', 'compute_softscore.py')
def question_without_annotation(root):
    edit_json(val_questions(root), lambda data: data['questions'].append(
        {'image_id': 5, 'question': 'Why?', 'question_id': 299}))
    return main_cmd(root)


@case('val_target.pkl: annotation of question 202 (and 0 more) has no question in',
      'compute_softscore.py')
def annotation_without_question(root):
    edit_json(val_questions(root), lambda data: data['questions'].pop(1))
    return main_cmd(root)


@case('question 201 is on image 5 but its target in',
      'says image 4', 'compute_softscore.py')
def question_and_annotation_disagree_on_image(root):
    edit_json(val_questions(root), lambda data: data['questions'][0].update(image_id=5))
    return main_cmd(root)


def add_a_question_word(root):
    """A new word: a dictionary written before GloVe is read would differ from the old one."""
    edit_json(val_questions(root), lambda data: data['questions'][2].update(question='What color is the zebra?'))


@case('glove.6B.300d.txt:3: 4 values where line 1 has 5', 'download GloVe')
def glove_line_of_wrong_width(root):
    add_a_question_word(root)
    path = os.path.join(root, 'glove', 'glove.6B.300d.txt')
    with open(path) as handle:
        lines = handle.read().split('\n')
    lines[2] = lines[2].rsplit(' ', 1)[0]
    with open(path, 'w') as handle:
        handle.write('\n'.join(lines))
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('glove.6B.300d.txt:2: NaN or infinite vector value', 'download GloVe')
def glove_nan_value(root):
    add_a_question_word(root)
    path = os.path.join(root, 'glove', 'glove.6B.300d.txt')
    with open(path) as handle:
        lines = handle.read().split('\n')
    lines[1] = ' '.join(lines[1].split(' ')[:2] + ['nan'] + lines[1].split(' ')[3:])
    with open(path, 'w') as handle:
        handle.write('\n'.join(lines))
    return ['tools/create_dictionary.py', '--dataroot', root]


def with_tfidf_table(command):
    """The command with --op c: the tf-idf table reads VG questions, COCO captions and GloVe text."""
    command[command.index('--op') + 1] = 'c'
    return command


@case('question_answers.json', 'tools/download.sh', 'leave vg out of --tfidf_sources', '--tfidf_sources vqa,cap')
def tfidf_without_visual_genome(root):  # the hint named only the download
    os.remove(os.path.join(root, 'question_answers.json'))
    return with_tfidf_table(main_cmd(root))


@case('glove.6B.%dd.txt' % GLOVE_DIM, 'tools/download.sh', 'train without the table: --tfidf false')
def tfidf_without_glove_text(root):  # the hint named --glove kumo, a flag main.py does not have
    return with_tfidf_table(main_cmd(root))


def test_main_py_hints_name_only_flags_it_has(cli_results, monkeypatch):
    import main
    parser = parser_built_by(monkeypatch, lambda: main.parse_args([]))
    flags = {option for action in parser._actions for option in action.option_strings}
    for name in ('tfidf_without_visual_genome', 'tfidf_without_glove_text'):
        named = {word.rstrip(',;:)') for word in cli_results[name][0]['stderr'].split() if word.startswith('--')}
        assert named and named <= flags, (name, named - flags)


@case('glove6b_init_5d.npy is not a readable .npy matrix', 'tools/create_dictionary.py')
def glove_init_truncated(root):
    path = os.path.join(root, 'glove6b_init_%dd.npy' % GLOVE_DIM)
    with open(path, 'rb') as handle:
        head = handle.read(150)
    with open(path, 'wb') as handle:
        handle.write(head)
    return main_cmd(root)


@case('glove6b_init_5d.npy: row 3 (word 3 of dictionary.pkl) holds NaN or infinite values',
      'tools/create_dictionary.py')
def glove_init_nan_row(root):
    path = os.path.join(root, 'glove6b_init_%dd.npy' % GLOVE_DIM)
    matrix = np.load(path)
    matrix[3, 1] = np.nan
    np.save(path, matrix)
    return main_cmd(root)


@case('glove6b_init_5d.npy holds a (', ', 5) embedding matrix but the dictionary has', 'tools/create_dictionary.py')
def glove_init_of_another_dictionary(root):
    path = os.path.join(root, 'glove6b_init_%dd.npy' % GLOVE_DIM)
    np.save(path, np.load(path)[:-1])
    return main_cmd(root)


@case('train.hdf5: dataset(s) pos_boxes missing', 'adaptive_detection_features_converter.py')
def hdf5_missing_dataset(root):
    with h5py.File(os.path.join(root, 'train.hdf5'), 'a') as h5:
        del h5['pos_boxes']
    return main_cmd(root)


@case("train.hdf5 holds the features of split 'val', not 'train'",
      'adaptive_detection_features_converter.py')
def hdf5_of_another_split(root):
    shutil.copy(os.path.join(root, 'val.hdf5'), os.path.join(root, 'train.hdf5'))
    return main_cmd(root)


@case('train.hdf5: cannot read HDF5 file', 'adaptive_detection_features_converter.py')
def hdf5_truncated(root):
    path = os.path.join(root, 'train.hdf5')
    with open(path, 'rb') as handle:
        head = handle.read(2048)
    with open(path, 'wb') as handle:
        handle.write(head)
    return main_cmd(root)


@case('train.hdf5 and', 'train_imgid2idx.pkl come from different conversions',
      'adaptive_detection_features_converter.py')
def hdf5_and_imgid2idx_of_different_runs(root):
    path = os.path.join(root, 'train_imgid2idx.pkl')
    mapping = utils.safe_pickle_load(path)
    images = sorted(mapping, key=mapping.get)
    with open(path, 'wb') as handle:  # same images, rows in another order: silently wrong features otherwise
        pickle.dump({image_id: row for row, image_id in enumerate(reversed(images))}, handle, protocol=2)
    return main_cmd(root)


@case('val.hdf5 holds features of width %d' % (FEATURE_DIM - 2), 'train.hdf5 holds %d' % FEATURE_DIM,
      'tools/process.sh')
def val_features_of_another_width(root):
    with h5py.File(os.path.join(root, 'val.hdf5'), 'a') as h5:  # found at validation, after an epoch, before
        features = h5['image_features'][()]
        del h5['image_features']
        h5['image_features'] = features[:, :FEATURE_DIM - 2]
    return main_cmd(root)


@case('train_imgid2idx.pkl: unsafe or unreadable pickle', 'refusing to load',
      'adaptive_detection_features_converter.py')
def pickle_that_carries_code(root):
    with open(os.path.join(root, 'train_imgid2idx.pkl'), 'wb') as handle:
        pickle.dump({1: RunsCode(os.path.join(root, 'PWNED'))}, handle)
    return main_cmd(root)


@case('model_epoch0.pth: cannot read checkpoint', 'truncated', 're-download or re-train')
def checkpoint_truncated(root):
    path = os.path.join(root, 'model', 'model_epoch0.pth')
    with open(path, 'rb') as handle:
        head = handle.read(4000)
    with open(path, 'wb') as handle:
        handle.write(head)
    return evaluate_cmd(root, os.path.join(root, 'model'))


@case('model_epoch0.pth does not fit this model',
      'q_emb.rnn.weight_hh_l0: checkpoint (24, 8), model (36, 12)', 'pass the --num_hid, --gamma')
def checkpoint_of_another_configuration(root):  # as the original saved it: no "config", the flags decide
    path = os.path.join(root, 'model', 'model_epoch0.pth')
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint['config']
    torch.save(checkpoint, path)
    command = evaluate_cmd(root, os.path.join(root, 'model'))
    command[command.index('--num_hid') + 1] = '12'
    return command


@case('model_epoch0.pth cannot be loaded with --num_hid 12 (it was trained with --num_hid 8)', 'drop the flag')
def flag_contradicting_the_saved_settings(root):
    command = evaluate_cmd(root, os.path.join(root, 'model'))
    command[command.index('--num_hid') + 1] = '12'
    return command


@case('model_epoch0.pth: refused: it carries the Python global posix.system', 'which a weights-only load refuses',
      're-download or re-train')
def checkpoint_that_carries_code(root):
    torch.save({'epoch': 0, 'model_state': RunsCode(os.path.join(root, 'PWNED'))},
               os.path.join(root, 'model', 'model_epoch0.pth'))
    return evaluate_cmd(root, os.path.join(root, 'model'))


@case('model_epoch0.pth: not a BAN checkpoint (no "model_state" key)')
def checkpoint_of_something_else(root):
    torch.save({'state_dict': {'w': torch.zeros(2)}}, os.path.join(root, 'model', 'model_epoch0.pth'))
    return evaluate_cmd(root, os.path.join(root, 'model'))


@case('model_epoch0.pth: "epoch" is None', 'model_last.pth')
def resume_from_checkpoint_without_epoch(root):
    path = os.path.join(root, 'model', 'model_epoch0.pth')
    checkpoint = torch.load(path, weights_only=True)
    torch.save({'model_state': checkpoint['model_state']}, path)
    return main_cmd(root) + ['--input', path]


def edited_checkpoint(root, **fields):
    """<root>/model/model_last.pth (epoch 0, saved by main.py) with `fields` set."""
    path = os.path.join(root, 'model', 'model_last.pth')
    checkpoint = torch.load(path, weights_only=True)
    checkpoint.update(fields)
    torch.save(checkpoint, path)
    return path


def mid_epoch_checkpoint(root, step):
    """model_last.pth made into a checkpoint saved at `step` of epoch 1 (batches of 2)."""
    return edited_checkpoint(root, resume_step=step, partial_sums=dict(loss=1.0, norm=1.0, steps=step, score=0.0,
                                                                        samples=2 * step))


def resume_cmd(root, checkpoint):
    """main.py resuming `checkpoint` (of epoch 1) to the end of epoch 1."""
    command = main_cmd(root) + ['--input', checkpoint]
    command[command.index('--epochs') + 1] = '2'
    return command


@case('model_last.pth: "best_eval_score" is \'high\', not a number', 'resume from another checkpoint')
def checkpoint_field_of_wrong_type(root):  # was a TypeError at the first validation
    return resume_cmd(root, edited_checkpoint(root, best_eval_score='high'))


@case('model_last.pth: "resume_step" 9999 is past the 2 batches of an epoch', 'model_last.pth')
def resume_step_past_the_epoch(root):  # was an epoch logged with no step
    return resume_cmd(root, mid_epoch_checkpoint(root, 9999))


@case('model_last.pth was saved at step 1 of an epoch with batch_size 2, but this run has 4',
      'resume with the same --batch_size')
def resume_with_another_batch_size(root):  # was an epoch of 6 of 7 samples
    command = resume_cmd(root, mid_epoch_checkpoint(root, 1))
    command[command.index('--batch_size') + 1] = '4'
    return command


@case('model_last.pth: "partial_sums" counts 3 steps but "resume_step" is 1: the checkpoint is damaged')
def resume_step_and_partial_sums_disagree(root):
    mid_epoch_checkpoint(root, 1)
    return resume_cmd(root, edited_checkpoint(root, partial_sums=dict(loss=1.0, norm=1.0, steps=3, score=0.0,
                                                                      samples=6)))


@case('model_last.pth stops at step 1 of an epoch but does not record the batch size and data it was saved with')
def mid_epoch_checkpoint_without_run_record(root):  # written before checkpoints had one
    mid_epoch_checkpoint(root, 1)
    path = edited_checkpoint(root)
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint['run']
    torch.save(checkpoint, path)
    return resume_cmd(root, path)




@case('holds another run (log.jsonl, log.txt, model_epoch0.pth, model_last.pth)',
      'pass --overwrite to replace it, --input', 'model_last.pth to resume it, or another --output')
def output_holds_another_run(root):  # was overwritten, its log appended to
    command = main_cmd(root)
    command[command.index('--output') + 1] = os.path.join(root, 'model')
    return command


@case('dictionary.pkl is a file, but main.py writes its checkpoints and logs into a folder')
def output_is_a_file(root):
    command = main_cmd(root)
    command[command.index('--output') + 1] = os.path.join(root, 'dictionary.pkl')
    return command


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


@case("Flickr30kEntities/val.txt:2: '2O1' is not an image id", 'process_flickr.sh',
      data='flickr')
def flickr_non_integer_split_id(root):
    with open(os.path.join(root, 'flickr30k', 'Flickr30kEntities', 'val.txt'), 'w') as handle:
        handle.write('200\n2O1\n')
    # the split files choose the images the converter keeps (the dictionary reads the _ids.pkl sets)
    return ['tools/adaptive_detection_features_converter.py', '--task', 'flickr', '--dataroot',
            os.path.join(root, 'flickr30k'), '--feature_dim', str(tiny_flickr.FEATURE_DIM)]


@case('--feature_dim must be positive, got 0')
def converter_feature_dim_zero(root):
    return converter_cmd(root)[:-1] + ['0']


# -- impossible inputs: accepted without a word before, now refused naming file, key and count

def rewrite_pickle(path, edit):
    """Replace a cache pickle's content by `edit(content)` (edited in place when it returns None)."""
    data = utils.safe_pickle_load(path)
    edited = edit(data)
    with open(path, 'wb') as handle:
        pickle.dump(data if edited is None else edited, handle, protocol=2)


def rewrite_hdf5_dataset(path, name, values):
    with h5py.File(path, 'a') as h5:
        del h5[name]
        h5[name] = values


@case('dictionary.pkl: the words', 'share index 0 in word2idx', 'tools/create_dictionary.py')
def dictionary_words_share_an_index(root):
    rewrite_pickle(os.path.join(root, 'dictionary.pkl'), lambda data: data[0].update({data[1][1]: 0}))
    return main_cmd(root)


@case('train_target.pkl: question 101 has scores [50.0]', 'soft scores lie in [0, 1]', 'compute_softscore.py')
def target_score_out_of_range(root):
    def score_50(targets):
        targets[0]['labels'], targets[0]['scores'] = targets[0]['labels'][:1], [50.0]
    rewrite_pickle(os.path.join(root, 'cache', 'train_target.pkl'), score_50)
    return main_cmd(root)


@case("train_target.pkl: question 101 has labels ['0']", 'not distinct labels', 'compute_softscore.py')
def target_label_of_another_type(root):
    def string_label(targets):
        targets[0]['labels'], targets[0]['scores'] = ['0'], [1.0]
    rewrite_pickle(os.path.join(root, 'cache', 'train_target.pkl'), string_label)
    return main_cmd(root)


@case("train_imgid2idx.pkl: maps '1' to 0", 'must be integers', 'adaptive_detection_features_converter.py')
def imgid2idx_with_string_ids(root):
    rewrite_pickle(os.path.join(root, 'train_imgid2idx.pkl'),
                   lambda mapping: {str(image_id): row for image_id, row in mapping.items()})
    return main_cmd(root)


@case('trainval_ans2label.pkl: maps', 'expected an answer (str) to a label (int)', 'compute_softscore.py')
def ans2label_with_float_labels(root):
    rewrite_pickle(os.path.join(root, 'cache', 'trainval_ans2label.pkl'),
                   lambda ans2label: {answer: float(label) for answer, label in ans2label.items()})
    return main_cmd(root)


@case('train.hdf5: image_features holds float64 values, expected float32',
      'adaptive_detection_features_converter.py')
def hdf5_float64_features(root):
    path = os.path.join(root, 'train.hdf5')
    with h5py.File(path, 'r') as h5:
        features = h5['image_features'][()]
    rewrite_hdf5_dataset(path, 'image_features', features.astype(np.float64))
    return main_cmd(root)


@case('val.hdf5: spatial_features is a group, not a dataset', 'adaptive_detection_features_converter.py')
def hdf5_group_for_a_dataset(root):
    with h5py.File(os.path.join(root, 'val.hdf5'), 'a') as h5:
        del h5['spatial_features']
        h5.create_group('spatial_features')
    return evaluate_cmd(root, os.path.join(root, 'model'))


@case('train.hdf5: image 1 has no boxes (and 0 more images)', 'adaptive_detection_features_converter.py')
def hdf5_image_without_boxes(root):
    path = os.path.join(root, 'train.hdf5')
    row = utils.safe_pickle_load(os.path.join(root, 'train_imgid2idx.pkl'))[1]
    with h5py.File(path, 'r') as h5:
        pos_boxes = h5['pos_boxes'][()]
    pos_boxes[row, 1] = pos_boxes[row, 0]
    rewrite_hdf5_dataset(path, 'pos_boxes', pos_boxes)
    return main_cmd(root)


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


@case('tsv.0:2: image 5 box 0', 'lies outside the 645 x 475 image, as do 0 more of its 1 boxes', 're-download')
def tsv_box_outside_the_image(root):
    def far_outside(fields):
        boxes = image_record(5, 1)[3].copy()
        boxes[0, [0, 2]] += 10000.0
        return fields[:4] + [encode_array(boxes)] + fields[5:]
    rewrite_tsv_line(root, 5, far_outside)
    return converter_cmd(root)


@case('v2_OpenEnded_mscoco_train2014_questions.json lists no questions, so split train is empty',
      'tools/download.sh')
def empty_train_split(root):
    edit_json(os.path.join(root, 'v2_OpenEnded_mscoco_train2014_questions.json'),
              lambda data: data['questions'].clear())
    rewrite_pickle(os.path.join(root, 'cache', 'train_target.pkl'), lambda targets: [])
    return main_cmd(root)


@case('split val has no images: its split file Flickr30kEntities/val.txt lists none', 'download_flickr.sh',
      data='flickr')
def flickr_empty_split_conversion(root):
    with open(flickr_file(root, '', 'val.txt'), 'w') as handle:
        handle.write('\n')
    return ['tools/adaptive_detection_features_converter.py', '--task', 'flickr', '--dataroot',
            os.path.join(root, 'flickr30k'), '--feature_dim', str(tiny_flickr.FEATURE_DIM), '--split', 'val']


@case('model_last.pth has finished epoch 0, so --epochs 1 leaves nothing to train', 'pass --epochs 2')
def resume_with_no_epoch_left(root):
    return main_cmd(root) + ['--input', os.path.join(root, 'model', 'model_last.pth')]


@case('val2014_questions.json: questions[0] needs an int "question_id"', '0 to 2**63-1', 'tools/download.sh')
def question_id_overflowing_int64(root):
    edit_json(val_questions(root), lambda data: data['questions'][0].update(question_id=2 ** 70))
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('Annotations/100.xml: <name>100000000000000000000</name> is not a chain id', 'process_flickr.sh',
      data='flickr')
def flickr_chain_id_overflowing_int64(root):
    edit_text(flickr_file(root, 'Annotations', '100.xml'),
              lambda text: text.replace('<name>1</name>', '<name>%d</name>' % 10 ** 20, 1))
    return flickr_main_cmd(root)


@case('WORLD_SIZE=2 is set but RANK is not', 'torchrun')
def world_size_without_rank(root):
    return main_cmd(root), {'env': {'WORLD_SIZE': '2'}}


# -- security edges

@case('dictionary.pkl: unsafe or unreadable pickle (refusing to load __builtin__.bytearray)',
      'tools/create_dictionary.py')
def dictionary_that_allocates_3_gib(root):
    with open(os.path.join(root, 'dictionary.pkl'), 'wb') as handle:  # 35 bytes: bytearray(3 * 2**30)
        handle.write(b'\x80\x02c__builtin__\nbytearray\n\x8a\x05\x00\x00\x00\xc0\x00\x85R.')
    return main_cmd(root)


@case('val_imgid2idx.pkl: unsafe or unreadable pickle (refusing to load numpy', 'adaptive_detection_features_converter.py')
def imgid2idx_of_numpy_objects(root):
    path = os.path.join(root, 'val_imgid2idx.pkl')
    mapping = utils.safe_pickle_load(path)
    with open(path, 'wb') as handle:
        pickle.dump({np.int64(image_id): np.int64(row) for image_id, row in mapping.items()}, handle, protocol=2)
    return evaluate_cmd(root, os.path.join(root, 'model'))


# -- operating-system errors: one line naming the path, never a traceback





@case('val2014_questions.json is a folder, but a file is expected here', 'tools/download.sh')
def questions_file_is_a_folder(root):
    os.remove(val_questions(root))
    os.makedirs(val_questions(root))
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('glove.6B.300d.txt is not a regular file (a device, pipe or socket)', 'download GloVe')
def glove_is_dev_zero(root):
    path = os.path.join(root, 'glove', 'glove.6B.300d.txt')
    os.remove(path)
    os.symlink('/dev/zero', path)  # read forever before
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('glove.6B.300d.txt:4: not UTF-8 text (byte 3', 'download GloVe')
def glove_bad_byte_on_line_4(root):
    path = os.path.join(root, 'glove', 'glove.6B.300d.txt')
    with open(path, 'rb') as handle:
        lines = handle.read().split(b'\n')
    lines[3] = lines[3][:2] + b'\xff' + lines[3][3:]
    with open(path, 'wb') as handle:
        handle.write(b'\n'.join(lines))
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('Sentences/101.txt:4: not UTF-8 text', 'process_flickr.sh', data='flickr')
def flickr_sentence_bad_byte_on_line_4(root):
    path = flickr_file(root, 'Sentences', '101.txt')
    with open(path, 'rb') as handle:
        lines = handle.read().split(b'\n')
    lines[3] = b'\xe9' + lines[3]
    with open(path, 'wb') as handle:
        handle.write(b'\n'.join(lines))
    return flickr_main_cmd(root)


@case('--output', 'is a file, but main.py writes its checkpoints and logs into a folder')
def main_output_is_a_file(root):
    return main_cmd(root)[:3] + ['--output', os.path.join(root, 'dictionary.pkl')] + main_cmd(root)[5:]


@case('/results: a part of this path is a file, not a folder')
def results_folder_under_a_file(root):
    return ['test.py', '--dataroot', root, '--input', os.path.join(root, 'model'), '--epoch', '0',
            '--output', os.path.join(root, 'dictionary.pkl', 'results')] + EVAL_FLAGS


@case('val.hdf5: is a folder, but a file is expected here')
def converter_output_is_a_folder(root):
    os.remove(os.path.join(root, 'val.hdf5'))
    os.makedirs(os.path.join(root, 'val.hdf5', 'keep'))
    return converter_cmd(root)


@case('val.hdf5: file too large for the file system or for the file-size limit')
def converter_writing_past_the_file_size_limit(root):
    return converter_cmd(root), {'file_size_limit': 4096}


@case('model/test2015_ban8_x_epoch0.json: file too large')
def results_past_the_file_size_limit(root):
    command = ['test.py', '--dataroot', root, '--input', os.path.join(root, 'model'), '--epoch', '0', '--label', 'x',
               '--output', os.path.join(root, 'model')] + EVAL_FLAGS
    return command, {'file_size_limit': 20}


@case('cache/train_target.pkl: file too large')
def softscore_past_the_file_size_limit(root):
    return ['tools/compute_softscore.py', '--dataroot', root, '--min_occurrence', '1'], {'file_size_limit': 150}


# argparse's own errors: the usage, then one `<prog>: error: argument --x: ...` line, exit 2.
ARGPARSE_CASES = {
    'lr_zero': (['main.py', '--lr', '0'], 'main.py: error: argument --lr: must be > 0 and finite, got 0.0'),
    'lr_infinite': (['main.py', '--lr', 'inf'], 'main.py: error: argument --lr: must be > 0 and finite, got inf'),
    'op_unknown': (['main.py', '--op', 'x'],
                   "main.py: error: argument --op: invalid choice: 'x' (choose from '', 'c')"),
    'gamma_zero': (['main.py', '--gamma', '0'], 'main.py: error: argument --gamma: must be from 1 to 64, got 0'),
    'batch_size_negative': (['test.py', '--batch_size', '-1'],
                            'test.py: error: argument --batch_size: must be >= 1, got -1'),
    'unknown_task': (['evaluate.py', '--task', 'gqa'],
                     "evaluate.py: error: argument --task: invalid choice: 'gqa' (choose from 'vqa', 'flickr')"),
    'min_occurrence_zero': (['tools/compute_softscore.py', '--min_occurrence', '0'],
                            'compute_softscore.py: error: argument --min_occurrence: must be >= 1, got 0'),
    'epochs_zero': (['main.py', '--epochs', '0'], 'main.py: error: argument --epochs: must be >= 1, got 0'),
    'seed_2_to_the_70': (['main.py', '--seed', str(2 ** 70)], 'main.py: error: argument --seed: must be from 0 to '
                                                             '4294967295, got %d' % 2 ** 70),
    'num_hid_1e9': (['main.py', '--num_hid', '1e9'],
                    "main.py: error: argument --num_hid: expected an integer from 1 to 16384, got '1e9'"),
    'num_hid_a_billion': (['evaluate.py', '--num_hid', '1000000000'],
                          'evaluate.py: error: argument --num_hid: must be from 1 to 16384, got 1000000000'),
    'label_with_a_path': (['test.py', '--label', '../../x'],
                          "test.py: error: argument --label: '../../x' holds a path separator; it is a tag in the "
                          "results file name (put the folder in --output)"),
    'use_vg_with_flickr': (['main.py', '--task', 'flickr', '--use_vg'],
                           'main.py: error: argument --use_vg: Flickr30k trains on its train split and validates on '
                           'val; this flag is for --task vqa'),
    'gamma_with_flickr': (['main.py', '--task', 'flickr', '--gamma', '4'],
                          "main.py: error: argument --gamma: Flickr30k uses one glimpse (as the original does); "
                          "drop the flag"),
    'tfidf_sources_without_op_c': (['main.py', '--op', '', '--tfidf_sources', 'vqa'],
                                   'main.py: error: argument --tfidf_sources: the tf-idf table exists only with '
                                   '--op c'),
    'epochs_with_evaluate': (['main.py', '--evaluate', '--input', 'x.pth', '--epochs', '3'],
                             'main.py: error: argument --epochs: --evaluate only evaluates --input; this flag is '
                             'for training'),
    'fix_alignment_with_vqa': (['evaluate.py', '--fix_alignment'],
                               'evaluate.py: error: argument --fix_alignment: the phrase alignment is for --task '
                               'flickr'),
    'index_without_logits': (['test.py', '--index', '3'],
                             'test.py: error: argument --index: it numbers the logits file; pass --logits'),
}


def run_batch(jobs, folder):
    jobs_path, results_path = os.path.join(folder, 'jobs.json'), os.path.join(folder, 'results.json')
    write_json(jobs_path, jobs)
    completed = subprocess.run([sys.executable, '-c', BATCH_RUNNER, jobs_path, results_path], cwd=str(REPO),
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    return read_json(results_path)


@pytest.fixture(scope='module')
def cli_results(vqa_root, flickr_root, tmp_path_factory):
    """{case: (result, its data root, snapshot of that root before the command)} (root and snapshot
    are None for ARGPARSE_CASES)."""
    base = tmp_path_factory.mktemp('cases')
    jobs, names, prepared = [], [], {}
    for name, (build, _, data) in CASES.items():
        root = shutil.copytree(vqa_root if data == 'vqa' else flickr_root, str(base / name), symlinks=True)
        command = build(root)
        command, options = command if isinstance(command, tuple) else (command, {})
        prepared[name] = (root, snapshot(root))
        jobs.append((command[0], command[1:], options))
        names.append(name)
    for name, (command, _) in ARGPARSE_CASES.items():
        jobs.append((command[0], command[1:], {}))
        names.append(name)
    results = run_batch(jobs, str(base))
    return {name: (result,) + prepared.get(name, (None, None)) for name, result in zip(names, results)}


@pytest.mark.parametrize('name', sorted(CASES))
def test_bad_input_gives_one_line_error_and_no_output(cli_results, name):
    result, root, before = cli_results[name]
    assert 'Traceback' not in result['stderr'], result['stderr']
    assert result['returncode'] == 2, result
    assert result['stderr'].startswith('error: ') and result['stderr'].count('\n') == 1, result['stderr']
    for fragment in CASES[name][1]:
        assert fragment in result['stderr'], (fragment, result['stderr'])
    assert snapshot(root) == before  # nothing written, nothing half-written, no temporary file left
    assert not os.path.exists(os.path.join(root, 'PWNED'))
    assert 'weights_only' not in result['stderr']  # never the advice to load code-carrying files


@pytest.mark.parametrize('name', sorted(ARGPARSE_CASES))
def test_nonsense_flag_values_exit_2_naming_the_flag(cli_results, name):
    result = cli_results[name][0]
    assert result['returncode'] == 2 and 'Traceback' not in result['stderr']
    lines = result['stderr'].splitlines()
    assert lines[0].startswith('usage: ') and lines[-1] == ARGPARSE_CASES[name][1]


def test_batch_runner_matches_a_real_subprocess(vqa_root, tmp_path):
    """The runpy batch above behaves as `python3 <script>`: same status, same stderr."""
    root = shutil.copytree(vqa_root, str(tmp_path / 'data'))
    command = CASES['checkpoint_truncated'][0](root)
    real = subprocess.run([sys.executable] + command, cwd=str(REPO), capture_output=True, text=True, timeout=120)
    batch = run_batch([(command[0], command[1:], {})], str(tmp_path))[0]
    assert (real.returncode, real.stderr) == (batch['returncode'], batch['stderr'])
    assert real.returncode == 2 and real.stderr.count('\n') == 1


def test_run_cli_keeps_a_multi_line_message_on_one_line(capsys):
    def fails(argv):
        raise UserError('first line\nsecond line')
    with pytest.raises(SystemExit) as stopped:
        utils.run_cli(fails, [])
    assert stopped.value.code == 2 and capsys.readouterr().err == 'error: first line second line\n'


# ----------------------------------------------------------------- documented skips and counts

def test_zero_area_boxes_are_kept_and_counted(tmp_path, capsys):
    root = prepared_root(tmp_path / 'data')
    capsys.readouterr()

    def zero_width(fields):
        boxes = image_record(5, 1)[3].copy()
        boxes[0, 2] = boxes[0, 0]
        return fields[:4] + [encode_array(boxes)] + fields[5:]
    rewrite_tsv_line(root, 5, zero_width)
    converter.main(converter_cmd(root)[1:])
    assert 'kept 1 zero-area boxes' in capsys.readouterr().out
    row = utils.safe_pickle_load(os.path.join(root, 'val_imgid2idx.pkl'))[5]
    with h5py.File(os.path.join(root, 'val.hdf5'), 'r') as h5:
        start, end = h5['pos_boxes'][row]
        assert end - start == 1 and h5['spatial_features'][start, 4] == 0.0  # width 0, kept as the original


def test_questions_of_only_unknown_words_are_counted(vqa_root, tmp_path, capsys):
    root = shutil.copytree(vqa_root, str(tmp_path / 'data'))
    edit_json(val_questions(root), lambda data: data['questions'][1].update(question='Xyzzy plugh?'))
    dictionary = Dictionary.load_from_file(os.path.join(root, 'dictionary.pkl'))
    val = VQAFeatureDataset('val', dictionary, root)
    assert val.unknown_only_questions == 1
    assert val.entries[1]['q_token'][:2] == [dictionary.ntoken - 1] * 2  # the original's unknown index
    assert 'warning: val: 1 of 3 questions have only words outside the dictionary' in capsys.readouterr().out
    assert VQAFeatureDataset('train', dictionary, root).unknown_only_questions == 0


def test_visual_genome_images_without_coco_id_are_skipped_and_wordless_questions_kept(vqa_root, tmp_path, capsys,
                                                                                     monkeypatch):
    root = shutil.copytree(vqa_root, str(tmp_path / 'data'))
    edit_json(os.path.join(root, 'question_answers.json'), lambda qas: qas[0]['qas'].extend([
        {'qa_id': 5009, 'image_id': 1001, 'question': '?', 'answer': 'brown'},
        {'qa_id': 5010, 'image_id': 1001, 'question': 'Xyzzy plugh?', 'answer': 'brown'}]))
    dictionary = Dictionary.load_from_file(os.path.join(root, 'dictionary.pkl'))
    train = VQAFeatureDataset('train', dictionary, root)
    vg = VisualGenomeFeatureDataset('train', train, dictionary, root)
    assert [entry['question_id'] for entry in vg.entries] == [5001, 5009, 5010]  # kept, as the original
    padding = dictionary.padding_idx
    assert vg.entries[1]['q_token'] == [padding] * 14  # no word at all: all padding
    assert vg.entries[2]['q_token'] == [padding - 1] * 2 + [padding] * 12  # unknown words: ntoken - 1
    assert vg[1][3][vg.ans2label['brown']] == 1.0
    out = capsys.readouterr().out
    assert '3/4 VG images have a COCO id (the others are skipped)' in out
    assert '3/6 questions used' in out  # counted on images with a COCO id
    # a cache written under the old rule (wordless questions dropped) is rebuilt, not read
    cache = os.path.join(root, 'cache', 'vg_train_adaptive_target.json')
    monkeypatch.setattr(VisualGenomeFeatureDataset, 'ENTRY_RULE', 1)
    VisualGenomeFeatureDataset('train', train, dictionary, root)  # writes the cache under rule 1
    edit_json(cache, lambda cached: cached['entries'].pop(1))  # what rule 1 kept
    assert [e['question_id'] for e in VisualGenomeFeatureDataset('train', train, dictionary, root).entries] \
        == [5001, 5010]
    monkeypatch.undo()
    assert [e['question_id'] for e in VisualGenomeFeatureDataset('train', train, dictionary, root).entries] \
        == [5001, 5009, 5010]
