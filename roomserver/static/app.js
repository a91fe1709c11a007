// roomserver in the browser: Sign-In-With-Solana, rooms over REST, one room over the
// WebSocket protocol (docs/protocol.md). No dependencies. User text only ever goes through
// textContent / text nodes, never through HTML parsing.

const API = "/api/v1";
const SUBPROTOCOL = "roomserver.v1";
const REACTIONS = ["👍", "🎉", "❓", "💡"];
const KEY_SESSION = "roomserver.session";
const $ = (id) => document.getElementById(id);

// ---------- small helpers ----------

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c); // strings become text nodes
  return e;
}

function notice(text, kind = "warn", key = null) {
  const box = $("notices");
  if (key) clearNotice(key);
  const n = el("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : null },
    el("span", { text }),
    el("button", { type: "button", "aria-label": "Dismiss", text: "×", onclick: () => n.remove() }));
  if (key) n.dataset.key = key;
  box.append(n);
  if (kind !== "error") setTimeout(() => n.remove(), 8000);
}
function clearNotice(key) {
  for (const n of $("notices").children) if (n.dataset.key === key) n.remove();
}

const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
export function base58(bytes) {
  const digits = []; // little-endian base-58 digits
  for (const byte of bytes) {
    let carry = byte;
    for (let i = 0; i < digits.length; i++) {
      carry += digits[i] * 256;
      digits[i] = carry % 58;
      carry = Math.floor(carry / 58);
    }
    while (carry > 0) { digits.push(carry % 58); carry = Math.floor(carry / 58); }
  }
  let out = "";
  for (const byte of bytes) { if (byte !== 0) break; out += "1"; }
  for (let i = digits.length - 1; i >= 0; i--) out += B58[digits[i]];
  return out;
}
const base64 = (bytes) => btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
const utf8 = (text) => new TextEncoder().encode(text);
const short = (s) => (s && s.length > 12 ? `${s.slice(0, 4)}…${s.slice(-4)}` : s || "");
const newId = () => "c-" + (crypto.randomUUID?.() ?? `${Date.now()}-${Math.random().toString(36).slice(2)}`);
const timeOf = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "");

// ---------- REST ----------

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    Object.assign(this, { status, code, details });
  }
}

function session() {
  try { return JSON.parse(sessionStorage.getItem(KEY_SESSION)); } catch { return null; }
}
function saveSession(s) { sessionStorage.setItem(KEY_SESSION, JSON.stringify(s)); }

async function api(method, path, body) {
  const headers = {};
  const token = session()?.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "network", "The server cannot be reached.");
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = data?.error ?? {};
    if (res.status === 401 && token) signedOut("Your session has ended: please sign in again.");
    throw new ApiError(res.status, err.code ?? `http_${res.status}`, err.message ?? res.statusText, err.details);
  }
  return data;
}

// ---------- sign-in ----------

const walletProvider = () => window.phantom?.solana ?? window.solana ?? null;
const toBytes = (x) => (x instanceof Uint8Array ? x : new Uint8Array(x?.data ?? x));
function addressOf(pk) {
  if (typeof pk === "string") return pk;
  if (pk instanceof Uint8Array) return base58(pk);
  return pk?.toBase58?.() ?? String(pk);
}

function checkOrigin(challenge) {
  const uri = (challenge.input?.uri ?? "").replace(/\/$/, "");
  if (uri && uri !== location.origin) {
    notice(`This server signs you in for ${uri}, but this page is open at ${location.origin}: ` +
      `rooms will refuse the connection. Open ${uri} instead (or set PUBLIC_ORIGIN / ALLOWED_ORIGINS).`,
      "error", "origin");
  }
  return uri;
}

async function finishSignIn(body, origin) {
  const done = await api("POST", "/auth/wallet/verify", body);
  saveSession({ token: done.token, user: done.user, expires_at: done.expires_at, origin });
  notice(done.new_user ? "Welcome! Pick a display name at the top." : "Signed in.", "info", "signin");
  route();
}

function idbRequest(mode, run) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("roomserver", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("keys");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const req = run(open.result.transaction("keys", mode).objectStore("keys"));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    };
  });
}

async function browserKey() {
  let pair = await idbRequest("readonly", (s) => s.get("ed25519")).catch(() => null);
  if (!pair) {
    // Not extractable: the private key never leaves WebCrypto, IndexedDB keeps the handle.
    pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    await idbRequest("readwrite", (s) => s.put(pair, "ed25519")).catch(() =>
      notice("This browser could not store the key: a reload will sign in as a new user."));
  }
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { pair, address: base58(raw) };
}

async function signInWithKey() {
  if (!globalThis.crypto?.subtle) throw new Error("WebCrypto needs a secure page (https or 127.0.0.1/localhost).");
  let key;
  try {
    key = await browserKey();
  } catch (e) {
    throw new Error(`This browser has no Ed25519 in WebCrypto (${e.name}): use a wallet or a current browser.`);
  }
  const challenge = await api("POST", "/auth/siws/challenge", { address: key.address });
  const origin = checkOrigin(challenge);
  const message = utf8(challenge.message);
  const signature = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key.pair.privateKey, message));
  await finishSignIn({ public_key: key.address, message: base64(message), signature: base58(signature) }, origin);
}

async function signInWithWallet() {
  const wallet = walletProvider();
  if (!wallet) throw new Error("No Solana wallet found in this browser.");
  if (typeof wallet.signIn === "function") {
    const challenge = await api("POST", "/auth/siws/challenge", {});
    const origin = checkOrigin(challenge);
    let out = await wallet.signIn(challenge.input);
    if (Array.isArray(out)) out = out[0];
    const address = out.account?.address ?? addressOf(out.account?.publicKey ?? out.address ?? out.publicKey);
    await finishSignIn({ public_key: address, message: base64(toBytes(out.signedMessage)),
      signature: base58(toBytes(out.signature)) }, origin);
    return;
  }
  const connected = await wallet.connect();
  const address = addressOf(connected?.publicKey ?? wallet.publicKey);
  const challenge = await api("POST", "/auth/siws/challenge", { address });
  const origin = checkOrigin(challenge);
  const message = utf8(challenge.message);
  const signed = await wallet.signMessage(message, "utf8");
  await finishSignIn({ public_key: address, message: base64(message),
    signature: base58(toBytes(signed?.signature ?? signed)) }, origin);
}

function signedOut(text) {
  sessionStorage.removeItem(KEY_SESSION);
  leaveRoom();
  if (text) notice(text, "error", "signin");
  route();
}

async function busy(button, work) {
  button.disabled = true;
  try { await work(); } catch (e) { notice(e.message || String(e), "error"); } finally { button.disabled = false; }
}

// ---------- views ----------

function show(view) {
  for (const id of ["signin-view", "rooms-view", "room-view"]) $(id).hidden = id !== view;
}

function renderMe() {
  const user = session()?.user;
  $("account").hidden = !user;
  if (!user) return;
  $("me").textContent = user.username || short(user.wallet_address);
  $("me").title = user.wallet_address;
  if (document.activeElement !== $("name-input")) $("name-input").value = user.username ?? "";
}

function showSignin() {
  show("signin-view");
  $("signin-wallet").hidden = !walletProvider();
  $("signin-hint").textContent = walletProvider()
    ? "A wallet was found: it will ask you to approve the sign-in message."
    : "The demo key is an Ed25519 key made and kept by this browser; reloading keeps the same account.";
}

async function showRooms() {
  show("rooms-view");
  const list = $("room-list");
  try {
    const page = await api("GET", "/rooms?limit=50");
    list.replaceChildren();
    if (!page.rooms.length) list.append(el("li", { class: "hint", text: "No rooms yet: create the first one." }));
    for (const r of page.rooms) {
      const meta = `${r.room_type.replace("_", " ")} · ${r.participant_count}/${r.max_participants}` +
        (r.my_role ? ` · ${r.my_role}` : "");
      list.append(el("li", {},
        el("div", {}, el("strong", { text: r.name }), el("div", { class: "meta", text: meta })),
        el("button", { type: "button", text: r.my_role ? "Open" : "Join",
          "aria-label": `${r.my_role ? "Open" : "Join"} ${r.name}`,
          onclick: () => { location.hash = `#/room/${r.id}`; } })));
    }
  } catch (e) {
    if (e.status !== 401) notice(`Could not list rooms: ${e.message}`, "error");
  }
}

// ---------- one room ----------

const STOP_TEXT = {
  1000: "The server ended the connection.",
  1008: "The server refused the connection (policy).",
  4100: "Your session is not valid any more: please sign in again.",
  4101: "You are not allowed in this room.",
  4102: "You are banned from this room.",
  4103: "A moderator removed you from this room.",
  4104: "This room has been closed.",
  4105: "Your session was revoked: please sign in again.",
  4106: "You no longer hold what this room requires (token or NFT), so you were removed.",
  4107: "This room does not exist.",
  4108: "This page's address may not open sockets here: open the server's own address.",
};

class Room {
  constructor(id) {
    Object.assign(this, {
      id, ws: null, me: null, welcomed: false, closed: false, retries: 0, timer: null,
      seq: null, seen: new Set(), messages: new Map(), pending: new Map(), outbox: new Map(),
      names: new Map(), presence: new Map(), typing: new Map(), answers: new Map(),
      mine: new Map(), tutorRefs: new Set(), threadId: null, typingSent: 0, typingTimer: null,
    });
  }

  async start() {
    show("room-view");
    $("room-name").textContent = "…";
    $("messages").replaceChildren();
    $("presence").replaceChildren();
    $("typing").textContent = "";
    this.renderThread();
    composer(true);
    try {
      await api("POST", `/rooms/${this.id}/join`);
    } catch (e) {
      if (e.status !== 401) notice(`Cannot join: ${e.message}`, "error");
      if (room === this) location.hash = "";
      return;
    }
    if (!this.closed) this.connect();
  }

  connect() {
    const token = session()?.token;
    if (!token || this.closed) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws/rooms/${encodeURIComponent(this.id)}`,
      [SUBPROTOCOL, `bearer.${token}`]);
    this.ws = ws;
    this.welcomed = false;
    this.status("connecting…");
    ws.onmessage = (ev) => {
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (ws === this.ws) this.onFrame(frame);
    };
    ws.onclose = (ev) => { if (ws === this.ws) this.onClose(ev); };
  }

  leave() {
    this.closed = true;
    clearTimeout(this.timer);
    this.stopTyping();
    for (const t of this.typing.values()) clearTimeout(t);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000, "left");
  }

  status(text, live = false) {
    $("conn").textContent = text;
    $("conn").classList.toggle("live", live);
  }

  send(frame) {
    if (this.ws?.readyState !== WebSocket.OPEN || !this.welcomed) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  sendDurable(frame) { // kept until acked; resent with the same client_msg_id after a reconnect
    this.outbox.set(frame.client_msg_id, frame);
    this.send(frame);
  }

  // ---- close and reconnect ----

  async onClose(ev) {
    const wasWelcomed = this.welcomed;
    this.ws = null;
    this.welcomed = false;
    this.clearTyping();
    if (this.closed) return;
    const code = ev.code;
    if (code === 1000 || code === 1008 || (code >= 4100 && code <= 4199)) return this.stop(code);
    if (!wasWelcomed) {
      // A refused handshake reaches a browser as 1006 with no reason: ask over REST why.
      const s = session();
      if (s?.origin && s.origin !== location.origin) return this.stop(4108);
      try {
        await api("POST", `/rooms/${this.id}/join`);
      } catch (e) {
        if (e.status === 401) return;
        if (e.status >= 400 && e.status < 500) return this.stop(e.status === 404 ? 4107 : 4101, e.message);
      }
      if (this.closed) return;
    }
    this.reconnect(code === 4004 ? 5000 : 0);
  }

  reconnect(atLeast) {
    const delay = Math.max(atLeast, Math.min(30000, 500 * 2 ** this.retries)) * (0.75 + Math.random() / 2);
    this.retries += 1;
    this.status(`connection lost, reconnecting in ${Math.ceil(delay / 1000)} s…`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  stop(code, detail) {
    this.closed = true;
    const text = detail || STOP_TEXT[code] || `Disconnected (${code}).`;
    this.status("disconnected");
    this.presence.clear();
    this.renderPresence();
    composer(false);
    if (code === 4100 || code === 4105) return signedOut(text);
    notice(`${text} (${code})`, "error", "room");
  }

  // ---- frames ----

  onFrame(f) {
    switch (f.type) {
      case "welcome": return this.onWelcome(f);
      case "ack": return this.onAck(f);
      case "new_message": if (this.durable(f.seq)) this.renderMessage(f.message, f.seq); return;
      case "reaction_updated": if (this.durable(f.seq)) this.onReaction(f); return;
      case "message_updated": if (this.durable(f.seq)) this.onUpdated(f); return;
      case "document_shared":
        if (this.durable(f.seq)) this.systemLine(`${this.nameOf(f.shared_by)} shared “${f.title ?? "a document"}”${f.note ? `: ${f.note}` : ""}`, f.seq);
        return;
      case "highlight_created":
        if (this.durable(f.seq)) this.systemLine(`${this.nameOf(f.highlight.user_id)} highlighted “${f.highlight.text}”`, f.seq);
        return;
      case "user_joined": this.addPresence(f.user); return;
      case "user_left": this.presence.delete(f.user_id); this.setTyping(f.user_id, false); this.renderPresence(); return;
      case "typing_status": if (f.user_id !== this.me?.user_id) this.setTyping(f.user_id, f.typing); return;
      case "socratic_response": return this.onTutor(f);
      case "recovered": return this.onRecovered(f);
      case "error": return this.onError(f);
      case "achievement_earned":
        if (f.user_id === this.me?.user_id) notice(`Achievement: ${f.achievement.name}`, "info");
        return;
      default: return undefined; // pong and frames added later
    }
  }

  onWelcome(f) {
    this.me = f.you;
    this.welcomed = true;
    this.retries = 0;
    clearNotice("room");
    $("room-name").textContent = f.room.name ?? "Room";
    this.status("live", true);
    this.presence.clear();
    for (const m of [f.you, ...f.presence]) this.addPresence(m, false);
    this.renderPresence();
    if (this.seq === null) {
      this.seq = f.seq;
      this.loadHistory(Math.max(0, f.seq - 100), 2);
    } else {
      this.ws.send(JSON.stringify({ type: "resume", last_seq: this.seq }));
    }
    for (const frame of this.outbox.values()) this.send(frame);
  }

  durable(seq) { // false for an event already applied (live and replayed)
    if (typeof seq !== "number") return true;
    if (this.seen.has(seq)) return false;
    this.seen.add(seq);
    if (seq > (this.seq ?? 0)) this.seq = seq;
    return true;
  }

  async loadHistory(after, pages = 50) {
    try {
      for (let i = 0; i < pages && after !== null && !this.closed; i++) {
        const page = await api("GET", `/rooms/${this.id}/messages?after_seq=${after}&limit=200`);
        for (const m of page.messages) {
          this.durable(m.seq);
          this.renderMessage(m, m.seq);
          if (m.reactions) this.renderReactions(m.id, m.reactions);
        }
        after = page.next_after_seq;
      }
    } catch (e) {
      notice(`Could not load the history: ${e.message}`, "error");
    }
  }

  onRecovered(f) {
    if (!f.complete) {
      notice("Missed too much while offline: reloading the history.", "info");
      this.loadHistory(f.from_seq);
    }
  }

  onAck(f) {
    this.outbox.delete(f.client_msg_id);
    const node = this.pending.get(f.client_msg_id);
    if (!node) return;
    this.pending.delete(f.client_msg_id);
    this.markSent(node, f.message_id, f.seq);
  }

  markSent(node, id, seq) {
    node.classList.remove("pending");
    node.querySelector(".state").textContent = "✓ sent";
    if (typeof seq === "number") node.dataset.seq = seq;
    if (id && !this.messages.has(id)) {
      node.dataset.id = id;
      this.messages.set(id, node);
      this.renderReactions(id, {});
    }
  }

  onError(f) {
    const frame = f.ref ? this.outbox.get(f.ref) : null;
    if (f.code === "rate_limited") {
      notice(`Slow down: try again in ${Math.ceil(f.retry_after ?? 1)} s.`, "warn", "rate");
      if (frame) setTimeout(() => this.send(frame), (f.retry_after ?? 1) * 1000 + 100);
      return;
    }
    if (frame) {
      this.outbox.delete(f.ref);
      const node = this.pending.get(f.ref);
      if (node) {
        this.pending.delete(f.ref);
        node.classList.replace("pending", "failed");
        node.querySelector(".state").textContent = `not sent: ${f.message}`;
      }
    }
    const what = f.code === "tutor_unavailable" ? "The tutor is unavailable right now" : "The server refused that";
    notice(`${what}: ${f.message} (${f.code})`, "error");
  }

  // ---- people ----

  addPresence(m, render = true) {
    const label = m.username || short(m.wallet_address) || short(m.user_id);
    this.names.set(m.user_id, label);
    this.presence.set(m.user_id, label);
    if (render) this.renderPresence();
  }

  renderPresence() {
    const items = [...this.presence].map(([id, label]) =>
      el("li", { text: id === this.me?.user_id ? `${label} (you)` : label }));
    $("presence").replaceChildren(...items);
  }

  nameOf(userId, username) {
    return username || this.names.get(userId) || `user ${short(userId)}`;
  }

  setTyping(userId, on) {
    clearTimeout(this.typing.get(userId));
    this.typing.delete(userId);
    if (on) this.typing.set(userId, setTimeout(() => this.setTyping(userId, false), 6000));
    const names = [...this.typing.keys()].map((id) => this.nameOf(id));
    $("typing").textContent = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…`
      : names.length === 2 ? `${names[0]} and ${names[1]} are typing…` : `${names.length} people are typing…`;
  }

  clearTyping() { for (const id of [...this.typing.keys()]) this.setTyping(id, false); }

  typed() {
    const now = Date.now();
    if (now - this.typingSent > 3000 && this.send({ type: "typing_start" })) this.typingSent = now;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.stopTyping(), 3000);
  }

  stopTyping() {
    clearTimeout(this.typingTimer);
    if (this.typingSent) this.send({ type: "typing_stop" });
    this.typingSent = 0;
  }

  // ---- messages ----

  sendChat(text) {
    const id = newId();
    const node = this.messageNode({ user_id: this.me?.user_id, username: this.me?.username, text, kind: "text" });
    node.classList.add("pending");
    node.querySelector(".state").textContent = "sending…";
    this.insert(node, Infinity);
    this.pending.set(id, node);
    this.stopTyping();
    this.sendDurable({ type: "chat_message", text, client_msg_id: id });
  }

  messageNode(m) {
    const tutor = m.kind === "tutor";
    const meta = m.metadata ?? {};
    const who = tutor ? `Tutor · asked by ${this.nameOf(m.user_id, m.username)}` : this.nameOf(m.user_id, m.username);
    const head = el("div", {},
      tutor ? el("span", { class: "tag", text: meta.mode === "offline" ? "offline tutor" : "tutor" }) : null,
      el("span", { class: "who", text: who }),
      el("time", { class: "when", datetime: m.created_at, text: timeOf(m.created_at) }),
      el("span", { class: "pin", text: m.pinned ? " 📌" : "" }),
      el("span", { class: "state" }));
    const node = el("li", { class: tutor ? "msg tutor" : "msg" }, head,
      tutor && meta.question ? el("div", { class: "hint", text: `Q: ${meta.question}` }) : null,
      el("div", { class: "text", text: m.deleted ? "(deleted)" : m.text }),
      el("div", { class: "reacts" }));
    return node;
  }

  renderMessage(m, seq) {
    if (this.messages.has(m.id)) return;
    let node = m.client_msg_id ? this.pending.get(m.client_msg_id) : null;
    if (node) {
      this.pending.delete(m.client_msg_id);
      this.markSent(node, m.id, seq);
      const when = node.querySelector(".when");
      when.textContent = timeOf(m.created_at);
      if (m.created_at) when.setAttribute("datetime", m.created_at);
      this.insert(node, seq);
      return;
    }
    const answer = m.kind === "tutor" ? this.answers.get(m.metadata?.answer_id) : null;
    if (answer) {
      node = answer.node;
    } else {
      node = this.messageNode(m);
      this.insert(node, seq);
    }
    node.dataset.id = m.id;
    this.messages.set(m.id, node);
    this.renderReactions(m.id, {});
  }

  systemLine(text, seq) {
    this.insert(el("li", { class: "msg hint", text }), seq);
  }

  insert(node, seq) { // keep the list in seq order; unsent messages stay at the end
    const list = $("messages");
    const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
    node.dataset.seq = seq === Infinity ? "" : seq;
    let before = null;
    if (seq !== Infinity) {
      for (let c = list.lastElementChild; c; c = c.previousElementSibling) {
        if (c.dataset.seq !== "" && Number(c.dataset.seq) < seq) break;
        before = c;
      }
    }
    if (node.nextSibling !== before || node.parentNode !== list) list.insertBefore(node, before);
    if (stick) list.scrollTop = list.scrollHeight;
  }

  onUpdated(f) {
    const node = this.messages.get(f.message_id);
    if (!node) return;
    if (f.deleted) node.querySelector(".text").textContent = "(deleted)";
    if (f.pinned != null) node.querySelector(".pin").textContent = f.pinned ? " 📌" : "";
  }

  // ---- reactions ----

  onReaction(f) {
    if (f.user_id === this.me?.user_id) {
      const mine = this.mine.get(f.message_id) ?? new Set();
      if (f.added) mine.add(f.emoji); else mine.delete(f.emoji);
      this.mine.set(f.message_id, mine);
    }
    this.renderReactions(f.message_id, f.reactions);
  }

  renderReactions(messageId, counts) {
    const node = this.messages.get(messageId);
    if (!node) return;
    const box = node.querySelector(".reacts");
    const mine = this.mine.get(messageId) ?? new Set();
    const emojis = [...new Set([...REACTIONS, ...Object.keys(counts)])];
    box.replaceChildren(...emojis.map((emoji) => {
      const n = counts[emoji] ?? 0;
      const on = mine.has(emoji);
      return el("button", {
        type: "button", class: on ? "mine" : n ? "" : "add", text: n ? `${emoji} ${n}` : emoji,
        "aria-pressed": String(on), "aria-label": `React ${emoji}${n ? ` (${n})` : ""}`,
        onclick: () => this.sendDurable({ type: on ? "reaction_remove" : "reaction_add",
          message_id: messageId, emoji, client_msg_id: newId() }),
      });
    }));
  }

  // ---- the tutor ----

  ask(question) {
    const ref = newId();
    const frame = { type: "socratic_query", question, client_msg_id: ref };
    if (this.threadId) frame.thread_id = this.threadId;
    if (!this.send(frame)) return notice("Not connected: the question was not sent.", "error");
    this.tutorRefs.add(ref);
    return true;
  }

  onTutor(f) {
    let a = this.answers.get(f.answer_id);
    if (!a) {
      const node = this.messageNode({ kind: "tutor", user_id: f.asked_by, text: "", metadata: { mode: f.mode } });
      node.querySelector(".state").textContent = "thinking…";
      a = { node, text: node.querySelector(".text") };
      this.answers.set(f.answer_id, a);
      this.insert(node, Infinity);
    }
    const { node } = a;
    if ((this.tutorRefs.has(f.ref) || f.asked_by === this.me?.user_id) && f.thread_id) {
      this.threadId = f.thread_id;
      this.renderThread();
    }
    if (f.mode) node.querySelector(".tag").textContent = f.mode === "offline" ? "offline tutor" : "tutor";
    if (f.question && !node.querySelector(".question")) {
      node.querySelector(".text").before(el("div", { class: "hint question", text: `Q: ${f.question}` }));
    }
    if (f.sources?.length && !node.querySelector(".sources")) {
      node.append(el("p", { class: "sources", text: `Sources: ${f.sources.map((s) => s.cite).join(", ")}` }));
    }
    if (!f.done) {
      if (f.text) { a.text.textContent += f.text; node.querySelector(".state").textContent = "answering…"; }
      return;
    }
    if (f.text || !f.error) a.text.textContent = f.text;
    const state = f.error === "cancelled" ? "stopped" : f.error ? `tutor unavailable${f.detail ? `: ${f.detail}` : ""}` : "";
    node.querySelector(".state").textContent = state;
    this.answers.delete(f.answer_id);
    if (f.message_id) {
      const stored = this.messages.get(f.message_id);
      if (stored && stored !== node) stored.remove(); // shown twice: keep the streamed one
      node.dataset.id = f.message_id;
      this.messages.set(f.message_id, node);
      if (typeof f.message_seq === "number") { this.durable(f.message_seq); node.dataset.seq = f.message_seq; }
      this.renderReactions(f.message_id, {});
    }
  }

  renderThread() {
    $("tutor-thread").textContent = this.threadId
      ? "Continuing your thread: answer the tutor here, or start a new thread."
      : "Your next question starts a new thread.";
  }
}

let room = null;

function composer(enabled) { // off once a room refused us for good
  for (const b of document.querySelectorAll("#chat-form button, #tutor-form button")) b.disabled = !enabled;
}

function openRoom(id) {
  if (room?.id === id && !room.closed) return;
  leaveRoom();
  room = new Room(id);
  room.start();
}

function leaveRoom() {
  room?.leave();
  room = null;
}

// ---------- routing and wiring ----------

function route() {
  renderMe();
  if (!session()) {
    leaveRoom();
    return showSignin();
  }
  const m = location.hash.match(/^#\/room\/([0-9a-fA-F-]{36})$/);
  if (m) return openRoom(m[1].toLowerCase());
  leaveRoom();
  return showRooms();
}

function wire() {
  $("signin-key").addEventListener("click", (e) => busy(e.currentTarget, signInWithKey));
  $("signin-wallet").addEventListener("click", (e) => busy(e.currentTarget, signInWithWallet));
  $("sign-out").addEventListener("click", async () => {
    await api("POST", "/auth/wallet/disconnect").catch(() => null);
    signedOut();
  });
  $("home").addEventListener("click", (e) => { e.preventDefault(); location.hash = ""; });
  $("back").addEventListener("click", () => { location.hash = ""; });
  $("refresh-rooms").addEventListener("click", () => showRooms());
  $("name-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const username = $("name-input").value.trim();
    try {
      const user = await api("PATCH", "/users/profile", { username });
      const s = session();
      saveSession({ ...s, user: { ...s.user, username: user.username } });
      renderMe();
      notice("Name saved (rooms show it from your next connection).", "info");
    } catch (err) {
      notice(`Could not save the name: ${err.message}`, "error");
    }
  });
  $("create-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("create-name").value.trim();
    try {
      const created = await api("POST", "/rooms", { name, room_type: $("create-type").value });
      $("create-name").value = "";
      location.hash = `#/room/${created.id}`;
    } catch (err) {
      notice(`Could not create the room: ${err.message}`, "error");
    }
  });
  $("chat-input").addEventListener("input", () => room?.typed());
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("chat-input").value.trim();
    if (!text || !room) return;
    room.sendChat(text);
    $("chat-input").value = "";
  });
  $("tutor-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const question = $("tutor-input").value.trim();
    if (question && room?.ask(question)) $("tutor-input").value = "";
  });
  $("tutor-new").addEventListener("click", () => { if (room) { room.threadId = null; room.renderThread(); } });
  $("tutor-cancel").addEventListener("click", () => room?.send({ type: "socratic_cancel" }));
  window.addEventListener("hashchange", route);
  window.addEventListener("pagehide", () => room?.stopTyping());
}

wire();
route();
