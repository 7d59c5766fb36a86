"""Serves a web page that colours line art and switches its tags live, and its JSON/HTTP API.

    python server.py                       # result/demo on the CPU, http://127.0.0.1:8000
    python server.py --model result/demo -g 0 --port 8080
    python server.py --model result/demo --refine result/stage2   # two stages, up to 512 px
    python server.py --model result/demo --shading result/demo-shading   # shaded flats, hints
    python server.py --host 0.0.0.0 --allow-host mybox.local   # reachable as http://mybox.local:8000

The post's own next step, "switch any word over the web to make any image". The page
(static/) sends one request per tag set, so several tag sets appear side by side and each
can be downloaded. The API:

    POST /api/colorize   multipart: ``image`` (PNG, JPEG or WebP; checked by decoding),
                         ``tags`` (one comma-separated tag set; repeat the field for several;
                         none or empty = no tag), optional ``drawing`` (auto | asis |
                         line | grey; auto, the default: line art made from a colour
                         picture, any other as it is), ``lines`` (keep: the drawing's own
                         over flat colours, the default but for grey; network: as the
                         network draws them), ``hint`` (X,Y,#RRGGBB: a colour hint at a
                         pixel of the drawing; repeat the field for several) and/or a
                         ``hints`` file part (a transparent PNG of the drawing's size with
                         dots or strokes), and ``output`` (picture, the default; flat:
                         the flat colour layer; lines: the line layer, transparent;
                         drawing: the drawing the network read; prepare: no picture
                         (204), the colourings, probes and unhinted shading a hint
                         needs made and kept, so that the first dot shows at once).
                         -> image/png at the input's size, with the header X-Drawing-Read
                         (asis | line | grey); several ``tags`` fields -> one sheet (the
                         drawing read + one labelled column per tag set).
                         Errors -> JSON {"error": "..."} with a 4xx status; unknown tags ->
                         422 with {"unknown": [...]}; a full waiting line or a timeout -> 503.
    GET  /api/tags       -> {"tags": [training tags, most frequent first], "pairs": [[tag, twin], ...]}
    GET  /api/samples    -> test drawings of the model's dataset, if it is on this machine
    GET  /healthz        -> {"status": "ok", ...}

Nothing is written to disk: uploads are read into memory (capped by --max-upload-mb) and
the only files served are static/ and the sample drawings listed at start-up.

The app runs on waitress, a production WSGI server: a fixed number of threads
(--max-waiting + 2: one colouring, one per waiting request, one for the page and
/healthz), at most --max-connections open connections (waiting ones cost a socket, not
a thread) and --max-per-client from one address (so that one client holding sockets
open cannot fill the rest), a connection silent for IDLE_TIMEOUT seconds is closed, and
a request must
arrive whole within REQUEST_READ_TIMEOUT seconds of its first byte (a client that sends
one header line every few seconds is dropped). Only requests whose Host header names
this machine (localhost, 127.0.0.1, ::1, the --host address, and --allow-host names)
are answered: a web page elsewhere cannot point its own name at this server (DNS
rebinding).
"""
import argparse
import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import io
import json
import os
import signal
import socket
import sys
import threading
import time
import warnings

from PIL import Image
from flask import Flask, Request, jsonify, request, send_from_directory
import waitress
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask
from werkzeug.exceptions import HTTPException

import compat
import colour_model
import dataset
import flatting
import sheets
import tag_vectorizer

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
IMAGE_FORMATS = ('PNG', 'JPEG', 'WEBP')
MAX_TAG_SETS = 8
MAX_TAGS_PER_SET = 16
MAX_TAG_CHARS = 64
MAX_HINTS = 64
MAX_SAMPLES = 12
SHEET_CELL = 512
# What /api/colorize returns: the coloured picture, its two layers, or the drawing read;
# or nothing (204) once what hints need is ready (the page asks when a pointer comes near).
OUTPUTS = ('picture', 'flat', 'lines', 'drawing', 'prepare')
# The network's colourings kept for the drawings and tag sets asked for last, in pixels:
# a layer asked for after its picture, or the same drawing again, costs no network pass.
CACHE_PIXELS = 64 * 1024 * 1024
# Seconds a connection may stay silent, and a request may take to arrive whole.
IDLE_TIMEOUT = 30
REQUEST_READ_TIMEOUT = 30
MAX_CONNECTIONS = 500
# Connections one client address may hold at once: a browser opens about six. Behind a
# reverse proxy every client has the proxy's address: raise it there, or give 0 (none).
MAX_PER_CLIENT = 16
# Connections the kernel queues before they are accepted: room for a burst of them, so
# that one client's burst does not turn the others' away while it is being accepted.
LISTEN_BACKLOG = 1024
LOOPBACK_NAMES = ('localhost', '127.0.0.1', '::1')


class ApiError(Exception):
    """An error answered as JSON: {"error": message, **extra} with an HTTP status."""

    def __init__(self, status, message, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class InMemoryRequest(Request):
    """Werkzeug spools uploads over 500 kB to a temporary file; keep them in memory
    (their size is bounded by MAX_CONTENT_LENGTH) so the server writes nothing."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


class Upload(io.BytesIO):
    """Upload bytes that name themselves 'upload' in dataset.load_image's messages."""

    def __str__(self):
        return 'upload'

    __repr__ = __str__


def decode_picture(data, max_pixels, field='image', mode='RGBA'):
    """Upload bytes -> a PIL image (RGBA keeps a hints layer's transparency; RGB lays it on
    white). The size in the header is checked before any pixel is decoded, so a
    decompression bomb costs nothing."""
    if not data:
        raise ApiError(400, 'the {} field is empty'.format(field))
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as header:
            width, height = header.size
    except Image.DecompressionBombError:  # Pillow's message quotes twice the cap it checks
        raise ApiError(413, 'the {} has more than {} pixels; at most {} are accepted'.format(
            field, max_pixels, max_pixels)) from None
    except Image.UnidentifiedImageError:
        raise ApiError(415, 'the {} is not a PNG, JPEG or WebP image'.format(field)) from None
    except (OSError, ValueError) as error:
        raise ApiError(415, 'the {} is not a PNG, JPEG or WebP image ({})'.format(field, error)) from None
    if width * height > max_pixels:
        raise ApiError(413, 'the {} is {}x{} pixels; at most {} pixels are accepted'.format(
            field, width, height, max_pixels))
    try:
        return dataset.load_image(Upload(data), mode=mode)
    except dataset.ImageError as error:
        raise ApiError(415, str(error)) from None


def decode_drawing(data, max_pixels, drawing='auto'):
    """Upload bytes -> the 'L' drawing the network reads, and what it was read as (asis,
    line or grey; ``auto`` makes line art of a colour picture, as colorize.py does)."""
    image = decode_picture(data, max_pixels, mode='RGB')
    kind = drawing if drawing != 'auto' else 'line' if dataset.is_colour_picture(image) else 'asis'
    return dataset.make_drawing(image, kind), kind


def parse_tag_sets(fields):
    """The ``tags`` fields -> tag sets (lists); no field gives one empty set (no tag)."""
    if len(fields) > MAX_TAG_SETS:
        raise ApiError(400, 'at most {} tag sets per request, got {}'.format(MAX_TAG_SETS, len(fields)))
    tag_sets = [dataset.parse_tags(field.replace('、', ',')) for field in fields] or [[]]
    for tags in tag_sets:
        if len(tags) > MAX_TAGS_PER_SET:
            raise ApiError(400, 'at most {} tags per tag set, got {}'.format(MAX_TAGS_PER_SET, len(tags)))
        long_tags = [t for t in tags if len(t) > MAX_TAG_CHARS]
        if long_tags:
            raise ApiError(400, 'a tag is at most {} characters long'.format(MAX_TAG_CHARS))
    return tag_sets


def find_samples(model, limit=MAX_SAMPLES):
    """A few test drawings of the model's dataset (one per character), as
    [{"name", "path", "tags"}]; none when the dataset is not on this machine. A tag file
    that cannot be read gives its drawing no tags, with a warning: the samples are a
    convenience of the page, never a reason for it not to start."""
    root = model.settings.get('dataset')
    line_dir = os.path.join(root, 'test', 'line') if root else None
    if not line_dir or not os.path.isdir(line_dir):
        return []
    samples, seen = [], set()
    for path in dataset.find_images(line_dir):
        name = os.path.splitext(os.path.basename(path))[0]
        character = name.rsplit('_', 1)[0]
        if character in seen:
            continue
        seen.add(character)
        sidecar = os.path.join(root, 'test', 'color', name + '.txt')
        tags = []
        if os.path.exists(sidecar):
            try:
                tags = dataset.parse_tags(dataset.read_tag_file(sidecar))
            except dataset.TagFileError as error:
                print('warning: {}: {}; the sample {} has no tags'.format(sidecar, error, name),
                      file=sys.stderr)
        samples.append({'name': name, 'path': path, 'tags': tags})
        if len(samples) == limit:
            break
    return samples


def find_pairs(model, vocabulary):
    """Twin characters (same drawing, different colours) from the dataset's
    characters.json, for the page's one-click comparisons; none, with a warning, when that
    file is not what make_default_data.py writes."""
    root = model.settings.get('dataset')
    path = os.path.join(root, 'characters.json') if root else None
    if not path or not os.path.exists(path):
        return []
    try:
        described = json.loads(dataset.read_tag_file(path))
        characters = described.get('characters', []) if isinstance(described, dict) else None
        if not isinstance(characters, list) or not all(isinstance(c, dict) for c in characters):
            raise ValueError('no list of characters')
    except (dataset.TagFileError, ValueError) as error:  # JSONDecodeError is a ValueError
        print('warning: {} is not a readable character list ({}); no twin buttons'.format(
            path, str(error)[:200]), file=sys.stderr)
        return []
    known = set(vocabulary)
    pairs = []
    for character in characters:
        pair = [character.get('tag'), character.get('twin')]
        if all(isinstance(tag, str) and tag in known for tag in pair) and \
                sorted(pair) not in [sorted(p) for p in pairs]:
            pairs.append(pair)
    return pairs


class Colouriser:
    """Runs every model call on one worker thread behind a bounded waiting line.

    One worker, not a pool or a lock per request: the networks are shared, and
    net.generating() runs batch norm in train mode, which updates the running averages
    in place, so two forward passes at once would race on those arrays; the tag
    vectorizer (its cache, janome's tokenizer) is touched only here too. More workers
    would not add throughput either: on the CPU NumPy's BLAS already spreads one image
    over the cores, and a GPU runs one stream. Waiting requests hold a slot; when all
    slots are taken a request is answered 503 at once, and one that waits longer than
    ``timeout`` seconds is answered 503 (and dropped if it has not started).
    """

    def __init__(self, model, max_waiting=16, timeout=60.0):
        self.model = model
        self.timeout = timeout
        self.capacity = max_waiting + 1
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._cache = collections.OrderedDict()
        # The worker makes the model's device current in its own thread (CuPy's current
        # device is per thread).
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix='colouriser', initializer=self._use_device)

    def _use_device(self):
        use = getattr(self.model.device, 'use', None)
        if use is not None:
            use()

    @property
    def busy(self):
        return self._busy

    def _release(self, _future=None):
        with self._busy_lock:
            self._busy -= 1
        self._slots.release()

    def run(self, prepare, tag_sets, lines='network', output='picture', hints=None):
        """prepare() (the upload's decoding, in the caller's thread once a slot is held)
        -> the drawing; returns it and one PIL image per tag set (the picture, or the
        layer ``output`` names), or raises ApiError. ``lines``: 'keep' lays the drawing's
        own lines over flat colours (flatting.py); ``hints(drawing)`` -> its RGBA hints
        picture or None, for them. The notes of the colouring are in self.notes of the
        returned list."""
        if not self._slots.acquire(blocking=False):
            raise ApiError(503, 'the server is busy ({} requests in progress); try again shortly'.format(
                self.capacity), retry_after=1)
        with self._busy_lock:
            self._busy += 1
        try:
            drawing = prepare()
            hint_picture = hints(drawing) if hints else None
            future = self._worker.submit(self._colour, drawing, tag_sets, lines, output, hint_picture)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        try:
            outcome = future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ApiError(503, 'colouring took longer than {:g} s; try again shortly'.format(
                self.timeout), retry_after=2) from None
        if isinstance(outcome, ApiError):
            raise outcome
        return drawing, outcome

    def _colour(self, drawing, tag_sets, lines, output, hints=None):
        if output == 'drawing':
            return Results([drawing])
        if output == 'lines':
            return Results([flatting.line_layer(drawing)])
        problem = self._tag_problem(tag_sets)
        if problem:
            return problem
        colourings = [self._network_colouring(drawing, tags) for tags in tag_sets]
        if output == 'prepare':
            for tags, colouring in zip(tag_sets, colourings):
                self._probes(drawing, tags, colouring)
                self._unhinted_shading(drawing, tags, colouring)
            return Results([])
        if lines == 'network':
            return Results(colourings)
        notes = []
        composed = [self._compose(drawing, tags, colouring, hints, notes)
                    for tags, colouring in zip(tag_sets, colourings)]
        return Results([flat if output == 'flat' else picture for picture, flat in composed],
                       list(dict.fromkeys(notes)))

    def _tag_problem(self, tag_sets):
        """The ApiError for tag sets this model cannot colour, or None."""
        model = self.model
        if model.vectorizer is None:
            if any(tag_sets):
                return ApiError(422, 'this model was trained without tags (--no-tag); send no tags',
                                unknown=sorted({t for tags in tag_sets for t in tags}))
            return None
        unknown = []
        for tags in tag_sets:
            unknown.extend(t for t in model.unknown_tags(tags) if t not in unknown)
        if unknown:
            return ApiError(422, 'unknown tag {} (not in the model\'s vocabulary, nor any of its '
                            'words)'.format(', '.join(unknown)), unknown=unknown)
        if model.most_tags and any(len(tags) > model.most_tags for tags in tag_sets):
            return ApiError(422, 'this model reads at most {} tags in a set'.format(model.most_tags))
        return None

    def _compose(self, drawing, tags, colouring, hints, notes):
        """model.compose, with what hints need kept like the colourings: the probes, and a
        shading model's picture without hints."""
        if hints is None:
            return self.model.compose(colouring, drawing, tags)
        probes = self._probes(drawing, tags, colouring)
        return self.model.compose(colouring, drawing, tags, hints, notes, probes,
                                  self._unhinted_shading(drawing, tags, colouring))

    def _unhinted_shading(self, drawing, tags, colouring):
        """A shading model's picture without hints (colour_model.ColourModel.compose's
        ``unhinted``), kept like the colourings; None without a shading model."""
        if self.model.shader is None:
            return None
        return self._cached('unhinted shading', drawing, tags,
                            lambda: self.model.unhinted_shading(colouring, drawing, tags))

    def _probes(self, drawing, tags, colouring):
        """The probe colourings hints spread by (flatting.py), kept like the colourings:
        a dot moved on the same drawing and tags costs no network pass."""
        return self._cached('probes', drawing, tags, lambda: self.model.probe_colourings(drawing, colouring))

    def _network_colouring(self, drawing, tags):
        """The model's colouring of drawing with tags, from the cache when this drawing and
        tag set were coloured lately."""
        return self._cached('colouring', drawing, tags, lambda: self.model.colour(drawing, tags))

    def _cached(self, kind, drawing, tags, make):
        """make()'s result for (kind, drawing, tags), kept in the cache, the least recently
        used dropped past CACHE_PIXELS (only the worker thread touches the cache)."""
        key = (kind, hashlib.blake2b(drawing.tobytes(), digest_size=16).digest(), drawing.size, tuple(tags))
        made = self._cache.pop(key, None)
        if made is None:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', tag_vectorizer.UnknownTagWarning)
                made = make()
        self._cache[key] = made
        self._trim_cache()
        return made

    def _trim_cache(self):
        def pixels(entry):
            pictures = entry if isinstance(entry, (list, tuple)) else [entry]
            return sum(picture.size[0] * picture.size[1] for picture in pictures)

        while len(self._cache) > 1 and sum(pixels(entry) for entry in self._cache.values()) > CACHE_PIXELS:
            self._cache.popitem(last=False)

    def close(self):
        self._worker.shutdown(wait=True, cancel_futures=True)


class Results(list):
    """The pictures of one request, and what the colouring said of its hints."""

    def __init__(self, pictures, notes=()):
        super().__init__(pictures)
        self.notes = list(notes)


def read_hints(form, files, max_pixels):
    """The request's ``hint`` fields and ``hints`` file part -> a function of the drawing
    giving its RGBA hints picture (flatting.hints_of), or None without hints."""
    if len(form.getlist('hint')) > MAX_HINTS:
        raise ApiError(400, 'at most {} hints per request'.format(MAX_HINTS))
    try:
        dots = [flatting.parse_hint(text) for text in form.getlist('hint')]
    except flatting.HintError as error:
        raise ApiError(400, str(error)) from None
    upload = files.get('hints')
    data = upload.read() if upload is not None else None
    if not dots and not data:
        return None

    def hints(drawing):
        picture = None
        if data:
            picture = decode_picture(data, max_pixels, 'hints')
        try:
            return flatting.hints_of(drawing.size, dots, picture)
        except flatting.HintError as error:
            raise ApiError(400, str(error)) from None
    return hints


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, 'PNG')
    return buffer.getvalue()


def create_app(model, max_upload_mb=10, max_pixels=4096 * 4096, max_waiting=16, timeout=60.0,
               allowed_hosts=LOOPBACK_NAMES):
    """The Flask app around a loaded colour_model.ColourModel: error handlers, the Host check,
    the page, the API."""
    app = Flask(__name__, static_folder=STATIC_DIR, static_url_path='/static')
    app.request_class = InMemoryRequest
    app.config['MAX_CONTENT_LENGTH'] = int(max_upload_mb * 1024 * 1024)
    app.config['MAX_FORM_PARTS'] = 6 + MAX_TAG_SETS + MAX_HINTS
    app.json.ensure_ascii = False
    colouriser = Colouriser(model, max_waiting=max_waiting, timeout=timeout)
    app.extensions['colouriser'] = colouriser
    add_error_handlers(app, max_upload_mb)
    add_host_check(app, allowed_hosts)
    add_pages(app, model, colouriser)
    add_colour_route(app, colouriser, max_pixels)
    return app


def add_error_handlers(app, max_upload_mb):
    """Every error as JSON {"error": ...}, and the page's security headers."""
    @app.errorhandler(ApiError)
    def api_error(error):
        response = jsonify(error=error.message,
                           **{k: v for k, v in error.extra.items() if k != 'retry_after'})
        response.status_code = error.status
        if 'retry_after' in error.extra:
            response.headers['Retry-After'] = str(error.extra['retry_after'])
        return response

    @app.errorhandler(HTTPException)
    def http_error(error):
        message = {413: 'the request is too large (at most {:g} MB and {} form fields)'.format(
            max_upload_mb, app.config['MAX_FORM_PARTS'])}.get(error.code, error.description)
        response = jsonify(error=message)
        response.status_code = error.code
        return response

    @app.after_request
    def security_headers(response):
        # Everything the page needs is served from here: no CDN, no inline script.
        response.headers['Content-Security-Policy'] = (
            "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
        response.headers['X-Content-Type-Options'] = 'nosniff'
        response.headers['Referrer-Policy'] = 'no-referrer'
        return response


def host_name(header):
    """The name in a Host header: 'LocalHost:8000' -> 'localhost', '[::1]:8000' -> '::1'."""
    header = header.strip().lower()
    if header.startswith('['):
        return header[1:].partition(']')[0]
    if header.count(':') > 1:  # an IPv6 address without brackets (--host ::1)
        return header
    return header.partition(':')[0].rstrip('.')


def add_host_check(app, allowed_hosts):
    """Answers only requests for this machine's names (and the allowed ones): a page on
    another site that points its own name at 127.0.0.1 (DNS rebinding) sends its own
    name as the Host, and gets a 400. (Flask's TRUSTED_HOSTS cannot match ::1.)"""
    allowed = frozenset(host_name(name) for name in allowed_hosts) - {''}

    @app.before_request
    def check_host():
        name = host_name(request.headers.get('Host', ''))
        if name not in allowed:
            raise ApiError(400, 'this server answers only for {} (Host {}); start it with --allow-host NAME '
                           'to add a name'.format(
                               ', '.join(sorted(allowed)),
                               json.dumps(tag_vectorizer.shorten(name), ensure_ascii=False)))


def add_pages(app, model, colouriser):
    """The page, the health check, the tag vocabulary and the sample drawings."""
    vocabulary = model.tags  # the training tags, not the janome words of multi-word ones
    pairs = find_pairs(model, vocabulary)
    samples = find_samples(model)

    @app.get('/')
    def index():
        return send_from_directory(STATIC_DIR, 'index.html')

    @app.get('/healthz')
    def healthz():
        return jsonify(status='ok', size=model.size, refine_size=model.refiner and model.refiner.size,
                       tags=model.vectorizer is not None,
                       vocabulary=len(vocabulary), busy=colouriser.busy, capacity=colouriser.capacity)

    @app.get('/api/tags')
    def tags():
        return jsonify(tags=vocabulary if model.vectorizer is not None else None, pairs=pairs)

    @app.get('/api/samples')
    def sample_list():
        return jsonify(samples=[{'name': s['name'], 'url': '/samples/{}'.format(i), 'tags': s['tags']}
                                for i, s in enumerate(samples)])

    @app.get('/samples/<int:index>')
    def sample(index):
        # Only the drawings listed at start-up, by their index: no request text becomes a path.
        if index >= len(samples):
            raise ApiError(404, 'no sample {}'.format(index))
        path = samples[index]['path']
        return send_from_directory(os.path.dirname(path), os.path.basename(path), max_age=3600)


def add_colour_route(app, colouriser, max_pixels):
    """POST /api/colorize: one PNG for one tag set, a labelled sheet for several."""
    @app.post('/api/colorize')
    def colour_route():
        upload = request.files.get('image')
        if upload is None:
            raise ApiError(400, 'send the drawing as a multipart/form-data file part named "image"')
        drawing_kind = request.form.get('drawing', 'auto')
        if drawing_kind not in ('auto', 'asis') + dataset.DRAWINGS:
            raise ApiError(400, 'drawing must be one of auto, asis, {}'.format(', '.join(dataset.DRAWINGS)))
        lines = request.form.get('lines', 'network' if drawing_kind == 'grey' else 'keep')
        if lines not in ('keep', 'network'):
            raise ApiError(400, 'lines must be keep (the drawing\'s own, over flat colours) or network')
        output = request.form.get('output', 'picture')
        if output not in OUTPUTS:
            raise ApiError(400, 'output must be one of {}'.format(', '.join(OUTPUTS)))
        if output in ('flat', 'lines', 'prepare') and lines != 'keep':
            raise ApiError(400, 'the {} layer comes with lines=keep'.format(output))
        if 'tags' in request.files:
            raise ApiError(400, 'send the tags as form fields named "tags", not as a file part')
        hints = read_hints(request.form, request.files, max_pixels)
        if hints and lines != 'keep':
            raise ApiError(400, 'hints colour the regions of a drawing of lines: they come with lines=keep')
        tag_sets = parse_tag_sets(request.form.getlist('tags'))
        if output == 'flat' and len(tag_sets) > 1:
            raise ApiError(400, 'the flat layer is one tag set\'s: send one "tags" field')
        data = upload.read()
        read = {}

        def prepare():
            drawing, read['kind'] = decode_drawing(data, max_pixels, drawing_kind)
            return drawing

        drawing, results = colouriser.run(prepare, tag_sets, lines, output, hints)
        if output == 'prepare':
            return app.response_class(status=204, headers={'Cache-Control': 'no-store'})
        if len(results) == 1:
            body = png_bytes(results[0])
        else:
            labels = ['drawing read'] + [','.join(tags) or '(no tag)' for tags in tag_sets]
            cell = min(SHEET_CELL, max(drawing.size))
            body = png_bytes(sheets.grid([[drawing] + results], labels, cell=cell))
        headers = {'Cache-Control': 'no-store', 'X-Drawing-Read': read['kind']}
        if getattr(results, 'notes', None):
            headers['X-Hint-Notes'] = ' | '.join(results.notes)
        return app.response_class(body, mimetype='image/png', headers=headers)


class JsonErrorTask(ErrorTask):
    """waitress's own refusals (a malformed request, headers or a body over the caps)
    as JSON {"error": ...}, as the app answers every error."""

    def execute(self):
        error = self.request.error
        body = json.dumps({'error': '{} ({})'.format(error.reason, error.body)}).encode('utf-8')
        self.status = '{} {}'.format(error.code, error.reason)
        self.response_headers.append(('Content-Type', 'application/json'))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Channel(HTTPChannel):
    """waitress's connection, with a deadline on reading each request: it must arrive
    whole (headers and body) within read_timeout seconds of its first byte, or the
    connection is closed. waitress's own channel_timeout only closes connections that
    are silent that long, so a client sending a header line every 20 s would stay."""
    error_task_class = JsonErrorTask

    def __init__(self, server, sock, addr, *args, read_timeout, max_per_client, **kwargs):
        self.read_timeout = read_timeout
        self.request_deadline = None
        super().__init__(server, sock, addr, *args, **kwargs)
        if max_per_client and self.connections_from(addr[0]) > max_per_client:
            self.handle_close()  # one client cannot take the connections the others need

    def connections_from(self, host):
        return sum(1 for channel in list(self.server.active_channels.values()) if channel.addr[0] == host)

    def received(self, data):
        reading = self.request
        result = super().received(data)
        if self.request is not None and self.request is not reading:  # a new request began
            self.request_deadline = time.monotonic() + self.read_timeout
        return result

    def readable(self):
        # waitress's loop asks every connection this at least once a second.
        if self.request is not None and time.monotonic() > self.request_deadline:
            self.will_close = True
        return super().readable()


def serve(app, host, port, max_connections=MAX_CONNECTIONS, idle_timeout=IDLE_TIMEOUT,
          read_timeout=REQUEST_READ_TIMEOUT, max_per_client=MAX_PER_CLIENT):
    """A waitress server for app on host:port, bound but not yet running (call .run()).
    The socket is bound here so that a port in use is an OSError. Threads: one per slot
    of the colouring line (the one colouring and the waiting ones), and one more, so
    that the page and /healthz answer while the line is full."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    listening = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    max_body = app.config['MAX_CONTENT_LENGTH']
    httpd = waitress.create_server(
        app, sockets=[listening], threads=app.extensions['colouriser'].capacity + 1,
        connection_limit=max_connections,
        channel_timeout=idle_timeout, cleanup_interval=1, asyncore_use_poll=True,
        # The app's cap (waitress refuses a body of this size or more, Flask one over it),
        # checked before the body is read...
        max_request_body_size=max_body + 1,
        # ...and uploads and responses stay in memory, as the app keeps them: waitress
        # would spool those over 512 kB and 1 MB to temporary files. (A chunked body
        # is checked after each read, so it may pass the cap by one read.)
        inbuf_overflow=max_body + 65536, outbuf_overflow=2 ** 40, ident='server.py')
    httpd.channel_class = functools.partial(Channel, read_timeout=read_timeout, max_per_client=max_per_client)
    return httpd


def url_of(host, port):
    return 'http://{}:{}/'.format('[{}]'.format(host) if ':' in host else host, port)


@contextlib.contextmanager
def serving_in_background(app, host='127.0.0.1', port=0, **limits):
    """serve(app, ...) running on a thread while the block runs; yields its URL."""
    httpd = serve(app, host, port, **limits)
    thread = threading.Thread(target=httpd.run, name='waitress', daemon=True)
    thread.start()
    try:
        yield url_of(host, httpd.effective_port)
    finally:
        # Closing every socket from the loop's own thread ends httpd.run().
        httpd.trigger.pull_trigger(lambda: waitress.wasyncore.close_all(httpd._map))
        thread.join(10)
        httpd.task_dispatcher.shutdown()


def main(argv=None):
    parser = argparse.ArgumentParser(description='Web page and API to colour line art with tags')
    parser.add_argument('--model', default=colour_model.DEFAULT_MODEL,
                        help='model folder written by training')
    parser.add_argument('--refine', default=None, metavar='DIR',
                        help='a stage-2 model (train_facade_text.py --stage 2) that refines every colouring')
    parser.add_argument('--shading', default=None, metavar='DIR',
                        help='a shading model (train_facade_text.py --stage 2 --shading) that shades the '
                             'flat colours under the kept lines, colour hints included')
    compat.add_device_arguments(parser)
    parser.add_argument('--host', default='127.0.0.1', help='address to listen on')
    parser.add_argument('--allow-host', action='append', default=[], metavar='NAME',
                        help='also answer requests for this host name (the Host header); repeat for several')
    parser.add_argument('--port', type=int, default=8000, help='port to listen on (0: any free port)')
    parser.add_argument('--max-upload-mb', type=float, default=10, help='largest upload in MB')
    parser.add_argument('--max-pixels', type=int, default=4096 * 4096, help='largest image in pixels')
    parser.add_argument('--max-waiting', type=int, default=16,
                        help='requests that may wait for the model; more are answered 503')
    parser.add_argument('--timeout', type=float, default=60, help='seconds a request may wait and run')
    parser.add_argument('--max-connections', type=int, default=MAX_CONNECTIONS,
                        help='open connections at most; more wait to be accepted')
    parser.add_argument('--max-per-client', type=int, default=MAX_PER_CLIENT,
                        help='open connections from one address at most; more are closed at once '
                             '(0: no cap; behind a reverse proxy every client has its address)')
    args = parser.parse_args(argv)
    if args.max_upload_mb <= 0 or args.max_pixels <= 0 or args.max_waiting < 0 or args.timeout <= 0 \
            or args.max_connections <= 0 or args.max_per_client < 0:
        parser.error('--max-upload-mb, --max-pixels, --timeout and --max-connections must be positive, '
                     '--max-waiting and --max-per-client >= 0')
    listening_name = [] if args.host in ('0.0.0.0', '::', '') else [args.host]
    # The header check in decode_drawing comes first; this is Pillow's own backstop.
    Image.MAX_IMAGE_PIXELS = args.max_pixels
    try:
        model = colour_model.load_model(args.model, args.refine, compat.device_of(args), args.shading)
        app = create_app(model, args.max_upload_mb, args.max_pixels, args.max_waiting, args.timeout,
                         LOOPBACK_NAMES + tuple(listening_name + args.allow_host))
        httpd = serve(app, args.host, args.port, max_connections=args.max_connections,
                      max_per_client=args.max_per_client)
    except (colour_model.ModelError, compat.DeviceError) as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    except OSError as error:
        print('error: cannot listen on {}:{}: {}'.format(args.host, args.port, error.strerror or error),
              file=sys.stderr)
        return 1
    print('serving {} on {} (Ctrl+C to stop)'.format(args.model, url_of(args.host, httpd.effective_port)),
          flush=True)
    # SIGTERM stops the server as Ctrl-C does: waitress's run() ends its threads on either.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        httpd.run()
    finally:
        httpd.close()
        app.extensions['colouriser'].close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
