"""The post's figures and REPORT.md for evaluate.py, from the outputs its scores coloured.

Figures (PNG, Japanese labels drawn with colorize.font / colorize.label_text):
    fig5_6_miku.png        初音ミク with no tag (the baseline) and with the tag (Fig. 5, 6)
    fig7_characters.png    per character: drawing | no tag | tags | extra models | truth (Fig. 7)
    fig8_mono.png          monochrome targets: tags with モノクロ / ノート vs without (Fig. 8)
    fig9_text_only.png     a white and a noise drawing with one tag each (Fig. 9, text to image)
    tag_swap.png           the twins' drawings with their own tag and the twin's (響 ↔ 暁, FGO)
A figure whose images the test split lacks (e.g. no monochrome image) is left out and
the report says so.
"""
import os

import numpy as np
from PIL import Image, ImageDraw

import colorize
import evaluate

CELL = 192  # pixels per image in a figure (the demo models work at 128)
LABEL_FONT_SIZE = 16
PAD = 4


# ---------------------------------------------------------------- drawing
def wrap(text, font, width, draw):
    """Lines of at most width pixels, broken anywhere (Japanese has no spaces)."""
    lines = []
    for paragraph in text.split('\n'):
        line = ''
        for char in paragraph:
            if line and draw.textlength(line + char, font=font) > width:
                lines.append(line.rstrip())
                line = char.lstrip()
            else:
                line += char
        lines.append(line)
    return lines


def grid(rows, column_labels, row_labels=None, cell=CELL):
    """Images (PIL or uint8 arrays) in rows, each column labelled above and, when
    row_labels is given, each row labelled on the left; labels wrap inside their cell."""
    font = colorize.font(LABEL_FONT_SIZE)
    line_h = LABEL_FONT_SIZE + 4
    measure = ImageDraw.Draw(Image.new('RGB', (1, 1)))
    column_lines = [wrap(colorize.label_text(t), font, cell - 2 * PAD, measure) for t in column_labels]
    label_h = max(len(lines) for lines in column_lines) * line_h + 2 * PAD
    left = (cell * 3) // 4 if row_labels else 0
    sheet = Image.new('RGB', (left + len(column_labels) * cell, label_h + len(rows) * cell), 'white')
    draw = ImageDraw.Draw(sheet)
    for c, lines in enumerate(column_lines):
        for i, line in enumerate(lines):
            draw.text((left + c * cell + PAD, PAD + i * line_h), line, fill='black', font=font)
    for r, row in enumerate(rows):
        top = label_h + r * cell
        if row_labels:
            lines = wrap(colorize.label_text(row_labels[r]), font, left - 2 * PAD, measure)
            y = top + max(PAD, (cell - len(lines) * line_h) // 2)
            for i, line in enumerate(lines):
                draw.text((PAD, y + i * line_h), line, fill='black', font=font)
        for c, image in enumerate(row):
            if isinstance(image, np.ndarray):
                image = Image.fromarray(image)
            sheet.paste(image.convert('RGB').resize((cell, cell), Image.BICUBIC), (left + c * cell, top))
    return sheet


# ---------------------------------------------------------------- figures
def first_image(model, tag, mono=False):
    return next((image for image in model.images
                 if image.character['tag'] == tag and image.mono == mono), None)


def fig_miku(models, description):
    tag, notag = models['tag'], models['notag']
    image = first_image(tag, '初音ミク')
    if image is None:
        return None
    row = [image.drawing, notag.output(image.name, []), tag.output(image.name, ['初音ミク']), image.target]
    return grid([row], ['drawing', 'no tag (baseline)', '初音ミク', 'truth'])


def fig_characters(models, description):
    tag, notag = models['tag'], models['notag']
    extras = [m for label, m in models.items() if label not in ('tag', 'notag')]
    rows, labels = [], []
    for character in description['characters']:
        image = first_image(tag, character['tag'])
        if image is None:
            continue
        rows.append([image.drawing, notag.output(image.name, []), tag.output(image.name, image.tags)]
                    + [m.output(image.name, image.tags) for m in extras] + [image.target])
        labels.append(character['tag'])
    if not rows:
        return None
    columns = (['drawing', 'no tag (baseline)', 'tags ({})'.format(tag.label)]
               + ['tags ({})'.format(m.label) for m in extras] + ['truth'])
    return grid(rows, columns, labels)


def fig_mono(models, description, limit=4):
    tag, notag = models['tag'], models['notag']
    mono_tags = description['mono_tags']
    images = [image for image in tag.images if image.mono][:limit]
    if not images:
        return None
    rows = [[image.drawing, tag.output(image.name, image.tags),
             tag.output(image.name, evaluate.without_mono(image.tags, mono_tags)),
             notag.output(image.name, []), image.target] for image in images]
    labels = ['{}\n{}'.format(image.character['tag'], '・'.join(t for t in image.tags if t in mono_tags))
              for image in images]
    mono = '/'.join(mono_tags)
    return grid(rows, ['drawing', 'tags with ' + mono, 'tags without ' + mono, 'no tag (baseline)', 'truth'],
                labels)


def fig_text_only(models, description, seed=0):
    tag = models['tag']
    size = tag.size
    white = Image.new('L', (size, size), 255)
    noise = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8), 'L')
    tag_sets = [[]] + [[c['tag']] for c in description['characters']]
    rows = [[tag.colour_drawing(drawing, tags) for tags in tag_sets] for drawing in (white, noise)]
    return grid(rows, [tags[0] if tags else '(no tag)' for tags in tag_sets], ['white', 'noise'])


def fig_tag_swap(models, description):
    tag = models['tag']
    rows, labels = [], []
    for character in description['characters']:
        twin = character['twin']
        image = first_image(tag, character['tag'])
        if twin is None or image is None:
            continue
        rows.append([image.drawing, tag.output(image.name, [character['tag']]),
                     tag.output(image.name, [twin]), image.target])
        labels.append('{}\n→ {}'.format(character['tag'], twin))
    if not rows:
        return None
    return grid(rows, ['drawing', 'own tag', "twin's tag", 'truth'], labels)


FIGURES = (
    ('fig5_6_miku.png', 'Fig. 5/6: 初音ミク without and with the tag', fig_miku,
     'A 初音ミク test drawing coloured by the --no-tag baseline and by the tag model given '
     'the single tag 初音ミク (the post: is green hair right? / with the tag, green).'),
    ('fig7_characters.png', 'Fig. 7: every character, no tag vs tag', fig_characters,
     'The first colour test image of each character: the baseline, the tag model (and any '
     'extra model) with the image\'s full tag list, and the truth.'),
    ('fig8_mono.png', 'Fig. 8: モノクロ / ノート suppress colour', fig_mono,
     'Test drawings whose target is monochrome, coloured by the tag model with their full '
     'tags and with the same tags less モノクロ / ノート.'),
    ('fig9_text_only.png', 'Fig. 9: text only (white and noise drawings)', fig_text_only,
     'No line art: a white and a noise drawing (seed 0) with no tag and with each '
     'character tag, coloured by the tag model.'),
    ('tag_swap.png', 'Tag swap: 響 ↔ 暁 and the FGO pair on one drawing', fig_tag_swap,
     'Each twin\'s first colour test drawing with its own character tag and with the twin\'s.'),
)


def make_all(models, description, out):
    """Writes every figure the test split allows into out; returns what the report lists."""
    written = []
    for file_name, title, make, caption in FIGURES:
        image = make(models, description)
        if image is None:
            written.append(dict(file=None, title=title, caption='not drawn: the test split has no '
                                                               'image for it'))
            continue
        image.save(os.path.join(out, file_name))
        written.append(dict(file=file_name, title=title, caption=caption))
    return written


# ---------------------------------------------------------------- report
def fmt(value, digits=3):
    if value is None:
        return '–'
    if isinstance(value, float) and not np.isfinite(value):
        return '∞'
    return '{:.{}f}'.format(value, digits)


def counted(score, key):
    """'0.536 (28)': a score with the number of test images behind it."""
    if score is None:
        return '–'
    return '{} ({})'.format(fmt(score[key]), score['n'])


SCORE_ROWS = (
    ('twins\' hair right, full tags', lambda m: counted(m['ambiguous_hair_accuracy'], 'accuracy')),
    ('twins\' hair right, character tag only',
     lambda m: counted(m.get('ambiguous_hair_accuracy_character_tag'), 'accuracy')),
    ('tag swap: hair follows the twin\'s tag, full tags',
     lambda m: counted(m.get('tag_swap_accuracy'), 'accuracy')),
    ('tag swap, character tag only', lambda m: counted(m.get('tag_swap_accuracy_character_tag'), 'accuracy')),
    ('region ΔE00, overall', lambda m: fmt(m['region_delta_e']['overall'], 2)),
) + tuple(
    ('{} ΔE00'.format(region), lambda m, region=region: fmt(m['region_delta_e']['per_region'][region], 2))
    for region in evaluate.REGIONS
) + (
    ('monochrome targets: chroma, full tags', lambda m: counted(m['mono_chroma'], 'chroma')),
    ('monochrome targets: chroma, without モノクロ/ノート',
     lambda m: counted(m.get('mono_chroma_without_tag'), 'chroma')),
    ('monochrome targets: chroma of the truth', lambda m: fmt(m['mono_chroma']['truth_chroma'], 2)),
    ('PSNR (dB)', lambda m: fmt(m['psnr'], 2)),
    ('L1 (0..255)', lambda m: fmt(m['l1'], 2)),
)


def table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def describe_model(label, settings):
    encoding = settings.get('tag_encoding') or ('not recorded' if settings.get('tag_vectors') else 'no tags')
    return '{} `{}` (tag encoding: {}, width {}, {} px)'.format(
        label, settings['dir'], encoding, settings.get('width'), settings.get('size'))


def report(result, args):
    """REPORT.md: targets, scores of every model, per character, tag vectors, figures, method."""
    models = result['models']
    labels = list(models)
    names = {'tag': 'tag model', 'notag': 'no tag (baseline)'}
    header = [names.get(label, label) for label in labels]
    command = 'python evaluate.py --model {} --baseline {} --data {} --out {}{}'.format(
        args.model, args.baseline, args.data, args.out,
        ''.join(' --extra {}={}'.format(label, path) for label, path in args.extra))
    counts = result['counts']
    parts = ['# pix2pix with text: evaluation\n\n',
             'Models: ' + '; '.join(describe_model(label, result['settings'][label]) for label in labels) + '.\n\n',
             'Data: `{}`, test split: {} images, {} of them with a monochrome target; {} twin images '
             'behind the pair accuracies. Written by `{}` in {:.1f} s.\n\n'.format(
                 result['data'], counts['test_images'], counts['mono'], counts['ambiguous'], command,
                 result['seconds'])]

    parts.append('## Targets\n\n')
    met = {True: 'yes', False: 'no', None: 'no data'}
    parts.append(table(['score', 'value', 'target', 'met'],
                       [(key, fmt(t['value']), '{} ({})'.format(t['target'], fmt(t['limit'])), met[t['met']])
                        for key, t in result['targets'].items()]))

    parts.append('\n## Scores\n\n')
    parts.append('Accuracies and chroma with the number of test images behind them in brackets. '
                 'The baseline always gets the zero tag plane.\n\n')
    parts.append(table(['score'] + header, [[name] + [row(models[label]) for label in labels]
                                            for name, row in SCORE_ROWS]))

    pairs = sorted({pair for m in models.values() for pair in m['ambiguous_hair_accuracy']['per_pair']})
    if pairs:
        parts.append('\n### Twins\' hair right, per pair (full tags)\n\n')
        rows = []
        for pair in pairs:
            rows.append([pair] + [fmt(models[label]['ambiguous_hair_accuracy']['per_pair'].get(pair))
                                  for label in labels])
            rows.append([pair + ', swapped'] + [
                fmt(models[label]['tag_swap_accuracy']['per_pair'].get(pair))
                if 'tag_swap_accuracy' in models[label] else '–' for label in labels])
        parts.append(table(['pair'] + header, rows))

    characters = sorted({c for m in models.values() for c in m['region_delta_e']['per_character']})
    parts.append('\n### Region ΔE00 per character (hair, eyes, clothes; full tags)\n\n')
    parts.append(table(['character'] + header, [
        [c] + [fmt(models[label]['region_delta_e']['per_character'].get(c), 2) for label in labels]
        for c in characters]))

    similarity_rows = [[label, ' / '.join(row['pair']), fmt(row['raw_cosine']), fmt(row['processed_cosine'])]
                       for label, rows in result['tag_vector_similarity'].items() for row in rows]
    if similarity_rows:
        parts.append('\n### Twins\' tag vectors\n\nCosine similarity of the two character tags\' raw '
                     'vectors (`vectorizer.kv[tag]`) and of the vectors the network sees '
                     '(`vectorizer.vector([tag])`).\n\n')
        parts.append(table(['model', 'pair', 'raw cosine', 'processed cosine'], similarity_rows))
    if result.get('unknown_tags'):
        parts.append('\nTags missing from a model\'s vocabulary (left out of its tag vector): ' + '; '.join(
            '{}: {}'.format(label, ', '.join(tags)) for label, tags in result['unknown_tags'].items()) + '\n')

    parts.append('\n## Figures\n')
    for figure in result['figures']:
        parts.append('\n### {}\n\n{}\n'.format(figure['title'], figure['caption']))
        if figure['file']:
            parts.append('\n![{}]({})\n'.format(figure['title'], figure['file']))

    parts.append('\n## Settings\n\n')
    keys = sorted({k for s in result['settings'].values() for k in s if k != 'dir'})
    setting = lambda label, key: result['settings'][label].get(key)
    parts.append(table(['model.json'] + header, [[k] + ['–' if setting(label, k) is None else setting(label, k)
                                                        for label in labels] for k in keys]))
    method = evaluate.__doc__.split('How the numbers are made', 1)[1]
    parts.append('\n## How the numbers are made\n\n(evaluate.py\'s docstring)\n\n'
                 + method[method.index('* '):].strip() + '\n')
    return ''.join(parts)
