"""End to end: server.py started as a command, its page driven by headless Chromium.

Needs Debian's chromium and chromium-driver and the selenium package; skips without
them. Run as a script it makes the README's screenshot with a real model:

    python tests/test_browser.py --model result/demo --out docs/server.png
"""
import argparse
import contextlib
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from conftest import stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM_PATHS = ('/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome')
DRIVER_PATHS = ('/usr/bin/chromedriver', '/usr/lib/chromium/chromedriver')
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--disable-dev-shm-usage', '--window-size=1400,900')
START_TIMEOUT = 120
RESULT_TIMEOUT = 60


def find_browser():
    """(chromium, chromedriver) paths, or the reason the browser test cannot run."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, 'selenium is not installed (pip install selenium)'
    chromium = next((p for p in CHROMIUM_PATHS if os.path.exists(p)), None)
    driver = next((p for p in DRIVER_PATHS if os.path.exists(p)), shutil.which('chromedriver'))
    if not chromium or not driver:
        return None, 'no chromium / chromedriver (apt-get install -y chromium chromium-driver)'
    return (chromium, driver), None


@contextlib.contextmanager
def running_server(model_dir):
    """Starts `python server.py --model DIR --port 0` and yields its URL."""
    command = [sys.executable, os.path.join(ROOT, 'server.py'), '--model', str(model_dir),
               '--host', '127.0.0.1', '--port', '0']
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, encoding='utf-8')
    lines = queue.Queue()
    log = []

    def read_output():
        for line in process.stdout:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read_output, daemon=True).start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        url = None
        while url is None:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError('server.py exited: ' + ''.join(log)[-2000:])
            found = re.search(r'(http://127\.0\.0\.1:\d+/)', line)
            url = found.group(1) if found else None
        yield url
    finally:
        stop_process(process, 10)


@contextlib.contextmanager
def chromium(paths, width=1400, height=900, downloads=None):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    profile = tempfile.mkdtemp(prefix='chromium-profile-')
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    if downloads:
        options.add_experimental_option('prefs', {'download.default_directory': str(downloads),
                                                  'download.prompt_for_download': False})
    options.add_argument('--user-data-dir=' + profile)
    options.add_argument('--window-size={},{}'.format(width, height))
    driver = webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, condition, timeout=RESULT_TIMEOUT, what='the page'):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        lambda d: condition(d), message='timed out waiting for ' + what)


def open_page(driver, url):
    driver.get(url)
    # The vocabulary and the first tag set are in place once the model pill says so.
    wait_for(driver, lambda d: 'px' in d.find_element('id', 'model-info').text
             and d.find_elements('css selector', '.card'), what='the page to load')


def cards(driver):
    return driver.find_elements('css selector', '.card')


def type_tags(driver, card_index, tags):
    from selenium.webdriver.common.keys import Keys
    box = cards(driver)[card_index].find_element('css selector', '.tag-input')
    for tag in tags:
        box.send_keys(tag)
        box.send_keys(Keys.ENTER)


def wait_for_results(driver, count):
    """Waits until the first `count` cards are done or failed; returns their states."""
    def settled(d):
        states = [c.get_attribute('data-state') for c in cards(d)[:count]]
        return states if len(states) == count and all(s in ('done', 'error') for s in states) else None
    return wait_for(driver, settled, what='the coloured results')


RESULT_PIXELS_JS = """
const image = arguments[0].querySelector('.result-image');
const canvas = document.createElement('canvas');
canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
const context = canvas.getContext('2d');
context.drawImage(image, 0, 0);
const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
let sum = 0, sumSq = 0, n = 0;
const values = new Set();
for (let i = 0; i < data.length; i += 4) {
  const grey = (data[i] + data[i + 1] + data[i + 2]) / 3;
  sum += grey; sumSq += grey * grey; n += 1;
  if (values.size < 256) values.add(data[i] * 65536 + data[i + 1] * 256 + data[i + 2]);
}
const mean = sum / n;
return {width: canvas.width, height: canvas.height, mean: mean,
        std: Math.sqrt(Math.max(0, sumSq / n - mean * mean)), colours: values.size};
"""


def result_pixels(driver, card_index):
    """Size and pixel statistics of a card's result, read from the decoded image."""
    return driver.execute_script(RESULT_PIXELS_JS, cards(driver)[card_index])


def test_page_colours_an_uploaded_drawing(tiny_model, small_data, tmp_path):
    paths, reason = find_browser()
    if paths is None:
        pytest.skip(reason)
    drawing = os.path.join(str(small_data), 'test', 'line', 'hibiki_0000.png')
    with running_server(tiny_model) as url, chromium(paths) as driver:
        open_page(driver, url)
        vocabulary = driver.execute_script(
            "return [...document.querySelectorAll('#vocabulary option')].map(o => o.value)")
        assert '響' in vocabulary and '暁' in vocabulary
        driver.find_element('id', 'file').send_keys(drawing)
        type_tags(driver, 0, ['響'])
        assert wait_for_results(driver, 1) == ['done'], cards(driver)[0].text
        chips = [c.text.rstrip('×').strip() for c in cards(driver)[0].find_elements('css selector', '.chip')]
        assert chips == ['響']
        pixels = result_pixels(driver, 0)
        assert (pixels['width'], pixels['height']) == (128, 128)
        assert pixels['std'] > 1 and pixels['colours'] > 16, pixels  # not a blank picture

        # A second tag set side by side, and an unknown tag named, not ignored.
        driver.find_element('id', 'add-set').click()
        type_tags(driver, 1, ['暁'])
        driver.find_element('id', 'add-set').click()
        type_tags(driver, 2, ['no-such-tag'])
        assert wait_for_results(driver, 3) == ['done', 'done', 'error']
        error = cards(driver)[2].find_element('css selector', '.error').text
        assert 'no-such-tag' in error
        assert cards(driver)[2].find_elements('css selector', '.chip.unknown')
        assert result_pixels(driver, 1)['std'] > 1
        download = cards(driver)[1].find_element('css selector', '.download')
        assert download.get_attribute('href').startswith('blob:')
        assert download.get_attribute('download') == 'hibiki_0000_暁.png'
        # No script error, no blocked (non-local) resource; the 422 is the unknown tag's answer.
        severe = [entry['message'] for entry in driver.get_log('browser')
                  if entry['level'] == 'SEVERE' and 'status of 422' not in entry['message']]
        assert severe == []
        driver.save_screenshot(str(tmp_path / 'server_page.png'))
    assert (tmp_path / 'server_page.png').stat().st_size > 0


def test_blank_paper_draws_each_tag_sets_figure(tiny_model):
    paths, reason = find_browser()
    if paths is None:
        pytest.skip(reason)
    with running_server(tiny_model) as url, chromium(paths) as driver:
        open_page(driver, url)
        driver.find_element('id', 'blank-paper').click()
        type_tags(driver, 0, ['初音ミク'])
        assert wait_for_results(driver, 1) == ['done'], cards(driver)[0].text
        pixels = result_pixels(driver, 0)
        # The figure prior's canvas at the paper's side, in a few palette colours (a flat
        # fill would give one).
        assert (pixels['width'], pixels['height']) == (256, 256)
        assert pixels['colours'] >= 3 and pixels['std'] > 10, pixels
        assert not driver.find_element('id', 'hint-bar').is_displayed()  # no line to put a dot in


SHOWN_WHOLE_JS = """
const fits = (inner, outer) => {
  const a = inner.getBoundingClientRect(), b = outer.getBoundingClientRect();
  return a.width > 0 && a.top >= b.top - 1 && a.bottom <= b.bottom + 1
    && a.left >= b.left - 1 && a.right <= b.right + 1;
};
const preview = document.getElementById('drawing-preview');
const canvas = document.createElement('canvas');
canvas.width = preview.naturalWidth; canvas.height = preview.naturalHeight;
canvas.getContext('2d').drawImage(preview, 0, 0);
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let coloured = 0;
for (let i = 0; i < data.length; i += 4) {
  if (data[i] !== data[i + 1] || data[i + 1] !== data[i + 2]) coloured += 1;
}
const note = document.getElementById('drawing-read');
const result = document.querySelector('.card .result-image');
return {preview: [preview.naturalWidth, preview.naturalHeight], coloured: coloured,
        previewFits: fits(preview, document.getElementById('dropzone')),
        resultFits: fits(result, result.parentElement),
        note: note.hidden ? '' : note.textContent};
"""


def test_a_colour_portrait_is_shown_whole_as_the_line_art_read_and_its_layers_download(tiny_model, tmp_path):
    paths, reason = find_browser()
    if paths is None:
        pytest.skip(reason)
    from PIL import Image
    portrait = Image.new('RGB', (90, 150), 'white')
    portrait.paste((200, 30, 30), (20, 40, 70, 120))
    portrait.save(tmp_path / 'portrait.png')
    downloads = tmp_path / 'downloads'
    downloads.mkdir()
    with running_server(tiny_model) as url, chromium(paths, downloads=downloads) as driver:
        open_page(driver, url)
        driver.find_element('id', 'file').send_keys(str(tmp_path / 'portrait.png'))
        type_tags(driver, 0, ['響'])
        assert wait_for_results(driver, 1) == ['done'], cards(driver)[0].text
        def line_art_shown(d):
            shown = d.execute_script(SHOWN_WHOLE_JS)
            return shown if shown['note'] else None

        shown = wait_for(driver, line_art_shown, what='the line art read to be shown')
        # The preview is the line art the server made (grey pixels only), 90x150, shown
        # whole in its square box, and so is the result in its card.
        assert shown['preview'] == [90, 150] and shown['coloured'] == 0, shown
        assert shown['previewFits'] and shown['resultFits'], shown
        assert 'line art made from your colour picture' in shown['note']
        for layer in ('flat', 'lines'):
            button = cards(driver)[0].find_element('css selector', '.layer[data-layer="{}"]'.format(layer))
            assert button.is_enabled()
            button.click()
        names = {'portrait_響_flat.png', 'portrait_lines.png'}
        wait_for(driver, lambda d: names <= {p.name for p in downloads.iterdir()},
                 what='the layers to download')
    flat, lines = Image.open(downloads / 'portrait_響_flat.png'), Image.open(downloads / 'portrait_lines.png')
    assert flat.size == lines.size == (90, 150) and flat.mode == 'RGB' and lines.mode == 'RGBA'


PIXEL_JS = """
const image = arguments[0].querySelector('.result-image');
const canvas = document.createElement('canvas');
canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
canvas.getContext('2d').drawImage(image, 0, 0);
return Array.from(canvas.getContext('2d').getImageData(arguments[1], arguments[2], 1, 1).data.slice(0, 3));
"""
WHERE_JS = """
const {box, scale, left, top} = pictureBox();
return [box.left + left + (arguments[0] + 0.5) * scale, box.top + top + (arguments[1] + 0.5) * scale];
"""


def test_a_dot_on_the_drawing_recolours_its_region_and_stays_when_tags_change(tiny_model, small_data):
    paths, reason = find_browser()
    if paths is None:
        pytest.skip(reason)
    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    import flatting
    path = os.path.join(str(small_data), 'test', 'line', 'hibiki_0000.png')
    labels, _ = flatting.regions(flatting.line_mask(Image.open(path).convert('L')))
    largest = np.bincount(labels[labels > 0]).argmax()
    inside = np.argwhere(labels == largest)
    y, x = (int(v) for v in inside[len(inside) // 2])
    with running_server(tiny_model) as url, chromium(paths) as driver:
        open_page(driver, url)
        driver.find_element('id', 'file').send_keys(path)
        type_tags(driver, 0, ['響'])
        assert wait_for_results(driver, 1) == ['done']
        driver.execute_script("document.getElementById('hint-colour').value = '#12ab34'")
        where = driver.execute_script(WHERE_JS, x, y)
        click = ActionBuilder(driver)
        click.pointer_action.move_to_location(int(where[0]), int(where[1])).click()
        click.perform()
        assert len(driver.find_elements('css selector', '.dot')) == 1
        wait_for(driver, lambda d: d.execute_script(PIXEL_JS, cards(d)[0], x, y) == [0x12, 0xab, 0x34],
                 what='the dot\'s colour in the result')
        assert driver.find_element('id', 'file').get_attribute('value').endswith('hibiki_0000.png')
        # Switching tags keeps the dot, and its region keeps its colour.
        chip = cards(driver)[0].find_element('css selector', '.chip button')
        chip.click()
        type_tags(driver, 0, ['暁'])
        wait_for(driver, lambda d: [c.text.rstrip('×').strip() for c in
                                    cards(d)[0].find_elements('css selector', '.chip')] == ['暁'])
        assert wait_for_results(driver, 1) == ['done']
        assert driver.execute_script(PIXEL_JS, cards(driver)[0], x, y) == [0x12, 0xab, 0x34]
        assert len(driver.find_elements('css selector', '.dot')) == 1
        driver.find_element('id', 'clear-dots').click()
        assert driver.find_elements('css selector', '.dot') == []


def main(argv=None):
    parser = argparse.ArgumentParser(description='Screenshot of the server page with a real result')
    parser.add_argument('--model', default=os.path.join(ROOT, 'result', 'demo'), help='model folder')
    parser.add_argument('--sample', default='hibiki_0000', help='test drawing of the model\'s dataset')
    parser.add_argument('--compare', default='響,暁', help='two tags to compare (the page\'s pair button)')
    parser.add_argument('--out', default=os.path.join(ROOT, 'docs', 'server.png'), help='screenshot')
    args = parser.parse_args(argv)
    paths, reason = find_browser()
    if paths is None:
        print('error: ' + reason, file=sys.stderr)
        return 1
    first, second = args.compare.split(',')
    with running_server(args.model) as url, chromium(paths, 1280, 900) as driver:
        open_page(driver, url)
        wait_for(driver,
                 lambda d: d.find_elements('css selector', '.sample[data-name="{}"]'.format(args.sample)),
                 what='the sample drawings')
        driver.find_element('css selector', '.sample[data-name="{}"]'.format(args.sample)).click()
        wait_for_results(driver, 1)
        buttons = [b for b in driver.find_elements('css selector', '.pair')
                   if b.text.startswith(first) and b.text.endswith(second)]
        if buttons:
            buttons[0].click()
        else:
            type_tags(driver, 0, [first])
            driver.find_element('id', 'add-set').click()
            type_tags(driver, 1, [second])
        states = wait_for_results(driver, 2)
        if states != ['done', 'done']:
            print('error: the page did not colour both tag sets: '
                  + ' | '.join(c.text for c in cards(driver)),
                  file=sys.stderr)
            return 1
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        driver.save_screenshot(args.out)
    print('wrote ' + args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
