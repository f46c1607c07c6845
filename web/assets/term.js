// The terminal page: xterm.js on the shell WebSocket
// (/sandboxes/ID/ws?token=…&control=1). Binary frames both ways are
// terminal bytes; a text {"type":"resize","rows","cols"} follows every
// resize of the terminal (it fits its box, which follows the window). A
// dropped connection is reattached to the same session on its own (with
// backoff; the daemon replays the scrollback, so the screen is reset
// first); a window displaced by another that attached the same session
// (exit code -1) does not take it back on its own (Reconnect does); an
// ended shell offers a new one. window.bhattiTerm is the
// Terminal (tests read its buffer), window.bhattiTermText() its text,
// window.bhattiTermSocket() the WebSocket of the moment.

import { Terminal } from "./vendor/xterm.mjs";
import { FitAddon } from "./vendor/addon-fit.mjs";
import { api, key, enc, h } from "./api.js";
import { say, mount, sbHref, isDark } from "./ui.js";

/** The exit code of a client displaced by another attach (lohar's DISPLACED_EXIT). */
const DISPLACED = -1;

const themes = {
  dark: { background: "#14161a", foreground: "#e6e6e6", cursor: "#f0c674", selectionBackground: "#44475a" },
  light: { background: "#fbfbf8", foreground: "#1d1f21", cursor: "#b5651d", selectionBackground: "#c7d7f0" },
};

function wsUrl(id, params) {
  const u = new URL(`/sandboxes/${enc(id)}/ws`, location.href);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  u.searchParams.set("token", key.get());
  u.searchParams.set("control", "1");
  for (const [k, v] of Object.entries(params)) if (v != null) u.searchParams.set(k, String(v));
  return u.toString();
}

/** The visible text of the terminal's buffer, one line per row. */
function text(term) {
  const b = term.buffer.active;
  const out = [];
  for (let i = 0; i < b.length; i++) out.push(b.getLine(i)?.translateToString(true) ?? "");
  return out.join("\n");
}

export function termPage(id, q) {
  const state = h("span", { class: "conn", role: "status", "aria-live": "polite" }, "connecting…");
  const newBtn = h("button", { type: "button", id: "term-new", hidden: true }, "New shell");
  const againBtn = h("button", { type: "button", id: "term-again", hidden: true }, "Reconnect");
  const box = h("div", { class: "term", id: "terminal", role: "application", "aria-label": "Terminal" });
  const title = h("h1", {}, "Terminal ", h("span", { class: "muted", id: "term-sb" }, id));
  const sr = h("input", { type: "checkbox", id: "sr-mode" });
  sr.checked = localStorage.getItem("bhatti.sr") === "1";
  mount(h("div", { class: "termpage" },
    h("div", { class: "termbar" },
      h("a", { href: sbHref(id), class: "button" }, "← Details"), title, state, newBtn, againBtn,
      h("label", { for: "sr-mode", class: "check" }, sr, "Screen reader mode")),
    box));
  api("GET", `/sandboxes/${enc(id)}`).then((sb) => { title.lastChild.textContent = sb.name; }).catch(() => {});

  const term = new Terminal({
    cursorBlink: true, scrollback: 5000, fontSize: 14, screenReaderMode: sr.checked,
    fontFamily: "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace",
    theme: isDark() ? themes.dark : themes.light,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  window.bhattiTerm = term;
  window.bhattiTermText = () => text(term);
  window.bhattiTermSocket = () => conn.ws;
  const onTheme = () => { term.options.theme = isDark() ? themes.dark : themes.light; };
  window.addEventListener("bhatti:theme", onTheme);
  sr.addEventListener("change", () => {
    term.options.screenReaderMode = sr.checked;
    localStorage.setItem("bhatti.sr", sr.checked ? "1" : "0");
  });

  const conn = { ws: null, sid: q.get("session"), fresh: q.get("new") === "1", tries: 0, done: false, timer: null };
  const encoder = new TextEncoder();
  const send = (data) => {
    if (conn.ws && conn.ws.readyState === WebSocket.OPEN) conn.ws.send(data);
  };
  // Tab belongs to the shell; F6 leaves the terminal for the page's controls.
  term.attachCustomKeyEventHandler((e) => {
    if (e.key !== "F6") return true;
    if (e.type === "keydown") document.querySelector(".termbar a").focus();
    return false;
  });
  term.onData((d) => send(encoder.encode(d)));
  term.onBinary((d) => send(Uint8Array.from(d, (c) => c.charCodeAt(0))));
  term.onResize(({ rows, cols }) => send(JSON.stringify({ type: "resize", rows, cols })));
  const ro = new ResizeObserver(() => { try { fit.fit(); } catch { /* hidden */ } });
  ro.observe(box);

  const connect = () => {
    clearTimeout(conn.timer);
    const ws = new WebSocket(wsUrl(id, {
      session: conn.sid, new: conn.fresh && !conn.sid ? "true" : null, rows: term.rows, cols: term.cols,
    }));
    conn.ws = ws;
    ws.binaryType = "arraybuffer";
    let ended = false;
    let displaced = false;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      conn.tries = 0;
      state.textContent = "connected";
      box.dataset.state = "connected";
      term.reset();
      send(JSON.stringify({ type: "resize", rows: term.rows, cols: term.cols }));
      term.focus();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") return term.write(new Uint8Array(ev.data));
      let m = null;
      try { m = JSON.parse(ev.data); } catch { return term.write(ev.data); }
      if (m.type === "session") {
        conn.sid = m.session_id;
        conn.fresh = false;
        state.textContent = `connected (session ${m.session_id})`;
        history.replaceState(null, "", sbHref(id, `/term?session=${enc(m.session_id)}`));
      } else if (m.type === "exit" && m.exit_code === DISPLACED) {
        displaced = true;
        term.write("\r\n\x1b[2m[detached: another window attached this session]\x1b[0m\r\n");
      } else if (m.type === "exit" || m.type === "error") {
        ended = true;
        term.write(`\r\n\x1b[2m[shell ${m.type === "exit" ? `exited with ${m.exit_code}` : `failed: ${m.message || m.error || ""}`}]\x1b[0m\r\n`);
      }
    };
    ws.onclose = (ev) => {
      if (conn.done || conn.ws !== ws) return;
      box.dataset.state = "closed";
      if (displaced) {
        // No tug of war with the other window: the user decides.
        state.textContent = "detached (another window has this session)";
        againBtn.hidden = false;
        newBtn.hidden = false;
        againBtn.focus();
        return;
      }
      if (ended) {
        state.textContent = "the shell ended";
        conn.sid = null;
        newBtn.hidden = false;
        newBtn.focus();
        return;
      }
      conn.tries++;
      // The session may be gone (the sandbox was destroyed or restarted): after
      // a few failures attach to whatever shell there is, or a new one.
      if (!opened && conn.tries > 2) conn.sid = null;
      const wait = Math.min(10000, 500 * 2 ** Math.min(conn.tries, 5));
      state.textContent = `disconnected${ev.reason ? ` (${ev.reason})` : ""}; reconnecting in ${Math.round(wait / 1000)} s…`;
      conn.timer = setTimeout(connect, wait);
    };
  };
  againBtn.addEventListener("click", () => {
    againBtn.hidden = true;
    newBtn.hidden = true;
    connect();
  });
  newBtn.addEventListener("click", () => {
    newBtn.hidden = true;
    conn.sid = null;
    conn.fresh = true;
    connect();
  });
  connect();
  say("");
  return () => {
    conn.done = true;
    clearTimeout(conn.timer);
    ro.disconnect();
    window.removeEventListener("bhatti:theme", onTheme);
    if (conn.ws) conn.ws.close();
    term.dispose();
    delete window.bhattiTerm;
    delete window.bhattiTermSocket;
  };
}
