"""A training run's curves from its log.jsonl: training loss, train and
validation score, and learning rate per epoch, the best validation epoch
marked (main.py draws them when training ends; tools/plot_log.py for any
run). Needs matplotlib (`pip install matplotlib`)."""
import json
import os

from utils import UserError, atomic_write, note

DPI = 100
LOG_NAME = 'log.jsonl'
PICTURE_NAME = 'curves.png'


class MissingMatplotlib(UserError):
    """matplotlib is not installed."""


def log_path(run):
    """<run>/log.jsonl for a run folder, `run` itself for a file."""
    path = os.path.join(run, LOG_NAME) if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise UserError('%s does not exist; pass a run folder (main.py --output) or its log.jsonl' % path)
    return path


def read_log(path):
    """The epoch records of a log.jsonl in epoch order (a re-logged epoch:
    its last record). Lines that are not JSON records of an epoch (one torn
    by a crash) are skipped with a note."""
    records, skipped = {}, 0
    with open(path, 'r', encoding='utf-8', errors='replace') as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                skipped += bool(line.strip())
                continue
            if isinstance(record, dict) and isinstance(record.get('epoch'), int):
                records[record['epoch']] = record
            else:
                skipped += 1
    if skipped:
        note('%s: skipped %d line(s) that are not epoch records' % (path, skipped))
    if not records:
        raise UserError('%s has no epoch records yet: main.py logs one when an epoch ends' % path)
    return [records[epoch] for epoch in sorted(records)]


def _series(records, key):
    """(epochs, values) of the records that have a number under `key`."""
    pairs = [(record['epoch'], record[key]) for record in records if isinstance(record.get(key), (int, float))]
    return [epoch for epoch, _ in pairs], [value for _, value in pairs]


def best_epoch(records):
    """(epoch, score) of the highest validation score, or None without validation."""
    epochs, scores = _series(records, 'eval_score')
    if not scores:
        return None
    best = max(range(len(scores)), key=lambda index: (scores[index], -index))  # the first of equal scores
    return epochs[best], scores[best]


def _plot_loss(ax, records):
    ax.plot(*_series(records, 'train_loss'), marker='o', color='#1f77b4', label='train loss')
    ax.set_title('training loss')


def _plot_scores(ax, records):
    grounding = any('eval_recall@1' in record for record in records)
    ax.plot(*_series(records, 'train_score'), marker='o', color='#1f77b4',
            label='train Recall@1' if grounding else 'train score')
    epochs, scores = _series(records, 'eval_score')
    if scores:
        ax.plot(epochs, scores, marker='o', color='#ff7f0e', label='val Recall@1' if grounding else 'val score')
        ax.plot(*_series(records, 'eval_upper_bound'), linestyle='--', marker='^', markersize=5, color='#999999',
                label='val upper bound')
        for k, style, marker in ((5, ':', 's'), (10, '-.', 'D')):
            if grounding:
                ax.plot(*_series(records, 'eval_recall@%d' % k), linestyle=style, marker=marker, markersize=4,
                        color='#ff7f0e', label='val Recall@%d' % k)
        epoch, score = best_epoch(records)
        # a ring around the best validation point, which stays visible inside it
        ax.plot([epoch], [score], marker='o', markersize=15, markerfacecolor='none', markeredgewidth=2,
                color='#d62728', linestyle='none', label='best: epoch %d, %.2f' % (epoch, score))
    ax.set_title('score (%)')


def _plot_lr(ax, records):
    ax.plot(*_series(records, 'lr'), drawstyle='steps-mid', marker='o', color='#2ca02c', label='learning rate')
    ax.ticklabel_format(axis='y', style='sci', scilimits=(-2, 2))
    ax.set_title('learning rate')


def curves_figure(records, title):
    """A matplotlib Figure of three panels: loss, scores, learning rate."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise MissingMatplotlib('plotting the curves needs matplotlib: pip install matplotlib') from None
    figure = Figure(figsize=(15, 4.8), dpi=DPI, layout='constrained')
    figure.suptitle(title, fontsize=12)
    first, last = records[0]['epoch'], records[-1]['epoch']
    for ax, plot in zip(figure.subplots(1, 3), (_plot_loss, _plot_scores, _plot_lr)):
        plot(ax, records)
        ax.set_xlabel('epoch')
        ax.set_xlim(first - 0.5, last + 0.5)  # whole epochs, also for a run of one
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        # under the panel, where it covers no point
        ax.legend(fontsize=9, loc='upper center', bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return figure


def write_curves(run, output=None):
    """Draw the curves of `run` (a folder or its log.jsonl) to `output`
    (default: curves.png beside the log); returns the path written."""
    path = log_path(run)
    output = output or os.path.join(os.path.dirname(path), PICTURE_NAME)
    records = read_log(path)
    figure = curves_figure(records, '%s: %d epoch%s' % (os.path.dirname(os.path.abspath(path)), len(records),
                                                         '' if len(records) == 1 else 's'))
    with atomic_write(output, 'wb') as handle:
        figure.savefig(handle, format='png', dpi=DPI)
    return output
