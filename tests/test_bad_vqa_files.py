"""Bad VQA 2.0 files (docs/ROBUSTNESS.md): the questions and annotations JSON,
the answer caches and target pickles, the Visual Genome questions, read by
`formats.vqa_files`, `tools/compute_softscore.py` and the datasets. Each case
is answered by a one-line `error: ...` naming the file/key and the fix, exit
status 2 and no output, or by a documented skip with a count. The `@case`
machinery is tests/helpers/bad_inputs.py."""
import os
import shutil

import pytest

from bad_inputs import (
    case,
    cases_of,
    check_one_line_error,
    edit_json,
    edit_text,
    main_cmd,
    rewrite_pickle,
    val_annotations,
    val_questions,
)
from dataset import VisualGenomeFeatureDataset, VQAFeatureDataset
from formats.dictionary import Dictionary

# ----------------------------------------------------------------- questions and annotations JSON

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


@case('val2014_questions.json: questions[0] needs an int "question_id"', '0 to 2**63-1', 'tools/download.sh')
def question_id_overflowing_int64(root):
    edit_json(val_questions(root), lambda data: data['questions'][0].update(question_id=2 ** 70))
    return ['tools/create_dictionary.py', '--dataroot', root]


@case('val2014_questions.json is a folder, but a file is expected here', 'tools/download.sh')
def questions_file_is_a_folder(root):
    os.remove(val_questions(root))
    os.makedirs(val_questions(root))
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


@case('v2_OpenEnded_mscoco_train2014_questions.json lists no questions, so split train is empty',
      'tools/download.sh')
def empty_train_split(root):
    edit_json(os.path.join(root, 'v2_OpenEnded_mscoco_train2014_questions.json'),
              lambda data: data['questions'].clear())
    rewrite_pickle(os.path.join(root, 'cache', 'train_target.pkl'), lambda targets: [])
    return main_cmd(root)


# ----------------------------------------------------------------- answer caches and targets

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


@case('trainval_ans2label.pkl: maps', 'expected an answer (str) to a label (int)', 'compute_softscore.py')
def ans2label_with_float_labels(root):
    rewrite_pickle(os.path.join(root, 'cache', 'trainval_ans2label.pkl'),
                   lambda ans2label: {answer: float(label) for answer, label in ans2label.items()})
    return main_cmd(root)


@case('cache/train_target.pkl: file too large')
def softscore_past_the_file_size_limit(root):
    return ['tools/compute_softscore.py', '--dataroot', root, '--min_occurrence', '1'], {'file_size_limit': 150}


@pytest.mark.parametrize('name', cases_of(__name__))
def test_bad_input_gives_one_line_error_and_no_output(cli_results, name):
    check_one_line_error(cli_results, name)


# ----------------------------------------------------------------- documented skips and counts

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
