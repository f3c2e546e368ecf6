import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REFERENCE = REPO / 'tests' / 'golden'  # copy of the original's golden values (see golden/REFERENCE.md)


@pytest.fixture(scope='session')
def reference_dir():
    if not REFERENCE.is_dir():
        pytest.fail('golden values not found at %s: the checkout is incomplete' % REFERENCE)
    return REFERENCE


@pytest.fixture(scope='session')
def reference_config(reference_dir):
    return json.loads((reference_dir / 'config.json').read_text())
