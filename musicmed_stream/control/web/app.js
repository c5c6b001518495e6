// musicmed-stream companion page: a valence-arousal circle steering the daemon live.
// Speaks the control protocol (docs/protocol.md) over the websocket at /ws on this page's own origin.
// Plain JS, no build step; the page is served with a strict CSP (no inline script or style).
"use strict";

// --- vocabulary ------------------------------------------------------------------------------

// The daemon's own emotion vocabulary (/emotions.json): names on the circle, the list of feelings,
// and words for coordinates. The daemon resolves every target itself.
let vocabulary = [];

// Everyday words first when labels compete for room on the circle.
const PREFERRED = ["happy", "calm", "sad", "angry", "relaxed", "excited", "tense", "tired", "content",
  "anxious", "depressed", "peaceful", "energetic", "gloomy", "sleepy", "scared", "bored", "determined"];

function nearestEmotion(v, a) {
  let best = null;
  let bestD = Infinity;
  for (const e of vocabulary) {
    const d = Math.hypot(e.valence - v, e.arousal - a);
    if (d < bestD) { best = e; bestD = d; }
  }
  return best;
}

// MTG-Jamendo tags are written without spaces ("acousticguitar"); these read better aloud.
const WORDS = {
  acousticguitar: "acoustic guitar", electricguitar: "electric guitar", classicalguitar: "classical guitar",
  electricpiano: "electric piano", drummachine: "drum machine", doublebass: "double bass",
  newage: "new age", easylistening: "easy listening", chillout: "chill-out", triphop: "trip-hop",
  hiphop: "hip-hop", rnb: "R&B", darkambient: "dark ambient", postrock: "post-rock", poprock: "pop rock",
  instrumentalpop: "instrumental pop", singersongwriter: "singer-songwriter", synthpop: "synth-pop",
  electropop: "electro-pop", alternativerock: "alternative rock", popfolk: "pop-folk",
};
const words = (tag) => WORDS[tag] || String(tag).replace(/[_-]+/g, " ");
const capital = (text) => (text ? text[0].toUpperCase() + text.slice(1) : text);

// --- elements and state ----------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const ui = {
  canvas: $("circumplex"), hint: $("circle-hint"), readout: $("circle-readout"),
  checkinBar: $("checkin-bar"), checkinCancel: $("checkin-cancel"),
  emotionSelect: $("emotion-select"), chooseEmotion: $("choose-emotion"), names: $("emotion-names"),
  connection: $("connection"), theme: $("theme"), textSize: $("text-size"),
  emotion: $("now-emotion"), detail: $("now-detail"), segment: $("now-segment"), prompt: $("now-prompt"),
  progress: $("progress"), progressFill: $("progress-fill"),
  elapsed: $("time-elapsed"), remaining: $("time-remaining"), total: $("time-total"),
  destination: $("destination"),
  checkinAfter: $("checkin-after"), checkinAfterGo: $("checkin-after-go"), checkinAfterSkip: $("checkin-after-skip"),
  bufferFill: $("buffer-fill"), bufferText: $("buffer-text"),
  presets: $("presets"), checkinBefore: $("checkin-before"),
  startForm: $("start-form"), from: $("from"), to: $("to"), minutes: $("minutes"),
  pause: $("pause"), skip: $("skip"), stop: $("stop"),
  volume: $("volume"), volumeValue: $("volume-value"), volumeCap: $("volume-cap"),
  auth: $("auth"), token: $("token"), message: $("message"), announcer: $("announcer"),
  dialog: $("confirm-start"), dialogText: $("confirm-text"), dialogRetarget: $("confirm-retarget"),
  historySection: $("history-section"), history: $("history"), historyNote: $("history-note"),
  historyList: $("history-list"),
};

const state = {
  status: { state: "idle" },
  plan: null,
  position: null,        // [valence, arousal] of the segment now playing
  pending: null,         // a clicked target the daemon has not answered yet
  bufferTarget: 10,
  commands: new Set(),   // what the daemon said it understands (hello)
  helloPresets: null,
  // Played time as last reported, and when (performance.now()); the page counts on from there
  // while playing, so the clock moves between the daemon's reports.
  clock: { played: null, total: null, remaining: null, at: 0 },
  cursor: null,          // the keyboard marker on the circle
  checkin: null,         // "before" | "after" while the circle records how the listener feels
  nowMusic: "",          // the words last announced for the music itself
  endedText: null,       // "Session finished" until the next session starts
  endedDetail: null,     // "Played 15:07"
};
let socket = null;
let nextId = 1;
const waiting = new Map();
let retryMs = 500;

const active = () => state.status.state === "playing" || state.status.state === "paused";

// --- connection ------------------------------------------------------------------------------

function setConnection(kind, text) {
  document.body.dataset.connection = kind;
  ui.connection.textContent = text;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}/ws`);
  setConnection("connecting", "Connecting…");
  socket.onmessage = (msg) => handle(JSON.parse(msg.data));
  socket.onclose = (ev) => {
    for (const { reject } of waiting.values()) reject(new Error("connection closed"));
    waiting.clear();
    const why = ev.code === 1008 ? " (access refused)" : "";
    setConnection("closed", `Disconnected${why}; retrying…`);
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  };
}

function send(type, fields = {}) {
  return new Promise((resolve, reject) => {
    if (!socket || socket.readyState !== WebSocket.OPEN) return reject(new Error("not connected"));
    const id = nextId++;
    waiting.set(id, { resolve, reject });
    socket.send(JSON.stringify({ type, id, ...fields }));
  });
}

function command(type, fields) {
  return send(type, fields).then((result) => { ui.message.textContent = ""; return result; })
    .catch((err) => { ui.message.textContent = err.message; throw err; });
}

function storedToken() {
  const fromUrl = new URLSearchParams(location.search).get("token");
  if (fromUrl) sessionStorage.setItem("musicmed-token", fromUrl);
  return sessionStorage.getItem("musicmed-token");
}

async function onHello(hello) {
  retryMs = 500;
  state.commands = new Set(hello.commands || []);
  state.helloPresets = Array.isArray(hello.presets) ? hello.presets : null;
  showFeatures();
  try {
    if (hello.auth_required) {
      const token = storedToken();
      if (!token) {
        ui.auth.hidden = false;
        setConnection("auth", "Token needed");
        return;
      }
      await send("auth", { token });
    }
    ui.auth.hidden = true;
    await send("subscribe");
    applyStatus(await send("status", { plan: true }));
    setConnection("ready", "Connected");
  } catch (err) {
    ui.message.textContent = err.message;
  }
}

function handle(msg) {
  if (msg.type === "hello") return onHello(msg);
  if (msg.type === "ok" || msg.type === "error") {
    const pending = waiting.get(msg.id);
    waiting.delete(msg.id);
    if (!pending) { if (msg.type === "error") ui.message.textContent = msg.message; return; }
    if (msg.type === "ok") pending.resolve(msg.result);
    else pending.reject(new Error(msg.message));
    return;
  }
  if (msg.type === "event") onEvent(msg.event, msg.data || {});
}

// --- daemon state ----------------------------------------------------------------------------

function applyStatus(s) {
  state.status = s;
  if (s.plan) setPlan(s.plan, false);
  if (s.valence != null && s.arousal != null) state.position = [s.valence, s.arousal];
  if (s.volume != null && document.activeElement !== ui.volume) showVolume(s.volume);
  showVolumeCap(s.max_volume);
  if (s.buffer_s != null) showBuffer(s.buffer_s, state.bufferTarget);
  // A status is a whole snapshot: a time it leaves out is unknown, and idle has no times (the
  // daemon says 0 then).
  const idle = s.state === "idle";
  setClock({ played_s: idle ? null : s.played_s ?? null, total_s: idle ? null : s.total_s ?? null,
    remaining_s: idle ? null : s.remaining_s ?? null });
  showNow(s, s.segment_index);
  showFeatures();
  showControls();
  draw();
}

function onEvent(type, data) {
  switch (type) {
    case "session_started":
      bankClock(); setPlan(data.plan, true); state.status.state = "playing"; state.status.segment_index = 0;
      state.status.session_id = data.session_id;
      state.pending = null; state.endedText = state.endedDetail = null; ui.checkinAfter.hidden = true;
      setClock({ played_s: 0, total_s: data.total_s ?? planTotal(data.plan) });
      announce(`Session started: ${describeJourney(state.plan)}.`);
      refreshHistory();
      break;
    case "plan_changed": {
      setPlan(data.plan, true); state.pending = null;
      setClock({ total_s: data.total_s ?? planTotal(data.plan) ?? state.clock.total });
      showNow({}, state.status.segment_index);
      announce(`New destination: ${destinationText()}.`);
      break;
    }
    case "segment_started":
      state.position = [data.valence, data.arousal];
      state.status.segment_index = data.index;
      setClock(data);
      showNow(data, data.index);
      break;
    case "buffer_level":
      state.bufferTarget = data.target_seconds || state.bufferTarget;
      showBuffer(data.seconds, state.bufferTarget); break;
    case "paused":
      bankClock(); state.status.state = "paused"; announce("Paused."); break;
    case "resumed":
      bankClock(); state.status.state = "playing"; announce("Playing again."); break;
    case "volume": if (document.activeElement !== ui.volume) showVolume(data.volume); break;
    case "error": ui.message.textContent = data.message; break;
    case "session_ended":
      state.status.state = "idle";
      setClock({ played_s: null, total_s: null, remaining_s: null });
      state.endedText = data.reason === "finished" ? "Session finished" : `Session ${data.reason}`;
      state.endedDetail = finite(data.played_s) != null ? `Played ${clock(data.played_s)}` : "";
      showNow({}, null);
      announce(`${state.endedText}.`);
      if (state.commands.has("checkin")) ui.checkinAfter.hidden = false;
      refreshHistory(); // the daemon writes the end before it answers a later command
      break;
  }
  showFeatures();
  showControls();
  showTime();
  draw();
}

function setPlan(plan, fillForm) {
  if (!plan) return;
  state.plan = plan;
  // After a re-target (from this page, ctl or another tablet) the form names where the music leads.
  if (fillForm && document.activeElement !== ui.to) ui.to.value = targetSpec(plan);
  if (fillForm && plan.start_label && document.activeElement !== ui.from && plan.segments?.[0]?.index === 0) {
    ui.from.value = plan.start_label;
  }
}

function targetSpec(plan) {
  if (plan.target_label) return plan.target_label;
  const t = plan.target || {};
  return `${round(t.valence)},${round(t.arousal)}`;
}

// --- now playing -----------------------------------------------------------------------------

// A word for how a part sounds, from where it sits on the circle; kind words only, since the
// listener may be in distress (no "dark" or "gloomy" for the unpleasant half).
function feel(v, a) {
  if (v == null || a == null) return "Music";
  if (a < -0.35) return v >= 0 ? "Gentle" : "Soft";
  if (a > 0.35) return v >= 0 ? "Lively" : "Driving";
  return v >= 0 ? "Warm" : "Wistful";
}

// The name the plan heads for: its label when that is a word, else the nearest word.
function destinationName(plan) {
  if (!plan) return null;
  const label = plan.target_label;
  if (label && !/^[-+]?[\d.]/.test(label)) return label;
  const t = plan.target;
  const near = t ? nearestEmotion(t.valence, t.arousal) : null;
  return near ? near.name : label || null;
}

// The name segments carry when they reach the target (segments are labelled with vocabulary words).
function destinationEmotion(plan) {
  const label = plan.target_label;
  if (label && vocabulary.some((e) => e.name === label)) return label;
  const t = plan.target;
  const near = t ? nearestEmotion(t.valence, t.arousal) : null;
  return near ? near.name : label;
}

function segmentAt(index) {
  const segs = state.plan?.segments || [];
  return segs.find((s) => s.index === index) || null;
}

function describeJourney(plan) {
  const to = destinationName(plan);
  return to ? `leading toward ${to}` : "playing";
}

// "Gentle piano": how the part sounds, from its instrument (or genre) and its place on the circle.
function musicWords(seg) {
  const what = seg.instrument ? words(seg.instrument) : seg.genre ? `${words(seg.genre)} music` : "music";
  return capital(`${feel(seg.valence, seg.arousal)} ${what}`);
}

// "Gentle piano, moving toward calm".
function humanNow(music) {
  const to = destinationName(state.plan);
  if (!to) return music;
  return `${music}, ${arrived() ? "resting in" : "moving toward"} ${to}`;
}

function showNow(data, index) {
  const seg = { ...(index != null ? segmentAt(index) : {}), ...stripNulls(data) };
  const playing = active() && index != null;
  const n = state.plan?.segments?.length || state.status.segment_count || 0;
  if (!playing) {
    const stopping = state.status.state === "stopping";
    ui.emotion.textContent = active() ? "…" : stopping ? "Stopping…" : state.endedText || "Nothing playing";
    ui.segment.textContent = ui.prompt.textContent = "";
    ui.detail.textContent = active() ? "" : state.endedDetail || "";
    state.nowMusic = "";
    showDestination();
    return;
  }
  const music = musicWords(seg);
  const text = humanNow(music);
  ui.emotion.textContent = text;
  const detail = [seg.genre ? capital(words(seg.genre)) : null, seg.emotion ? `feels ${seg.emotion}` : null];
  ui.detail.textContent = detail.filter(Boolean).join(" · ");
  ui.segment.textContent = n ? `Part ${index + 1} of ${n}` : "";
  ui.prompt.textContent = seg.prompt ? `Prompt: ${seg.prompt}` : "";
  // Screen readers hear a change of music, not every part (a part lasts about half a minute);
  // a new destination is announced by itself (plan_changed).
  if (music !== state.nowMusic) announce(`Now playing: ${text}.`);
  state.nowMusic = music;
  showDestination();
}

const stripNulls = (o) => Object.fromEntries(Object.entries(o || {}).filter(([, v]) => v != null));

function announce(text) {
  ui.announcer.textContent = text;
}

// --- time --------------------------------------------------------------------------------------

const finite = (x) => (typeof x === "number" && Number.isFinite(x) ? x : null);

// Take the times an event or status carries; a field it does not carry keeps its (running) value.
function setClock(fields) {
  const c = state.clock;
  bankClock();
  if ("played_s" in fields) c.played = finite(fields.played_s);
  if ("total_s" in fields) c.total = finite(fields.total_s);
  if ("remaining_s" in fields) c.remaining = finite(fields.remaining_s);
  else if ("played_s" in fields || "total_s" in fields) c.remaining = null; // total − played then
  showTime();
}

// Bank the time counted since the last report: before a new report, and before pausing or
// resuming (so that the clock stands still while paused).
function bankClock() {
  const c = state.clock;
  const now = performance.now();
  const dt = state.status.state === "playing" ? Math.max(0, (now - c.at) / 1000) : 0;
  if (c.played != null) c.played = c.total != null ? Math.min(c.total, c.played + dt) : c.played + dt;
  if (c.remaining != null) c.remaining = Math.max(0, c.remaining - dt);
  c.at = now;
}

// The played length of a plan: where its last clip ends on the crossfaded grid (the daemon's
// total_s), for the events that bring a new plan but no total.
function planTotal(plan) {
  const end = (seg) => (finite(seg.start_s) != null && finite(seg.duration_s) != null ? seg.start_s + seg.duration_s : NaN);
  const ends = (plan?.segments || []).map(end);
  return ends.length && ends.every(Number.isFinite) ? Math.max(...ends) : null;
}

function clockNow() {
  const c = state.clock;
  const dt = state.status.state === "playing" ? Math.max(0, (performance.now() - c.at) / 1000) : 0;
  let played = c.played == null ? null : c.played + dt;
  if (played != null && c.total != null) played = Math.min(played, c.total);
  let remaining = c.remaining == null ? null : Math.max(0, c.remaining - dt);
  if (remaining == null && played != null && c.total != null) remaining = Math.max(0, c.total - played);
  return { played, total: c.total, remaining };
}

function clock(seconds) {
  if (seconds == null) return "–";
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

function showTime() {
  const { played, total, remaining } = clockNow();
  ui.elapsed.textContent = clock(played);
  ui.total.textContent = clock(total);
  ui.remaining.textContent = clock(remaining);
  const share = played != null && total ? Math.max(0, Math.min(1, played / total)) : 0;
  ui.progressFill.style.width = `${(share * 100).toFixed(1)}%`;
  ui.progress.setAttribute("aria-valuenow", String(Math.round(share * 100)));
  ui.progress.setAttribute("aria-valuetext",
    played != null && total ? `${clock(played)} of ${clock(total)}` : "unknown");
  showDestination();
}

// --- destination and arrival -------------------------------------------------------------------

// The part where the music reaches the target: the first from now on that carries the target's
// name, else the last part.
function arrivalSegment() {
  const segs = state.plan?.segments || [];
  if (!segs.length) return null;
  const from = state.status.segment_index ?? 0;
  const name = destinationEmotion(state.plan);
  return segs.find((s) => s.index >= from && s.emotion === name) || segs[segs.length - 1];
}

function secondsToArrival() {
  const seg = arrivalSegment();
  if (!seg || seg.start_s == null) return null;
  let played = clockNow().played;
  if (played == null) played = segmentAt(state.status.segment_index ?? 0)?.start_s ?? null;
  return played == null ? null : seg.start_s - played;
}

function arrived() {
  const seg = arrivalSegment();
  return seg != null && (state.status.segment_index ?? -1) >= seg.index;
}

function aboutMinutes(seconds) {
  if (seconds < 60) return "in under a minute";
  const m = Math.round(seconds / 60);
  return `in about ${m} minute${m === 1 ? "" : "s"}`;
}

function destinationText() {
  const to = destinationName(state.plan) || "the chosen feeling";
  if (arrived()) return `arrived at ${to}`;
  const eta = secondsToArrival();
  return eta == null ? `heading to ${to}` : `heading to ${to}, arriving ${aboutMinutes(Math.max(0, eta))}`;
}

function showDestination() {
  ui.destination.textContent = active() && state.plan ? capital(destinationText()) : "";
}

// --- other displays ----------------------------------------------------------------------------

function showBuffer(seconds, target) {
  const share = Math.max(0, Math.min(1, seconds / Math.max(target, 1)));
  ui.bufferFill.style.width = `${(share * 100).toFixed(0)}%`;
  ui.bufferText.textContent = `Buffer: ${seconds.toFixed(1)} s ahead`;
}

function showVolume(volume) {
  ui.volume.value = volume;
  showVolumeText();
}

function showVolumeText() {
  const pct = `${Math.round(Number(ui.volume.value) * 100)}%`;
  ui.volumeValue.textContent = pct;
  ui.volume.setAttribute("aria-valuetext", pct);
}

// A care limit (status.max_volume, when the daemon has one): the slider stops there and says so.
function showVolumeCap(cap) {
  const limit = finite(cap);
  ui.volume.max = limit != null && limit < 1 ? String(limit) : "1";
  ui.volumeCap.textContent = limit != null && limit < 1 ? `(limit ${Math.round(limit * 100)}%)` : "";
}

function showControls() {
  ui.pause.disabled = ui.skip.disabled = ui.stop.disabled = !active();
  ui.pause.textContent = state.status.state === "paused" ? "Resume" : "Pause";
  ui.chooseEmotion.textContent = state.checkin ? "This is how I feel" : active() ? "Lead there now" : "Use as destination";
}

// Presets and the check-in appear only when the daemon offers them.
function showFeatures() {
  // The status's list is the live one (a reloaded configuration); hello's serves until it comes.
  const presets = Array.isArray(state.status.presets) ? state.status.presets : state.helloPresets || [];
  const key = JSON.stringify(presets);
  if (ui.presets.dataset.key !== key) {
    ui.presets.dataset.key = key;
    ui.presets.replaceChildren(...presets.filter((p) => p && p.name && p.to).map(presetButton));
  }
  ui.presets.hidden = ui.presets.childElementCount === 0;
  ui.historySection.hidden = !state.commands.has("history");
  const canCheckin = state.commands.has("checkin");
  ui.checkinBefore.hidden = !canCheckin || active() || state.checkin != null;
  if (!canCheckin) ui.checkinAfter.hidden = true;
}

function presetButton(preset) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "quiet";
  button.textContent = preset.name;
  button.addEventListener("click", () => {
    const fields = { from: preset.from || ui.from.value.trim(), to: preset.to };
    for (const key of ["minutes", "clip_seconds", "path", "temperature", "seed"]) {
      if (preset[key] != null) fields[key] = preset[key];
    }
    requestStart(fields);
  });
  return button;
}

// --- the circle ------------------------------------------------------------------------------

const round = (x) => Math.round(x * 1000) / 1000;
const clampUnit = (x) => Math.max(-1, Math.min(1, x));

// The canvas spans exactly valence -1..1 (left to right) and arousal -1..1 (bottom to top).
function toCanvas(v, a, size) { return [((v + 1) / 2) * size, ((1 - a) / 2) * size]; }

function fromEvent(ev) {
  const rect = ui.canvas.getBoundingClientRect();
  const v = clampUnit(((ev.clientX - rect.left) / rect.width) * 2 - 1);
  const a = clampUnit(1 - ((ev.clientY - rect.top) / rect.height) * 2);
  return [round(v), round(a)];
}

// Names drawn where they fit: everyday words first, each kept only if its box clears the others
// and the axis words, so the labels stay at a readable size (>= 14 CSS px) on a phone and simply
// become fewer.
const AXIS_WORDS = ["high energy", "low energy", "unpleasant", "pleasant"];

function placeLabels(ctx, size, fontPx) {
  const rank = (e) => (PREFERRED.includes(e.name) ? PREFERRED.indexOf(e.name) : PREFERRED.length);
  const ordered = [...vocabulary].sort((a, b) => rank(a) - rank(b));
  const mid = size / 2;
  const band = fontPx * 1.5;
  const half = (word) => ctx.measureText(word).width / 2 + 4;
  const [top, bottom, left, right] = AXIS_WORDS.map(half);
  const boxes = [
    [mid - top, 0, mid + top, band], [mid - bottom, size - band, mid + bottom, size],
    [0, mid - left, band, mid + left], [size - band, mid - right, size, mid + right],
  ];
  const kept = [];
  for (const e of ordered) {
    const [x, y] = toCanvas(e.valence, e.arousal, size);
    const w = ctx.measureText(e.name).width + 6;
    const box = [x - w / 2, y - fontPx * 1.6, x + w / 2, y + 3];
    if (box[0] < 2 || box[2] > size - 2 || box[1] < 2 || box[3] > size - 2) continue;
    if (boxes.some((b) => box[0] < b[2] && b[0] < box[2] && box[1] < b[3] && b[1] < box[3])) continue;
    boxes.push(box);
    kept.push(e);
  }
  return kept;
}

function draw() {
  const canvas = ui.canvas;
  const ratio = window.devicePixelRatio || 1;
  const size = canvas.getBoundingClientRect().width || 520;
  if (canvas.width !== Math.round(size * ratio)) { canvas.width = canvas.height = Math.round(size * ratio); }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, size, size);
  const mid = size / 2;
  const style = getComputedStyle(document.documentElement);
  const color = (name) => style.getPropertyValue(name).trim();
  const scale = Number(color("--label-scale")) || 1;
  const fontPx = Math.round(Math.max(14, size / 34) * scale);
  const family = getComputedStyle(document.body).fontFamily || "sans-serif";

  // A soft wash toward the middle; never alarming.
  // (It fades to the same colour at alpha 0: fading to transparent black would grey the circle.)
  const washColor = color("--wash");
  const wash = ctx.createRadialGradient(mid, mid, 0, mid, mid, mid);
  wash.addColorStop(0, washColor);
  wash.addColorStop(1, washColor.replace(/,\s*[\d.]+\)$/, ", 0)"));
  ctx.fillStyle = wash;
  ctx.beginPath(); ctx.arc(mid, mid, mid * 0.98, 0, 2 * Math.PI); ctx.fill();

  ctx.strokeStyle = color("--line");
  ctx.lineWidth = 1;
  ctx.beginPath(); ctx.arc(mid, mid, mid * 0.9, 0, 2 * Math.PI); ctx.stroke();
  ctx.beginPath(); ctx.moveTo(mid, size * 0.06); ctx.lineTo(mid, size * 0.94);
  ctx.moveTo(size * 0.06, mid); ctx.lineTo(size * 0.94, mid); ctx.stroke();

  // A dot at each emotion's exact point, its name just above, clear of the path markers.
  ctx.font = `${fontPx}px ${family}`;
  ctx.textAlign = "center"; ctx.textBaseline = "alphabetic";
  const labels = placeLabels(ctx, size, fontPx);
  ctx.fillStyle = color("--muted");
  for (const e of labels) {
    const [x, y] = toCanvas(e.valence, e.arousal, size);
    ctx.beginPath(); ctx.arc(x, y, 2, 0, 2 * Math.PI); ctx.fill();
    ctx.fillText(e.name, x, y - fontPx * 0.45);
  }
  canvas.dataset.labelPx = String(fontPx);
  document.body.dataset.labels = labels.map((e) => e.name).join(" ");

  ctx.fillStyle = color("--accent");
  ctx.textBaseline = "middle";
  const edge = fontPx * 0.75;
  const [high, low, unpleasant, pleasant] = AXIS_WORDS;
  ctx.fillText(high, mid, edge);
  ctx.fillText(low, mid, size - edge);
  ctx.save(); ctx.translate(edge, mid); ctx.rotate(-Math.PI / 2); ctx.fillText(unpleasant, 0, 0); ctx.restore();
  ctx.save(); ctx.translate(size - edge, mid); ctx.rotate(Math.PI / 2); ctx.fillText(pleasant, 0, 0); ctx.restore();

  const plan = state.plan;
  const current = state.status.segment_index ?? 0;
  if (plan?.segments?.length && plan.target && active()) {
    const pts = plan.segments.map((s) => toCanvas(s.valence, s.arousal, size));
    ctx.strokeStyle = color("--accent"); ctx.globalAlpha = 0.55; ctx.lineWidth = 2.5; ctx.lineJoin = "round";
    ctx.beginPath(); pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y))); ctx.stroke();
    ctx.globalAlpha = 1;
    plan.segments.forEach((s, i) => {
      const [x, y] = pts[i];
      ctx.fillStyle = s.index < current ? color("--accent-soft") : color("--accent");
      ctx.beginPath(); ctx.arc(x, y, 3.5, 0, 2 * Math.PI); ctx.fill();
    });
    const [tx, ty] = toCanvas(plan.target.valence, plan.target.arousal, size);
    ctx.strokeStyle = color("--accent"); ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(tx, ty, 10, 0, 2 * Math.PI); ctx.stroke();
  }
  if (state.pending) {
    const [px, py] = toCanvas(state.pending[0], state.pending[1], size);
    ctx.strokeStyle = color("--muted"); ctx.setLineDash([4, 4]); ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.arc(px, py, 10, 0, 2 * Math.PI); ctx.stroke(); ctx.setLineDash([]);
  }
  if (state.position && active()) {
    const [x, y] = toCanvas(state.position[0], state.position[1], size);
    ctx.fillStyle = color("--marker-halo");
    ctx.beginPath(); ctx.arc(x, y, 16, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = color("--ink");
    ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.fill();
  }
  // The keyboard marker: a cross in a ring, drawn while the circle has the focus.
  if (state.cursor && document.activeElement === canvas) {
    const [x, y] = toCanvas(state.cursor[0], state.cursor[1], size);
    ctx.strokeStyle = color("--focus"); ctx.lineWidth = 2.5;
    ctx.beginPath(); ctx.arc(x, y, 12, 0, 2 * Math.PI);
    ctx.moveTo(x - 18, y); ctx.lineTo(x - 6, y); ctx.moveTo(x + 6, y); ctx.lineTo(x + 18, y);
    ctx.moveTo(x, y - 18); ctx.lineTo(x, y - 6); ctx.moveTo(x, y + 6); ctx.lineTo(x, y + 18);
    ctx.stroke();
  }
}

// One choice of a point on the circle, by click, keyboard or the list: a check-in, a re-target of
// the running session, or the destination of the next one.
function choosePoint(valence, arousal, spec) {
  if (state.checkin) return recordCheckin(valence, arousal);
  if (active()) {
    state.pending = [valence, arousal];
    draw();
    const target = spec || { valence, arousal };
    command("set_target", { target }).then((result) => {
      if (result && result.plan) setPlan(result.plan, true);
      state.pending = null;
      showNow({}, state.status.segment_index);
      draw();
    }, () => { state.pending = null; draw(); });
  } else {
    state.pending = [valence, arousal];
    ui.to.value = spec || `${valence},${arousal}`;
    announce(`Destination for the next session: ${spec || describePoint(valence, arousal)}.`);
    draw();
  }
}

function describePoint(v, a) {
  const near = nearestEmotion(v, a);
  const where = `${v >= 0 ? "pleasant" : "unpleasant"} ${Math.abs(v).toFixed(2)}, ` +
    `energy ${a >= 0 ? "+" : "−"}${Math.abs(a).toFixed(2)}`;
  return near ? `near ${near.name} (${where})` : where;
}

ui.canvas.addEventListener("click", (ev) => {
  const [valence, arousal] = fromEvent(ev);
  choosePoint(valence, arousal);
});

// Keyboard: the marker starts where the music leads (or the middle), on the hundredths; arrows
// move it by 0.05, with Shift by 0.2 (hundredths again, so repeated steps land on exact values);
// Enter or Space chooses.
const KEY_STEPS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };

function startCursor() {
  if (state.plan && active()) return [state.plan.target.valence, state.plan.target.arousal];
  const named = vocabulary.find((e) => e.name === ui.to.value.trim());
  if (named && !state.checkin) return [named.valence, named.arousal];
  return [0, 0];
}

function showCursor() {
  const [v, a] = state.cursor;
  ui.readout.textContent = `Marker ${describePoint(v, a)}`;
  draw();
}

const hundredths = (x) => Math.round(x * 100) / 100;

ui.canvas.addEventListener("focus", () => {
  if (!state.cursor) state.cursor = startCursor().map(hundredths);
  showCursor();
});
ui.canvas.addEventListener("blur", () => { ui.readout.textContent = ""; draw(); });
ui.canvas.addEventListener("keydown", (ev) => {
  const step = KEY_STEPS[ev.key];
  if (step) {
    ev.preventDefault();
    const by = ev.shiftKey ? 0.2 : 0.05;
    const [v, a] = state.cursor || startCursor();
    state.cursor = [clampUnit(hundredths(v + step[0] * by)), clampUnit(hundredths(a + step[1] * by))];
    showCursor();
  } else if ((ev.key === "Enter" || ev.key === " ") && state.cursor) {
    ev.preventDefault();
    choosePoint(round(state.cursor[0]), round(state.cursor[1]));
  }
});

// The list of feelings: the circle's text equivalent, grouped by quadrant.
function fillEmotionList() {
  const groups = [
    ["Pleasant, more energy", (e) => e.valence >= 0 && e.arousal >= 0],
    ["Pleasant, less energy", (e) => e.valence >= 0 && e.arousal < 0],
    ["Unpleasant, less energy", (e) => e.valence < 0 && e.arousal < 0],
    ["Unpleasant, more energy", (e) => e.valence < 0 && e.arousal >= 0],
  ];
  const sorted = [...vocabulary].sort((a, b) => a.name.localeCompare(b.name));
  const optgroups = groups.map(([label, test]) => {
    const group = document.createElement("optgroup");
    group.label = label;
    for (const e of sorted.filter(test)) group.append(new Option(e.name, e.name));
    return group;
  });
  ui.emotionSelect.replaceChildren(...optgroups);
  ui.emotionSelect.value = vocabulary.some((e) => e.name === "calm") ? "calm" : sorted[0]?.name ?? "";
  ui.names.replaceChildren(...sorted.map((e) => new Option(e.name)));
}

ui.chooseEmotion.addEventListener("click", () => {
  const e = vocabulary.find((x) => x.name === ui.emotionSelect.value);
  if (e) choosePoint(round(e.valence), round(e.arousal), state.checkin ? null : e.name);
});

// --- check-in --------------------------------------------------------------------------------

const HINT = ui.hint.textContent;

function enterCheckin(when) {
  state.checkin = when;
  document.body.dataset.mode = "checkin";
  ui.hint.textContent = "How do you feel right now? Tap the circle where you are — " +
    "or use the arrow keys and Enter, or pick a feeling from the list.";
  ui.checkinBar.hidden = false;
  ui.checkinAfter.hidden = true;
  state.cursor = [0, 0];
  showFeatures();
  showControls();
  ui.canvas.focus();
  announce("Check-in: how do you feel right now?");
}

function leaveCheckin() {
  state.checkin = null;
  delete document.body.dataset.mode;
  ui.hint.textContent = HINT;
  ui.checkinBar.hidden = true;
  showFeatures();
  showControls();
}

function recordCheckin(valence, arousal) {
  const when = state.checkin;
  command("checkin", { when, valence, arousal }).then(() => {
    // Before a session, where the listener is is where the music starts (the iso principle).
    if (when === "before") ui.from.value = `${valence},${arousal}`;
    announce(`Thank you. Noted: ${describePoint(valence, arousal)}.`);
    ui.readout.textContent = "Thank you, noted.";
    leaveCheckin();
    refreshHistory();
  }, () => {});
}

ui.checkinBefore.addEventListener("click", () => enterCheckin("before"));
ui.checkinAfterGo.addEventListener("click", () => enterCheckin("after"));
ui.checkinAfterSkip.addEventListener("click", () => { ui.checkinAfter.hidden = true; });
ui.checkinCancel.addEventListener("click", () => { leaveCheckin(); announce("Check-in skipped."); });

// --- controls --------------------------------------------------------------------------------

function startFields() {
  const fields = { from: ui.from.value.trim(), to: ui.to.value.trim() };
  if (ui.minutes.value) fields.minutes = Number(ui.minutes.value);
  return fields;
}

function doStart(fields) {
  // The listener confirmed in the dialog when a session plays: the daemon refuses otherwise.
  const confirmed = active() ? { ...fields, replace: true } : fields;
  command("start", confirmed).then(() => send("status")).then(applyStatus, () => {});
}

// Start while a session plays asks first (in the page: window.confirm is blocked in kiosks and
// cannot be styled); "keep listening" is the default, the least harmful answer.
let askedFields = null;
function requestStart(fields) {
  if (!active()) return doStart(fields);
  askedFields = fields;
  const { played, total } = clockNow();
  const where = played != null && total != null ? ` (${clock(played)} of ${clock(total)})` : "";
  // Offer "only lead this one there" when that is a change.
  const sameTarget = state.plan && fields.to === targetSpec(state.plan);
  ui.dialogText.textContent = `The music is ${describeJourney(state.plan)}${where}. ` +
    `Start a new session from ${fields.from} to ${fields.to} instead` +
    (sameTarget ? "?" : `, or only lead this one to ${fields.to}?`);
  ui.dialogRetarget.textContent = `Only lead this one to ${fields.to}`;
  ui.dialogRetarget.hidden = sameTarget;
  ui.dialog.returnValue = ""; // Escape keeps the previous value otherwise
  ui.dialog.showModal();
}

ui.dialog.addEventListener("close", () => {
  const fields = askedFields;
  askedFields = null;
  if (!fields) return;
  if (ui.dialog.returnValue === "start") doStart(fields);
  else if (ui.dialog.returnValue === "retarget") choosePoint(...targetPointOf(fields.to), fields.to);
});

function targetPointOf(spec) {
  const named = vocabulary.find((e) => e.name === spec);
  if (named) return [round(named.valence), round(named.arousal)];
  const parts = spec.split(",").map(Number);
  return parts.length === 2 && parts.every(Number.isFinite) ? parts : [0, 0];
}

ui.startForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  requestStart(startFields());
});
ui.pause.addEventListener("click", () => {
  command(state.status.state === "paused" ? "resume" : "pause").catch(() => {});
});
ui.skip.addEventListener("click", () => command("skip").catch(() => {}));
ui.stop.addEventListener("click", () => command("stop").catch(() => {}));
ui.volume.addEventListener("input", showVolumeText);
ui.volume.addEventListener("change", () => command("volume", { volume: Number(ui.volume.value) }).catch(() => {}));
document.getElementById("auth-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("musicmed-token", ui.token.value);
  socket.close();
});

// --- listening history ---------------------------------------------------------------------------

// The latest sessions, asked for when the listener opens "History" (and again when a session starts
// or ends, or a check-in is noted, while it is open). Each is told in words; the little circle
// beside it shows the same check-ins and is hidden from screen readers.
const HISTORY_LIMIT = 10;
const ENDINGS = { finished: "finished", stopped: "stopped early", error: "ended by a fault" };
const isPoint = (label) => /^[-+]?[\d.]/.test(label || "");

// A state as a word: its label when that is a name, else "near" the nearest emotion.
function placeName(label, point) {
  if (label && !isPoint(label)) return label;
  const near = Array.isArray(point) ? nearestEmotion(point[0], point[1]) : null;
  return near ? `near ${near.name}` : label || "?";
}

function feltName(checkin) {
  if (!checkin) return null;
  const near = nearestEmotion(checkin.valence, checkin.arousal);
  return near ? near.name : `${round(checkin.valence)},${round(checkin.arousal)}`;
}

function lastCheckin(entry, moment) {
  const list = (entry.checkins || []).filter((c) => c.moment === moment);
  return list.length ? list[list.length - 1] : null;
}

function minutesText(seconds) {
  if (seconds == null) return "?";
  const m = Math.round(seconds / 60);
  return seconds < 60 ? "under a minute" : `${m} min`;
}

function refreshHistory() {
  if (ui.history.open && state.commands.has("history")) loadHistory();
}

function loadHistory() {
  ui.history.setAttribute("aria-busy", "true");
  send("history", { limit: HISTORY_LIMIT }).then((result) => {
    const sessions = Array.isArray(result?.sessions) ? result.sessions : [];
    ui.historyList.replaceChildren(...sessions.map(historyItem));
    ui.historyNote.textContent = sessions.length
      ? `The latest ${sessions.length === 1 ? "session" : `${sessions.length} sessions`}, newest first.`
      : "No sessions yet.";
  }, (err) => {
    ui.historyList.replaceChildren();
    ui.historyNote.textContent = `The history is not available: ${err.message}`;
  }).finally(() => ui.history.removeAttribute("aria-busy"));
}

function historyItem(entry) {
  const li = document.createElement("li");
  li.className = "history-item";
  li.dataset.session = entry.id;
  const text = document.createElement("div");
  text.className = "history-text";

  const when = document.createElement("time");
  const date = new Date(entry.started_at * 1000);
  when.dateTime = date.toISOString();
  when.textContent = date.toLocaleString(undefined, {
    weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
  });
  const journey = document.createElement("p");
  journey.className = "history-journey";
  journey.textContent = `${placeName(entry.start_label, entry.start)} → ${placeName(entry.target_label, entry.target)}`;

  const playing = entry.end_reason == null && entry.id === state.status.session_id && active();
  const played = playing ? clockNow().played : entry.played_s;
  const ending = playing ? "playing now" : ENDINGS[entry.end_reason] || (entry.end_reason ?? "did not end");
  const length = document.createElement("p");
  length.className = "small history-length";
  length.textContent = `${played == null ? "–" : `Played ${minutesText(played)}`} of ${minutesText(entry.planned_s)} · ${ending}`;

  const before = lastCheckin(entry, "before");
  const after = lastCheckin(entry, "after");
  const felt = document.createElement("p");
  felt.className = "history-felt";
  if (before && after) felt.textContent = `Felt ${feltName(before)} → ${feltName(after)}`;
  else if (before) felt.textContent = `Felt ${feltName(before)} before`;
  else if (after) felt.textContent = `Felt ${feltName(after)} after`;
  else felt.textContent = "No check-in";

  text.append(when, journey, length, felt);
  li.append(text);
  if (before || after) li.append(miniCircle(before, after));
  return li;
}

// A small circumplex with the check-ins: before as a ring, after as a dot, a line between them.
function miniCircle(before, after) {
  const NS = "http://www.w3.org/2000/svg";
  const make = (tag, attrs, cls) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (cls) el.setAttribute("class", cls);
    return el;
  };
  const at = (c) => [22 + 18 * c.valence, 22 - 18 * c.arousal];
  const svg = make("svg", { viewBox: "0 0 44 44", width: 44, height: 44, "aria-hidden": "true", focusable: "false" }, "mini");
  svg.append(make("circle", { cx: 22, cy: 22, r: 20 }, "mini-ring"));
  svg.append(make("path", { d: "M22 4V40M4 22H40" }, "mini-axes"));
  if (before && after) {
    const [x1, y1] = at(before);
    const [x2, y2] = at(after);
    svg.append(make("line", { x1, y1, x2, y2 }, "mini-move"));
  }
  if (before) { const [x, y] = at(before); svg.append(make("circle", { cx: x, cy: y, r: 3.5 }, "mini-before")); }
  if (after) { const [x, y] = at(after); svg.append(make("circle", { cx: x, cy: y, r: 3.5 }, "mini-after")); }
  return svg;
}

ui.history.addEventListener("toggle", () => { if (ui.history.open) loadHistory(); });

// --- display preferences (remembered on this device) ---------------------------------------------

function remember(key, value) {
  try { if (value == null) localStorage.removeItem(key); else localStorage.setItem(key, value); } catch { /* private mode */ }
}
function recall(key) {
  try { return localStorage.getItem(key); } catch { return null; }
}

function applyTheme(choice) {
  const root = document.documentElement;
  if (choice === "light" || choice === "dark") root.dataset.theme = choice;
  else delete root.dataset.theme;
  ui.theme.value = root.dataset.theme || "auto";
  draw();
}

function applyTextSize(large) {
  const root = document.documentElement;
  if (large) root.dataset.text = "large";
  else delete root.dataset.text;
  ui.textSize.setAttribute("aria-pressed", String(large));
  draw();
}

ui.theme.addEventListener("change", () => {
  const choice = ui.theme.value === "auto" ? null : ui.theme.value;
  remember("musicmed-theme", choice);
  applyTheme(choice);
});
ui.textSize.addEventListener("click", () => {
  const large = ui.textSize.getAttribute("aria-pressed") !== "true";
  remember("musicmed-text", large ? "large" : null);
  applyTextSize(large);
});
window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", draw);
window.addEventListener("resize", draw);

// --- start-up ----------------------------------------------------------------------------------

// The clock ticks here between the daemon's reports; a slow status poll keeps it honest (and
// catches up after a reconnect).
setInterval(showTime, 500);
setInterval(() => {
  if (document.body.dataset.connection === "ready") send("status").then(applyStatus, () => {});
}, 2000);

fetch("emotions.json").then((r) => r.json()).then((list) => {
  vocabulary = list;
  fillEmotionList();
  showNow({}, state.status.segment_index);
  draw();
}, () => {});

applyTheme(recall("musicmed-theme"));
applyTextSize(recall("musicmed-text") === "large");
showVolumeText();
showControls();
showTime();
draw();
connect();
