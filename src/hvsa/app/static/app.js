// hvsa annotation page: plain JS, no build step.
// Labels live in one Uint8Array over the sample's box (255 = unlabelled); every tool edits it,
// clipped to the sample's region. Clicks are counted here, per tool, and sent with the labels.
"use strict";

const $ = (id) => document.getElementById(id);
// an element holding plain text: names from the workspace never reach innerHTML
function el(tag, className = "", text = "") {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text) e.textContent = text;
  return e;
}
const VOID = 255;
const IDLE_AFTER_MS = 30000; // no input for this long: the clock of active time stops
const MAX_UNDO = 100;
const AUTOSAVE_MS = 3000; // work in progress is kept on the server this often (when it changed)

const S = {
  token: localStorage.getItem("hvsa-token") || "",
  round: null, // {video, round}
  sample: null, // the sample's description from the server
  classes: [],
  cls: 0,
  layerClass: null, // a class-layer task: the one class it asks for (others are locked)
  tool: "polygon",
  labels: null, prefill: null, region: null, superpixels: null,
  undo: [], redo: [],
  polygon: [], // open polygon: vertices in box coordinates
  stroke: null,
  zoom: 1, fit: 1, view: null, // viewport over the frame {x, y, w, h}
  shownFrame: 0, frameImages: new Map(),
  clicks: {}, active: 0, lastInput: 0, started: 0,
  dirty: false, saving: false, // work not yet autosaved; a save under way
};

// ---------------------------------------------------------------- server
async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + S.token }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let text = response.statusText;
    try {
      const j = await response.json();
      text = j.error || (Array.isArray(j.detail) ? j.detail.map((d) => d.msg).join("; ") : JSON.stringify(j));
    } catch (e) { /* not JSON */ }
    throw new Error(text);
  }
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.blob();
}

async function pixels(path) {
  // a PNG layer as RGBA bytes
  const bitmap = await createImageBitmap(await api(path));
  const c = new OffscreenCanvas(bitmap.width, bitmap.height);
  const g = c.getContext("2d");
  g.drawImage(bitmap, 0, 0);
  return g.getImageData(0, 0, bitmap.width, bitmap.height).data;
}

function say(text, kind = "info") {
  const m = $("message");
  m.textContent = text;
  m.className = kind;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { m.className = ""; }, kind === "error" ? 8000 : 4000);
}

// ---------------------------------------------------------------- rounds
async function signIn(event) {
  if (event) event.preventDefault();
  S.token = $("token").value.trim() || S.token;
  try {
    const me = await api("/api/me");
    localStorage.setItem("hvsa-token", S.token);
    $("who").textContent = "signed in as " + me.annotator + (me.admin ? " (admin)" : "");
    $("admin").hidden = !me.admin;
    await loadRounds();
    if (me.admin) await loadHolds();
  } catch (e) {
    $("who").textContent = "";
    say(e.message, "error");
  }
}

async function loadRounds() {
  const list = $("rounds");
  const rounds = await api("/api/rounds");
  list.replaceChildren();
  if (!rounds.length) list.appendChild(el("li", "muted", "no round is waiting for labels"));
  for (const r of rounds) {
    // names come from the workspace: text nodes only, never HTML
    const li = el("li", "round");
    li.dataset.video = r.video;
    li.dataset.round = r.round;
    li.append(el("b", "", r.video), ` round ${r.round}`, document.createElement("br"),
      el("span", "muted", `${r.granularity}: ${r.submitted}/${r.samples} submitted, ` +
        `${r.held} in work`));
    const b = document.createElement("button");
    b.textContent = "Label";
    b.onclick = () => openRound(r.video, r.round);
    li.prepend(b);
    list.appendChild(li);
  }
  return rounds;
}

async function loadHolds() {
  // the admin view: who holds which sample, how long their lease has left, and a release
  const list = $("holds");
  const holds = await api("/api/admin/holds");
  list.replaceChildren();
  if (!holds.length) list.appendChild(el("li", "muted", "nobody holds a sample"));
  for (const h of holds) {
    const li = el("li", "hold");
    li.dataset.sample = h.sample_id;
    const saved = h.saved ? `saved ${new Date(h.saved * 1000).toLocaleTimeString()}` : "nothing saved";
    li.append(el("b", "", h.annotator), ` ${h.video} r${h.round} sample ${h.sample_id}`,
      document.createElement("br"),
      el("span", "muted", `${saved}, lease ${Math.round(h.lease_left_s / 60)} min left`));
    const b = document.createElement("button");
    b.textContent = "Release";
    b.onclick = async () => {
      try {
        const r = await api(`/api/admin/release/${h.video}/${h.round}/${h.sample_id}`, { method: "POST" });
        say(`sample ${r.released} released (held by ${r.held_by})`);
      } catch (e) { say(e.message, "error"); }
      await loadHolds();
    };
    li.prepend(b);
    list.appendChild(li);
  }
}

async function openRound(video, round) {
  S.round = { video, round };
  S.layerClass = null;
  try {
    S.classes = await api(`/api/rounds/${video}/${round}/classes`);
    drawClassButtons();
    await nextSample();
  } catch (e) { say(e.message, "error"); }
}

function base() { return `/api/rounds/${S.round.video}/${S.round.round}`; }

async function nextSample() {
  const s = await api(base() + "/next", { method: "POST" });
  if (s.sample_id === null) {
    S.sample = null;
    $("work").hidden = true;
    $("idle").hidden = false;
    $("idle-text").textContent = s.message;
    await loadRounds();
    return;
  }
  const p = `${base()}/samples/${s.sample_id}`;
  const [region, prefill, sp] = await Promise.all(
    [pixels(p + "/region.png"), pixels(p + "/prefill.png"), pixels(p + "/superpixels.png")]);
  const n = (s.box.x1 - s.box.x0) * (s.box.y1 - s.box.y0);
  S.region = new Uint8Array(n); S.prefill = new Uint8Array(n); S.superpixels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    S.region[i] = region[4 * i] > 127 ? 1 : 0;
    S.prefill[i] = prefill[4 * i];
    S.superpixels[i] = sp[4 * i] + 256 * sp[4 * i + 1];
  }
  S.sample = s;
  S.outline = outline();
  S.labels = S.prefill.slice(); // start from hvsa's labels of the frame: correct, don't redraw
  S.undo = []; S.redo = []; S.polygon = []; S.stroke = null;
  S.clicks = {}; S.active = 0; S.started = Date.now() / 1000; S.lastInput = Date.now();
  S.dirty = false;
  $("saved").textContent = "";
  await restoreDraft(p, n);
  S.shownFrame = s.frame; S.frameImages = new Map(); S.zoom = 1;
  S.layerClass = s.layer ? s.layer.class_id : null;
  lockClasses();
  const where = `${s.video} · round ${s.round} · sample ${s.rank + 1} of ${s.of}`;
  $("sample-info").textContent = s.layer
    ? `${where} · draw every ${s.layer.class_name} in frame ${s.frame_name} — or mark it absent`
    : `${where} · ${s.granularity} ${s.sample_id} · frame ${s.frame_name}`;
  $("absent").hidden = !s.layer;
  $("work").hidden = false;
  $("idle").hidden = true;
  layout();
  await showFrame(s.frame);
  updateClicks();
}

// ---------------------------------------------------------------- drawing
function drawClassButtons() {
  const bar = $("classes");
  bar.replaceChildren();
  S.classes.forEach((c, i) => {
    const b = el("button", "class-btn");
    b.id = "class-" + i;
    b.title = i < 10 ? String((i + 1) % 10) : "";
    const swatch = document.createElement("i");
    swatch.style.background = `rgb(${c.color.map(Number).join(",")})`;
    b.append(swatch, c.name);
    b.onclick = () => pickClass(i);
    bar.appendChild(b);
  });
  pickClass(Math.min(S.cls, S.classes.length - 1));
}

function pickClass(i) {
  if (i < 0 || i >= S.classes.length) return;
  if (S.layerClass !== null && i !== S.layerClass) {
    say(`this task is a layer of ${S.classes[S.layerClass].name}: draw that class only`, "error");
    return;
  }
  S.cls = i;
  document.querySelectorAll(".class-btn").forEach((b, j) => b.classList.toggle("active", j === i));
}

function lockClasses() {
  // a class-layer task asks for one class: the others cannot be picked
  document.querySelectorAll(".class-btn").forEach((b, j) => {
    b.disabled = S.layerClass !== null && j !== S.layerClass;
  });
  if (S.layerClass !== null) pickClass(S.layerClass);
}

function pickTool(tool) {
  if (S.tool === "polygon" && tool !== "polygon") S.polygon = [];
  S.tool = tool;
  document.querySelectorAll(".tool").forEach((b) => b.classList.toggle("active", b.dataset.tool === tool));
  render();
}

function layout() {
  // the viewport: the sample's box with some context around it, scaled to fit the page
  const { box, size } = S.sample;
  const bw = box.x1 - box.x0, bh = box.y1 - box.y0;
  const pad = Math.round(Math.max(8, 0.5 * Math.max(bw, bh)));
  const x = Math.max(0, box.x0 - pad), y = Math.max(0, box.y0 - pad);
  const w = Math.min(size[1], box.x1 + pad) - x, h = Math.min(size[0], box.y1 + pad) - y;
  S.view = { x, y, w, h };
  S.fit = Math.max(1, Math.min(900 / w, 600 / h));
  resize();
}

function scale() { return S.fit * S.zoom; }

function resize() {
  const c = $("canvas");
  c.width = Math.round(S.view.w * scale());
  c.height = Math.round(S.view.h * scale());
  $("zoom-level").textContent = Math.round(S.zoom * 100) + " %";
  render();
}

async function showFrame(t) {
  if (t < 0 || t >= S.sample.frames) return;
  if (!S.frameImages.has(t)) {
    S.frameImages.set(t, await createImageBitmap(await api(`${base()}/frames/${t}.png`)));
  }
  S.shownFrame = t;
  const d = t - S.sample.frame;
  $("frame-shown").textContent = d === 0 ? "sample frame" : `frame ${d > 0 ? "+" : ""}${d} (view only)`;
  render();
}

function boxCanvas(fill) {
  // an offscreen canvas over the box, each pixel coloured by fill(i) → [r, g, b, a] or null
  const { box } = S.sample;
  const bw = box.x1 - box.x0, bh = box.y1 - box.y0;
  const c = new OffscreenCanvas(bw, bh);
  const g = c.getContext("2d");
  const img = g.createImageData(bw, bh);
  for (let i = 0; i < bw * bh; i++) {
    const rgba = fill(i);
    if (rgba) img.data.set(rgba, 4 * i);
  }
  g.putImageData(img, 0, 0);
  return c;
}

function render() {
  if (!S.sample) return;
  const c = $("canvas"), g = c.getContext("2d"), s = scale(), v = S.view, { box } = S.sample;
  const bw = box.x1 - box.x0;
  g.imageSmoothingEnabled = false;
  g.fillStyle = "#333";
  g.fillRect(0, 0, c.width, c.height);
  const frame = S.frameImages.get(S.shownFrame);
  if (frame) g.drawImage(frame, v.x, v.y, v.w, v.h, 0, 0, v.w * s, v.h * s);
  if (S.shownFrame !== S.sample.frame) return; // neighbours are for looking only
  const bx = (box.x0 - v.x) * s, by = (box.y0 - v.y) * s;
  const bwS = bw * s, bhS = (box.y1 - box.y0) * s;
  // dim everything outside the sample's region
  g.fillStyle = "rgba(0,0,0,0.45)";
  g.fillRect(0, 0, c.width, by); g.fillRect(0, by + bhS, c.width, c.height - by - bhS);
  g.fillRect(0, by, bx, bhS); g.fillRect(bx + bwS, by, c.width - bx - bwS, bhS);
  g.drawImage(boxCanvas((i) => (S.region[i] ? null : [0, 0, 0, 115])), bx, by, bwS, bhS);
  if ($("show-labels").checked) {
    g.drawImage(boxCanvas((i) => {
      const k = S.labels[i];
      return k === VOID ? null : [...S.classes[k].color, 140];
    }), bx, by, bwS, bhS);
  }
  g.save(); // the region's outline, along pixel edges, two screen pixels wide at any zoom
  g.translate(bx, by); g.scale(s, s);
  g.strokeStyle = "#ffe600"; g.lineWidth = 2 / s;
  g.stroke(S.outline);
  g.restore();
  if (S.polygon.length) {
    g.strokeStyle = "#fff"; g.lineWidth = 2; g.beginPath();
    S.polygon.forEach(([x, y], k) => {
      const px = (box.x0 + x - v.x) * s, py = (box.y0 + y - v.y) * s;
      k ? g.lineTo(px, py) : g.moveTo(px, py);
    });
    g.stroke();
    g.fillStyle = "#fff";
    for (const [x, y] of S.polygon) g.fillRect((box.x0 + x - v.x) * s - 3, (box.y0 + y - v.y) * s - 3, 6, 6);
  }
}

function outline() {
  // the region's border as a path in box pixels: one segment per pixel edge facing outside
  const { box } = S.sample, bw = box.x1 - box.x0, bh = box.y1 - box.y0, p = new Path2D();
  const inside = (x, y) => x >= 0 && y >= 0 && x < bw && y < bh && S.region[y * bw + x];
  for (let y = 0; y < bh; y++) {
    for (let x = 0; x < bw; x++) {
      if (!S.region[y * bw + x]) continue;
      if (!inside(x, y - 1)) { p.moveTo(x, y); p.lineTo(x + 1, y); }
      if (!inside(x, y + 1)) { p.moveTo(x, y + 1); p.lineTo(x + 1, y + 1); }
      if (!inside(x - 1, y)) { p.moveTo(x, y); p.lineTo(x, y + 1); }
      if (!inside(x + 1, y)) { p.moveTo(x + 1, y); p.lineTo(x + 1, y + 1); }
    }
  }
  return p;
}

// ---------------------------------------------------------------- editing
function count(tool) {
  S.dirty = true;
  S.clicks[tool] = (S.clicks[tool] || 0) + 1;
  updateClicks();
}

function updateClicks() {
  const total = Object.values(S.clicks).reduce((a, b) => a + b, 0);
  const parts = Object.entries(S.clicks).map(([k, v]) => `${k} ${v}`).join(", ");
  $("clicks").textContent = `clicks ${total}${parts ? " (" + parts + ")" : ""} · active ${Math.round(S.active)} s`;
  $("clicks").dataset.total = total;
}

function remember() {
  S.dirty = true;
  S.undo.push(S.labels.slice());
  if (S.undo.length > MAX_UNDO) S.undo.shift();
  S.redo = [];
}

function undo() {
  // while a polygon is open, undo takes back its last vertex (the click is still counted: it
  // was made), otherwise the last edit
  if (S.polygon.length) { S.polygon.pop(); render(); return; }
  if (S.undo.length) { S.redo.push(S.labels); S.labels = S.undo.pop(); render(); }
}
function redo() { if (S.redo.length) { S.undo.push(S.labels); S.labels = S.redo.pop(); render(); } }

function toBox(event) {
  const r = $("canvas").getBoundingClientRect(), s = scale(), { box } = S.sample;
  return [S.view.x + (event.clientX - r.left) / s - box.x0, S.view.y + (event.clientY - r.top) / s - box.y0];
}

function inBox(x, y) {
  const { box } = S.sample;
  return x >= 0 && y >= 0 && x < box.x1 - box.x0 && y < box.y1 - box.y0;
}

function paint(x, y, value) {
  const { box } = S.sample, bw = box.x1 - box.x0, bh = box.y1 - box.y0;
  const r = Number($("brush-size").value) / 2;
  for (let yy = Math.max(0, Math.floor(y - r)); yy <= Math.min(bh - 1, Math.ceil(y + r)); yy++) {
    for (let xx = Math.max(0, Math.floor(x - r)); xx <= Math.min(bw - 1, Math.ceil(x + r)); xx++) {
      const i = yy * bw + xx;
      if (S.region[i] && (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= r * r + 0.5) S.labels[i] = value;
    }
  }
}

function reassign(x, y) {
  // one click gives a whole region another class: the region is the connected component
  // (8 neighbours) of the clicked pixel's class in the labels as they are, inside the sample
  // (the correction click model's "reassign", hvsa/method/corrections.py)
  const { box } = S.sample, bw = box.x1 - box.x0, bh = box.y1 - box.y0;
  const start = Math.floor(y) * bw + Math.floor(x);
  const from = S.labels[start];
  if (!S.region[start] || from === S.cls) return false;
  remember();
  const stack = [start];
  S.labels[start] = S.cls;
  while (stack.length) {
    const i = stack.pop(), px = i % bw, py = (i - px) / bw;
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        const qx = px + dx, qy = py + dy, j = qy * bw + qx;
        if (qx < 0 || qy < 0 || qx >= bw || qy >= bh) continue;
        if (S.region[j] && S.labels[j] === from) { S.labels[j] = S.cls; stack.push(j); }
      }
    }
  }
  return true;
}

function closePolygon() {
  if (S.polygon.length < 3) { say("a polygon needs at least three vertices", "error"); return; }
  const { box } = S.sample, bw = box.x1 - box.x0, bh = box.y1 - box.y0;
  const c = new OffscreenCanvas(bw, bh), g = c.getContext("2d");
  g.fillStyle = "#fff"; g.beginPath();
  S.polygon.forEach(([x, y], k) => (k ? g.lineTo(x, y) : g.moveTo(x, y)));
  g.closePath(); g.fill();
  const inside = g.getImageData(0, 0, bw, bh).data;
  remember();
  for (let i = 0; i < bw * bh; i++) if (inside[4 * i + 3] > 127 && S.region[i]) S.labels[i] = S.cls;
  S.polygon = [];
  render();
}

function onDown(event) {
  if (!S.sample || S.shownFrame !== S.sample.frame) {
    if (S.sample) say("this is a neighbouring frame, for looking only: go back to the sample frame", "error");
    return;
  }
  const [x, y] = toBox(event);
  if (S.tool === "polygon") {
    const s = scale(), first = S.polygon[0];
    count("polygon");
    if (first && S.polygon.length >= 3 && Math.hypot((x - first[0]) * s, (y - first[1]) * s) < 8) {
      closePolygon();
    } else {
      S.polygon.push([Math.min(Math.max(x, 0), S.sample.box.x1 - S.sample.box.x0),
                      Math.min(Math.max(y, 0), S.sample.box.y1 - S.sample.box.y0)]);
      render();
    }
  } else if (S.tool === "reassign") {
    if (!inBox(x, y)) return;
    if (reassign(x, y)) { count("reassign"); render(); }
  } else if (S.tool === "superpixel") {
    if (!inBox(x, y)) return;
    const bw = S.sample.box.x1 - S.sample.box.x0;
    const id = S.superpixels[Math.floor(y) * bw + Math.floor(x)];
    count("superpixel");
    remember();
    for (let i = 0; i < S.labels.length; i++) if (S.superpixels[i] === id && S.region[i]) S.labels[i] = S.cls;
    render();
  } else {
    count(S.tool);
    remember();
    S.stroke = [x, y];
    paint(x, y, S.tool === "eraser" ? VOID : S.cls);
    render();
  }
}

function onMove(event) {
  if (!S.stroke) return;
  const [x, y] = toBox(event), [x0, y0] = S.stroke;
  const steps = Math.max(1, Math.ceil(Math.hypot(x - x0, y - y0)));
  for (let k = 1; k <= steps; k++) {
    paint(x0 + ((x - x0) * k) / steps, y0 + ((y - y0) * k) / steps, S.tool === "eraser" ? VOID : S.cls);
  }
  S.stroke = [x, y];
  render();
}

// ---------------------------------------------------------------- work in progress
async function restoreDraft(path, n) {
  // the work this annotator had saved on the sample (a page closed or reloaded loses nothing)
  let draft;
  try {
    draft = await api(path + "/draft");
  } catch (e) {
    return; // none
  }
  const raw = atob(draft.labels);
  if (raw.length !== n) return;
  for (let i = 0; i < n; i++) S.labels[i] = raw.charCodeAt(i);
  S.clicks = draft.clicks_by_tool; S.active = draft.active_s; S.started = draft.started;
  say("your work on this sample was restored (saved " + new Date(draft.saved * 1000).toLocaleTimeString() + ")");
}

async function autosave() {
  if (!S.sample || !S.dirty || S.saving) return;
  const sid = S.sample.sample_id;
  S.saving = true; S.dirty = false;
  const body = { labels: base64(S.labels), clicks_by_tool: S.clicks, active_s: S.active, started: S.started };
  try {
    await api(`${base()}/samples/${sid}/draft`, {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (S.sample && S.sample.sample_id === sid) $("saved").textContent = "saved " + new Date().toLocaleTimeString();
  } catch (e) {
    if (S.sample && S.sample.sample_id === sid) { // try again
      S.dirty = true;
      $("saved").textContent = "not saved: " + e.message;
    }
  } finally {
    S.saving = false;
  }
}

// ---------------------------------------------------------------- hand in
function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

async function submit(accept = true) {
  // handing a sample in is one click ("accept": the labels as they are now, the prefill where
  // nothing was drawn), as the correction click model prices it; marking a class absent is
  // its own click instead
  if (!S.sample) return;
  if (S.polygon.length) { say("close or drop (Esc) the open polygon first", "error"); return; }
  if (accept) count("accept");
  const body = {
    labels: base64(S.labels), clicks_by_tool: S.clicks, active_s: S.active,
    started: S.started, finished: Date.now() / 1000,
  };
  const button = $("accept");
  button.disabled = true;
  try {
    const answer = await api(`${base()}/samples/${S.sample.sample_id}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (answer.round_complete) {
      say(answer.message || `round complete: the campaign goes on (flow run ${answer.resumed_flow_run})`);
    } else {
      say(`sample ${answer.accepted} submitted (${answer.clicks} clicks)`);
    }
    if (answer.round_complete) {
      S.sample = null;
      $("work").hidden = true; $("idle").hidden = false;
      $("idle-text").textContent = "Round handed in. The next round appears here when the campaign is ready for it.";
      await loadRounds();
    } else {
      await nextSample();
    }
  } catch (e) {
    if (accept) { S.clicks.accept -= 1; if (!S.clicks.accept) delete S.clicks.accept; updateClicks(); }
    say(e.message, "error");
  } finally {
    button.disabled = false;
  }
}

function markAbsent() {
  // a class-layer task: the class is nowhere in the frame (one click)
  if (!S.sample || S.layerClass === null) return;
  remember();
  S.labels.fill(VOID);
  S.polygon = [];
  count("absent");
  submit(false);
}

// ---------------------------------------------------------------- wiring
function onKey(event) {
  if (event.target.tagName === "INPUT" && event.target.type !== "range" && event.target.type !== "checkbox") return;
  if (!S.sample) return;
  S.lastInput = Date.now();
  const k = event.key, ctrl = event.ctrlKey || event.metaKey;
  if (ctrl && k.toLowerCase() === "z") { event.preventDefault(); event.shiftKey ? redo() : undo(); return; }
  if (ctrl && k.toLowerCase() === "y") { event.preventDefault(); redo(); return; }
  if (ctrl) return;
  if (/^[0-9]$/.test(k)) { pickClass((Number(k) + 9) % 10); return; }
  const tools = { p: "polygon", b: "brush", e: "eraser", s: "superpixel", r: "reassign" };
  if (tools[k.toLowerCase()]) { pickTool(tools[k.toLowerCase()]); return; }
  if (k === "Enter") { event.preventDefault(); if (S.polygon.length) closePolygon(); else submit(); return; }
  if (k === "Escape") { S.polygon = []; render(); return; }
  if (k === "+" || k === "=") { S.zoom = Math.min(8, S.zoom * 1.25); resize(); return; }
  if (k === "-") { S.zoom = Math.max(0.25, S.zoom / 1.25); resize(); return; }
  if (k === "[") { $("brush-size").value = Number($("brush-size").value) - 1; return; }
  if (k === "]") { $("brush-size").value = Number($("brush-size").value) + 1; return; }
  if (k === ",") { showFrame(S.shownFrame - 1); return; }
  if (k === ".") { showFrame(S.shownFrame + 1); return; }
  if (k.toLowerCase() === "a") { submit(); return; }
  if (k.toLowerCase() === "x") markAbsent();
}

function tick() {
  // active time: seconds with the page focused and some input in the last IDLE_AFTER_MS
  if (S.sample && document.hasFocus() && Date.now() - S.lastInput < IDLE_AFTER_MS) {
    S.active += 1;
    updateClicks();
  }
}

window.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", signIn);
  $("refresh").onclick = () => loadRounds().catch((e) => say(e.message, "error"));
  $("refresh-holds").onclick = () => loadHolds().catch((e) => say(e.message, "error"));
  document.querySelectorAll(".tool").forEach((b) => (b.onclick = () => pickTool(b.dataset.tool)));
  $("undo").onclick = undo; $("redo").onclick = redo;
  $("zoom-in").onclick = () => { S.zoom = Math.min(8, S.zoom * 1.25); resize(); };
  $("zoom-out").onclick = () => { S.zoom = Math.max(0.25, S.zoom / 1.25); resize(); };
  $("prev-frame").onclick = () => showFrame(S.shownFrame - 1);
  $("next-frame").onclick = () => showFrame(S.shownFrame + 1);
  $("show-labels").onchange = render;
  $("accept").onclick = () => submit();
  $("absent").onclick = markAbsent;
  const c = $("canvas");
  c.addEventListener("mousedown", (e) => { S.lastInput = Date.now(); onDown(e); });
  c.addEventListener("mousemove", (e) => { S.lastInput = Date.now(); onMove(e); });
  window.addEventListener("mouseup", () => { S.stroke = null; });
  c.addEventListener("wheel", (e) => {
    if (!e.ctrlKey) return;
    e.preventDefault();
    S.zoom = Math.min(8, Math.max(0.25, S.zoom * (e.deltaY < 0 ? 1.25 : 0.8)));
    resize();
  }, { passive: false });
  document.addEventListener("keydown", onKey);
  setInterval(tick, 1000);
  setInterval(autosave, AUTOSAVE_MS);
  document.addEventListener("visibilitychange", () => { if (document.hidden) autosave(); });
  pickTool("polygon");
  if (S.token) { $("token").value = S.token; signIn(); }
});
