"""The command lines' flags (runs/flags.py): which flags were given, the
boolean flag, no abbreviations, one error line for an unknown flag."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from runs import flags

REPO = Path(__file__).resolve().parents[1]
COMMAND_LINES = ['main', 'test', 'evaluate', 'ask', 'visualize']


def small_parser():
    parser = flags.FlagParser()
    parser.add_argument('--gamma', type=int, default=8)
    flags.bool_flag(parser, '--use_vg', False, 'add VG')
    flags.bool_flag(parser, '--tfidf', True, 'tf-idf', bare_means=False)
    group = parser.add_flag_group('model')
    group.add_argument('--op', default='c')
    parser.add_argument('--phrase', action='append', default=[])
    return parser


def test_given_flags_are_those_on_the_command_line_whatever_their_value():
    args = small_parser().parse(['--gamma', '8', '--use_vg', '--op=', '--phrase', 'a', '--phrase', 'b'])
    assert args.given_flags == {'gamma', 'use_vg', 'op', 'phrase'}
    assert (args.gamma, args.use_vg, args.tfidf, args.op, args.phrase) == (8, True, True, '', ['a', 'b'])
    defaults = small_parser().parse([])
    assert defaults.given_flags == set()
    assert (defaults.gamma, defaults.use_vg, defaults.tfidf, defaults.op, defaults.phrase) == (8, False, True, 'c', [])


@pytest.mark.parametrize('argv, expected', [([], True), (['--tfidf'], False), (['--tfidf', 'True'], True),
                                            (['--tfidf', 'no'], False), (['--tfidf=1'], True)])
def test_the_boolean_flag_takes_a_bare_flag_or_a_spelled_value(argv, expected):
    assert small_parser().parse(argv).tfidf is expected


def test_a_bad_boolean_value_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        small_parser().parse(['--use_vg', 'maybe'])
    assert stopped.value.code == 2
    assert "argument --use_vg: expected True or False, got 'maybe'" in capsys.readouterr().err


@pytest.mark.parametrize('cli', COMMAND_LINES)
def test_no_abbreviations_and_an_unknown_flag_is_one_line_naming_the_closest(cli, capsys):
    module = importlib.import_module(cli)
    for argv, closest in ((['--datroot', 'data'], '--dataroot'), (['--inpu', 'x'], '--input')):
        with pytest.raises(SystemExit) as stopped:
            module.parse_args(argv + ['--question', 'q'] if cli in ('ask', 'visualize') else argv)
        assert stopped.value.code == 2
        assert capsys.readouterr().err == ('%s: error: unknown flag %s; did you mean %s? (see --help)\n'
                                           % (Path(sys.argv[0]).name, argv[0], closest))


def test_main_py_epoch_is_not_epochs(capsys):
    import main
    with pytest.raises(SystemExit) as stopped:
        main.parse_args(['--epoch', '3'])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.endswith('error: unknown flag --epoch; did you mean --epochs? (see --help)\n')


def test_an_unknown_word_that_is_no_flag_and_a_flag_close_to_nothing(capsys):
    with pytest.raises(SystemExit):
        small_parser().parse(['stray'])
    assert capsys.readouterr().err.endswith("error: unexpected argument 'stray' (every value follows its flag; "
                                            "see --help)\n")
    with pytest.raises(SystemExit):
        small_parser().parse(['--zzzzzz'])
    assert capsys.readouterr().err.endswith('error: unknown flag --zzzzzz (see --help for the flags)\n')


def test_unknown_flag_in_a_real_process_is_one_line():
    result = subprocess.run([sys.executable, 'main.py', '--datroot', 'data'], cwd=str(REPO), capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert result.stderr == 'main.py: error: unknown flag --datroot; did you mean --dataroot? (see --help)\n'


def test_every_parser_of_the_project_is_a_flag_parser():
    """No abbreviations and the one-line unknown-flag error everywhere:
    tools/ and the command lines build their parsers with FlagParser."""
    plain = [str(path.relative_to(REPO)) for path in sorted(REPO.glob('*.py')) + sorted(REPO.glob('*/*.py'))
             if 'tests' not in path.parts and 'argparse.ArgumentParser(' in path.read_text(encoding='utf-8')
             and path != REPO / 'runs' / 'flags.py']
    assert plain == []


@pytest.mark.parametrize('tool, wrong, closest', [('compute_softscore', '--dataroo', '--dataroot'),
                                                  ('create_dictionary', '--glov', '--glove')])
def test_a_tool_refuses_an_abbreviation_in_one_line(tool, wrong, closest):
    result = subprocess.run([sys.executable, 'tools/%s.py' % tool, wrong, 'x'], cwd=str(REPO), capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert result.stderr == '%s.py: error: unknown flag %s; did you mean %s? (see --help)\n' % (tool, wrong, closest)


@pytest.mark.parametrize('cli', ['main', 'evaluate', 'test'])
def test_a_data_root_that_does_not_exist_is_named_as_a_missing_folder(cli, tmp_path, capsys):
    import utils
    module = importlib.import_module(cli)
    missing = tmp_path / 'no_such_data'
    argv = ['--dataroot', str(missing), '--device', 'cpu']
    if cli != 'main':
        argv += ['--input', str(make_checkpoint(tmp_path))]
    else:
        argv += ['--output', str(tmp_path / 'out')]
    with pytest.raises(SystemExit) as stopped:
        utils.run_cli(module.main, argv)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == ('error: --dataroot %s does not exist: pass the folder that holds the prepared '
                                       'data (tools/process.sh (tools/create_dictionary.py) writes it)\n' % missing)


def test_a_data_root_that_is_a_file_is_named_as_such(tmp_path):
    from formats.dictionary import load_dictionary
    from utils import UserError
    a_file = tmp_path / 'data.txt'
    a_file.write_text('x')
    with pytest.raises(UserError, match='--dataroot %s is a file, not a folder: pass the folder' % a_file):
        load_dictionary(str(a_file), 'flickr')


def make_checkpoint(folder):
    """A small checkpoint of ours (with its config), for the command lines that load one."""
    import torch

    import base_model
    config = base_model.ModelConfig(task='vqa', num_hid=16, gamma=2, op='', emb_dim=8, ntoken=7, v_dim=16,
                                    num_answers=6)
    path = folder / 'model.pth'
    torch.save({'epoch': 0, 'model_state': base_model.build_model(config).state_dict(), 'config': config.to_dict()},
               path)
    return path
