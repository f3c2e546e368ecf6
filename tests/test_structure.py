"""The layout and the import graph (read from the source with ast).

The top level shows the paper: the design card's twelve modules and the
command lines, at most 18 files; support code sits in the packages
`formats/` (readers of the release file formats), `runs/` (checkpoints,
flags, devices, loaders: what a run needs), `detection/` (the region
detector) and `report/` (evaluate.py --report's page). Imports run one way: tools/ and tests/ import the project, never
the reverse; the packages import no command line; `formats/` imports only
`formats/` and `utils`; model modules import no data module; no cycles,
packages included; project imports at the top of files. Every module
imports in a fresh interpreter."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CARD_MODULES = {'main', 'train', 'test', 'base_model', 'attention', 'bc', 'counting', 'fc', 'language_model',
                'classifier', 'dataset', 'utils'}
COMMAND_LINES = {'main', 'test', 'evaluate', 'ask', 'visualize'}
MODEL_MODULES = {'base_model', 'attention', 'bc', 'counting', 'fc', 'language_model', 'classifier'}
MODEL_MAY_IMPORT = MODEL_MODULES | {'utils'}
PACKAGES = ('formats', 'runs', 'detection', 'report')
REPORT_MAY_IMPORT = {'formats', 'runs', 'report', 'utils', 'base_model'}  # packages by name, or modules
MAX_TOP_LEVEL = 18


def module_files():
    """{module name: path} of the top-level modules, the packages' modules and tools/ modules."""
    files = {path.stem: path for path in REPO.glob('*.py')}
    for package in PACKAGES + ('tools',):
        files.update({package + '.' + path.stem: path for path in (REPO / package).glob('*.py')
                      if path.stem != '__init__'})
    return files


MODULES = module_files()


def resolve(name, project):
    """The project module an imported dotted `name` refers to, or None."""
    if name in project:
        return name
    head = name.split('.')[0]
    return head if head in project else None


def imports_of(path, project):
    """[(imported project module, inside a function?)] of one file."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                # `from runs import x` imports the module runs.x
                names = [child.module + '.' + alias.name for alias in child.names] + [child.module]
            else:
                visit(child, nested)
                continue
            for name in names:
                target = resolve(name, project)
                if target is not None and target not in PACKAGES + ('tools',):
                    found.append((target, in_function))
    visit(ast.parse(path.read_text(encoding='utf-8'), str(path)), False)
    return sorted(set(found))


def import_graph():
    project = set(MODULES) | set(PACKAGES) | {'tools'}
    return {name: imports_of(path, project) for name, path in MODULES.items()}


GRAPH = import_graph()


def edges():
    return {name: sorted({target for target, _ in targets if target != name}) for name, targets in GRAPH.items()}


def find_cycle(graph):
    """One cycle of `graph` as a list of modules, or None."""
    state = {}

    def walk(node, stack):
        state[node] = 'open'
        stack.append(node)
        for target in graph.get(node, ()):
            if state.get(target) == 'open':
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = walk(target, stack)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 'done'
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = walk(node, [])
            if cycle:
                return cycle
    return None


def test_the_graph_reader_sees_imports_cycles_and_nested_imports(tmp_path):
    project = {'a', 'b', 'tools', 'tools.c', 'runs', 'runs.d'}
    probe = tmp_path / 'probe.py'
    probe.write_text('import a\nfrom tools import c\nfrom runs.d import y\n\ndef f():\n    from b import x\n')
    assert imports_of(probe, project) == [('a', False), ('b', True), ('runs.d', False), ('tools.c', False)]
    assert find_cycle({'a': ['b'], 'b': ['c'], 'c': ['a']}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': ['b'], 'b': ['c'], 'c': []}) is None


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(MODULES)
    code = ('import importlib, sys\n'
            'failed = []\n'
            'for name in %r:\n'
            '    try:\n'
            '        importlib.import_module(name)\n'
            '    except Exception as err:\n'
            '        failed.append("%%s: %%s: %%s" %% (name, type(err).__name__, err))\n'
            'print("\\n".join(failed))\n'
            'sys.exit(1 if failed else 0)\n' % names)
    result = subprocess.run([sys.executable, '-c', code], cwd=str(REPO), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_graph_has_no_cycle():
    cycle = find_cycle(edges())
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_top_level_modules_do_not_import_tools():
    wrong = ['%s -> %s' % (name, target) for name, targets in edges().items()
             if not name.startswith('tools.') for target in targets if target.startswith('tools.')]
    assert not wrong, 'top-level modules importing tools/: %s' % ', '.join(wrong)


def test_project_imports_sit_at_the_top_of_files():
    nested = ['%s imports %s inside a function' % (name, target)
              for name, targets in GRAPH.items() for target, in_function in targets if in_function]
    assert not nested, '; '.join(nested)


def test_model_modules_import_no_data_module():
    wrong = ['%s -> %s' % (name, target) for name in sorted(MODEL_MODULES)
             for target in edges()[name] if target not in MODEL_MAY_IMPORT]
    assert not wrong, 'model modules importing beyond the model: %s' % ', '.join(wrong)


def test_top_level_shows_the_card_modules_and_the_command_lines():
    top = {path.stem for path in REPO.glob('*.py')}
    assert CARD_MODULES <= top, 'design-card modules missing at the top level: %s' % sorted(CARD_MODULES - top)
    assert COMMAND_LINES <= top
    assert len(top) <= MAX_TOP_LEVEL, 'top level has %d modules (at most %d): %s' % (len(top), MAX_TOP_LEVEL,
                                                                                 sorted(top))
    for package in PACKAGES:
        assert (REPO / package / '__init__.py').is_file(), package
    assert not (REPO / 'data' / '__init__.py').exists()  # data/ holds the data, not code


def test_packages_import_no_command_line_and_formats_stay_readers():
    wrong = []
    for name, targets in edges().items():
        package = name.split('.')[0]
        if package not in PACKAGES:
            continue
        for target in targets:
            if target in COMMAND_LINES | {'dataset', 'train'} or target.startswith('tools.'):
                wrong.append('%s -> %s' % (name, target))
            if package == 'formats' and not (target.startswith('formats.') or target == 'utils'):
                wrong.append('%s -> %s (a reader imports only readers and utils)' % (name, target))
            if package == 'detection' and not (target.startswith('detection.') or target == 'utils'):
                wrong.append('%s -> %s' % (name, target))
            if package == 'report' and target.split('.')[0] not in REPORT_MAY_IMPORT:
                wrong.append('%s -> %s (the report reads formats/, runs/, utils and base_model)' % (name, target))
    assert not wrong, '; '.join(wrong)


def test_nothing_imports_the_tests():
    wrong = ['%s -> %s' % (name, target) for name, targets in edges().items() for target in targets
             if target.startswith('tests')]
    assert not wrong


def test_the_originals_python_api_imports_in_a_fresh_interpreter():
    code = ('import inspect\n'
            'from dataset import (Dictionary, VQAFeatureDataset, VisualGenomeFeatureDataset, '
            'Flickr30kFeatureDataset, tfidf_from_questions)\n'
            'import base_model\n'
            'print(list(inspect.signature(base_model.build_ban).parameters)[:5])\n')
    result = subprocess.run([sys.executable, '-c', code], cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['dataset', 'num_hid', 'op', 'gamma', 'task']"


def test_tests_see_tools_only_as_the_tools_package():
    """tools/ is not on sys.path, so tools.vqa_eval cannot load a second time as vqa_eval."""
    assert str(REPO / 'tools') not in [str(Path(entry).resolve()) for entry in sys.path if entry]
    with pytest.raises(ImportError):
        __import__('vqa_eval')


def test_tests_hold_test_files_and_their_helpers_sit_in_helpers():
    """tests/ holds conftest.py and test_*.py files; shared test code (tiny data roots, the bad-input
    machinery) sits in tests/helpers/, which holds no test file and which conftest puts on sys.path."""
    tests = REPO / 'tests'
    stray = sorted(path.name for path in tests.glob('*.py') if path.name != 'conftest.py'
                   and not path.name.startswith('test_'))
    assert not stray, 'helpers belong in tests/helpers/: %s' % stray
    helpers = sorted(path.name for path in (tests / 'helpers').glob('*.py'))
    assert {'tiny_vqa.py', 'tiny_flickr.py', 'tiny_detector.py', 'robust_helpers.py', 'data_helpers.py',
            'bad_inputs.py'} <= set(helpers), helpers
    assert not [name for name in helpers if name.startswith('test_')], helpers
    assert str(tests / 'helpers') in [str(Path(entry).resolve()) for entry in sys.path if entry]
