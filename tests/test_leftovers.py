"""Tests leave nothing behind in the system's temporary folder: their files go
under pytest's tmp_path (which pytest prunes), never into folders made with
`mktemp -d` or `tempfile.mkdtemp` that nothing removes, and the torchrun
launcher, which leaves a torchelastic_* folder in the temporary folder, runs
with TMPDIR set to a tmp_path folder."""
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# what makes a folder or file that outlives the test (this file names the patterns, so it is left out)
LEFT_BEHIND = re.compile(r'mktemp -d|mkdtemp\(|delete=False')
SOURCES = sorted(path for path in TESTS.rglob('*.py') if path.name != Path(__file__).name)


@pytest.mark.parametrize('path', SOURCES, ids=[str(path.relative_to(TESTS)) for path in SOURCES])
def test_no_temporary_folder_outlives_the_test(path):
    text = path.read_text()
    assert not LEFT_BEHIND.search(text), LEFT_BEHIND.search(text).group(0)
    if 'torch.distributed.run' in text:
        assert 'TMPDIR=' in text, 'torchrun leaves a torchelastic_* folder in /tmp: set TMPDIR to a tmp_path folder'


def test_the_check_finds_what_it_looks_for():
    assert LEFT_BEHIND.search('export SMALL=$(mktemp -d)') and LEFT_BEHIND.search('tempfile.mkdtemp()')
    assert LEFT_BEHIND.search('NamedTemporaryFile(delete=False)') and not LEFT_BEHIND.search('tmp_path / "x"')
