// The sandbox list (live: events or polling), the create form, and the
// stop/start/destroy actions with a confirmation.

import { api, live, h, enc } from "./api.js";
import { say, mount, confirmDialog, sbHref, setLive } from "./ui.js";

/** Runs a sandbox action from a button; refreshes with `done`. */
export async function act(id, name, what, done) {
  const verbs = { stop: "Stop", start: "Start", destroy: "Destroy" };
  if (what !== "start") {
    const text = what === "destroy"
      ? `Destroy sandbox ${name}? Its disk and memory are deleted; its volumes are kept.`
      : `Stop sandbox ${name}? Its memory is saved to disk and its VM ends.`;
    if (!(await confirmDialog(text, verbs[what]))) return false;
  }
  say(`${verbs[what]}ing ${name}…`);
  try {
    if (what === "destroy") await api("DELETE", `/sandboxes/${enc(id)}`);
    else await api("POST", `/sandboxes/${enc(id)}/${what}`);
    say(`${name}: ${what === "destroy" ? "destroyed" : what === "stop" ? "stopped" : "started"}`);
  } catch (e) {
    say(`${verbs[what]} ${name}: ${e.message}`, true);
  }
  if (done) done();
  return true;
}

/** The action buttons of one sandbox. */
export function actions(sb, done) {
  const b = (what, label, cls) => h("button", {
    type: "button", class: cls, "data-action": what,
    "aria-label": `${label} ${sb.name}`,
    onclick: () => act(sb.id, sb.name, what, done),
  }, label);
  return h("span", { class: "actions" },
    h("a", { class: "button", href: sbHref(sb.id, "/term"), "aria-label": `Terminal of ${sb.name}` }, "Terminal"),
    sb.status === "stopped" ? b("start", "Start") : b("stop", "Stop"),
    b("destroy", "Destroy", "danger"));
}

/**
 * Port links of a sandbox from GET /ports rows: a browser cannot send the
 * API key the proxy route needs, so a port links to its host port (the
 * daemon forwards it on this host) when it has one; otherwise it shows
 * the number with its proxy path (for API clients).
 */
export function portLinks(ports) {
  if (!ports || !ports.length) return "—";
  return h("span", { class: "ports" }, ports.map((p) => p.host_port
    ? h("a", { href: `${location.protocol}//${location.hostname}:${p.host_port}/`, target: "_blank", rel: "noopener",
      "data-port": p.container_port, "aria-label": `Port ${p.container_port} (opens a new tab)` }, `:${p.container_port}`)
    : h("span", { "data-port": p.container_port, title: `proxy: ${p.proxy_url} (with the API key)` }, `:${p.container_port}`)));
}

const state = (sb) => sb.status === "running" && sb.thermal ? `running/${sb.thermal}` : sb.status;

function table(list, ports, refresh) {
  if (!list.length) return h("p", { class: "empty" }, "No sandboxes yet: create one above.");
  const byId = {};
  for (const p of ports) (byId[p.sandbox_id] ||= []).push(p);
  return h("table", { class: "list" },
    h("caption", { class: "sr-only" }, "Your sandboxes"),
    h("thead", {}, h("tr", {}, ["Name", "State", "IP", "Size", "Ports", "Actions"]
      .map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, list.map((sb) => h("tr", { "data-id": sb.id, "data-name": sb.name },
      h("th", { scope: "row", "data-label": "Name" }, h("a", { href: sbHref(sb.id) }, sb.name)),
      h("td", { "data-label": "State" }, h("span", { class: `badge ${sb.status} ${sb.thermal || ""}` }, state(sb))),
      h("td", { "data-label": "IP" }, sb.ip || "—"),
      h("td", { "data-label": "Size" }, `${sb.cpus} CPU, ${sb.memory_mb} MB`),
      h("td", { "data-label": "Ports" }, portLinks(byId[sb.id])),
      h("td", { "data-label": "Actions" }, actions(sb, refresh))))));
}

async function options(sel, path, label, value, first) {
  try {
    const rows = await api("GET", path);
    sel.replaceChildren(h("option", { value: "" }, first),
      ...rows.map((r) => h("option", { value: value(r) }, label(r))));
  } catch { /* leave the default */ }
}

function createForm(refresh) {
  const image = h("select", { id: "c-image", name: "image" });
  const tpl = h("select", { id: "c-template", name: "template" });
  const vols = h("datalist", { id: "c-volumes" });
  options(image, "/images", (i) => i.builtin ? `${i.name} (built in)` : i.name, (i) => i.name, "default");
  options(tpl, "/templates", (t) => t.name, (t) => t.id, "none");
  api("GET", "/volumes").then((vs) => vols.replaceChildren(...vs.map((v) => h("option", { value: v.name }))))
    .catch(() => {});
  const form = h("form", { id: "create-form", class: "card create", "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "New sandbox"),
    h("div", { class: "fields" },
      h("label", { for: "c-name" }, "Name", h("input", { id: "c-name", name: "name", placeholder: "generated", pattern: "[a-zA-Z0-9][a-zA-Z0-9._\\-]{0,62}", autocomplete: "off", spellcheck: "false" })),
      h("label", { for: "c-image" }, "Image", image),
      h("label", { for: "c-template" }, "Template", tpl),
      h("label", { for: "c-volume" }, "Volume (optional)", h("input", { id: "c-volume", name: "volume", list: "c-volumes", placeholder: "none", autocomplete: "off" })),
      h("label", { for: "c-mount" }, "Mounted at", h("input", { id: "c-mount", name: "mount", value: "/workspace" }))),
    vols,
    h("button", { type: "submit", class: "primary" }, "Create"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {};
    if (form.name.value.trim()) body.name = form.name.value.trim();
    if (image.value) body.image = image.value;
    if (tpl.value) body.template_id = tpl.value;
    const vol = form.volume.value.trim();
    if (vol) {
      const known = [...vols.options].some((o) => o.value === vol);
      const mount = form.mount.value.trim() || "/workspace";
      if (known) body.volumes = [{ name: vol, target: mount }];
      else body.new_volumes = [{ name: vol, size_mb: 1024, mount }];
    }
    const btn = form.querySelector("button[type=submit]");
    btn.disabled = true;
    say("Creating a sandbox…");
    try {
      const sb = await api("POST", "/sandboxes", body);
      say(`Created ${sb.name}`);
      form.name.value = "";
      refresh();
    } catch (err) {
      say(`Create: ${err.message}`, true);
    } finally {
      btn.disabled = false;
    }
  });
  return form;
}

export function listPage() {
  const holder = h("div", { id: "sandboxes", "aria-live": "polite", "aria-busy": "true" }, "Loading…");
  let busy = false;
  let again = false;
  const refresh = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const [list, ports] = await Promise.all([
        api("GET", "/sandboxes"),
        api("GET", "/ports").catch(() => []),
      ]);
      const focused = document.activeElement && document.activeElement.closest("#sandboxes") ?
        [document.activeElement.closest("tr")?.dataset.id, document.activeElement.dataset.action] : null;
      holder.replaceChildren(table(list, ports, refresh));
      holder.setAttribute("aria-busy", "false");
      if (focused && focused[0]) {
        const el = holder.querySelector(`tr[data-id="${CSS.escape(focused[0])}"] [data-action="${focused[1]}"]`);
        if (el) el.focus();
      }
    } catch (e) {
      if (e.status !== 401) say(`List: ${e.message}`, true);
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  };
  const log = h("ol", { id: "events", class: "plain events" });
  const logNote = h("p", { class: "muted" }, "Waiting for events…");
  mount(h("h1", {}, "Sandboxes"), createForm(refresh), h("section", { "aria-labelledby": "list-title" },
    h("h2", { id: "list-title", class: "sr-only" }, "List"), holder),
  h("section", { class: "card", "aria-labelledby": "events-title" },
    h("h2", { id: "events-title" }, "Recent events"), logNote, log));
  const stop = live((ev) => {
    refresh();
    if (ev && ev.sandbox) {
      const what = ev.type === "state" ? ev.state : ev.port ? `${ev.type} ${ev.port}` : ev.type;
      const at = ev.at ? new Date(ev.at).toLocaleTimeString() : "";
      log.prepend(h("li", { "data-type": ev.type, "data-name": ev.sandbox.name },
        h("span", { class: "muted" }, at), h("strong", {}, ev.sandbox.name), what));
      while (log.children.length > 10) log.lastChild.remove();
      logNote.hidden = true;
    }
  }, (m) => {
    setLive(m);
    if (m !== "events") logNote.textContent = "This daemon sends no events: the list is polled.";
  });
  return stop;
}
