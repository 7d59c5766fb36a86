"""Reading tagged images and making (input, target) pairs."""
import json
import os
import random

import numpy as np
import pytest
from PIL import Image

import dataset
from dataset import TaggedImageDataset
from tag_vectorizer import TagVectorizer, tag_plane


def colour_image(seed=0, size=(80, 60)):
    rng = np.random.RandomState(seed)
    pixels = np.full((size[1], size[0], 3), 255, np.uint8)
    pixels[10:40, 10:50] = rng.randint(0, 255, 3)
    return Image.fromarray(pixels)


def write(folder, name, tags=None, mode='RGB', fmt='PNG'):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    colour_image().convert(mode).save(path, fmt)
    if tags is not None:
        (folder / (path.stem + '.txt')).write_text(tags, encoding='utf-8')
    return path


def test_scaling_round_trip():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    unit = dataset.to_unit(pixels)
    assert unit.shape == (1, 16, 16) and unit.min() == -1.0 and unit.max() < 1.0
    np.testing.assert_array_equal(dataset.to_uint8(unit)[:, :, 0], pixels)


def test_tags_from_sidecar_tsv_and_json(tmp_path):
    write(tmp_path / 'a', 'one.png', tags='響, 艦これ,銀髪\n')
    write(tmp_path / 'a', 'two.png', tags='暁 艦これ')
    write(tmp_path, 'three.jpg', fmt='JPEG')
    write(tmp_path, 'four.webp', fmt='WEBP')
    write(tmp_path, 'five.png')
    (tmp_path / 'tags.tsv').write_text('three.jpg\t初音ミク,ボーカロイド\nfour\t博麗霊夢\n', encoding='utf-8')
    (tmp_path / 'tags.json').write_text(json.dumps({'five.png': ['霧雨魔理沙', '東方']}), encoding='utf-8')
    data = TaggedImageDataset(str(tmp_path), size=128)
    tags = {p.split('/')[-1]: t for p, t in zip(data.paths, data.tags)}
    assert tags == {'one.png': ['響', '艦これ', '銀髪'], 'two.png': ['暁', '艦これ'],
                    'three.jpg': ['初音ミク', 'ボーカロイド'], 'four.webp': ['博麗霊夢'],
                    'five.png': ['霧雨魔理沙', '東方']}


@pytest.mark.parametrize('mode', ['RGB', 'RGBA', 'LA', 'P', 'L', 'CMYK', 'I;16'])
def test_every_mode_loads_as_rgb(tmp_path, mode):
    path = tmp_path / 'x.png'
    image = colour_image()
    if mode == 'I;16':
        image = Image.fromarray(np.asarray(image.convert('L'), np.uint16) * 257)
        assert image.mode == 'I;16'
        fmt = 'PNG'
    elif mode == 'CMYK':
        path, fmt = tmp_path / 'x.jpg', 'JPEG'
        image = image.convert(mode)
    else:
        image, fmt = image.convert(mode), 'PNG'
    image.save(path, fmt)
    loaded = dataset.load_image(path)
    assert loaded.mode == 'RGB' and loaded.size == (80, 60)
    grey = np.asarray(loaded.convert('L'), np.int16)
    assert abs(int(grey[0, 0]) - 255) <= 3       # white stays white (16 bits scaled, not clipped)
    assert grey[20, 20] < 250 or mode in ('RGBA', 'LA')  # the square is there


def test_transparency_is_laid_on_white(tmp_path):
    Image.new('RGBA', (8, 8), (255, 0, 0, 0)).save(tmp_path / 't.png')
    assert np.asarray(dataset.load_image(tmp_path / 't.png')).min() == 255


@pytest.mark.parametrize('fmt', ['JPEG', 'PNG'])
def test_an_exif_orientation_is_applied(tmp_path, fmt):
    """A phone stores a portrait photo of a drawing as landscape pixels with orientation 6
    (turn 90 degrees clockwise to view): it is read as viewers show it."""
    stored = colour_image()  # 80 x 60, the square at the top left
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / ('phone.jpg' if fmt == 'JPEG' else 'phone.png')
    stored.save(path, fmt, exif=exif, **({'quality': 95} if fmt == 'JPEG' else {}))
    loaded = dataset.load_image(path)
    assert loaded.size == (60, 80)
    grey = np.asarray(loaded.convert('L'), np.int16)
    # Turned clockwise, the stored top-left square (rows 10-40, columns 10-50) lies at the
    # top right: rows 10-50, columns 20-50.
    assert grey[30, 35] < 200 and grey[30, 5] > 240 and grey[70, 35] > 240
    assert np.array_equal(np.asarray(loaded.convert('L')),
                          np.asarray(Image.open(path).transpose(Image.Transpose.ROTATE_270).convert('L')))


def test_unreadable_images_raise_one_line_errors(tmp_path):
    (tmp_path / 'bad.png').write_bytes(b'not an image')
    with pytest.raises(dataset.ImageError, match='bad.png: not a readable image') as info:
        dataset.load_image(tmp_path / 'bad.png')
    assert '\n' not in str(info.value)
    with pytest.raises(dataset.ImageError, match='no such file'):
        dataset.load_image(tmp_path / 'missing.png')


def test_examples_have_drawing_tag_plane_and_target(tmp_path):
    write(tmp_path, 'one.png', tags='響,艦これ')
    write(tmp_path, 'two.png', tags='暁,艦これ')
    vectorizer = TagVectorizer.train([['響', '艦これ'], ['暁', '艦これ']] * 5, dim=16, epochs=5)
    data = TaggedImageDataset(str(tmp_path), vectorizer, size=128, augment=True, flip=True)
    x_in, t_out = data[0]
    assert x_in.shape == (4, 128, 128) and t_out.shape == (3, 128, 128)
    assert x_in.dtype == t_out.dtype == np.float32
    assert -1 <= x_in.min() and x_in.max() < 1
    np.testing.assert_array_equal(x_in[0], x_in[1])  # grey drawing in three planes
    assert x_in[3].any()
    assert not np.array_equal(data[0][0][3], data[1][0][3])  # 響 vs 暁
    no_tag = TaggedImageDataset(str(tmp_path), None, size=128)
    assert not no_tag[0][0][3].any()


def test_paired_line_folder_is_used(tmp_path):
    write(tmp_path / 'color', 'one.png', tags='響')
    line = np.full((60, 80), 255, np.uint8)
    line[5, :] = 0
    (tmp_path / 'line').mkdir()
    Image.fromarray(line, 'L').save(tmp_path / 'line' / 'one.png')
    data = TaggedImageDataset(str(tmp_path), size=128, augment=False)
    assert len(data) == 1
    np.testing.assert_array_equal(np.asarray(data.drawing_of(0)), line)


def test_line_art_from_colour_marks_edges_only():
    drawing = np.asarray(dataset.make_drawing(colour_image(), 'line'))
    assert drawing[0, 0] == 255 and drawing[25, 30] == 255  # flat areas are white
    assert drawing[9:11, 20].min() < 128                    # the square's edge is a line


def test_tag_dropout_samples_subsets(tmp_path):
    write(tmp_path, 'one.png', tags='a,b,c,d,e,f')
    data = TaggedImageDataset(str(tmp_path), size=128, tag_dropout=0.5)
    counts = {len(data.sampled_tags(0)) for _ in range(50)}
    assert len(counts) > 2
    data.augment = False
    assert data.sampled_tags(0) == list('abcdef')


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        TaggedImageDataset(str(tmp_path / 'nope'))
    with pytest.raises(ValueError, match='no images'):
        TaggedImageDataset(str(tmp_path))


def test_blank_fraction_replaces_the_drawing_by_paper_and_can_keep_every_tag(tmp_path):
    for i in range(4):
        write(tmp_path, 'p{}.png'.format(i), tags='響,艦これ')
    vectorizer = TagVectorizer.train([['響', '艦これ'], ['暁', '艦これ']] * 3, dim=16, epochs=5)
    drawn = TaggedImageDataset(str(tmp_path), vectorizer, size=64, drawing='grey', blank_fraction=0.0)
    blank = TaggedImageDataset(str(tmp_path), vectorizer, size=64, drawing='grey', blank_fraction=1.0,
                               blank_tag_keep=1.0)
    for i in range(len(blank)):
        x_blank, t_blank = blank[i]
        x_drawn, t_drawn = drawn[i]
        paper = np.float32(255 / 128 - 1)
        assert (x_blank[:3] == paper).all() and (x_drawn[:3] < paper).mean() > 0.2  # the drawing is gone
        np.testing.assert_array_equal(x_blank[3], x_drawn[3])  # the tag plane is not
        assert np.abs(x_blank[3]).mean() > 0.3
    half = TaggedImageDataset(str(tmp_path), vectorizer, size=64, drawing='grey', blank_fraction=0.5)
    blanked = [bool((half[i % 4][0][:3] == paper).all()) for i in range(200)]
    assert 0.35 < np.mean(blanked) < 0.65


def test_blank_tag_keep_gives_blank_examples_subsets_and_leaves_drawn_ones_whole(tmp_path):
    write(tmp_path, 'one.png', tags='a,b,c,d,e,f')
    vectorizer = TagVectorizer.train([list('abcdef')] * 3, dim=8, epochs=5)
    vectorizer.set_layout('slots')
    random.seed(0)
    blank = TaggedImageDataset(str(tmp_path), vectorizer, size=64, drawing='grey', blank_fraction=1.0)
    assert blank.blank_tag_keep == 0.5  # the default
    kept = [blank.blank_tags(0) for _ in range(400)]
    assert all(tags and set(tags) <= set('abcdef') for tags in kept)  # never empty, never new
    # Each tag kept half the time (mean 3 of 6; 1.6 % of draws would keep none and keep one).
    assert 2.8 < np.mean([len(tags) for tags in kept]) < 3.2
    assert 0.05 < np.mean([len(tags) == 1 for tags in kept]) < 0.2
    # A blank example's tag plane is the plane of such a subset, a different one each time.
    planes = {tag_plane(vectorizer, tags, 64).tobytes() for tags in kept}
    seen = [blank[0][0][3].tobytes() for _ in range(20)]
    assert set(seen) <= planes and len(set(seen)) >= 8
    drawn = TaggedImageDataset(str(tmp_path), vectorizer, size=64, drawing='grey', blank_tag_keep=0.5)
    np.testing.assert_array_equal(drawn[0][0][3], tag_plane(vectorizer, list('abcdef'), 64))


def figure(top, bottom, size=(80, 60)):
    """A picture whose upper half is colour ``top`` and lower half ``bottom``."""
    pixels = np.empty((size[1], size[0], 3), np.uint8)
    pixels[:size[1] // 2], pixels[size[1] // 2:] = top, bottom
    return Image.fromarray(pixels)


def test_blank_truth_prototype_is_the_tag_sets_picture_nearest_its_mean_layout(tmp_path):
    # Three pictures of 'a': two red over blue (one a little lighter), one blue over red.
    # Their mean layout is nearest the first: the prototype of {a}. {a, b} has one picture.
    pictures = {'p0.png': ((200, 0, 0), (0, 0, 200), 'a'), 'p1.png': ((230, 30, 30), (30, 30, 230), 'a'),
                'p2.png': ((0, 0, 200), (200, 0, 0), 'a,b'), 'p3.png': ((0, 200, 0), (0, 200, 0), 'c')}
    for name, (top, bottom, tags) in pictures.items():
        figure(top, bottom).save(tmp_path / name)
        (tmp_path / (name[:-4] + '.txt')).write_text(tags, encoding='utf-8')
    vectorizer = TagVectorizer.train([['a', 'b'], ['c']] * 3, dim=8, epochs=5)
    data = TaggedImageDataset(str(tmp_path), vectorizer, size=32, drawing='grey', blank_fraction=1.0,
                              blank_tag_keep=1.0, blank_truth='prototype')
    names = [os.path.basename(path) for path in data.paths]
    assert names[data.prototype(['a'])] == 'p0.png'
    assert names[data.prototype(['a', 'b'])] == 'p2.png' and names[data.prototype(['c'])] == 'p3.png'
    # A blank example of p1 (tags {a}) is scored against p0, whole (its central square):
    # red above blue, never p1's lighter colours or a crop of them.
    p0_square = dataset.central_square(Image.open(tmp_path / 'p0.png').convert('RGB'), 32)
    for _ in range(3):
        _, truth = data[names.index('p1.png')]
        np.testing.assert_array_equal(truth, dataset.to_unit(np.asarray(p0_square)))
    assert dataset.to_uint8(truth)[2, 16].tolist() == [200, 0, 0]
    assert dataset.to_uint8(truth)[29, 16].tolist() == [0, 0, 200]
    # Drawn examples and the default ('own') keep the example's own picture.
    own = TaggedImageDataset(str(tmp_path), vectorizer, size=32, drawing='grey', blank_fraction=1.0,
                             blank_tag_keep=1.0)
    _, truth = own[names.index('p1.png')]
    assert abs(dataset.to_uint8(truth)[:8, :, 0].astype(int).mean() - 230) < 3
    with pytest.raises(ValueError, match='blank_truth must be one of'):
        TaggedImageDataset(str(tmp_path), vectorizer, size=32, blank_truth='mean')
