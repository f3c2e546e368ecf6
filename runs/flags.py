"""The command lines' flags, all defined here: one parser per command line
(main.py, test.py, evaluate.py, ask.py, visualize.py), the model flags they
share, typed and bounded values, the optional boolean flag, which flags the
command line gave, and the rules that refuse a flag a run would ignore.

Every parser is a FlagParser: no abbreviations (`--epoch` never stands for
`--epochs`), and an unknown flag is one error line naming the closest flag.
"""
import argparse
import difflib
import math
import os

from utils import UserError, note


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
        note('--workers %d capped to %d, the CPUs available' % (value, cpus))
        return cpus
    return value


# ----------------------------------------------------------------- the parser

class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser with abbreviations off, that knows which flags the
    command line gave, and checks the parsed flags with `check(parser,
    args)` (the command line's rules; errors through parser.error).

    Every flag added (to the parser or to a group of add_flag_group) is recorded
    from the action that add_argument returns; `parse` fills a namespace in
    which each flag starts unset, so what argparse set is what was given."""

    def __init__(self, description=None, check=None, **kwargs):
        self.flags = []  # set before ArgumentParser.__init__ adds --help
        self.check = check
        super().__init__(description=description, allow_abbrev=False, **kwargs)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        self.flags.append(action)
        return action

    def add_flag_group(self, title):
        """add_argument_group(title) whose flags are recorded too (argparse
        itself builds groups with add_argument_group, so that one stays as it is)."""
        return _RecordedGroup(self, self.add_argument_group(title))

    def parse(self, argv=None):
        """parse_args(argv) with `args.given_flags`: the destinations of the
        flags the command line gave (a flag given with its default value
        counts as given); then the check."""
        values = [action for action in self.flags if action.default is not argparse.SUPPRESS]
        # an appending flag starts from None, as argparse starts it, so that it appends to a fresh list
        unset = {action.dest: None if isinstance(action.default, list) else UNSET for action in values}
        args = self.parse_args(argv, namespace=argparse.Namespace(**unset))
        args.given_flags = frozenset(dest for dest, start in unset.items() if getattr(args, dest) is not start)
        for dest in unset:
            if dest not in args.given_flags:
                setattr(args, dest, self.get_default(dest))
        if self.check is not None:
            self.check(self, args)
        return args

    def error(self, message):
        """argparse's error (usage, then `<prog>: error: message`, exit 2);
        an unknown flag is one line naming the closest known flag instead."""
        if message.startswith('unrecognized arguments: '):
            unknown = message[len('unrecognized arguments: '):].split()
            flag = next((word for word in unknown if word.startswith('-')), unknown[0])
            self.exit(2, '%s: error: %s\n' % (self.prog, unknown_flag(flag, self.option_strings())))
        super().error(message)

    def option_strings(self):
        return [option for action in self.flags for option in action.option_strings]


class _RecordedGroup:
    """An argument group whose flags its FlagParser records."""

    def __init__(self, parser, group):
        self.parser, self.group = parser, group

    def add_argument(self, *args, **kwargs):
        action = self.group.add_argument(*args, **kwargs)
        self.parser.flags.append(action)
        return action


UNSET = object()  # the value of a flag not (yet) given


def unknown_flag(word, known):
    """The error for an unknown command-line word: the closest flag of
    `known` when one is close, else where the flags are listed."""
    name = word.split('=', 1)[0]
    if not name.startswith('-'):
        return 'unexpected argument %r (every value follows its flag; see --help)' % word
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return 'unknown flag %s; did you mean %s? (see --help)' % (name, close[0])
    return 'unknown flag %s (see --help for the flags)' % name


def bool_flag(container, name, default, help_text, bare_means=True):
    """An optional boolean flag: `--x` (means `bare_means`), `--x True`,
    `--x false` (any spelling str2bool takes)."""
    return container.add_argument(name, type=str2bool, nargs='?', const=bare_means, default=default, help=help_text)


def refuse_ignored_flags(parser, args, rules):
    """argparse error (exit 2) for the first flag given on the command line
    that this run would ignore: `rules` is [(dest, ignored?, why)]. A flag
    ignored in silence gives other results than the user asked for."""
    for dest, ignored, why in rules:
        if dest in args.given_flags and ignored:
            parser.error('argument --%s: %s' % (dest, why))


# ----------------------------------------------------------------- flags shared by the command lines

def add_model_flags(parser, task_default='vqa'):
    """The original's model flags, shared by main.py, test.py, evaluate.py and ask.py."""
    model = parser.add_flag_group('model settings (taken from an --input checkpoint that records them)')
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


def add_epoch_flag(parser):
    parser.add_argument('--epoch', type=int, default=None,
                        help='in an --input folder: model_epoch<N>.pth (default: the highest N, i.e. the best epoch '
                             'of a run with validation, the last of a --use_both run); 0 or less: model.pth')


def apply_task_overrides(args):
    """The original forces op '' and one glimpse for Flickr30k."""
    if args.task == 'flickr':
        args.op = ''
        args.gamma = 1
    return args


# ----------------------------------------------------------------- main.py

def command_line(description, check=None):
    """The parser of a command line whose --help shows its docstring `description` as written."""
    return FlagParser(description, check, formatter_class=argparse.RawDescriptionHelpFormatter)


def main_parser(description):
    parser = command_line(description, check_main_flags)
    add_model_flags(parser)
    parser.add_argument('--epochs', type=positive_int, default=13,
                        help='epochs in all (a resumed run continues up to this number)')
    bool_flag(parser, '--use_both', False, 'train on train+val (no validation)')
    bool_flag(parser, '--use_vg', False, 'add Visual Genome questions')
    bool_flag(parser, '--tfidf', True, 'tf-idf embedding table for op "c" (a bare --tfidf turns it OFF, as in the '
                                       'original)', bare_means=False)
    parser.add_argument('--tfidf_sources', type=str, default='vqa,vg,cap',
                        help='sentences of the tf-idf graph: vqa (questions), vg (Visual Genome questions), cap '
                             '(COCO captions); drop cap to skip the captions, as the original README suggests')
    parser.add_argument('--input', type=str, default=None,
                        help='checkpoint to resume from (--evaluate: to evaluate): a file, or the folder a run saved '
                             'into (resume: its newest model_last.pth or model_interrupted.pth; --evaluate: its '
                             'highest model_epoch<N>.pth)')
    parser.add_argument('--output', '--out', type=str, default=None,  # --out: the original README's spelling
                        help='checkpoint folder (default saved_models/ban, or saved_models/flickr); one run per '
                             'folder: a fresh run refuses a folder holding another run\'s checkpoints')
    parser.add_argument('--overwrite', action='store_true',
                        help='let a fresh run delete the checkpoints and logs of the run in --output')
    parser.add_argument('--batch_size', type=positive_int, default=256,
                        help='global batch (split over torchrun processes)')
    parser.add_argument('--seed', type=SEED, default=1204, help='random seed (offset by rank)')
    parser.add_argument('--amp', choices=['off', 'bf16', 'fp16'], default='off', help='mixed precision')
    parser.add_argument('--lr', type=float, default=None, help='base lr (default 1e-3 with validation, '
                                                               '7e-4 with --use_both)')
    bool_flag(parser, '--bucket', False, 'batch images of similar box counts together')
    bool_flag(parser, '--load_in_memory', False, 'read all features into RAM (fast, needs ~32 GB)')
    bool_flag(parser, '--fix_alignment', False, 'Flickr30k: correct the phrase/token alignment quirk')
    bool_flag(parser, '--evaluate', False, 'only evaluate --input (val for vqa, test for flickr)')
    return parser


def check_main_flags(parser, args):
    """main.py's rules: no flag that the run would ignore; --lr > 0 and finite."""
    refuse_ignored_flags(parser, args, main_ignored_flags(args))
    if args.lr is not None and not 0 < args.lr < math.inf:
        parser.error('argument --lr: must be > 0 and finite, got %r' % args.lr)


def main_ignored_flags(args):
    """[(flag dest, would it be ignored?, why)] of main.py."""
    rules = []
    if args.task == 'flickr':
        vqa_only = 'Flickr30k trains on its train split and validates on val; this flag is for --task vqa'
        rules += [('use_both', args.use_both, vqa_only), ('use_vg', args.use_vg, vqa_only),
                  ('tfidf', args.tfidf, 'the tf-idf table is for --task vqa with --op c'),
                  ('tfidf_sources', True, 'the tf-idf table is for --task vqa with --op c'),
                  ('op', args.op != '', "Flickr30k uses --op '' (as the original does); drop the flag"),
                  ('gamma', args.gamma != 1, 'Flickr30k uses one glimpse (as the original does); drop the flag')]
    else:
        rules.append(('fix_alignment', args.fix_alignment, 'the phrase alignment is for --task flickr'))
        if 'c' not in args.op:
            rules += [('tfidf', args.tfidf, "the tf-idf table exists only with --op c"),
                      ('tfidf_sources', True, "the tf-idf table exists only with --op c")]
        elif not args.tfidf:
            rules.append(('tfidf_sources', True, 'the tf-idf table is turned off (--tfidf false)'))
    if args.evaluate:
        only = '--evaluate only evaluates --input; this flag is for training'
        rules += [(dest, True, only) for dest in ('epochs', 'lr', 'tfidf', 'tfidf_sources')]
        rules += [('use_both', args.use_both, only), ('use_vg', args.use_vg, only), ('bucket', args.bucket, only),
                  ('amp', args.amp != 'off', only), ('load_in_memory', args.load_in_memory, only),
                  ('output', True, '--evaluate prints the metrics and writes no file (evaluate.py --output '
                                   'writes them to a JSON file)')]
    return rules


# ----------------------------------------------------------------- test.py

def test_parser(description):
    parser = command_line(description, check_test_flags)
    add_model_flags(parser)
    parser.add_argument('--label', type=str, default='', help='tag in the results file name')
    parser.add_argument('--split', choices=['test2015', 'test-dev2015'], default='test2015',
                        help='the questions to answer (default: test2015)')
    parser.add_argument('--input', type=str, default='saved_models/ban',
                        help='checkpoint file, or the folder main.py saved into')
    parser.add_argument('--output', type=str, default='results', help='folder of the results JSON')
    parser.add_argument('--batch_size', type=positive_int, default=256, help='questions per batch')
    bool_flag(parser, '--debug', False, 'print the first question and answer of every batch')
    bool_flag(parser, '--logits', False,
              'also save logits to logits/<model label>/logits<index>.pth (tools/ensemble.py)')
    parser.add_argument('--index', type=int, default=0, help='number in the logits file name')
    add_epoch_flag(parser)
    return parser


def check_test_flags(parser, args):
    """test.py's rules: --label is a file-name tag; --index needs --logits."""
    if any(separator and separator in args.label for separator in ('/', os.sep, os.altsep, '\0')):
        parser.error('argument --label: %r holds a path separator; it is a tag in the results file name (put '
                     'the folder in --output)' % args.label)
    refuse_ignored_flags(parser, args, [('index', not args.logits, 'it numbers the logits file; pass --logits')])


# ----------------------------------------------------------------- evaluate.py

REPORT_ITEMS = 48  # evaluate.py --report: gallery items


def evaluate_parser(description):
    parser = command_line(description, check_evaluate_flags)
    add_model_flags(parser)
    parser.add_argument('--input', type=str, default=None,
                        help='checkpoint file, or the folder main.py saved into (default saved_models/ban, or '
                             'saved_models/flickr)')
    add_epoch_flag(parser)
    parser.add_argument('--batch_size', type=positive_int, default=256, help='questions per batch')
    parser.add_argument('--split', type=str, default=None, help='default: val (vqa), test (flickr)')
    bool_flag(parser, '--fix_alignment', False,
              'Flickr30k: locate each phrase at its own last token (as main.py --fix_alignment)')
    parser.add_argument('--output', type=str, default=None, help='also write the metrics to this JSON file')
    parser.add_argument('--report', type=str, default=None,
                        help='also write a report page to this folder (DIR/index.html; opens offline)')
    parser.add_argument('--report_items', type=int_at_least(0), default=REPORT_ITEMS,
                        help='questions (phrases) in the report\'s gallery (default %(default)s)')
    parser.add_argument('--images', type=str, default=None,
                        help='folder of the photos (COCO_val2014_<id>.jpg, <image_id>.jpg or .png) the report\'s '
                             'gallery draws on; without it the boxes are drawn on empty frames')
    return parser


def check_evaluate_flags(parser, args):
    """evaluate.py's rules: no flag the evaluation would ignore; --output names a file."""
    refuse_ignored_flags(parser, args, [(flag, args.report is None, 'it shapes the report; add --report DIR')
                                        for flag in ('report_items', 'images')])
    if args.images is not None and not os.path.isdir(args.images):
        parser.error('argument --images: %s is not a folder' % args.images)
    forced = 'Flickr30k models use --op \'\' and --gamma 1 (as the original); drop the flag'
    refuse_ignored_flags(parser, args, [('fix_alignment', args.task == 'vqa' and args.fix_alignment,
                                         'the phrase alignment is for --task flickr'),
                                        ('op', args.task == 'flickr' and args.op != '', forced),
                                        ('gamma', args.task == 'flickr' and args.gamma != 1, forced)])
    if args.output is not None and os.path.isdir(args.output):
        parser.error('argument --output: %s is a folder; name the JSON file to write the metrics to' % args.output)


def check_evaluate_split(parser, args):
    """After the checkpoint set --task: --split defaults to the task's and must have answers."""
    if args.split is None:
        args.split = 'test' if args.task == 'flickr' else 'val'
    allowed = ('train', 'val', 'test') if args.task == 'flickr' else ('train', 'val')
    if args.split not in allowed:
        parser.error('argument --split: %s has no answers for %s; choose from %s (test2015 submissions '
                     'are written by test.py)' % (args.split, args.task, ', '.join(allowed)))


# ----------------------------------------------------------------- ask.py and visualize.py

def ask_parser(description):
    parser = command_line(description)
    add_model_flags(parser)
    parser.add_argument('--input', type=str, default='saved_models/ban',
                        help='checkpoint file, or the folder main.py saved into')
    add_epoch_flag(parser)
    parser.add_argument('--image_id', type=int, default=None,
                        help='an image whose features the data root holds (VQA: COCO id of train, val or test2015; '
                             'Flickr30k: of train, val or test)')
    parser.add_argument('--image', type=str, default=None,
                        help='a photo; without --image_id its region features are extracted on the fly')
    parser.add_argument('--detector_weights', type=str, default=None,
                        help='resnet101_faster_rcnn_final.caffemodel or bua-caffe-frcn-r101-k10-100.pth, '
                             'for --image without --image_id')
    parser.add_argument('--question', type=str, required=True,
                        help='the question, in English (visualize.py --task flickr: the caption)')
    parser.add_argument('--top', type=positive_int, default=5,
                        help='answers to print (visualize.py: boxes in the attention maps, default 10)')
    return parser


def visualize_parser(description):
    parser = ask_parser(description)
    parser.add_argument('--phrase', action='append', default=[],
                        help='--task flickr: a phrase of the caption (--question) to ground; repeat for several')
    parser.add_argument('--output', type=str, default='results/attention.png', help='the PNG to write')
    parser.set_defaults(top=10)
    return parser
