// pixchat's live page: a client of the binary protocol (protocol.md) over
// the /ws WebSocket, one frame per message, length prefix included.
// Plain JavaScript, no build step. Every URL is relative, so the page works
// under any path behind a reverse proxy.
"use strict";

const PLAY = document.body.dataset.play === "1";
const enc = new TextEncoder();
const dec = new TextDecoder();

// ---- frames ----------------------------------------------------------

class Out {
  constructor(type) { this.bytes = [type]; }
  u8(v) { this.bytes.push(v & 0xff); return this; }
  u16(v) { return this.u8(v >> 8).u8(v); }
  u64(v) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v));
    this.bytes.push(...b);
    return this;
  }
  str8(s) { const b = enc.encode(s).slice(0, 255); this.u8(b.length); this.bytes.push(...b); return this; }
  str16(s) { const b = enc.encode(s).slice(0, 4000); this.u16(b.length); this.bytes.push(...b); return this; }
  frame() {
    const f = new Uint8Array(4 + this.bytes.length);
    new DataView(f.buffer).setUint32(0, this.bytes.length);
    f.set(this.bytes, 4);
    return f;
  }
}

class In {
  constructor(buf) { this.v = new DataView(buf); this.at = 4; }
  u8() { return this.v.getUint8(this.at++); }
  u16() { const x = this.v.getUint16(this.at); this.at += 2; return x; }
  u32() { const x = this.v.getUint32(this.at); this.at += 4; return x; }
  u64() { const x = this.v.getBigUint64(this.at); this.at += 8; return x; }
  bytes(n) { const b = new Uint8Array(this.v.buffer, this.at, n); this.at += n; return b; }
  str8() { return dec.decode(this.bytes(this.u8())); }
  str16() { return dec.decode(this.bytes(this.u16())); }
  names(n) { const a = []; for (let i = 0; i < n; i++) a.push(this.str8()); return a; }
}

const T = {
  HELLO: 0x01, JOIN: 0x02, SAY: 0x03, SET: 0x05, PING: 0x09, AUTH: 0x0c, WHOSE: 0x0d,
  PIXEL: 0x40, JOINED: 0x41, LEFT: 0x42, MSG: 0x43, DM: 0x44, BYE: 0x45, HISTORY: 0x46,
  KEEPALIVE: 0x47, PRESENCE: 0x48,
  OK: 0x80, HELLO_OK: 0x81, WELCOME: 0x82, SET_OK: 0x83, SNAPSHOT: 0x84, SYNC_OK: 0x85,
  WHO_OK: 0x86, PONG: 0x87, WHOSE_OK: 0x8a, ERROR: 0xff,
};

// ---- state -------------------------------------------------------------

// Everything the page knows, also read by the tests (window.pixchatState).
const state = {
  status: "connecting",  // connecting | live | down
  canvasId: null,        // BigInt
  seq: 0n,
  width: 0, height: 0,
  palette: [],           // [[r,g,b,name], ...]
  pixels: null,          // Uint8Array, palette indexes
  name: null,            // the name joined with
  watching: true,        // joined quietly, to watch
  users: new Set(),
  online: 0,
  chat: [],              // ["from: text", ...]
  connects: 0,           // sessions opened
  resumed: 0,            // sessions that resumed instead of a snapshot
  snapshots: 0,          // snapshots received
  lastError: null,
  color: 5,
};
window.pixchatState = state;

const $ = (id) => document.getElementById(id);
const board = $("board");
const ctx = board.getContext("2d");

// ---- connection ---------------------------------------------------------

let ws = null;
let pending = [];         // reply handlers, oldest command first
let expectSnapshot = false;
let backoff = 250;
let pinger = null;
let wanted = null;        // {name} once the user joins to draw
let password = "";        // the server's --password, once the user gave it

function randomName() {
  const a = new Uint8Array(4);
  crypto.getRandomValues(a);
  return "web-" + Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

function send(out, onReply) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  pending.push(onReply || (() => {}));
  ws.send(out.frame());
  return true;
}

function setStatus(s, text) {
  state.status = s;
  const el = $("status");
  el.className = "status " + s;
  el.textContent = text || s;
}

function connect() {
  setStatus("connecting");
  const url = new URL("ws", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const sock = new WebSocket(url);
  sock.binaryType = "arraybuffer";
  ws = sock;
  pending = [];
  expectSnapshot = false;
  sock.onopen = () => {
    state.connects++;
    send(new Out(T.HELLO).u8(0x50).u8(0x58).u8(0x43).u8(0x48).u16(1));
    if (password) {
      send(new Out(T.AUTH).str8(password), (r) => { if (r.error) notice("password: " + r.error); });
    }
    join();
  };
  sock.onmessage = (e) => { try { receive(e.data); } catch (err) { console.error(err); } };
  sock.onclose = () => {
    if (ws !== sock) return;
    clearInterval(pinger);
    setStatus("down", "reconnecting");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  };
}

function join() {
  const name = wanted ? wanted.name : (state.name && state.watching ? state.name : randomName());
  const quiet = !wanted;
  const j = new Out(T.JOIN).str8(name);
  // Resume from what the page has: the missed pixels, not a new snapshot.
  if (state.canvasId !== null) j.u8((quiet ? 2 : 0) | 1).u64(state.canvasId).u64(state.seq);
  else j.u8(quiet ? 2 : 0);
  send(j, (r) => {
    if (r.error) {
      if (r.code === "name_taken" && !wanted) { state.name = null; join(); return; }
      // A server with a password: ask for it (even to watch).
      if (r.code === "forbidden" && !PLAY) document.body.classList.add("need-password");
      notice("join: " + r.error);
      if (wanted) { wanted = null; join(); }
      return;
    }
    state.name = name;
    state.watching = quiet;
    $("notice").hidden = true;
    backoff = 250;
    setStatus("live", quiet ? "live (watching)" : "live as " + name);
    clearInterval(pinger);
    pinger = setInterval(() => send(new Out(T.PING).str8("")), 15000);
  });
}

function notice(text) {
  state.lastError = text;
  const n = $("notice");
  n.hidden = false;
  n.textContent = text;
}

// ---- receiving ---------------------------------------------------------

function receive(buf) {
  const r = new In(buf);
  const type = r.u8();
  switch (type) {
    case T.PIXEL: {
      const seq = r.u64(), x = r.u16(), y = r.u16(), color = r.u8();
      r.str8();
      if (seq > state.seq) state.seq = seq;
      paint(x, y, color);
      showSeq();
      return;
    }
    case T.JOINED: { const n = r.str8(); state.users.add(n); state.online++; users(); chat(null, n + " joined"); return; }
    case T.LEFT: { const n = r.str8(); state.users.delete(n); state.online = Math.max(0, state.online - 1); users(); chat(null, n + " left"); return; }
    case T.MSG: { const from = r.str8(); chat(from, r.str16()); return; }
    case T.DM: { const from = r.str8(); chat(from + " (to you)", r.str16()); return; }
    case T.HISTORY: { r.u64(); const from = r.str8(); chat(from, r.str16()); return; }
    case T.BYE: {
      const code = r.str8(), text = r.str16();
      notice("server: " + code + " " + text);
      return;
    }
    case T.PRESENCE: {
      state.online = r.u32(); r.u32(); r.u32();
      r.names(r.u16()).forEach((n) => state.users.add(n));
      r.names(r.u16()).forEach((n) => state.users.delete(n));
      users();
      return;
    }
    case T.KEEPALIVE: return;
  }
  if (type < 0x80) return; // an event this page does not know
  if (type === T.SNAPSHOT && expectSnapshot) {
    expectSnapshot = false;
    snapshot(r);
    return;
  }
  const handler = pending.shift();
  let reply = { type };
  if (type === T.ERROR) {
    reply.code = r.str8();
    reply.error = reply.code + ": " + r.str16();
  } else if (type === T.WELCOME) {
    welcome(r);
  } else if (type === T.WHOSE_OK) {
    reply.name = r.str8(); reply.ms = Number(r.u64()); reply.seq = r.u64();
  } else if (type === T.SET_OK) {
    reply.seq = r.u64();
  }
  if (handler) handler(reply);
}

function welcome(r) {
  const name = r.str8(), id = r.u64(), w = r.u16(), h = r.u16(), seq = r.u64(), resumed = r.u8();
  const n = r.u8();
  state.palette = [];
  for (let i = 0; i < n; i++) state.palette.push([r.u8(), r.u8(), r.u8(), r.str8()]);
  state.online = r.u32();
  state.users = new Set(r.names(r.u32()));
  // The server's last messages follow as HISTORY: they replace what the
  // page showed, so a reconnect does not show them twice.
  state.chat = [];
  $("chat").replaceChildren();
  users();
  palette();
  if (resumed) {
    state.resumed++;
  } else {
    expectSnapshot = true;
    if (state.canvasId !== null && id !== state.canvasId) chat(null, "a new canvas");
  }
  state.canvasId = id;
  if (!resumed || seq > state.seq) state.seq = seq;
  if (w !== state.width || h !== state.height) resize(w, h);
  $("where").textContent = w + " x " + h;
  showSeq();
  void name;
}

function snapshot(r) {
  const id = r.u64(), seq = r.u64(), w = r.u16(), h = r.u16();
  r.u8(); // 4 bits per pixel
  const packed = r.bytes(Math.ceil((w * h) / 2));
  if (w !== state.width || h !== state.height) resize(w, h);
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const c = i % 2 === 0 ? packed[i >> 1] >> 4 : packed[i >> 1] & 15;
    state.pixels[i] = c;
    const rgb = state.palette[c] || [0, 0, 0];
    img.data.set([rgb[0], rgb[1], rgb[2], 255], i * 4);
  }
  ctx.putImageData(img, 0, 0);
  state.canvasId = id;
  state.seq = seq;
  state.snapshots++;
  showSeq();
}

function paint(x, y, color) {
  if (x >= state.width || y >= state.height) return;
  state.pixels[y * state.width + x] = color;
  const rgb = state.palette[color] || [0, 0, 0];
  ctx.fillStyle = "rgb(" + rgb[0] + "," + rgb[1] + "," + rgb[2] + ")";
  ctx.fillRect(x, y, 1, 1);
}

function showSeq() { $("seq").textContent = "seq " + state.seq; }

function chat(from, text) {
  state.chat.push(from === null ? text : from + ": " + text);
  if (state.chat.length > 500) state.chat.shift();
  const list = $("chat");
  const li = document.createElement("li");
  if (from === null) {
    li.className = "note";
    li.textContent = text;
  } else {
    const b = document.createElement("span");
    b.className = "from";
    b.textContent = from;
    li.append(b, document.createTextNode(text));
  }
  list.append(li);
  while (list.children.length > 500) list.firstChild.remove();
  list.scrollTop = list.scrollHeight;
}

function users() {
  $("online-count").textContent = String(Math.max(state.online, state.users.size));
  const ul = $("users");
  ul.replaceChildren(...[...state.users].sort().slice(0, 200).map((n) => {
    const li = document.createElement("li");
    li.textContent = n;
    return li;
  }));
}

function palette() {
  const box = $("palette");
  box.replaceChildren(...state.palette.map((c, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.title = c[3];
    b.style.background = "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")";
    if (i === state.color) b.className = "picked";
    b.onclick = () => { state.color = i; palette(); };
    return b;
  }));
}

// ---- view: zoom, pan, pointer ------------------------------------------

const stage = $("stage");
const view = { z: 8, x: 0, y: 0 };

function resize(w, h) {
  state.width = w;
  state.height = h;
  state.pixels = new Uint8Array(w * h);
  board.width = w;
  board.height = h;
  fit();
}

function fit() {
  const r = stage.getBoundingClientRect();
  view.z = Math.max(1, Math.floor(Math.min(r.width / state.width, r.height / state.height) * 0.95));
  view.x = Math.round((r.width - state.width * view.z) / 2);
  view.y = Math.round((r.height - state.height * view.z) / 2);
  applyView();
}

function applyView() {
  board.style.transform = "translate(" + view.x + "px," + view.y + "px) scale(" + view.z + ")";
}

function zoomAt(px, py, factor) {
  const z = Math.min(64, Math.max(0.25, view.z * factor));
  view.x = px - ((px - view.x) * z) / view.z;
  view.y = py - ((py - view.y) * z) / view.z;
  view.z = z;
  applyView();
}

function cellAt(clientX, clientY) {
  const r = stage.getBoundingClientRect();
  const x = Math.floor((clientX - r.left - view.x) / view.z);
  const y = Math.floor((clientY - r.top - view.y) / view.z);
  return x >= 0 && y >= 0 && x < state.width && y < state.height ? [x, y] : null;
}

stage.addEventListener("wheel", (e) => {
  e.preventDefault();
  const r = stage.getBoundingClientRect();
  zoomAt(e.clientX - r.left, e.clientY - r.top, e.deltaY < 0 ? 1.25 : 0.8);
}, { passive: false });

const pointers = new Map();
let dragged = 0;
let pinch = null;

stage.addEventListener("pointerdown", (e) => {
  stage.setPointerCapture(e.pointerId);
  pointers.set(e.pointerId, [e.clientX, e.clientY]);
  if (pointers.size === 1) dragged = 0;
  if (pointers.size === 2) {
    const [a, b] = [...pointers.values()];
    pinch = Math.hypot(a[0] - b[0], a[1] - b[1]);
  }
});

stage.addEventListener("pointermove", (e) => {
  const prev = pointers.get(e.pointerId);
  if (prev) {
    const dx = e.clientX - prev[0], dy = e.clientY - prev[1];
    pointers.set(e.pointerId, [e.clientX, e.clientY]);
    if (pointers.size === 1) {
      dragged += Math.abs(dx) + Math.abs(dy);
      view.x += dx;
      view.y += dy;
      applyView();
    } else if (pointers.size === 2 && pinch) {
      dragged = Infinity;
      const [a, b] = [...pointers.values()];
      const d = Math.hypot(a[0] - b[0], a[1] - b[1]);
      const r = stage.getBoundingClientRect();
      zoomAt((a[0] + b[0]) / 2 - r.left, (a[1] + b[1]) / 2 - r.top, d / pinch);
      pinch = d;
    }
  }
  hover(e.clientX, e.clientY);
});

function release(e) {
  const was = pointers.has(e.pointerId);
  pointers.delete(e.pointerId);
  if (pointers.size < 2) pinch = null;
  // A click is a press that did not pan.
  if (was && e.type === "pointerup" && pointers.size === 0 && dragged < 5) place(e.clientX, e.clientY);
}
stage.addEventListener("pointerup", release);
stage.addEventListener("pointercancel", release);

// WHOSE for the pixel under the pointer, one question at a time.
let hovered = null;
let asking = false;

function hover(clientX, clientY) {
  const cell = cellAt(clientX, clientY);
  if (!cell) return;
  if (hovered && hovered[0] === cell[0] && hovered[1] === cell[1]) return;
  hovered = cell;
  const [x, y] = cell;
  const c = state.pixels[y * state.width + x];
  const rgb = state.palette[c] || [0, 0, 0];
  $("hover-xy").textContent = x + ", " + y;
  $("hover-swatch").style.background = "rgb(" + rgb[0] + "," + rgb[1] + "," + rgb[2] + ")";
  $("hover-color").textContent = rgb[3] || "";
  askWhose();
}

function askWhose() {
  if (asking || !hovered) return;
  const [x, y] = hovered;
  asking = send(new Out(T.WHOSE).u16(x).u16(y), (r) => {
    asking = false;
    if (!r.error) {
      $("hover-who").textContent = r.name
        ? "by " + r.name + ", " + new Date(r.ms).toLocaleString()
        : "nobody placed it";
    }
    if (hovered && (hovered[0] !== x || hovered[1] !== y)) askWhose();
  });
}

function place(clientX, clientY) {
  if (!PLAY || state.watching) return;
  const cell = cellAt(clientX, clientY);
  if (!cell) return;
  const [x, y] = cell;
  send(new Out(T.SET).u16(x).u16(y).u8(state.color), (r) => {
    if (r.error) notice(r.error);
  });
}

// ---- play: join and chat -------------------------------------------------

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  password = $("join-password").value;
  if (PLAY) wanted = { name: $("join-name").value.trim() };
  // A new session under the user's name; it resumes from where the page is.
  const old = ws;
  ws = null;
  if (old) { old.onclose = null; old.close(); }
  clearInterval(pinger);
  connect();
});

$("say").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("say-text");
  const text = input.value.trim();
  if (!text) return;
  send(new Out(T.SAY).str16(text), (r) => {
    if (r.error) notice(r.error);
    else input.value = "";
  });
});

window.addEventListener("resize", () => { if (state.width) fit(); });

// The colour index the <canvas> element itself shows at (x, y), or -1:
// lets tests check what is drawn, not only what the page believes.
window.pixchatPixelAt = (x, y) => {
  const d = ctx.getImageData(x, y, 1, 1).data;
  return state.palette.findIndex((c) => c[0] === d[0] && c[1] === d[1] && c[2] === d[2]);
};

connect();
