"""figure_prior.py: blank paper's canvases counted from the training pictures."""
import json

import numpy as np
import pytest
from PIL import Image

import colour_model
import compat
import figure_prior
from colour_space import ciede2000, srgb_to_lab

RED, BLUE, WHITE = (220, 30, 30), (30, 40, 200), (255, 255, 255)


def pictures(tmp_path, name, count, square=None, colour=RED, side=32):
    """``count`` white pictures, the first ones with a ``square`` (top, left, size) of
    ``colour``; square may be a list, one per picture (None: none)."""
    paths = []
    for i in range(count):
        picture = np.full((side, side, 3), 255, np.uint8)
        box = square[i] if isinstance(square, list) else square
        if box is not None:
            top, left, size = box
            picture[top:top + size, left:left + size] = colour
        path = tmp_path / '{}_{}.png'.format(name, i)
        Image.fromarray(picture).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def two_tags(tmp_path):
    """Tag A: a red square at the top left in 2 of its 5 pictures; tag B: a blue square
    at the bottom right in all 5 of its."""
    a = pictures(tmp_path, 'a', 5, [(0, 0, 16)] * 2 + [None] * 3)
    b = pictures(tmp_path, 'b', 5, (16, 16, 16), BLUE)
    return figure_prior.estimate(a + b, [['A']] * 5 + [['B']] * 5, 32)


def share_of(canvas, colour):
    return float(np.all(np.asarray(canvas) == colour, axis=-1).mean())


def test_a_large_data_set_is_counted_on_a_random_share_and_unreadable_pictures_are_left_out(
        tmp_path, monkeypatch):
    paths = pictures(tmp_path, 'a', 6, (0, 0, 16))
    (tmp_path / 'broken.png').write_bytes(b'not a picture')
    monkeypatch.setattr(figure_prior, 'COUNTED_PICTURES', 4)
    prior = figure_prior.estimate(paths + [str(tmp_path / 'broken.png')], [['A']] * 7, 32)
    assert prior.counts[-1, 0, 0].sum() in (3, 4)  # 4 drawn at random, of which 1 may be the broken one
    monkeypatch.setattr(figure_prior, 'COUNTED_PICTURES', 100)
    prior = figure_prior.estimate(paths + [str(tmp_path / 'broken.png')], [['A']] * 7, 32)
    assert prior.counts[0, 0, 0].sum() == prior.counts[-1, 31, 31].sum() == 6


def test_the_palette_is_the_pictures_colours_and_the_counts_are_per_place(two_tags):
    assert sorted(map(tuple, two_tags.palette.tolist())) == sorted([RED, BLUE, WHITE])
    assert two_tags.tags == ['A', 'B'] and two_tags.counts.shape == (3, 32, 32, 3)
    red = [tuple(c) for c in two_tags.palette.tolist()].index(RED)
    assert two_tags.counts[0, 0, 0, red] == 2 and two_tags.counts[-1, 0, 0, red] == 2
    assert two_tags.counts[0, 31, 31].sum() == 5 and two_tags.counts[-1, 31, 31].sum() == 10


def test_each_place_takes_its_most_frequent_colour_without_guidance(two_tags):
    # B's square is in all its pictures; A's red in 2 of 5, so white wins there unguided.
    assert share_of(two_tags.canvas(['B'], 32), BLUE) == 0.25
    assert share_of(two_tags.canvas(['A'], 32), RED) == 0.0


def test_guidance_takes_the_places_where_the_tag_differs_from_the_common_figure(two_tags):
    # At A's square all ten pictures give red (2 + 0.5) / 11.5 = 0.217 and white 0.739
    # (half a count added to each of the 3 colours); A's five, with one picture's worth
    # of those, red (2 + 0.217) / 6 = 0.370 and white 0.623. The guided score
    # log p_all + W (log p_A - log p_all) puts red first from W = 1.745 on.
    assert share_of(two_tags.canvas(['A'], 32, guidance=1.7), RED) == 0.0
    assert share_of(two_tags.canvas(['A'], 32, guidance=1.8), RED) == 0.25
    # Guidance leaves B's square (blue in all its pictures, half of all) as it is.
    assert share_of(two_tags.canvas(['B'], 32, guidance=3), BLUE) == 0.25


def test_tags_without_counts_are_left_out_and_none_gives_no_canvas(two_tags):
    assert np.array_equal(np.asarray(two_tags.canvas(['B', 'C'], 32)), np.asarray(two_tags.canvas(['B'], 32)))
    assert two_tags.canvas(['C'], 32) is None and two_tags.knows(['C', 'B']) == ['B']


def test_each_tag_of_a_set_adds_its_evidence(tmp_path):
    # A hat (a red square at the top) on some of A's pictures (a blue body) and of B's (a
    # green body): A with the hat gets both, A alone its body only (hat in 2 of 5).
    green = (40, 160, 60)
    a_hat = pictures(tmp_path, 'ah', 2, (0, 8, 16))
    b_hat = pictures(tmp_path, 'bh', 2, (0, 8, 16))
    paths, tags = a_hat + b_hat, [['A', 'hat']] * 2 + [['B', 'hat']] * 2
    paths += pictures(tmp_path, 'a', 3, None) + pictures(tmp_path, 'b', 3, None)
    tags += [['A']] * 3 + [['B']] * 3
    for path, body in zip(paths, [BLUE] * 2 + [green] * 2 + [BLUE] * 3 + [green] * 3):
        picture = np.array(Image.open(path))
        picture[20:30, 8:24] = body
        Image.fromarray(picture).save(path)
    prior = figure_prior.estimate(paths, tags, 32)
    with_hat, alone = (prior.canvas(tags, 32, guidance=1.5) for tags in (['A', 'hat'], ['A']))
    assert share_of(with_hat, RED) == 256 / 1024 and share_of(with_hat, BLUE) == 160 / 1024
    assert share_of(alone, RED) == 0 and share_of(alone, BLUE) == 160 / 1024 and share_of(alone, green) == 0


def test_a_larger_canvas_is_enlarged_before_the_colours_are_chosen(two_tags):
    canvas = two_tags.canvas(['B'], 96)
    assert canvas.size == (96, 96)
    # The square is 48 px a side at 3x, give or take its edge's pixel.
    assert 47 ** 2 / 96 ** 2 <= share_of(canvas, BLUE) <= 49 ** 2 / 96 ** 2
    assert set(map(tuple, np.asarray(canvas).reshape(-1, 3).tolist())) <= {BLUE, WHITE}  # no blends


def test_a_saved_prior_loads_the_same_and_a_damaged_or_foreign_file_is_refused(two_tags, tmp_path):
    path = tmp_path / 'prior.npz'
    two_tags.save(str(path))
    loaded = figure_prior.FigurePrior.load(str(path))
    assert loaded.tags == two_tags.tags and np.array_equal(loaded.counts, two_tags.counts)
    assert np.array_equal(np.asarray(loaded.canvas(['A'], 40, 2)), np.asarray(two_tags.canvas(['A'], 40, 2)))
    truncated = tmp_path / 'truncated.npz'
    truncated.write_bytes(path.read_bytes()[:200])
    pickled = tmp_path / 'pickled.npz'
    np.savez(pickled, palette=two_tags.palette, tags=np.array([object()]), counts=two_tags.counts)
    wrong = tmp_path / 'wrong.npz'
    np.savez(wrong, palette=two_tags.palette, tags=np.array(['A']), counts=two_tags.counts)
    for bad in (truncated, pickled, wrong, tmp_path / 'missing.npz'):
        with pytest.raises(figure_prior.PriorError) as error:
            figure_prior.FigurePrior.load(str(bad))
        assert str(bad) in str(error.value) and '\n' not in str(error.value)


def test_a_trained_model_colours_blank_paper_from_its_prior(tiny_model, small_data):
    model = colour_model.ColourModel.load(str(tiny_model), compat.get_device(-1))
    assert model.prior is not None and '初音ミク' in model.prior.tags
    paper = Image.new('L', (96, 64), 255)
    canvas = model.colour(paper, ['初音ミク'])
    expected = model.prior.canvas(['初音ミク'], 96, colour_model.BLANK_GUIDANCE).crop((0, 16, 96, 80))
    assert canvas.size == (96, 64) and canvas.tobytes() == expected.tobytes()
    # The character's hair colour (characters.json) covers a good part of her canvas.
    characters = json.loads((small_data / 'characters.json').read_text(encoding='utf-8'))['characters']
    hair = next(c for c in characters if c['tag'] == '初音ミク')['colors']['hair']
    near = ciede2000(srgb_to_lab(np.asarray(canvas, np.float64)), srgb_to_lab(np.asarray(hair, np.float64)))
    assert (near < 10).mean() > 0.1
    drawing = Image.open(small_data / 'test' / 'line' / 'miku_0000.png').convert('L')
    prior, model.prior = model.prior, None  # a drawing of lines is the network's, prior or not
    plain = model.colour(drawing, ['初音ミク'])
    model.prior = prior
    assert model.colour(drawing, ['初音ミク']).tobytes() == plain.tobytes()


def test_a_model_folder_whose_prior_is_missing_or_misnamed_is_refused(tiny_model, tmp_path):
    folder = tmp_path / 'model'
    folder.mkdir()
    for name in ('model.json', 'enc.npz', 'dec.npz', 'tag_vectors.txt'):
        (folder / name).write_bytes((tiny_model / name).read_bytes())
    with pytest.raises(colour_model.ModelError, match='figure_prior.npz is missing'):
        colour_model.ColourModel.load(str(folder), compat.get_device(-1))
    settings = json.loads((folder / 'model.json').read_text(encoding='utf-8'))
    settings['figure_prior'] = '../figure_prior.npz'
    (folder / 'model.json').write_text(json.dumps(settings), encoding='utf-8')
    with pytest.raises(colour_model.ModelError, match='"figure_prior" must be a file name'):
        colour_model.ColourModel.load(str(folder), compat.get_device(-1))
