"""The documents the code cites ship, and hold what is cited.

* Every "FORMATS §N", "FORMATS.md section N", "sections N and M", "sections
  N-M" in the code, its error messages, the tools, the tests and the docs
  names a numbered section of docs/FORMATS.md, and every "§N.M" inside
  docs/FORMATS.md names one of its own sections or subsections.
* The same for docs/FEATURE_EXTRACTION.md (the detector's specification),
  whose citers name it once and then write a bare "§N", "§N.M", "§N-§M" or
  "§§N-M": every such citation in a file that names docs/FEATURE_EXTRACTION.md
  names one of its sections or subsections (§N.M: the numbered step or item
  N.M), and no other file uses a bare § (a reader would not know the document).
* Every test that docs/ROBUSTNESS.md names by its abbreviations (`BF[case]`,
  `FT::test_name`, ...) exists in the file its legend gives.
"""
import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORMATS = REPO / 'docs' / 'FORMATS.md'
FEATURE_EXTRACTION = REPO / 'docs' / 'FEATURE_EXTRACTION.md'
ROBUSTNESS = REPO / 'docs' / 'ROBUSTNESS.md'
NOT_SOURCES = {'.git', '.venv', '.hypothesis', '.benchmarks', 'data', 'saved_models', 'results', 'logits',
               '__pycache__'}

# "FORMATS" or "FORMATS.md", then "§" or "section(s)", then the numbers ("1, 4 and 5", "5-6", "§7, §9"),
# possibly across a line break
CITATION = re.compile(r'FORMATS(?:\.md)?(?P<marker>\s*(?:§|sections?\b))?(?P<numbers>[\s\d,§\-–]*(?:and\s+\d+)?)')
# a bare "§N", "§N.M", "§N-§M", "§N.M-§N.K" or "§§N-M": the citations of docs/FEATURE_EXTRACTION.md in a
# file that names it (FORMATS citations are taken out first)
SPEC_CITATION = re.compile(r'(?P<marker>§)§?(?P<numbers>\d+(?:\.\d+)?(?:\s*[-–]\s*§?\d+(?:\.\d+)?)?)')
SPEC_NAME = 'FEATURE_EXTRACTION.md'


def section_key(number):
    """'10.2' -> (10, 2): section numbers in document order."""
    return tuple(int(part) for part in number.split('.'))


def cited_sections(text, citation=CITATION):
    """[(line number, [section numbers '4', '2.3'] or None for a section marker without a number)] of
    every `citation` (a FORMATS one by default) that names sections in `text`; a bare "FORMATS.md" names
    no section. A range "5-6", "§2.2-§2.5" counts every section (or step of one section) in between."""
    found = []
    for match in citation.finditer(text):
        if not match.group('marker'):
            continue
        numbers = re.findall(r'\d+(?:\.\d+)?', match.group('numbers'))
        range_ = re.match(r'\s*(\d+)(?:\.(\d+))?\s*[-–]\s*§?(\d+)(?:\.(\d+))?', match.group('numbers'))
        if range_:
            first, first_step, last, last_step = range_.groups()
            if first_step is None and last_step is None:
                numbers += [str(number) for number in range(int(first), int(last) + 1)]
            elif first == last and first_step is not None and last_step is not None:
                numbers += ['%s.%d' % (first, step) for step in range(int(first_step), int(last_step) + 1)]
        found.append((text.count('\n', 0, match.start()) + 1, sorted(set(numbers), key=section_key) or None))
    return found


def without_formats_citations(text):
    """`text` with every FORMATS citation blanked (same length, same lines)."""
    return CITATION.sub(lambda match: re.sub(r'[^\n]', ' ', match.group()), text)


def spec_citations(text):
    """cited_sections of docs/FEATURE_EXTRACTION.md: the bare § citations outside FORMATS citations."""
    return cited_sections(without_formats_citations(text), SPEC_CITATION)


def source_files():
    """The .py, .md and .sh files of the project, but this file (its examples are not citations)."""
    for path in sorted(REPO.rglob('*')):
        parts = set(path.relative_to(REPO).parts)
        if path.suffix in ('.py', '.md', '.sh') and path.is_file() and not parts & NOT_SOURCES \
                and path != Path(__file__).resolve():
            yield path


def numbered_sections(path):
    """{'1', '1.2', ...}: the numbers of the sections and subsections ("## 1. ...", "### 1.2 ...") of
    the document `path`."""
    return set(re.findall(r'^#{2,3} (\d+(?:\.\d+)?)\.? ', path.read_text(encoding='utf-8'), re.MULTILINE))


def formats_headings():
    return numbered_sections(FORMATS)


def test_the_citation_reader_sees_every_form_in_use():
    text = ('a (FORMATS.md sections 1,\n4 and 5) b (FORMATS §7, §9) c FORMATS.md sections 5-6; d\n'
            'FORMATS section 2) e FORMATS.md §2). f (FORMATS.md) g FORMATS §1.4 h FORMATS section x')
    assert cited_sections(text) == [(1, ['1', '4', '5']), (2, ['7', '9']), (2, ['5', '6']), (3, ['2']),
                                    (3, ['2']), (3, ['1']), (3, None)]


def test_the_specification_citation_reader_sees_every_form_in_use():
    text = ('a (§3-§9, §12) b §2.4: c\n(§2.2-§2.5) d §§2-10 e §16.1, §14 f §12\'s g (FORMATS §7, §9) h §'
            '\ni FORMATS.md section 2 j §10.')
    assert spec_citations(text) == [(1, ['3', '4', '5', '6', '7', '8', '9']), (1, ['12']), (1, ['2.4']),
                                    (2, ['2.2', '2.3', '2.4', '2.5']), (2, ['2', '3', '4', '5', '6', '7', '8', '9', '10']),
                                    (2, ['16.1']), (2, ['14']), (2, ['12']), (3, ['10'])]


@pytest.mark.parametrize('document', [FORMATS, FEATURE_EXTRACTION], ids=lambda path: path.name)
def test_cited_documents_ship_with_numbered_sections(document):
    assert document.is_file(), 'docs/%s is cited by the code but missing' % document.name
    sections = {heading for heading in numbered_sections(document) if '.' not in heading}
    assert sections == {str(number) for number in range(1, len(sections) + 1)}, sorted(sections, key=float)


def test_every_formats_citation_names_an_existing_section():
    sections = {heading for heading in formats_headings() if '.' not in heading}
    citations, wrong = 0, []
    for path in source_files():
        for line, numbers in cited_sections(path.read_text(encoding='utf-8', errors='replace')):
            citations += 1
            where = '%s:%d' % (path.relative_to(REPO), line)
            if numbers is None:
                wrong.append('%s cites a FORMATS section without its number' % where)
            elif not set(numbers) <= sections:
                wrong.append('%s cites FORMATS section(s) %s; docs/FORMATS.md has %s'
                             % (where, sorted(set(numbers) - sections, key=section_key),
                                sorted(sections, key=section_key)))
    assert citations >= 20, 'found only %d FORMATS citations: is the reader broken?' % citations
    assert not wrong, '\n'.join(wrong)


def test_every_feature_extraction_citation_names_an_existing_section():
    """§N must be a section of docs/FEATURE_EXTRACTION.md, §N.M one of its numbered steps or items."""
    sections = numbered_sections(FEATURE_EXTRACTION)
    assert {str(number) for number in range(1, 17)} <= sections, sorted(sections, key=section_key)
    citations, citing, wrong = 0, 0, []
    for path in source_files():
        text = path.read_text(encoding='utf-8', errors='replace')
        if SPEC_NAME not in text and path != FEATURE_EXTRACTION:
            continue
        citing += 1
        for line, numbers in spec_citations(text):
            citations += 1
            missing = sorted(set(numbers) - sections, key=section_key)
            if missing:
                wrong.append('%s:%d cites §%s; docs/FEATURE_EXTRACTION.md has no such section'
                             % (path.relative_to(REPO), line, ', §'.join(missing)))
    assert citing >= 8 and citations >= 80, \
        'found only %d citations in %d files: is the reader broken?' % (citations, citing)
    assert not wrong, '\n'.join(wrong)


def test_a_bare_section_mark_is_in_a_file_that_names_its_document():
    """A "§N" that is no FORMATS citation only appears where docs/FEATURE_EXTRACTION.md is named
    (the documents themselves refer to their own sections)."""
    wrong = []
    for path in source_files():
        text = path.read_text(encoding='utf-8', errors='replace')
        if SPEC_NAME in text or path in (FORMATS, FEATURE_EXTRACTION):
            continue
        wrong += ['%s:%d' % (path.relative_to(REPO), line) for line, _ in spec_citations(text)]
    assert not wrong, 'bare § citations in files that do not name docs/%s: %s' % (SPEC_NAME, ', '.join(wrong))


@pytest.mark.parametrize('document', [FORMATS, FEATURE_EXTRACTION], ids=lambda path: path.name)
def test_cited_documents_refer_only_to_their_own_sections(document):
    headings = numbered_sections(document)
    text = document.read_text(encoding='utf-8')
    wrong = ['§%s' % number for number in re.findall(r'§(\d+(?:\.\d+)?)', text) if number not in headings]
    assert not wrong, 'docs/%s refers to missing sections: %s' % (document.name, ', '.join(wrong))


# ----------------------------------------------------------------- docs/ROBUSTNESS.md

def defined_in(path):
    """(test functions, bad-input case names) defined in a test file: cases are builders decorated
    with @case(...) and the keys of an argparse_cases({...}) table."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    tests, cases = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            if node.name.startswith('test_'):
                tests.add(node.name)
            if any(isinstance(decorator, ast.Call) and getattr(decorator.func, 'id', None) == 'case'
                   for decorator in node.decorator_list):
                cases.add(node.name)
        if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'argparse_cases':
            cases.update(key.value for key in node.args[0].keys)
    return tests, cases


def robustness_legend():
    """{abbreviation: test file} as docs/ROBUSTNESS.md's legend defines them (`BF` = `tests/...py`)."""
    text = ROBUSTNESS.read_text(encoding='utf-8')
    return dict(re.findall(r'`([A-Z]+)` =\s+`(tests/test_\w+\.py)`', text))


def test_robustness_md_names_tests_that_exist():
    legend = robustness_legend()
    assert {'BF', 'BV', 'BW', 'BX', 'BC', 'BO', 'BA', 'FT', 'DF'} <= set(legend), legend
    text = ROBUSTNESS.read_text(encoding='utf-8')
    defined = {name: defined_in(REPO / path) for name, path in legend.items()}
    wrong, checked = [], 0
    for name, test, case in re.findall(r'`([A-Z]+)(?:::(test_\w+\*?)|\[(\w+)\])', text):
        if name not in legend:
            continue
        tests, cases = defined[name]
        checked += 1
        if test.endswith('*') and not any(defined_test.startswith(test[:-1]) for defined_test in tests):
            wrong.append('%s::%s (%s has no test of that prefix)' % (name, test, legend[name]))
        elif test and not test.endswith('*') and test not in tests:
            wrong.append('%s::%s (%s has no such test)' % (name, test, legend[name]))
        if case and case not in cases:
            wrong.append('%s[%s] (%s registers no such case)' % (name, case, legend[name]))
    assert checked >= 100, 'found only %d test references: is the reader broken?' % checked
    assert not wrong, '\n'.join(wrong)


@pytest.mark.parametrize('path', sorted((REPO / 'tests').glob('test_bad_*.py')), ids=lambda path: path.name)
def test_every_bad_input_file_is_in_the_robustness_legend(path):
    assert 'tests/' + path.name in robustness_legend().values(), path.name


# ----------------------------------------------------------------- module names in the docs

ORIGINALS_FILES = {'generate_tsv.py'}  # the bottom-up-attention project's script, not ours
PACKAGES = ('formats', 'runs', 'detection')


def named_python_files(text):
    """[(line, name)] of every `something.py` or `folder/something.py` a text names."""
    return [(text.count('\n', 0, match.start()) + 1, match.group(1))
            for match in re.finditer(r'(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.py)\b', text)]


def misnamed(name):
    """Why the doc's `name` does not lead to a file of ours, or None. A path must exist; a bare name
    must be a module of the top level, tools/ or tests/: a package's module is named with its folder."""
    if name in ORIGINALS_FILES:
        return None
    if '/' in name:
        return None if (REPO / name).is_file() else 'no such file'
    if any((REPO / folder / name).is_file() for folder in ('.', 'tools', 'tests')):
        return None
    inside = [package for package in PACKAGES if (REPO / package / name).is_file()]
    return 'write %s/%s' % (inside[0], name) if inside else 'no such module'


def test_the_reader_of_module_names_sees_paths_and_bare_names():
    assert named_python_files('run `main.py`, see\nruns/checkpoints.py and tools/x-y.py; not a.pyc') == [
        (1, 'main.py'), (2, 'runs/checkpoints.py'), (2, 'tools/x-y.py')]
    assert misnamed('checkpoints.py') == 'write runs/checkpoints.py'
    assert misnamed('model_config.py') == 'no such module'
    assert misnamed('runs/checkpoints.py') is None and misnamed('compute_softscore.py') is None


def test_readme_and_docs_name_modules_that_exist_where_they_are():
    wrong = []
    for path in [REPO / 'README.md'] + sorted((REPO / 'docs').glob('*.md')):
        for line, name in named_python_files(path.read_text(encoding='utf-8')):
            problem = misnamed(name)
            if problem:
                wrong.append('%s:%d: %s (%s)' % (path.relative_to(REPO), line, name, problem))
    assert not wrong, '\n'.join(wrong)
