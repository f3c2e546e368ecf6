"""The tiny VQA data root of the CLI tests; the builder lives in
tools/tiny_vqa.py so that tools/gpu_check.py can make one without the tests."""
from tools.tiny_vqa import COLOURS, FEATURE_DIM, GLOVE_DIM, WORDS, prepare, tsv_line, write_raw

__all__ = ['COLOURS', 'FEATURE_DIM', 'GLOVE_DIM', 'WORDS', 'prepare', 'tsv_line', 'write_raw']
