"""The drawing's own lines kept at full size, the network's colours laid flat under them.

The network colours at its training size (128 px for the demo), so its colouring of a
large drawing is an enlargement, soft at every edge. Colourists "flat" a page instead:
every region the line art closes gets one colour, and the lines go on top. Here:

1. lines: the drawing's pixels darker than LINE_THRESHOLD;
2. regions: what the lines enclose, after closing gaps in them of up to CLOSE_GAPS
   pixels (the lines thickened by that much before the regions are told apart, as a
   paint program's fill does), so that a region does not leak into its neighbour;
3. each region's colour: the median of the network's colours over it (a median, so
   that the soft colour the network bleeds across a line does not pull it); the regions
   that touch the picture's border and come out near white stay paper, not the
   network's smudges; regions under MIN_AREA pixels and the pixels under the thickened
   lines take the colour of the nearest region that was large enough;
4. the picture: the flat colours multiplied by the drawing, so its lines, with their
   own anti-aliasing, lie on top at full resolution.

Shading or a gradient inside one region is flattened (a colourist shades on top of the
flats); ``--lines network`` keeps the network's own colours. The thresholds were chosen
on the default data drawn at 512 px (docs/hires.md, "Lines kept").

Colour hints (a dot, or a stroke, of the colour the artist wants) act on the regions:
the region a hint lies in takes its colour exactly, and the colour flows on into the
neighbouring regions (across one line, and on from them) that the network coloured as
the same part: within SPREAD ΔE00 of the hinted region's colour, on average over the
colouring and the ``probes`` (the network's colourings of the same drawing under other
tags, colour_model.probe_colourings, which tell apart parts one colouring paints alike,
as 暁's navy hair and navy uniform), and within NEIGHBOUR_PART in the colouring itself
(a hand the probes paint like the hair beside it is still skin). A hair drawn as many
strands is one part to the network, and one dot recolours all of it, while the face
beside it keeps its colour.
Beyond the neighbours, only a region the network coloured the same (within SAME_PART
ΔE00 in its own colouring, and within FAR_SPREAD over the probes) takes the colour: the
far side of a hair the face parts, not a skirt the network coloured about like an eye. A
region reached from two hints takes the nearer one's (in regions crossed); the paper
never takes a spread colour. A region holding hints of several
colours is split between them, each pixel taking the nearest hint's colour, and that is
said (``notes``).
"""
import collections

import numpy as np
from PIL import Image
from scipy import ndimage

from colour_space import ciede2000, srgb_to_lab

# A pixel darker than this (0..255) is line; the default data's anti-aliased lines fade
# out towards 255, and 200 takes their soft edges into the lines.
LINE_THRESHOLD = 200
# Gaps in the lines closed before the regions are told apart, in pixels.
CLOSE_GAPS = 1
# Regions smaller than this many pixels take the colour of the nearest larger one: the
# specks between crossing lines would otherwise get a median of a few blurred pixels.
MIN_AREA = 16
# A border region whose median colour has every channel above this is paper.
PAPER = 200
# A hint's colour spreads to neighbouring regions whose network colour lies within this
# many ΔE00 of the hinted region's; 0 keeps every hint to its own region.
SPREAD = 20.0
# ... and within NEIGHBOUR_PART of it in the network's own colouring: a region the
# colouring itself paints another colour is another part, whatever the probes say.
NEIGHBOUR_PART = 16.0
# A region anywhere in the drawing whose colour in the network's own colouring is within
# SAME_PART ΔE00 of a hinted region's, and within FAR_SPREAD of it on average over the
# colouring and the probes, is the same part, beside it or not: the far side of a hair
# parted by the face. The probes get more room than a neighbour's SPREAD: under another
# character's tag the network paints that character's hair where it expects it, so a
# strand far from the crown often comes out unlike it, while the tight bound in the
# network's own colouring already keeps other parts out (docs/hires.md, "Colour hints").
SAME_PART = 4.0
FAR_SPREAD = 28.0
# A pixel of a hints picture with at least this opacity is a hint.
HINT_OPACITY = 128


def line_mask(drawing):
    """(H, W) bool: the lines of an 'L' drawing."""
    return np.asarray(drawing) < LINE_THRESHOLD


def regions(lines):
    """The regions the lines enclose, gaps of up to CLOSE_GAPS pixels closed: (H, W)
    labels (0 on the thickened lines) and their count."""
    closed = ndimage.binary_dilation(lines, iterations=CLOSE_GAPS) if CLOSE_GAPS else lines
    return ndimage.label(~closed)


def flat_colours(colouring, drawing, hints=None, spread=None, notes=None, probes=()):
    """The flat colour layer (an RGB image of the drawing's size): each region of the
    drawing's line art in the median colour of ``colouring`` (an RGB image of the same
    size) over it, as the module's docstring says; ``hints`` (an RGBA image of that
    size, see hint_picture) sets the colours of the regions it touches and of those its
    colours spread to. What a hint conflict did is appended to ``notes`` (a list)."""
    colours = np.asarray(colouring.convert('RGB'))
    lines = line_mask(drawing)
    labels, count = regions(lines)
    if count == 0 or not lines.any():  # all line, or blank paper: no region to lay flat
        return colouring.convert('RGB')
    index = np.arange(1, count + 1)
    median = np.stack([ndimage.median(colours[..., c], labels, index) for c in range(3)], axis=1)
    network = [np.concatenate([[[255, 255, 255]], median])]  # before the paper is made white
    for probe in probes:
        pixels = np.asarray(probe.convert('RGB'))
        network.append(np.concatenate([[[255, 255, 255]], np.stack(
            [ndimage.median(pixels[..., c], labels, index) for c in range(3)], axis=1)]))
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border = border[border > 0]
    paper = np.zeros(count + 1, bool)
    paper[border[median[border - 1].min(axis=1) > PAPER]] = True
    median[paper[1:]] = 255
    large = np.zeros(count + 1, bool)
    large[1:] = np.bincount(labels.ravel(), minlength=count + 1)[1:] >= MIN_AREA
    if not large.any():
        return colouring.convert('RGB')
    palette = np.zeros((count + 1, 3), np.uint8)
    palette[1:] = np.round(median)
    # Every pixel outside a large region takes the label of the nearest pixel inside one.
    nearest = ndimage.distance_transform_edt(~large[labels], return_distances=False, return_indices=True)
    filled = labels[nearest[0], nearest[1]]
    flat = palette[filled]
    if hints is not None:
        apply_hints(flat, filled, network, paper, hints, SPREAD if spread is None else spread, notes)
    return Image.fromarray(flat, 'RGB')


def apply_hints(flat, filled, network, paper, hints, spread, notes):
    """Recolours ``flat`` (H, W, 3) in place from the hints, as the module's docstring says.
    ``filled``: every pixel's region; ``network``: each region's network colour."""
    rgba = np.asarray(hints.convert('RGBA'))
    where = rgba[..., 3] >= HINT_OPACITY
    if not where.any():
        return
    ys, xs = np.nonzero(where)
    hinted = collections.defaultdict(list)  # region -> [(y, x, colour)], in reading order
    for y, x in zip(ys, xs):
        hinted[filled[y, x]].append((y, x, tuple(int(v) for v in rgba[y, x, :3])))
    colour_of = {}
    for region, dots in hinted.items():
        kinds = list(dict.fromkeys(colour for _, _, colour in dots))
        if len(kinds) == 1:
            colour_of[region] = kinds[0]
            continue
        split_region(flat, filled == region, dots)
        if notes is not None:
            y, x = dots[0][:2]
            notes.append('the region at x={}, y={} holds hints of {} colours ({}): split between them, each '
                         'pixel the nearest hint\'s'.format(x, y, len(kinds), ', '.join(
                             '#{:02x}{:02x}{:02x}'.format(*colour) for colour in kinds)))
    for region, colour in spread_hints(colour_of, neighbours(filled), network, paper, spread,
                                       set(hinted)).items():
        flat[filled == region] = colour


def split_region(flat, inside, dots):
    """Each pixel of one region in the colour of the nearest of its hints."""
    seeds = np.ones(inside.shape, bool)
    colour_at = {}
    for y, x, colour in dots:
        seeds[y, x] = False
        colour_at[y, x] = colour
    nearest_y, nearest_x = ndimage.distance_transform_edt(seeds, return_distances=False, return_indices=True)
    for y, x in zip(*np.nonzero(inside)):
        flat[y, x] = colour_at[nearest_y[y, x], nearest_x[y, x]]


def neighbours(filled):
    """{region: set of regions}: the regions that meet across a line (every pixel given
    to its nearest region, the pairs of regions side by side)."""
    pairs = np.concatenate([np.stack([filled[:, :-1].ravel(), filled[:, 1:].ravel()], axis=1),
                            np.stack([filled[:-1].ravel(), filled[1:].ravel()], axis=1)])
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
    graph = collections.defaultdict(set)
    for a, b in pairs:
        graph[a].add(b)
        graph[b].add(a)
    return graph


def spread_hints(colour_of, graph, network, paper, spread, held):
    """{region: colour}: the hinted regions' colours, spread breadth first over ``graph``
    (all hints at once, so a region goes to the hint fewest regions away) to the regions
    whose colours in ``network`` (one array of region colours per colouring) lie within
    ``spread`` ΔE00 of their hinted region's, on average over the colourings, and within
    NEIGHBOUR_PART in the network's own colouring (``network[0]``); then, of
    the regions left, to those anywhere in the drawing within SAME_PART ΔE00 of a hinted
    region in the network's own colouring and within FAR_SPREAD on
    average (the nearer hint's, on average, where two qualify). ``held`` regions (hinted
    ones) and the paper take no spread colour."""
    result = dict(colour_of)
    if spread <= 0:
        return result
    labs = [srgb_to_lab(colours) for colours in network]
    free = ~paper.copy()
    free[0] = False
    free[list(held)] = False
    frontier = [(region, region) for region in colour_of]  # (region, the hinted region it came from)
    while frontier:
        reached = []
        for region, source in frontier:
            for other in sorted(graph[region]):
                if other in result or not free[other]:
                    continue
                if ciede2000(labs[0][other], labs[0][source]) > NEIGHBOUR_PART:
                    continue
                if np.mean([ciede2000(lab[other], lab[source]) for lab in labs]) <= spread:
                    result[other] = colour_of[source]
                    reached.append((other, source))
        frontier = reached
    free[list(result)] = False
    nearest = np.full(len(paper), np.inf)  # the mean ΔE00 to the hint a far region took
    for source in colour_of:
        own = ciede2000(labs[0], labs[0][source])
        mean = np.mean([ciede2000(lab, lab[source]) for lab in labs], axis=0)
        for other in np.flatnonzero(free & (own <= SAME_PART) & (mean <= FAR_SPREAD) & (mean < nearest)):
            result[other], nearest[other] = colour_of[source], mean[other]
    return result


class HintError(ValueError):
    """A hint that cannot be read; the message says why in one line."""


def parse_hint(text):
    """'X,Y,#RRGGBB' (X, Y in the drawing's pixels) -> (x, y, (r, g, b)); HintError if not."""
    parts = [part.strip() for part in text.split(',')]
    colour = parts[2].lstrip('#') if len(parts) == 3 else ''
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(colour) != 6 or \
            any(c not in '0123456789abcdefABCDEF' for c in colour):
        raise HintError('hint {!r}: give X,Y,#RRGGBB (pixels from the top left, a hex colour)'.format(text))
    return int(parts[0]), int(parts[1]), tuple(int(colour[i:i + 2], 16) for i in (0, 2, 4))


def hints_of(size, dots=(), picture=None):
    """The RGBA hints picture of a drawing of ``size`` (W, H): the dots (x, y, colour) over
    a hints picture of the same size, if given; HintError for a dot outside the drawing
    or a picture of another size."""
    if picture is not None and picture.size != tuple(size):
        raise HintError('the hints picture is {}x{}, the drawing {}x{}: draw the hints on a layer of the '
                        "drawing's size".format(*picture.size, *size))
    for x, y, _ in dots:
        if not (0 <= x < size[0] and 0 <= y < size[1]):
            raise HintError('hint at x={}, y={} lies outside the {}x{} drawing'.format(x, y, *size))
    layer = hint_picture(size, dots)
    if picture is not None:
        layer = Image.alpha_composite(picture.convert('RGBA'), layer)
    return layer


def with_hints_shown(drawing, hints, radius=3):
    """The drawing (RGB) with each hint pixel shown as a dot of ``radius`` in its colour."""
    rgba = np.asarray(hints.convert('RGBA'))
    where = rgba[..., 3] >= HINT_OPACITY
    shown = np.array(drawing.convert('RGB'))
    if where.any():
        distance, (ys, xs) = ndimage.distance_transform_edt(~where, return_indices=True)
        near = distance <= radius
        shown[near] = rgba[ys[near], xs[near], :3]
    return Image.fromarray(shown, 'RGB')


def hint_picture(size, dots):
    """An RGBA hints picture of ``size`` (W, H) with one opaque pixel per (x, y, (r, g, b))."""
    picture = np.zeros((size[1], size[0], 4), np.uint8)
    for x, y, colour in dots:
        picture[y, x] = tuple(colour) + (255,)
    return Image.fromarray(picture, 'RGBA')


def compose(colouring, drawing, hints=None, notes=None, probes=()):
    """The picture with the drawing's lines kept, and the flat colour layer under them
    (with ``hints``, an RGBA hints picture, as flat_colours takes)."""
    flat = flat_colours(colouring, drawing, hints, notes=notes, probes=probes)
    return with_lines(flat, drawing), flat


def with_lines(flat, drawing):
    """The flat colours with the drawing multiplied over them: its lines on top."""
    shade = np.asarray(drawing, np.uint16)[..., None]
    return Image.fromarray((np.asarray(flat, np.uint16) * shade // 255).astype(np.uint8), 'RGB')


def line_layer(drawing):
    """The line layer a paint program opens: black, as opaque as the drawing is dark."""
    alpha = 255 - np.asarray(drawing, np.uint8)
    layer = np.zeros(alpha.shape + (4,), np.uint8)
    layer[..., 3] = alpha
    return Image.fromarray(layer, 'RGBA')
