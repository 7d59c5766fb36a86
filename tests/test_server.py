"""server.py's API through Flask's test client, its guards against bad input and overload,
and a small run of load_test.py against a real threaded server."""
import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

import compat
import colour_model
import flatting
import load_test
import server


@pytest.fixture(scope='module')
def model(tiny_model):
    return colour_model.ColourModel.load(str(tiny_model), compat.get_device(-1))


@pytest.fixture(scope='module')
def app(model):
    app = server.create_app(model, max_upload_mb=1, max_pixels=600 * 600, max_waiting=4, timeout=60)
    yield app
    app.extensions['colouriser'].close()


@pytest.fixture
def client(app):
    return app.test_client()


def png(size=(100, 60), mode='L', fmt='PNG'):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)
    image = Image.fromarray(pixels, 'L').convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def png_header_only(width, height):
    """A PNG whose header claims width x height and whose pixels are missing: a bomb's shape."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b'\0' * 64)) + \
        chunk(b'IEND', b'')


def post(client, image=None, tags=(), filename='drawing.png', **fields):
    data = dict(fields)
    if image is not None:
        data['image'] = (io.BytesIO(image), filename)
    if tags:
        data['tags'] = list(tags)
    return client.post('/api/colorize', data=data, content_type='multipart/form-data')


def decoded(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == 'image/png'
    return Image.open(io.BytesIO(response.data))


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == 'application/json'
    body = response.get_json()
    assert isinstance(body['error'], str) and body['error'] and '\n' not in body['error']
    return body


# ---- good requests ----

def test_colours_a_drawing_at_its_own_size(client, model):
    image = decoded(post(client, png((100, 60)), ['響']))
    assert image.size == (100, 60) and image.mode == 'RGB'
    # The very picture colorize.py makes of that drawing and tag: its lines kept, by
    # default, or as the network draws them.
    drawing = Image.open(io.BytesIO(png((100, 60)))).convert('L')
    network = model.colour(drawing, ['響'])
    np.testing.assert_array_equal(np.asarray(image), np.asarray(flatting.compose(network, drawing)[0]))
    image = decoded(post(client, png((100, 60)), ['響'], lines='network'))
    np.testing.assert_array_equal(np.asarray(image), np.asarray(network))
    error_of(post(client, png((100, 60)), ['響'], lines='sharp'), 400)


def test_blank_paper_with_tags_gives_the_figure_prior_canvas(client, model):
    # A white page uploaded with a tag is tags alone, as colorize.py --blank colours it:
    # the prior's figure, kept whole (no line to lay flat colours under).
    buffer = io.BytesIO()
    Image.new('L', (96, 64), 255).save(buffer, 'PNG')
    image = decoded(post(client, buffer.getvalue(), ['初音ミク']))
    expected = model.colour(Image.new('L', (96, 64), 255), ['初音ミク'])
    assert expected.tobytes() == model.prior.canvas(['初音ミク'], 96, 1.5).crop((0, 16, 96, 80)).tobytes()
    np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))
    assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) >= 3  # a figure, not one flat colour


def test_no_tag_and_any_image_mode_are_accepted(client):
    assert decoded(post(client, png((64, 64), 'RGBA'))).size == (64, 64)
    assert decoded(post(client, png((64, 64), 'RGB', 'JPEG'))).size == (64, 64)
    assert decoded(post(client, png((64, 64), 'P', 'WEBP'))).size == (64, 64)


def test_content_is_checked_by_decoding_not_by_name(client):
    assert decoded(post(client, png(), ['響'], filename='notes.txt')).size == (100, 60)
    error_of(post(client, b'not an image at all', filename='drawing.png'), 415)


def test_several_tag_sets_give_one_labelled_sheet(client):
    single = decoded(post(client, png((128, 128)), ['響']))
    sheet = decoded(post(client, png((128, 128)), ['響', '暁', '']))
    label_height = sheet.size[1] - 128
    assert sheet.size[0] == 4 * 128 and label_height > 0
    first_result = np.asarray(sheet)[label_height:, 128:256]
    assert np.array_equal(first_result, np.asarray(single))


def test_tags_in_one_field_are_one_set(client, model):
    together = decoded(post(client, png((128, 128)), ['響,艦これ']))
    assert together.size == (128, 128)
    with_comma_ja = decoded(post(client, png((128, 128)), ['響、艦これ']))
    assert np.array_equal(np.asarray(together), np.asarray(with_comma_ja))


def test_line_and_grey_drawings_from_a_colour_picture(client):
    for kind in ('line', 'grey'):
        assert decoded(post(client, png((80, 80), 'RGB'), ['響'], drawing=kind)).size == (80, 80)
    error_of(post(client, png(), drawing='../etc'), 400)


def colour_picture(size=(96, 96)):
    picture = Image.new('RGB', size, 'white')
    picture.paste((210, 40, 60), (20, 20, 76, 76))
    buffer = io.BytesIO()
    picture.save(buffer, 'PNG')
    return picture, buffer.getvalue()


def test_a_colour_picture_is_read_as_line_art_and_the_header_says_so(client):
    picture, data = colour_picture()
    response = post(client, data, ['響'], output='drawing')
    assert response.headers['X-Drawing-Read'] == 'line'
    np.testing.assert_array_equal(np.asarray(decoded(response)),
                                  np.asarray(server.dataset.make_drawing(picture, 'line')))
    response = post(client, data, ['響'], output='drawing', drawing='asis')
    assert response.headers['X-Drawing-Read'] == 'asis'
    np.testing.assert_array_equal(np.asarray(decoded(response)), np.asarray(picture.convert('L')))
    assert post(client, png(), ['響']).headers['X-Drawing-Read'] == 'asis'  # grey noise: no colour


def test_the_layers_a_paint_program_opens(client, model):
    drawing = Image.open(io.BytesIO(png((100, 60)))).convert('L')
    picture, flat = flatting.compose(model.colour(drawing, ['響']), drawing)
    np.testing.assert_array_equal(np.asarray(decoded(post(client, png((100, 60)), ['響'], output='flat'))),
                                  np.asarray(flat))
    lines = decoded(post(client, png((100, 60)), ['響'], output='lines'))
    assert lines.mode == 'RGBA' and lines.size == (100, 60)
    np.testing.assert_array_equal(np.asarray(lines), np.asarray(flatting.line_layer(drawing)))
    error_of(post(client, png(), ['響'], output='flat', lines='network'), 400)
    error_of(post(client, png(), ['響', '暁'], output='flat'), 400)
    error_of(post(client, png(), ['響'], output='layers'), 400)


def test_a_drawing_coloured_again_costs_no_network_pass(app, client, model, monkeypatch):
    calls = []
    colour = model.colour
    monkeypatch.setattr(model, 'colour',
                        lambda *args, **kwargs: calls.append(args[1]) or colour(*args, **kwargs))
    data = png((90, 70))
    first = decoded(post(client, data, ['暁']))
    decoded(post(client, data, ['暁'], output='flat'))
    again = decoded(post(client, data, ['暁']))
    assert calls == [['暁']]
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    decoded(post(client, data, ['響']))
    assert calls == [['暁'], ['響']]


def test_hints_set_their_regions_and_a_moved_dot_costs_no_network_pass(client, model, monkeypatch):
    drawing = Image.new('L', (96, 96), 255)
    drawing.paste(0, (10, 10, 86, 12))
    drawing.paste(0, (10, 84, 86, 86))
    drawing.paste(0, (10, 10, 12, 86))
    drawing.paste(0, (84, 10, 86, 86))
    drawing.paste(0, (47, 10, 49, 86))  # two boxes side by side
    buffer = io.BytesIO()
    drawing.save(buffer, 'PNG')
    data = buffer.getvalue()
    flat = np.asarray(decoded(post(client, data, ['響'], output='flat', hint='30,50,#12ab34')))
    assert (flat[14:82, 14:45] == (0x12, 0xab, 0x34)).all()
    calls = []
    colour = model.colour
    monkeypatch.setattr(model, 'colour',
                        lambda *args, **kwargs: calls.append(args[1]) or colour(*args, **kwargs))
    moved = np.asarray(decoded(post(client, data, ['響'], output='flat', hint='70,50,#12ab34')))
    assert calls == [] and (moved[14:82, 52:82] == (0x12, 0xab, 0x34)).all()
    # A hints picture, as a paint program saves it, does the same as the field.
    layer = Image.new('RGBA', (96, 96), (0, 0, 0, 0))
    layer.putpixel((70, 50), (0x12, 0xab, 0x34, 255))
    buffer = io.BytesIO()
    layer.save(buffer, 'PNG')
    response = client.post('/api/colorize', content_type='multipart/form-data', data={
        'image': (io.BytesIO(data), 'd.png'), 'tags': '響', 'output': 'flat',
        'hints': (io.BytesIO(buffer.getvalue()), 'hints.png')})
    np.testing.assert_array_equal(np.asarray(decoded(response)), moved)
    # Two colours in one region: split, and said in a header.
    response = post(client, data, ['響'], hint=['20,50,#000000', '40,50,#ffffff'])
    assert 'holds hints of 2 colours' in response.headers['X-Hint-Notes']
    for fields in ({'hint': 'x,1,#000000'}, {'hint': '500,1,#000000'},
                   {'hint': '1,1,#000000', 'lines': 'network'}):
        error_of(post(client, data, ['響'], **fields), 400)


def test_prepare_makes_the_first_dot_cost_no_network_pass(client, model, monkeypatch):
    data = png((80, 72))
    response = post(client, data, ['暁'], output='prepare')
    assert response.status_code == 204 and response.data == b''
    calls = []
    colour = model.colour
    monkeypatch.setattr(model, 'colour',
                        lambda *args, **kwargs: calls.append(args[1]) or colour(*args, **kwargs))
    assert decoded(post(client, data, ['暁'], hint='40,36,#12ab34')).size == (80, 72)
    assert calls == []
    error_of(post(client, data, ['暁'], output='prepare', lines='network'), 400)


# ---- bad input ----

def test_unknown_tags_are_named_not_ignored(client):
    body = error_of(post(client, png(), ['響,no-such-tag', 'another-unknown']), 422)
    assert body['unknown'] == ['no-such-tag', 'another-unknown']
    assert 'no-such-tag' in body['error']


def test_missing_or_empty_image(client):
    assert 'image' in error_of(post(client, None, ['響']), 400)['error']
    error_of(post(client, b''), 400)


def test_truncated_and_unsupported_images(client):
    error_of(post(client, png((200, 200))[:300]), 415)
    for fmt in ('GIF', 'BMP', 'TIFF'):
        error_of(post(client, png((32, 32), 'RGB', fmt)), 415)


def test_upload_size_cap(client):
    error_of(post(client, b'\x89PNG' + b'\0' * (1024 * 1024 + 10)), 413)


def test_pixel_cap_and_decompression_bomb_are_refused_before_decoding(client):
    assert 'pixels' in error_of(post(client, png((700, 700))), 413)['error']
    cap = 600 * 600  # the client fixture's max_pixels
    bomb = error_of(post(client, png_header_only(100000, 100000)), 413)['error']
    assert bomb == 'the image has more than {} pixels; at most {} are accepted'.format(cap, cap)


def test_tags_sent_as_a_file_part_are_refused_not_dropped(client):
    response = post(client, png(), tags_file=(io.BytesIO('響'.encode()), 'tags.txt'))
    assert response.status_code == 200  # a part of another name is ignored, as before
    data = {'image': (io.BytesIO(png()), 'drawing.png'), 'tags': (io.BytesIO('響'.encode()), 'tags.txt')}
    response = client.post('/api/colorize', data=data, content_type='multipart/form-data')
    assert 'form fields named "tags"' in error_of(response, 400)['error']


def test_tag_limits(client):
    error_of(post(client, png(), ['響'] * (server.MAX_TAG_SETS + 1)), 400)
    error_of(post(client, png(), [','.join('t{}'.format(i) for i in range(server.MAX_TAGS_PER_SET + 1))]),
             400)
    error_of(post(client, png(), ['x' * (server.MAX_TAG_CHARS + 1)]), 400)


def test_uploads_are_never_spooled_to_disk(client, monkeypatch):
    # Werkzeug spools file parts over 500 kB through SpooledTemporaryFile; it must not be used.
    import werkzeug.formparser

    def refuse(*args, **kwargs):
        raise AssertionError('an upload was spooled to a temporary file')
    monkeypatch.setattr(werkzeug.formparser, 'SpooledTemporaryFile', refuse)
    monkeypatch.setattr(werkzeug.formparser, 'default_stream_factory', refuse)
    big = png((550, 550), 'RGB')  # random pixels: about 900 kB
    assert len(big) > 600 * 1024
    assert decoded(post(client, big, ['響'])).size == (550, 550)


# ---- the other routes ----

def test_tags_health_and_samples(client, model):
    tags = client.get('/api/tags').get_json()
    assert '響' in tags['tags'] and '暁' in tags['tags']
    # Training tags only: オルタ is a janome word of アルトリア・ペンドラゴン〔オルタ〕, usable
    # (its vector falls back to it) but not a tag anyone put on a picture.
    assert 'アルトリア・ペンドラゴン〔オルタ〕' in tags['tags'] and 'オルタ' not in tags['tags']
    assert not model.unknown_tags(['オルタ'])
    assert ['響', '暁'] in tags['pairs'] or ['暁', '響'] in tags['pairs']
    health = client.get('/healthz').get_json()
    assert health['status'] == 'ok' and health['tags'] is True and health['size'] == 128
    samples = client.get('/api/samples').get_json()['samples']
    assert samples and all(s['url'].startswith('/samples/') for s in samples)
    assert any(s['name'].startswith('hibiki') and '響' in s['tags'] for s in samples)
    assert decoded(client.get(samples[0]['url'])).size[0] > 0
    error_of(client.get('/samples/{}'.format(len(samples))), 404)
    assert client.get('/samples/..%2Fserver.py').status_code == 404
    assert client.get('/static/../server.py').status_code == 404


def test_page_and_its_files_are_local(client):
    page = client.get('/')
    assert page.status_code == 200 and b'/static/app.js' in page.data
    assert "default-src 'self'" in page.headers['Content-Security-Policy']
    for name in ('app.js', 'style.css'):
        text = client.get('/static/' + name).get_data(as_text=True)
        assert 'http://' not in text and 'https://' not in text
    assert b'http' not in page.data.replace(b'http-equiv', b'')


def test_unknown_routes_and_methods_answer_json(client):
    error_of(client.get('/api/nothing'), 404)
    error_of(client.get('/api/colorize'), 405)


# ---- overload: one worker, a bounded waiting line, a timeout ----

class BlockingModel:
    """A stand-in model whose colouring waits for the test to let it finish."""
    size = 64
    vectorizer = None
    tags = []
    settings = {}
    device = None
    refiner = shader = None  # as ColourModel without --refine or --shading

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()

    def unknown_tags(self, tags):
        return []

    def colour(self, drawing, tags, size=None):
        self.started.set()
        self.release.wait(30)
        return drawing.convert('RGB')

    def compose(self, colouring, drawing, tags, hints=None, notes=None, probes=(), unhinted=None):
        return flatting.compose(colouring, drawing, hints, notes, probes)


def test_full_waiting_line_and_timeout_answer_503():
    blocking = BlockingModel()
    app = server.create_app(blocking, max_waiting=0, timeout=0.5)
    first = {}
    thread = threading.Thread(target=lambda: first.setdefault('response', post(app.test_client(), png())))
    thread.start()
    try:
        assert blocking.started.wait(30)
        busy = post(app.test_client(), png())
        error_of(busy, 503)
        assert busy.headers['Retry-After']
        thread.join(30)
        assert 'took longer' in error_of(first['response'], 503)['error']
        # The timed-out job still holds the only slot until the model returns...
        error_of(post(app.test_client(), png()), 503)
    finally:
        blocking.release.set()
        thread.join(30)
    # ...and then the server answers again.
    for _ in range(3000):
        if app.test_client().get('/healthz').get_json()['busy'] == 0:
            break
        time.sleep(0.01)
    assert decoded(post(app.test_client(), png((40, 30)))).size == (40, 30)
    app.extensions['colouriser'].close()


def test_a_model_without_tags_refuses_tags():
    released = BlockingModel()
    released.release.set()
    app = server.create_app(released)
    body = error_of(post(app.test_client(), png(), ['響']), 422)
    assert body['unknown'] == ['響'] and 'without tags' in body['error']
    assert app.test_client().get('/api/tags').get_json()['tags'] is None
    assert decoded(post(app.test_client(), png((20, 20)))).size == (20, 20)
    app.extensions['colouriser'].close()


# ---- command lines ----

def test_server_without_a_model_says_so(tmp_path, capsys):
    assert server.main(['--model', str(tmp_path / 'none'), '--port', '0']) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith('error: ') and 'model.json' in error and '\n' not in error


def test_load_test_refuses_other_hosts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_test.main(['--url', 'http://192.0.2.1:8000/', '-n', '1'])
    assert exit_info.value.code == 2
    assert 'loopback' in capsys.readouterr().err


def test_load_test_small_run_has_no_errors(tiny_model, capsys):
    assert load_test.main(['--model', str(tiny_model), '-n', '40', '-c', '4']) == 0
    out = capsys.readouterr().out
    assert '| 40 | 4 | 40 | 0 |' in out and 'p95 ms' in out


DAMAGED_DATASETS = [
    ('a truncated characters.json', 'characters.json', b'{"characters": [{"tag": ', 'pairs',
     'not a readable character list'),
    ('a list-shaped characters.json', 'characters.json', b'[1, 2]', 'pairs', 'not a readable character list'),
    ('characters that are not objects', 'characters.json', b'{"characters": [1]}', 'pairs',
     'not a readable character list'),
    ('a tag that is a list', 'characters.json', '{"characters": [{"tag": ["響"], "twin": "暁"}]}'.encode(),
     'pairs', None),
    ('a sidecar that is not UTF-8', 'test/color/{sample}.txt', b'\xff\xfe\xe9', 'samples', 'not UTF-8'),
    ('a sidecar that is a folder', 'test/color/{sample}.txt', None, 'samples', 'the sample'),
]


@pytest.mark.parametrize('case, name, content, extra, said', DAMAGED_DATASETS,
                         ids=[row[0] for row in DAMAGED_DATASETS])
def test_a_damaged_dataset_folder_only_costs_the_pages_extras(case, name, content, extra, said, small_data,
                                                               tmp_path, capsys):
    """The page's sample drawings and twin buttons come from the model's dataset folder:
    damaged files there cost those extras, with one warning, never the start-up."""
    import shutil
    import types
    root = tmp_path / 'data'
    shutil.copytree(small_data, root)
    model = types.SimpleNamespace(settings={'dataset': str(root)})
    sample = sorted(p.stem for p in (root / 'test' / 'line').glob('*.png'))[0]
    path = root / name.format(sample=sample)
    if content is None:
        path.unlink()
        path.mkdir()
    else:
        path.write_bytes(content)
    vocabulary = ['響', '暁']
    pairs, samples = server.find_pairs(model, vocabulary), server.find_samples(model)
    err = capsys.readouterr().err
    if extra == 'pairs':
        assert pairs == []
        assert len(samples) == 8  # the samples are untouched
    else:
        assert [s['tags'] for s in samples if s['name'] == sample] == [[]]
        assert all(s['tags'] for s in samples if s['name'] != sample)
        assert pairs  # the twin buttons are untouched
    if said is None:
        assert err == ''
    else:
        assert len(err.splitlines()) == 1 and err.startswith('warning: ') and said in err, err
