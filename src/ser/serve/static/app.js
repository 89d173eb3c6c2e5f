// The page of `ser serve`: files -> bar charts or timelines, microphone -> live timeline, enrolment.
// Plain JavaScript, no libraries, nothing fetched from elsewhere.
'use strict';

const $ = (id) => document.getElementById(id);
// The colours of the PNG timelines (matplotlib's tab10, in the models' class order).
const COLORS = {
  neutral: '#1f77b4', calm: '#ff7f0e', happy: '#2ca02c', sad: '#d62728',
  angry: '#9467bd', fearful: '#8c564b', disgust: '#e377c2', surprised: '#7f7f7f',
};
const EXTRA_COLORS = ['#17becf', '#bcbd22', '#393b79', '#637939'];
const LONG_S = 10; // files longer than this get a timeline
const SENTENCES = [
  'The train leaves the station at nine in the morning.',
  'Please put the books back on the shelf by the window.',
  'We walked along the river and talked about the weather.',
  'The kitchen table is made of old oak wood.',
  'My neighbour grows tomatoes and beans in her garden.',
  'The meeting has been moved to Thursday afternoon.',
];
const MIC_CONSTRAINTS = {
  audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
};

const state = { models: [], limits: {}, auth: false, recording: null, enrolling: null };

function color(label) {
  if (COLORS[label]) return COLORS[label];
  const known = Object.keys(COLORS).length;
  const i = (currentModel()?.classes || []).indexOf(label);
  return EXTRA_COLORS[Math.max(0, i - known) % EXTRA_COLORS.length];
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k === 'style') node.style.cssText = v;
    else if (k.includes('-') || k === 'role') node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function clock(t, digits) {
  const m = Math.floor(t / 60);
  const s = t - 60 * m;
  return `${m}:${s.toFixed(digits || 0).padStart(digits ? 3 + digits : 2, '0')}`;
}

function pct(x) { return `${Math.round(100 * x)} %`; }

// --- talking to the server ---------------------------------------------------------------------
function token() { return $('token').value.trim(); }

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = Object.assign({}, opts.headers || {});
  if (token()) opts.headers.Authorization = 'Bearer ' + token();
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    return { res: { ok: false, status: 0, statusText: 'the server cannot be reached' }, body: null };
  }
  let body = null;
  if ((res.headers.get('content-type') || '').includes('json')) {
    try { body = await res.json(); } catch (e) { body = null; }
  }
  return { res, body };
}

function errorText(r) {
  if (r.body && r.body.detail) {
    const retry = r.res.headers && r.res.headers.get && r.res.headers.get('retry-after');
    return r.body.detail + (retry ? ` (try again in ${retry} s)` : '');
  }
  return r.res.status ? `${r.res.status} ${r.res.statusText}` : r.res.statusText;
}

function showMessage(text) {
  const m = $('message');
  m.textContent = text || '';
  m.hidden = !text;
}

function modelQuery() { return 'model=' + encodeURIComponent($('model').value); }

function speakerQuery() {
  const v = $('speaker').value;
  if (!v) return '';
  if (v === '@adapt') return '&adapt=true';
  return '&speaker=' + encodeURIComponent(v);
}

// --- models and speakers -----------------------------------------------------------------------
function currentModel() { return state.models.find((m) => m.name === $('model').value) || state.models[0]; }

async function loadModels() {
  const r = await api('/v1/models');
  if (!r.res.ok) {
    showMessage(r.res.status === 401 ? 'This server needs a token: enter it above.' : errorText(r));
    return false;
  }
  state.models = r.body.models;
  state.limits = r.body.limits || {};
  const select = $('model');
  const previous = select.value || localStorage.getItem('ser-model');
  select.replaceChildren(...state.models.map((m) => el('option', { value: m.name, textContent: m.name })));
  select.value = state.models.some((m) => m.name === previous) ? previous : r.body.default;
  onModelChange();
  return true;
}

function onModelChange() {
  const m = currentModel();
  if (!m) return;
  localStorage.setItem('ser-model', m.name);
  const quality = m.si6 ? `; on voices it never heard it gets ${pct(m.si6.uar)} UAR (si6)` : '';
  $('model-note').textContent = `${m.name}: ${m.features} features${quality}` +
    (m.adapted_head ? '' : '; no speaker adaptation with this model');
  for (const option of $('speaker').options) {
    if (option.value) option.disabled = !m.adapted_head;
  }
  if (!m.adapted_head) $('speaker').value = '';
  $('live-legend').replaceChildren(...legend().childNodes);
  $('enrol-start').disabled = !m.adapted_head;
  $('enrol-status').textContent = m.adapted_head ? '' : `The ${m.name} model cannot use a voice profile; ` +
    'choose a model with speaker adaptation (default) to enrol.';
}

async function loadSpeakers() {
  const r = await api('/v1/speakers');
  if (!r.res.ok) return;
  const select = $('speaker');
  const chosen = select.value;
  for (const option of [...select.options]) if (option.value && option.value !== '@adapt') option.remove();
  const list = $('enrolled');
  list.replaceChildren();
  for (const row of r.body.speakers) {
    if (row.error) continue;
    select.append(el('option', { value: row.name, textContent: `${row.name} (enrolled)` }));
    const remove = el('button', { type: 'button', textContent: 'remove', 'aria-label': `Remove ${row.name}` });
    remove.addEventListener('click', async () => {
      const d = await api('/v1/speakers/' + encodeURIComponent(row.name), { method: 'DELETE' });
      if (!d.res.ok) showMessage(errorText(d));
      await loadSpeakers();
    });
    list.append(el('li', {}, `${row.name}: ${row.clips} clips, ${row.created || ''}`, remove));
  }
  select.value = [...select.options].some((o) => o.value === chosen) ? chosen : '';
  onModelChange();
}

// --- files -------------------------------------------------------------------------------------
function probeDuration(file) {
  return new Promise((resolve) => {
    const audio = document.createElement('audio');
    const url = URL.createObjectURL(file);
    let done = false;
    const finish = (d) => {
      if (done) return;
      done = true;
      URL.revokeObjectURL(url);
      resolve(Number.isFinite(d) ? d : 0);
    };
    audio.preload = 'metadata';
    audio.onloadedmetadata = () => finish(audio.duration);
    audio.onerror = () => finish(0);
    setTimeout(() => finish(0), 3000);
    audio.src = url;
  });
}

function newCard(file, wide) {
  const card = el('article', { class: 'card' + (wide ? ' wide' : ''), 'data-source': file.name, 'data-state': 'busy' },
    el('h3', { textContent: file.name }), el('p', { class: 'label', textContent: 'analysing…' }));
  $('results').prepend(card);
  return card;
}

function cardError(card, text) {
  card.dataset.state = 'error';
  card.querySelector('.label').replaceWith(el('p', { class: 'label error', textContent: text }));
}

function renderScores(card, result) {
  card.dataset.state = 'done';
  card.dataset.label = result.label;
  card.querySelector('.label').textContent = `${result.label} — ${pct(result.confidence)}`;
  const bars = el('div', { class: 'bars', role: 'img' });
  bars.setAttribute('aria-label', Object.entries(result.scores).map(([k, v]) => `${k} ${pct(v)}`).join(', '));
  for (const [name, value] of Object.entries(result.scores)) {
    bars.append(el('span', { textContent: name }),
      el('div', { class: 'bar' }, el('div', { class: 'fill', style: `width:${(100 * value).toFixed(1)}%;background:${color(name)}` })),
      el('span', { class: 'value', textContent: value.toFixed(2) }));
  }
  card.append(bars);
}

async function predictFiles(files) {
  const cards = files.map((f) => newCard(f, false));
  const form = new FormData();
  for (const f of files) form.append('file', f, f.name);
  const r = await api(`/v1/predict?${modelQuery()}${speakerQuery()}`, { method: 'POST', body: form });
  if (!r.body || !r.body.results) {
    for (const card of cards) cardError(card, errorText(r));
    if (r.res.status === 401 || r.res.status === 503) showMessage(errorText(r));
    return;
  }
  const retry = [];
  r.body.results.forEach((result, i) => {
    if (result.error && result.status === 413 && /longer than/.test(result.detail)) {
      cards[i].remove();
      retry.push(files[i]);
    } else if (result.error) cardError(cards[i], result.detail);
    else renderScores(cards[i], result);
  });
  for (const f of retry) await timelineFile(f);
}

async function timelineFile(file) {
  const card = newCard(file, true);
  const form = new FormData();
  form.append('file', file, file.name);
  const adapt = $('speaker').value === '@adapt' ? '&adapt=true' : '';
  const r = await api(`/v1/timeline?${modelQuery()}${adapt}`, { method: 'POST', body: form });
  if (!r.res.ok || !r.body) {
    cardError(card, errorText(r));
    return;
  }
  card.dataset.state = 'done';
  const n = r.body.segments.length;
  card.querySelector('.label').textContent = `${n} speech segment${n === 1 ? '' : 's'} in ${clock(r.body.duration)}`;
  const box = el('div', { class: 'timeline', 'aria-hidden': 'true' }, el('div', { class: 'axis' }));
  const list = el('ol', { class: 'segments' });
  card.append(box, legend(), list);
  drawTimeline(box, r.body.segments, r.body.duration, null);
  for (const s of r.body.segments) list.append(segmentItem(s));
}

async function handleFiles(fileList) {
  showMessage('');
  const files = Array.from(fileList || []);
  if (!files.length) return;
  const durations = await Promise.all(files.map(probeDuration));
  const clips = files.filter((_, i) => durations[i] <= LONG_S);
  const long = files.filter((_, i) => durations[i] > LONG_S);
  const per = state.limits.max_files || 64;
  for (let i = 0; i < clips.length; i += per) await predictFiles(clips.slice(i, i + per));
  for (const f of long) await timelineFile(f);
}

// --- timelines ---------------------------------------------------------------------------------
function legend() {
  const classes = currentModel()?.classes || Object.keys(COLORS);
  return el('div', { class: 'legend' }, ...classes.map((c) =>
    el('span', {}, el('span', { class: 'swatch', style: `background:${color(c)}` }), c)));
}

function segmentItem(s) {
  return el('li', { 'data-start': s.start, 'data-end': s.end, 'data-label': s.label },
    `${clock(s.start, 1)}–${clock(s.end, 1)} ${s.label} (${pct(s.confidence)})`);
}

function drawTimeline(box, segments, total, now) {
  total = Math.max(total, 1e-3);
  for (const old of box.querySelectorAll('.seg, .now')) old.remove();
  const height = box.clientHeight - 14;
  for (const s of segments) {
    const seg = el('div', { class: 'seg', title: `${clock(s.start, 1)}–${clock(s.end, 1)} ${s.label} ${pct(s.confidence)}` });
    seg.style.left = `${(100 * s.start) / total}%`;
    seg.style.width = `${(100 * (s.end - s.start)) / total}%`;
    seg.style.height = `${Math.max(4, height * s.confidence)}px`;
    seg.style.background = color(s.label);
    box.append(seg);
  }
  if (now !== null) box.append(el('div', { class: 'now', style: `left:calc(${(100 * now) / total}% - 1px)` }));
  const axis = box.querySelector('.axis');
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  const step = steps.find((s) => total / s <= 10) || 7200;
  axis.replaceChildren();
  for (let t = step; t < total; t += step) {
    axis.append(el('span', { class: 'tick', style: `left:${(100 * t) / total}%`, textContent: clock(t) }));
  }
}

// --- microphone --------------------------------------------------------------------------------
function micProblem(error) {
  const name = error && error.name;
  if (error === 'insecure') {
    return 'The browser gives the microphone only to secure pages: open this page as http://localhost:' +
      `${location.port || 80}/ (on this machine) or over https.`;
  }
  if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError') {
    return 'Microphone access was refused. To record, allow the microphone for this page (the icon at the left ' +
      'of the address bar), then press Record again.';
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return 'No microphone was found. Connect one and press Record again.';
  if (name === 'NotReadableError') return 'The microphone could not be started (another program may be using it).';
  return `The microphone could not be started (${name || error}).`;
}

async function openMic(chunkHandler) {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error(micProblem('insecure'));
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
  } catch (e) {
    throw new Error(micProblem(e));
  }
  const ctx = new AudioContext();
  await ctx.audioWorklet.addModule('/static/pcm-worklet.js');
  const source = ctx.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(ctx, 'pcm16', { processorOptions: { chunk: Math.round(ctx.sampleRate / 10) } });
  const mute = ctx.createGain();
  mute.gain.value = 0;
  source.connect(node);
  node.connect(mute);
  mute.connect(ctx.destination);
  node.port.onmessage = (e) => chunkHandler(e.data);
  return {
    rate: ctx.sampleRate,
    close() {
      node.port.onmessage = null;
      for (const track of stream.getTracks()) track.stop();
      ctx.close();
    },
  };
}

function wsUrl(path) {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${path}`;
}

function setRecordingUi(on) {
  const button = $('record');
  button.setAttribute('aria-pressed', on ? 'true' : 'false');
  button.textContent = on ? '■ Stop' : '● Record';
  $('enrol-start').disabled = on || !currentModel()?.adapted_head;
}

async function startRecording() {
  showMessage('');
  if (state.enrolling) return;
  const rec = { ws: null, mic: null, queue: [], ready: false, segments: [], seconds: 0, ended: false, stopping: false };
  state.recording = rec;
  setRecordingUi(true);
  $('live-status').textContent = 'Starting the microphone…';
  $('live-list').replaceChildren();
  drawTimeline($('live-timeline'), [], 10, 0);
  try {
    rec.mic = await openMic((chunk) => {
      if (rec.ready && rec.ws.readyState === WebSocket.OPEN) rec.ws.send(chunk);
      else if (!rec.stopping) rec.queue.push(chunk);
    });
  } catch (e) {
    state.recording = null;
    setRecordingUi(false);
    $('live-status').textContent = e.message;
    showMessage(e.message);
    return;
  }
  const ws = new WebSocket(wsUrl('/v1/stream'));
  rec.ws = ws;
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => {
    const start = { type: 'start', sample_rate: rec.mic.rate, model: $('model').value };
    const v = $('speaker').value;
    if (v === '@adapt') start.adapt = true;
    else if (v) start.speaker = v;
    if (token()) start.token = token();
    ws.send(JSON.stringify(start));
  };
  ws.onmessage = (e) => onLiveEvent(rec, JSON.parse(e.data));
  ws.onclose = (e) => {
    if (rec.mic) rec.mic.close();
    if (state.recording === rec) state.recording = null;
    setRecordingUi(false);
    if (!rec.ended && !rec.failed) {
      const text = `The live connection closed (${e.code}${e.reason ? ': ' + e.reason : ''}).`;
      $('live-status').textContent = text;
      showMessage(text);
    }
  };
}

function onLiveEvent(rec, ev) {
  const box = $('live-timeline');
  if (ev.type === 'ready') {
    rec.ready = true;
    for (const chunk of rec.queue) rec.ws.send(chunk);
    rec.queue = [];
    $('live-status').textContent = `Listening (model ${ev.model})… each phrase gets its emotion when you pause.`;
  } else if (ev.type === 'segment') {
    rec.segments.push(ev);
    $('live-list').append(segmentItem(ev));
    $('live-status').textContent = `${clock(rec.seconds)} — last phrase: ${ev.label} (${pct(ev.confidence)})`;
  } else if (ev.type === 'progress') {
    rec.seconds = ev.seconds;
  } else if (ev.type === 'end') {
    rec.ended = true;
    rec.seconds = ev.seconds;
    $('live-status').textContent = `Stopped: ${ev.segments} segment${ev.segments === 1 ? '' : 's'} in ${clock(ev.seconds)}.`;
  } else if (ev.type === 'error') {
    rec.failed = true;
    $('live-status').textContent = ev.detail;
    showMessage(ev.detail);
  }
  const total = Math.max(10, Math.ceil(rec.seconds / 10) * 10);
  drawTimeline(box, rec.segments, total, rec.ended ? null : rec.seconds);
}

function stopRecording() {
  const rec = state.recording;
  if (!rec) return;
  rec.stopping = true;
  if (rec.mic) rec.mic.close();
  rec.mic = null;
  $('live-status').textContent = 'Finishing the last phrase…';
  if (rec.ws && rec.ws.readyState === WebSocket.OPEN) rec.ws.send(JSON.stringify({ type: 'stop' }));
  else if (rec.ws) rec.ws.close();
}

// --- enrolment ---------------------------------------------------------------------------------
function wav(chunks, rate) {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const buf = new ArrayBuffer(44 + 2 * n);
  const v = new DataView(buf);
  const text = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  text(0, 'RIFF'); v.setUint32(4, 36 + 2 * n, true); text(8, 'WAVE'); text(12, 'fmt ');
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true);
  v.setUint32(28, 2 * rate, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true); text(36, 'data');
  v.setUint32(40, 2 * n, true);
  let o = 44;
  for (const c of chunks) for (let i = 0; i < c.length; i++, o += 2) v.setInt16(o, c[i], true);
  return new Blob([buf], { type: 'audio/wav' });
}

async function startEnrol(event) {
  event.preventDefault();
  showMessage('');
  if (state.recording || state.enrolling) return;
  const name = $('enrol-name').value.trim();
  const job = { name, clips: [], current: [], index: 0, mic: null };
  try {
    job.mic = await openMic((chunk) => job.current.push(new Int16Array(chunk)));
  } catch (e) {
    $('enrol-status').textContent = e.message;
    showMessage(e.message);
    return;
  }
  state.enrolling = job;
  $('enrol-steps').hidden = false;
  $('enrol-start').disabled = true;
  $('record').disabled = true;
  $('enrol-status').textContent = '';
  showSentence(job);
}

function showSentence(job) {
  $('enrol-progress').textContent = `Sentence ${job.index + 1} of ${SENTENCES.length}: read it calmly, then press ` +
    (job.index + 1 < SENTENCES.length ? 'Next sentence.' : 'Finish.');
  $('enrol-sentence').textContent = SENTENCES[job.index];
  $('enrol-next').textContent = job.index + 1 < SENTENCES.length ? 'Next sentence' : 'Finish';
  $('enrol-next').focus();
}

function endEnrol() {
  const job = state.enrolling;
  if (job && job.mic) job.mic.close();
  state.enrolling = null;
  $('enrol-steps').hidden = true;
  $('record').disabled = false;
  onModelChange();
}

async function nextSentence() {
  const job = state.enrolling;
  if (!job) return;
  job.clips.push(job.current);
  job.current = [];
  job.index += 1;
  if (job.index < SENTENCES.length) {
    showSentence(job);
    return;
  }
  const rate = job.mic.rate;
  endEnrol();
  // Keep the sentences with sound: at least half a second, not silent (the server refuses a silent clip).
  const peak = (c) => c.reduce((m, x) => x.reduce((n, v) => Math.max(n, Math.abs(v)), m), 0);
  const clips = job.clips.filter((c) => c.reduce((a, x) => a + x.length, 0) >= rate / 2 && peak(c) > 32);
  if (clips.length < 3) {
    $('enrol-status').textContent = 'Too little was recorded: read each sentence before pressing Next.';
    return;
  }
  $('enrol-status').textContent = 'Enrolling…';
  const form = new FormData();
  clips.forEach((c, i) => form.append('file', wav(c, rate), `sentence-${i + 1}.wav`));
  const r = await api(`/v1/speakers/${encodeURIComponent(job.name)}?${modelQuery()}`, { method: 'PUT', body: form });
  if (!r.res.ok) {
    $('enrol-status').textContent = `Enrolment failed: ${errorText(r)}`;
    return;
  }
  await loadSpeakers();
  $('speaker').value = job.name;
  $('enrol-status').textContent = `Enrolled ${job.name} from ${r.body.clips} sentences: predictions now read ` +
    'your voice relative to your own calm baseline.';
}

// --- wiring ------------------------------------------------------------------------------------
async function init() {
  $('long-s').textContent = LONG_S;
  const health = await api('/health');
  state.auth = Boolean(health.body && health.body.auth);
  $('token-box').hidden = !state.auth;
  $('token').value = sessionStorage.getItem('ser-token') || '';
  $('token').addEventListener('change', async () => {
    sessionStorage.setItem('ser-token', token());
    if (await loadModels()) { showMessage(''); await loadSpeakers(); }
  });
  $('token-box').addEventListener('submit', (e) => { e.preventDefault(); $('token').dispatchEvent(new Event('change')); });
  $('model').addEventListener('change', onModelChange);
  $('choose').addEventListener('click', () => $('file-input').click());
  $('file-input').addEventListener('change', (e) => { handleFiles(e.target.files); e.target.value = ''; });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); handleFiles(e.dataTransfer.files); });
  $('record').addEventListener('click', () => (state.recording ? stopRecording() : startRecording()));
  $('enrol-form').addEventListener('submit', startEnrol);
  $('enrol-next').addEventListener('click', nextSentence);
  $('enrol-cancel').addEventListener('click', () => { endEnrol(); $('enrol-status').textContent = 'Enrolment cancelled.'; });
  drawTimeline($('live-timeline'), [], 10, null);
  if (await loadModels()) await loadSpeakers();
  document.body.dataset.ready = 'true';
}

document.addEventListener('DOMContentLoaded', init);
