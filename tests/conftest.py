"""Shared fixtures: the golden values, and tiny data roots in the release
formats built ONCE per test run (tests that change a root copy it first)."""
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HELPERS = REPO / 'tests' / 'helpers'  # the tiny data roots and shared test code, imported by module name
sys.path[:0] = [str(HELPERS), str(REPO)]
pytest.register_assert_rewrite('bad_inputs')  # its checks are the bad-input tests' assertions

import bad_inputs  # noqa: E402
import tiny_flickr  # noqa: E402  (the helpers need the repo root and tests/helpers on sys.path, set above)
import tiny_vqa  # noqa: E402
from data_helpers import TRAIN_FLAGS, prepared_root  # noqa: E402

REFERENCE = REPO / 'tests' / 'golden'  # copy of the original's golden values (see golden/REFERENCE.md)


@pytest.fixture(scope='session')
def reference_dir():
    if not REFERENCE.is_dir():
        pytest.fail('golden values not found at %s: the checkout is incomplete' % REFERENCE)
    return REFERENCE


@pytest.fixture(scope='session')
def reference_config(reference_dir):
    return json.loads((reference_dir / 'config.json').read_text())


@pytest.fixture(scope='session')
def tiny_root(tmp_path_factory):
    """tests/helpers/tiny_vqa.py: a VQA root with a learnable signal, prepared with the real tools."""
    root = tmp_path_factory.mktemp('tiny_vqa')
    tiny_vqa.write_raw(root)
    tiny_vqa.prepare(root)
    return str(root)


@pytest.fixture(scope='session')
def trained(tiny_root, tmp_path_factory):
    """A run folder of 4 epochs (model_epoch0-3.pth) trained on tiny_root with tests/helpers/tiny_vqa.py's sizes."""
    import main
    output = tmp_path_factory.mktemp('trained') / 'ban'
    main.main(['--dataroot', tiny_root, '--output', str(output), '--use_both', '--epochs', '4',
               '--emb_dim', str(tiny_vqa.GLOVE_DIM), '--num_hid', '16', '--gamma', '2', '--batch_size', '16',
               '--workers', '0', '--device', 'cpu'])
    return output


@pytest.fixture(scope='session')
def vqa_root(tmp_path_factory):
    """tests/helpers/data_helpers.py's prepared VQA root and a 1-epoch checkpoint in <root>/model."""
    import main
    root = prepared_root(tmp_path_factory.mktemp('robust_vqa') / 'data')
    main.main(['--dataroot', root, '--output', os.path.join(root, 'model'), '--epochs', '1'] + TRAIN_FLAGS)
    return root


@pytest.fixture(scope='session')
def flickr_root(tmp_path_factory):
    """tests/helpers/tiny_flickr.py: a prepared Flickr30k tree, <root>/flickr30k and <root>/glove."""
    root = tmp_path_factory.mktemp('robust_flickr')
    tiny_flickr.write_raw(root)
    tiny_flickr.prepare(root)
    return str(root)


@pytest.fixture(scope='session')
def cli_results(vqa_root, flickr_root, tmp_path_factory):
    """Every bad-input case the collected tests/test_bad_*.py files registered (tests/helpers/bad_inputs.py),
    run in one child process: {case: (result, its data root, snapshot of that root before the command)}."""
    return bad_inputs.run_cases(vqa_root, flickr_root, tmp_path_factory.mktemp('cases'))
