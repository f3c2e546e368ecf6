"""Plot a training run's curves from its log.jsonl: training loss, train and
validation score, and learning rate per epoch.

    python3 tools/plot_log.py saved_models/ban            # -> saved_models/ban/curves.png
    python3 tools/plot_log.py saved_models/ban/log.jsonl --output curves.png

main.py writes <output>/curves.png this way when training ends; this command
draws it for any run, finished or not. The best validation epoch is marked.
Needs matplotlib (`pip install matplotlib`).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runs.curves import write_curves  # noqa: E402
from runs.flags import FlagParser  # noqa: E402
from utils import run_cli  # noqa: E402


def main(argv=None):
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('run', help='a run folder (main.py --output) or its log.jsonl')
    parser.add_argument('--output', default=None, help='the PNG to write (default: curves.png beside the log)')
    args = parser.parse_args(argv)
    path = write_curves(args.run, args.output)
    print('wrote %s' % path)
    return path


if __name__ == '__main__':
    run_cli(main)
