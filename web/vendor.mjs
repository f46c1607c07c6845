// Copies the pinned xterm.js files from node_modules (after `npm ci`) into
// assets/vendor/, which is committed and embedded in the bhatti binary, so
// `cargo build` never needs npm or the network. Run after changing a
// version in package.json: `npm install && npm run vendor`.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";

const out = "assets/vendor";
mkdirSync(out, { recursive: true });
const pkgs = {
  "@xterm/xterm": [["lib/xterm.mjs", "xterm.mjs"], ["css/xterm.css", "xterm.css"], ["LICENSE", "LICENSE.xterm"]],
  "@xterm/addon-fit": [["lib/addon-fit.mjs", "addon-fit.mjs"], ["LICENSE", "LICENSE.addon-fit"]],
};
const versions = [];
for (const [pkg, files] of Object.entries(pkgs)) {
  const dir = `node_modules/${pkg}`;
  const { version } = JSON.parse(readFileSync(`${dir}/package.json`, "utf8"));
  versions.push(`${pkg}@${version}`);
  for (const [from, to] of files) {
    if (from.endsWith(".mjs")) {
      // No source map is shipped: drop the comment that would fetch it.
      const js = readFileSync(`${dir}/${from}`, "utf8").replace(/\n\/\/# sourceMappingURL=.*\s*$/, "\n");
      writeFileSync(`${out}/${to}`, js);
    } else {
      copyFileSync(`${dir}/${from}`, `${out}/${to}`);
    }
  }
}
writeFileSync(`${out}/VERSIONS`, versions.join("\n") + "\n");
console.log(`vendored ${versions.join(", ")} into ${out}`);
