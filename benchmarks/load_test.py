"""Bounded load test of server.py on this machine: N colour requests, C at a time.

    python benchmarks/load_test.py                                # starts the server here with result/demo
    python benchmarks/load_test.py -n 200 -c 8 --model result/demo
    python benchmarks/load_test.py --url http://127.0.0.1:8000/   # a server.py already running
    python benchmarks/load_test.py --url http://127.0.0.1:8000/ --idle 300 --server-pid PID

Each request is a POST /api/colorize of one drawing with one tag set (cycling through the
tag sets); a request counts as ok only when it answers 200 with a PNG of the drawing's
size. Prints the counts and a latency table (p50/p95/p99) and exits 1 on any error. The
drawing and the tag sets default to the server's first sample drawing (GET /api/samples)
and its first pair of twin tags (GET /api/tags). Only loopback addresses are accepted:
this is a check of a server on this machine, not a tool to load anyone else's.

``--idle N`` holds N connections open that send nothing while the requests run, and
reports how many the server still holds at the end; ``--hold N`` opens N connections
from another loopback address (``--hold-from``, 127.0.0.2) that send one byte each and
hold on (one client's Slowloris), then reports how many the server kept and how long
/healthz took, and runs the requests while they are held; ``--server-pid PID`` (a server.py
started separately) reports that process's largest thread count, open files (its
sockets among them) and memory (resident, sampled every 0.1 s, and its peak) during
the run.
"""
import argparse
import concurrent.futures
import contextlib
import io
import ipaddress
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from PIL import Image

# The project's modules live one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import compat  # noqa: E402
import colour_model
import server


class LoadTestError(RuntimeError):
    """The test cannot start; the message is one line."""


def is_loopback(url):
    host = urllib.parse.urlsplit(url).hostname or ''
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def get_json(base, path, timeout):
    with urllib.request.urlopen(urllib.parse.urljoin(base, path), timeout=timeout) as response:
        return json.load(response)


def get_bytes(base, path, timeout):
    with urllib.request.urlopen(urllib.parse.urljoin(base, path), timeout=timeout) as response:
        return response.read()


def multipart(fields, image_bytes):
    """A multipart/form-data body with the image (none if None) and (name, value) text fields."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields:
        parts.append('--{}\r\nContent-Disposition: form-data; name="{}"\r\n\r\n{}\r\n'.format(
            boundary, name, value).encode('utf-8'))
    if image_bytes is not None:
        parts.append('--{}\r\nContent-Disposition: form-data; name="image"; filename="drawing.png"\r\n'
                     'Content-Type: application/octet-stream\r\n\r\n'.format(boundary).encode('ascii'))
        parts.append(image_bytes + b'\r\n')
    parts.append('--{}--\r\n'.format(boundary).encode('ascii'))
    return b''.join(parts), 'multipart/form-data; boundary=' + boundary


def one_request(url, body, content_type, expected_size, timeout):
    """-> (outcome, seconds): 'ok', an HTTP status such as '503', or an error's name."""
    request = urllib.request.Request(url, data=body, method='POST', headers={'Content-Type': content_type})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
            kind = response.headers.get_content_type()
        elapsed = time.perf_counter() - start
        if kind != 'image/png':
            return 'not a PNG', elapsed
        with Image.open(io.BytesIO(data)) as image:
            return ('ok' if image.size == expected_size else 'wrong size'), elapsed
    except urllib.error.HTTPError as error:
        return str(error.code), time.perf_counter() - start
    except (OSError, ValueError) as error:
        return type(error).__name__, time.perf_counter() - start


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float('nan')
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def run(base, requests, concurrency, image_bytes=None, tag_sets=None, timeout=60.0):
    """Sends the requests; returns a summary dict (counts, latencies in seconds)."""
    if image_bytes is None:
        samples = get_json(base, 'api/samples', timeout)['samples']
        if not samples:
            raise LoadTestError('the server has no sample drawings: pass --image')
        image_bytes = get_bytes(base, samples[0]['url'].lstrip('/'), timeout)
    if tag_sets is None:
        vocabulary = get_json(base, 'api/tags', timeout)
        pairs = vocabulary.get('pairs') or []
        tag_sets = list(pairs[0]) if pairs else ['']
    with Image.open(io.BytesIO(image_bytes)) as image:
        expected_size = image.size
    bodies = []
    for tags in tag_sets:
        bodies.append(multipart([('tags', tags)] if tags else [], image_bytes))
    url = urllib.parse.urljoin(base, 'api/colorize')

    def send(i):
        body, content_type = bodies[i % len(bodies)]
        return one_request(url, body, content_type, expected_size, timeout)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(send, range(requests)))
    wall = time.perf_counter() - start
    outcomes = {}
    for outcome, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    latencies = sorted(seconds for outcome, seconds in results if outcome == 'ok')
    return {'requests': requests, 'concurrency': concurrency, 'tag_sets': tag_sets,
            'ok': outcomes.get('ok', 0), 'errors': requests - outcomes.get('ok', 0),
            'outcomes': outcomes, 'wall': wall, 'latencies': latencies, 'image_size': expected_size}


def report(summary):
    latencies = summary['latencies']
    def ms(q):
        return '{:.0f}'.format(1000 * percentile(latencies, q)) if latencies else '-'
    lines = [
        'tag sets: {}   image: {}x{}'.format(
            ' | '.join(t or '(no tag)' for t in summary['tag_sets']), *summary['image_size']),
        '',
        '| requests | at a time | ok | errors | wall s | req/s | p50 ms | p95 ms | p99 ms | max ms |',
        '|---|---|---|---|---|---|---|---|---|---|',
        '| {} | {} | {} | {} | {:.1f} | {:.1f} | {} | {} | {} | {} |'.format(
            summary['requests'], summary['concurrency'], summary['ok'], summary['errors'], summary['wall'],
            summary['requests'] / summary['wall'], ms(50), ms(95), ms(99), ms(100)),
    ]
    if summary['errors']:
        lines.append('')
        lines.append('errors: ' + ', '.join('{} x{}'.format(k, v)
                                            for k, v in sorted(summary['outcomes'].items()) if k != 'ok'))
    return '\n'.join(lines)


@contextlib.contextmanager
def local_server(model_dir, gpu, max_waiting):
    """server.py's app on 127.0.0.1 (a free port) in this process; yields its URL."""
    model = colour_model.ColourModel.load(model_dir, compat.get_device(gpu))
    app = server.create_app(model, max_waiting=max_waiting)
    try:
        with server.serving_in_background(app) as url:
            yield url
    finally:
        app.extensions['colouriser'].close()


@contextlib.contextmanager
def idle_connections(base, count):
    """count connections to the server that send nothing; yields a function that says
    how many of them the server still holds open."""
    address = (urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port)
    sockets = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection(address, timeout=10))

        yield lambda: sum(held_open(sock) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def one_byte_connections(base, count, source='127.0.0.2'):
    """count connections to the server from the loopback address ``source`` that each send
    one byte and then nothing (the slow client of a Slowloris attack, from one address);
    the sockets, open on this side (the server may have closed some: held_open)."""
    address = (urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port)
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind((source, 0))
            sock.settimeout(5)
            try:
                sock.connect(address)
                sock.sendall(b'G')
            except ConnectionError:  # the server closed it at once: its cap per client
                pass
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def held_open(sock):
    """Whether the server still holds this connection (b'' to read: it closed it)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b''
    except BlockingIOError:  # nothing to read yet: still open
        return True
    except OSError:
        return False


@contextlib.contextmanager
def slow_client(base, count, source):
    """one_byte_connections held while the block runs; yields (connections the server kept,
    seconds /healthz took to answer from this process's address once they were opened)."""
    sockets = one_byte_connections(base, count, source)
    try:
        start = time.perf_counter()
        get_json(base, 'healthz', timeout=30)
        yield sum(held_open(sock) for sock in sockets), time.perf_counter() - start
    finally:
        for sock in sockets:
            sock.close()


class ProcessSampler(threading.Thread):
    """Samples a process's threads, open files (its sockets among them) and resident
    memory every 0.1 s (Linux /proc), keeping the largest."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.threads, self.files, self.rss_kb, self.peak_kb = pid, 0, 0, 0, 0
        self.done = threading.Event()

    def status(self):
        with open('/proc/{}/status'.format(self.pid)) as f:
            return dict(line.split(':', 1) for line in f if ':' in line)

    def run(self):
        while not self.done.wait(0.1):
            try:
                fields = self.status()
            except OSError:
                return
            self.threads = max(self.threads, int(fields['Threads']))
            self.files = max(self.files, len(os.listdir('/proc/{}/fd'.format(self.pid))))
            self.rss_kb = max(self.rss_kb, int(fields['VmRSS'].split()[0]))
            self.peak_kb = int(fields['VmHWM'].split()[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description='Bounded load test of server.py on this machine')
    parser.add_argument('--url', default=None,
                        help='a running server (loopback only); default: start one here')
    parser.add_argument('--model', default=os.path.join('result', 'demo'),
                        help='model folder (without --url)')
    parser.add_argument('--gpu', '-g', type=int, default=-1, help='GPU ID (without --url; negative: CPU)')
    parser.add_argument('--requests', '-n', type=int, default=200, help='number of requests')
    parser.add_argument('--concurrency', '-c', type=int, default=8, help='requests in flight at a time')
    parser.add_argument('--image', default=None, help='drawing to send (default: the server\'s first sample)')
    parser.add_argument('--tags', action='append', default=None,
                        help='a comma-separated tag set; repeat to cycle (default: the first twin pair)')
    parser.add_argument('--timeout', type=float, default=60, help='seconds one request may take')
    parser.add_argument('--idle', type=int, default=0, help='connections held open, silent, during the run')
    parser.add_argument('--hold', type=int, default=0,
                        help='one-byte connections held from --hold-from during the run (one slow client)')
    parser.add_argument('--hold-from', default='127.0.0.2', help='the loopback address --hold connects from')
    parser.add_argument('--server-pid', type=int, default=None,
                        help='process id of the server (with --url): report its threads and memory')
    args = parser.parse_args(argv)
    if (not 1 <= args.requests <= 100000 or not 1 <= args.concurrency <= 64 or not 0 <= args.idle <= 1000
            or not 0 <= args.hold <= 1000):
        parser.error('--requests must be 1..100000, --concurrency 1..64, --idle and --hold 0..1000')
    if not is_loopback('http://{}/'.format(args.hold_from)):
        parser.error('--hold-from must be a loopback address (127.0.0.0/8)')
    if args.url and not is_loopback(args.url):
        parser.error('--url must be a loopback address (127.0.0.1, localhost or [::1])')
    image_bytes = None
    if args.image:
        try:
            with open(args.image, 'rb') as f:
                image_bytes = f.read()
        except OSError as error:
            print('error: {}'.format(error), file=sys.stderr)
            return 1
    sampler = ProcessSampler(args.server_pid) if args.server_pid else None
    try:
        with contextlib.ExitStack() as stack:
            base = args.url or stack.enter_context(local_server(args.model, args.gpu, args.concurrency))
            base = base if base.endswith('/') else base + '/'
            still_open = stack.enter_context(idle_connections(base, args.idle))
            held = stack.enter_context(slow_client(base, args.hold, args.hold_from)) if args.hold else None
            if sampler:
                sampler.start()
            summary = run(base, args.requests, args.concurrency, image_bytes, args.tags, args.timeout)
            summary['idle'] = (args.idle, still_open())
            if sampler:
                sampler.done.set()
                sampler.join()
    except LoadTestError as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    except (colour_model.ModelError, compat.DeviceError) as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print('error: cannot reach the server: {}'.format(error), file=sys.stderr)
        return 1
    print(report(summary))
    if args.idle:
        print('idle connections: {} opened, {} still held open by the server after the run'.format(
            *summary['idle']))
    if held:
        print('one slow client: {} one-byte connections from {}, {} kept by the server; /healthz answered '
              'in {:.3f} s once they were open, and the requests above ran while they were held'.format(
                  args.hold, args.hold_from, *held))
    if sampler:
        print('server process {}: at most {} threads, {} open files, {:.0f} MB resident during the run '
              '(peak {:.0f} MB)'.format(args.server_pid, sampler.threads, sampler.files,
                                        sampler.rss_kb / 1024, sampler.peak_kb / 1024))
    return 1 if summary['errors'] else 0


if __name__ == '__main__':
    sys.exit(main())
