"""The shading model (train_facade_text.py --stage 2 --shading, docs/hires.md): what it
trains on, a short training run, and the shaded flats with colour hints end to end."""
import io
import json

import numpy as np
import pytest
from PIL import Image

import colorize
import colour_model
import compat
import dataset
import evaluate
import flatting
import server
import train_facade_text

SHADING_TRAINING = ['--stage', '2', '--shading', '--size', '128', '--width', '8', '--iteration', '60',
                    '--snapshot_interval', '60', '--display_interval', '10', '--lr', '1e-3', '--seed', '0']


@pytest.fixture(scope='module')
def shading_model(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp('shading')
    assert train_facade_text.main(['-i', str(small_data), '-o', str(out)] + SHADING_TRAINING) == 0
    return out


def test_an_example_is_the_truth_s_flat_colours_and_the_shading_on_them(small_data):
    data = dataset.RefinementDataset(str(small_data / 'train'), None, size=128, augment=False, shading=True)
    x_in, t_out = data.get_example(0)
    truth = dataset.load_image(data.paths[0], 128)
    drawing = data.drawing_of(0)
    flat = flatting.flat_colours(truth, drawing)
    np.testing.assert_array_equal(dataset.to_uint8(x_in[3:6]), np.asarray(flat))
    # The target puts the truth back on the flat colours to the level: the shading (and
    # the lines) are all that the flats lack.
    rebuilt = dataset.to_uint8(dataset.with_shading(x_in[3:6], t_out)).astype(int)
    assert np.abs(rebuilt - np.asarray(truth)).max() <= 1
    # and the flats are not the truth: the default data's pictures are shaded (measured
    # 4.1 levels on average off the lines)
    off_lines = ~flatting.line_mask(drawing)
    assert (np.abs(t_out).mean(axis=0) * dataset.SHADING_SCALE * 128)[off_lines].mean() > 2


def test_short_shading_training_lowers_l1_and_writes_a_shading_model(shading_model):
    settings = json.loads((shading_model / 'model.json').read_text(encoding='utf-8'))
    assert (settings['stage'], settings['shading'], settings['in_ch']) == (2, True, 7)
    assert settings['coarse_jitter'] is None
    l1 = [entry['dec/l1'] for entry in json.loads((shading_model / 'log').read_text())]
    assert len(l1) == 6
    # 100 * L1 of the first 10 updates against the last 10 falls by at least half
    # (measured: 8.8 -> 3.4): the untrained network's output is far from the shading,
    # which is near zero but for the shadows and the lines.
    assert l1[-1] < 0.5 * l1[0]
    assert (shading_model / 'preview' / 'iter_60.png').exists()


def drawing_with_two_regions(size=(300, 200)):
    """A drawing larger than the models' 128 px: a box, a line across it."""
    drawing = Image.new('L', size, 255)
    drawing.paste(0, (40, 40, 260, 44))
    drawing.paste(0, (40, 156, 260, 160))
    drawing.paste(0, (40, 40, 44, 160))
    drawing.paste(0, (256, 40, 260, 160))
    drawing.paste(0, (150, 40, 154, 160))
    return drawing


def test_a_hint_recolours_its_region_and_the_rest_keeps_its_shading(tiny_model, shading_model, monkeypatch):
    # The tests' barely trained model colours every region alike: the hint is kept to its own.
    monkeypatch.setattr(flatting, 'SPREAD', 0.0)
    model = colour_model.load_model(str(tiny_model), None, compat.get_device(-1), str(shading_model))
    assert model.shader.shading and model.shader.stage == 2
    drawing = drawing_with_two_regions()
    colouring = model.colour(drawing, ['響'])
    shaded, flat = model.compose(colouring, drawing, ['響'])
    assert shaded.size == drawing.size and flat.size == drawing.size
    model.shader, shader = None, model.shader
    plain, same_flat = model.compose(colouring, drawing, ['響'])
    model.shader = shader
    np.testing.assert_array_equal(np.asarray(flat), np.asarray(same_flat))
    # the shading model changes the flat picture (a 60-update model: measured 5.5 levels)
    assert np.abs(np.asarray(shaded).astype(int) - np.asarray(plain)).mean() > 2

    hints = flatting.hint_picture(drawing.size, [(100, 100, (230, 20, 20))])
    hinted, hinted_flat = model.compose(colouring, drawing, ['響'], hints)
    recoloured = (np.asarray(hinted_flat) != np.asarray(flat)).any(axis=-1)
    assert 100 * 110 <= recoloured.sum() < drawing.size[0] * drawing.size[1] // 2  # the left box
    assert recoloured[100, 100] and not recoloured[100, 200]
    hinted, shaded = np.asarray(hinted).astype(int), np.asarray(shaded).astype(int)
    np.testing.assert_array_equal(hinted[~recoloured], shaded[~recoloured])
    # Inside it, the hint's own colour made lighter or darker and no other colour: with
    # HINT_LIGHTNESS 1, each pixel (230, 20, 20) times the ratio of the shading's luma
    # there without the hint to the flat colours'; by default that part of the way from
    # the flat picture.
    inside = recoloured & ~flatting.line_mask(drawing)
    lightness = colour_model.HINT_LIGHTNESS
    unhinted_flat, unhinted_shaded = model.unhinted_shading(colouring, drawing, ['響'])
    np.testing.assert_array_equal(np.asarray(unhinted_shaded).astype(int), shaded)

    def luma(picture):
        return (np.asarray(picture, np.float64) @ colour_model.LUMA)[inside]
    factor = luma(unhinted_shaded) / np.maximum(luma(unhinted_flat), 1)
    assert np.abs(factor - 1).max() > 0.02  # shaded, not flat (measured: factors 0.21 to 1.10)
    monkeypatch.setattr(colour_model, 'HINT_LIGHTNESS', 1.0)
    fully_lit = np.asarray(model.compose(colouring, drawing, ['響'], hints)[0]).astype(int)[inside]
    assert np.abs(fully_lit - np.clip(factor[:, None] * np.array([230, 20, 20]), 0, 255)).max() <= 0.5
    flat_picture = np.asarray(flatting.with_lines(hinted_flat, drawing)).astype(int)[inside]
    assert np.abs(hinted[inside] - (flat_picture + lightness * (fully_lit - flat_picture))).max() <= 1


def test_colorize_shades_a_drawing_at_its_own_size(tiny_model, shading_model, tmp_path):
    drawing = drawing_with_two_regions()
    path, out = tmp_path / 'box.png', tmp_path / 'out.png'
    drawing.save(path)
    assert colorize.main(['-i', str(path), '--model', str(tiny_model), '--shading', str(shading_model),
                          '-o', str(out), '-t', '響', '--hint', '100,100,#e61414']) == 0
    model = colour_model.load_model(str(tiny_model), None, compat.get_device(-1), str(shading_model))
    expected, _ = model.compose(model.colour(drawing, ['響']), drawing, ['響'],
                                flatting.hint_picture(drawing.size, [(100, 100, (230, 20, 20))]),
                                probes=model.probe_colourings(drawing, model.colour(drawing, ['響'])))
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(expected))


def test_models_of_the_wrong_kind_are_one_line_errors(tiny_model, shading_model, small_data, capsys):
    drawing = str(next((small_data / 'test' / 'line').glob('*.png')))
    assert colorize.main(['-i', drawing, '--model', str(tiny_model), '--refine', str(shading_model)]) == 1
    assert colorize.main(['-i', drawing, '--model', str(tiny_model), '--shading', str(tiny_model)]) == 1
    assert colorize.main(['-i', drawing, '--model', str(shading_model)]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith('error: ') for e in errors)
    assert '--shading' in errors[0] and 'no shading model' in errors[1] and 'stage-2 model' in errors[2]


@pytest.mark.parametrize('argv', [['--shading'], ['--stage', '2', '--shading', '--coarse-model', 'stage1'],
                                  ['--stage', '2', '--shading', '--coarse-jitter', '0.4']])
def test_shading_flags_are_checked(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        train_facade_text.parse_args(argv)
    assert exit.value.code == 2 and '--shading is for --stage 2' in capsys.readouterr().err


def test_shading_needs_kept_lines(tiny_model, shading_model, small_data, capsys):
    drawing = str(next((small_data / 'test' / 'line').glob('*.png')))
    with pytest.raises(SystemExit):
        colorize.main(['-i', drawing, '--model', str(tiny_model), '--shading', str(shading_model),
                       '--lines', 'network'])
    assert '--shading shades the flat colours' in capsys.readouterr().err


def test_the_server_shades_the_picture_as_colorize_does(tiny_model, shading_model, monkeypatch):
    model = colour_model.load_model(str(tiny_model), None, compat.get_device(-1), str(shading_model))
    app = server.create_app(model, max_upload_mb=1, max_pixels=600 * 600, max_waiting=4, timeout=60)
    drawing = drawing_with_two_regions()
    buffer = io.BytesIO()
    drawing.save(buffer, 'PNG')
    response = app.test_client().post('/api/colorize', content_type='multipart/form-data', data={
        'image': (io.BytesIO(buffer.getvalue()), 'd.png'), 'tags': '響', 'hint': '100,100,#e61414'})
    assert response.status_code == 200
    colouring = model.colour(drawing, ['響'])
    expected, _ = model.compose(colouring, drawing, ['響'],
                                flatting.hint_picture(drawing.size, [(100, 100, (230, 20, 20))]),
                                probes=model.probe_colourings(drawing, colouring))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.data)).convert('RGB')),
                                  np.asarray(expected))
    # A moved dot: the picture without hints is kept, and no pass of the shading model.
    calls = []
    shade = model.shader.shade
    monkeypatch.setattr(model.shader, 'shade', lambda *args: calls.append(args) or shade(*args))
    response = app.test_client().post('/api/colorize', content_type='multipart/form-data', data={
        'image': (io.BytesIO(buffer.getvalue()), 'd.png'), 'tags': '響', 'hint': '200,100,#e61414'})
    assert response.status_code == 200 and calls == []


def test_evaluate_scores_the_hints_on_the_shaded_pictures(tiny_model, shading_model, small_data):
    description = evaluate.read_description(str(small_data))
    images = evaluate.load_test_images(str(small_data), description, 128)
    model = colour_model.load_model(str(tiny_model), None, compat.get_device(-1), str(shading_model))
    shaded, _ = evaluate.hint_scores(model, images, description, per_character=1)
    model.shader = None
    flat, _ = evaluate.hint_scores(model, images, description, per_character=1)
    assert shaded['shaded'] and not flat['shaded'] and shaded['n'] == flat['n'] >= 4
    # the same dots, other pictures: the shading moves the region errors (measured: 29.05 against 28.32 ΔE00)
    assert abs(shaded['region_delta_e_0_hints'] - flat['region_delta_e_0_hints']) > 0.3
