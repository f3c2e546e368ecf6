"""argparse helpers shared by the command lines: typed and bounded values,
boolean flags, the model flags, and refusing flags that a run would ignore."""
import argparse
import os
import sys

import base_model
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


def int_at_least(minimum, maximum=None):
    """argparse type: an integer >= minimum (and <= maximum when given); the
    error names the bounds."""
    bounds = '>= %d' % minimum if maximum is None else 'from %d to %d' % (minimum, maximum)

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError('expected an integer %s, got %r' % (bounds, text)) from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError('must be %s, got %d' % (bounds, value))
        return value
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
SEED = int_at_least(0, 2 ** 32 - 1)  # what numpy accepts; torch takes it too, offset by rank and epoch
MAX_NUM_HID = 16384  # 12.8x the released model's 1280; beyond, the model alone needs tens of GB
MAX_GLIMPSES = 64


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(text):
    """argparse type of --workers: an integer >= 0, capped (with a note) to
    the CPUs this process may use: more workers than CPUs only add memory
    and start-up time, and thousands exhaust the open-file limit."""
    value = non_negative_int(text)
    cpus = available_cpus()
    if value > cpus:
        print('note: --workers %d capped to %d, the CPUs available' % (value, cpus), file=sys.stderr)
        return cpus
    return value


def add_model_flags(parser, task_default='vqa'):
    """The original's model flags, shared by main.py, test.py, evaluate.py and ask.py."""
    model = parser.add_argument_group('model settings (taken from an --input checkpoint that records them)')
    model.add_argument('--task', choices=['vqa', 'flickr'], default=task_default,
                       help='vqa (VQA 2.0 answers) or flickr (Flickr30k Entities grounding; forces --op "" and '
                            '--gamma 1) (default: %(default)s)')
    model.add_argument('--num_hid', type=int_at_least(1, MAX_NUM_HID), default=1280,
                       help='hidden size (default: %(default)s)')
    model.add_argument('--model', type=str, default='ban', help='model family; only "ban" (default: %(default)s)')
    model.add_argument('--op', type=str, choices=['', 'c'], default='c',
                       help='"c": add a second word-embedding table, tf-idf initialised; "": no table '
                            '(default: %(default)s)')
    model.add_argument('--gamma', type=int_at_least(1, MAX_GLIMPSES), default=8, help='glimpses (default: %(default)s)')
    model.add_argument('--emb_dim', type=positive_int, default=300,
                       help='GloVe width: 300, or 50 for the demo (default: %(default)s)')
    parser.add_argument('--dataroot', type=str, default='data',
                        help='the prepared data (tools/process.sh; Flickr30k under <dataroot>/flickr30k) '
                             '(default: %(default)s)')
    parser.add_argument('--device', type=str, default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--workers', type=worker_count, default=min(4, available_cpus()),
                        help='DataLoader worker processes (at most the CPUs available)')


def apply_task_overrides(args):
    """The original forces op '' and one glimpse for Flickr30k."""
    if args.task == 'flickr':
        args.op = ''
        args.gamma = 1
    return args


def parse_command_line(parser, argv=None):
    """parser.parse_args(argv), noting in `args.given_flags` which of
    base_model.MODEL_FLAGS the command line gave (a flag given with its default value
    counts as given)."""
    unset = object()
    args = parser.parse_args(argv, namespace=argparse.Namespace(**{name: unset for name in base_model.MODEL_FLAGS}))
    args.given_flags = frozenset(name for name in base_model.MODEL_FLAGS if getattr(args, name) is not unset)
    for name in base_model.MODEL_FLAGS:
        if name not in args.given_flags:
            setattr(args, name, parser.get_default(name))
    return args
