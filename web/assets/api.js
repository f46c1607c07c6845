// The daemon's native API, as the UI calls it: the key from local storage
// as a Bearer key, JSON in and out, errors as thrown ApiError with the
// daemon's message, and the live feed (GET /events, server-sent events
// read through fetch so the key goes in a header; polling GET /sandboxes
// when the daemon has no event stream or it breaks).

const KEY = "bhatti.key";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const key = {
  get: () => localStorage.getItem(KEY) || "",
  set: (k) => localStorage.setItem(KEY, k),
  clear: () => localStorage.removeItem(KEY),
};

/** Fetches `path` with the key; returns the Response (throws on non-2xx). */
export async function raw(path, opts = {}) {
  const headers = new Headers(opts.headers || {});
  headers.set("Authorization", `Bearer ${key.get()}`);
  const r = await fetch(path, { ...opts, headers });
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try {
      const j = await r.json();
      if (j && j.error) msg = j.error;
    } catch { /* not JSON */ }
    if (r.status === 401) window.dispatchEvent(new Event("bhatti:unauthorized"));
    throw new ApiError(r.status, msg);
  }
  return r;
}

/** A JSON call: `api("GET", "/sandboxes")`, `api("POST", "/sandboxes", {…})`. */
export async function api(method, path, body) {
  const opts = { method };
  if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers = { "Content-Type": "application/json" };
  }
  const r = await raw(path, opts);
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}

export const enc = encodeURIComponent;

/** Reads newline-delimited records from a streamed body. */
export async function* lines(resp) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i).replace(/\r$/, "");
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

/**
 * Calls `onChange(event|null)` whenever sandboxes may have changed: for
 * each event of GET /events, or every `every` ms while polling (the
 * stream is tried again after a minute of polling). `onMode` gets
 * "events" or "polling". Returns a stop function.
 */
export function live(onChange, onMode, every = 3000) {
  let stopped = false;
  let ctl = null;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  (async () => {
    while (!stopped) {
      ctl = new AbortController();
      try {
        await stream(ctl.signal, onChange, onMode);
      } catch { /* no stream, or it broke: poll */ }
      if (stopped) break;
      onMode("polling");
      for (let t = 0; t < 60000 && !stopped; t += every) {
        onChange(null);
        await sleep(every);
      }
    }
  })();
  return () => {
    stopped = true;
    if (ctl) ctl.abort();
  };
}

async function stream(signal, onChange, onMode) {
  const r = await raw("/events", { signal, headers: { Accept: "text/event-stream" } });
  const type = r.headers.get("content-type") || "";
  if (!type.startsWith("text/event-stream")) throw new Error("not an event stream");
  onMode("events");
  onChange(null);
  let data = [];
  for await (const line of lines(r)) {
    if (line === "") {
      if (data.length) {
        let ev = null;
        try { ev = JSON.parse(data.join("\n")); } catch { /* keep null */ }
        onChange(ev);
      }
      data = [];
    } else if (line.startsWith("data:")) {
      data.push(line.slice(5).trimStart());
    }
  }
}

/** Human-readable bytes. */
export function bytes(n) {
  if (n == null) return "—";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

/** A DOM element: `h("a", {href: "#"}, "text", child…)`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}
