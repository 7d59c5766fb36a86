// The page of server.py: one drawing, several tag sets, one POST /api/colorize per tag set
// (so each result shows up as soon as it is ready and can be downloaded on its own, with
// its flat colour layer and line layer for a paint program).
'use strict';

const MAX_RETRIES = 5;
// The side of the white page "Blank paper" sends: the figure is drawn at the paper's size.
const BLANK_SIDE = 256;

const state = {
  drawing: null,        // Blob of the drawing being coloured
  drawingName: 'drawing',
  drawingUrl: null,     // object URL of the drawing as uploaded
  readShown: null,      // what the preview shows: 'asis' (the upload) or the line art / grey read
  dots: [],             // colour hints: {x, y, colour} in the drawing's pixels
  selected: -1,         // the dot the colour picker and "Remove dot" act on
  vocabulary: null,     // null: the model has no tags (--no-tag)
  known: new Set(),
  cards: [],
};

const $ = (selector, root = document) => root.querySelector(selector);

function splitTags(text) {
  // As the server's dataset.parse_tags: commas (or 、) win, else whitespace.
  const normal = text.replace(/、/g, ',');
  const parts = normal.includes(',') ? normal.split(',') : normal.split(/\s+/);
  return parts.map((t) => t.trim()).filter(Boolean);
}

function safeName(text) {
  return text.replace(/[\\/:*?"<>|\s]+/g, '_').slice(0, 60) || 'notag';
}

// ---- tag sets (cards) ----

function addCard(tags = []) {
  const node = $('#card-template').content.firstElementChild.cloneNode(true);
  const card = { node, tags: [], controller: null, url: null, unknown: [] };
  const input = $('.tag-input', node);
  input.disabled = state.vocabulary === null;  // a --no-tag model, or no server
  input.addEventListener('keydown', (event) => {
    if (event.isComposing) return;  // an IME is still composing (Japanese input)
    if (event.key === 'Enter' || event.key === ',' || event.key === '、') {
      event.preventDefault();
      commitInput(card);
    } else if (event.key === 'Backspace' && input.value === '' && card.tags.length) {
      setTags(card, card.tags.slice(0, -1));
    }
  });
  input.addEventListener('input', (event) => {
    // A pick from the suggestion list arrives without an inputType (or as a replacement).
    const picked = !event.inputType || event.inputType === 'insertReplacementText';
    if (picked && state.known.has(input.value.trim())) commitInput(card);
  });
  input.addEventListener('blur', () => { if (input.value.trim()) commitInput(card); });
  $('.remove', node).addEventListener('click', () => removeCard(card));
  for (const button of node.querySelectorAll('.layer')) {
    button.addEventListener('click', () => downloadLayer(card, button));
  }
  $('#cards').appendChild(node);
  state.cards.push(card);
  setTags(card, tags);
  updateRemoveButtons();
  return card;
}

function removeCard(card) {
  if (state.cards.length <= 1) return;
  if (card.controller) card.controller.abort();
  if (card.url) URL.revokeObjectURL(card.url);
  card.node.remove();
  state.cards = state.cards.filter((c) => c !== card);
  updateRemoveButtons();
}

function updateRemoveButtons() {
  for (const card of state.cards) $('.remove', card.node).hidden = state.cards.length <= 1;
}

function commitInput(card) {
  const input = $('.tag-input', card.node);
  const fresh = splitTags(input.value).filter((t) => !card.tags.includes(t));
  input.value = '';
  if (fresh.length) setTags(card, card.tags.concat(fresh));
}

function setTags(card, tags) {
  card.tags = tags;
  card.unknown = [];
  renderChips(card);
  $('.label', card.node).textContent = tags.length ? tags.join(', ') : 'no tag';
  colourCard(card);
}

function renderChips(card) {
  const list = $('.chips', card.node);
  list.replaceChildren();
  card.tags.forEach((tag, index) => {
    const chip = document.createElement('li');
    chip.className = 'chip' + (card.unknown.includes(tag) ? ' unknown' : '');
    chip.textContent = tag;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = '×';
    remove.title = 'remove ' + tag;
    remove.addEventListener('click', () => setTags(card, card.tags.filter((_, i) => i !== index)));
    chip.appendChild(remove);
    list.appendChild(chip);
  });
}

function setCardState(card, name, error = '') {
  card.node.dataset.state = name;
  const message = $('.error', card.node);
  message.textContent = error;
  message.hidden = !error;
}

// ---- colouring ----

function colourForm(tags, output = 'picture') {
  const form = new FormData();
  form.append('image', state.drawing, state.drawingName);
  if (tags.length) form.append('tags', tags.join(','));
  form.append('drawing', $('#drawing-kind').value);
  form.append('output', output);
  // A grey drawing keeps the network's colours: hints act on the regions of line art.
  if ($('#drawing-kind').value !== 'grey') {
    for (const dot of state.dots) form.append('hint', dot.x + ',' + dot.y + ',' + dot.colour);
  }
  return form;
}

function layerButtons(card, enabled) {
  for (const button of card.node.querySelectorAll('.layer')) button.disabled = !enabled;
}

async function colourCard(card, attempt = 0) {
  if (card.controller) card.controller.abort();
  if (!state.drawing) { setCardState(card, 'empty'); return; }
  const controller = new AbortController();
  card.controller = controller;
  setCardState(card, 'loading');
  layerButtons(card, false);
  let response;
  try {
    response = await fetch('/api/colorize', { method: 'POST', body: colourForm(card.tags),
                                              signal: controller.signal });
  } catch (error) {
    if (error.name !== 'AbortError') setCardState(card, 'error', 'The server cannot be reached.');
    return;
  }
  if (card.controller !== controller) return;  // a newer request replaced this one
  if (response.status === 503 && attempt < MAX_RETRIES) {
    const wait = 1000 * (Number(response.headers.get('Retry-After')) || 1);
    setTimeout(() => { if (card.controller === controller) colourCard(card, attempt + 1); }, wait);
    return;
  }
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    card.unknown = body.unknown || [];
    renderChips(card);
    // The old picture stays, greyed, but is no longer offered for download.
    $('.download', card.node).setAttribute('aria-disabled', 'true');
    setCardState(card, 'error', body.error || ('The server answered ' + response.status + '.'));
    return;
  }
  const blob = await response.blob();
  if (card.controller !== controller) return;
  const read = response.headers.get('X-Drawing-Read');
  showDrawingRead(read);
  const note = $('.note', card.node);
  note.textContent = response.headers.get('X-Hint-Notes') || '';
  note.hidden = !note.textContent;
  layerButtons(card, read !== 'grey');  // a grey drawing is coloured as the network draws it
  if (card.url) URL.revokeObjectURL(card.url);
  card.url = URL.createObjectURL(blob);
  const image = $('.result-image', card.node);
  image.onload = () => { if (card.controller === controller) setCardState(card, 'done'); };
  image.src = card.url;
  image.alt = 'coloured with ' + (card.tags.join(', ') || 'no tag');
  image.hidden = false;
  const download = $('.download', card.node);
  download.href = card.url;
  download.download = baseName() + '_' + safeName(card.tags.join('+')) + '.png';
  download.removeAttribute('aria-disabled');
}

function colourAll() {
  for (const card of state.cards) colourCard(card);
}

function baseName() {
  return safeName(state.drawingName.replace(/\.[^.]*$/, ''));
}

async function downloadLayer(card, button) {
  const layer = button.dataset.layer;
  button.disabled = true;
  try {
    const response = await fetch('/api/colorize', { method: 'POST', body: colourForm(card.tags, layer) });
    if (!response.ok) {
      let body = {};
      try { body = await response.json(); } catch (_) { /* not JSON */ }
      setCardState(card, 'error', body.error || ('The server answered ' + response.status + '.'));
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement('a');
    link.href = url;
    link.download = baseName() + (layer === 'flat' ? '_' + safeName(card.tags.join('+')) : '') +
      '_' + layer + '.png';
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } finally {
    button.disabled = false;
  }
}

// The preview shows what the network reads: the upload itself, or the line art (or grey
// picture) the server made from a colour upload, with a line that says so.
async function showDrawingRead(read) {
  if (!read || read === state.readShown) return;
  state.readShown = read;
  const preview = $('#drawing-preview');
  const note = $('#drawing-read');
  const drawing = state.drawing;
  if (read === 'asis') {
    preview.src = state.drawingUrl;
    note.hidden = true;
    return;
  }
  const response = await fetch('/api/colorize', { method: 'POST', body: colourForm([], 'drawing') });
  if (!response.ok || drawing !== state.drawing || state.readShown !== read) return;
  if (preview.src !== state.drawingUrl) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(await response.blob());
  note.textContent = read === 'line'
    ? 'Shown: the line art made from your colour picture, which the network colours.'
    : 'Shown: your picture made grey, which the network colours.';
  note.hidden = false;
}

function setDrawing(blob, name) {
  if (!blob) return;
  state.drawing = blob;
  state.drawingName = name || 'drawing.png';
  const preview = $('#drawing-preview');
  if (preview.src && preview.src !== state.drawingUrl) URL.revokeObjectURL(preview.src);
  if (state.drawingUrl) URL.revokeObjectURL(state.drawingUrl);
  state.drawingUrl = URL.createObjectURL(blob);
  state.readShown = 'asis';
  preview.src = state.drawingUrl;
  $('#drawing-read').hidden = true;
  preview.hidden = false;
  state.dots = [];  // a new drawing: the old one's hints mean nothing here
  state.selected = -1;
  for (const id of ['#dots', '#hint-bar', '#hint-help']) $(id).hidden = false;
  renderDots();
  $('#dropzone').classList.add('has-image');
  colourAll();
}

// ---- colour hints: dots on the drawing ----

// The drawing's box shows the picture whole (object-fit: contain): where its pixels lie.
function pictureBox() {
  const preview = $('#drawing-preview');
  const box = preview.getBoundingClientRect();
  const scale = Math.min(box.width / preview.naturalWidth, box.height / preview.naturalHeight);
  return { box, scale, left: (box.width - preview.naturalWidth * scale) / 2,
           top: (box.height - preview.naturalHeight * scale) / 2,
           width: preview.naturalWidth, height: preview.naturalHeight };
}

function pixelAt(event) {
  const { box, scale, left, top, width, height } = pictureBox();
  const x = Math.round((event.clientX - box.left - left) / scale);
  const y = Math.round((event.clientY - box.top - top) / scale);
  return x >= 0 && y >= 0 && x < width && y < height ? { x, y } : null;
}

function renderDots() {
  const layer = $('#dots');
  layer.replaceChildren();
  const { scale, left, top } = pictureBox();
  state.dots.forEach((dot, index) => {
    const mark = document.createElement('span');
    mark.className = 'dot' + (index === state.selected ? ' selected' : '');
    mark.style.left = (left + dot.x * scale) + 'px';
    mark.style.top = (top + dot.y * scale) + 'px';
    mark.style.background = dot.colour;
    mark.dataset.index = index;
    mark.title = 'hint ' + dot.colour + ' at ' + dot.x + ', ' + dot.y;
    layer.appendChild(mark);
  });
  $('#remove-dot').disabled = state.selected < 0;
  $('#clear-dots').disabled = !state.dots.length;
}

let hintTimer = null;
function hintsChanged() {
  renderDots();
  clearTimeout(hintTimer);
  hintTimer = setTimeout(colourAll, 120);
}

function setupHints() {
  const layer = $('#dots');
  let dragging = null;
  layer.addEventListener('pointerdown', (event) => {
    event.preventDefault();
    const index = event.target.dataset.index;
    if (index !== undefined) {
      state.selected = Number(index);
      $('#hint-colour').value = state.dots[state.selected].colour;
      dragging = { index: state.selected, moved: false };
      layer.setPointerCapture(event.pointerId);
      renderDots();
      return;
    }
    const at = pixelAt(event);
    if (!at) return;
    state.dots.push({ x: at.x, y: at.y, colour: $('#hint-colour').value });
    state.selected = state.dots.length - 1;
    hintsChanged();
  });
  layer.addEventListener('pointermove', (event) => {
    if (!dragging) return;
    const at = pixelAt(event);
    if (!at) return;
    Object.assign(state.dots[dragging.index], at);
    dragging.moved = true;
    renderDots();
  });
  layer.addEventListener('pointerup', () => {
    if (dragging && dragging.moved) hintsChanged();
    dragging = null;
  });
  layer.addEventListener('click', (event) => event.preventDefault());  // not the file chooser
  $('#hint-colour').addEventListener('input', () => {
    if (state.selected < 0) return;
    state.dots[state.selected].colour = $('#hint-colour').value;
    hintsChanged();
  });
  $('#remove-dot').addEventListener('click', () => {
    state.dots.splice(state.selected, 1);
    state.selected = -1;
    hintsChanged();
  });
  $('#clear-dots').addEventListener('click', () => {
    state.dots = [];
    state.selected = -1;
    hintsChanged();
  });
  $('#change-drawing').addEventListener('click', () => $('#file').click());
  // The first dot on a drawing and tag set needs the network's colourings under other
  // tags (the probes): a pointer near the drawing has the server make them beforehand.
  layer.addEventListener('pointerenter', () => {
    if ($('#drawing-kind').value === 'grey') return;
    for (const card of state.cards) {
      const key = card.tags.join(',');
      if (card.prepared === key + '@' + state.drawingName + state.drawing.size) continue;
      card.prepared = key + '@' + state.drawingName + state.drawing.size;
      fetch('/api/colorize', { method: 'POST', body: colourForm(card.tags, 'prepare') }).catch(() => {});
    }
  });
  window.addEventListener('resize', renderDots);
  $('#drawing-preview').addEventListener('load', renderDots);
}

// ---- drawing input: file, drop, paste, samples ----

function setupDrawingInput() {
  const zone = $('#dropzone');
  $('#file').addEventListener('change', (event) => {
    const file = event.target.files[0];
    if (file) { setDrawing(file, file.name); showSampleTags(null); }
  });
  zone.addEventListener('dragover', (event) => { event.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    const file = [...event.dataTransfer.files].find((f) => f.type.startsWith('image/'));
    if (file) { setDrawing(file, file.name); showSampleTags(null); }
  });
  document.addEventListener('paste', (event) => {
    const item = [...event.clipboardData.items].find((i) => i.type.startsWith('image/'));
    if (item) { setDrawing(item.getAsFile(), 'pasted.png'); showSampleTags(null); }
  });
  $('#drawing-kind').addEventListener('change', colourAll);
  $('#blank-paper').addEventListener('click', blankPaper);
}

// White paper as the drawing: the server draws each tag set's figure from its tags alone
// (the model's figure prior). There is no line to put a colour dot in.
function blankPaper() {
  const paper = document.createElement('canvas');
  paper.width = paper.height = BLANK_SIDE;
  const pen = paper.getContext('2d');
  pen.fillStyle = '#ffffff';
  pen.fillRect(0, 0, BLANK_SIDE, BLANK_SIDE);
  paper.toBlob((blob) => {
    setDrawing(blob, 'blank.png');
    showSampleTags(null);
    for (const id of ['#dots', '#hint-bar', '#hint-help']) $(id).hidden = true;
  }, 'image/png');
}

async function loadSamples() {
  const response = await fetch('/api/samples');
  const { samples } = await response.json();
  if (!samples.length) return;
  $('#samples-block').hidden = false;
  for (const sample of samples) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'sample';
    button.title = sample.name;
    button.dataset.name = sample.name;
    const thumb = document.createElement('img');
    thumb.src = sample.url;
    thumb.alt = sample.name;
    button.appendChild(thumb);
    button.addEventListener('click', async () => {
      const blob = await (await fetch(sample.url)).blob();
      for (const other of document.querySelectorAll('.sample')) other.classList.remove('selected');
      button.classList.add('selected');
      setDrawing(blob, sample.name + '.png');
      showSampleTags(sample);
    });
    $('#samples').appendChild(button);
  }
}

function showSampleTags(sample) {
  const hint = $('#sample-tags');
  const known = sample && state.vocabulary ? sample.tags.filter((t) => state.known.has(t)) : [];
  hint.hidden = !known.length;
  if (!known.length) return;
  hint.replaceChildren('Its tags in the data: ' + known.join(' · ') + ' ');
  const use = document.createElement('button');
  use.type = 'button';
  use.className = 'link';
  use.textContent = 'use them';
  use.addEventListener('click', () => setTags(state.cards[0], known));
  hint.appendChild(use);
}

// ---- vocabulary and one-click comparisons ----

function compare(tagSets) {
  while (state.cards.length < tagSets.length) addCard();
  while (state.cards.length > tagSets.length) removeCard(state.cards[state.cards.length - 1]);
  tagSets.forEach((tags, i) => setTags(state.cards[i], tags));
}

async function loadVocabulary() {
  const [tagsResponse, health] = await Promise.all([fetch('/api/tags'), fetch('/healthz')]);
  const { tags, pairs } = await tagsResponse.json();
  const info = await health.json();
  state.vocabulary = tags;
  state.known = new Set(tags || []);
  $('#model-info').textContent = tags === null
    ? 'model ' + info.size + ' px · no tags'
    : 'model ' + info.size + ' px · ' + tags.length + ' words';
  if (tags === null) {
    $('#no-tag-note').hidden = false;
    $('#add-set').hidden = true;
    return;
  }
  const list = $('#vocabulary');
  for (const tag of tags) {
    const option = document.createElement('option');
    option.value = tag;
    list.appendChild(option);
  }
  if (pairs.length) {
    const box = $('#pairs');
    box.hidden = false;
    box.appendChild(document.createTextNode('Compare in one click:'));
    for (const [a, b] of pairs) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'button small pair';
      button.textContent = a + ' ⇄ ' + b;
      button.title = 'colour the drawing with ' + a + ' and with ' + b + ', side by side';
      button.addEventListener('click', () => compare([[a], [b]]));
      box.appendChild(button);
    }
  }
}

async function start() {
  setupDrawingInput();
  setupHints();
  $('#add-set').addEventListener('click', () => $('.tag-input', addCard().node).focus());
  try {
    await loadVocabulary();
  } catch (error) {
    $('#model-info').textContent = 'server not reachable';
  }
  addCard();
  loadSamples().catch(() => {});
}

start();
