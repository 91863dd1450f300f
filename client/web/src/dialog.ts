// The confirmation every action asks for: a modal <dialog> (focus stays in it; Escape
// cancels), answered true only by its confirm button.
import { el } from "./dom.js";

export function confirmAction(question: string, confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    const yes = el("button", { type: "button", class: "danger", "data-confirm": "yes" }, confirmLabel);
    const no = el("button", { type: "button" }, "Keep it");
    const text = el("p", { id: "confirm-text" }, question);
    const dialog = el(
      "dialog",
      { "aria-labelledby": "confirm-text", "aria-modal": "true", class: "confirm" },
      text,
      el("div", { class: "buttons" }, no, yes),
    );
    const answer = (value: boolean): void => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    yes.addEventListener("click", () => answer(true));
    no.addEventListener("click", () => answer(false));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      answer(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}
