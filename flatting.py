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
"""
import numpy as np
from PIL import Image
from scipy import ndimage

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


def line_mask(drawing):
    """(H, W) bool: the lines of an 'L' drawing."""
    return np.asarray(drawing) < LINE_THRESHOLD


def regions(lines):
    """The regions the lines enclose, gaps of up to CLOSE_GAPS pixels closed: (H, W)
    labels (0 on the thickened lines) and their count."""
    closed = ndimage.binary_dilation(lines, iterations=CLOSE_GAPS) if CLOSE_GAPS else lines
    return ndimage.label(~closed)


def flat_colours(colouring, drawing):
    """The flat colour layer (an RGB image of the drawing's size): each region of the
    drawing's line art in the median colour of ``colouring`` (an RGB image of the same
    size) over it, as the module's docstring says."""
    colours = np.asarray(colouring.convert('RGB'))
    labels, count = regions(line_mask(drawing))
    if count == 0:  # all line, or an empty drawing
        return colouring.convert('RGB')
    index = np.arange(1, count + 1)
    median = np.stack([ndimage.median(colours[..., c], labels, index) for c in range(3)], axis=1)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border = border[border > 0]
    median[border[median[border - 1].min(axis=1) > PAPER] - 1] = 255
    large = np.zeros(count + 1, bool)
    large[1:] = np.bincount(labels.ravel(), minlength=count + 1)[1:] >= MIN_AREA
    if not large.any():
        return colouring.convert('RGB')
    palette = np.zeros((count + 1, 3), np.uint8)
    palette[1:] = np.round(median)
    # Every pixel outside a large region takes the label of the nearest pixel inside one.
    nearest = ndimage.distance_transform_edt(~large[labels], return_distances=False, return_indices=True)
    return Image.fromarray(palette[labels[nearest[0], nearest[1]]], 'RGB')


def compose(colouring, drawing):
    """The picture with the drawing's lines kept, and the flat colour layer under them."""
    flat = flat_colours(colouring, drawing)
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
