"""colorize.py end to end on a tiny trained model, and its one-line errors."""
import numpy as np
import pytest
from PIL import Image

import compat
import colorize
import colour_model
import dataset
import figure_prior


def drawing_path(small_data):
    return str(next((small_data / 'test' / 'line').glob('hibiki_*.png')))


def test_colours_at_the_input_size_and_mode(tiny_model, tmp_path):
    for mode, size in (('RGBA', (150, 90)), ('P', (64, 200)), ('LA', (129, 129))):
        source = Image.new('RGB', size, 'white')
        source.paste((0, 0, 0), (10, 10, 20, 60))
        path = tmp_path / 'in_{}.png'.format(mode)
        source.convert(mode).save(path)
        out = tmp_path / 'out_{}.png'.format(mode)
        assert colorize.main(['-i', str(path), '--model', str(tiny_model), '-o', str(out), '-t', '響']) == 0
        result = Image.open(out)
        assert result.size == size and result.mode == 'RGB'


def test_several_tags_give_one_image_each_and_a_sheet(tiny_model, small_data, tmp_path, capsys):
    out = tmp_path / 'swap.png'
    assert colorize.main(['-i', drawing_path(small_data), '--model', str(tiny_model), '-o', str(out),
                          '-t', '響', '-t', '暁', '-t', '響,艦これ', '--lines', 'network']) == 0
    written = capsys.readouterr().out.split()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ['swap_1_響.png', 'swap_2_暁.png', 'swap_3_響_艦これ.png', 'swap_sheet.png']
    assert str(tmp_path / 'swap_sheet.png') in written
    hibiki = np.asarray(Image.open(tmp_path / 'swap_1_響.png'), np.int16)
    akatsuki = np.asarray(Image.open(tmp_path / 'swap_2_暁.png'), np.int16)
    # The tag reaches the output: even this 6-update model changes nearly every pixel
    # (measured: 3.9 levels on average, 99.6 % of pixels).
    difference = np.abs(hibiki - akatsuki)
    assert difference.mean() > 1.0 and (difference.max(axis=-1) > 0).mean() > 0.5


def test_model_colours_deterministically(tiny_model, small_data):
    model = colour_model.ColourModel.load(str(tiny_model), compat.get_device(-1))
    drawing = Image.open(drawing_path(small_data)).convert('L')
    a = np.asarray(model.colour(drawing, ['響']))
    b = np.asarray(model.colour(drawing, ['響']))
    np.testing.assert_array_equal(a, b)


def run_error(argv, capsys):
    code = colorize.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_bad_inputs_are_one_line_errors(tiny_model, small_data, tmp_path, capsys):
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    code, err = run_error(['-i', str(bad), '--model', str(tiny_model), '-o', str(tmp_path / 'x.png')], capsys)
    assert code == 1 and len(err) == 1 and err[0].startswith('error: ') and 'bad.png' in err[0]

    code, err = run_error(['-i', str(tmp_path / 'missing.png'), '--model', str(tiny_model)], capsys)
    assert code == 1 and len(err) == 1 and 'no such file' in err[0]

    code, err = run_error(['-i', drawing_path(small_data), '--model', str(tmp_path / 'no-model')], capsys)
    assert code == 1 and len(err) == 1 and 'no trained model' in err[0]

    out = tmp_path / 'u.png'
    code, err = run_error(['-i', drawing_path(small_data), '--model', str(tiny_model), '-o', str(out),
                           '-t', '響', '-t', 'ぜったいないタグ'], capsys)
    assert code == 1 and len(err) == 1 and 'ぜったいないタグ' in err[0]
    assert (tmp_path / 'u_1_響.png').exists()  # what could be made was made
    assert not (tmp_path / 'u_2_ぜったいないタグ.png').exists()


def test_blank_colours_paper_from_tags_alone(tiny_model, tmp_path, capsys):
    out = tmp_path / 'miku.png'
    assert colorize.main(['--blank', '96', '-t', '初音ミク', '-t', '響', '--model', str(tiny_model),
                          '-o', str(out)]) == 0
    miku = np.asarray(Image.open(tmp_path / 'miku_1_初音ミク.png'), np.int16)
    hibiki = np.asarray(Image.open(tmp_path / 'miku_2_響.png'), np.int16)
    assert miku.shape == hibiki.shape == (96, 96, 3)
    assert np.abs(miku - hibiki).mean() > 1.0  # the tags alone decide the picture
    with pytest.raises(SystemExit) as exit:  # a drawing or blank paper, not both
        colorize.main(['--blank', '96', '-i', 'x.png', '--model', str(tiny_model)])
    assert exit.value.code == 2


def test_blank_paper_names_the_tags_its_figure_leaves_out(tiny_model):
    counted = colour_model.ColourModel.load(str(tiny_model), compat.get_device(-1)).prior
    # A prior that has counted 初音ミク alone (as if no training picture carried 響).
    rows = [counted.index['初音ミク'], -1]
    prior = figure_prior.FigurePrior(counted.palette, ['初音ミク'], counted.counts[rows])
    assert colorize.blank_note(prior, ['初音ミク']) is None
    assert colorize.blank_note(prior, ['初音ミク', '響']) == \
        'the figure prior has not counted 響: the figure is drawn from the other tags'
    assert colorize.blank_note(prior, ['響']) == \
        'the figure prior has not counted 響: the network colours the blank paper'


def test_blank_paper_is_pushed_from_the_untagged_colouring_by_the_guidance(tiny_model, small_data, capsys):
    """Blank paper with tags, on a model without a figure prior (one trained before it):
    untagged + W (tagged - untagged), each term as the network gives it; W = 1 is the
    plain colouring, and a drawing of lines is never guided."""
    model = colour_model.ColourModel.load(str(tiny_model), compat.get_device(-1))
    model.prior = None
    paper = Image.new('L', (model.size, model.size), 255)
    tagged, untagged = (np.asarray(model.colour(paper, tags, guidance=1), np.float64)
                        for tags in (['初音ミク'], []))
    assert np.abs(tagged - untagged).mean() > 1.0  # the tags move the picture: there is something to push
    guided = np.asarray(model.colour(paper, ['初音ミク'], guidance=2), np.float64)
    # Each term was rounded to a whole number once, the guided picture once: 1.5 at most
    # apart, where neither term was cut at 0 or 255 (the network's output goes past both).
    inside = (np.minimum(tagged, untagged) > 0) & (np.maximum(tagged, untagged) < 255)
    assert inside.mean() > 0.9
    assert np.abs(guided - np.clip(2 * tagged - untagged, 0, 255))[inside].max() <= 1.5
    by_default = np.asarray(model.colour(paper, ['初音ミク']), np.float64)  # BLANK_GUIDANCE (1.5)
    expected = np.clip(untagged + colour_model.BLANK_GUIDANCE * (tagged - untagged), 0, 255)
    assert np.abs(by_default - expected)[inside].max() <= 1.5 < np.abs(by_default - tagged).max()
    drawing = Image.open(small_data / 'test' / 'line' / 'miku_0000.png').convert('L')
    assert model.colour(drawing, ['初音ミク'], guidance=3).tobytes() == model.colour(
        drawing, ['初音ミク'], guidance=1).tobytes()
    with pytest.raises(SystemExit) as exit:
        colorize.main(['-i', 'x.png', '--guidance', '2', '--model', str(tiny_model)])
    assert exit.value.code == 2 and '--guidance is for --blank paper' in capsys.readouterr().err


def test_what_a_killed_write_left_is_removed_by_the_next_one(tiny_model, small_data, tmp_path, capsys):
    """kill -9 inside a write leaves .NAME.XXXXXXXX.part; writing NAME again removes it,
    and only it (another file's temporary, or a file of the user's, stays)."""
    left = ['.out.png.0a1b2c3d.part', '.out_sheet.png.deadbeef.part']
    kept = ['.other.png.0a1b2c3d.part', '.out.png.notmine.part', 'out.png.0a1b2c3d.part']
    for name in left + kept:
        (tmp_path / name).write_bytes(b'half a picture')
    out = tmp_path / 'out.png'
    assert colorize.main(['-i', drawing_path(small_data), '--model', str(tiny_model), '-o', str(out),
                          '-t', '響']) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ['out.png', left[1]])
    assert colorize.main(['-i', drawing_path(small_data), '--model', str(tiny_model), '-o', str(out),
                          '-t', '響', '-t', '暁']) == 0
    assert left[1] not in {p.name for p in tmp_path.iterdir()}


def test_a_tag_s_control_characters_are_escaped_in_the_error(tiny_model, small_data, tmp_path, capsys):
    assert colorize.main(['-i', drawing_path(small_data), '--model', str(tiny_model),
                          '-o', str(tmp_path / 'o.png'), '-t', 'no\x1b[2Jsuch\ntag,響']) == 1
    err = capsys.readouterr().err
    assert '\x1b' not in err and 'no\\x1b[2Jsuch\\ntag' in err and len(err.splitlines()) == 1


def test_kept_lines_and_the_layers_a_paint_program_opens(tiny_model, small_data, tmp_path):
    drawing = Image.open(drawing_path(small_data)).convert('L')
    out = tmp_path / 'page.png'
    assert colorize.main(['-i', drawing_path(small_data), '--model', str(tiny_model), '-o', str(out),
                          '-t', '響', '--layers']) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['page.png', 'page_flat.png', 'page_lines.png']
    picture, flat = Image.open(out), Image.open(tmp_path / 'page_flat.png')
    lines = Image.open(tmp_path / 'page_lines.png')
    assert picture.size == flat.size == lines.size == drawing.size and lines.mode == 'RGBA'
    shade = np.asarray(drawing, np.uint16)[..., None]
    # The picture is the flat layer with the drawing multiplied over it, and the line
    # layer is black, as opaque as the drawing is dark: laid over the flats, they give it.
    np.testing.assert_array_equal(np.asarray(picture), np.asarray(flat, np.uint16) * shade // 255)
    np.testing.assert_array_equal(np.asarray(lines)[..., 3], 255 - np.asarray(drawing))
    assert not np.asarray(lines)[..., :3].any()
    # One colour per region of the line art: no more colours than regions.
    import flatting
    _, regions = flatting.regions(flatting.line_mask(drawing))
    assert len(np.unique(np.asarray(flat).reshape(-1, 3), axis=0)) <= regions
    # The network's own colours on request; layers only come with kept lines.
    assert colorize.main(['-i', drawing_path(small_data), '--model', str(tiny_model),
                          '-o', str(tmp_path / 'net.png'), '-t', '響', '--lines', 'network']) == 0
    model = colour_model.ColourModel.load(str(tiny_model), compat.get_device(-1))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'net.png')),
                                  np.asarray(model.colour(drawing, ['響'])))
    for wrong in (['-i', drawing_path(small_data), '--layers', '--lines', 'network'],
                  ['--blank', '128', '--lines', 'keep'], ['--blank', '128', '--layers']):
        with pytest.raises(SystemExit) as exit:
            colorize.main(['--model', str(tiny_model)] + wrong)
        assert exit.value.code == 2


def test_a_sheet_shows_the_drawing_read_and_keeps_each_picture_s_shape(tiny_model, tmp_path):
    """A colour picture with --drawing line: the sheet's first column is the line art
    the network read; a 90x150 drawing keeps its shape in the sheet's square cells."""
    picture = Image.new('RGB', (90, 150), 'white')
    picture.paste((200, 30, 30), (20, 40, 70, 120))
    picture.save(tmp_path / 'portrait.png')
    assert colorize.main(['-i', str(tmp_path / 'portrait.png'), '--model', str(tiny_model),
                          '--drawing', 'line', '-t', '響', '-t', '暁', '-o', str(tmp_path / 'out.png')]) == 0
    sheet = np.asarray(Image.open(tmp_path / 'out_sheet.png').convert('L'), np.int16)
    assert sheet.shape[1] == 3 * 150
    cell = sheet[-150:, :150]  # the first column: 150 px square, the drawing 90 px wide inside
    assert (cell[:, :25] == 255).all() and (cell[:, -25:] == 255).all()  # white margins beside it
    line_art = np.asarray(dataset.make_drawing(picture, 'line'), np.int16)
    assert np.abs(cell[:, 30:120] - line_art).mean() < 2  # the line art, not the red picture


def test_a_colour_picture_is_made_line_art_and_a_tag_known_in_part_is_named(tiny_model, small_data, tmp_path,
                                                                             capsys):
    """Say what happened: a colour picture given with no --drawing is coloured as the line
    art made from it, with a note; 響の帽子 (響 known, 帽子 not) is coloured by 響, with a note."""
    picture = Image.new('RGB', (96, 96), 'white')
    picture.paste((210, 40, 60), (20, 20, 76, 76))
    picture.save(tmp_path / 'colour.png')
    argv = ['-i', str(tmp_path / 'colour.png'), '--model', str(tiny_model), '-t', '響の帽子']
    assert colorize.main(argv + ['-o', str(tmp_path / 'auto.png')]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith('note: ')]
    assert notes == ['note: {} is a colour picture: colouring line art made from it (--drawing line; '
                     '--drawing asis uses it as it is)'.format(tmp_path / 'colour.png'),
                     "note: 響の帽子 is not in the model's vocabulary: coloured by its words 響 "
                     "(帽子 unknown)"]
    assert colorize.main(argv + ['--drawing', 'line', '-o', str(tmp_path / 'line.png')]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'auto.png')),
                                  np.asarray(Image.open(tmp_path / 'line.png')))
    capsys.readouterr()
    assert colorize.main(argv + ['--drawing', 'asis', '-o', str(tmp_path / 'asis.png')]) == 0
    assert 'colour picture' not in capsys.readouterr().err
    assert not dataset.is_colour_picture(Image.open(drawing_path(small_data)))


def test_a_large_drawing_says_what_its_colouring_did(tiny_model, tmp_path, capsys):
    drawing = Image.new('L', (1100, 300), 255)
    drawing.paste(0, (100, 100, 1000, 104))
    drawing.save(tmp_path / 'wide.png')
    assert colorize.main(['-i', str(tmp_path / 'wide.png'), '--model', str(tiny_model), '-t', '響',
                          '-o', str(tmp_path / 'out.png')]) == 0
    said = capsys.readouterr().out.splitlines()[-1]
    assert said.startswith('wrote {}: a 1100x300 drawing coloured at 128 px, its lines kept at full size, in '
                           .format(tmp_path / 'out.png')) and said.endswith(' s')


def test_a_hint_sets_its_region_s_colour_and_the_sheet_shows_it(tiny_model, small_data, tmp_path, capsys):
    import flatting
    path = drawing_path(small_data)
    drawing = Image.open(path).convert('L')
    labels, _ = flatting.regions(flatting.line_mask(drawing))
    y, x = np.argwhere(labels == np.bincount(labels[labels > 0]).argmax())[0]  # in the largest region
    out = tmp_path / 'hinted.png'
    argv = ['-i', path, '--model', str(tiny_model), '-t', '響', '-t', '暁', '--layers', '-o', str(out)]
    assert colorize.main(argv + ['--hint', '{},{},#12ab34'.format(x, y)]) == 0
    for name in ('hinted_1_響_flat.png', 'hinted_2_暁_flat.png'):
        flat = np.asarray(Image.open(tmp_path / name))
        assert (flat[labels == labels[y, x]] == (0x12, 0xab, 0x34)).all()
    sheet = np.asarray(Image.open(tmp_path / 'hinted_sheet.png').convert('RGB')).reshape(-1, 3)
    assert ((sheet == (0x12, 0xab, 0x34)).all(axis=1)).sum() >= 25  # the dot, shown on the drawing
    # The same from a hints picture, as a paint program saves it.
    layer = Image.new('RGBA', drawing.size, (0, 0, 0, 0))
    layer.putpixel((int(x), int(y)), (0x12, 0xab, 0x34, 255))
    layer.save(tmp_path / 'layer.png')
    assert colorize.main(['-i', path, '--model', str(tiny_model), '-t', '響', '--hints',
                          str(tmp_path / 'layer.png'), '-o', str(tmp_path / 'from_file.png')]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'from_file.png')),
                                  np.asarray(Image.open(tmp_path / 'hinted_1_響.png')))
    capsys.readouterr()
    for wrong, said in ((['--hint', '{},5,#12ab34'.format(drawing.size[0])], 'lies outside'),
                        (['--hints', str(tmp_path / 'hinted_sheet.png')], 'the hints picture is')):
        code, err = run_error(['-i', path, '--model', str(tiny_model), '-o', str(tmp_path / 'x.png')] + wrong,
                              capsys)
        assert code == 1 and len(err) == 1 and said in err[0]
    for wrong in (['--hint', '1,2,red'], ['--hint', '1,2,#123456', '--lines', 'network']):
        with pytest.raises(SystemExit) as exit:
            colorize.main(['-i', path, '--model', str(tiny_model)] + wrong)
        assert exit.value.code == 2


def test_the_probes_of_a_second_tag_set_colour_the_drawing_no_more(tiny_model, small_data, monkeypatch):
    model = colour_model.ColourModel.load(str(tiny_model), compat.get_device(-1))
    drawing = Image.open(drawing_path(small_data)).convert('L')
    calls = []
    colour = model.colour
    monkeypatch.setattr(model, 'colour',
                        lambda *args, **kwargs: calls.append(args[1]) or colour(*args, **kwargs))
    first = model.probe_colourings(drawing, colour(drawing, ['響']))
    assert len(calls) == len(model.tags) > colour_model.PROBES and len(first) == colour_model.PROBES
    model.probe_colourings(drawing, colour(drawing, ['暁']))
    assert len(calls) == len(model.tags)  # the vocabulary's colourings of this drawing are kept
    model.probe_colourings(drawing.transpose(Image.FLIP_LEFT_RIGHT), colour(drawing, ['暁']))
    assert len(calls) == 2 * len(model.tags)  # another drawing is coloured anew
