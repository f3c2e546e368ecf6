"""README.md's "Use it from Python": its code block runs as written, on the
tiny data root as `data/` and the tiny trained run as `saved_models/ban`, and
answers as `ask.py` does for the same image and question."""
import contextlib
import io
import os
import re
from pathlib import Path

import ask

README = Path(__file__).resolve().parents[1] / 'README.md'


def python_section_code():
    """The ```python block of the README's "Use it from Python" section, exactly as written."""
    text = README.read_text(encoding='utf-8')
    section = re.search(r'^## Use it from Python\n(.*?)(?=^## )', text, re.MULTILINE | re.DOTALL)
    assert section, 'README.md has no "## Use it from Python" section'
    blocks = re.findall(r'^```python\n(.*?)^```$', section.group(1), re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, 'the section should hold one python block, found %d' % len(blocks)
    return blocks[0]


def test_the_readme_python_lines_answer_as_ask_py_does(tiny_root, trained, tmp_path, monkeypatch):
    code = python_section_code()
    assert 'from dataset import Dictionary' in code and 'base_model' in code  # the original's API
    (tmp_path / 'saved_models').mkdir()
    os.symlink(tiny_root, tmp_path / 'data')
    os.symlink(trained, tmp_path / 'saved_models' / 'ban')
    monkeypatch.chdir(tmp_path)
    namespace = {'__name__': 'readme'}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(README), 'exec'), namespace)
    answer = printed.getvalue().strip().splitlines()[-1]

    model, val, logits = namespace['model'], namespace['val'], namespace['logits']
    assert not model.training
    assert logits.shape == (1, len(val.label2ans))
    assert namespace['path'] == os.path.join('saved_models', 'ban', 'model_epoch3.pth')
    image_id = val.entries[0]['image_id']
    top = ask.main(['--dataroot', tiny_root, '--input', str(trained), '--image_id', str(image_id),
                    '--question', 'What color is the ball?', '--device', 'cpu', '--top', '1'])
    assert answer == top[0][0]
    assert abs(logits.sigmoid().max().item() - top[0][1]) < 1e-5
