"""Labelled image grids: training previews, colorize.py's and the web API's sheets, the figures.

One function, ``grid``, lays images out in rows under column labels (and, optionally,
beside row labels). Labels are drawn in a font that has Japanese glyphs (Noto CJK or IPA
Gothic, which ``./run.sh`` installs); without one they are written as code points
(U+97FF), which Pillow's own font can draw.
"""
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PATHS = (
    '/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc',
    '/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf',
    '/usr/share/fonts/truetype/fonts-japanese-gothic.ttf',
    '/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc',
)
MIN_FONT_SIZE = 16
PAD = 4


def font(size):
    """A font that draws Japanese (Noto CJK or IPA Gothic) if installed, else Pillow's."""
    for path in FONT_PATHS:
        if os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def has_cjk_font():
    return any(os.path.exists(p) for p in FONT_PATHS)


def label_text(text):
    """Text as a label: unchanged with a CJK font, else its code points (U+97FF)."""
    if has_cjk_font() or all(ord(c) < 128 for c in text):
        return text
    return ''.join(c if ord(c) < 128 else 'U+{:04X} '.format(ord(c)) for c in text).strip()


def wrap(text, label_font, width, draw):
    """Lines of at most width pixels, broken anywhere (Japanese has no spaces)."""
    lines = []
    for paragraph in text.split('\n'):
        line = ''
        for char in paragraph:
            if line and draw.textlength(line + char, font=label_font) > width:
                lines.append(line.rstrip())
                line = char.lstrip()
            else:
                line += char
        lines.append(line)
    return lines


def grid(rows, column_labels, row_labels=None, cell=None):
    """Images (PIL or uint8 arrays) in rows of cell x cell squares, each fitted whole into
    its square (its aspect ratio kept, white around it), each column labelled above and,
    with row_labels, each row labelled on the left; labels wrap in their cell. ``cell``
    defaults to the largest image side; the font grows with it."""
    rows = [[Image.fromarray(im) if isinstance(im, np.ndarray) else im for im in row] for row in rows]
    cell = cell or max(max(im.size) for row in rows for im in row)
    font_size = max(MIN_FONT_SIZE, cell // 12)
    label_font = font(font_size)
    line_h = font_size + 4
    measure = ImageDraw.Draw(Image.new('RGB', (1, 1)))
    column_lines = [wrap(label_text(t), label_font, cell - 2 * PAD, measure) for t in column_labels]
    label_h = max(len(lines) for lines in column_lines) * line_h + 2 * PAD
    left = (cell * 3) // 4 if row_labels else 0
    sheet = Image.new('RGB', (left + len(column_labels) * cell, label_h + len(rows) * cell), 'white')
    draw = ImageDraw.Draw(sheet)
    for c, lines in enumerate(column_lines):
        for i, line in enumerate(lines):
            draw.text((left + c * cell + PAD, PAD + i * line_h), line, fill='black', font=label_font)
    for r, row in enumerate(rows):
        top = label_h + r * cell
        if row_labels:
            lines = wrap(label_text(row_labels[r]), label_font, left - 2 * PAD, measure)
            y = top + max(PAD, (cell - len(lines) * line_h) // 2)
            for i, line in enumerate(lines):
                draw.text((PAD, y + i * line_h), line, fill='black', font=label_font)
        for c, image in enumerate(row):
            scale = cell / max(image.size)
            size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
            fitted = image.convert('RGB').resize(size, Image.BICUBIC)  # a copy when of that size
            sheet.paste(fitted, (left + c * cell + (cell - size[0]) // 2, top + (cell - size[1]) // 2))
    return sheet
