"""flatting.py: the drawing's regions, their flat colours and the kept lines."""
import re

import numpy as np
from PIL import Image

import colour_space
import flatting


def drawing_and_colouring():
    """A 60x40 drawing: a frame (the figure) split by a vertical line into two regions,
    the line with a 1-pixel gap, and a speck boxed in inside the left one; the
    colouring: left reddish, right bluish with noise, a grey smudge on the paper."""
    drawing = np.full((40, 60), 255, np.uint8)
    drawing[5, 5:55] = drawing[35, 5:55] = 0           # the frame's top and bottom
    drawing[5:36, 5] = drawing[5:36, 54] = 0            # its sides
    drawing[5:36, 30] = 0                               # the dividing line...
    drawing[20, 30] = 255                               # ...with a gap of one pixel
    drawing[14:19, 14] = drawing[14:19, 18] = 0         # a box of 3x3 pixels, 1 once the
    drawing[14, 14:19] = drawing[18, 14:19] = 0         # lines are thickened to close gaps
    rng = np.random.default_rng(0)
    colouring = np.empty((40, 60, 3), np.uint8)
    colouring[:] = (230, 230, 228)                      # the paper, smudged
    colouring[6:35, 6:30] = (200, 40, 40)
    colouring[6:35, 31:54] = (40, 60, 200)
    colouring = np.clip(colouring + rng.integers(-6, 7, colouring.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(drawing, 'L'), Image.fromarray(colouring, 'RGB')


def test_each_region_is_one_colour_the_median_and_the_gap_does_not_leak():
    drawing, colouring = drawing_and_colouring()
    flat = np.asarray(flatting.flat_colours(colouring, drawing)).astype(int)
    left, right = flat[15, 15], flat[15, 45]
    assert (flat[6:35, 7:29] == left).all() and (flat[6:35, 32:53] == right).all()
    source = np.asarray(colouring).astype(int)
    _, count = flatting.regions(flatting.line_mask(drawing))
    assert count == 4  # the paper, left, right and the speck
    labels, _ = flatting.regions(flatting.line_mask(drawing))
    np.testing.assert_array_equal(left, np.round(np.median(source[labels == labels[25, 20]], axis=0)))
    assert abs(left - (200, 40, 40)).max() <= 3 and abs(right - (40, 60, 200)).max() <= 3
    # The paper around the figure is paper, not the network's grey smudge.
    assert (flat[0:4] == 255).all() and (flat[:, 0:4] == 255).all()
    # The speck takes the colour around it, not a median of its own.
    assert (flat[15:18, 15:18] == left).all()


def test_without_closing_the_gap_the_two_sides_would_be_one_region(monkeypatch):
    drawing, _ = drawing_and_colouring()
    _, closed = flatting.regions(flatting.line_mask(drawing))
    monkeypatch.setattr(flatting, 'CLOSE_GAPS', 0)
    _, open_ = flatting.regions(flatting.line_mask(drawing))
    assert open_ == closed - 1  # left and right leak into one


def test_the_lines_lie_on_top_at_full_resolution():
    drawing, colouring = drawing_and_colouring()
    picture, flat = flatting.compose(colouring, drawing)
    picture, lines = np.asarray(picture), np.asarray(drawing)
    assert (picture[lines == 0] == 0).all()                 # black lines stay black
    np.testing.assert_array_equal(picture[lines == 255], np.asarray(flat)[lines == 255])
    layer = np.asarray(flatting.line_layer(drawing))
    assert layer.shape == (40, 60, 4) and (layer[..., 3] == 255 - lines).all()


def test_a_drawing_of_no_lines_or_all_lines_keeps_the_colouring():
    # All line: nothing to fill; blank paper: no line to keep, and its colouring (tags
    # alone, figure_prior.py) is a figure, which one flat region would wipe out.
    _, colouring = drawing_and_colouring()
    assert len(np.unique(np.asarray(colouring).reshape(-1, 3), axis=0)) > 1
    for value in (0, 255):
        drawing = Image.new('L', colouring.size, value)
        flat = flatting.flat_colours(colouring, drawing)
        np.testing.assert_array_equal(np.asarray(flat), np.asarray(colouring))


def test_the_lines_benchmark_scores_both_ways_and_times_a_large_drawing(tiny_model, tmp_path, capsys):
    import bench_lines
    assert bench_lines.main(['--model', str(tiny_model), '--data', str(tmp_path / 'd512'),
                             '--side', '600', '800']) == 0
    out = capsys.readouterr().out
    rows = {line.split('|')[1].strip(): [float(x) for x in line.split('|')[2:5]]
            for line in out.splitlines() if line.startswith(('| network', '| kept lines'))}
    assert set(rows) == {'network', 'kept lines'}
    assert all(0 < value < 100 for values in rows.values() for value in values)
    assert '600x800 drawing: network' in out and 'peak resident memory' in out
    assert re.search(r'a dot on the 512x512 drawing: \d+ probe colourings [\d.]+ s .* the regions and the '
                     r'spread [\d.]+ s \(median of 5\)', out)


def outline(drawing, top, left, bottom, right):
    """Draws a box's outline in black, its edges at these rows and columns (inclusive)."""
    drawing[top, left:right + 1] = drawing[bottom, left:right + 1] = 0
    drawing[top:bottom + 1, left] = drawing[top:bottom + 1, right] = 0


def hinted_drawing():
    """A 60x40 frame split by a vertical line into left and right, the right split again
    by a horizontal line into top and bottom; the colouring: left red, right top and
    right bottom the same blue, the paper white."""
    drawing = np.full((40, 60), 255, np.uint8)
    outline(drawing, 5, 5, 35, 54)
    drawing[5:36, 30] = 0
    drawing[20, 30:55] = 0
    colouring = np.full((40, 60, 3), 255, np.uint8)
    colouring[6:35, 6:30] = (200, 40, 40)
    colouring[6:35, 31:54] = (40, 60, 200)
    return Image.fromarray(drawing, 'L'), Image.fromarray(colouring, 'RGB')


def test_a_dot_sets_its_region_and_the_alike_neighbour_and_nothing_else():
    drawing, colouring = hinted_drawing()
    green = (30, 200, 60)
    dot = flatting.hint_picture((60, 40), [(40, 10, green)])
    flat = np.asarray(flatting.flat_colours(colouring, drawing, dot))
    # Its own region (right top) exactly, the right bottom too (the network coloured it
    # alike), not the red left beside it, not the paper.
    assert (flat[6:20, 32:53] == green).all() and (flat[22:35, 32:53] == green).all()
    assert (flat[7:34, 7:29] == (200, 40, 40)).all() and (flat[0:4] == 255).all()
    # With no spread the dot keeps to its own region.
    flat = np.asarray(flatting.flat_colours(colouring, drawing, dot, spread=0))
    assert (flat[6:20, 32:53] == green).all() and (flat[22:35, 32:53] == (40, 60, 200)).all()


def test_a_probe_that_colours_two_regions_apart_stops_the_spread():
    drawing, colouring = hinted_drawing()
    probe = np.array(colouring)
    probe[21:35, 31:54] = (250, 250, 0)  # under another tag the right bottom is yellow
    green = (30, 200, 60)
    dot = flatting.hint_picture((60, 40), [(40, 10, green)])
    flat = np.asarray(flatting.flat_colours(colouring, drawing, dot, probes=[Image.fromarray(probe)]))
    assert (flat[6:20, 32:53] == green).all() and (flat[22:35, 32:53] == (40, 60, 200)).all()


def test_a_neighbour_the_colouring_paints_another_colour_keeps_it_whatever_the_probes_say():
    drawing, colouring = hinted_drawing()
    green = (30, 200, 60)
    dot = flatting.hint_picture((60, 40), [(40, 10, green)])

    def right_bottom(own):
        """The right bottom coloured ``own`` by the network, and the blue of the right top
        by four probes: on average over the five, a fifth of ``own``'s ΔE00, within SPREAD."""
        pixels = np.array(colouring)
        pixels[21:35, 31:54] = own
        probes = [Image.fromarray(np.asarray(colouring))] * 4
        flat = flatting.flat_colours(Image.fromarray(pixels), drawing, dot, probes=probes)
        return np.asarray(flat)[22:35, 32:53]

    blue = np.array((40, 60, 200), np.float64)

    def delta_e(colour):
        return float(colour_space.ciede2000(colour_space.srgb_to_lab(np.array(colour, np.float64)),
                                            colour_space.srgb_to_lab(blue)))

    # 15.4 ΔE00 off the hinted region in the colouring: within NEIGHBOUR_PART (16), taken.
    assert 15 < delta_e((40, 106, 200)) < flatting.NEIGHBOUR_PART
    assert (right_bottom((40, 106, 200)) == green).all()
    # 16.9 off: another part to the colouring, though the probes paint it the same.
    assert flatting.NEIGHBOUR_PART < delta_e((40, 110, 200)) < 17
    assert (right_bottom((40, 110, 200)) == (40, 110, 200)).all()


def parted_drawing():
    """Three boxes side by side, 1 px of paper between them (not neighbours): left and
    right coloured the same yellow by the network (a hair parted by the face), the middle
    skin; a fourth box below the right one, a yellow 7 ΔE00 off the hair's."""
    drawing = np.full((50, 70), 255, np.uint8)
    for left, right in ((2, 22), (24, 44), (46, 66)):
        outline(drawing, 2, left, 22, right)
    outline(drawing, 25, 46, 45, 66)
    colouring = np.full((50, 70, 3), 255, np.uint8)
    colouring[3:22, 3:22] = colouring[3:22, 47:66] = (240, 200, 40)
    colouring[3:22, 25:44] = (250, 210, 180)
    colouring[26:45, 47:66] = (225, 175, 25)
    return Image.fromarray(drawing, 'L'), Image.fromarray(colouring, 'RGB')


def test_a_dot_reaches_the_same_part_beyond_its_neighbours_and_only_that():
    drawing, colouring = parted_drawing()
    red = (220, 30, 30)
    dot = flatting.hint_picture((70, 50), [(10, 10, red)])
    flat = np.asarray(flatting.flat_colours(colouring, drawing, dot))
    # The far side of the hair (the same yellow) takes the dot; the skin between, the
    # yellow 7 ΔE00 off (over SAME_PART) and the paper do not.
    assert (flat[4:21, 4:21] == red).all() and (flat[4:21, 48:65] == red).all()
    assert (flat[4:21, 26:43] == (250, 210, 180)).all() and (flat[27:44, 48:65] == (225, 175, 25)).all()
    assert (flat[0, :] == 255).all()
    # A probe that colours the far side apart (another tag's colours) keeps it.
    probe = np.array(colouring)
    probe[3:22, 47:66] = (40, 60, 200)
    flat = np.asarray(flatting.flat_colours(colouring, drawing, dot, probes=[Image.fromarray(probe)]))
    assert (flat[4:21, 48:65] == (240, 200, 40)).all()


def test_a_far_region_takes_the_dot_within_same_part_and_far_spread():
    drawing, colouring = parted_drawing()
    red, hair = (220, 30, 30), np.array((240, 200, 40), np.float64)
    dot = flatting.hint_picture((70, 50), [(10, 10, red)])

    def far_side(own, under_probes):
        """The far side coloured ``own`` by the network and ``under_probes`` by two probes."""
        pixels = np.array(colouring)
        pixels[3:22, 47:66] = own
        probe = np.array(pixels)
        probe[3:22, 47:66] = under_probes
        probes = [Image.fromarray(probe)] * 2
        return np.asarray(flatting.flat_colours(Image.fromarray(pixels), drawing, dot, probes=probes))[
            4:21, 48:65]

    def delta_e(colour):
        return float(colour_space.ciede2000(colour_space.srgb_to_lab(np.array(colour, np.float64)),
                                            colour_space.srgb_to_lab(hair)))

    # 3.6 ΔE00 off the hinted side in the network's own colouring: within SAME_PART (4).
    assert 3.5 < delta_e((228, 186, 40)) < flatting.SAME_PART
    assert (far_side((228, 186, 40), (228, 186, 40)) == red).all()
    # The probes paint it 39.5 ΔE00 off: on average over the colouring and two probes
    # 26.4, over a neighbour's SPREAD (20) but within FAR_SPREAD (28): it takes the dot.
    assert 26 < 2 * delta_e((240, 90, 40)) / 3 < flatting.FAR_SPREAD
    assert (far_side(tuple(hair), (240, 90, 40)) == red).all()
    # 43.3 off under the probes (28.9 on average) keeps its colour.
    assert 2 * delta_e((240, 75, 40)) / 3 > flatting.FAR_SPREAD
    assert (far_side(tuple(hair), (240, 75, 40)) == hair).all()


def test_two_colours_in_one_region_split_it_and_say_so():
    drawing, colouring = hinted_drawing()
    notes = []
    hints = flatting.hint_picture((60, 40), [(8, 20, (0, 0, 0)), (28, 20, (255, 255, 0)),
                                             (40, 30, (0, 0, 255))])
    flat = np.asarray(flatting.flat_colours(colouring, drawing, hints, notes=notes))
    assert (flat[7:34, 7:17] == 0).all() and (flat[7:34, 19:29] == (255, 255, 0)).all()  # nearer dot's colour
    assert (flat[22:35, 32:53] == (0, 0, 255)).all()
    assert notes == ['the region at x=8, y=20 holds hints of 2 colours (#000000, #ffff00): split between '
                     "them, each pixel the nearest hint's"]
    # A hints picture from a paint program: strokes of opaque pixels; faint ones are no hint.
    stroke = np.zeros((40, 60, 4), np.uint8)
    stroke[10:12, 10:25] = (255, 0, 255, 255)
    stroke[25, 40] = (0, 255, 0, 100)
    flat = np.asarray(flatting.flat_colours(colouring, drawing, Image.fromarray(stroke, 'RGBA')))
    assert (flat[7:34, 7:29] == (255, 0, 255)).all() and (flat[22:35, 32:53] == (40, 60, 200)).all()
