"""evaluate.py: the colour metrics on cases with known answers, and one run end to end."""
import json
import math
import re

import numpy as np
import pytest
from PIL import Image

import colour_space
import evaluate
import flatting
import train_facade_text

# Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula: implementation
# notes, supplementary test data, and mathematical observations", Table 1:
# (L1, a1, b1), (L2, a2, b2), ΔE00.
SHARMA_PAIRS = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -1.1848, -84.8006), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -0.9009, -85.5211), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0010), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0012), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0010, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 1.8634, 0.5757), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]
LABELS = {'background': 0, 'skin': 1, 'hair': 2, 'eyes': 3, 'clothes': 4}


def test_ciede2000_matches_sharmas_table_both_ways_and_at_once():
    first, second, expected = (np.array(column) for column in zip(*SHARMA_PAIRS))
    np.testing.assert_allclose(colour_space.ciede2000(first, second), expected, atol=5e-5)
    np.testing.assert_allclose(colour_space.ciede2000(second, first), expected, atol=5e-5)
    for lab1, lab2, delta in SHARMA_PAIRS[:3]:
        assert float(colour_space.ciede2000(lab1, lab2)) == pytest.approx(delta, abs=5e-5)


def test_srgb_to_lab_known_values():
    lab = colour_space.srgb_to_lab([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]])
    expected = [[100, 0, 0], [0, 0, 0], [53.2408, 80.0925, 67.2032],
                [87.7347, -86.1827, 83.1793], [32.2970, 79.1875, -107.8602]]
    np.testing.assert_allclose(lab, expected, atol=2e-3)


def test_black_against_white_is_100_and_a_colour_against_itself_is_0():
    white, black = colour_space.srgb_to_lab([255, 255, 255]), colour_space.srgb_to_lab([0, 0, 0])
    assert float(colour_space.ciede2000(white, black)) == pytest.approx(100, abs=1e-6)
    colours = np.random.default_rng(0).integers(0, 256, (50, 3))
    np.testing.assert_array_equal(colour_space.ciede2000(colour_space.srgb_to_lab(colours),
                                                     colour_space.srgb_to_lab(colours)), 0)


def test_grey_has_zero_chroma():
    greys = np.repeat(np.arange(256)[:, None], 3, axis=1)
    assert np.abs(colour_space.chroma(colour_space.srgb_to_lab(greys))).max() < 1e-9
    image = np.full((4, 4, 3), 200, np.uint8)
    assert evaluate.mean_chroma(image, np.ones((4, 4), np.uint8)) == pytest.approx(0, abs=1e-9)


def regions_image(colours):
    """A 4x4 picture: its left half hair, right half clothes (in colours), eyes absent."""
    mask = np.zeros((4, 4), np.uint8)
    mask[:, :2], mask[:, 2:] = LABELS['hair'], LABELS['clothes']
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:, :2], rgb[:, 2:] = colours
    return rgb, mask


def test_region_error_is_zero_for_the_true_colour_and_known_for_a_wrong_one():
    target, mask = regions_image([(235, 235, 240), (38, 46, 92)])
    assert evaluate.region_errors(target, target, mask, LABELS) == {'hair': 0.0, 'clothes': 0.0}
    # Black hair against white: ΔE00 is exactly 100 (L* 0 vs 100, no chroma).
    white_target, _ = regions_image([(255, 255, 255), (38, 46, 92)])
    black_output, _ = regions_image([(0, 0, 0), (38, 46, 92)])
    errors = evaluate.region_errors(black_output, white_target, mask, LABELS)
    assert errors['hair'] == pytest.approx(100, abs=1e-6) and errors['clothes'] == 0


def test_region_colour_is_the_mean_lab_of_its_pixels_only():
    rgb, mask = regions_image([(255, 0, 0), (0, 0, 255)])
    np.testing.assert_allclose(evaluate.region_lab(rgb, mask, LABELS['hair']),
                               colour_space.srgb_to_lab([255, 0, 0]))
    assert evaluate.region_lab(rgb, mask, LABELS['eyes']) is None


def test_pair_rule_picks_the_nearer_twin():
    hibiki, akatsuki = (235, 235, 240), (40, 45, 95)
    light = colour_space.srgb_to_lab([220, 222, 228])
    dark = colour_space.srgb_to_lab([60, 60, 100])
    assert evaluate.nearer_to_first(light, hibiki, akatsuki)
    assert not evaluate.nearer_to_first(light, akatsuki, hibiki)
    assert evaluate.nearer_to_first(dark, akatsuki, hibiki)
    # Exactly halfway is not right for either.
    assert not evaluate.nearer_to_first(colour_space.srgb_to_lab(hibiki), hibiki, hibiki)


def test_psnr_and_l1():
    image = np.random.default_rng(0).integers(0, 246, (8, 8, 3)).astype(np.uint8)
    assert evaluate.psnr(image, image) == math.inf and evaluate.l1(image, image) == 0
    off_by_ten = image + 10
    assert evaluate.psnr(off_by_ten, image) == pytest.approx(20 * math.log10(255 / 10))
    assert evaluate.l1(off_by_ten, image) == pytest.approx(10)


def test_targets_say_met_not_met_or_no_data():
    values = dict(ambiguous_hair_accuracy_tag=1.0, ambiguous_hair_accuracy_notag=0.7,
                  tag_swap_accuracy=None, mono_chroma_with_tag=1.0, mono_chroma_without_tag=4.0,
                  region_delta_e_tag=6.0)
    targets = evaluate.check_targets(values)
    assert [targets[k]['met'] for k in values if k != 'mono_chroma_without_tag'] == [
        True, False, None, True, None]
    assert targets['text_only_palette_accuracy']['met'] is None  # not scored at all
    values['post_design'] = dict(region_delta_e_tag=10.0)
    assert evaluate.check_targets(values)['region_delta_e_tag']['met'] is True  # 6.0 <= 0.6 * 10.0
    values['post_design'] = dict(region_delta_e_tag=9.0)
    assert evaluate.check_targets(values)['region_delta_e_tag']['met'] is False  # 6.0 > 5.4


def test_swap_as_typed_replaces_the_character_and_colour_tags(small_data):
    description = evaluate.read_description(str(small_data))
    characters = {c['tag']: c for c in description['characters']}
    hibiki = characters['響']
    assert hibiki['colour_tags'] == ['銀髪', '白髪'] and characters['暁']['colour_tags'] == ['紺髪']
    assert characters['アルトリア・ペンドラゴン〔オルタ〕']['colour_tags'] == ['金髪', '黒ドレス']

    def image(tags):
        return evaluate.TestImage('x', hibiki, tags, tags, False, None, None, None)

    assert evaluate.swapped_as_typed(image(['響', '艦これ', '銀髪', 'かわいい']), characters) == [
        '暁', '艦これ', 'かわいい', '紺髪']
    assert evaluate.swapped_as_typed(image(['響', '艦これ', 'ロングヘア']), characters) == [
        '暁', '艦これ', 'ロングヘア']


def test_palette_leaves_out_the_paper_and_sums_to_one():
    white = np.full((4, 4, 3), 255, np.uint8)
    assert evaluate.palette(white).sum() == 0  # nothing but paper
    hair = white.copy()
    hair[:2] = (235, 235, 240)  # 響's hair: L* 93, kept
    hair[2, 0] = (40, 45, 95)   # 暁's
    histogram = evaluate.palette(hair)
    assert histogram.sum() == pytest.approx(1.0)
    assert sorted(histogram[histogram > 0]) == pytest.approx([1 / 9, 8 / 9])


def test_an_invisible_tint_leaves_the_palette_where_it_was():
    # Greys, white hair and black lines sit on the grey axis: with a bin edge there, a
    # tint of 1 green level (ΔE00 at most 1.1, below what the eye sees) moved them into
    # the next bins (L1 1.5 here, of at most 2), and a tint of 2 took the truth's own test
    # pictures' accuracy to 0.87 on the demo's data. With a bin centred on the axis: 0.
    picture = np.zeros((4, 4, 3), np.uint8)  # black lines
    picture[1] = (235, 235, 240)  # 響's hair
    picture[2] = (128, 128, 128)
    picture[3] = (60, 60, 60)
    tinted = picture.copy()
    tinted[..., 1] += 1
    lab, tinted_lab = (colour_space.srgb_to_lab(p.reshape(-1, 3)) for p in (picture, tinted))
    assert colour_space.ciede2000(lab, tinted_lab).max() < 1.2
    assert np.abs(evaluate.palette(picture) - evaluate.palette(tinted)).sum() == 0


class Oracle:
    """A 'model' whose output is the target itself, whatever the tags; on a blank drawing
    it paints a colour test image of the character tagged (or of ``always``)."""

    def __init__(self, images, always=None):
        self.images = images
        self.by_name = {image.name: image for image in images}
        self.size = images[0].target.shape[0]
        self.always = always

    def output(self, name, tags):
        return self.by_name[name].target

    def colour_drawing(self, drawing, tags):
        tag = self.always or tags[0]
        return next(image.target for image in self.images if image.character['tag'] == tag and not image.mono)


def test_the_truth_scores_perfectly(small_data):
    description = evaluate.read_description(str(small_data))
    characters = {c['tag']: c for c in description['characters']}
    oracle = Oracle(evaluate.load_test_images(str(small_data), description, 128))
    regions = evaluate.region_scores(oracle, description['labels'])
    assert regions['overall'] == 0 and regions['n_images'] == len(oracle.images)
    own = evaluate.pair_accuracy(oracle, characters, description['labels'], lambda image: image.tags, False)
    assert own['accuracy'] == 1 and own['n'] > 0
    # Swapping tags cannot move the truth: it stays with its own character every time.
    swap = evaluate.pair_accuracy(oracle, characters, description['labels'], lambda image: [], True)
    assert swap['accuracy'] == 0 and swap['n'] == own['n']
    assert evaluate.chroma_score(oracle, lambda image: image.tags)['chroma'] == pytest.approx(0, abs=1e-9)
    text_only = evaluate.text_only_scores(oracle)
    in_colour = {image.character['tag'] for image in oracle.images if not image.mono}
    assert text_only['accuracy'] == 1 and text_only['n'] == len(in_colour) >= 6
    # A 'model' that paints 初音ミク whatever the tag is right for her alone.
    always_miku = evaluate.text_only_scores(Oracle(oracle.images, always='初音ミク'))
    assert always_miku['accuracy'] == pytest.approx(1 / len(in_colour))
    assert set(always_miku['nearest'].values()) == {'初音ミク'}
    # One colour test picture per character here: the oracle paints the mean picture.
    layout = evaluate.text_only_layout_scores(oracle)
    assert layout['accuracy'] == 1 and layout['n'] == len(in_colour)
    assert layout['distance'] == layout['truth_distance'] == 0 and layout['white_distance'] > 10


def test_layout_cells_are_the_mean_lab_of_each_cell():
    picture = np.full((16, 16, 3), 255, np.uint8)
    picture[:8, :4] = (200, 40, 40)  # half of the top-left 8 x 8 cell
    cells = evaluate.layout_cells(picture, cells=2)
    red, white = (colour_space.srgb_to_lab(np.array(c, np.float64)) for c in ((200, 40, 40), (255, 255, 255)))
    np.testing.assert_allclose(cells[0, 0], (red + white) / 2, atol=1e-9)
    np.testing.assert_allclose(cells[1:, :].reshape(-1, 3), np.tile(white, (2, 1)), atol=1e-9)
    np.testing.assert_allclose(cells[0, 1], white, atol=1e-9)
    # A side that is no multiple of the grid: cells of 2 and 3 pixels, each its own mean.
    odd = evaluate.layout_cells(picture[:5, :5], cells=2)
    np.testing.assert_allclose(odd[0, 0], red, atol=1e-9)  # edges 0, 2.5 -> 2, 5: rows and columns 0-1
    assert evaluate.layout_distance(cells, cells) == 0


class Painter:
    """A 'model' with two characters' test pictures whose canvas for a tag is ``paint[tag]``."""

    def __init__(self, images, paint):
        self.images, self.paint, self.size = images, paint, images[0].target.shape[0]

    def colour_drawing(self, drawing, tags):
        return self.paint[tags[0]]


def test_layout_score_finds_each_figure_by_where_its_colours_are():
    red_top, red_bottom = (np.full((16, 16, 3), 255, np.uint8) for _ in range(2))
    red_top[:8], red_bottom[8:] = (200, 40, 40), (200, 40, 40)
    grey = np.full((16, 16, 3), 128, np.uint8)  # a monochrome picture: left out of the means

    def image(tag, target, mono=False):
        return evaluate.TestImage(tag, dict(tag=tag), [tag], [tag], mono, None, target, None)

    images = [image('A', red_top), image('A', red_top), image('A', grey, mono=True), image('B', red_bottom)]
    right = evaluate.text_only_layout_scores(Painter(images, dict(A=red_top, B=red_bottom)))
    assert right['accuracy'] == 1 and right['n'] == 2 and right['distance'] == 0
    assert right['truth_distance'] == 0  # every colour picture is its character's mean
    # The same palettes, swapped places: every cell is red against white, or white against red.
    swapped = evaluate.text_only_layout_scores(Painter(images, dict(A=red_bottom, B=red_top)))
    red_to_white = np.linalg.norm(colour_space.srgb_to_lab(np.array([200, 40, 40], np.float64))
                                  - colour_space.srgb_to_lab(np.array([255, 255, 255], np.float64)))
    assert swapped['accuracy'] == 0 and swapped['nearest'] == dict(A='B', B='A')
    assert swapped['distance'] == pytest.approx(red_to_white)
    # A white canvas differs from each figure in its red half.
    assert right['white_distance'] == pytest.approx(red_to_white / 2)


def test_kept_lines_sharpen_a_blurred_colouring(small_data):
    """lines_kept on a 'model' that returns the truth blurred as an enlargement blurs it
    (shrunk to 32 px and back): the lines kept over flat colours bring the edges back
    (measured: edge sharpness 0.32 -> 0.89, PSNR 17.0 -> 21.6 dB)."""
    description = evaluate.read_description(str(small_data))
    images = evaluate.load_test_images(str(small_data), description, 128)
    truth = {image.drawing.tobytes(): image.target for image in images}

    class Blurred:
        def colour(self, drawing, tags):
            small = Image.fromarray(truth[drawing.tobytes()]).resize((32, 32), Image.BICUBIC)
            return small.resize(drawing.size, Image.BICUBIC)

        def compose(self, colouring, drawing, tags):  # a ColourModel without a shading model's
            return flatting.compose(colouring, drawing)

    scores, (image, network, kept, flat) = evaluate.kept_line_scores(Blurred(), images, description)
    assert scores['size'] == 128 and scores['n'] == len(images)
    blurred, lines = scores['network'], scores['kept_lines']
    assert blurred['edge_sharpness'] < 0.4 and lines['edge_sharpness'] > 0.8
    assert lines['psnr'] > blurred['psnr'] + 3
    assert blurred['ambiguous_hair_accuracy'] == lines['ambiguous_hair_accuracy'] == 1
    assert lines['mono_chroma_with_tag'] == pytest.approx(0, abs=1e-6)  # the grey truth stays grey
    assert not image.mono and kept.size == flat.size == network.size == image.drawing.size


@pytest.fixture(scope='module')
def notag_model(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp('notag')
    assert train_facade_text.main(['-i', str(small_data), '-o', str(out), '--width', '8', '--size', '128',
                                   '--iteration', '2', '--snapshot_interval', '2', '--display_interval', '2',
                                   '--lr', '2e-4', '--no-tag']) == 0
    return out


def test_end_to_end_scores_figures_and_report(tiny_model, notag_model, small_data, tmp_path, capsys):
    out = tmp_path / 'report'
    assert evaluate.main(['--model', str(tiny_model), '--baseline', str(notag_model), '--data',
                          str(small_data), '--out', str(out), '--post', str(tiny_model),
                          '--extra', 'again={}'.format(tiny_model)]) == 0
    printed = capsys.readouterr().out
    assert str(out / 'scores.json') in printed
    scores = json.loads((out / 'scores.json').read_text('utf-8'))
    for key in ('ambiguous_hair_accuracy_tag', 'ambiguous_hair_accuracy_notag', 'tag_swap_accuracy',
                'region_delta_e_tag', 'region_delta_e_notag', 'mono_chroma_with_tag',
                'mono_chroma_without_tag', 'psnr_tag', 'psnr_notag'):
        assert isinstance(scores[key], float), key
    assert 0 <= scores['tag_swap_accuracy'] <= 1
    description = json.loads((small_data / 'characters.json').read_text('utf-8'))
    counts = scores['counts']
    assert counts['test_images'] == description['counts']['test']
    assert counts['mono'] == description['counts']['test_mono']
    assert counts['ambiguous'] == 4 - sum(name.split('_0')[0] in ('hibiki', 'akatsuki', 'artoria',
                                                                  'artoria_alter')
                                          for name in description['mono']['test'])
    assert set(scores['models']) == {'tag', 'notag', 'post', 'again'}
    # The same model under two labels scores the same: the colouring is deterministic.
    assert scores['models']['again'] == scores['models']['tag'] == scores['models']['post']
    assert scores['post_design']['region_delta_e_tag'] == scores['region_delta_e_tag']
    assert scores['targets']['region_delta_e_tag']['met'] is False  # not under 0.6 x itself
    assert set(scores['ambiguous_hair_accuracy_per_pair']) == {
        'アルトリア・ペンドラゴン/アルトリア・ペンドラゴン〔オルタ〕', '暁/響'}
    assert 0 <= scores['text_only_palette_accuracy'] <= 1
    assert scores['settings']['notag']['tag_vectors'] is None
    assert [row['pair'] for row in scores['tag_vector_similarity']['tag']] == [
        ['アルトリア・ペンドラゴン', 'アルトリア・ペンドラゴン〔オルタ〕'], ['暁', '響']]
    report = (out / 'REPORT.md').read_text('utf-8')
    links = re.findall(r'!\[[^]]*\]\(([^)]+)\)', report)
    assert len(links) == len(scores['figures']) == 7 and {'lines_kept.png', 'hints.png'} <= set(links)
    hints = scores['hints']
    assert hints['n'] == sum(1 for name in description['mono']['test']) * 0 + hints['n'] > 0
    for key in ('region_delta_e_0_hints', 'region_delta_e_3_hints', 'hint_obeyed', 'hint_bleed',
                'hint_obeyed_gap_2px', 'hint_bleed_gap_4px'):
        assert isinstance(hints[key], float), key
    assert 0 <= hints['hint_obeyed'] <= 1
    kept = scores['lines_kept']
    assert kept['size'] == 128 and kept['n'] == counts['test_images']
    assert set(kept) == {'size', 'n', 'network', 'kept_lines'}
    assert all(isinstance(kept[label][key], float) for label in ('network', 'kept_lines')
               for key in ('psnr', 'edge_sharpness', 'region_delta_e', 'mono_chroma_with_tag'))
    for link in links:
        assert (out / link).stat().st_size > 0
    assert 'ambiguous_hair_accuracy_tag' in report


def one_line_error(argv, capsys):
    code = evaluate.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_bad_inputs_are_one_line_errors(tiny_model, notag_model, small_data, tmp_path, capsys):
    code, err = one_line_error(['--model', str(tmp_path / 'none'), '--baseline', str(notag_model),
                                '--data', str(small_data), '--out', str(tmp_path / 'r')], capsys)
    assert code == 1 and len(err) == 1 and err[0].startswith('error: ') and 'model.json' in err[0]
    code, err = one_line_error(['--model', str(notag_model), '--baseline', str(notag_model),
                                '--data', str(small_data), '--out', str(tmp_path / 'r')], capsys)
    assert code == 1 and len(err) == 1 and '--no-tag' in err[0]
    code, err = one_line_error(['--model', str(tiny_model), '--baseline', str(notag_model),
                                '--data', str(tmp_path), '--out', str(tmp_path / 'r')], capsys)
    assert code == 1 and len(err) == 1 and 'characters.json' in err[0]
    with pytest.raises(SystemExit):
        evaluate.main(['--model', str(tiny_model), '--baseline', str(notag_model), '--extra', 'nolabel'])


def test_text_only_references_mosaic_takes_each_pixel_from_one_training_picture(small_data, capsys):
    import os

    import dataset
    import text_only_references
    train = dataset.TaggedImageDataset(os.path.join(str(small_data), 'train'), None, 64, blank_fraction=1.0,
                                       blank_truth='prototype')
    canvases = text_only_references.reference_canvases(train, ['響'], 64)
    pictures = np.stack([np.asarray(dataset.central_square(dataset.load_image(path), 64))
                         for path, tags in zip(train.paths, train.tags) if '響' in tags])
    assert len(pictures) == 2
    mosaic = canvases['mosaic']['響']
    from_first, from_second = ((mosaic == picture).all(axis=2) for picture in pictures)
    assert (from_first | from_second).all()  # every pixel is one of theirs, never a blend
    differ = (pictures[0] != pictures[1]).any(axis=2)
    assert differ.sum() > 500 and 0.4 < from_first[differ].mean() < 0.6  # drawn at random, half each
    np.testing.assert_array_equal(canvases['mean']['響'], pictures.mean(axis=0).round().astype(np.uint8))
    assert text_only_references.misses({'a': 'a', 'b': 'c', 'd': 'a', 'e': 'e'}, shown=1) == 'b→c, 1 more'
    # One colour test picture per character: each is its character's mean, so the last row
    # is all right at distance 0.
    assert text_only_references.main(['--data', str(small_data), '--size', '64']) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[-1] == '| the test pictures themselves | 1.000 | 1.000 | 0.00 | | |'
    assert [row.split(' | ')[0] for row in rows[2:]] == [
        '| mean', '| median', '| mosaic', '| prototype', '| white', '| the test pictures themselves']
