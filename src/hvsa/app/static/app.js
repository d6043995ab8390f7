// hvsa annotation page: plain JS and Konva (vendored from npm at build time, served by the app).
// Labels live in one Uint8Array over the sample's box (255 = unlabelled). Every edit is an
// operation (polygon, brush stroke, reassign, superpixel fill, cut) replayed over the prefill,
// so a closed polygon stays editable: moving, inserting or deleting a vertex replays the edits.
// Clicks are counted here, per tool, and sent with the labels.
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
const HANDLE_PX = 5; // a vertex handle's radius on screen, at any zoom
const CLOSE_PX = 8; // a click this near the first vertex closes the polygon

const S = {
  token: localStorage.getItem("hvsa-token") || "",
  round: null, // {video, round}
  sample: null, // the sample's description from the server
  classes: [],
  cls: 0,
  layerClass: null, // a class-layer task: the one class it asks for (others are locked)
  tool: "polygon",
  labels: null, prefill: null, region: null, superpixels: null,
  base: null, // the labels the edits apply to: the prefill, or the work restored from a save
  ops: [], // the edits, in order (replayed over base)
  cut: null, // pixels of the box that cuts separate (reassign does not flood across them)
  undo: [], redo: [], // earlier / undone lists of edits
  polygon: [], // the open polygon (or cut): vertices in box coordinates
  stroke: null, // the brush stroke being drawn (an op)
  zoom: 1, fit: 1, view: null, // zoom over the fitted view; the view: {x, y, w, h} of the frame
  panning: false, // space held: dragging moves the view
  shownFrame: 0, frameImages: new Map(),
  clicks: {}, active: 0, lastInput: 0, started: 0,
  dirty: false, saving: false, // work not yet autosaved; a save under way
  k: null, // Konva nodes
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

// Work in this round from now on: its classes (a round's video may have its own list)
async function enterRound(video, round) {
  S.round = { video, round };
  S.layerClass = null;
  S.classes = await api(`${base()}/classes`);
  drawClassButtons();
}

async function openRound(video, round) {
  try {
    await enterRound(video, round);
    await nextSample();
  } catch (e) { say(e.message, "error"); }
}

// This round has nothing left to take: go on with the round that has waited longest (any
// video's), so nobody sits idle while a video waits for labels; `none` when there is no such.
async function elsewhere(none) {
  const other = await api("/api/next", { method: "POST" });
  if (other.sample_id === null) return none;
  const was = S.round;
  if (was.video !== other.video || was.round !== other.round) {
    await enterRound(other.video, other.round);
    say(`${was.video} round ${was.round} has no sample left: on to ${other.video} round ${other.round}, the longest waiting`);
  }
  return other;
}

function base() { return `/api/rounds/${S.round.video}/${S.round.round}`; }

async function nextSample(handedIn = null) {
  // handedIn: the message when this round was just handed in (nothing is left to take in it)
  let s = handedIn !== null ? { sample_id: null, message: handedIn }
    : await api(base() + "/next", { method: "POST" });
  if (s.sample_id === null) s = await elsewhere(s);
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
  // the frames of the sample before go first: a page (or a test) that sees the new sample with
  // frames loaded must see this sample's frames, not the last one's
  S.shownFrame = s.frame; S.frameImages = new Map();
  S.sample = s;
  S.outline = outline();
  // start from hvsa's labels of the frame: correct, don't redraw
  S.base = S.prefill.slice(); S.labels = S.prefill.slice(); S.cut = new Uint8Array(n);
  S.ops = []; S.undo = []; S.redo = []; S.polygon = []; S.stroke = null;
  S.clicks = {}; S.active = 0; S.started = Date.now() / 1000; S.lastInput = Date.now();
  S.dirty = false;
  $("saved").textContent = "";
  await restoreDraft(p, n);
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
  if (S.tool !== tool) S.polygon = [];
  S.tool = tool;
  document.querySelectorAll(".tool").forEach((b) => b.classList.toggle("active", b.dataset.tool === tool));
  render();
}

function stageNodes() {
  // the Konva stage: the frame, the labels over it, the sample's region, then what is drawn
  if (S.k) return S.k;
  const stage = new Konva.Stage({ container: "canvas-wrap", width: 900, height: 600 });
  const below = new Konva.Layer({ imageSmoothingEnabled: false, listening: false });
  const over = new Konva.Layer({ imageSmoothingEnabled: false, listening: false });
  const drawn = new Konva.Layer();
  const frame = new Konva.Image({ image: null });
  const labels = new Konva.Image({ image: null });
  const dim = new Konva.Shape({ sceneFunc: dimOutside }); // outside the sample, darker
  const region = new Konva.Shape({ sceneFunc: regionOutline });
  below.add(frame);
  over.add(dim, labels, region);
  const open = new Konva.Line({ stroke: "#fff", strokeWidth: 2, strokeScaleEnabled: false, listening: false });
  const cuts = new Konva.Group({ listening: false });
  const shapes = new Konva.Group(); // closed polygons with vertex handles (edit tool)
  const cursor = new Konva.Circle({ stroke: "#fff", strokeWidth: 1, strokeScaleEnabled: false,
    dash: [3, 3], listening: false, visible: false });
  drawn.add(cuts, shapes, open, cursor);
  stage.add(below, over, drawn);
  S.k = { stage, below, over, drawn, frame, labels, dim, region, open, cuts, shapes, cursor };
  stage.on("mousedown", onDown);
  stage.on("mousemove", onMove);
  stage.on("mouseleave", () => { cursor.visible(false); drawn.batchDraw(); $("readout").textContent = ""; });
  stage.on("wheel", onWheel);
  stage.on("dragmove", () => { S.k.drawn.batchDraw(); });
  stage.on("contextmenu", (e) => e.evt.preventDefault());
  return S.k;
}

function dimOutside(ctx) {
  if (!S.sample) return;
  const { box, size } = S.sample, g = ctx._context;
  g.fillStyle = "rgba(0,0,0,0.45)";
  g.beginPath();
  g.rect(0, 0, size[1], size[0]);
  g.rect(box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0);
  g.fill("evenodd");
  if (S.regionDim) g.drawImage(S.regionDim, box.x0, box.y0);
}

function regionOutline(ctx) {
  // the region's outline, along pixel edges, two screen pixels wide at any zoom
  if (!S.sample) return;
  const g = ctx._context, { box } = S.sample;
  g.save();
  g.translate(box.x0, box.y0);
  g.strokeStyle = "#ffe600";
  g.lineWidth = 2 / scale();
  g.stroke(S.outline);
  g.restore();
}

function layout() {
  // the view: the sample's box with some context around it, fitted to the stage
  const { box, size } = S.sample;
  const bw = box.x1 - box.x0, bh = box.y1 - box.y0;
  const pad = Math.round(Math.max(8, 0.5 * Math.max(bw, bh)));
  const x = Math.max(0, box.x0 - pad), y = Math.max(0, box.y0 - pad);
  const w = Math.min(size[1], box.x1 + pad) - x, h = Math.min(size[0], box.y1 + pad) - y;
  S.view = { x, y, w, h };
  const k = stageNodes();
  const width = Math.max(320, Math.min(1100, window.innerWidth - 340));
  const height = Math.max(240, Math.min(700, Math.round(window.innerHeight * 0.72)));
  k.stage.size({ width, height });
  S.fit = Math.max(1, Math.min(width / w, height / h));
  S.zoom = 1;
  k.stage.scale({ x: S.fit, y: S.fit });
  k.stage.position({ x: -x * S.fit, y: -y * S.fit });
  k.frame.size({ width: size[1], height: size[0] });
  S.regionDim = boxCanvas((i) => (S.region[i] ? null : [0, 0, 0, 115]));
  zoomed();
}

function scale() { return S.fit * S.zoom; }

function zoomTo(factor, at) {
  // zoom by factor about a point of the stage (the cursor; the stage's centre by default)
  const k = S.k, old = k.stage.scaleX();
  const z = Math.min(8, Math.max(0.25, S.zoom * factor));
  const s = S.fit * z;
  const p = at || { x: k.stage.width() / 2, y: k.stage.height() / 2 };
  const world = { x: (p.x - k.stage.x()) / old, y: (p.y - k.stage.y()) / old };
  S.zoom = z;
  k.stage.scale({ x: s, y: s });
  k.stage.position({ x: p.x - world.x * s, y: p.y - world.y * s });
  zoomed();
}

function zoomed() {
  $("zoom-level").textContent = Math.round(S.zoom * 100) + " %";
  S.k.shapes.find("Circle").forEach((c) => c.radius(HANDLE_PX / scale()));
  render();
}

function onWheel(e) {
  // the wheel zooms about the cursor (as in every image editor); the page does not scroll
  e.evt.preventDefault();
  zoomTo(e.evt.deltaY < 0 ? 1.25 : 0.8, S.k.stage.getPointerPosition());
}

function setPanning(on) {
  S.panning = on;
  if (!S.k) return;
  S.k.stage.draggable(on);
  $("canvas-wrap").classList.toggle("panning", on);
}

async function showFrame(t) {
  if (t < 0 || t >= S.sample.frames) return;
  const sample = S.sample, images = S.frameImages;
  if (!images.has(t)) {
    images.set(t, await createImageBitmap(await api(`${base()}/frames/${t}.png`)));
  }
  // a frame that arrives after the page moved on to another sample is not shown
  if (S.sample !== sample) return;
  S.shownFrame = t;
  const d = t - S.sample.frame;
  $("frame-shown").textContent = d === 0 ? "sample frame" : `frame ${d > 0 ? "+" : ""}${d} (view only)`;
  render();
}

function boxCanvas(fill) {
  // a canvas over the box, each pixel coloured by fill(i) → [r, g, b, a] or null
  const { box } = S.sample;
  const bw = box.x1 - box.x0, bh = box.y1 - box.y0;
  const c = document.createElement("canvas");
  c.width = bw; c.height = bh;
  const g = c.getContext("2d");
  const img = g.createImageData(bw, bh);
  for (let i = 0; i < bw * bh; i++) {
    const rgba = fill(i);
    if (rgba) img.data.set(rgba, 4 * i);
  }
  g.putImageData(img, 0, 0);
  return c;
}

function labelCanvas() {
  // the labels in their classes' colours: filled, or only each region's border (outline mode,
  // where the frame shows through and one class never reads as two colours)
  const { box } = S.sample, bw = box.x1 - box.x0, bh = box.y1 - box.y0, L = S.labels;
  const outlineOnly = $("outline").checked;
  return boxCanvas((i) => {
    const k = L[i];
    if (k === VOID) return null;
    if (outlineOnly) {
      const x = i % bw, y = (i - x) / bw;
      const edge = x === 0 || y === 0 || x === bw - 1 || y === bh - 1 ||
        L[i - 1] !== k || L[i + 1] !== k || L[i - bw] !== k || L[i + bw] !== k;
      if (!edge) return null;
    }
    return [...S.classes[k].color, 255];
  });
}

function render() {
  if (!S.sample || !S.k) return;
  const k = S.k, { box } = S.sample, onSample = S.shownFrame === S.sample.frame;
  k.frame.image(S.frameImages.get(S.shownFrame) || null);
  k.over.visible(onSample); // neighbours are for looking only
  k.drawn.visible(onSample);
  k.labels.visible($("show-labels").checked);
  if ($("show-labels").checked) k.labels.image(labelCanvas());
  k.labels.position({ x: box.x0, y: box.y0 });
  k.labels.opacity(Number($("opacity").value) / 100);
  const toWorld = (pts) => pts.flatMap(([x, y]) => [box.x0 + x, box.y0 + y]);
  k.open.points(toWorld(S.polygon));
  k.open.dash(S.tool === "cut" ? [6, 4] : []);
  drawCuts(toWorld);
  drawShapes(toWorld);
  k.below.batchDraw(); k.over.batchDraw(); k.drawn.batchDraw();
}

function drawCuts(toWorld) {
  const group = S.k.cuts;
  group.destroyChildren();
  for (const op of S.ops) {
    if (op.kind !== "cut") continue;
    group.add(new Konva.Line({ points: toWorld(op.points), stroke: "#fff", strokeWidth: 1.5,
      dash: [6, 4], strokeScaleEnabled: false }));
  }
}

function drawShapes(toWorld) {
  // the edit tool shows every polygon of this sample with its vertices: drag a vertex to move
  // it, click an edge to insert one, right-click (or Alt-click) a vertex to delete it
  const group = S.k.shapes;
  group.destroyChildren();
  if (S.tool !== "edit") return;
  S.ops.forEach((op, n) => {
    if (op.kind !== "polygon") return;
    const colour = `rgb(${S.classes[op.cls].color.join(",")})`;
    const line = new Konva.Line({ points: toWorld(op.points), closed: true, stroke: colour,
      strokeWidth: 2, hitStrokeWidth: 10, strokeScaleEnabled: false, name: "edge" });
    line.on("mousedown", (e) => {
      if (e.evt.button !== 0 || S.panning) return;
      e.cancelBubble = true;
      insertVertex(n, pointer());
    });
    group.add(line);
    op.points.forEach(([x, y], v) => {
      const h = new Konva.Circle({ x: S.sample.box.x0 + x, y: S.sample.box.y0 + y,
        radius: HANDLE_PX / scale(), fill: colour, stroke: "#fff", strokeWidth: 1.5,
        strokeScaleEnabled: false, draggable: true, name: "handle" });
      h.setAttr("op", n); h.setAttr("vertex", v);
      h.on("mousedown", (e) => {
        e.cancelBubble = true;
        if (e.evt.button === 2 || e.evt.altKey) deleteVertex(n, v);
      });
      h.on("dragmove", () => {
        const pts = op.points.slice();
        pts[v] = clampToBox(h.x() - S.sample.box.x0, h.y() - S.sample.box.y0);
        line.points(toWorld(pts));
      });
      h.on("dragend", () => moveVertex(n, v, clampToBox(h.x() - S.sample.box.x0, h.y() - S.sample.box.y0)));
      group.add(h);
    });
  });
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

function pointer() {
  // the cursor in box coordinates (pixels of the sample's box; may lie outside it)
  const p = S.k.stage.getRelativePointerPosition(), { box } = S.sample;
  return [p.x - box.x0, p.y - box.y0];
}

function toScreen(x, y) {
  // page coordinates of box point (x, y): what a pointer must hit to act there
  const r = S.k.stage.container().getBoundingClientRect(), s = scale(), { box } = S.sample;
  return [r.left + S.k.stage.x() + (box.x0 + x) * s, r.top + S.k.stage.y() + (box.y0 + y) * s];
}

function clampToBox(x, y) {
  const { box } = S.sample;
  return [Math.min(Math.max(x, 0), box.x1 - box.x0), Math.min(Math.max(y, 0), box.y1 - box.y0)];
}

function readout(x, y) {
  // the class under the cursor, now and in the prefill: dark or similar colours are read, not guessed
  const { box } = S.sample, bw = box.x1 - box.x0;
  if (!inBox(x, y)) { $("readout").textContent = ""; return; }
  const i = Math.floor(y) * bw + Math.floor(x);
  const name = (k) => (k === VOID ? "unlabelled" : S.classes[k].name);
  const now = name(S.labels[i]), before = name(S.prefill[i]);
  $("readout").textContent = now === before ? now : `${now} (prefill: ${before})`;
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

function apply(op) {
  // one edit on S.labels (and S.cut); false when it changed nothing
  const { box } = S.sample, bw = box.x1 - box.x0;
  if (op.kind === "polygon") return fillPolygon(op.points, op.cls);
  if (op.kind === "brush") {
    const [x0, y0] = op.path[0];
    paint(x0, y0, op.value, op.size);
    for (let n = 1; n < op.path.length; n++) paintSegment(op.path[n - 1], op.path[n], op.value, op.size);
    return true;
  }
  if (op.kind === "reassign") return reassign(op.x, op.y, op.cls);
  if (op.kind === "superpixel") {
    for (let i = 0; i < S.labels.length; i++) if (S.superpixels[i] === op.id && S.region[i]) S.labels[i] = op.cls;
    return true;
  }
  if (op.kind === "cut") {
    for (let n = 1; n < op.points.length; n++) {
      line4(op.points[n - 1], op.points[n], (x, y) => { S.cut[y * bw + x] = 1; });
    }
    return true;
  }
  return false;
}

function replay() {
  // the labels are the base with every edit applied in order: after a vertex moved, or an undo
  S.labels = S.base.slice();
  S.cut = new Uint8Array(S.labels.length);
  for (const op of S.ops) apply(op);
  render();
}

function remember() {
  // the edits as they are, for undo; called before every change
  S.dirty = true;
  S.undo.push(structuredClone(S.ops));
  if (S.undo.length > MAX_UNDO) S.undo.shift();
  S.redo = [];
}

function edit(op) {
  // a new edit: remembered, applied, kept
  remember();
  if (!apply(op)) { S.undo.pop(); return false; }
  S.ops.push(op);
  render();
  return true;
}

function undo() {
  // while a polygon or cut is open, undo takes back its last vertex (the click is still
  // counted: it was made), otherwise the last edit
  if (S.polygon.length) { S.polygon.pop(); render(); return; }
  if (S.undo.length) { S.redo.push(S.ops); S.ops = S.undo.pop(); S.dirty = true; replay(); }
}
function redo() {
  if (S.redo.length) { S.undo.push(S.ops); S.ops = S.redo.pop(); S.dirty = true; replay(); }
}

function inBox(x, y) {
  const { box } = S.sample;
  return x >= 0 && y >= 0 && x < box.x1 - box.x0 && y < box.y1 - box.y0;
}

function paint(x, y, value, size) {
  const { box } = S.sample, bw = box.x1 - box.x0, bh = box.y1 - box.y0;
  const r = size / 2;
  for (let yy = Math.max(0, Math.floor(y - r)); yy <= Math.min(bh - 1, Math.ceil(y + r)); yy++) {
    for (let xx = Math.max(0, Math.floor(x - r)); xx <= Math.min(bw - 1, Math.ceil(x + r)); xx++) {
      const i = yy * bw + xx;
      if (S.region[i] && (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= r * r + 0.5) S.labels[i] = value;
    }
  }
}

function paintSegment([x0, y0], [x, y], value, size) {
  const steps = Math.max(1, Math.ceil(Math.hypot(x - x0, y - y0)));
  for (let k = 1; k <= steps; k++) paint(x0 + ((x - x0) * k) / steps, y0 + ((y - y0) * k) / steps, value, size);
}

function line4([x0, y0], [x1, y1], mark) {
  // the box pixels a segment passes through, 4-connected: an 8-connected region cannot leak
  // through the diagonal steps of a cut
  const { box } = S.sample, bw = box.x1 - box.x0, bh = box.y1 - box.y0;
  const put = (x, y) => { if (x >= 0 && y >= 0 && x < bw && y < bh) mark(x, y); };
  const steps = Math.max(1, Math.ceil(4 * Math.hypot(x1 - x0, y1 - y0)));
  let px = Math.floor(x0), py = Math.floor(y0);
  put(px, py);
  for (let k = 1; k <= steps; k++) {
    const x = Math.floor(x0 + ((x1 - x0) * k) / steps), y = Math.floor(y0 + ((y1 - y0) * k) / steps);
    if (x === px && y === py) continue;
    if (x !== px && y !== py) put(x, py);
    put(x, y);
    px = x; py = y;
  }
}

function reassign(x, y, cls) {
  // one click gives a whole region another class: the region is the connected component
  // (8 neighbours) of the clicked pixel's class in the labels as they are, inside the sample,
  // not crossing a cut (the correction click model's "reassign", hvsa/method/corrections.py)
  const { box } = S.sample, bw = box.x1 - box.x0, bh = box.y1 - box.y0;
  const start = Math.floor(y) * bw + Math.floor(x);
  const from = S.labels[start];
  if (!S.region[start] || from === cls) return false;
  const stack = [start];
  S.labels[start] = cls;
  while (stack.length) {
    const i = stack.pop(), px = i % bw, py = (i - px) / bw;
    if (S.cut[i] && i !== start) continue; // a cut pixel takes the class, the fill stops there
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        const qx = px + dx, qy = py + dy, j = qy * bw + qx;
        if (qx < 0 || qy < 0 || qx >= bw || qy >= bh) continue;
        if (S.region[j] && S.labels[j] === from) { S.labels[j] = cls; stack.push(j); }
      }
    }
  }
  return true;
}

function fillPolygon(points, cls) {
  const { box } = S.sample, bw = box.x1 - box.x0, bh = box.y1 - box.y0;
  const c = new OffscreenCanvas(bw, bh), g = c.getContext("2d");
  g.fillStyle = "#fff"; g.beginPath();
  points.forEach(([x, y], k) => (k ? g.lineTo(x, y) : g.moveTo(x, y)));
  g.closePath(); g.fill();
  const inside = g.getImageData(0, 0, bw, bh).data;
  for (let i = 0; i < bw * bh; i++) if (inside[4 * i + 3] > 127 && S.region[i]) S.labels[i] = cls;
  return true;
}

function closePolygon() {
  if (S.polygon.length < 3) { say("a polygon needs at least three vertices", "error"); return; }
  edit({ kind: "polygon", cls: S.cls, points: S.polygon });
  S.polygon = [];
  render();
}

function finishCut() {
  if (S.polygon.length < 2) { say("a cut needs at least two points", "error"); return; }
  edit({ kind: "cut", points: S.polygon });
  S.polygon = [];
  render();
}

function moveVertex(n, v, point) {
  remember();
  S.ops[n].points[v] = point;
  count("edit");
  replay();
}

function insertVertex(n, point) {
  // a click on an edge puts a vertex there, on the nearest edge of the polygon
  const pts = S.ops[n].points;
  let best = 0, bestD = Infinity;
  for (let v = 0; v < pts.length; v++) {
    const [ax, ay] = pts[v], [bx, by] = pts[(v + 1) % pts.length];
    const l2 = (bx - ax) ** 2 + (by - ay) ** 2 || 1;
    const t = Math.max(0, Math.min(1, ((point[0] - ax) * (bx - ax) + (point[1] - ay) * (by - ay)) / l2));
    const d = Math.hypot(ax + t * (bx - ax) - point[0], ay + t * (by - ay) - point[1]);
    if (d < bestD) { bestD = d; best = v; }
  }
  remember();
  pts.splice(best + 1, 0, clampToBox(...point));
  count("edit");
  replay();
}

function deleteVertex(n, v) {
  const pts = S.ops[n].points;
  if (pts.length <= 3) { say("a polygon keeps at least three vertices: undo it instead", "error"); return; }
  remember();
  pts.splice(v, 1);
  count("edit");
  replay();
}

function onDown(e) {
  if (!S.sample || S.panning || e.evt.button !== 0) return;
  if (S.shownFrame !== S.sample.frame) {
    say("this is a neighbouring frame, for looking only: go back to the sample frame", "error");
    return;
  }
  const name = e.target.name && e.target.name();
  if (name === "handle" || name === "edge") return; // the edit tool's own
  const [x, y] = pointer();
  S.lastInput = Date.now();
  if (S.tool === "polygon" || S.tool === "cut") {
    const s = scale(), first = S.polygon[0], last = S.polygon[S.polygon.length - 1];
    count(S.tool);
    if (S.tool === "polygon" && first && S.polygon.length >= 3 &&
        Math.hypot((x - first[0]) * s, (y - first[1]) * s) < CLOSE_PX) {
      closePolygon();
    } else if (S.tool === "cut" && last && S.polygon.length >= 2 &&
               Math.hypot((x - last[0]) * s, (y - last[1]) * s) < CLOSE_PX) {
      finishCut();
    } else {
      S.polygon.push(clampToBox(x, y));
      render();
    }
  } else if (S.tool === "reassign") {
    if (!inBox(x, y)) return;
    const bw = S.sample.box.x1 - S.sample.box.x0;
    if (S.cut[Math.floor(y) * bw + Math.floor(x)]) { say("click beside the cut, not on it", "error"); return; }
    if (edit({ kind: "reassign", cls: S.cls, x, y })) count("reassign");
  } else if (S.tool === "superpixel") {
    if (!inBox(x, y)) return;
    const bw = S.sample.box.x1 - S.sample.box.x0;
    count("superpixel");
    edit({ kind: "superpixel", cls: S.cls, id: S.superpixels[Math.floor(y) * bw + Math.floor(x)] });
  } else if (S.tool === "brush" || S.tool === "eraser") {
    count(S.tool);
    S.stroke = { kind: "brush", value: S.tool === "eraser" ? VOID : S.cls,
                 size: Number($("brush-size").value), path: [[x, y]] };
    edit(S.stroke);
  }
}

function onMove() {
  if (!S.sample) return;
  S.lastInput = Date.now();
  const [x, y] = pointer(), { box } = S.sample;
  readout(x, y);
  const c = S.k.cursor;
  c.visible((S.tool === "brush" || S.tool === "eraser") && !S.panning);
  c.position({ x: box.x0 + x, y: box.y0 + y });
  c.radius(Number($("brush-size").value) / 2);
  if (!S.stroke) { S.k.drawn.batchDraw(); return; }
  const path = S.stroke.path;
  paintSegment(path[path.length - 1], [x, y], S.stroke.value, S.stroke.size);
  path.push([x, y]);
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
  for (let i = 0; i < n; i++) S.base[i] = raw.charCodeAt(i);
  S.labels = S.base.slice(); // the saved work is what later edits apply to
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
    await nextSample(answer.round_complete
      ? "Round handed in. The next round appears here when the campaign is ready for it." : null);
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
  if (k === " ") { event.preventDefault(); if (!event.repeat) setPanning(true); return; }
  if (ctrl && k.toLowerCase() === "z") { event.preventDefault(); event.shiftKey ? redo() : undo(); return; }
  if (ctrl && k.toLowerCase() === "y") { event.preventDefault(); redo(); return; }
  if (ctrl) return;
  if (/^[0-9]$/.test(k)) { pickClass((Number(k) + 9) % 10); return; }
  const tools = { p: "polygon", v: "edit", c: "cut", b: "brush", e: "eraser", s: "superpixel", r: "reassign" };
  if (tools[k.toLowerCase()]) { pickTool(tools[k.toLowerCase()]); return; }
  if (k === "Enter") {
    event.preventDefault();
    if (!S.polygon.length) submit();
    else if (S.tool === "cut") finishCut();
    else closePolygon();
    return;
  }
  if (k === "Escape") { S.polygon = []; render(); return; }
  if (k === "+" || k === "=") { zoomTo(1.25); return; }
  if (k === "-") { zoomTo(0.8); return; }
  if (k === "[") { $("brush-size").value = Number($("brush-size").value) - 1; return; }
  if (k === "]") { $("brush-size").value = Number($("brush-size").value) + 1; return; }
  if (k === ",") { showFrame(S.shownFrame - 1); return; }
  if (k === ".") { showFrame(S.shownFrame + 1); return; }
  if (k.toLowerCase() === "o") { $("outline").checked = !$("outline").checked; render(); return; }
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
  $("zoom-in").onclick = () => zoomTo(1.25);
  $("zoom-out").onclick = () => zoomTo(0.8);
  $("prev-frame").onclick = () => showFrame(S.shownFrame - 1);
  $("next-frame").onclick = () => showFrame(S.shownFrame + 1);
  $("show-labels").onchange = render;
  $("outline").onchange = render;
  $("opacity").oninput = render;
  $("accept").onclick = () => submit();
  $("absent").onclick = markAbsent;
  window.addEventListener("mouseup", () => { S.stroke = null; });
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", (e) => { if (e.key === " ") setPanning(false); });
  window.addEventListener("blur", () => setPanning(false));
  setInterval(tick, 1000);
  setInterval(autosave, AUTOSAVE_MS);
  document.addEventListener("visibilitychange", () => { if (document.hidden) autosave(); });
  pickTool("polygon");
  if (S.token) { $("token").value = S.token; signIn(); }
});
