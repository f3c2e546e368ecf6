"""The page's sections, as HTML, from the figures (report.json's content)."""
from collections import Counter

from report.page import answer_types, bar_table, escape, headline, meta_list, percent, plain_table

NO_PHOTO = ' <span class="tag">no photo: boxes on an empty frame</span>'


def answer_type_rows(official):
    return [(name, official['per_answer_type'][name], official['questions_per_answer_type'][name])
            for name in answer_types(official)]


def run_section(meta):
    items = [('checkpoint', '<code>%s</code> (epoch %s)' % (escape(meta['checkpoint']), escape(meta['epoch']))),
             ('data', '%s split of <code>%s</code>' % (escape(meta['split']), escape(meta['dataroot']))),
             ('written', escape(meta['date'])),
             ('command', '<code>%s</code>' % escape(meta['command']))]
    settings = meta.get('settings')
    if settings:
        items.append(('settings', ', '.join('%s&nbsp;<code>%s</code>' % (escape(name), escape(
            repr(value) if value == '' else value)) for name, value in sorted(settings.items()))))
    else:
        items.append(('settings', 'not recorded in the checkpoint (a released one): taken from the flags'))
    parts = ['<section id="run"><h2>The run</h2>', meta_list(items)]
    if meta.get('curves'):
        parts.append('<h3>Training curves</h3><a href="%s"><img class="curves" src="%s" alt="training curves of '
                     'the run"></a>' % (escape(meta['curves']), escape(meta['curves'])))
    else:
        parts.append('<p>No training curves: the run folder has no log.jsonl.</p>')
    parts.append('</section>')
    return '\n'.join(parts)


def _humans(answers):
    counted = Counter(answers)
    return ', '.join('%s&nbsp;&times;%d' % (escape(answer), count) if count > 1 else escape(answer)
                     for answer, count in counted.most_common())


def vqa_card(item):
    right = item['accuracy'] > 0
    top = ''.join('<tr%s><td>%s</td><td class="num">%.3f</td></tr>' % (
        ' class="picked"' if answer == item['predicted'] else '', escape(answer), probability)
        for answer, probability in item['top'])
    return ('<div class="card"><a href="{picture}"><img src="{picture}" alt="attention of every '
            'glimpse for question {qid}"></a>'
            '<p><span class="tag">{why}</span> <span class="tag {cls}">accuracy {accuracy}</span></p>'
            '<p><b>Q:</b> {question}</p><p><b>predicted:</b> {predicted}</p>'
            '<table><tr><th>top 5 answers</th><th class="num">probability</th></tr>{top}</table>'
            '<p><b>the ten human answers:</b> {humans}</p>'
            '<p class="lead">question {qid}, image {image}{drawn}</p></div>'
            .format(picture=escape(item['picture']), qid=item['question_id'], why=escape(item['why']),
                    cls='right' if right else 'wrong', accuracy=percent(item['accuracy']),
                    question=escape(item['question']), predicted=escape(item['predicted']), top=top,
                    humans=_humans(item['humans']), image=item['image_id'],
                    drawn=NO_PHOTO if not item['on_image'] else ''))


def vqa_body(meta, figures, gallery):
    official, tables = figures['official'], figures['tables']
    parts = ['<h1>%s</h1>' % escape(meta['title']),
             '<p class="lead">Official VQA accuracy of %d questions (%s split); the accuracy of a question is the '
             'official one: min(1, annotators who gave the answer / 3), averaged over leaving each of the ten '
             'out.</p>' % (official['n_questions'], escape(meta['split'])),
             '<section id="accuracy"><h2>Accuracy</h2>',
             headline([('overall', percent(official['overall']))] +
                      [(name, percent(value)) for name, value, _ in answer_type_rows(official)]),
             '<h3>Per answer type</h3>',
             bar_table('answer type', answer_type_rows(official), 'questions', 'answer-types'),
             '<h3>Per question type (most accurate first)</h3>',
             bar_table('question type', figures['question_types'], 'questions', 'question-types'),
             '</section>',
             '<section id="breakdowns"><h2>Where it fails</h2>',
             '<h3>Accuracy against the number of regions of the image</h3>',
             bar_table('regions', [(row['label'], row['accuracy'], row['questions']) for row in tables['by_regions']],
                       'questions', 'by-regions'),
             '<h3>Accuracy against the question length (words as the model splits them; it reads 14)</h3>',
             bar_table('words', [(row['label'], row['accuracy'], row['questions']) for row in tables['by_length']],
                       'questions', 'by-length'),
             '<h3>Most frequent confusions</h3>',
             '<p>%d questions (%s%%) get an answer other than the humans\' most common one; the most frequent '
             'pairs:</p>' % (tables['differing'], percent(100.0 * tables['differing'] / official['n_questions'])),
             plain_table(('predicted', 'humans\' most common answer', 'questions'),
                         [(row['predicted'], row['common'], row['questions']) for row in tables['confusions']],
                         'confusions', numeric=(2,)),
             '</section>',
             gallery_section(gallery, vqa_card, 'questions: a seeded random sample, then the most confident wrong '
                             'answers (accuracy 0). Each picture shows the attention of every glimpse: the most '
                             'attended box of each on the image, and its box &times; word map.'),
             run_section(meta)]
    return '\n'.join(parts)


def gallery_section(gallery, card, what):
    if not gallery:
        return '<section id="gallery"><h2>Gallery</h2><p>No items (--report_items 0).</p></section>'
    return ('<section id="gallery"><h2>Gallery</h2><p>%d %s Click a picture to open it at full size.</p>'
            '<div class="gallery">\n%s\n</div></section>') % (
        len(gallery), what, '\n'.join(card(item) for item in gallery))


def flickr_card(item):
    top = ', '.join('#%d&nbsp;%.3f' % (box, probability) for box, probability in item['top'][:5])
    return ('<div class="card"><a href="{picture}"><img src="{picture}" alt="boxes of phrase '
            '{phrase}"></a><p><span class="tag">{why}</span> <span class="tag {cls}">{hit}</span></p>'
            '<p><b>phrase:</b> &ldquo;{phrase}&rdquo; ({types})</p><p><b>caption:</b> {sentence}</p>'
            '<p><b>ground truth:</b> {targets}</p><p><b>top 5 boxes:</b> {top}</p>'
            '<p class="lead">image {image}{drawn}</p></div>'
            .format(picture=escape(item['picture']), phrase=escape(item['phrase']), why=escape(item['why']),
                    cls='right' if item['hit'] else 'wrong',
                    hit='top box right' if item['hit'] else 'top box wrong', types=escape(', '.join(item['types'])),
                    sentence=escape(item['sentence']),
                    targets=', '.join('#%d' % box for box in item['targets']) or 'none of the detected boxes',
                    top=top, image=item['image_id'],
                    drawn=NO_PHOTO if not item['on_image'] else ''))


def flickr_body(meta, figures, gallery):
    metrics = figures['metrics']
    per_type = figures['per_type']
    parts = ['<h1>%s</h1>' % escape(meta['title']),
             '<p class="lead">Recall@k of %d phrases (%s split): a phrase counts when one of its k most probable '
             'boxes is a ground-truth box.</p>' % (metrics['entities'], escape(meta['split'])),
             '<section id="recall"><h2>Recall</h2>',
             headline([('Recall@%d' % k, percent(metrics['recall@%d' % k])) for k in (1, 5, 10)] +
                      [('upper bound', percent(metrics['upper_bound']))]),
             '<h3>Per entity type (Recall@1)</h3>',
             bar_table('entity type', [(row[0], row[1], row[4]) for row in per_type], 'phrases', 'entity-types-bars'),
             '<h3>Per entity type (Recall@1/5/10)</h3>',
             plain_table(('entity type', 'R@1', 'R@5', 'R@10', 'phrases'),
                         [(row[0], percent(row[1]), percent(row[2]), percent(row[3]), row[4]) for row in per_type],
                         'entity-types', numeric=(1, 2, 3, 4)),
             '</section>',
             gallery_section(gallery, flickr_card, 'phrases: a seeded random sample, then the most confident misses '
                             '(top box not a ground-truth box). Dashed boxes: the ground truth; thick: the '
                             'predicted top box.'),
             run_section(meta)]
    return '\n'.join(parts)
