"""The post's figures and REPORT.md for evaluate.py, from the outputs its scores coloured.

Figures (PNG grids made by sheets.grid, Japanese labels included):
    fig5_6_miku.png        初音ミク with no tag (the baseline) and with the tag (Fig. 5, 6)
    fig7_characters.png    per character: drawing | no tag | tags | extra models | truth (Fig. 7)
    fig8_mono.png          monochrome targets: tags with モノクロ / ノート vs without (Fig. 8)
    fig9_text_only.png     a white and a noise drawing with one tag each (white: the figure prior's
                           canvas and the network's own), beside each character's
                           mean test picture (Fig. 9, text to image)
    tag_swap.png           the twins' drawings with their own tag and the twin's (響 ↔ 暁, FGO)
A figure whose images the test split lacks (e.g. no monochrome image) is left out and
the report says so. evaluate.py calls this module; this module does not import it.
"""
import os

import numpy as np
from PIL import Image

import sheets

CELL = 192  # pixels per image in a figure (the demo models work at 128)


# ---------------------------------------------------------------- figures
def first_image(model, tag, mono=False):
    return next((image for image in model.images
                 if image.character['tag'] == tag and image.mono == mono), None)


def name_of(label, models):
    """How a model is named in figures and tables."""
    if label == 'tag':
        return 'new design' if 'post' in models else 'tag model'
    return {'notag': 'no tag (baseline)', 'post': "post's design"}.get(label, label)


def tag_models(models):
    """(name, model) of every tag model: the post's design first, then the tag model, then extras."""
    order = (['post'] if 'post' in models else []) + ['tag'] + [
        label for label in models if label not in ('tag', 'notag', 'post')]
    return [(name_of(label, models), models[label]) for label in order]


def fig_miku(models, description):
    tagged, notag = tag_models(models), models['notag']
    image = first_image(models['tag'], '初音ミク')
    if image is None:
        return None
    row = ([image.drawing, notag.output(image.name, [])]
           + [model.output(image.name, ['初音ミク']) for _, model in tagged] + [image.target])
    columns = (['drawing', name_of('notag', models)]
               + ['初音ミク ({})'.format(name) for name, _ in tagged] + ['truth'])
    return sheets.grid([row], columns, cell=CELL)


def fig_characters(models, description):
    tagged, notag = tag_models(models), models['notag']
    rows, labels = [], []
    for character in description['characters']:
        image = first_image(models['tag'], character['tag'])
        if image is None:
            continue
        rows.append([image.drawing, notag.output(image.name, [])]
                    + [model.output(image.name, image.tags) for _, model in tagged] + [image.target])
        labels.append(character['tag'])
    if not rows:
        return None
    columns = (['drawing', name_of('notag', models)] + ['tags ({})'.format(name) for name, _ in tagged]
               + ['truth'])
    return sheets.grid(rows, columns, labels, cell=CELL)


def fig_mono(models, description, limit=4):
    tagged, notag = tag_models(models), models['notag']
    mono_tags = description['mono_tags']
    images = [image for image in models['tag'].images if image.mono][:limit]
    if not images:
        return None
    rows = [[image.drawing]
            + [output for _, model in tagged for output in (model.output(image.name, image.tags),
                                                            model.output(image.name, image.tags_no_mono))]
            + [notag.output(image.name, []), image.target] for image in images]
    labels = ['{}\n{}'.format(image.character['tag'], '・'.join(t for t in image.tags if t in mono_tags))
              for image in images]
    mono = '/'.join(mono_tags)
    columns = (['drawing'] + [column.format(mono, name) for name, _ in tagged
                              for column in ('with {} ({})', 'without {} ({})')]
               + [name_of('notag', models), 'truth'])
    return sheets.grid(rows, columns, labels, cell=CELL)


def mean_picture(images):
    """The per-pixel mean (uint8 RGB) of the colour test pictures given."""
    return np.mean([image.target for image in images if not image.mono], axis=0).round().astype(np.uint8)


def fig_text_only(models, description, seed=0):
    tag = models['tag']
    size = tag.size
    white = Image.new('L', (size, size), 255)
    noise = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8), 'L')
    tag_sets = [[]] + [[c['tag']] for c in description['characters']
                       if any(im.character['tag'] == c['tag'] and not im.mono for im in tag.images)]
    rows = [[tag.colour_drawing(drawing, tags) for tags in tag_sets] for drawing in (white, noise)]
    labels = ['white', 'noise']
    if tag.model.prior is not None:  # the white canvases above are the figure prior's: the network's own too
        rows.insert(1, [tag.model.colour(white, tags, use_prior=False) for tags in tag_sets])
        labels.insert(1, 'white, network')
    # What the layout score compares the white canvases with: each character's mean
    # colour test picture (under no tag, every character's).
    rows.append([mean_picture([im for im in tag.images if not tags or im.character['tag'] == tags[0]])
                 for tags in tag_sets])
    return sheets.grid(rows, [tags[0] if tags else '(no tag)' for tags in tag_sets],
                       labels + ['mean test picture'], cell=CELL)


def fig_tag_swap(models, description):
    tagged = tag_models(models)
    rows, labels = [], []
    for character in description['characters']:
        twin = character['twin']
        image = first_image(models['tag'], character['tag'])
        if twin is None or image is None:
            continue
        rows.append([image.drawing] + [output for _, model in tagged for output in (
            model.output(image.name, [character['tag']]), model.output(image.name, [twin]))] + [image.target])
        labels.append('{}\n→ {}'.format(character['tag'], twin))
    if not rows:
        return None
    columns = ['drawing'] + [column.format(name) for name, _ in tagged
                             for column in ('own tag ({})', "twin's tag ({})")] + ['truth']
    return sheets.grid(rows, columns, labels, cell=CELL)


FIGURES = (
    ('fig5_6_miku.png', 'Fig. 5/6: 初音ミク without and with the tag', fig_miku,
     'A 初音ミク test drawing coloured by the --no-tag baseline and by each tag model given '
     'the single tag 初音ミク (the post: is green hair right? / with the tag, green).'),
    ('fig7_characters.png', 'Fig. 7: every character, no tag vs tag', fig_characters,
     'The first colour test image of each character: the baseline, each tag model with '
     'the image\'s full tag list, and the truth.'),
    ('fig8_mono.png', 'Fig. 8: モノクロ / ノート suppress colour', fig_mono,
     'Test drawings whose target is monochrome, coloured by each tag model with their full '
     'tags and with the same tags less モノクロ / ノート.'),
    ('fig9_text_only.png', 'Fig. 9: text only (white and noise drawings)', fig_text_only,
     'No line art: a white and a noise drawing (seed 0) with no tag and with each '
     'character tag, coloured by the tag model (the new design where there is one): on '
     'white paper, the canvas of its figure prior (figure_prior.py, what colorize.py --blank '
     'gives) and, under it, the network\'s own colouring; below them, each character\'s mean '
     'colour test picture, what the layout score compares the white canvas with.'),
    ('tag_swap.png', 'Tag swap: 響 ↔ 暁 and the FGO pair on one drawing', fig_tag_swap,
     'Each twin\'s first colour test drawing with its own character tag and with the twin\'s, '
     'by each tag model.'),
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
    ('tag swap: hair follows the twin\'s tags as a user types them',
     lambda m: counted(m.get('tag_swap_accuracy'), 'accuracy')),
    ('tag swap, character tag only', lambda m: counted(m.get('tag_swap_accuracy_character_tag'), 'accuracy')),
    ('tag swap, the image\'s other tags all kept',
     lambda m: counted(m.get('tag_swap_accuracy_full_tags'), 'accuracy')),
    ('text only: own palette nearest', lambda m: counted(m.get('text_only_palette'), 'accuracy')),
    ('text only: own layout nearest', lambda m: counted(m.get('text_only_layout'), 'accuracy')),
    ('text only: layout distance to the own mean picture',
     lambda m: fmt(m['text_only_layout']['distance'], 2) if m.get('text_only_layout') else '–'),
    ('… the network\'s own canvases (not the figure prior\'s): palette / layout (distance)',
     lambda m: '{} / {} ({})'.format(fmt(m['text_only_palette_network']['accuracy']),
                                     fmt(m['text_only_layout_network']['accuracy']),
                                     fmt(m['text_only_layout_network']['distance'], 2))
     if m.get('text_only_layout_network') else '–'),
    ('region ΔE00, overall', lambda m: fmt(m['region_delta_e']['overall'], 2)),
    ('REGIONS', None),  # one row per region of the scores, in their order
    ('monochrome targets: chroma, full tags', lambda m: counted(m['mono_chroma'], 'chroma')),
    ('monochrome targets: chroma, without モノクロ/ノート',
     lambda m: counted(m.get('mono_chroma_without_tag'), 'chroma')),
    ('monochrome targets: chroma of the truth', lambda m: fmt(m['mono_chroma']['truth_chroma'], 2)),
    ('PSNR (dB)', lambda m: fmt(m['psnr'], 2)),
    ('L1 (0..255)', lambda m: fmt(m['l1'], 2)),
)


def score_rows(models):
    """SCORE_ROWS with one row per region in place of the REGIONS marker."""
    regions = list(next(iter(models.values()))['region_delta_e']['per_region'])
    rows = []
    for name, row in SCORE_ROWS:
        if row is None:
            rows += [('{} ΔE00'.format(region),
                      lambda m, region=region: fmt(m['region_delta_e']['per_region'][region], 2))
                     for region in regions]
        else:
            rows.append((name, row))
    return rows


def table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def describe_model(label, settings):
    encoding = settings.get('tag_encoding') or ('not recorded' if settings.get('tag_vectors') else 'no tags')
    return '{} `{}` (tag encoding: {}, width {}, {} px)'.format(
        label, settings['dir'], encoding, settings.get('width'), settings.get('size'))


def report(result, command, method):
    """REPORT.md: targets, scores of every model, per pair and character, tag vectors,
    figures, settings, and the method text evaluate.py gives."""
    labels = list(result['models'])
    header = [name_of(label, result['models']) for label in labels]
    counts = result['counts']
    parts = ['# pix2pix with text: evaluation\n\n',
             'Models: ' + '; '.join(describe_model(label, result['settings'][label]) for label in labels)
             + '.\n\n',
             'Data: `{}`, test split: {} images, {} of them with a monochrome target; {} twin images '
             'behind the pair accuracies. Written by `{}` in {:.1f} s.\n\n'.format(
                 result['data'], counts['test_images'], counts['mono'], counts['ambiguous'], command,
                 result['seconds'])]
    parts += [targets_section(result), scores_section(result, labels, header), lines_kept_section(result),
              hints_section(result),
              pairs_section(result, labels, header), characters_section(result, labels, header),
              similarity_section(result), figures_section(result), settings_section(result, labels, header),
              '\n## How the numbers are made\n\n' + method.strip() + '\n']
    return ''.join(parts)


def targets_section(result):
    met = {True: 'yes', False: 'no', None: 'no data'}
    return '## Targets\n\n' + table(
        ['score', 'value', 'target', 'met'],
        [(key, fmt(t['value']), '{} ({})'.format(t['target'], fmt(t['limit'])), met[t['met']])
         for key, t in result['targets'].items()])


def scores_section(result, labels, header):
    models = result['models']
    return ('\n## Scores\n\nAccuracies and chroma with the number of test images behind them in brackets. '
            'The baseline always gets the zero tag plane.\n\n'
            + table(['score'] + header, [[name] + [row(models[label]) for label in labels]
                                         for name, row in score_rows(models)]))


def lines_kept_section(result):
    kept = result.get('lines_kept')
    if not kept:
        return ''
    names = {'network': "the network's colouring enlarged (`--lines network`)",
             'kept_lines': "the drawing's lines over flat colours (`--lines keep`, the default)"}
    return ('\n### Lines kept at the drawing\'s size\n\nThe tag model on the {} test drawings at their own '
            'size, {} px, with their full tags; edge sharpness 1 is as sharp as the truth.\n\n'.format(
                kept['n'], kept['size'])
            + table(['output', 'PSNR dB', 'edge sharpness', 'region ΔE00', 'twins\' hair right',
                     'monochrome chroma, with / without its tags'],
                    [(names[label], fmt(kept[label]['psnr'], 2), fmt(kept[label]['edge_sharpness']),
                      fmt(kept[label]['region_delta_e'], 2), fmt(kept[label].get('ambiguous_hair_accuracy')),
                      '{} / {}'.format(fmt(kept[label].get('mono_chroma_with_tag'), 2),
                                       fmt(kept[label].get('mono_chroma_without_tag'), 2)))
                     for label in ('network', 'kept_lines')]))


def hints_section(result):
    hints = result.get('hints')
    if not hints or not hints.get('n'):
        return ''

    def errors(suffix):
        return tuple(fmt(hints.get('region_delta_e_{}_hints{}'.format(count, suffix)), 2)
                     for count in (0, 1, 3))

    rows = [('region ΔE00 (hair, eyes, clothes)',) + errors('')]
    rows += [('… {}'.format(part),) + errors('_' + part) for part in ('hair', 'eyes', 'clothes')]
    text = ('\n### Colour hints\n\nThe tag model on {} colour test drawings at their own size, lines kept{}, '
            'with dots from the truth:\n\n'.format(hints['n'], ', shaded by the shading model (--shading)'
                                                    * bool(hints.get('shaded')))
            + table(['', 'no hint', 'one (hair)', 'three (hair, clothes, eyes)'], rows))
    gaps = [('intact', '')] + [('a gap of {} px in the outline'.format(gap), '_gap_{}px'.format(gap))
                               for gap in (1, 2, 4)]
    text += ('\nOne dot of a colour the character never has, on the hair:\n\n'
             + table(['drawing', 'hair obeying it', 'change of the other parts (ΔE00)'],
                     [(name, fmt(hints.get('hint_obeyed' + suffix)), fmt(hints.get('hint_bleed' + suffix), 2))
                      for name, suffix in gaps]))
    return text


def pairs_section(result, labels, header):
    models = result['models']
    pairs = sorted({pair for m in models.values() for pair in m['ambiguous_hair_accuracy']['per_pair']})
    if not pairs:
        return ''
    rows = []
    for pair in pairs:
        rows.append([pair] + [fmt(models[label]['ambiguous_hair_accuracy']['per_pair'].get(pair))
                              for label in labels])
        rows.append([pair + ', swapped'] + [
            fmt(models[label]['tag_swap_accuracy']['per_pair'].get(pair))
            if 'tag_swap_accuracy' in models[label] else '–' for label in labels])
    return '\n### Twins\' hair right, per pair (full tags)\n\n' + table(['pair'] + header, rows)


def characters_section(result, labels, header):
    models = result['models']
    characters = sorted({c for m in models.values() for c in m['region_delta_e']['per_character']})
    return '\n### Region ΔE00 per character (hair, eyes, clothes; full tags)\n\n' + table(
        ['character'] + header,
        [[c] + [fmt(models[label]['region_delta_e']['per_character'].get(c), 2) for label in labels]
         for c in characters])


def similarity_section(result):
    rows = [[label, ' / '.join(row['pair']), fmt(row['raw_cosine']), fmt(row['processed_cosine'])]
            for label, rows in result['tag_vector_similarity'].items() for row in rows]
    text = ''
    if rows:
        text += ('\n### Twins\' tag vectors\n\nCosine similarity of the two character tags\' raw '
                 'vectors (`vectorizer.kv[tag]`) and of the vectors the network sees '
                 '(`vectorizer.vector([tag])`).\n\n')
        text += table(['model', 'pair', 'raw cosine', 'processed cosine'], rows)
    if result.get('unknown_tags'):
        text += '\nTags missing from a model\'s vocabulary (left out of its tag vector): ' + '; '.join(
            '{}: {}'.format(label, ', '.join(tags)) for label, tags in result['unknown_tags'].items()) + '\n'
    return text


def figures_section(result):
    text = '\n## Figures\n'
    for figure in result['figures']:
        text += '\n### {}\n\n{}\n'.format(figure['title'], figure['caption'])
        if figure['file']:
            text += '\n![{}]({})\n'.format(figure['title'], figure['file'])
    return text


def settings_section(result, labels, header):
    keys = sorted({k for s in result['settings'].values() for k in s if k != 'dir'})

    def setting(label, key):
        return result['settings'][label].get(key)

    return '\n## Settings\n\n' + table(
        ['model.json'] + header,
        [[k] + ['–' if setting(label, k) is None else setting(label, k) for label in labels] for k in keys])
