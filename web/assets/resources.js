// The other things a user has, by name: snapshots, templates, volumes,
// secrets (names only: values are never returned by the API), images.

import { api, h } from "./api.js";
import { mount } from "./ui.js";

const lists = [
  ["Snapshots", "/snapshots", (s) => `${s.name}${s.source ? ` (of ${s.source.name})` : ""}${s.status === "broken" ? " — broken" : ""}`],
  ["Templates", "/templates", (t) => t.name],
  ["Volumes", "/volumes", (v) => `${v.name}${v.size_mb ? ` (${v.size_mb} MB)` : ""}`],
  ["Secrets", "/secrets", (s) => s.name],
  ["Images", "/images", (i) => `${i.name}${i.builtin ? " (built in)" : ""}`],
];

export function resourcesPage() {
  const cards = lists.map(([title, path, label]) => {
    const slug = title.toLowerCase();
    const body = h("div", { id: `res-${slug}` }, "Loading…");
    api("GET", path).then((rows) => {
      body.replaceChildren(rows.length
        ? h("ul", { class: "plain" }, rows.map((r) => h("li", {}, label(r))))
        : h("p", { class: "muted" }, "None."));
    }).catch((e) => body.replaceChildren(h("p", { class: "error" }, e.message)));
    return h("section", { class: "card", "aria-labelledby": `res-${slug}-title` },
      h("h2", { id: `res-${slug}-title` }, title), body);
  });
  mount(h("h1", {}, "Resources"), h("div", { class: "grid" }, cards));
  return null;
}
