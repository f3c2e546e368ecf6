"""The report's tables, each built in one pass over the predictions (a
214k-question val set takes seconds), and the choice of the gallery items.

VQA: accuracy (the official per-question accuracy, in percent) against the
number of regions and against the question length, the most frequent
confusions, the gallery (a seeded random sample, then the most confident
wrong answers). Flickr30k: the gallery of phrases (a seeded random sample,
then the most confident misses at Recall@1).
"""
import random
from collections import Counter

from formats.answers import preprocess_answer
from formats.dictionary import split_words

REGION_BINS = 8  # at most this many region-count ranges
LONGEST_LENGTH = 14  # the model reads 14 tokens: longer questions share one row
CONFUSIONS = 20  # rows of the confusion table
WRONG = 0.0  # a "wrong" answer: official accuracy 0 (no annotator gave it)


def _add(table, key, value):
    total, count = table.get(key, (0.0, 0))
    table[key] = (total + value, count + 1)


def _rows(table, labels):
    """[{'label', 'accuracy', 'questions'}] in key order."""
    return [{'label': labels(key), 'accuracy': total / count, 'questions': count}
            for key, (total, count) in sorted(table.items())]


def region_bins(box_counts, bins=REGION_BINS):
    """(low, high) integer ranges covering min..max of `box_counts` in at most
    `bins` ranges of equal width."""
    low, high = min(box_counts), max(box_counts)
    width = max(1, -(-(high - low + 1) // bins))  # ceiling division
    return [(start, min(start + width - 1, high)) for start in range(low, high + 1, width)]


def _range_label(low, high):
    return str(low) if low == high else '%d-%d' % (low, high)


def vqa_tables(questions, predictions, accuracies, box_counts, common_answers):
    """The VQA breakdowns, in one pass.

    questions: question texts; predictions: predicted answers; accuracies:
    official accuracy (%) of each; box_counts: regions of each question's
    image; common_answers: the humans' most common answer of each (the
    annotation's multiple_choice_answer). All lists aligned. Returns
    {'by_regions': rows, 'by_length': rows, 'confusions': [{'predicted',
    'common', 'questions'}], 'differing': questions whose predicted answer is
    not the most common one}; a row is {'label', 'accuracy', 'questions'}."""
    bins = region_bins(box_counts)
    width = bins[0][1] - bins[0][0] + 1
    by_regions, by_length = {}, {}
    confusions = Counter()
    normalised = {}
    for question, predicted, accuracy, boxes, common in zip(questions, predictions, accuracies, box_counts,
                                                          common_answers):
        _add(by_regions, (boxes - bins[0][0]) // width, accuracy)
        _add(by_length, min(len(split_words(question)), LONGEST_LENGTH), accuracy)
        if common not in normalised:
            normalised[common] = preprocess_answer(common)
        if normalised[common] != predicted:
            confusions[(predicted, normalised[common])] += 1
    return {'by_regions': _rows(by_regions, lambda index: _range_label(*bins[index])),
            'by_length': _rows(by_length, lambda length: '%d+' % length if length == LONGEST_LENGTH
                               else str(length)),
            'confusions': [{'predicted': predicted, 'common': common, 'questions': count}
                           for (predicted, common), count in
                           sorted(confusions.items(), key=lambda item: (-item[1], item[0]))[:CONFUSIONS]],
            'differing': sum(confusions.values())}


def gallery_choice(count, confidences, wrong, seed):
    """Indices of the gallery: half (rounded up) a seeded random sample of all
    items, then the most confident wrong ones not already chosen (the rest of
    the sample when there are too few). Returns [(index, 'sample' or
    'confident wrong')] without repeats, at most `count`."""
    total = len(confidences)
    count = min(count, total)
    sampled = random.Random(seed).sample(range(total), count)
    chosen = {index: 'random sample' for index in sampled[:(count + 1) // 2]}
    wrong_ones = sorted((index for index in range(total) if wrong[index] and index not in chosen),
                        key=lambda index: (-confidences[index], index))
    for index in wrong_ones[:count - len(chosen)]:
        chosen[index] = 'confident wrong'
    for index in sampled[(count + 1) // 2:]:
        if len(chosen) >= count:
            break
        chosen.setdefault(index, 'random sample')
    return list(chosen.items())
