"""evaluate.py --report: the figures of a report and its folder.

evaluate.py keeps, in its one evaluation pass, each VQA question's top-5
answers (or each Flickr30k phrase's top-10 boxes); the tables come from
those lists in one more pass, and only the gallery items (--report_items)
are run through the model again and drawn, by the `draw` callback the
command line passes (visualize.py's pictures).
"""
import datetime
import os
import re

from formats import flickr_files
from formats.flickr_files import ENTITY_TYPES
from formats.vqa_metric import question_type_table
from report import sections
from report.page import ReportFolder
from report.tables import gallery_choice, vqa_tables
from runs import curves
from utils import UserError, note

GALLERY_SEED = 0  # the random half of the gallery: the same items on every run
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')


def image_files(directory):
    """{image id: path} of the pictures in `directory`: the id is the last
    run of digits of the file name (COCO_val2014_000000000042.jpg -> 42,
    1000092795.jpg -> 1000092795); the first name in sorted order wins."""
    if directory is None:
        return {}
    if not os.path.isdir(directory):
        raise UserError('--images %s is not a folder; name the folder of the photos (COCO_val2014_*.jpg, '
                        '<image_id>.jpg)' % directory)
    found = {}
    for name in sorted(os.listdir(directory)):
        stem, suffix = os.path.splitext(name)
        digits = re.findall(r'\d+', stem)
        if suffix.lower() in IMAGE_SUFFIXES and digits:
            found.setdefault(int(digits[-1]), os.path.join(directory, name))
    if not found:
        note('--images %s holds no .jpg/.png file named by its image id; the gallery draws the boxes on empty '
             'frames' % directory)
    return found


def run_meta(title, args, checkpoint, epoch, config, command):
    """What the 'The run' section shows."""
    return {'title': title, 'task': args.task, 'checkpoint': checkpoint, 'epoch': epoch, 'split': args.split,
            'dataroot': args.dataroot, 'command': command, 'settings': config,
            'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}


def add_curves(folder, meta, checkpoint):
    """Draw the run's curves beside the page when its folder has log.jsonl."""
    log = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), curves.LOG_NAME)
    meta['curves'] = None
    if not os.path.isfile(log):
        return
    try:
        records = curves.read_log(log)
        figure = curves.curves_figure(records, 'training curves: %d epoch%s' % (len(records),
                                                                              '' if len(records) == 1 else 's'))
    except UserError as err:  # no matplotlib, or no epoch record yet: the page says there are none
        note('report without training curves: %s' % err)
        return
    path, address = folder.picture('curves.png')
    figure.savefig(path, format='png', dpi=curves.DPI)
    meta['curves'] = address


# ----------------------------------------------------------------- VQA

def vqa_figures(official, predictions, questions, box_counts, common_answers, question_ids):
    """report.json's figures of a VQA report (all but the gallery)."""
    accuracies = [official['per_question'][question_id] for question_id in question_ids]
    return {'official': {key: official[key] for key in ('overall', 'per_answer_type', 'questions_per_answer_type',
                                                        'per_question_type', 'questions_per_question_type',
                                                        'n_questions')},
            'question_types': question_type_table(official),
            'tables': vqa_tables(questions, predictions, accuracies, box_counts, common_answers)}, accuracies


def write_vqa_report(directory, meta, entries, label2ans, answer_labels, top_answers, official, annotations,
                     box_counts, items, draw):
    """Write the VQA report; `draw(index, path)` draws the attention picture
    of entry `index` to `path` and returns whether it is on the photo.
    Returns (the page's path, its figures)."""
    with ReportFolder(directory) as folder:
        by_id = {annotation['question_id']: annotation for annotation in annotations}
        question_ids = [entry['question_id'] for entry in entries]
        predictions = [label2ans[label] for label in answer_labels]
        figures, accuracies = vqa_figures(official, predictions, [entry['question'] for entry in entries],
                                          box_counts, [by_id[qid]['multiple_choice_answer'] for qid in question_ids],
                                          question_ids)
        confidences = [top[0][1] for top in top_answers]
        chosen = gallery_choice(items, confidences, [accuracy <= 0 for accuracy in accuracies], GALLERY_SEED)
        gallery = []
        for index, why in chosen:
            entry = entries[index]
            path, address = folder.picture('q%d.png' % entry['question_id'])
            on_image = draw(index, path)
            gallery.append({'picture': address, 'question': entry['question'], 'question_id': entry['question_id'],
                            'image_id': entry['image_id'], 'why': why, 'predicted': predictions[index],
                            'accuracy': accuracies[index], 'on_image': bool(on_image),
                            'top': [(label2ans[label], probability) for label, probability in top_answers[index]],
                            'humans': [record['answer'] for record in by_id[entry['question_id']]['answers']]})
        add_curves(folder, meta, meta['checkpoint'])
        figures['gallery'] = gallery
        figures['meta'] = meta
        return folder.publish(meta['title'], sections.vqa_body(meta, figures, gallery), figures), figures


# ----------------------------------------------------------------- Flickr30k

def flickr_per_type(metrics):
    """[(entity type, R@1, R@5, R@10, phrases)] in ENTITY_TYPES order."""
    per_type = metrics.get('recall@1_per_type', {})
    return [(name, per_type[name]['recall@1'], per_type[name]['recall@5'], per_type[name]['recall@10'],
             per_type[name]['entities']) for name in ENTITY_TYPES if name in per_type]


def phrase_texts(root, entry):
    """The texts of an entry's phrases (those with boxes, in order, as the
    dataset keeps them), read again from its Sentences file."""
    chains = flickr_files.parse_annotation_file(flickr_files.annotation_path(root, entry['image_id']))
    path = flickr_files.sentence_path(root, entry['image_id'])
    for line_no, line in enumerate(flickr_files.read_sentence_lines(path), 1):
        sentence, phrases = flickr_files.parse_sentence_line(line, '%s:%d' % (path, line_no))
        usable = [phrase for phrase in phrases if phrase.chain_id in chains]
        if sentence == entry['sentence'] and [phrase.chain_id for phrase in usable] == list(entry['entity_ids']):
            return [' '.join(phrase.words) for phrase in usable]
    return ['phrase %d' % (index + 1) for index in range(entry['entity_num'])]


def write_flickr_report(directory, meta, root, entries, metrics, entity_records, items, draw):
    """Write the Flickr30k report; `draw(index, entity, phrase, record, path)`
    draws one phrase's boxes and returns whether it is on the photo.
    Returns (the page's path, its figures)."""
    with ReportFolder(directory) as folder:
        owners = [(index, entity) for index, entry in enumerate(entries) for entity in range(entry['entity_num'])]
        if len(owners) != len(entity_records):
            raise RuntimeError('%d entity records for %d phrases' % (len(entity_records), len(owners)))
        figures = {'metrics': {key: metrics[key] for key in ('recall@1', 'recall@5', 'recall@10', 'upper_bound',
                                                             'entities')},
                   'per_type': flickr_per_type(metrics)}
        hits = [bool(record['top']) and record['top'][0][0] in record['targets'] for record in entity_records]
        chosen = gallery_choice(items, [record['top'][0][1] for record in entity_records],
                                [not hit for hit in hits], GALLERY_SEED)
        gallery = []
        for position, why in chosen:
            index, entity = owners[position]
            entry, record = entries[index], entity_records[position]
            phrase = phrase_texts(root, entry)[entity]
            path, address = folder.picture('p%d_%d_%d.png' % (entry['image_id'], index, entity))
            on_image = draw(index, entity, phrase, record, path)
            gallery.append({'picture': address, 'phrase': phrase, 'sentence': entry['sentence'],
                            'image_id': entry['image_id'], 'why': why, 'hit': hits[position],
                            'top': record['top'], 'targets': record['targets'], 'on_image': bool(on_image),
                            'types': [ENTITY_TYPES[t] for t in record['types']]})
        add_curves(folder, meta, meta['checkpoint'])
        figures['gallery'] = gallery
        figures['meta'] = meta
        return folder.publish(meta['title'], sections.flickr_body(meta, figures, gallery), figures), figures
