"""Answer vocabulary and soft-score targets of VQA 2.0 (FORMATS.md section 1).

Reads `v2_mscoco_{train2014,val2014}_annotations.json`; keeps the normalised
consensus answers (`multiple_choice_answer`) of at least `--min_occurrence`
distinct questions (3,129 answers on the real data with 9), labelled in
first-occurrence order over train then val; scores each question's 10 human
answers 0 / .3 / .6 / .9 / 1.0 by how many of them are exactly the label's
string (the original counts the raw `answer` strings: "Dog", "dog." and
"a dog" do not count for `dog`; `--normalize_answers` counts them normalised).
Writes, in the original's pickle layouts, `<dataroot>/cache/trainval_ans2label.pkl`
(dict), `trainval_label2ans.pkl` (list) and `{train,val}_target.pkl` (list of
{question_id, image_id, labels, scores}), each target file with a
`.meta.json` sidecar naming the vocabulary it was computed against.

An existing `cache/trainval_ans2label.pkl` (e.g. the released caches, whose
label order the released classifier follows) is reused as the original does:
the vocabulary is not rebuilt, `trainval_label2ans.pkl` is left alone, and
only the targets are recomputed against it. Delete it to rebuild.

Usage: python3 tools/compute_softscore.py [--dataroot data] [--min_occurrence 9] [--normalize_answers]
"""
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from formats.answers import get_score, preprocess_answer  # noqa: E402
from formats.dictionary import PICKLE_PROTOCOL  # noqa: E402
from formats.paths import annotation_path, answer_cache_files, target_file  # noqa: E402
from formats.vqa_files import ANNOTATED_SPLITS, load_annotations, target_meta  # noqa: E402
from runs.flags import FlagParser  # noqa: E402
from utils import UserError, atomic_write, run_cli, safe_pickle_load, save_json  # noqa: E402


def filter_answers(annotations, min_occurrence):
    """{normalised consensus answer: set of question ids} for the answers of
    at least `min_occurrence` distinct questions, in first-occurrence order."""
    occurrence = {}
    for item in annotations:
        occurrence.setdefault(preprocess_answer(item['multiple_choice_answer']), set()).add(item['question_id'])
    return {answer: ids for answer, ids in occurrence.items() if len(ids) >= min_occurrence}


def create_ans2label(occurrence):
    """(ans2label dict, label2ans list) in the order of `occurrence`."""
    label2ans = list(occurrence)
    return {answer: label for label, answer in enumerate(label2ans)}, label2ans


def compute_target(annotations, ans2label, normalize=False):
    """Per question: the labels of its in-vocabulary human answers and their
    soft scores by count. As in the original, an answer counts for a label
    only when its raw string equals the label; `normalize` first applies
    preprocess_answer to the answers (an opt-in deviation)."""
    targets = []
    for item in annotations:
        counts = {}
        for answer in item['answers']:
            text = preprocess_answer(answer['answer']) if normalize else answer['answer']
            counts[text] = counts.get(text, 0) + 1
        labels = [ans2label[answer] for answer in counts if answer in ans2label]
        scores = [get_score(counts[answer]) for answer in counts if answer in ans2label]
        targets.append({'question_id': item['question_id'], 'image_id': item['image_id'],
                        'labels': labels, 'scores': scores})
    return targets


def dump_pickle(obj, path):
    with atomic_write(path, 'wb') as handle:
        pickle.dump(obj, handle, protocol=PICKLE_PROTOCOL)


def load_existing_vocabulary(path):
    """(ans2label, label2ans) of an existing `trainval_ans2label.pkl`, checked."""
    fix = 'delete it to rebuild the vocabulary'
    ans2label = safe_pickle_load(path, fix)
    if not (isinstance(ans2label, dict) and all(isinstance(answer, str) for answer in ans2label)
            and sorted(ans2label.values()) == list(range(len(ans2label)))):
        raise UserError('%s: expected a dict answer -> label with labels 0..n-1; %s' % (path, fix))
    return ans2label, sorted(ans2label, key=ans2label.get)


def build_vocabulary(annotations, args):
    """(ans2label, label2ans) from the consensus answers of train and val."""
    occurrence = filter_answers(annotations['train'] + annotations['val'], args.min_occurrence)
    if not occurrence:
        raise UserError('no answer is the consensus answer of %d questions in %s and %s; lower --min_occurrence'
                        % (args.min_occurrence, annotation_path(args.dataroot, 'train'),
                           annotation_path(args.dataroot, 'val')))
    return create_ans2label(occurrence)


def write_targets(dataroot, name, targets, ans2label):
    """`{name}_target.pkl` and its sidecar. The sidecar goes first: an
    interruption in between leaves a sidecar that names the new vocabulary
    beside targets of the old one, which dataset.load_targets refuses."""
    path = target_file(dataroot, name)
    save_json(target_meta(ans2label), path + '.meta.json')
    dump_pickle(targets, path)


def main(argv=None):
    parser = FlagParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataroot', default='data')
    parser.add_argument('--min_occurrence', type=int, default=9,
                        help='keep answers that are the consensus answer of at least this many questions')
    parser.add_argument('--normalize_answers', action='store_true',
                        help='count the human answers after normalising them (not the original\'s rule, '
                             'which counts the raw answer strings)')
    args = parser.parse_args(argv)
    if args.min_occurrence < 1:
        parser.error('argument --min_occurrence: must be >= 1, got %d' % args.min_occurrence)
    annotations = {name: load_annotations(args.dataroot, name) for name in ANNOTATED_SPLITS}
    ans2label_path, label2ans_path = answer_cache_files(args.dataroot)
    cache = os.path.dirname(ans2label_path)
    reused = os.path.exists(ans2label_path)
    if reused:
        ans2label, label2ans = load_existing_vocabulary(ans2label_path)
        print('reusing the existing answer vocabulary %s (%d answers; --min_occurrence is not applied; delete it '
              'to rebuild)' % (ans2label_path, len(label2ans)))
    else:
        ans2label, label2ans = build_vocabulary(annotations, args)
    # targets first, vocabulary last: see write_targets
    for name in ANNOTATED_SPLITS:
        write_targets(args.dataroot, name, compute_target(annotations[name], ans2label, args.normalize_answers),
                      ans2label)
    if not reused:
        dump_pickle(ans2label, ans2label_path)
    if not (reused and os.path.exists(label2ans_path)):
        dump_pickle(label2ans, label2ans_path)
    print('%d answers%s; wrote the %s targets to %s' % (
        len(label2ans), '' if reused else ' appear >= %d times' % args.min_occurrence,
        'normalised-answer' if args.normalize_answers else 'raw-answer', cache))
    return ans2label, label2ans


if __name__ == '__main__':
    run_cli(main)
