"""Helpers shared by the robustness suites (bad inputs, atomic writes,
resume, security) and the command-line tests."""
import argparse
import hashlib
import json
import os

import pytest

from data_helpers import FEATURE_DIM

CONVERTER = 'tools/adaptive_detection_features_converter.py'


def snapshot(folder):
    """{relative path: sha256} of every file under `folder` (a symbolic link:
    its target; a folder: 'folder', so an empty one counts too)."""
    digests = {}
    for directory, folders, names in os.walk(folder):
        for name in folders:
            digests[os.path.relpath(os.path.join(directory, name), folder)] = 'folder'
        for name in names:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                digests[os.path.relpath(path, folder)] = 'link to ' + os.readlink(path)
                continue
            with open(path, 'rb') as handle:
                digests[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return digests


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def temporary_files(folder):
    return [name for name in os.listdir(folder) if name.endswith('.tmp')]


def converter_cmd(root, split='val'):
    return [CONVERTER, '--dataroot', root, '--split', split, '--feature_dim', str(FEATURE_DIM)]


class RunsCode:
    """Unpickling this calls os.system: a pickle that carries code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, ('touch %s' % self.marker,)


def parser_built_by(monkeypatch, call):
    """The first argparse parser that `call()` builds, stopped as it starts parsing."""
    parsers = []

    def capture(parser, *args, **kwargs):
        parsers.append(parser)
        raise SystemExit(0)
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', capture)
    with pytest.raises(SystemExit):
        call()
    return parsers[0]
