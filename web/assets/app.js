// The bhatti web UI: hash routes (#/ the sandbox list, #/sb/ID a
// sandbox's page, #/sb/ID/term its terminal, #/resources the other
// lists), login with an API key kept in local storage, the colour theme.

import { api, key } from "./api.js";
import { say, mount } from "./ui.js";
import { listPage } from "./list.js";
import { detailPage } from "./detail.js";
import { termPage } from "./term.js";
import { resourcesPage } from "./resources.js";

let cleanup = null;

function login() {
  document.getElementById("logout").hidden = true;
  const t = document.getElementById("t-login").content.cloneNode(true);
  mount(t);
  const form = document.getElementById("login-form");
  document.getElementById("login-key").focus();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const k = form.key.value.trim();
    key.set(k);
    try {
      await api("GET", "/sandboxes");
      say("Logged in");
      route();
    } catch (err) {
      key.clear();
      document.getElementById("login-error").textContent =
        err.status === 401 ? "That key is not valid." : `Could not log in: ${err.message}`;
    }
  });
}

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  if (!key.get()) return login();
  document.getElementById("logout").hidden = false;
  document.getElementById("live").textContent = "";
  const path = location.hash.replace(/^#/, "") || "/";
  const [p, query = ""] = path.split("?");
  const q = new URLSearchParams(query);
  const parts = p.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "sb" && parts[1] && parts[2] === "term") {
      cleanup = termPage(parts[1], q);
    } else if (parts[0] === "sb" && parts[1]) {
      cleanup = detailPage(parts[1]);
    } else if (parts[0] === "resources") {
      cleanup = resourcesPage();
    } else {
      cleanup = listPage();
    }
  } catch (e) {
    say(e.message, true);
  }
}

function theme() {
  const btn = document.getElementById("theme");
  const names = { auto: "automatic", dark: "dark", light: "light" };
  const apply = (t) => {
    if (t === "auto") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = t;
    btn.setAttribute("aria-label", `Colour theme: ${names[t]}`);
    btn.title = `Theme: ${names[t]} (click to change)`;
    window.dispatchEvent(new Event("bhatti:theme"));
  };
  let t = localStorage.getItem("bhatti.theme") || "auto";
  apply(t);
  btn.addEventListener("click", () => {
    t = { auto: "dark", dark: "light", light: "auto" }[t];
    localStorage.setItem("bhatti.theme", t);
    apply(t);
    say(`Theme: ${names[t]}`);
  });
}

theme();
document.getElementById("logout").addEventListener("click", () => {
  key.clear();
  say("Logged out");
  location.hash = "#/";
  route();
});
window.addEventListener("bhatti:unauthorized", () => {
  key.clear();
  say("The API key was refused: log in again", true);
  route();
});
window.addEventListener("hashchange", route);
route();
