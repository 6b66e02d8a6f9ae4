// The gate page: scans through the API, a camera, and an offline mode that verifies
// tickets itself, queues its scans and syncs them when the network returns.
// Without JavaScript the page's form still posts to /gate (keyboard scanners, typed codes).
import { verifyTicket } from "./ticket.js";
import { arrivalOf, windowRefusal } from "./window.js";

const cfg = JSON.parse(document.getElementById("gate-config").textContent);
const form = document.getElementById("scan-form");
const field = document.getElementById("scan");
const insideEl = document.getElementById("inside-now");
const banner = document.getElementById("net-state");
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const store = "antri-gate:" + cfg.marketPoint + ":";
const CODE_CHARS = /^[ACDEFGHJKMNPQRTUVWXY34679]{8}$/;
const SYNC_MS = 30000;

function load(name, fallback) {
  try { const v = localStorage.getItem(store + name); return v ? JSON.parse(v) : fallback; }
  catch (e) { return fallback; }
}
function save(name, value) { localStorage.setItem(store + name, JSON.stringify(value)); }
function newId() {
  const a = new Uint8Array(12); crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

let device = localStorage.getItem("antri-gate-device");
if (!device) { device = "gate-" + newId().slice(0, 10); localStorage.setItem("antri-gate-device", device); }
let snapshot = load("snapshot", null);
let queue = load("queue", []);
// What this device did offline since its last snapshot: booking id -> ISO time.
let seenIn = load("seen-in", {});
let seenOut = load("seen-out", {});
let offline = !navigator.onLine;
let flushing = false;

function fill(template, args) {
  return String(template || "").replace(/%\((\w+)\)[sd]/g, (m, k) => (args && k in args ? args[k] : "?"));
}
function clock(date, withDay) {
  const opts = { timeZone: snapshot ? snapshot.market_point.timezone : undefined, hour: "2-digit", minute: "2-digit", hour12: false };
  if (withDay) Object.assign(opts, { day: "2-digit", month: "2-digit", year: "numeric" });
  return new Intl.DateTimeFormat("en-GB", opts).format(date).replace(/\//g, "-").replace(",", "");
}
function localDay(date) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: snapshot.market_point.timezone }).format(date);
}
function normaliseCode(text) {
  const code = text.replace(/[\s-]/g, "").toUpperCase();
  return CODE_CHARS.test(code) ? code : null;
}

// The packages to hand over (issue 15): "Serahkan 2 paket", or nothing.
function handoutText(handout) {
  if (!handout || !(handout.packages > 0)) return "";
  return fill(handout.packages === 1 ? cfg.text.handout_one : cfg.text.handout_other, { num: handout.packages });
}

// The answer, full screen: a colour, one word, the reason, the packages to hand over;
// a beep and a buzz.
let hideTimer = null;
function show(result, message, extra, handout, proxy) {
  let box = document.getElementById("result");
  if (!box) {
    box = document.createElement("div");
    box.id = "result";
    box.setAttribute("role", "alert");
    box.innerHTML = '<div class="word"></div><div class="why"></div><div class="extra"></div>';
    form.parentNode.insertBefore(box, form);
  }
  box.className = "result fullscreen " + result.result;
  box.setAttribute("data-result", result.result);
  box.setAttribute("data-reason", result.reason || "");
  box.setAttribute("data-offline", result.offline ? "true" : "false");
  box.querySelector(".word").textContent = cfg.words[result.result] || result.result;
  showWhy(box.querySelector(".why"), message || "");
  let more = box.querySelector(".extra");
  if (!more) { more = document.createElement("div"); more.className = "extra"; box.appendChild(more); }
  more.textContent = extra || "";
  let give = box.querySelector(".handout");
  if (!give) { give = document.createElement("div"); give.className = "handout"; box.appendChild(give); }
  give.textContent = handoutText(handout);
  give.hidden = !give.textContent;
  give.setAttribute("data-handout", give.hidden ? "0" : String(handout.packages));
  showProxy(box, proxy);
  box.hidden = false;
  signal(result.result);
  clearTimeout(hideTimer);
  hideTimer = setTimeout(() => box.classList.remove("fullscreen"), 2500);
  field.focus();
}
// "Name · NIK ****1234" (an admitted person) shows as two lines, the NIK on its own so it
// never splits on a narrow phone; any other message is plain text.
const PERSON = /^(.*) · (NIK \*{4}\d{4})$/;
function showWhy(why, message) {
  const person = PERSON.exec(message);
  if (!person) { why.textContent = message; return; }
  const who = document.createElement("div"); who.className = "who"; who.textContent = person[1];
  const nik = document.createElement("div"); nik.className = "nik"; nik.textContent = person[2];
  why.replaceChildren(who, nik);
}
// A booking collected by its proxy (issue 15 part 3): whose KTP to check, set apart
// so the gate cannot miss it.
function showProxy(box, proxy) {
  let card = box.querySelector(".proxy");
  if (!proxy) { if (card) card.remove(); return; }
  if (!card) { card = document.createElement("div"); card.className = "proxy"; box.appendChild(card); }
  card.setAttribute("data-proxy-nik", proxy.nik_last4);
  const line = (cls, text) => { const d = document.createElement("div"); d.className = cls; d.textContent = text; return d; };
  card.replaceChildren(line("check", cfg.text.proxy_check), line("label", cfg.text.proxy_label),
                       line("who", proxy.name), line("nik", "NIK ****" + proxy.nik_last4));
}
let audio = null;
function signal(result) {
  const tones = { admitted: [[880, 0.12]], checked_out: [[660, 0.12]], wait: [[520, 0.2], [520, 0.2]], refused: [[220, 0.35], [180, 0.35]] }[result] || [];
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    let t = audio.currentTime;
    for (const [freq, len] of tones) {
      const osc = audio.createOscillator(); const gain = audio.createGain();
      osc.frequency.value = freq; gain.gain.value = 0.25;
      osc.connect(gain); gain.connect(audio.destination);
      osc.start(t); osc.stop(t + len); t += len + 0.08;
    }
  } catch (e) { /* no sound on this device: the colour still says it */ }
  if (navigator.vibrate) navigator.vibrate(result === "admitted" ? 120 : result === "refused" ? [300, 100, 300] : [150, 100, 150]);
}
document.addEventListener("click", (e) => {
  const box = document.getElementById("result");
  if (box && box.contains(e.target)) box.classList.remove("fullscreen");
  if (e.target.tagName !== "A" && e.target.tagName !== "BUTTON" && e.target.tagName !== "INPUT") field.focus();
});

function renderState() {
  banner.hidden = !offline && queue.length === 0;
  banner.className = "net " + (offline ? "offline" : "pending");
  banner.setAttribute("data-offline", offline ? "true" : "false");
  banner.setAttribute("data-waiting", String(queue.length));
  banner.textContent = offline ? fill(cfg.text.offline, { count: queue.length }) : fill(cfg.text.waiting, { count: queue.length });
}
function setOffline(value) { offline = value; renderState(); }
function setInside(n) { if (typeof n === "number") insideEl.textContent = n; }

function bookingLine(booking) {
  if (!booking) return "";
  const code = booking.code.slice(0, 4) + "-" + booking.code.slice(4);
  return code + " · " + booking.slot.starts_at.slice(11, 16) + "–" + booking.slot.ends_at.slice(11, 16);
}

const SCAN_TIMEOUT_MS = 2500;
// Scans per sync request: well under the server's 64 KB request limit (a ticket scan
// is about 300 bytes of JSON).
const SYNC_BATCH = 100;

async function scan(text, direction) {
  const nonce = newId();
  if (!offline) {
    const body = { market_point: cfg.marketPoint, device: device, nonce: nonce };
    body[normaliseCode(text) ? "code" : "ticket"] = text;
    let answer = null;
    // A network that hangs (a captive portal, weak Wi-Fi) must not hang the gate: after
    // SCAN_TIMEOUT_MS the scan is decided offline and queued with the same nonce, so a
    // request that did arrive late is merged once, not twice.
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), SCAN_TIMEOUT_MS);
    try {
      const response = await fetch(direction === "out" ? cfg.checkoutUrl : cfg.checkinUrl, {
        method: "POST", credentials: "same-origin", signal: abort.signal,
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify(body),
      });
      if (response.status < 500) answer = { status: response.status, body: await response.json() };
    } catch (e) { answer = null; } finally { clearTimeout(timer); }
    if (answer) {
      const b = answer.body;
      if (answer.status >= 400) return show({ result: "refused", reason: b.error }, b.message);
      setInside(b.inside_now);
      if (b.booking && snapshot) {
        const cached = snapshot.bookings.find((x) => x.code === b.booking.code);
        if (cached) { cached.status = b.booking.status; save("snapshot", snapshot); }
      }
      return show(b, b.message, bookingLine(b.booking), b.handout, b.result === "admitted" ? b.proxy : null);
    }
    setOffline(true);
  }
  const verdict = await decideOffline(text, direction);
  queue.push({ nonce: nonce, scanned_at: new Date().toISOString(), ticket: text, direction: direction,
               local_result: verdict.result, local_reason: verdict.reason || "" });
  save("queue", queue);
  if (verdict.id !== undefined) {
    if (verdict.result === "admitted") { seenIn[verdict.id] = new Date().toISOString(); save("seen-in", seenIn); }
    if (verdict.result === "checked_out") { seenOut[verdict.id] = new Date().toISOString(); save("seen-out", seenOut); }
  }
  if (verdict.result === "admitted" || verdict.result === "checked_out") setInside(insideEstimate());
  renderState();
  const message = verdict.reason ? fill(cfg.messages[verdict.reason] || cfg.text.refused, verdict.args) : cfg.text.admitted_offline;
  // An offline admission hands over the packages the snapshot lists (issue 15).
  const handout = verdict.result === "admitted" && verdict.packages > 0 ? { packages: verdict.packages } : null;
  show({ result: verdict.result, reason: verdict.reason, offline: true }, message, verdict.code || "", handout,
       verdict.result === "admitted" && verdict.booking ? verdict.booking.proxy : null);
}

function insideEstimate() {
  const base = snapshot ? snapshot.inside_now : 0;
  return Math.max(0, base + Object.keys(seenIn).length - Object.keys(seenOut).length);
}

// The offline rules: the same as checkin/service.py, with what the last sync knew.
async function decideOffline(text, direction) {
  if (!snapshot) return { result: "refused", reason: "offline" };
  const now = new Date();
  let booking = null, start, end, id;
  const code = normaliseCode(text);
  if (code) {
    booking = snapshot.bookings.find((b) => b.code === code);
    if (!booking) return { result: "refused", reason: "unknown_ticket" };
    id = booking.id; start = new Date(booking.starts_at); end = new Date(booking.ends_at);
  } else {
    const claims = await verifyTicket(text, snapshot.keys);
    if (claims.error) return { result: "refused", reason: claims.error };
    if (claims.pointId !== snapshot.market_point.id) return { result: "refused", reason: "wrong_point", args: { point: "#" + claims.pointId } };
    id = claims.bookingId; start = claims.start; end = claims.end;
    // A booking made after the last sync is not in the list: its signature vouches for it.
    booking = snapshot.bookings.find((b) => b.id === id) || null;
    // A booking the market moved since the ticket was shown: its slot now is the synced one.
    if (booking) { start = new Date(booking.starts_at); end = new Date(booking.ends_at); }
  }
  const shown = booking ? booking.code.slice(0, 4) + "-" + booking.code.slice(4) : "";
  const packages = booking ? booking.packages || 0 : 0;
  const done = (result, reason, args) => ({ result: result, reason: reason, args: args, id: id, code: shown, packages: packages, booking: booking });
  const wasIn = seenIn[id] || (booking && booking.status === "checked_in" && booking.checked_in_at);
  if (direction === "out") {
    if (seenOut[id] || (booking && booking.status === "checked_out")) return done("refused", "already_checked_out");
    return wasIn ? done("checked_out", "") : done("refused", "not_checked_in");
  }
  if (seenIn[id]) return done("refused", "already_checked_in", { time: clock(new Date(seenIn[id]), true), by: cfg.me });
  if (booking && booking.status === "cancelled") return done("refused", "cancelled");
  if (booking && booking.status === "no_show") return done("refused", "no_show");
  if (booking && (booking.status === "checked_in" || booking.status === "checked_out")) {
    return done("refused", "already_checked_in", { time: booking.checked_in_at ? clock(new Date(booking.checked_in_at), true) : "?", by: "?" });
  }
  // Its arrival wave (issue 15) comes from the snapshot (window.js).
  const arrive = arrivalOf(booking, start);
  const w = windowRefusal(start, end, arrive, now, snapshot.checkin_early_minutes, snapshot.checkin_late_minutes, localDay);
  if (w.reason === "too_late") return done("refused", "too_late", { time: clock(end, localDay(end) !== localDay(now)) });
  if (w.reason === "not_today") return done("refused", "not_today", { when: clock(start, true) });
  if (w.reason === "too_early") return done("refused", "too_early", { arrive: clock(arrive), time: clock(w.opens) });
  const inside = insideEstimate();
  if (inside >= snapshot.market_point.safe_limit) return done("wait", "point_full", { inside: inside, limit: snapshot.market_point.safe_limit });
  return done("admitted", "");
}

async function refresh() {
  try {
    const response = await fetch(cfg.syncUrl, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
    if (!response.ok) throw new Error("sync " + response.status);
    snapshot = await response.json();
    save("snapshot", snapshot);
    if (queue.length === 0) { seenIn = {}; seenOut = {}; save("seen-in", seenIn); save("seen-out", seenOut); }
    setInside(queue.length ? insideEstimate() : snapshot.inside_now);
    setOffline(false);
  } catch (e) { setOffline(true); }
}

async function flush() {
  if (flushing || queue.length === 0) return;
  flushing = true;
  try {
    const batch = queue.slice(0, SYNC_BATCH);
    const response = await fetch(cfg.batchUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ market_point: cfg.marketPoint, device: device, scans: batch }),
    });
    if (response.ok || response.status === 422) {
      // 422: a batch the server can never take (a corrupt queue); keeping it would
      // block every later scan, and the server has logged nothing of it.
      const done = new Set(batch.map((s) => s.nonce));
      queue = queue.filter((s) => !done.has(s.nonce));
      save("queue", queue);
      if (response.ok) setInside((await response.json()).inside_now);
    }
    setOffline(false);
  } catch (e) {
    setOffline(true);
  } finally {
    flushing = false;
    renderState();
  }
}

async function tick() {
  await flush();
  if (queue.length === 0) await refresh();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = field.value.replace(/^[\r\n\t]+|[\r\n\t]+$/g, "");
  field.value = "";
  field.focus();
  if (!text.trim()) return show({ result: "refused", reason: "" }, cfg.text.empty);
  const checked = form.querySelector('input[name="direction"]:checked');
  scan(text, checked ? checked.value : "in");
});
window.addEventListener("online", () => { offline = false; tick(); });
window.addEventListener("offline", () => setOffline(true));
setInterval(() => { if (navigator.onLine) tick(); }, SYNC_MS);
setInterval(() => { if (navigator.onLine && (offline || queue.length)) tick(); }, 5000);
renderState();
tick();

// The camera: BarcodeDetector where the browser has it, else ZXing (zxing-wasm).
const cameraButton = document.getElementById("camera-toggle");
const video = document.getElementById("camera");
let stream = null, detector = null, zxing = null, lastText = "", lastAt = 0, busy = false;

function loadZxing() {
  return new Promise((resolve, reject) => {
    if (window.ZXingWASM) return resolve(window.ZXingWASM);
    const tag = document.createElement("script");
    tag.src = cfg.zxingUrl;
    tag.onload = () => {
      window.ZXingWASM.prepareZXingModule({
        overrides: { locateFile: (path, prefix) => (path.endsWith(".wasm") ? cfg.vendorUrl + path : prefix + path) },
        fireImmediately: true,
      });
      resolve(window.ZXingWASM);
    };
    tag.onerror = reject;
    document.head.appendChild(tag);
  });
}

async function startCamera() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  } catch (e) {
    // Not a ticket's answer: say it beside the button, not as a full-screen TOLAK.
    cameraButton.textContent = cfg.text.no_camera;
    return;
  }
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  cameraButton.textContent = cfg.text.camera_stop;
  cameraButton.setAttribute("aria-pressed", "true");
  detector = null;
  if ("BarcodeDetector" in window) {
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      if (formats.includes("qr_code")) detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    } catch (e) { detector = null; }
  }
  if (!detector) zxing = await loadZxing();
  document.body.setAttribute("data-decoder", detector ? "barcode-detector" : "zxing-wasm");
  requestAnimationFrame(look);
}

function stopCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  video.hidden = true;
  cameraButton.textContent = cfg.text.camera_start;
  cameraButton.setAttribute("aria-pressed", "false");
}

const canvas = document.createElement("canvas");
async function look() {
  if (!stream) return;
  if (!busy && video.readyState >= 2 && video.videoWidth) {
    busy = true;
    try {
      let text = null;
      if (detector) {
        const codes = await detector.detect(video);
        text = codes.length ? codes[0].rawValue : null;
      } else {
        const scale = Math.min(1, 800 / video.videoWidth);
        canvas.width = Math.round(video.videoWidth * scale);
        canvas.height = Math.round(video.videoHeight * scale);
        const ctx = canvas.getContext("2d", { willReadFrequently: true });
        ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
        const found = await zxing.readBarcodes(ctx.getImageData(0, 0, canvas.width, canvas.height), { formats: ["QRCode"], tryHarder: true, maxNumberOfSymbols: 1 });
        text = found.length && found[0].isValid ? found[0].text : null;
      }
      // One ticket held in front of the camera is one scan, not one per frame.
      if (text && (text !== lastText || Date.now() - lastAt > 4000)) {
        lastText = text; lastAt = Date.now();
        const checked = form.querySelector('input[name="direction"]:checked');
        await scan(text, checked ? checked.value : "in");
        await new Promise((r) => setTimeout(r, 700));  // ready again within a second
      }
    } catch (e) { /* a frame that fails to decode: try the next */ }
    busy = false;
  }
  setTimeout(() => requestAnimationFrame(look), 120);
}

if (cameraButton && navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  cameraButton.hidden = false;
  cameraButton.addEventListener("click", () => (stream ? stopCamera() : startCamera()));
}

// Reload offline: a service worker keeps the page and its scripts.
// The page that loaded before the worker existed is saved now, as the ticket page does.
if ("serviceWorker" in navigator && "caches" in window) {
  navigator.serviceWorker.register(cfg.workerUrl, { scope: cfg.workerScope })
    .then(() => caches.open(cfg.workerCache))
    .then((cache) => cache.add(location.href))
    .catch(() => {});
}
