// A sandbox's page: its state (thermal state included) and resources,
// usage (GET /sandboxes/ID/stats, where the daemon has it), the serial
// console's last lines (GET /sandboxes/ID/console), shell
// sessions (attach, kill), the file browser, an exec box with streamed
// output (NDJSON), listening ports with proxy links, published ports.
// Reading the sandbox, its stats, its console and GET /ports wakes nothing; sessions,
// files, exec and the ports list of the guest wake it (the daemon starts
// a cooled sandbox transparently), so those load when asked.

import { api, raw, enc, h, lines, live, bytes } from "./api.js";
import { say, mount, sbHref, setLive } from "./ui.js";
import { actions, portLinks } from "./list.js";
import { filesCard } from "./files.js";

const row = (k, v) => [h("dt", {}, k), h("dd", {}, v ?? "—")];

function info(sb, refresh) {
  const state = sb.status === "running" && sb.thermal ? `running (${sb.thermal})` : sb.status;
  return h("section", { class: "card", "aria-labelledby": "info-title" },
    h("h2", { id: "info-title" }, "Sandbox"),
    h("dl", { class: "kv" },
      row("State", h("span", { class: `badge ${sb.status} ${sb.thermal || ""}`, id: "sb-state" }, state)),
      sb.status_reason ? row("Why", sb.status_reason) : [],
      row("ID", h("code", {}, sb.id)),
      row("IP", sb.ip),
      row("CPUs", sb.cpus), row("Memory", `${sb.memory_mb} MB`),
      sb.disk_size_mb ? row("Disk", `${sb.disk_size_mb} MB`) : [],
      row("Image", sb.image), sb.template_id ? row("Template", sb.template_id) : [],
      row("Created", sb.created_at), sb.stopped_at ? row("Stopped", sb.stopped_at) : [],
      row("Keep hot", sb.keep_hot ? "yes" : "no"),
      sb.expires_at ? row("Expires", `${sb.expires_at} (${sb.on_expire})`) : [],
      Object.keys(sb.labels || {}).length ? row("Labels", Object.entries(sb.labels).map(([k, v]) => `${k}=${v}`).join(", ")) : []),
    actions(sb, refresh));
}

function statsCard(id) {
  const body = h("div", { id: "stats" }, "…");
  let unsupported = false;
  const load = async () => {
    if (unsupported) return;
    try {
      const s = await api("GET", `/sandboxes/${enc(id)}/stats`);
      body.replaceChildren(h("dl", { class: "kv" },
        row("CPU", s.cpu_percent != null ? `${Number(s.cpu_percent).toFixed(1)} %` : null),
        row("Memory", s.memory_bytes != null ? bytes(s.memory_bytes) : s.memory_mb != null ? `${s.memory_mb} MB` : null),
        row("Disk used", bytes(s.disk_used_bytes)),
        row("Thermal", s.thermal), row("Sampled", s.sampled_at)));
    } catch (e) {
      // A 404 naming no route: a daemon without the stats route.
      unsupported = e.status === 405 || (e.status === 404 && /no route/.test(e.message));
      body.replaceChildren(h("p", { class: "muted" },
        unsupported ? "This daemon does not report usage." : `Usage: ${e.message}`));
    }
  };
  load();
  return { el: h("section", { class: "card", "aria-labelledby": "stats-title" }, h("h2", { id: "stats-title" }, "Usage"), body), load };
}

// The guest's serial console (GET /sandboxes/ID/console: read on the
// host, wakes nothing): its last lines, reloaded by the button. The log
// does not announce itself (aria-live off): it is read when focused.
function consoleCard(id) {
  const out = h("pre", { id: "console-out", class: "out console", role: "log", "aria-live": "off",
    tabindex: "0", "aria-labelledby": "console-title" });
  const status = h("span", { id: "console-status", class: "muted", role: "status" });
  const count = h("select", { id: "console-lines", name: "lines" },
    [200, 1000, 10000].map((n) => h("option", { value: n }, `${n} lines`)));
  const load = async () => {
    out.setAttribute("aria-busy", "true");
    status.textContent = "Loading…";
    try {
      const r = await raw(`/sandboxes/${enc(id)}/console?lines=${count.value}`);
      const text = await r.text();
      out.textContent = text;
      out.scrollTop = out.scrollHeight;
      status.textContent = text ? `${text.split("\n").length - 1} lines` : "No console output yet.";
    } catch (e) {
      status.textContent = e.status === 404 && /no route/.test(e.message)
        ? "This daemon does not serve the console." : `Console: ${e.message}`;
    }
    out.removeAttribute("aria-busy");
  };
  count.addEventListener("change", load);
  load();
  return h("section", { class: "card wide", "aria-labelledby": "console-title" },
    h("h2", { id: "console-title" }, "Console"),
    h("div", { class: "row" },
      h("label", { for: "console-lines", class: "sr-only" }, "Lines to show"), count,
      h("button", { type: "button", id: "console-refresh", onclick: load }, "Refresh"), status),
    out);
}

function sessionsCard(id) {
  const body = h("div", { id: "sessions" });
  const load = async () => {
    body.replaceChildren("Loading…");
    try {
      const list = await api("GET", `/sandboxes/${enc(id)}/sessions`);
      if (!list.length) return body.replaceChildren(h("p", { class: "muted" }, "No sessions."));
      body.replaceChildren(h("ul", { class: "plain" }, list.map((s) => h("li", {},
        h("code", {}, s.session_id), " ", (Array.isArray(s.argv) ? s.argv.join(" ") : String(s.argv ?? "")).slice(0, 60), " ",
        h("span", { class: "muted" }, s.running ? (s.attached ? "running, attached" : "running") : `ended (${s.exit_code})`), " ",
        s.tty && s.running ? h("a", { class: "button", href: sbHref(id, `/term?session=${enc(s.session_id)}`), "aria-label": `Attach to session ${s.session_id}` }, "Attach") : null,
        s.running ? h("button", { type: "button", "aria-label": `Kill session ${s.session_id}`, onclick: async () => {
          try { await api("DELETE", `/sandboxes/${enc(id)}/sessions/${enc(s.session_id)}`); say("Session killed"); } catch (e) { say(e.message, true); }
          load();
        } }, "Kill") : null))));
    } catch (e) {
      body.replaceChildren(h("p", { class: "error" }, e.message));
    }
  };
  return h("section", { class: "card", "aria-labelledby": "sessions-title" },
    h("h2", { id: "sessions-title" }, "Sessions"),
    h("div", { class: "row" },
      h("button", { type: "button", id: "sessions-show", onclick: load }, "Show sessions"),
      h("a", { class: "button", href: sbHref(id, "/term?new=1") }, "New shell")),
    body);
}

function execCard(id) {
  const out = h("pre", { id: "exec-out", class: "out", tabindex: "0", "aria-label": "Command output", "aria-live": "polite" });
  const status = h("span", { id: "exec-status", class: "muted" });
  const input = h("input", { id: "exec-cmd", name: "cmd", placeholder: "uname -a", autocomplete: "off", spellcheck: "false", required: true });
  const form = h("form", { class: "row" }, h("label", { for: "exec-cmd", class: "sr-only" }, "Command"), input,
    h("button", { type: "submit", class: "primary" }, "Run"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    out.textContent = "";
    status.textContent = "running…";
    try {
      const r = await raw(`/sandboxes/${enc(id)}/exec`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/x-ndjson" },
        body: JSON.stringify({ cmd: ["sh", "-c", input.value] }),
      });
      for await (const line of lines(r)) {
        if (!line) continue;
        const ev = JSON.parse(line);
        if (ev.type === "stdout") out.append(ev.data);
        else if (ev.type === "stderr") out.append(h("span", { class: "stderr" }, ev.data));
        else if (ev.type === "exit") status.textContent = `exit code ${ev.exit_code}`;
        else if (ev.type === "error") status.textContent = `error: ${ev.data}`;
      }
    } catch (err) {
      status.textContent = `error: ${err.message}`;
    }
  });
  return h("section", { class: "card wide", "aria-labelledby": "exec-title" },
    h("h2", { id: "exec-title" }, "Run a command"), form, status, out);
}

function portsCard(id) {
  const body = h("div", { id: "ports" });
  const load = async (wake) => {
    try {
      const [ports, published] = await Promise.all([
        wake ? api("GET", `/sandboxes/${enc(id)}/ports`)
          : api("GET", "/ports").then((all) => all.filter((p) => p.sandbox_id === id || p.sandbox_name === id)),
        api("GET", `/sandboxes/${enc(id)}/publish`).catch(() => []),
      ]);
      const publish = async (port) => {
        try {
          const r = await api("POST", `/sandboxes/${enc(id)}/publish`, { port });
          say(`Published port ${port} at ${r.url}`);
        } catch (e) {
          say(`Publish ${port}: ${e.message}`, true);
        }
        load(false);
      };
      body.replaceChildren(
        h("p", {}, "Listening: ", portLinks(ports)),
        ports.length ? h("ul", { class: "plain" }, ports.map((p) => h("li", {},
          h("code", {}, p.proxy_url), p.host_port ? h("span", { class: "muted" }, `host port ${p.host_port}`) : null,
          published.some((x) => x.port === p.container_port) ? null
            : h("button", { type: "button", onclick: () => publish(p.container_port) }, `Publish ${p.container_port}`)))) : null,
        h("p", {}, "Published: ", published.length ? published.map((p) =>
          h("a", { href: p.url, target: "_blank", rel: "noopener" }, `${p.alias} → ${p.port}`)) : "—"));
    } catch (e) {
      body.replaceChildren(h("p", { class: "error" }, e.message));
    }
  };
  load(false);
  return { el: h("section", { class: "card", "aria-labelledby": "ports-title" },
    h("h2", { id: "ports-title" }, "Ports"), body,
    h("button", { type: "button", onclick: () => load(true) }, "Scan the guest")), load };
}

export function detailPage(id) {
  const infoBox = h("div", { id: "info" }, "Loading…");
  const title = h("h1", {}, id);
  const stats = statsCard(id);
  const ports = portsCard(id);
  let gone = false;
  const refresh = async () => {
    try {
      const sb = await api("GET", `/sandboxes/${enc(id)}`);
      title.textContent = sb.name;
      document.title = `${sb.name} · bhatti`;
      infoBox.replaceChildren(info(sb, refresh));
    } catch (e) {
      if (e.status === 404 && !gone) {
        gone = true;
        infoBox.replaceChildren(h("p", { class: "error" }, "This sandbox no longer exists. ", h("a", { href: "#/" }, "Back to the list")));
      }
    }
  };
  mount(h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Sandboxes"), " / "), title,
    h("div", { class: "grid" }, infoBox, stats.el, ports.el, sessionsCard(id), filesCard(id), execCard(id), consoleCard(id)));
  refresh();
  let tick = 0;
  const stop = live((ev) => {
    if (ev && ev.sandbox && ev.sandbox.id !== id && ev.sandbox.name !== id) return;
    refresh();
    if (ev && (ev.type === "port_opened" || ev.type === "port_closed")) ports.load(false);
    if (!ev && ++tick % 5 === 0) ports.load(false);
  }, setLive);
  // Usage changes without events: sampled every 5 s while the page is shown.
  const sampler = setInterval(() => { if (!document.hidden) stats.load(); }, 5000);
  return () => { stop(); clearInterval(sampler); document.title = "bhatti"; };
}
