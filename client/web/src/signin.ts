// Sign-in with a bearer token (from the server's tokens file): kept in sessionStorage for
// this tab only, sent as `authorization: Bearer …` by api.ts.
import { setToken, token } from "./api.js";
import { el } from "./dom.js";

export function signInForm(done: () => void): HTMLElement {
  const input = el("input", { id: "token", type: "password", autocomplete: "off", required: true });
  const form = el(
    "form",
    { class: "signin", "aria-label": "Sign in" },
    el("h2", {}, "Sign in"),
    el("p", {}, "This server requires authentication. Paste your bearer token."),
    el("label", { for: "token" }, "Bearer token"),
    input,
    el("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    done();
  });
  queueMicrotask(() => input.focus());
  return form;
}

export function signOutButton(done: () => void): HTMLElement | null {
  if (!token()) return null;
  const button = el("button", { type: "button", id: "sign-out" }, "Sign out");
  button.addEventListener("click", () => {
    setToken("");
    done();
  });
  return button;
}
