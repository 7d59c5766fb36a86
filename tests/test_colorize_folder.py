"""colorize.py -i DIR -o OUTDIR: every drawing under a folder, the model loaded once,
carried on where a stopped run stopped, nothing overwritten without --overwrite."""
import shutil

import numpy as np
import pytest
from PIL import Image

import atomic
import colorize


@pytest.fixture
def pages(small_data, tmp_path):
    """A folder as a user has one: drawings with sidecar tags at the top and in a
    sub-folder, a file that is no image, a colour picture, and a.png beside a.jpg."""
    folder = tmp_path / 'pages'
    (folder / 'chapter 2').mkdir(parents=True)
    lines, colours = small_data / 'test' / 'line', small_data / 'test' / 'color'
    for name, where in (('hibiki_0000', folder), ('akatsuki_0000', folder),
                        ('miku_0000', folder / 'chapter 2')):
        shutil.copy(lines / (name + '.png'), where / (name + '.png'))
        shutil.copy(colours / (name + '.txt'), where / (name + '.txt'))
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n not a picture')
    shutil.copy(colours / 'rin_0000.png', folder / 'chapter 2' / 'rin_colour.png')
    drawing = Image.open(lines / 'reimu_0000.png')
    drawing.save(folder / 'a.png')
    drawing.convert('RGB').save(folder / 'a.jpg', quality=95)
    return folder


def run(capsys, argv):
    code = colorize.main(argv)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def test_a_folder_is_coloured_into_the_same_tree_with_each_drawing_s_own_tags(tiny_model, pages, tmp_path,
                                                                              capsys):
    out = tmp_path / 'coloured'
    code, said, errors = run(capsys, ['-i', str(pages), '-o', str(out), '--model', str(tiny_model),
                                      '--tags-from-files'])
    assert code == 1  # one file could not be read; the others were coloured
    written = sorted(str(p.relative_to(out)) for p in out.rglob('*.png'))
    assert written == ['a_jpg.png', 'a_png.png', 'akatsuki_0000.png', 'chapter 2/miku_0000.png',
                       'chapter 2/rin_colour.png', 'hibiki_0000.png']
    assert [line for line in errors if line.startswith('error: ')] == [
        line for line in errors if 'broken.png' in line] and len([e for e in errors if 'broken' in e]) == 1
    assert said[-1].startswith('6 done, 0 skipped (there already), 1 failed, in ')
    assert said[0].startswith('[1/7] a.jpg done · ') and ' images/s · ' in said[0]
    assert said[6].startswith('[7/7] chapter 2/rin_colour.png done (a colour picture: coloured as line art '
                              'made from it)')
    # The same drawing and tags give the same picture as colouring it alone.
    tags = (pages / 'hibiki_0000.txt').read_text(encoding='utf-8').strip()
    alone = tmp_path / 'alone.png'
    assert colorize.main(['-i', str(pages / 'hibiki_0000.png'), '-o', str(alone), '--model', str(tiny_model),
                          '-t', tags]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(alone)),
                                  np.asarray(Image.open(out / 'hibiki_0000.png')))
    assert Image.open(out / 'chapter 2' / 'miku_0000.png').size == Image.open(
        pages / 'chapter 2' / 'miku_0000.png').size


def test_a_second_run_skips_what_is_there_and_overwrite_redoes_it(tiny_model, pages, tmp_path, capsys):
    out = pages / 'out'  # inside the input folder: its pictures are not taken for drawings
    argv = ['-i', str(pages), '-o', str(out), '--model', str(tiny_model), '-t', '響', '-t', '暁', '--layers']
    assert run(capsys, argv)[0] == 1
    first = {p: p.read_bytes() for p in out.rglob('*.png')}
    assert len(first) == 6 * 5  # two tag sets, a flat layer each, one line layer
    code, said, _ = run(capsys, argv)
    assert code == 1 and said[-1].startswith('0 done, 6 skipped (there already), 1 failed, in ')
    assert {p: p.read_bytes() for p in out.rglob('*.png')} == first
    (out / 'hibiki_0000_2_暁_flat.png').unlink()  # one layer missing: that drawing is done again
    code, said, _ = run(capsys, argv)
    assert said[-1].startswith('1 done, 5 skipped')
    code, said, _ = run(capsys, argv + ['--overwrite'])
    assert said[-1].startswith('6 done, 0 skipped')


def test_a_stopped_run_carries_on_where_it_stopped(tiny_model, pages, tmp_path, capsys, monkeypatch):
    out = tmp_path / 'out'
    argv = ['-i', str(pages), '-o', str(out), '--model', str(tiny_model), '-t', '響']
    colour_one_file, calls = colorize.colour_one_file, []

    def stopped_at_the_fourth(*args):
        calls.append(args[1])
        if len(calls) == 4:
            raise KeyboardInterrupt
        return colour_one_file(*args)

    monkeypatch.setattr(colorize, 'colour_one_file', stopped_at_the_fourth)
    code, said, errors = run(capsys, argv)
    assert code == 130 and said[-1].startswith('3 done, 0 skipped (there already), 0 failed')
    assert errors[-1] == 'stopped: run the same command again to colour the rest'
    # A write that was killed left its hidden temporary file: the next run removes it.
    stale = out / atomic.temporary_name('hibiki_0000.png')
    stale.write_bytes(b'half a picture')
    monkeypatch.setattr(colorize, 'colour_one_file', colour_one_file)
    code, said, _ = run(capsys, argv)
    assert said[-1].startswith('3 done, 3 skipped (there already), 1 failed')
    assert not stale.exists() and len(list(out.rglob('*.png'))) == 6


def test_folder_mistakes_are_one_line_errors(tiny_model, pages, tmp_path, capsys):
    model = ['--model', str(tiny_model)]
    for wrong in (['-i', str(pages)], ['-i', str(pages / 'a.png'), '--overwrite'],
                  ['-i', str(pages), '-o', str(tmp_path / 'o'), '--tags-from-files', '-t', '響']):
        with pytest.raises(SystemExit) as exit:
            colorize.main(wrong + model)
        assert exit.value.code == 2
    capsys.readouterr()
    (tmp_path / 'file.png').write_bytes(b'')
    (tmp_path / 'empty').mkdir()
    for argv, said in ((['-i', str(pages), '-o', str(pages)], '-o is the input folder'),
                       (['-i', str(pages), '-o', str(tmp_path / 'file.png')], 'is a file'),
                       (['-i', str(tmp_path / 'empty'), '-o', str(tmp_path / 'o')], 'no images')):
        code, out, err = run(capsys, argv + model)
        assert code == 1 and len(err) == 1 and said in err[0] and not out
    assert sorted(p.name for p in pages.iterdir()) == [
        'a.jpg', 'a.png', 'akatsuki_0000.png', 'akatsuki_0000.txt', 'broken.png', 'chapter 2',
        'hibiki_0000.png', 'hibiki_0000.txt']


def test_a_drawing_s_hints_picture_beside_it_is_used_and_not_coloured(tiny_model, pages, tmp_path, capsys):
    drawing = Image.open(pages / 'hibiki_0000.png').convert('L')
    layer = Image.new('RGBA', drawing.size, (0, 0, 0, 0))
    layer.putpixel((5, 5), (0x12, 0xab, 0x34, 255))  # the paper, a corner: one region, never spread to
    layer.save(pages / 'hibiki_0000.hints.png')
    out = tmp_path / 'out'
    code, said, _ = run(capsys, ['-i', str(pages), '-o', str(out), '--model', str(tiny_model), '-t', '響'])
    assert said[-1].startswith('6 done, 0 skipped (there already), 1 failed')  # the hints file is no drawing
    picture = np.asarray(Image.open(out / 'hibiki_0000.png'))
    assert (picture[0:3, 0:3] == (0x12, 0xab, 0x34)).all()
    assert not (np.asarray(Image.open(out / 'akatsuki_0000.png'))[0:3, 0:3] == (0x12, 0xab, 0x34)).all()
