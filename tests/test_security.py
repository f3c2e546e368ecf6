"""Safe loading (docs/ROBUSTNESS.md): restricted unpickling, weights-only
checkpoints, XML entity tricks refused, no unsafe call in the project."""
import ast
import pickle
import pyexpat
from pathlib import Path

import pytest
import torch

import utils
from formats import flickr_files
from robust_helpers import RunsCode
from runs import checkpoints
from utils import UserError

REPO = Path(__file__).resolve().parents[1]


def test_optimizer_state_of_another_model_is_named():
    model = torch.nn.Linear(3, 2)
    other = torch.optim.Adamax(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)).parameters())
    with pytest.raises(UserError, match='ckpt.pth: its optimizer state does not fit this model'):
        checkpoints.load_optimizer_state(torch.optim.Adamax(model.parameters()), other.state_dict(), 'ckpt.pth')


ENTITY_EXPANSION = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l0 "lol">'
                    + ''.join('<!ENTITY l%d "%s">' % (level, ('&l%d;' % (level - 1)) * 10) for level in range(1, 10))
                    + ']><annotation><object><name>&l9;</name></object></annotation>')
EXTERNAL_ENTITY = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotation><object>'
                   '<name>&x;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox>'
                   '</object></annotation>')


OLD_EXPAT = pytest.mark.skipif(pyexpat.version_info < (2, 4, 1), reason='expat < 2.4.1 has no amplification limit')


@pytest.mark.parametrize('xml, message', [pytest.param(ENTITY_EXPANSION, 'amplification', marks=OLD_EXPAT),
                                          (EXTERNAL_ENTITY, 'undefined entity')],
                         ids=['entity_expansion', 'external_entity'])
def test_xml_entity_tricks_are_refused(tmp_path, xml, message):
    path = tmp_path / '1.xml'
    path.write_text(xml)
    with pytest.raises(UserError, match='1.xml: malformed XML .*%s' % message):
        flickr_files.parse_annotation_file(str(path))


PROJECT_FILES = sorted(path for pattern in ('*.py', 'formats/*.py', 'runs/*.py', 'detection/*.py', 'report/*.py',
                                          'tools/*.py')
                       for path in REPO.glob(pattern))


def unsafe_calls(source, filename):
    """(line, description) of every unsafe loading or code-running call in `source`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ''
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ''
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}

        def is_true(key):
            return isinstance(keywords.get(key), ast.Constant) and keywords[key].value is True

        if isinstance(func, ast.Name) and name in ('eval', 'exec'):
            found.append((node.lineno, '%s()' % name))
        elif owner in ('pickle', 'cPickle', 'dill', 'marshal', 'shelve') and name in ('load', 'loads', 'open'):
            found.append((node.lineno, '%s.%s()' % (owner, name)))
        elif owner == 'torch' and name == 'load' and not is_true('weights_only'):
            found.append((node.lineno, 'torch.load() without weights_only=True'))
        elif owner in ('np', 'numpy') and name == 'load' and is_true('allow_pickle'):
            found.append((node.lineno, 'np.load(allow_pickle=True)'))
        elif owner == 'os' and name in ('system', 'popen'):
            found.append((node.lineno, 'os.%s()' % name))
        elif owner == 'subprocess' and is_true('shell'):
            found.append((node.lineno, 'subprocess.%s(shell=True)' % name))
        elif owner == 'yaml' and name in ('load', 'unsafe_load'):
            found.append((node.lineno, 'yaml.%s()' % name))
    return found


def test_the_scan_finds_each_unsafe_pattern():
    source = ('import pickle, torch, os, subprocess, numpy as np\n'
              'eval("1")\nexec("1")\npickle.load(f)\npickle.loads(b)\ntorch.load(p)\n'
              'torch.load(p, weights_only=False)\nnp.load(p, allow_pickle=True)\nos.system(c)\n'
              'subprocess.run(c, shell=True)\nmodel.eval()\ntorch.load(p, weights_only=True)\n')
    assert [line for line, _ in unsafe_calls(source, 'x.py')] == [2, 3, 4, 5, 6, 7, 8, 9, 10]


@pytest.mark.parametrize('path', PROJECT_FILES, ids=lambda path: str(path.relative_to(REPO)))
def test_no_unsafe_loading_or_code_execution(path):
    """Pickles only through utils.safe_pickle_load's restricted unpickler (which
    subclasses pickle.Unpickler and never calls pickle.load), checkpoints only
    with weights_only=True, no eval/exec/os.system/shell=True."""
    assert unsafe_calls(path.read_text(encoding='utf-8'), str(path)) == []


def test_restricted_unpickler_is_the_only_unpickler(tmp_path):
    sources = {path: path.read_text(encoding='utf-8') for path in PROJECT_FILES}
    assert [str(path.relative_to(REPO)) for path, text in sources.items() if 'Unpickler' in text] == ['utils.py']
    evil = tmp_path / 'evil.pkl'
    evil.write_bytes(pickle.dumps(RunsCode(tmp_path / 'ran')))
    with pytest.raises(UserError, match='evil.pkl: unsafe or unreadable pickle .*refusing to load'):
        utils.safe_pickle_load(str(evil))
    assert not (tmp_path / 'ran').exists()
