"""The report folder: index.html (one self-contained page: its style inline,
no script, no address outside the folder), its pictures beside it in
pictures/, and report.json (every figure the page shows).

The folder is written to a temporary folder beside it and renamed into
place when complete, so a reader never sees half a report; an existing
report there is replaced, anything else refused.
"""
import html
import json
import os
import shutil
import tempfile

from utils import UserError, atomic_write

PAGE = 'index.html'
FIGURES = 'report.json'
PICTURES = 'pictures'
ANSWER_TYPE_ORDER = ('yes/no', 'number', 'other')
STYLE = '''
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1d2330; background: #f4f5f7; }
main { max-width: 1180px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.5em; margin: 0.3em 0; }
h2 { font-size: 1.2em; margin: 1.4em 0 0.5em; border-bottom: 2px solid #d9dce3; padding-bottom: 0.2em; }
h3 { font-size: 1em; margin: 0.8em 0 0.3em; }
section, .card { background: #fff; border-radius: 8px; box-shadow: 0 1px 3px rgba(0, 0, 0, 0.12); }
section { padding: 4px 16px 14px; margin-bottom: 16px; }
.lead { font-size: 1.05em; color: #444; }
.big { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.big div { background: #eef3fb; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.big b { display: block; font-size: 1.6em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { text-align: left; padding: 3px 10px 3px 0; vertical-align: top; }
th { border-bottom: 1px solid #ccd; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
tr.picked td { font-weight: 700; }
table.bars { width: 100%; max-width: 880px; }
table.bars td.bar { width: 55%; min-width: 90px; }
.track { background: #e8eaef; border-radius: 3px; height: 14px; margin-top: 3px; }
.fill { background: #3b7dd8; height: 14px; border-radius: 3px; }
.low .fill { background: #d8553b; }
.mid .fill { background: #e0a030; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 14px; }
.card { padding: 10px; overflow-wrap: anywhere; }
.card img { width: 100%; height: auto; border: 1px solid #ddd; display: block; }
.card p { margin: 0.3em 0; }
.tag { display: inline-block; font-size: 0.8em; border-radius: 4px; padding: 0 6px; background: #e8eaef; }
.tag.wrong { background: #fbe0da; color: #8a2410; }
.tag.right { background: #dff2e1; color: #1d6b2a; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0; }
dl.meta dt { font-weight: 600; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
code { font-size: 0.92em; background: #f0f1f4; padding: 1px 4px; border-radius: 3px; overflow-wrap: anywhere; }
img.curves { max-width: 100%; height: auto; }
@media (max-width: 600px) {
  body { font-size: 14px; }
  main { padding: 6px; }
  th, td { padding-right: 6px; }
  section { padding: 2px 8px 10px; }
  .gallery { grid-template-columns: 1fr; }
  table.bars td.bar { width: 40%; }
  dl.meta { grid-template-columns: 1fr; }
  dl.meta dd { margin-bottom: 4px; }
}
'''


def escape(value):
    return html.escape(str(value), quote=True)


def percent(value):
    """Every percentage on the page: 2 decimals, as evaluate.py prints."""
    return '%.2f' % value


def bar_table(label_header, rows, count_header, table_id):
    """A table with a bar per row: rows [(label, percent, count)]."""
    lines = ['<div class="scroll"><table class="bars" id="%s"><tr><th>%s</th><th class="num">%%</th>'
             '<th></th><th class="num">%s</th></tr>' % (escape(table_id), escape(label_header), escape(count_header))]
    for label, value, count in rows:
        level = 'low' if value < 50 else 'mid' if value < 75 else 'high'
        lines.append('<tr class="%s"><td>%s</td><td class="num">%s</td><td class="bar"><div class="track">'
                     '<div class="fill" style="width:%.1f%%"></div></div></td><td class="num">%d</td></tr>'
                     % (level, escape(label), percent(value), max(0.0, min(value, 100.0)), count))
    lines.append('</table></div>')
    return '\n'.join(lines)


def plain_table(headers, rows, table_id, numeric=()):
    """A table of text cells; columns whose index is in `numeric` align right."""
    def cell(tag, index, value):
        return '<%s%s>%s</%s>' % (tag, ' class="num"' if index in numeric else '', escape(value), tag)
    lines = ['<div class="scroll"><table id="%s"><tr>%s</tr>' % (escape(table_id), ''.join(
        cell('th', index, header) for index, header in enumerate(headers)))]
    lines += ['<tr>%s</tr>' % ''.join(cell('td', index, value) for index, value in enumerate(row)) for row in rows]
    lines.append('</table></div>')
    return '\n'.join(lines)


def headline(figures):
    """Big numbers: [(name, text)]."""
    return '<div class="big">%s</div>' % ''.join('<div><span>%s</span><b>%s</b></div>' % (escape(name), escape(text))
                                                 for name, text in figures)


def meta_list(items):
    """A definition list of [(name, value)] (values shown as code when they are commands)."""
    return '<dl class="meta">%s</dl>' % ''.join('<dt>%s</dt><dd>%s</dd>' % (escape(name), value)
                                                for name, value in items)


def check_report_folder(directory):
    """--report DIR must be absent, empty, or a report written before
    (replaced); anything else is refused before the evaluation runs."""
    if os.path.isfile(directory):
        raise UserError('--report %s is a file; name a folder to write the report into' % directory)
    if os.path.isdir(directory):
        entries = set(os.listdir(directory))
        if entries and not {PAGE, FIGURES} <= entries:
            raise UserError('--report %s is a folder that holds other files (%s); name a new or empty folder, or '
                            'one holding an earlier report (it is replaced)'
                            % (directory, ', '.join(sorted(entries)[:3])))


class ReportFolder:
    """Collects a report in a temporary folder beside `directory`; `publish`
    writes index.html and report.json and renames it into place."""

    def __init__(self, directory):
        check_report_folder(directory)
        self.directory = os.path.abspath(directory)
        parent = os.path.dirname(self.directory)
        os.makedirs(parent, exist_ok=True)
        self.staging = tempfile.mkdtemp(prefix='.%s.tmp-' % os.path.basename(self.directory), dir=parent)
        os.makedirs(os.path.join(self.staging, PICTURES))
        self.pictures = []

    def picture(self, name):
        """(path to write the picture to, its address on the page)."""
        address = PICTURES + '/' + name
        self.pictures.append(address)
        return os.path.join(self.staging, PICTURES, name), address

    def publish(self, title, body, figures):
        """Write the page and the figures, then move the folder into place."""
        missing = [address for address in self.pictures if not os.path.isfile(os.path.join(self.staging, address))]
        if missing:
            raise RuntimeError('report pictures were not written: %s' % ', '.join(missing))
        page = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                '<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n<main>\n%s\n</main>\n</body>\n</html>\n'
                % (escape(title), STYLE, body))
        with open(os.path.join(self.staging, PAGE), 'w', encoding='utf-8') as handle:
            handle.write(page)
        with open(os.path.join(self.staging, FIGURES), 'w', encoding='utf-8') as handle:
            json.dump(figures, handle, indent=1, sort_keys=True)
        os.chmod(self.staging, 0o755)
        old = None
        if os.path.exists(self.directory):
            old = tempfile.mkdtemp(prefix='.%s.old-' % os.path.basename(self.directory),
                                   dir=os.path.dirname(self.directory))
            os.rename(self.directory, os.path.join(old, 'report'))
        os.rename(self.staging, self.directory)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        return os.path.join(self.directory, PAGE)

    def discard(self):
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if kind is not None:
            self.discard()
        return False


def answer_types(official):
    """The answer types of the metrics: yes/no, number, other first (the official order), then the rest."""
    names = [name for name in ANSWER_TYPE_ORDER if name in official['per_answer_type']]
    return names + sorted(name for name in official['per_answer_type'] if name not in ANSWER_TYPE_ORDER)


def headline_of(figures):
    """[(name, text)] of the big numbers of a report.json."""
    if 'official' in figures:
        official = figures['official']
        return [('VQA accuracy', percent(official['overall']))] + [
            (name, percent(official['per_answer_type'][name])) for name in answer_types(official)]
    return [('Recall@%d' % k, percent(figures['metrics']['recall@%d' % k])) for k in (1, 5, 10)]


def write_index(directory, reports):
    """DIR/index.html linking the reports in its sub-folders: [(title,
    sub-folder name)], each with its big numbers (read from its report.json)."""
    blocks = []
    for title, name in reports:
        with open(os.path.join(directory, name, FIGURES), encoding='utf-8') as handle:
            figures = json.load(handle)
        meta = figures['meta']
        blocks.append('<section><h2><a href="%s/%s">%s</a></h2><p>%s split, %s (epoch %s)</p>%s<p><a href="%s/%s">'
                      'open the report</a></p></section>'
                      % (escape(name), PAGE, escape(title), escape(meta['split']), escape(meta['checkpoint']),
                         escape(meta['epoch']), headline(headline_of(figures)), escape(name), PAGE))
    page = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>Reports</title>\n'
            '<style>%s</style>\n</head>\n<body>\n<main>\n<h1>Evaluation reports</h1>\n%s\n</main>\n</body>\n</html>\n'
            % (STYLE, '\n'.join(blocks)))
    path = os.path.join(directory, PAGE)
    with atomic_write(path, 'wb') as handle:
        handle.write(page.encode('utf-8'))
    return path
