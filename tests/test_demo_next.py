"""What next after the demo: the commands tools/demo.py ends with run as
printed; ask.py names the image ids a data root holds; the demo's test2015
annotations score test-dev2015 results."""
import importlib
import json
import shlex

import numpy as np
import pytest

import ask
from formats.features import FeatureStore
from tools import demo, vqa_eval
from utils import UserError


@pytest.fixture
def printed(tiny_root, trained, tmp_path, monkeypatch, capsys):
    """The 'Try next' lines the demo prints for the tiny trained run, with a photo for the test image."""
    pytest.importorskip('matplotlib')
    from PIL import Image
    photo = tmp_path / 'shape.png'
    Image.fromarray(np.full((64, 64, 3), 230, dtype=np.uint8)).save(photo)
    monkeypatch.setattr(demo, 'test_image_path', lambda image_id: str(photo))
    monkeypatch.chdir(tmp_path)  # the commands' relative outputs (results/my_attention.png) land here
    demo.print_commands_to_try(tiny_root, str(trained))
    return capsys.readouterr().out.splitlines()


def test_the_demo_ends_with_four_commands_that_run_as_printed(printed, tiny_root, trained, tmp_path, capsys):
    assert printed[0] == '' and printed[1].startswith('Try next')
    comments, commands = printed[2::2], printed[3::2]
    assert len(comments) == len(commands) == 4 and all(line.startswith('# ') for line in comments)
    questions = demo.test_questions(tiny_root)
    last_question = [item for item in questions if item['question'].lower().startswith('what ')][-1]
    scripts = []
    for line in commands:
        argv = shlex.split(line)
        assert argv[0] == demo.interpreter()
        scripts.append(argv[1])
        module = importlib.import_module(argv[1][:-len('.py')].replace('/', '.'))
        module.main(argv[2:])  # in-process: the same parsing and work as the printed command
    assert scripts == ['ask.py', 'visualize.py', 'evaluate.py', 'tools/plot_log.py']
    assert '--image_id %d' % last_question['image_id'] in commands[0]
    output = capsys.readouterr().out
    assert 'Q: %s' % last_question['question'] in output  # ask.py answered
    assert (tmp_path / 'results' / 'my_attention.png').stat().st_size > 0
    assert (trained / 'curves.png').stat().st_size > 0


def test_an_unknown_image_id_names_the_ids_there_are(tiny_root):
    with pytest.raises(UserError) as caught:
        ask.find_image_features(tiny_root, 42)
    message = str(caught.value)
    assert message.startswith('image 42 has no features in %s; it holds train: ' % tiny_root)
    test_ids = sorted(FeatureStore(tiny_root, 'test2015').img_id2idx)
    assert 'test2015: %d images, ids %d to %d, e.g. %d, %d, %d' % (len(test_ids), test_ids[0], test_ids[-1],
                                                                   *test_ids[:3]) in message


def test_id_summary_of_one_and_of_none():
    assert ask.id_summary({7}) == '1 image, ids 7 to 7, e.g. 7'
    assert ask.id_summary([3000, 1000, 2000, 1500]) == '4 images, ids 1000 to 3000, e.g. 1000, 1500, 2000'
    assert ask.id_summary(set()) == 'no images'


def annotation(question_id, answer):
    return {'question_id': question_id, 'image_id': question_id // 10, 'question_type': 'what color',
            'answer_type': 'other', 'multiple_choice_answer': answer,
            'answers': [{'answer': answer, 'answer_confidence': 'yes', 'answer_id': k + 1} for k in range(10)]}


@pytest.fixture
def demo_like_root(tmp_path):
    """test2015: 4 questions, annotated (as the demo data); test-dev2015: 2 of them."""
    questions = [{'question_id': qid, 'image_id': qid // 10, 'question': 'what color?'} for qid in (10, 11, 20, 21)]
    header = {'info': {}, 'task_type': 'Open-Ended', 'data_type': 'mscoco', 'license': {}}
    files = {'v2_OpenEnded_mscoco_test2015_questions.json': dict(header, data_subtype='test2015', questions=questions),
             'v2_OpenEnded_mscoco_test-dev2015_questions.json': dict(header, data_subtype='test-dev2015',
                                                                     questions=questions[::2]),
             'v2_mscoco_test2015_annotations.json': dict(header, data_subtype='test2015', annotations=[
                 annotation(qid, 'red') for qid in (10, 11, 20, 21)])}
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    return tmp_path


def write_results(path, answers):
    path.write_text(json.dumps([{'question_id': qid, 'answer': answer} for qid, answer in answers.items()]))
    return str(path)


def test_test_dev_results_are_scored_with_the_test_annotations(demo_like_root):
    results = write_results(demo_like_root / 'testdev.json', {10: 'red', 20: 'blue'})
    by_split = vqa_eval.main(['--results', results, '--dataroot', str(demo_like_root), '--split', 'test-dev2015'])
    by_files = vqa_eval.main(['--results', results,
                              '--questions', str(demo_like_root / 'v2_OpenEnded_mscoco_test-dev2015_questions.json'),
                              '--annotations', str(demo_like_root / 'v2_mscoco_test2015_annotations.json')])
    for metrics in (by_split, by_files):
        assert metrics['n_questions'] == 2 and metrics['overall'] == pytest.approx(50.0)


def test_test_dev_results_still_need_every_test_dev_question(demo_like_root):
    results = write_results(demo_like_root / 'testdev.json', {10: 'red'})
    with pytest.raises(UserError, match='no result for 1 of the 2 questions'):
        vqa_eval.main(['--results', results, '--dataroot', str(demo_like_root), '--split', 'test-dev2015'])


def test_test2015_results_are_scored_on_all_test_questions(demo_like_root):
    results = write_results(demo_like_root / 'test.json', {10: 'red', 11: 'red', 20: 'red', 21: 'blue'})
    metrics = vqa_eval.main(['--results', results, '--dataroot', str(demo_like_root), '--split', 'test2015'])
    assert metrics['n_questions'] == 4 and metrics['overall'] == pytest.approx(75.0)
