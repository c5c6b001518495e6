// musicmed-stream companion page: a clickable valence-arousal circle steering the daemon live.
// Speaks the control protocol (docs/protocol.md) over the websocket at /ws on this page's own origin.
"use strict";

// Emotion names drawn on the circle: the daemon's own vocabulary (/emotions.json), thinned out so
// that labels do not overlap. They orient the listener; the daemon resolves every target itself.
let labels = [];
const LABEL_SPACING = 0.3;

// Everyday words first; the rest of the vocabulary fills the gaps.
const PREFERRED = ["happy", "calm", "sad", "angry", "relaxed", "excited", "tense", "tired", "content",
  "anxious", "depressed", "peaceful", "energetic", "gloomy", "sleepy", "scared", "bored", "determined"];

function pickLabels(vocabulary) {
  const rank = (e) => (PREFERRED.includes(e.name) ? PREFERRED.indexOf(e.name) : PREFERRED.length);
  const ordered = [...vocabulary].sort((a, b) => rank(a) - rank(b));
  const kept = [];
  for (const e of ordered) {
    if (kept.every((k) => Math.hypot(k.valence - e.valence, (k.arousal - e.arousal) * 1.6) >= LABEL_SPACING)) {
      kept.push(e);
    }
  }
  return kept;
}

const ui = {
  canvas: document.getElementById("circumplex"),
  connection: document.getElementById("connection"),
  emotion: document.getElementById("now-emotion"),
  prompt: document.getElementById("now-prompt"),
  segment: document.getElementById("now-segment"),
  bufferFill: document.getElementById("buffer-fill"),
  bufferText: document.getElementById("buffer-text"),
  from: document.getElementById("from"),
  to: document.getElementById("to"),
  minutes: document.getElementById("minutes"),
  pause: document.getElementById("pause"),
  skip: document.getElementById("skip"),
  stop: document.getElementById("stop"),
  volume: document.getElementById("volume"),
  auth: document.getElementById("auth"),
  token: document.getElementById("token"),
  message: document.getElementById("message"),
};

const state = { status: { state: "idle" }, plan: null, position: null, pending: null, bufferTarget: 10 };
let socket = null;
let nextId = 1;
const waiting = new Map();
let retryMs = 500;

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
    applyStatus(await send("status"));
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
  if (msg.type === "event") onEvent(msg.event, msg.data);
}

// --- daemon state ----------------------------------------------------------------------------

function applyStatus(s) {
  state.status = s;
  if (s.plan) state.plan = s.plan;
  if (s.valence != null && s.arousal != null) state.position = [s.valence, s.arousal];
  if (s.volume != null && document.activeElement !== ui.volume) ui.volume.value = s.volume;
  if (s.buffer_s != null) showBuffer(s.buffer_s, state.bufferTarget);
  showNow(s.emotion, s.prompt, s.segment_index);
  showControls();
  draw();
}

function onEvent(type, data) {
  switch (type) {
    case "session_started":
      state.plan = data.plan; state.status.state = "playing"; state.pending = null; break;
    case "plan_changed":
      state.plan = data.plan; state.pending = null; break;
    case "segment_started":
      state.position = [data.valence, data.arousal];
      state.status.segment_index = data.index;
      showNow(data.emotion, data.prompt, data.index); break;
    case "buffer_level":
      state.bufferTarget = data.target_seconds || state.bufferTarget;
      showBuffer(data.seconds, state.bufferTarget); break;
    case "paused": state.status.state = "paused"; break;
    case "resumed": state.status.state = "playing"; break;
    case "volume": if (document.activeElement !== ui.volume) ui.volume.value = data.volume; break;
    case "error": ui.message.textContent = data.message; break;
    case "session_ended":
      state.status.state = "idle"; showNow(null, `Session ${data.reason}`, null); break;
  }
  showControls();
  draw();
}

function showNow(emotion, prompt, index) {
  const name = emotion ? emotion[0].toUpperCase() + emotion.slice(1) : null;
  ui.emotion.textContent = name || (state.status.state === "idle" ? "Nothing playing" : "…");
  ui.prompt.textContent = prompt || "";
  const n = state.plan ? state.plan.segments.length : 0;
  ui.segment.textContent = index != null && n ? `Part ${index + 1} of ${n}` : "";
}

function showBuffer(seconds, target) {
  const share = Math.max(0, Math.min(1, seconds / Math.max(target, 1)));
  ui.bufferFill.style.width = `${(share * 100).toFixed(0)}%`;
  ui.bufferText.textContent = `Buffer: ${seconds.toFixed(1)} s ahead`;
}

function showControls() {
  const active = state.status.state === "playing" || state.status.state === "paused";
  ui.pause.disabled = ui.skip.disabled = ui.stop.disabled = !active;
  ui.pause.textContent = state.status.state === "paused" ? "Resume" : "Pause";
}

// --- the circle ------------------------------------------------------------------------------

// The canvas spans exactly valence -1..1 (left to right) and arousal -1..1 (bottom to top).
function toCanvas(v, a, size) { return [((v + 1) / 2) * size, ((1 - a) / 2) * size]; }

function fromEvent(ev) {
  const rect = ui.canvas.getBoundingClientRect();
  const clamp = (x) => Math.max(-1, Math.min(1, x));
  const v = clamp(((ev.clientX - rect.left) / rect.width) * 2 - 1);
  const a = clamp(1 - ((ev.clientY - rect.top) / rect.height) * 2);
  return [Math.round(v * 1000) / 1000, Math.round(a * 1000) / 1000];
}

function draw() {
  const canvas = ui.canvas;
  const ratio = window.devicePixelRatio || 1;
  const css = canvas.getBoundingClientRect().width || 520;
  if (canvas.width !== Math.round(css * ratio)) { canvas.width = canvas.height = Math.round(css * ratio); }
  const ctx = canvas.getContext("2d");
  const size = css;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, size, size);
  const mid = size / 2;
  const style = getComputedStyle(document.documentElement);
  const color = (name) => style.getPropertyValue(name).trim();

  // Quadrant washes: warm above (activated), cool below (deactivated); soft, never alarming.
  const wash = ctx.createRadialGradient(mid, mid, 0, mid, mid, mid);
  wash.addColorStop(0, "rgba(201, 221, 217, 0.55)");
  wash.addColorStop(1, "rgba(244, 241, 236, 0)");
  ctx.fillStyle = wash;
  ctx.beginPath(); ctx.arc(mid, mid, mid * 0.98, 0, 2 * Math.PI); ctx.fill();

  ctx.strokeStyle = color("--line");
  ctx.lineWidth = 1;
  ctx.beginPath(); ctx.arc(mid, mid, mid * 0.9, 0, 2 * Math.PI); ctx.stroke();
  ctx.beginPath(); ctx.moveTo(mid, size * 0.04); ctx.lineTo(mid, size * 0.96);
  ctx.moveTo(size * 0.04, mid); ctx.lineTo(size * 0.96, mid); ctx.stroke();

  ctx.fillStyle = color("--muted");
  ctx.font = `${Math.round(size / 40)}px sans-serif`;
  ctx.textAlign = "center"; ctx.textBaseline = "middle";
  // A faint dot at each emotion's exact point, its name just above, clear of the path markers.
  for (const e of labels) {
    const [x, y] = toCanvas(e.valence, e.arousal, size);
    ctx.globalAlpha = 0.5;
    ctx.beginPath(); ctx.arc(x, y, 1.8, 0, 2 * Math.PI); ctx.fill();
    ctx.globalAlpha = 1;
    ctx.fillText(e.name, x, y - size / 55);
  }
  ctx.font = `${Math.round(size / 48)}px sans-serif`;
  ctx.fillStyle = color("--accent");
  ctx.fillText("high energy", mid, size * 0.025);
  ctx.fillText("low energy", mid, size * 0.975);
  ctx.save(); ctx.translate(size * 0.025, mid); ctx.rotate(-Math.PI / 2); ctx.fillText("unpleasant", 0, 0); ctx.restore();
  ctx.save(); ctx.translate(size * 0.975, mid); ctx.rotate(Math.PI / 2); ctx.fillText("pleasant", 0, 0); ctx.restore();

  const plan = state.plan;
  const current = state.status.segment_index ?? 0;
  if (plan && plan.segments.length) {
    const pts = plan.segments.map((s) => toCanvas(s.valence, s.arousal, size));
    ctx.strokeStyle = color("--accent"); ctx.globalAlpha = 0.55; ctx.lineWidth = 2.5; ctx.lineJoin = "round";
    ctx.beginPath(); pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y))); ctx.stroke();
    ctx.globalAlpha = 1;
    plan.segments.forEach((s, i) => {
      const [x, y] = pts[i];
      ctx.fillStyle = i < current ? color("--accent-soft") : color("--accent");
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
  if (state.position && state.status.state !== "idle") {
    const [x, y] = toCanvas(state.position[0], state.position[1], size);
    ctx.fillStyle = "rgba(91, 143, 138, 0.22)";
    ctx.beginPath(); ctx.arc(x, y, 16, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = color("--ink");
    ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.fill();
  }
}

ui.canvas.addEventListener("click", (ev) => {
  const [valence, arousal] = fromEvent(ev);
  state.pending = [valence, arousal];
  draw();
  if (state.status.state === "playing" || state.status.state === "paused") {
    command("set_target", { target: { valence, arousal } }).then((result) => {
      if (result && result.plan) state.plan = result.plan;
      state.pending = null;
      draw();
    }, () => {});
  } else {
    ui.to.value = `${valence},${arousal}`;
  }
});

// --- controls --------------------------------------------------------------------------------

document.getElementById("start-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const fields = { from: ui.from.value.trim(), to: ui.to.value.trim() };
  if (ui.minutes.value) fields.minutes = Number(ui.minutes.value);
  command("start", fields).then(() => send("status")).then(applyStatus, () => {});
});
ui.pause.addEventListener("click", () => {
  command(state.status.state === "paused" ? "resume" : "pause").catch(() => {});
});
ui.skip.addEventListener("click", () => command("skip").catch(() => {}));
ui.stop.addEventListener("click", () => command("stop").catch(() => {}));
ui.volume.addEventListener("change", () => command("volume", { volume: Number(ui.volume.value) }).catch(() => {}));
document.getElementById("auth-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("musicmed-token", ui.token.value);
  socket.close();
});
window.addEventListener("resize", draw);

// The daemon pushes events; a slow status poll keeps played time and buffer honest after a reconnect.
setInterval(() => {
  if (document.body.dataset.connection === "ready") send("status").then(applyStatus, () => {});
}, 2000);

fetch("emotions.json").then((r) => r.json()).then((vocabulary) => {
  labels = pickLabels(vocabulary);
  document.body.dataset.labels = labels.map((e) => e.name).join(" ");
  draw();
}, () => {});

showControls();
draw();
connect();
