// Bundles the console into the server package (server/taskgrove_server/console/static/):
// one minified app.js, plus index.html and app.css copied. Deterministic (no sourcemap,
// no timestamps): `make check` rebuilds it and expects no diff.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "..", "server", "taskgrove_server", "console", "static");

// The generated code lives in client/typescript/src/gen and imports the protobuf and
// Connect runtimes: resolve those from this package, so the bundle has one copy of each
// whether client/typescript/node_modules exists or not.
const oneRuntime = {
  name: "one-runtime",
  setup(builder) {
    builder.onResolve({ filter: /^@(bufbuild|connectrpc)\// }, (args) => {
      if (args.resolveDir.startsWith(here)) return undefined;
      return builder.resolve(args.path, { kind: args.kind, resolveDir: here });
    });
  },
};

mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, "src", "main.ts")],
  outfile: join(out, "app.js"),
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2022",
  platform: "browser",
  legalComments: "eof",
  plugins: [oneRuntime],
  logLevel: "warning",
});
copyFileSync(join(here, "static", "index.html"), join(out, "index.html"));
copyFileSync(join(here, "static", "app.css"), join(out, "app.css"));
