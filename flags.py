"""argparse helpers shared by the command lines: boolean flags, and refusing
flags that a run would ignore."""
import argparse
import os

from utils import UserError


def str2bool(value):
    """argparse type accepting true/false spellings (True, false, 1, 0, yes, no)."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ('true', 't', 'yes', 'y', '1'):
        return True
    if lowered in ('false', 'f', 'no', 'n', '0'):
        return False
    raise argparse.ArgumentTypeError('expected True or False, got %r' % value)


def explicit_flags(parser, argv=None):
    """The destinations of the flags given on the command line `argv`
    (default sys.argv[1:]), abbreviations included, whatever their value:
    `argv` is parsed again with every default suppressed and no conversion."""
    saved = [(action, action.default, action.type) for action in parser._actions]
    try:
        for action in parser._actions:
            action.default, action.type = argparse.SUPPRESS, None
        given, _ = parser.parse_known_args(argv)
    finally:
        for action, default, kind in saved:
            action.default, action.type = default, kind
    return set(vars(given))


def refuse_ignored_flags(parser, argv, rules):
    """argparse error (exit 2) for the first flag given on the command line
    that this run would ignore: `rules` is [(dest, ignored?, why)]. A flag
    ignored in silence gives other results than the user asked for."""
    given = explicit_flags(parser, argv)
    for dest, ignored, why in rules:
        if dest in given and ignored:
            parser.error('argument --%s: %s' % (dest, why))


def check_output_folder(path, flag, what):
    """UserError when `path` (a folder the run writes `what` into) is a file."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError('%s %s is a file, but %s a folder; name a folder' % (flag, path, what))
