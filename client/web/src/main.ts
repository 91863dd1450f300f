// The console's entry: routes in the URL fragment (#/, #/tree/ROOT[/TASK], #/task/ID),
// a sign-in form whenever a call comes back UNAUTHENTICATED.
import { api, describe, onSignInNeeded } from "./api.js";
import { clear, showError } from "./dom.js";
import { runsPage } from "./runs.js";
import { signInForm, signOutButton } from "./signin.js";
import { treePage } from "./tree.js";

const main = document.getElementById("main")!;
const account = document.getElementById("account")!;
let page = new AbortController();

function route(): void {
  page.abort();
  page = new AbortController();
  showError("");
  clear(account);
  const out = signOutButton(route);
  if (out) account.append(out);
  const parts = window.location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "tree" && parts[1]) {
    treePage(main, parts[1], parts[2] ?? "", page.signal);
  } else if (parts[0] === "task" && parts[1]) {
    const id = parts[1];
    void api.getTask({ id }).then(
      (task) => window.location.replace(`#/tree/${encodeURIComponent(task.rootId || task.id)}/${encodeURIComponent(id)}`),
      (error) => showError(describe(error)),
    );
  } else {
    runsPage(main, page.signal);
  }
}

let signingIn = false;
onSignInNeeded(() => {
  if (signingIn) return;
  signingIn = true;
  page.abort();
  clear(main);
  main.append(
    signInForm(() => {
      signingIn = false;
      route();
    }),
  );
});

window.addEventListener("hashchange", (event) => {
  // Another task of the same tree: the tree stays, only the panel changes.
  const before = new URL(event.oldURL).hash.split("/");
  const after = window.location.hash.split("/");
  if (before[1] === "tree" && after[1] === "tree" && before[2] === after[2] && after[3]) {
    document.dispatchEvent(new CustomEvent("taskgrove:select", { detail: decodeURIComponent(after[3]) }));
    return;
  }
  route();
});
route();
