"""The film tag design: per-tag slots on the plane, read back into FiLM, the saturation
gate and the projection discriminator."""
import json
import warnings

import numpy as np
import pytest

import compat  # noqa: F401
import chainer
import chainer.functions as F

import colour_space
import net
import plane_layout
import tag_vectorizer
import train_facade_text
from tag_vectorizer import TagVectorizer
from updater import TextPix2pixUpdater, make_optimizer

TAG_LISTS = [['響', '艦これ', '銀髪'], ['暁', '艦これ', '紺髪'], ['初音ミク', 'モノクロ'],
             ['博麗霊夢', '東方']] * 3


@pytest.fixture(scope='module')
def vectorizer():
    return TagVectorizer.train(TAG_LISTS, dim=16, epochs=5)


# ---------------------------------------------------------------- the plane
@pytest.mark.parametrize('size', [128, 256, 200])
def test_cells_read_back_what_the_plane_holds(vectorizer, size):
    slots = TagVectorizer(vectorizer.kv, 'slots')
    for v, tags in ((vectorizer, ['響', '艦これ']), (slots, ['響', '艦これ', '銀髪'])):
        values = v.vector(tags)
        plane = tag_vectorizer.tag_plane(v, tags, size)
        np.testing.assert_array_equal(plane_layout.read_cells(plane[None], v.plane_values)[0], values)


def test_slots_hold_each_tag_alone_and_the_mean_layout_is_the_posts(vectorizer):
    slots = TagVectorizer(vectorizer.kv, 'slots', slots=4)
    values = slots.vector(['響', '艦これ']).reshape(4, 16)
    np.testing.assert_array_equal(values[0], vectorizer.standardised(vectorizer.kv['響']))
    np.testing.assert_array_equal(values[1], vectorizer.standardised(vectorizer.kv['艦これ']))
    assert (values[2:] == 0).all()
    # The post's layout: the standardised mean of the set, on the 4x4 grid.
    mean = vectorizer.vector(['響', '艦これ'])
    np.testing.assert_array_equal(mean, vectorizer.standardised(np.mean([vectorizer.kv['響'],
                                                                         vectorizer.kv['艦これ']], 0)))
    assert mean.shape == (16,) and vectorizer.plane_values == 16 and slots.plane_values == 64
    # モノクロ keeps its own slot whatever else comes with it; averaged, it moves the set little.
    with_mono = slots.vector(['初音ミク', 'モノクロ']).reshape(4, 16)
    np.testing.assert_array_equal(with_mono[1], vectorizer.standardised(vectorizer.kv['モノクロ']))
    with pytest.warns(tag_vectorizer.DroppedTagsWarning, match='slots'):
        slots.vector(['響', '艦これ', '銀髪', '暁', '紺髪'])  # 5 tags, 4 slots


# ---------------------------------------------------------------- the networks
def film_networks(width=4, seed=0, **settings):
    np.random.seed(seed)
    design = net.film_design(slots=4, **settings)
    return (net.Encoder(4, width, design), net.Decoder(3, width, design),
            net.Discriminator(4, 3, width, design), design)


def tag_input(vectorizer, tag_sets, size=128, seed=0):
    v = TagVectorizer(vectorizer.kv, 'slots', slots=4)
    drawing = np.random.RandomState(seed).uniform(-1, 1, (size, size)).astype(np.float32)
    x = np.empty((len(tag_sets), 4, size, size), np.float32)
    x[:, :3] = drawing  # one drawing, the tags differ
    for i, tags in enumerate(tag_sets):
        x[i, 3] = tag_vectorizer.tag_plane(v, tags, size)
    return x


def test_the_tag_reader_sums_the_tags_present_and_nothing_else(vectorizer):
    enc, _, _, _ = film_networks()
    x = tag_input(vectorizer, [['響', '艦これ'], ['艦これ', '響'], []])
    with chainer.using_config('train', True):
        tags = enc.tags(x)
    np.testing.assert_allclose(tags.c.array[0], tags.c.array[1], rtol=1e-6)  # a set: order does not matter
    assert (tags.c.array[2] == 0).all() and tags.present.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0],
                                                                      [0, 0, 0, 0]]
    np.testing.assert_allclose(tags.c.array[0], tags.each.array[0].sum(axis=0), rtol=1e-6)


def test_film_starts_as_the_example_and_is_one_product_for_all_layers():
    layers = [net.ConvBNR(4, 8, film=5), net.ConvBNR(8, 6, film=5), net.ConvBNR(6, 6)]
    c = np.random.RandomState(0).normal(size=(2, 5)).astype(np.float32)
    films = net.film_parameters(layers, c)
    assert films[2] is None
    for film in films[:2]:
        np.testing.assert_array_equal(film[0].array, 1)  # zero-initialised: scale 1, shift 0
        np.testing.assert_array_equal(film[1].array, 0)
    for layer in layers[:2]:
        layer.film.W.array[...] = np.random.RandomState(1).normal(size=layer.film.W.shape)
        layer.film.b.array[...] = np.random.RandomState(2).normal(size=layer.film.b.shape)
    for layer, film in zip(layers[:2], net.film_parameters(layers, c)):
        direct = F.linear(c, layer.film.W, layer.film.b).array
        half = direct.shape[1] // 2
        np.testing.assert_allclose(film[0].array, 1 + direct[:, :half], rtol=1e-6)
        np.testing.assert_allclose(film[1].array, direct[:, half:], rtol=1e-6, atol=1e-6)


def test_the_gate_keeps_colour_until_one_tag_takes_it_out():
    gate = net.SaturationGate(3, per_tag=True, gain=5.0)
    each = np.zeros((2, 4, 3), np.float32)
    each[:, :, 0] = 1.0
    each[1, 2, 0] = -2.0  # one tag (think モノクロ) that will close the gate
    present = np.array([[1, 1, 1, 0], [1, 1, 1, 0]], np.float32)
    tags = net.Tags(chainer.Variable(each.sum(axis=1)), chainer.Variable(each), present)
    share = np.exp(gate.log_share(tags).array)
    np.testing.assert_allclose(share, 1 / (1 + np.exp(-net.GATE_BIAS)) ** 3, rtol=1e-6)  # starts almost open
    gate.l.W.array[...] = [[2.0, 0, 0]]
    logits = 5.0 * 2.0 * np.array([[1, 1, 1], [1, 1, -2]]) + net.GATE_BIAS
    want = np.prod(1 / (1 + np.exp(-logits)), axis=1, keepdims=True)
    share = np.exp(gate.log_share(tags).array)
    np.testing.assert_allclose(share, want, rtol=1e-5)
    assert share[0, 0] > 0.99 and share[1, 0] < 1e-6  # one tag is enough
    rgb = np.random.RandomState(0).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    out = gate(rgb, tags).array
    np.testing.assert_allclose(out[0], rgb[0], atol=0.02)
    grey = np.tensordot(net.LUMA, rgb[1], axes=1)
    np.testing.assert_allclose(out[1], np.broadcast_to(grey, (3, 8, 8)), atol=1e-5)


def test_in_colour_tells_grey_targets_from_colour_ones():
    grey = np.broadcast_to(np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 1, 8, 8), (1, 3, 8, 8))
    colour = np.random.RandomState(0).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    assert net.in_colour(np.concatenate([grey, colour])).ravel().tolist() == [0.0, 1.0]


def test_the_gate_learns_from_its_own_loss():
    gate = net.SaturationGate(2, per_tag=True, gain=5.0)
    optimizer = make_optimizer(gate, 1e-2)
    each = np.array([[[1, 0], [0, 0]], [[1, 0], [0, 1]]], np.float32)  # tag A; tags A and B (B: grey)
    tags = net.Tags(chainer.Variable(each.sum(axis=1)), chainer.Variable(each),
                    np.array([[1, 0], [1, 1]], np.float32))
    target = np.array([[1], [0]], np.float32)
    before = float(gate.loss(tags, target).array)
    for _ in range(300):
        gate.cleargrads()
        gate.loss(tags, target).backward()
        optimizer.update()
    share = np.exp(gate.log_share(tags).array).ravel()
    assert float(gate.loss(tags, target).array) < 0.1 * before
    assert share[0] > 0.9 and share[1] < 0.1


def test_projection_reads_the_tags_and_starts_as_the_example(vectorizer):
    _, _, dis, _ = film_networks()
    x = tag_input(vectorizer, [['響'], ['暁']])
    y = np.random.RandomState(3).uniform(-1, 1, (2, 3, 128, 128)).astype(np.float32)

    def logits(projection):
        dis.projection = projection
        with chainer.using_config('train', True):
            return dis(x, y).array

    np.testing.assert_array_equal(logits(True), logits(False))  # V = 0: the example's discriminator
    dis.proj.W.array[...] = np.random.RandomState(4).normal(size=dis.proj.W.shape)
    assert np.abs(logits(True) - logits(False)).mean() > 0.1  # the tags count once V moves


# ---------------------------------------------------------------- training
def fixed_batch(vectorizer, size=128):
    x = tag_input(vectorizer, [['響', '艦これ']], size)
    t = np.tanh(x[:, :3] * 2).astype(np.float32)
    return [(x[0], t[0])]


def test_a_tag_change_reaches_the_output_after_a_few_updates(vectorizer):
    enc, dec, dis, design = film_networks(width=4)
    iterator = chainer.iterators.SerialIterator(fixed_batch(vectorizer), 1, shuffle=False)
    updater = TextPix2pixUpdater(models=(enc, dec, dis), iterator={'main': iterator}, gate_weight=1.0,
                                 optimizer={name: make_optimizer(m, 2e-3) for name, m in
                                            zip(('enc', 'dec', 'dis'), (enc, dec, dis))})
    x = tag_input(vectorizer, [['響', '艦これ'], ['暁', '艦これ']])
    with net.generating():
        first = dec(enc(x)).array
    assert np.abs(first[0] - first[1]).mean() < 1e-6  # FiLM and the gate start as the identity
    for _ in range(5):
        updater.update()
    assert np.abs(enc.tags.l1.W.array).sum() > 0 and np.abs(enc.c3.film.W.array).max() > 1e-4
    with net.generating():
        out = dec(enc(x)).array
    assert np.abs(out[0] - out[1]).mean() > 0.01  # on [-1, 1]: over one level of 0..255 on average


def run_to(out, data, iteration, resume=None):
    argv = ['-i', str(data), '-o', str(out), '--width', '4', '--size', '128', '--iteration', str(iteration),
            '--snapshot_interval', '2', '--display_interval', '2', '--lr', '2e-4', '--seed', '1',
            '--tag-design', 'film', '--slots', '8', '--blank-fraction', '0.5', '--blank-loss', 'colours',
            '--ema-decay', '0.9']
    assert train_facade_text.main(argv + (['-r', resume] if resume else [])) == 0


def test_film_training_resumes_to_the_same_state_and_colours(small_data, tmp_path):
    run_to(tmp_path / 'straight', small_data, 4)
    run_to(tmp_path / 'resumed', small_data, 2)
    run_to(tmp_path / 'resumed', small_data, 4, resume='latest')
    with np.load(tmp_path / 'straight' / 'snapshot_iter_4.npz') as a, \
            np.load(tmp_path / 'resumed' / 'snapshot_iter_4.npz') as b:
        keys = [k for k in a.files if k.startswith(('updater/', 'extensions/weight_average/'))
                and '/avg_' not in k and not k.endswith('/N')]
        assert any('/tags/l1/' in k for k in keys) and any('/gate/' in k for k in keys)
        for key in keys:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        # enc.npz holds the weight average (--ema-decay), not the weights as trained.
        with np.load(tmp_path / 'straight' / 'enc.npz') as saved:
            assert a['extensions/weight_average/count'] == 4
            for key in saved.files:
                np.testing.assert_array_equal(saved[key], a['extensions/weight_average/enc/' + key])
            assert max(np.abs(saved[k] - a['updater/model:enc/' + k]).max() for k in saved.files) > 1e-4
    settings = json.loads((tmp_path / 'straight' / 'model.json').read_text('utf-8'))
    assert settings['tag_design'] == net.film_design(slots=8) and settings['ema_decay'] == 0.9
    import colour_model
    model = colour_model.ColourModel.load(str(tmp_path / 'straight'), compat.get_device(-1))
    assert model.vectorizer.layout == 'slots' and model.vectorizer.slots == 8
    from PIL import Image
    drawing = Image.new('L', (100, 60), 255)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', tag_vectorizer.UnknownTagWarning)
        assert model.colour(drawing, ['響']).size == (100, 60)
    # A set of more tags than the plane has slots is refused, not cut short.
    import colorize
    assert model.most_tags == 8 and len(model.tags) >= 9
    drawing.save(tmp_path / 'drawing.png')
    argv = ['--model', str(tmp_path / 'straight'), '-i', str(tmp_path / 'drawing.png')]
    assert colorize.main(argv + ['-t', ','.join(model.tags[:8]), '-o', str(tmp_path / 'eight.png')]) == 0
    assert colorize.main(argv + ['-t', ','.join(model.tags[:9]), '-o', str(tmp_path / 'nine.png')]) == 1
    assert not (tmp_path / 'nine.png').exists()


def test_film_flags_need_the_film_design(capsys):
    for argv in (['--gate', 'none'], ['--tag-layout', 'mean'], ['--tag-design', 'film', '--no-tag']):
        with pytest.raises(SystemExit) as exit:
            train_facade_text.parse_args(argv)
        assert exit.value.code == 2
    assert 'only with --tag-design film' in capsys.readouterr().err


# ---------------------------------------------------------------- text only
def test_blank_truth_prototype_needs_blank_examples(capsys):
    with pytest.raises(SystemExit) as exit:
        train_facade_text.parse_args(['--blank-truth', 'prototype'])
    assert exit.value.code == 2
    assert '--blank-truth prototype needs --blank-fraction above 0' in capsys.readouterr().err
    args = train_facade_text.parse_args(['--blank-truth', 'prototype', '--blank-fraction', '0.5'])
    assert (args.blank_truth, args.blank_loss) == ('prototype', 'pixels')
    assert train_facade_text.parse_args([]).blank_truth == 'own'


def test_the_colour_loss_scores_the_palette_not_the_layout():
    import updater
    rng = np.random.RandomState(0)
    target = rng.uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    shuffled = target.reshape(1, 3, -1)[:, :, rng.permutation(256)].reshape(target.shape)
    assert float(updater.colour_distribution_loss(chainer.Variable(shuffled), target).array) == 0
    shifted = chainer.Variable(np.clip(target + np.float32(0.25), -1, 1))
    loss = updater.colour_distribution_loss(shifted, target, pixels=None)

    # The same distance in float64 NumPy from evaluate's CIELAB: sorted projections of both
    # pictures' colours on every direction, their mean |difference|.
    def lab(x):
        return (colour_space.srgb_to_lab((x[0].reshape(3, -1).T.astype(np.float64) + 1) * 128)
                / updater.LAB_SCALE)

    directions = updater.COLOUR_DIRECTIONS.astype(np.float64)
    by_hand = np.abs(np.sort(lab(shifted.array) @ directions.T, axis=0)
                     - np.sort(lab(target) @ directions.T, axis=0))
    assert float(loss.array) == pytest.approx(by_hand.mean(), rel=1e-4)
    assert float(loss.array) > 0.1  # a shift by a quarter of the range is no small distance
    loss.backward()
    step = chainer.Variable(shifted.array - np.float32(0.01) * shifted.grad / np.abs(shifted.grad).max())
    assert float(updater.colour_distribution_loss(step, target, pixels=None).array) < 0.99 * float(loss.array)


def test_the_colour_loss_compares_colours_in_cielab():
    # lab_of is colour_space.srgb_to_lab (float64) in Chainer functions, on [-1, 1], scaled down.
    import updater
    rgb = np.concatenate([np.random.RandomState(0).randint(0, 256, (3, 500)), [[0, 255], [0, 255], [0, 255]]],
                         axis=1)
    unit = (rgb / 128 - 1).astype(np.float32)
    colours = chainer.Variable(unit)
    lab = updater.lab_of(colours)
    np.testing.assert_allclose(lab.array * updater.LAB_SCALE, colour_space.srgb_to_lab(rgb.T).T, atol=2e-3)
    chainer.functions.sum(lab).backward()
    assert np.isfinite(colours.grad).all()  # black and white included
    # A navy and a black: nearer than a red and an orange in RGB (0.91 times), further in
    # CIELAB (1.28 times), as the eye and the palette score see them.
    navy, black, red, orange = (np.array(c, np.float32) / 128 - 1 for c in
                                ((30, 35, 90), (25, 25, 25), (200, 40, 40), (220, 110, 40)))

    def lab_distance(a, b):
        return np.linalg.norm(np.diff(updater.lab_of(np.stack([a, b], axis=1)).array, axis=1))

    assert np.linalg.norm(navy - black) < 0.95 * np.linalg.norm(red - orange)
    assert lab_distance(navy, black) > 1.2 * lab_distance(red, orange)


def test_the_colour_loss_on_sampled_pixels_estimates_the_whole_pictures():
    # Two 128-px pictures of flat colours (paper, hair, clothes, lines) in other layouts:
    # 4096 random pixels of each give the distance over all 16384 within a few per cent.
    import updater
    rng = np.random.RandomState(0)

    def picture(shares, shift=0.0):
        palette = np.array([[1, 1, 1], [0.6, -0.2, -0.5], [-0.8, -0.6, 0.1], [-1, -1, -1]], np.float32)
        counts = (np.array(shares) * 128 * 128).astype(int)
        counts[0] += 128 * 128 - counts.sum()
        pixels = np.repeat(palette + np.float32(shift), counts, axis=0)
        return pixels[rng.permutation(len(pixels))].T.reshape(1, 3, 128, 128)

    target = picture([0.7, 0.15, 0.1, 0.05])
    other = picture([0.55, 0.2, 0.15, 0.1], shift=0.1)
    whole = float(updater.colour_distribution_loss(other, target, pixels=None).array)
    np.random.seed(0)
    sampled = [float(updater.colour_distribution_loss(other, target).array) for _ in range(10)]
    assert updater.COLOUR_PIXELS == 4096
    assert abs(np.mean(sampled) - whole) < 0.05 * whole and np.std(sampled) < 0.05 * whole
    # Same palette, other layout: what sampling leaves is small beside a real difference.
    same = float(updater.colour_distribution_loss(picture([0.7, 0.15, 0.1, 0.05]), target).array)
    assert same < 0.1 * whole
    # The draws come from NumPy's random state, which snapshots keep: a seed repeats them.
    np.random.seed(0)
    assert float(updater.colour_distribution_loss(other, target).array) == sampled[0]


def test_the_colour_directions_cover_every_direction_of_colour():
    # Seven axes leave colours within 47 degrees of none of them, where mixtures can hide;
    # with the lattice every direction is within 22 degrees of one (measured 21.7).
    import updater
    directions = updater.COLOUR_DIRECTIONS
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1, rtol=1e-6)
    probes = np.random.RandomState(0).normal(size=(100000, 3))
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)

    def worst(d):
        return np.degrees(np.arccos(np.abs(probes @ d.T).max(axis=1).min()))

    assert worst(directions[:7]) > 45 and worst(directions) < 22


def test_the_cell_colour_loss_compares_each_cells_colours_with_the_same_cells():
    import updater
    rng = np.random.RandomState(0)
    target = rng.uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32)

    def cells_of(x, cells):  # (B, 3, 16, 16) -> (B, cells, cells, 3, pixels per cell)
        side = 16 // cells
        return x.reshape(2, 3, cells, side, cells, side).transpose(0, 2, 4, 1, 3, 5).reshape(
            2, cells, cells, 3, side * side)

    def from_cells(c, cells):
        side = 16 // cells
        return c.reshape(2, cells, cells, 3, side, side).transpose(0, 3, 1, 4, 2, 5).reshape(target.shape)

    # Pixels moved inside their 4 x 4 cells: the same colours in each cell, loss 0.
    inside = chainer.Variable(from_cells(cells_of(target, 4)[..., rng.permutation(16)], 4))
    assert float(updater.cell_colour_distribution_loss(inside, target, 4).array) == 0
    # One grid cell: the whole-canvas loss over every pixel.
    shifted = chainer.Variable(np.clip(target + np.float32(0.25), -1, 1))
    whole = (updater.colour_distribution_loss(shifted[:1], target[:1], pixels=None)
             + updater.colour_distribution_loss(shifted[1:], target[1:], pixels=None)) / 2
    assert float(updater.cell_colour_distribution_loss(shifted, target, 1).array) == pytest.approx(
        float(whole.array), rel=1e-5)
    # Pixels moved across the canvas: 0 for the whole canvas, the mean of each cell's own
    # distance (sorted projections, by hand) for the 4 x 4 cells.
    moved = chainer.Variable(target.reshape(2, 3, -1)[:, :, rng.permutation(256)].reshape(target.shape))
    assert float(updater.cell_colour_distribution_loss(moved, target, 1).array) == pytest.approx(0, abs=1e-7)
    lab = [updater.lab_of(chainer.Variable(np.moveaxis(cells_of(x, 4), 3, 0).reshape(3, -1))).array
           for x in (moved.array, target)]
    projections = [(updater.COLOUR_DIRECTIONS @ colours).reshape(-1, 32, 16) for colours in lab]
    by_hand = np.abs(np.sort(projections[0], axis=2) - np.sort(projections[1], axis=2)).mean()
    loss = updater.cell_colour_distribution_loss(moved, target, 4)
    assert float(loss.array) == pytest.approx(by_hand, rel=1e-5)
    assert float(loss.array) > 0.1  # as far as a shift by a quarter of the range
    with pytest.raises(ValueError, match='not 3 cells'):
        updater.cell_colour_distribution_loss(moved, target, 3)


def test_the_layout_loss_is_the_l1_of_the_cell_means():
    import updater
    rng = np.random.RandomState(0)
    target = rng.uniform(-0.5, 0.5, (1, 3, 32, 32)).astype(np.float32)
    # The pixels of each 4 x 4 cell of an 8 x 8 grid in another order: the same cell means.
    shuffled = target.reshape(1, 3, 8, 4, 8, 4)[:, :, :, rng.permutation(4)][..., rng.permutation(4)]
    shuffled = chainer.Variable(shuffled.reshape(target.shape))
    assert float(updater.layout_loss(shuffled, target, (8,)).array) == pytest.approx(0, abs=1e-7)
    assert float(updater.layout_loss(shuffled, target, (8, 16)).array) > 0.05  # 16 x 16 cells see it
    # One 8 x 8 cell's pixels 0.25 lighter: 0.25 in one cell of 64, channels alike, on
    # either grid (that cell is 4 of the 16 x 16 grid's 256).
    lighter = target.copy()
    lighter[:, :, :4, :4] += np.float32(0.25)
    for cells in ((8,), (16,), (8, 16)):
        assert float(updater.layout_loss(chainer.Variable(lighter), target, cells).array) == pytest.approx(
            0.25 / 64, rel=1e-5)


def test_blank_examples_are_left_out_of_the_adversarial_terms(vectorizer):
    import updater
    enc, dec, dis, _ = film_networks(width=4)
    x = tag_input(vectorizer, [['響'], ['暁']])
    x[1, :3] = updater.PAPER  # the second drawing is blank paper
    assert updater.blank_examples(x).tolist() == [False, True]
    t = np.tanh(x[:, :3] * 2).astype(np.float32)
    run = TextPix2pixUpdater(models=(enc, dec, dis), iterator={'main': chainer.iterators.SerialIterator(
        [(x[0], t[0])], 1)}, optimizer={}, blank_loss='colours')
    with chainer.using_config('train', True):
        x_out = dec(enc(x))
        np.random.seed(0)  # the colour loss draws its pixels: the same draws twice
        gen, l1, dis_loss = run.losses_with_blank_examples(x, x_out, t, np.array([False, True]))
        y_fake, y_real = dis(x[:1], x_out[:1]), dis(x[:1], t[:1])
        drawn_gen, drawn_l1 = updater.generator_loss(x_out[:1], t[:1], y_fake)
        np.random.seed(0)
        colours = updater.colour_distribution_loss(x_out[1:], t[1:])
        calls = []
        run.dis = lambda *inputs: calls.append(inputs) or dis(*inputs)
        all_blank = run.losses_with_blank_examples(x[1:], x_out[1:], t[1:], np.array([True]))
    np.testing.assert_allclose(gen.array, 0.5 * drawn_gen.array + 0.5 * 100 * colours.array, rtol=1e-5)
    np.testing.assert_allclose(dis_loss.array, 0.5 * updater.discriminator_loss(y_real, y_fake).array,
                               rtol=1e-5)
    # A batch of blank drawings never reaches the discriminator, and its loss is zero.
    assert calls == [] and float(all_blank[2].array) == 0.0


def test_the_squared_lab_layout_loss_is_the_layout_scores_cells_squared():
    # lab-squared compares the cells evaluate's layout score compares (the mean CIELAB of
    # each cell), squared, on lab_of's scale: the same number as evaluate computes, in float32.
    import evaluate
    import updater
    rng = np.random.RandomState(0)
    target, output = (rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32) for _ in range(2))

    def cells(x, grid):
        return evaluate.layout_cells(((x[0].transpose(1, 2, 0) + 1) * 128).astype(np.float64), grid)

    for grid in (4, 8):
        by_hand = (np.linalg.norm(cells(output, grid) - cells(target, grid), axis=-1) ** 2).mean()
        loss = updater.layout_loss(chainer.Variable(output), target, (grid,), 'lab-squared')
        assert float(loss.array) * updater.LAB_SCALE ** 2 == pytest.approx(by_hand, rel=1e-3)
        assert by_hand > 10  # two noise pictures' cells differ
    assert float(updater.layout_loss(chainer.Variable(target), target, (4, 8), 'lab-squared').array) == 0


def test_the_blank_loss_options_add_up_as_documented(vectorizer):
    # Colours compared over the whole canvas and within 4 x 4 cells (their mean), plus
    # 0.5 times the L1 of 4 x 4 cell means: all times the L1 weight, 100.
    import updater
    enc, dec, dis, _ = film_networks(width=4)
    x = tag_input(vectorizer, [['響']])
    x[:, :3] = updater.PAPER
    t = np.tanh(np.random.RandomState(0).normal(size=(1, 3) + x.shape[2:])).astype(np.float32)
    run = TextPix2pixUpdater(models=(enc, dec, dis), iterator={'main': chainer.iterators.SerialIterator(
        [(x[0], t[0])], 1)}, optimizer={}, blank_loss='colours', blank_colour_cells=(1, 4),
        blank_layout_weight=0.5, blank_layout_cells=(4,))
    with chainer.using_config('train', True):
        x_out = dec(enc(x))
        np.random.seed(0)
        gen = run.losses_with_blank_examples(x, x_out, t, np.array([True]))[0]
        np.random.seed(0)
        colours = (updater.colour_distribution_loss(x_out, t)
                   + updater.cell_colour_distribution_loss(x_out, t, 4)) / 2
        layout = updater.layout_loss(x_out, t, (4,))
    assert float(layout.array) > 0.01 and float(colours.array) > 0.01  # both terms count
    np.testing.assert_allclose(gen.array, 100 * (colours.array + 0.5 * layout.array), rtol=1e-5)


def test_blank_colour_pool_compares_the_colours_of_blocks(vectorizer):
    # --blank-colour-pool 4: the colour loss of the pictures averaged over 4 x 4 blocks; a
    # one-pixel black line on white, spread over its blocks, is a grey there.
    import updater
    enc, dec, dis, _ = film_networks(width=4)
    x = tag_input(vectorizer, [['響']])
    x[:, :3] = updater.PAPER
    t = np.ones((1, 3) + x.shape[2:], np.float32)
    t[:, :, :, 10] = -1  # a vertical black line, one pixel wide
    run = TextPix2pixUpdater(models=(enc, dec, dis), iterator={'main': chainer.iterators.SerialIterator(
        [(x[0], t[0])], 1)}, optimizer={}, blank_loss='colours', blank_colour_pool=4)
    with chainer.using_config('train', True):
        x_out = dec(enc(x))
        gen = run.losses_with_blank_examples(x, x_out, t, np.array([True]))[0]
        # 32 x 32 blocks: fewer than COLOUR_PIXELS, so every block counts, no random draw.
        pooled = updater.colour_distribution_loss(F.average_pooling_2d(x_out, 4),
                                                  F.average_pooling_2d(t, 4).array)
    np.testing.assert_allclose(gen.array, 100 * pooled.array, rtol=1e-5)
    assert np.unique(F.average_pooling_2d(t, 4).array).tolist() == [0.5, 1.0]  # 3/4 white, 1/4 black


def test_blank_ignore_lines_leaves_a_black_line_of_the_truth_out(vectorizer):
    # --blank-ignore-lines: a truth of one colour with black lines drawn across it; an
    # output of that colour without the lines costs nothing (the colour loss's truth and
    # the layout term's truth cell means leave the lines out), while without the flag the
    # lines are asked for.
    import updater
    enc, dec, dis, _ = film_networks(width=4)
    x = tag_input(vectorizer, [['響']])
    x[:, :3] = updater.PAPER
    picture = np.empty((1, 3) + x.shape[2:], np.float32)
    picture[:] = np.array([0.8, 0.2, -0.4], np.float32)[:, None, None]
    t = picture.copy()
    t[:, :, :, 40:42] = -1  # a vertical black line, two pixels wide
    t[:, :, 90, :] = -0.95  # and a horizontal near-black one
    lines = updater.line_pixels(t)
    assert lines.sum() == 2 * 128 + 126 and lines.shape == (1, 1, 128, 128)
    out = chainer.Variable(picture)
    losses = {}
    for ignore in (False, True):
        run = TextPix2pixUpdater(models=(enc, dec, dis), iterator={'main': chainer.iterators.SerialIterator(
            [(x[0], t[0])], 1)}, optimizer={}, blank_loss='colours', blank_layout_weight=0.25,
            blank_layout_cells=(8, 16), blank_layout_distance='lab-squared', blank_ignore_lines=ignore)
        np.random.seed(0)
        losses[ignore] = float(run.losses_with_blank_examples(x, out, t, np.array([True]))[0].array)
    assert losses[True] == pytest.approx(0, abs=1e-4) and losses[False] > 1
    # The layout term on its own, on a truth of two halves: its cell means leave the lines out.
    halves = picture.copy()
    halves[:, :, 64:] = 0.6
    lined = halves.copy()
    lined[lines.repeat(3, axis=1)] = -1
    for distance in updater.LAYOUT_DISTANCES:
        assert float(updater.layout_loss(chainer.Variable(halves), lined, (8, 16), distance,
                                         t_lines=lines).array) == pytest.approx(0, abs=1e-6)
        assert float(updater.layout_loss(chainer.Variable(halves), lined, (8, 16), distance).array) > 1e-3
    # The truth's own colours are kept: an output of another colour is still wrong.
    np.random.seed(0)
    assert float(updater.colour_distribution_loss(chainer.Variable(np.full_like(picture, 0.6)), t,
                                                  t_lines=lines).array) > 0.1


def test_the_design_benchmark_prints_every_design(small_data, capsys):
    import bench_designs
    assert bench_designs.main(['--data', str(small_data), '--blocks', '1', '--block', '1', '--json']) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row['design'] for row in rows] == list(bench_designs.DESIGNS)
    assert rows[0]['ratio_vs_post'] == 1.0 and all(row['ms_per_update'] > 1 for row in rows)


def test_the_design_benchmark_times_the_colour_loss_with_and_without_sampling(capsys):
    import bench_designs
    assert bench_designs.main(['--colour-loss']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(':')[0] for line in lines] == ['colour loss,    all pixels',
                                                      'colour loss,   4096 pixels']
    assert all(float(line.split(':')[1].split()[0]) > 0.1 for line in lines)
