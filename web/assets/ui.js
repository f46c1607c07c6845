// Helpers every page uses: the status line, the confirmation dialog,
// mounting a page (focus on its heading), links, the theme.

import { enc } from "./api.js";

const main = document.getElementById("main");

/** Says `msg` in the status line (read by screen readers). */
export function say(msg, error = false) {
  const s = document.getElementById("status");
  s.textContent = msg;
  s.classList.toggle("error", error);
  clearTimeout(say.t);
  if (msg) say.t = setTimeout(() => { s.textContent = ""; }, 8000);
}

/** Asks for confirmation in a modal dialog; resolves true on Confirm. */
export function confirmDialog(text, ok = "Confirm") {
  const d = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = ok;
  d.returnValue = "";
  d.showModal();
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
  });
}

/** The page's main heading gets focus after a route change. */
export function mount(...nodes) {
  main.replaceChildren(...nodes);
  const h1 = main.querySelector("h1");
  if (h1) {
    h1.tabIndex = -1;
    h1.focus({ preventScroll: true });
  }
}

/** The link to a sandbox's page. */
export const sbHref = (id, sub = "") => `#/sb/${enc(id)}${sub}`;

/** Whether the page is dark now. */
export function isDark() {
  const t = document.documentElement.dataset.theme;
  if (t) return t === "dark";
  return matchMedia("(prefers-color-scheme: dark)").matches;
}


/** Shows in the header how lists stay up to date: "events" or "polling". */
export function setLive(mode) {
  const el = document.getElementById("live");
  el.textContent = mode === "events" ? "● live" : "○ polling";
  el.title = mode === "events" ? "Updated by the daemon's event stream" : "Updated by polling every 3 s";
}
