"""evaluate.py --report: every figure on the page equals the one evaluate.py
prints, every picture the page names exists beside it, the page needs
nothing outside its folder; the tables against a brute-force count; the
gallery choice; bad input; the table pass on a 214k-question val set."""
import html.parser
import json
import os
import random
import re
import shutil
import time
from pathlib import Path

import pytest

import evaluate
from formats.dictionary import split_words
from formats.vqa_metric import evaluate_results, question_type_table
from report import build
from report.page import ReportFolder
from report.tables import LONGEST_LENGTH, gallery_choice, region_bins, vqa_tables
from utils import UserError

EVAL = ['--num_hid', '16', '--gamma', '2', '--workers', '0', '--device', 'cpu']


class Page(html.parser.HTMLParser):
    """What a reader of index.html sees: the tables by id (rows of cell
    texts), the big numbers ({name: value}), every address the page names."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.big, self.addresses = {}, {}, []
        self._table = self._row = self._cell = None
        self._big = None  # the <span>/<b> texts of a headline figure
        self._open = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.addresses += [attrs[key] for key in ('src', 'href') if key in attrs]
        if tag == 'table':
            self._table = self.tables.setdefault(attrs.get('id'), [])
        elif tag == 'tr' and self._table is not None:
            self._row = []
        elif tag in ('td', 'th') and self._row is not None:
            self._cell = []
        elif tag == 'div' and attrs.get('class') == 'big':
            self._big, self._big_depth = {}, len(self._open)
        self._open.append(tag)

    def handle_endtag(self, tag):
        self._open.pop()
        if tag in ('td', 'th') and self._cell is not None:
            self._row.append(''.join(self._cell).strip())
            self._cell = None
        elif tag == 'tr' and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == 'table':
            self._table = None
        elif tag == 'b' and self._big is not None:
            self.big[self._big.pop('span')] = self._big.pop('b')
        elif tag == 'div' and self._big is not None and len(self._open) == self._big_depth:
            self._big = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._big is not None and self._open and self._open[-1] in ('span', 'b'):
            self._big[self._open[-1]] = self._big.get(self._open[-1], '') + data

    def rows(self, table_id):
        """The data rows (header row dropped), empty cells (the bars) dropped."""
        return [tuple(cell for cell in row if cell != '') for row in self.tables[table_id][1:]]


def read_page(folder):
    text = (Path(folder) / 'index.html').read_text(encoding='utf-8')
    return text, Page(text)


def check_self_contained(folder, text, page):
    """No script, no style sheet or font from elsewhere, every address a file in the folder."""
    assert '<script' not in text.lower() and '<link' not in text.lower() and '@import' not in text
    assert not re.search(r'(?i)(https?:|//)[^\s"\']', ' '.join(page.addresses))
    assert not re.search(r'(?i)url\(', text)
    for address in page.addresses:
        assert not os.path.isabs(address) and '..' not in address.split('/'), address
        assert (Path(folder) / address).is_file(), 'the page names %s, which is not in %s' % (address, folder)
    return sorted({address for address in page.addresses if address.endswith('.png')})


def printed_vqa(out):
    """(overall, {answer type: %}, [(question type, %, count)]) as evaluate.py printed them (text)."""
    overall, types = re.search(r'official VQA accuracy (\d+\.\d\d) \((.*)\)', out).groups()
    per_answer = dict(re.match(r'(.+) (\d+\.\d\d)$', part).groups() for part in types.split(', '))
    block = out[out.index('per question type'):].split('\taccuracy against')[0]
    question_types = [(name.strip(), value, count) for name, value, count in
                      re.findall(r'^\t  (.+?) +(\d+\.\d\d)  \((\d+) questions\)$', block, re.M)]
    return overall, per_answer, question_types


@pytest.fixture(scope='module')
def photos(tiny_root, tmp_path_factory):
    """A folder of a photo for every second val image, named as COCO names them."""
    from PIL import Image
    folder = tmp_path_factory.mktemp('photos')
    questions = json.loads(next(Path(tiny_root).glob('*val2014_questions.json')).read_text())['questions']
    for image_id in sorted({question['image_id'] for question in questions})[::2]:
        Image.new('RGB', (64, 48), (200, 40 + image_id % 200, 40)).save(folder / ('COCO_val2014_%012d.jpg' % image_id))
    (folder / 'notes.txt').write_text('not a picture')
    return folder


@pytest.fixture(scope='module')
def vqa_report(trained, tiny_root, photos, tmp_path_factory):
    """(report folder, what evaluate.py printed, its metrics) of the tiny trained run."""
    folder = tmp_path_factory.mktemp('reports') / 'vqa'
    import contextlib
    import io
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics = evaluate.main(['--dataroot', tiny_root, '--input', str(trained), '--report', str(folder),
                                 '--report_items', '6', '--images', str(photos)] + EVAL)
    return folder, printed.getvalue(), metrics


def test_vqa_page_shows_the_figures_evaluate_prints(vqa_report):
    folder, out, metrics = vqa_report
    text, page = read_page(folder)
    overall, per_answer, question_types = printed_vqa(out)
    official = metrics['official']
    assert page.big['overall'] == overall == '%.2f' % official['overall']
    for name, value in per_answer.items():
        assert page.big[name] == value
    assert sorted((name, value) for name, value, _ in page.rows('answer-types')) == sorted(per_answer.items())
    assert {row[0]: int(row[2]) for row in page.rows('answer-types')} == official['questions_per_answer_type']
    assert page.rows('question-types') == question_types  # same rows, same order, same counts
    assert len(question_types) == len(official['per_question_type']) == 3
    assert [float(value) for _, value, _ in question_types] == sorted((float(v) for _, v, _ in question_types),
                                                                      reverse=True)
    assert sum(int(count) for _, _, count in question_types) == official['n_questions'] == 48
    assert 'report: %s' % (folder / 'index.html') in out
    run = text[text.index('<section id="run">'):]
    assert 'python3 evaluate.py --dataroot' in run and '--report_items 6' in run  # the command that made it
    assert 'val split of' in run and re.search(r'\d{4}-\d\d-\d\d \d\d:\d\d UTC', run)
    assert 'num_hid&nbsp;<code>16</code>' in run and 'pictures/curves.png' in run  # settings and curves


def test_vqa_breakdowns_on_the_page_are_those_evaluate_prints(vqa_report):
    folder, out, _ = vqa_report
    _, page = read_page(folder)
    blocks = re.split(r'^\t(?=accuracy against|most frequent confusions)', out, flags=re.M)
    regions, length, confusions = blocks[1], blocks[2], blocks[3]
    row = r'^\t  (\S+) +(\d+\.\d\d)  \((\d+) questions\)$'
    assert regions.startswith('accuracy against the number of regions')
    assert page.rows('by-regions') == re.findall(row, regions, re.M) != []
    assert page.rows('by-length') == re.findall(row, length, re.M) != []
    assert page.rows('confusions') == re.findall(r'^\t  (.+) -> (.+)  \((\d+) questions\)$', confusions, re.M) != []
    differing = re.search(r'\((\d+) questions differ\)', confusions).group(1)
    assert re.search(r'<p>%s questions \(' % differing, (folder / 'index.html').read_text())


def test_vqa_tables_on_the_page_match_a_brute_force_count(vqa_report, tiny_root):
    folder, _, metrics = vqa_report
    _, page = read_page(folder)
    figures = json.loads((folder / 'report.json').read_text())
    per_question = metrics['official']['per_question']
    questions = {q['question_id']: q for q in
                 json.loads(next(Path(tiny_root).glob('*val2014_questions.json')).read_text())['questions']}
    by_length = {}
    for question_id, accuracy in per_question.items():
        by_length.setdefault(len(split_words(questions[question_id]['question'])), []).append(accuracy)
    expected = [(str(length), '%.2f' % (sum(values) / len(values)), str(len(values)))
                for length, values in sorted(by_length.items())]
    assert page.rows('by-length') == expected
    assert sum(int(row[2]) for row in page.rows('by-regions')) == 48
    assert [tuple(row) for row in page.rows('confusions')] == [
        (row['predicted'], row['common'], str(row['questions'])) for row in figures['tables']['confusions']]
    differing = figures['tables']['differing']
    assert sum(row['questions'] for row in figures['tables']['confusions']) == differing  # tiny: all rows shown


def test_vqa_gallery_pictures_exist_and_use_the_photos(vqa_report, photos):
    folder, _, _ = vqa_report
    text, page = read_page(folder)
    pictures = check_self_contained(folder, text, page)
    figures = json.loads((folder / 'report.json').read_text())
    gallery = figures['gallery']
    assert len(gallery) == 6 and len({item['question_id'] for item in gallery}) == 6
    assert {item['picture'] for item in gallery} | {'pictures/curves.png'} == set(pictures)
    with_photo = {int(name.split('_')[-1][:-4]) for name in os.listdir(photos) if name.endswith('.jpg')}
    assert [item['on_image'] for item in gallery] == [item['image_id'] in with_photo for item in gallery]
    for item in gallery:
        assert len(item['top']) == 5 and len(item['humans']) == 10
        assert item['top'][0][1] >= item['top'][-1][1]
        assert item['predicted'] == item['top'][0][0]
    from PIL import Image
    for picture in pictures:
        with Image.open(folder / picture) as image:
            assert image.width >= 400


def test_flickr_page_shows_the_figures_evaluate_prints(flickr_root, tmp_path, capsys):
    import main
    model = tmp_path / 'flickr_model'
    main.main(['--task', 'flickr', '--dataroot', flickr_root, '--output', str(model), '--epochs', '1',
               '--batch_size', '8', '--emb_dim', '8', '--num_hid', '16', '--workers', '0', '--device', 'cpu'])
    capsys.readouterr()
    folder = tmp_path / 'report'
    metrics = evaluate.main(['--task', 'flickr', '--dataroot', flickr_root, '--input', str(model), '--report',
                             str(folder), '--report_items', '5', '--num_hid', '16', '--workers', '0',
                             '--device', 'cpu'])
    out = capsys.readouterr().out
    text, page = read_page(folder)
    overall = dict(re.findall(r'(Recall@\d+) (\d+\.\d\d)', out.split('\n', 2)[1]))
    for name, value in overall.items():
        assert page.big[name] == value
    assert page.big['upper bound'] == '%.2f' % metrics['upper_bound']
    printed = re.findall(r'^\t  (\S+) +R@1 +(\d+\.\d\d)  R@5 +(\d+\.\d\d)  R@10 +(\d+\.\d\d)  \((\d+) entities\)$',
                         out, re.M)
    assert printed and page.rows('entity-types') == printed
    assert [(name, r1, count) for name, r1, _, _, count in printed] == page.rows('entity-types-bars')
    pictures = check_self_contained(folder, text, page)
    gallery = json.loads((folder / 'report.json').read_text())['gallery']
    assert len(gallery) == 5 and len(pictures) == 5 + 1  # + the training curves
    for item in gallery:
        assert item['phrase'] and item['phrase'].lower() in item['sentence'].lower()
        assert item['hit'] == (item['top'][0][0] in item['targets'])


# ----------------------------------------------------------------- tables and choice

def test_metric_counts_questions_per_type_and_sorts_the_question_types():
    def annotation(question_id, question_type, answer_type, answers):
        return {'question_id': question_id, 'image_id': 1, 'question_type': question_type,
                'answer_type': answer_type, 'multiple_choice_answer': answers[0],
                'answers': [{'answer': answer, 'answer_id': k + 1} for k, answer in enumerate(answers)]}
    annotations = [annotation(1, 'is the', 'yes/no', ['yes'] * 10),
                   annotation(2, 'how many', 'number', ['2'] * 2 + ['3'] * 8),
                   annotation(3, 'how many', 'number', ['two'] * 10),
                   annotation(4, 'are there', 'yes/no', ['no'] * 10)]
    questions = {'questions': [{'question_id': q, 'image_id': 1, 'question': 'q?'} for q in (1, 2, 3, 4)]}
    results = [{'question_id': 1, 'answer': 'yes'}, {'question_id': 2, 'answer': '2'},
               {'question_id': 3, 'answer': '2'}, {'question_id': 4, 'answer': 'yes'}]
    metrics = evaluate_results(results, questions, {'annotations': annotations})
    assert metrics['questions_per_answer_type'] == {'yes/no': 2, 'number': 2}
    assert metrics['questions_per_question_type'] == {'is the': 1, 'how many': 2, 'are there': 1}
    # question 2: "2" given by 2 of 10 -> 0.6; question 3: all ten said "two", no normalisation -> 0
    assert question_type_table(metrics) == [('is the', 100.0, 1), ('how many', pytest.approx(30.0), 2),
                                            ('are there', 0.0, 1)]


def test_vqa_tables_by_hand():
    tables = vqa_tables(['what is it', 'is it red', 'what color is the ball on the left side of the big red table '
                         'near the door'],
                        ['cat', 'yes', 'two'], [100.0, 0.0, 30.0], [10, 10, 36], ['cat', 'no', '2 '])
    assert [(row['label'], row['accuracy'], row['questions']) for row in tables['by_length']] == [
        ('3', 50.0, 2), ('%d+' % LONGEST_LENGTH, 30.0, 1)]
    assert region_bins([10, 10, 36]) == [(10, 13), (14, 17), (18, 21), (22, 25), (26, 29), (30, 33), (34, 36)]
    assert [(row['label'], row['questions']) for row in tables['by_regions']] == [('10-13', 2), ('34-36', 1)]
    # '2 ' is the most common answer, normalised as the answer vocabulary is ('two' != '2')
    assert tables['confusions'] == [{'predicted': 'two', 'common': '2', 'questions': 1},
                                    {'predicted': 'yes', 'common': 'no', 'questions': 1}]
    assert tables['differing'] == 2


def test_gallery_choice_is_seeded_without_repeats_and_takes_the_most_confident_wrong():
    confidences = [index / 100 for index in range(100)]
    wrong = [index % 3 == 0 for index in range(100)]
    chosen = gallery_choice(10, confidences, wrong, seed=0)
    assert chosen == gallery_choice(10, confidences, wrong, seed=0)
    assert len(chosen) == 10 and len({index for index, _ in chosen}) == 10
    sampled = [index for index, why in chosen if why == 'random sample']
    confident = [index for index, why in chosen if why == 'confident wrong']
    assert len(sampled) == 5 and len(confident) == 5 and all(wrong[index] for index in confident)
    best_wrong = sorted((i for i in range(100) if wrong[i] and i not in sampled), key=lambda i: -confidences[i])
    assert confident == best_wrong[:5]
    assert gallery_choice(10, confidences, [False] * 100, seed=0) != []  # no wrong: all sampled
    assert len(gallery_choice(10, confidences[:3], wrong[:3], seed=0)) == 3
    assert gallery_choice(0, confidences, wrong, seed=0) == []


def test_image_files_are_found_by_their_id(tmp_path):
    for name in ('COCO_val2014_000000000042.jpg', '1000092795.jpg', '7.PNG', 'readme.txt', 'cover.jpg'):
        (tmp_path / name).write_bytes(b'')
    assert build.image_files(str(tmp_path)) == {42: str(tmp_path / 'COCO_val2014_000000000042.jpg'),
                                                1000092795: str(tmp_path / '1000092795.jpg'),
                                                7: str(tmp_path / '7.PNG')}
    with pytest.raises(UserError, match='is not a folder'):
        build.image_files(str(tmp_path / 'nothing'))


# ----------------------------------------------------------------- bad input, atomic writes

@pytest.mark.parametrize('extra, message', [
    (['--report_items', '3'], 'argument --report_items: it shapes the report; add --report DIR'),
    (['--images', '.'], 'argument --images: it shapes the report; add --report DIR'),
    (['--report', '{tmp}/r', '--report_items', '-1'], 'argument --report_items'),
    (['--report', '{tmp}/r', '--images', '{tmp}/none'], 'argument --images: .* is not a folder'),
])
def test_bad_report_flags_are_one_clear_error(extra, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        evaluate.parse_args(['--input', str(tmp_path)] + [part.format(tmp=tmp_path) for part in extra])
    assert re.search(message, capsys.readouterr().err)


def test_report_without_matplotlib_fails_before_evaluating(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'matplotlib.figure', None)  # import matplotlib.figure -> ImportError
    with pytest.raises(UserError, match='pip install matplotlib'):
        evaluate.parse_args(['--input', str(tmp_path), '--report', str(tmp_path / 'r')])


def test_report_folder_refuses_a_file_and_a_foreign_folder(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(UserError, match='is a file'):
        ReportFolder(str(tmp_path / 'file'))
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'thesis.tex').write_text('x')
    with pytest.raises(UserError, match='holds other files \\(thesis.tex\\)'):
        evaluate.parse_args(['--input', str(tmp_path), '--report', str(tmp_path / 'mine')])
    assert os.listdir(tmp_path / 'mine') == ['thesis.tex']


def test_a_failed_report_leaves_the_earlier_one_and_no_temporary(tmp_path):
    target = tmp_path / 'report'
    with ReportFolder(str(target)) as folder:
        path, address = folder.picture('a.png')
        Path(path).write_bytes(b'png')
        folder.publish('first', '<img src="%s">' % address, {'n': 1})
    with pytest.raises(ZeroDivisionError):
        with ReportFolder(str(target)) as folder:
            folder.picture('b.png')
            1 / 0
    assert 'first' in (target / 'index.html').read_text() and sorted(os.listdir(tmp_path)) == ['report']
    with ReportFolder(str(target)) as folder:  # an earlier report is replaced whole
        folder.publish('second', '<p>no pictures</p>', {'n': 2})
    assert 'second' in (target / 'index.html').read_text() and not (target / 'pictures' / 'a.png').exists()
    assert sorted(os.listdir(tmp_path)) == ['report']
    with ReportFolder(str(target)) as folder:  # a picture named but never written: refused, nothing replaced
        folder.picture('c.png')
        with pytest.raises(RuntimeError, match='pictures/c.png'):
            folder.publish('third', '', {})
    assert 'second' in (target / 'index.html').read_text()


def test_report_without_annotations_is_refused_before_evaluating(trained, tiny_root, tmp_path, capsys):
    from formats.paths import annotation_path
    root = tmp_path / 'root'
    shutil.copytree(tiny_root, root)
    os.remove(annotation_path(str(root), 'val'))
    with pytest.raises(SystemExit):
        evaluate.parse_args(['--dataroot', str(root), '--input', str(trained), '--report', str(tmp_path / 'r')])
    assert 'the report needs the questions and annotations of split val' in capsys.readouterr().err
    assert not (tmp_path / 'r').exists()


# ----------------------------------------------------------------- a val set's size

def synthetic_val(questions=214354, seed=0):
    """Questions, annotations, entries and kept top answers shaped as VQA 2.0 val's."""
    rng = random.Random(seed)
    words = ['what', 'color', 'is', 'the', 'man', 'how', 'many', 'are', 'there', 'on', 'table', 'dog', 'wearing']
    answers = ['yes', 'no', '2', '1', 'white', 'red', 'blue', 'black', 'green', '3']
    label2ans = answers + ['answer%d' % index for index in range(3119)]
    entries, annotations, top, labels = [], [], [], []
    for question_id in range(questions):
        text = ' '.join(rng.choice(words) for _ in range(rng.randint(2, 20))) + '?'
        common = rng.choice(answers)
        humans = [common if rng.random() < 0.7 else rng.choice(answers) for _ in range(10)]
        annotations.append({'question_id': question_id, 'image_id': question_id // 5, 'question_type': ' '.join(
            text.split()[:2]), 'answer_type': 'yes/no' if common in ('yes', 'no') else 'other',
            'multiple_choice_answer': common,
            'answers': [{'answer': answer, 'answer_id': k + 1} for k, answer in enumerate(humans)]})
        entries.append({'question_id': question_id, 'image_id': question_id // 5, 'question': text})
        label = rng.randrange(10)
        labels.append(label)
        top.append([(label, 0.9)] + [(other, 0.1) for other in range(10, 14)])
    return entries, annotations, labels, top, label2ans


def test_the_table_pass_of_a_214k_question_val_set_takes_seconds(tmp_path, capsys):
    entries, annotations, labels, top, label2ans = synthetic_val()
    results = [{'question_id': entry['question_id'], 'answer': label2ans[label]} for entry, label in
               zip(entries, labels)]
    questions = {'questions': [{'question_id': entry['question_id'], 'image_id': entry['image_id'],
                                'question': entry['question']} for entry in entries]}
    started = time.perf_counter()
    official = evaluate_results(results, questions, {'annotations': annotations})
    metric_seconds = time.perf_counter() - started
    drawn = []

    def draw(index, path):
        drawn.append(index)
        Path(path).write_bytes(b'')
        return False
    meta = {'title': 't', 'task': 'vqa', 'checkpoint': str(tmp_path / 'model.pth'), 'epoch': 0, 'split': 'val',
            'dataroot': 'data', 'command': 'evaluate.py', 'settings': None, 'date': 'now'}
    started = time.perf_counter()
    build.write_vqa_report(str(tmp_path / 'report'), meta, entries, label2ans, labels, top, official, annotations,
                           [10 + index % 91 for index in range(len(entries))], 48, draw)
    report_seconds = time.perf_counter() - started
    with capsys.disabled():
        print('\n214354 questions: official metric %.1f s, report tables + page (no drawing) %.1f s'
              % (metric_seconds, report_seconds))
    assert len(drawn) == 48 and len(set(drawn)) == 48  # pictures only for the gallery
    assert report_seconds < 120
    _, page = read_page(tmp_path / 'report')
    assert sum(int(row[2]) for row in page.rows('by-regions')) == 214354
    assert len(page.rows('by-regions')) == 8 and page.rows('by-length')[-1][0] == '%d+' % LONGEST_LENGTH


# ----------------------------------------------------------------- the demo's report

def test_demo_writes_both_reports_and_an_index(vqa_report, tmp_path, monkeypatch, capsys):
    from tools import demo
    folder, _, metrics = vqa_report
    flickr_figures = {'metrics': {'recall@1': 97.5, 'recall@5': 100.0, 'recall@10': 100.0},
                      'meta': {'split': 'test', 'checkpoint': 'saved_models/demo_flickr/model_epoch0.pth',
                               'epoch': 0}}
    commands = []

    def fake_run(*command):  # evaluate.py --report: a finished report where the command names it
        commands.append([str(part) for part in command])
        target = tmp_path / commands[-1][commands[-1].index('--report') + 1]
        if '--task' in commands[-1]:
            target.mkdir(parents=True)
            (target / 'index.html').write_text('<p>flickr</p>')
            (target / 'report.json').write_text(json.dumps(flickr_figures))
        else:
            shutil.copytree(folder, target)
    monkeypatch.setattr(demo, 'REPO', str(tmp_path))
    monkeypatch.setattr(demo, 'run', fake_run)
    monkeypatch.setattr(demo, 'link_images', lambda: 'data/demo/images')
    page = demo.write_report(11, 0, '')
    assert page == str(tmp_path / 'results' / 'demo_report' / 'index.html')
    assert 'report: results/demo_report/index.html' in capsys.readouterr().out
    assert [command[command.index('--report') + 1] for command in commands] == [
        'results/demo_report/vqa', 'results/demo_report/flickr']
    assert all(command[command.index('--images') + 1] == 'data/demo/images' for command in commands)
    text, index = read_page(tmp_path / 'results' / 'demo_report')
    check_self_contained(tmp_path / 'results' / 'demo_report', text, index)
    assert {'vqa/index.html', 'flickr/index.html'} <= set(index.addresses)
    assert index.big['VQA accuracy'] == '%.2f' % metrics['official']['overall']
    assert index.big['Recall@1'] == '97.50'
