// The file browser of a sandbox's page: list a directory (GET
// /files?ls=true), open a directory or view a file (the first MiB, as
// text), download a file (a Blob saved through a link), upload files
// into the current directory (PUT, the browser sends Content-Length).

import { raw, enc, h, bytes } from "./api.js";
import { say } from "./ui.js";

const VIEW_MAX = 1 << 20;

const join = (dir, name) => (dir.endsWith("/") ? dir : `${dir}/`) + name;
const parent = (dir) => dir.replace(/\/[^/]+\/?$/, "") || "/";

export function filesCard(id) {
  const path = h("input", { id: "files-path", name: "path", value: "/workspace", spellcheck: "false", autocomplete: "off" });
  const listing = h("div", { id: "files-list" });
  const view = h("pre", { id: "files-view", class: "out", tabindex: "0", hidden: true, "aria-label": "File contents" });
  const upload = h("input", { id: "files-upload", type: "file", multiple: true });
  const url = (p, extra = "") => `/sandboxes/${enc(id)}/files?path=${enc(p)}${extra}`;

  const list = async (dir) => {
    path.value = dir;
    view.hidden = true;
    listing.replaceChildren("Loading…");
    try {
      const entries = await (await raw(url(dir, "&ls=true"))).json();
      entries.sort((a, b) => (b.is_dir - a.is_dir) || a.name.localeCompare(b.name));
      const rows = entries.map((e) => h("tr", { "data-name": e.name },
        h("td", {}, e.is_dir
          ? h("button", { type: "button", class: "link", onclick: () => list(join(dir, e.name)) }, `${e.name}/`)
          : h("button", { type: "button", class: "link", onclick: () => show(join(dir, e.name)) }, e.name)),
        h("td", {}, e.mode), h("td", { class: "num" }, e.is_dir ? "" : bytes(e.size)),
        h("td", {}, e.is_dir ? "" : h("button", { type: "button", "data-action": "download",
          "aria-label": `Download ${e.name}`, onclick: () => download(join(dir, e.name), e.name) }, "Download"))));
      listing.replaceChildren(h("table", { class: "files" },
        h("caption", { class: "sr-only" }, `Files in ${dir}`),
        h("thead", {}, h("tr", {}, ["Name", "Mode", "Size", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, dir !== "/" ? h("tr", {}, h("td", {}, h("button", { type: "button", class: "link", onclick: () => list(parent(dir)) }, "../")), h("td"), h("td"), h("td")) : null, rows)));
    } catch (e) {
      listing.replaceChildren(h("p", { class: "error" }, e.message));
    }
  };

  const show = async (file) => {
    try {
      const r = await raw(url(file, `&max_bytes=${VIEW_MAX}`));
      const size = Number(r.headers.get("x-file-size") || 0);
      view.textContent = await r.text();
      if (size > VIEW_MAX) view.append(h("span", { class: "muted" }, `\n… (${bytes(size)} in all: download it to see the rest)`));
      view.hidden = false;
      view.focus();
    } catch (e) {
      say(`${file}: ${e.message}`, true);
    }
  };

  const download = async (file, name) => {
    try {
      const blob = await (await raw(url(file))).blob();
      const a = h("a", { href: URL.createObjectURL(blob), download: name, hidden: true });
      document.body.append(a);
      a.click();
      setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 60000);
      say(`Downloaded ${name}`);
    } catch (e) {
      say(`${file}: ${e.message}`, true);
    }
  };

  upload.addEventListener("change", async () => {
    const dir = path.value;
    for (const f of upload.files) {
      say(`Uploading ${f.name}…`);
      try {
        await raw(url(join(dir, f.name)), { method: "PUT", body: f });
        say(`Uploaded ${f.name}`);
      } catch (e) {
        say(`Upload ${f.name}: ${e.message}`, true);
      }
    }
    upload.value = "";
    list(dir);
  });

  const form = h("form", { class: "row" },
    h("label", { for: "files-path" }, "Directory"), path,
    h("button", { type: "submit" }, "List"),
    h("label", { for: "files-upload" }, "Upload"), upload);
  form.addEventListener("submit", (e) => { e.preventDefault(); list(path.value || "/"); });
  return h("section", { class: "card wide", "aria-labelledby": "files-title" },
    h("h2", { id: "files-title" }, "Files"), form, listing, view);
}
