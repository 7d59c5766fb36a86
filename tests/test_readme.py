"""The README's quick-start commands, run as the README gives them against a tiny model, so
that the README cannot drift from the code: the colouring commands of "Colour a drawing"
(one tag, two tags, a blank canvas, and every other one there) and the web page's health
check of "The web page". Only the drawing, the model folder, the output folder and the
port are replaced; the tags are the README's. A command the README no longer has fails
with a message naming it. Also: every relative link of README.md and docs/*.md resolves."""
import json
import os
import shutil
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

import colorize
from conftest import stop_process

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / 'README.md'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
IMAGE_NAME = re.compile(r'[^\s,;:()`]+\.(?:png|jpe?g|webp)\b', re.IGNORECASE)
# The device options a README command may give: left out, the tests run on the CPU.
DEVICE_OPTIONS = ('-g', '--gpu', '--device')


def section(title):
    """The text of README.md's '## title' section, up to the next '## ' heading."""
    lines = README.read_text(encoding='utf-8').splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == '## ' + title]
    if not starts:
        pytest.fail(f'README.md has no "## {title}" section')
    end = next((i for i in range(starts[0] + 1, len(lines)) if lines[i].startswith('## ')), len(lines))
    return lines[starts[0] + 1:end]


def code_lines(lines):
    """The lines of the indented (4 spaces) and fenced code blocks among lines."""
    code, fenced = [], False
    for line in lines:
        if line.lstrip().startswith('```'):
            fenced = not fenced
        elif fenced or line.startswith(('    ', '\t')):
            code.append(line.strip())
    return code


def commands(title, script):
    """(argv after the script, its comment, the whole line) of each command line of the
    section that runs `python SCRIPT` (or .venv/bin/python SCRIPT)."""
    found = []
    for line in code_lines(section(title)):
        parts = re.split(r'(?:^|\s)#(?=\s|$)', line, maxsplit=1)
        command, comment = parts[0], (parts[1] if len(parts) > 1 else '')
        words = shlex.split(command)
        if len(words) >= 2 and os.path.basename(words[0]) in ('python', 'python3') and words[1] == script:
            found.append((words[2:], comment.strip(), line))
    return found


def option_values(argv, *names):
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word in names]


def find_colour_command(kind, wanted):
    """The first colorize.py line of "Colour a drawing" for which wanted(argv) holds."""
    lines = commands('Colour a drawing', 'colorize.py')
    for argv, comment, line in lines:
        if wanted(argv):
            return argv, comment, line
    pytest.fail('README.md, "Colour a drawing": no `python colorize.py` command {} (found: {})'.format(
        kind, '; '.join(line for _, _, line in lines) or 'no `python colorize.py` line at all'))


def mapped(argv, drawing, model, out_dir):
    """argv with the drawing, the model and the output moved to this test's files; the
    device options dropped (CPU). Also the output path the command then writes."""
    result, out, i = [], None, 0
    while i < len(argv):
        word = argv[i]
        if word in DEVICE_OPTIONS:
            i += 2
            continue
        if word in ('-i', '--input'):
            result += [word, str(drawing)]
        elif word == '--model':
            result += [word, str(model)]
        elif word in ('-o', '--out'):
            out = out_dir / os.path.basename(argv[i + 1].rstrip('/'))
            result += [word, str(out)]
        else:
            result.append(word)
            i += 1
            continue
        i += 2
    if '--model' not in result:
        result += ['--model', str(model)]
    if out is None:
        out = out_dir / 'colorized.png'   # colorize.py's default, named in the README's flag table
        result += ['-o', str(out)]
    return result, out


def expected_outputs(out, tag_sets):
    """What colorize.py writes for these -t values: out for one set; out_1_TAG, out_2_TAG
    ... and out_sheet for several."""
    if len(tag_sets) <= 1:
        return [out], None
    stem, ext = os.path.splitext(str(out))
    names = [Path('{}_{}_{}{}'.format(stem, i + 1, '+'.join(t.strip() for t in re.split('[,、]', tags)), ext))
             for i, tags in enumerate(tag_sets)]
    return names, Path(f'{stem}_sheet{ext}')


def assert_png(path, size=None, line=''):
    assert path.is_file(), f'README command `{line}` did not write {path.name}'
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f'{path.name} is not a PNG'
    with Image.open(path) as image:
        if size is not None:
            assert image.size == size, f'{path.name} is {image.size}, not {size}'
        return image.size


@pytest.fixture(scope='module')
def drawing(small_data):
    """A real test drawing of the small default data (one of the twins)."""
    path = Path(small_data) / 'test' / 'line' / 'hibiki_0000.png'
    assert path.is_file(), sorted(os.listdir(path.parent))
    return path


def run_colour_command(argv, comment, line, drawing, model, tmp_path):
    """Runs one README colouring line through colorize.main and checks what it writes."""
    argv, out = mapped(argv, drawing, model, tmp_path)
    code = colorize.main(argv)
    assert code == 0, f'README command `{line}` exited with {code} (run as colorize.main({argv}))'
    blank = option_values(argv, '--blank')
    if blank:
        size = (int(blank[0]), int(blank[0]))
    else:
        with Image.open(drawing) as image:
            size = image.size
    pictures, sheet = expected_outputs(out, option_values(argv, '-t', '--tag'))
    for path in pictures:
        assert_png(path, size, line)
    if sheet is not None:
        width, height = assert_png(sheet, None, line)
        assert width > size[0] and height >= size[1], f'the sheet {sheet.name} is only {width}x{height}'
    # Each file the README's comment says the command writes is there.
    for name in IMAGE_NAME.findall(comment):
        assert_png(tmp_path / name, None if name.endswith('_sheet.png') else size, line)
    return pictures, sheet


def test_readme_colour_one_tag(tiny_model, drawing, tmp_path):
    found = find_colour_command(
        'with -i and one tag (e.g. `-i line.png -t 初音ミク`)',
        lambda argv: ('-i' in argv or '--input' in argv)
        and len(option_values(argv, '-t', '--tag')) == 1 and ',' not in option_values(argv, '-t', '--tag')[0])
    pictures, sheet = run_colour_command(*found, drawing, tiny_model, tmp_path)
    assert sheet is None and len(pictures) == 1


def test_readme_colour_two_tags(tiny_model, drawing, tmp_path):
    found = find_colour_command(
        'with -i and two tags, `-t 響 -t 暁`',
        lambda argv: (('-i' in argv or '--input' in argv)
                      and option_values(argv, '-t', '--tag')[:2] == ['響', '暁']))
    pictures, sheet = run_colour_command(*found, drawing, tiny_model, tmp_path)
    assert len(pictures) == 2 and '_1_' in pictures[0].name and '_2_' in pictures[1].name
    assert sheet is not None and sheet.name.endswith('_sheet.png')
    # The README's comment names the three files (run_colour_command found them written).
    names = IMAGE_NAME.findall(found[1])
    for part in ('_1_', '_2_', '_sheet'):
        assert any(part in name for name in names), \
            f'README command `{found[2]}`: its comment does not name the {part} file it writes'


def test_readme_colour_blank(tiny_model, drawing, tmp_path):
    found = find_colour_command('with --blank SIZE (a canvas coloured from the tags alone)',
                                lambda argv: '--blank' in argv)
    run_colour_command(*found, drawing, tiny_model, tmp_path)


def test_readme_every_colour_command(tiny_model, drawing, tmp_path):
    """Every colorize.py line of "Colour a drawing" runs (a stage-2 model is not trained
    here, so a --refine line would be skipped: the README keeps those in docs/hires.md)."""
    lines = commands('Colour a drawing', 'colorize.py')
    assert lines, 'README.md, "Colour a drawing": no `python colorize.py` command'
    for n, (argv, comment, line) in enumerate(lines):
        if '--refine' in argv:
            continue
        out_dir = tmp_path / str(n)
        out_dir.mkdir()
        if any(value.endswith('/') for value in option_values(argv, '-i', '--input')):
            run_folder_command(argv, line, drawing, tiny_model, out_dir)
        else:
            run_colour_command(argv, comment, line, drawing, tiny_model, out_dir)


def run_folder_command(argv, line, drawing, model, tmp_path):
    """A README line that colours a folder (-i DIR/ -o OUTDIR/): run on a folder holding
    the test drawing and its sidecar tags, it writes the drawing's picture in OUTDIR."""
    folder = tmp_path / 'drawings'
    folder.mkdir()
    shutil.copy(drawing, folder / drawing.name)
    shutil.copy(drawing.parent.parent / 'color' / (drawing.stem + '.txt'), folder / (drawing.stem + '.txt'))
    argv, out = mapped(argv, folder, model, tmp_path)
    code = colorize.main(argv)
    assert code == 0, f'README command `{line}` exited with {code} (run as colorize.main({argv}))'
    with Image.open(drawing) as image:
        assert_png(out / (drawing.stem + '.png'), image.size, line)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_readme_health_check(tiny_model, tmp_path):
    lines = section('The web page')
    servers = commands('The web page', 'server.py')
    if not servers:
        pytest.fail('README.md, "The web page": no `python server.py` '
                    '(or .venv/bin/python server.py) command')
    urls = [u for line in code_lines(lines) for u in re.findall(r'https?://[^\s`]+/healthz\b', line)]
    if not urls:
        pytest.fail('README.md, "The web page": no health check command (`curl http://.../healthz`)')
    path = urllib.parse.urlsplit(urls[0]).path
    port = free_port()
    argv, i = [], 0
    readme_argv = servers[0][0]
    # The README's server.py options, with this test's model and port, on the CPU.
    while i < len(readme_argv):
        word = readme_argv[i]
        if word in DEVICE_OPTIONS + ('--model', '--port', '--refine'):
            i += 2
            continue
        argv.append(word)
        i += 1
    argv = [sys.executable, 'server.py'] + argv + ['--model', str(tiny_model), '--port', str(port)]
    url = f'http://127.0.0.1:{port}{path}'
    status, content_type, body = health_answer(argv, url, tmp_path / 'server.log')
    assert status == 200
    assert content_type.startswith('application/json'), content_type
    health = json.loads(body)
    assert health['status'] == 'ok'
    assert health['size'] == 128 and health['tags'] is True, health


def health_answer(argv, url, log_path, seconds=60):
    """Starts the server (argv), polls url until it answers, at most seconds, and stops
    the server: (status, content type, body), or the test fails with the server's output."""
    with open(log_path, 'wb') as log:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, OMP_NUM_THREADS='1'))
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        return response.status, response.headers.get('Content-Type', ''), response.read()
                except urllib.error.HTTPError as error:   # it answered, but not 200
                    return error.code, error.headers.get('Content-Type', ''), error.read()
                except (TimeoutError, urllib.error.URLError, ConnectionError):
                    time.sleep(0.5)
        finally:
            stop_process(process, 20)
    pytest.fail('the README\'s health check {} did not answer within {} s of `{}` (exit {}):\n{}'.format(
        url, seconds, ' '.join(argv[1:]), process.returncode, log_path.read_text(errors='replace')))


def github_anchor(heading):
    """The anchor GitHub gives a heading: lower case, punctuation out, spaces to hyphens."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip().lower())
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(path):
    seen, result, fenced = {}, set(), False
    for line in path.read_text(encoding='utf-8').splitlines():
        if line.lstrip().startswith('```'):
            fenced = not fenced
        match = re.match(r'(#{1,6}) (.*)$', line)
        if match and not fenced:
            anchor = github_anchor(match.group(2))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            result.add(anchor if count == 0 else f'{anchor}-{count}')
    return result


def test_documentation_links_resolve():
    """Every relative link (pictures too) of README.md, docs/*.md and benchmarks/BENCHMARKS.md
    names a file that exists and, after a #, a heading of that file."""
    pages = [README, ROOT / 'benchmarks' / 'BENCHMARKS.md'] + sorted((ROOT / 'docs').glob('*.md'))
    broken = []
    for page in pages:
        text = page.read_text(encoding='utf-8')
        for target in re.findall(r'\]\(([^)\s]+)\)', text):
            if re.match(r'[a-z]+:', target):
                continue
            name, _, anchor = target.partition('#')
            linked = (page.parent / name).resolve() if name else page
            if not linked.exists():
                broken.append(f'{page.relative_to(ROOT)}: {target} (no such file)')
            elif anchor and linked.suffix == '.md' and anchor not in anchors(linked):
                broken.append(f'{page.relative_to(ROOT)}: {target} (no such heading)')
    assert not broken, '\n'.join(broken)
