// Shared by every console screen: page data, translations, the /v1 API with the session's
// CSRF token, the live event stream, and DOM helpers that only ever set text (never HTML):
// caller names, headers, addresses and notes come from outside and stay inert.

const dataNode = document.getElementById("page-data");
export const page = dataNode ? JSON.parse(dataNode.textContent) : {};
const texts = page.texts || {};

export function t(key, params) {
  let s = Object.prototype.hasOwnProperty.call(texts, key) ? texts[key] : key;
  if (params) {
    for (const [k, v] of Object.entries(params)) s = s.split(`{${k}}`).join(String(v));
  }
  return s;
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

export async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") init.headers["X-CSRF-Token"] = page.csrf;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) {
    window.location.assign("/console/login");
    throw new ApiError(401, null);
  }
  const text = await r.text();
  const parsed = text ? JSON.parse(text) : null;
  if (!r.ok) throw new ApiError(r.status, parsed);
  return parsed;
}

// el("li", {class: "x", dataset: {id: 1}}, "text", child) — strings become text nodes.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

const timeFmt = new Intl.DateTimeFormat(page.lang === "en" ? "en-GB" : "id-ID", {
  timeZone: page.timezone || "Asia/Jakarta",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
});

export function clock(iso) {
  if (!iso) return "";
  return `${timeFmt.format(new Date(iso))} ${page.zone || ""}`.trim();
}

export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const m = Math.floor(s / 60);
  const r = s % 60;
  return m >= 60
    ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${String(r).padStart(2, "0")}`
    : `${m}:${String(r).padStart(2, "0")}`;
}

export function age(iso) {
  return duration((Date.now() - new Date(iso).getTime()) / 1000);
}

let toastTimer = null;
export function toast(message, kind) {
  const node = document.getElementById("toast");
  if (!node) return;
  node.textContent = message;
  node.dataset.kind = kind || "info";
  node.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => node.classList.remove("show"), 4000);
}

export function fail(err) {
  const code = err && err.code ? err.code : "error";
  const known = `error.${code}`;
  toast(t(known) !== known ? t(known) : `${t("error.generic")} (${code})`, "error");
}

// The /v1 event stream; EventSource reconnects by itself and resumes with Last-Event-ID.
export function stream(types, onEvent, onState) {
  const url = `/v1/events/stream?types=${encodeURIComponent(types.join(","))}`;
  const source = new EventSource(url, { withCredentials: true });
  source.addEventListener("open", () => onState && onState("live"));
  source.addEventListener("error", () => onState && onState("reconnecting"));
  for (const type of types) {
    source.addEventListener(type, (msg) => {
      try {
        onEvent(JSON.parse(msg.data));
      } catch (e) {
        console.warn("bad event", e);
      }
    });
  }
  return source;
}

export function setStreamState(state) {
  const node = document.getElementById("stream-state");
  if (!node) return;
  node.dataset.state = state;
  node.textContent = t(`stream.${state}`);
}

export function every(ms, fn) {
  fn();
  return setInterval(fn, ms);
}

// When things reached the screen (epoch ms), for bench/console: the last 2000 marks only, so
// that a console open for a whole shift does not grow.
const TIMINGS_MAX = 2000;
const timings = [];
window.siaga112Timings = timings;
export function mark(kind, id) {
  timings.push({ kind, id, at: performance.timeOrigin + performance.now() });
  if (timings.length > TIMINGS_MAX) timings.splice(0, timings.length - TIMINGS_MAX);
}

// Calls `fn` at most once every `ms` (the last call within a window runs at its end): a surge
// of events never turns into a surge of requests to the service that answers 112.
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(async () => {
      timer = null;
      last = Date.now();
      try {
        await fn();
      } catch (e) {
        fail(e);
      }
    }, wait);
  };
}
