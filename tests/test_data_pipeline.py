"""The data pipeline at scale: flat memory, real folders, tag caching, loader workers."""
import io
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
from PIL import Image

import dataset
import prepare_drawings
from dataset import DataWarning, TaggedImageDataset
import tag_vectorizer
from tag_vectorizer import TagVectorizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.filterwarnings('ignore:.*have no tags:UserWarning')
TAG_SETS = [['響', '艦これ'], ['暁', '艦これ'], ['初音ミク'], ['博麗霊夢', '東方']]


def picture(seed=0, size=(96, 80)):
    """A white picture with a coloured rectangle, different per seed."""
    rng = np.random.RandomState(seed)
    pixels = np.full((size[1], size[0], 3), 255, np.uint8)
    x, y = rng.randint(0, size[0] // 2), rng.randint(0, size[1] // 2)
    pixels[y:y + size[1] // 3, x:x + size[0] // 3] = rng.randint(0, 200, 3)
    return Image.fromarray(pixels)


def write_set(folder, count, size=(96, 80), tags=True):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        picture(k, size).save(folder / 'img_{:04d}.png'.format(k))
        if tags:
            (folder / 'img_{:04d}.txt'.format(k)).write_text(','.join(TAG_SETS[k % len(TAG_SETS)]), 'utf-8')
    return folder


def truncated_png(path, seed=0):
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (80, 96, 3), np.uint8)).save(buffer, 'PNG')
    path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])  # header intact, body cut


def is_valid(example, size):
    x_in, t_out = example
    return (x_in.shape == (4, size, size) and t_out.shape == (3, size, size)
            and x_in.dtype == t_out.dtype == np.float32
            and -1 <= x_in.min() and x_in.max() < 1 and -1 <= t_out.min() and t_out.max() < 1)


@pytest.fixture(scope='module')
def vectorizer():
    return TagVectorizer.train(TAG_SETS * 3, dim=16, epochs=5)


# ---------------------------------------------------------------- memory
def traced_peak(folder, vectorizer):
    """Peak Python/NumPy allocation while scanning folder and reading every example once."""
    tracemalloc.start()
    data = TaggedImageDataset(str(folder), vectorizer, size=64)
    for i in range(len(data)):
        data[i]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, len(data)


def test_memory_stays_flat_with_the_number_of_images(tmp_path, vectorizer):
    small, n_small = traced_peak(write_set(tmp_path / 'small', 50), vectorizer)
    large, n_large = traced_peak(write_set(tmp_path / 'large', 1000), vectorizer)
    assert (n_small, n_large) == (50, 1000)
    float32_growth = (n_large - n_small) * 7 * 64 * 64 * 4  # the example's copies: 109 MB
    assert large - small < float32_growth / 50


def bench(tmp_path, n):
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'bench_data.py'), '--n', str(n),
                          '--size', '128', '--image-size', '128', '--loaderjob', '2', '--batches', '40',
                          '--write-jobs', '1', '--data', str(tmp_path / 'bench{}'.format(n)), '--json'],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_benchmark_rss_grows_far_below_the_float32_footprint(tmp_path):
    small, large = bench(tmp_path, 50), bench(tmp_path, 1000)
    for result in (small, large):
        assert {'n', 'size', 'loaderjob', 'peak_rss_mb', 'images_per_s', 'peak_pss_mb'} <= set(result)
        assert result['loaderjob'] == 2 and result['workers_used'] == 2 and result['images_per_s'] > 0
        assert len(result['worker_peak_rss_mb']) == 2 and result['skipped'] == 0
    assert (small['n'], large['n'], large['images']) == (50, 1000, 1000)
    float32_growth_mb = large['float32_examples_mb'] - small['float32_examples_mb']  # 436 MB
    assert large['peak_rss_mb'] - small['peak_rss_mb'] < float32_growth_mb / 10


def test_benchmark_rejects_bad_arguments_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'bench_data.py'), '--n', '0'],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and 'Traceback' not in out.stderr and '--n' in out.stderr
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'bench_data.py'), '--dataset',
                          str(tmp_path / 'no')],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and 'Traceback' not in out.stderr and 'does not exist' in out.stderr


# ---------------------------------------------------------------- real folders
def test_unreadable_and_tiny_files_are_skipped_at_the_scan_by_name(tmp_path):
    write_set(tmp_path, 2)
    (tmp_path / 'garbage.png').write_bytes(b'not an image at all')
    (tmp_path / 'empty.jpg').write_bytes(b'')
    picture(size=(20, 12)).save(tmp_path / 'icon.png')
    with pytest.warns(DataWarning, match=r'skipped 3 of 5 images') as caught:
        data = TaggedImageDataset(str(tmp_path), size=128)
    message = str(caught[0].message)
    assert 'garbage.png' in message and 'empty.jpg' in message and 'icon.png' in message
    assert len(data) == 2 and all('img_' in p for p in data.paths)
    reasons = dict((os.path.basename(p), r) for p, r in data.skipped)
    assert 'not a readable image' in reasons['garbage.png'] and 'short side 12 px' in reasons['icon.png']


def test_truncated_file_is_replaced_by_another_example_with_a_warning(tmp_path):
    write_set(tmp_path, 3)
    truncated_png(tmp_path / 'img_0001.png')  # passes the header scan, fails to decode
    data = TaggedImageDataset(str(tmp_path), size=64)
    assert len(data) == 3
    bad = [os.path.basename(p) for p in data.paths].index('img_0001.png')
    random.seed(0)
    with pytest.warns(DataWarning, match=r'img_0001.png: not a readable image.*another image'):
        assert is_valid(data[bad], 64)
    assert data.unreadable == {bad}
    # Known bad: replaced at once, without decoding or warning again; an epoch runs through.
    with warnings.catch_warnings():
        warnings.simplefilter('error', DataWarning)
        batches = [data[i] for i in range(len(data)) for _ in range(3)]
    assert all(is_valid(example, 64) for example in batches)


def test_a_folder_of_unreadable_bodies_stops_with_a_clear_error(tmp_path):
    for k in range(2):
        truncated_png(tmp_path / 'bad{}.png'.format(k), k)
    data = TaggedImageDataset(str(tmp_path), size=64)
    with pytest.warns(DataWarning), pytest.raises(dataset.ImageError, match='could not be read') as info:
        data[0]
    assert '\n' not in str(info.value)
    (tmp_path / 'bad0.png').unlink()
    (tmp_path / 'bad1.png').write_bytes(b'x')
    with pytest.warns(DataWarning), pytest.raises(ValueError, match='no usable images'):
        TaggedImageDataset(str(tmp_path), size=64)


def test_colour_images_without_a_paired_drawing_are_skipped(tmp_path):
    write_set(tmp_path / 'color', 3)
    (tmp_path / 'line').mkdir()
    for k in (0, 2):
        picture(k).convert('L').save(tmp_path / 'line' / 'img_{:04d}.png'.format(k))
    with pytest.warns(DataWarning, match=r'img_0001.png \(no drawing'):
        data = TaggedImageDataset(str(tmp_path), size=64)
    assert [os.path.basename(p) for p in data.paths] == ['img_0000.png', 'img_0002.png']


def test_images_without_tags_are_counted_and_warned(tmp_path):
    write_set(tmp_path, 4)
    os.remove(tmp_path / 'img_0002.txt')
    with pytest.warns(DataWarning, match=r'1 of 4 images .* have no tags.*img_0002.png'):
        data = TaggedImageDataset(str(tmp_path), size=64)
    assert data.untagged == 1 and data.tags[2] == []


FORMAT_MODES = [('PNG', m) for m in ('RGB', 'RGBA', 'LA', 'P', 'PA', 'L', '1', 'I;16')] + \
               [('JPEG', m) for m in ('RGB', 'L', 'CMYK')] + [('WEBP', m) for m in ('RGB', 'RGBA')]


def test_every_format_and_mode_trains_from_nested_folders(tmp_path):
    for k, (fmt, mode) in enumerate(FORMAT_MODES):
        image = picture(k)
        if mode in ('RGBA', 'LA', 'PA'):
            image = image.convert('RGBA')
            image.putalpha(Image.fromarray(
                np.where(np.arange(96) < 48, 255, 0).astype(np.uint8)[None].repeat(80, 0)))
            image = image.convert(mode) if mode != 'PA' else image.convert('P')
        elif mode == 'I;16':
            image = Image.fromarray(np.asarray(image.convert('L'), np.uint16) * 257)
        else:
            image = image.convert(mode)
        folder = tmp_path / fmt.lower() / mode.replace(';', '')
        folder.mkdir(parents=True)
        image.save(folder / 'x.{}'.format({'JPEG': 'jpg'}.get(fmt, fmt.lower())), fmt)
        (folder / 'x.txt').write_text('響', 'utf-8')
    data = TaggedImageDataset(str(tmp_path), size=64, augment=False)
    assert len(data) == len(FORMAT_MODES) and not data.skipped
    for i in range(len(data)):
        x_in, t_out = data[i]
        assert is_valid((x_in, t_out), 64), data.paths[i]
        assert t_out[:, 0, -1].min() > 0.95, data.paths[i]  # white (or transparent) corner is white


def test_small_images_are_upscaled_and_large_jpegs_decoded_small(tmp_path):
    picture(size=(40, 36)).save(tmp_path / 'small.png')  # under the 128 crop, over 128/4
    picture(size=(1200, 900)).save(tmp_path / 'large.jpg', quality=90)
    data = TaggedImageDataset(str(tmp_path), size=128, flip=True)
    assert len(data) == 2 and all(is_valid(data[i], 128) for i in range(2))
    reduced = dataset.load_image(tmp_path / 'large.jpg', min_side=143)
    assert 143 <= min(reduced.size) < 450 and reduced.size[0] * 3 == reduced.size[1] * 4
    assert dataset.load_image(tmp_path / 'large.jpg').size == (1200, 900)


def test_to_unit_writes_in_place_exactly_as_x_over_128_minus_1():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = np.full((2, 16, 16), 7, np.float32)
    dataset.to_unit(pixels, out=out[1:])
    np.testing.assert_array_equal(out[1], pixels.astype(np.float32) / 128.0 - 1.0)
    assert (out[0] == 7).all()


# ---------------------------------------------------------------- tags
def test_tag_vectors_are_computed_once_per_distinct_tag_set(tmp_path, monkeypatch):
    write_set(tmp_path, 12)
    vectorizer = TagVectorizer.train(TAG_SETS * 3, dim=16, epochs=5)
    computed = []
    known_vectors = vectorizer._known_vectors
    monkeypatch.setattr(vectorizer, '_known_vectors',
                        lambda tags: computed.append(tuple(tags)) or known_vectors(tags))
    data = TaggedImageDataset(str(tmp_path), vectorizer, size=64)
    planes = [data[i][0][3] for i in range(len(data)) for _ in range(2)]
    assert sorted(computed) == sorted(tuple(tags) for tags in TAG_SETS)
    np.testing.assert_array_equal(planes[0], tag_vectorizer.tag_plane(vectorizer, TAG_SETS[0], 64))
    assert np.abs(planes[0] - planes[2]).mean() > 0.3  # 響 vs 暁: most cells differ
    monkeypatch.setattr(tag_vectorizer, 'SET_CACHE_SIZE', 3)
    data.tag_dropout = 0.5
    for i in range(len(data)):
        data[i]
    assert len(vectorizer._set_cache) <= 3


# ---------------------------------------------------------------- loader workers
_shared = {}


def _remember(data, barrier):
    _shared.update(data=data, barrier=barrier)


def _draw_three(_):
    _shared['barrier'].wait()  # one task in each worker
    crops = [hash(_shared['data'][0][1].tobytes()) for _ in range(3)]
    return os.getpid(), crops, float(np.random.random())


def test_forked_workers_draw_different_crops_and_numpy_numbers(tmp_path):
    write_set(tmp_path, 1, size=(160, 96))
    data = TaggedImageDataset(str(tmp_path), size=64, flip=True, tag_dropout=0.5)
    random.seed(0)
    np.random.seed(0)
    context = multiprocessing.get_context('fork')
    barrier = context.Barrier(2)
    with context.Pool(2, initializer=_remember, initargs=(data, barrier)) as pool:
        (pid_a, crops_a, numpy_a), (pid_b, crops_b, numpy_b) = pool.map(_draw_three, range(2), chunksize=1)
    assert pid_a != pid_b
    assert crops_a != crops_b and numpy_a != numpy_b


def test_make_iterator_loads_batches_in_worker_processes(tmp_path):
    write_set(tmp_path, 6)
    data = TaggedImageDataset(str(tmp_path), size=64)
    iterator = dataset.make_iterator(data, 3, loaderjob=2)
    try:
        batches = [iterator.next() for _ in range(4)]
    finally:
        iterator.finalize()
    assert type(iterator).__name__ == 'MultiprocessIterator' and iterator.epoch == 2
    assert all(len(batch) == 3 and all(is_valid(e, 64) for e in batch) for batch in batches)
    assert type(dataset.make_iterator(data, 3)).__name__ == 'SerialIterator'


# ---------------------------------------------------------------- prepare_drawings.py
def test_prepare_drawings_writes_the_paired_layout(tmp_path, capsys):
    source = tmp_path / 'src'
    write_set(source / 'a', 2)
    picture(5).save(source / 'b.jpg', quality=95)
    picture(6).convert('RGBA').save(source / 'c.webp')
    (source / 'tags.tsv').write_text('b.jpg\t初音ミク\nc\t東方\n', 'utf-8')
    (source / 'broken.png').write_bytes(b'broken')
    out = tmp_path / 'set'
    assert prepare_drawings.main([str(source), '-o', str(out), '-j', '1']) == 0
    report = capsys.readouterr()
    assert 'broken.png' in report.err and '4 drawings written' in report.out
    assert sorted(os.listdir(out / 'line')) == ['a', 'b.png', 'c.png']
    data = TaggedImageDataset(str(out), size=64)
    assert len(data) == 4 and data.line_root == str(out / 'line')
    tags = {os.path.basename(p): t for p, t in zip(data.paths, data.tags)}
    assert (tags['b.jpg'] == ['初音ミク'] and tags['c.webp'] == ['東方']
            and tags['img_0000.png'] == TAG_SETS[0])
    i = [os.path.basename(p) for p in data.paths].index('c.webp')
    expected = dataset.make_drawing(dataset.load_image(source / 'c.webp'), 'line')
    np.testing.assert_array_equal(np.asarray(data.drawing_of(i)), np.asarray(expected))
    assert all(is_valid(data[i], 64) for i in range(len(data)))
    # A second run keeps what is up to date.
    assert prepare_drawings.main([str(source), '-o', str(out), '-j', '1']) == 0
    assert '0 drawings written, 4 up to date' in capsys.readouterr().out


def test_prepare_drawings_reports_pictures_whose_names_clash(tmp_path, capsys):
    """a.png and a.jpg would both be line/a.png, with a.txt's tags: the first by name is kept."""
    source = tmp_path / 'src'
    source.mkdir()
    picture(1).save(source / 'a.png')
    picture(2).save(source / 'a.jpg', quality=95)
    (source / 'a.txt').write_text('響', 'utf-8')
    out = tmp_path / 'set'
    assert prepare_drawings.main([str(source), '-o', str(out), '-j', '1']) == 0
    report = capsys.readouterr()
    assert '1 drawings written' in report.out and '1 files skipped' in report.out
    assert report.err.splitlines() == ['skipped a.png: the same name as a.jpg: both would be line/a.png with '
                                       'the tags of a.txt; rename one']
    assert sorted(os.listdir(out / 'line')) == ['a.png'] and sorted(os.listdir(out / 'color')) == ['a.jpg',
                                                                                                  'a.txt']
    expected = dataset.make_drawing(dataset.load_image(source / 'a.jpg'), 'line')
    np.testing.assert_array_equal(np.asarray(Image.open(out / 'line' / 'a.png')), np.asarray(expected))


def test_prepare_drawings_shrinks_and_keeps_the_train_test_split(tmp_path, capsys):
    source = tmp_path / 'src'
    for split in ('train', 'test'):
        (source / split).mkdir(parents=True)
        picture(size=(600, 400)).save(source / split / 'x.png')
    out = tmp_path / 'set'
    assert prepare_drawings.main([str(source), '-o', str(out), '--short-side', '143',
                                  '--drawing', 'grey', '-j', '1']) == 0
    for split in ('train', 'test'):
        assert Image.open(out / split / 'color' / 'x.png').size == (214, 143)
        assert Image.open(out / split / 'line' / 'x.png').mode == 'L'


def test_prepare_drawings_errors_are_one_line(tmp_path, capsys):
    assert prepare_drawings.main([str(tmp_path / 'missing'), '-o', str(tmp_path / 'o')]) == 1
    (tmp_path / 'empty').mkdir()
    assert prepare_drawings.main([str(tmp_path / 'empty'), '-o', str(tmp_path / 'o')]) == 1
    err = capsys.readouterr().err
    assert err.count('error:') == 2 and 'Traceback' not in err
