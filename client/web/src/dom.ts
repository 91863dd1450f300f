// A few DOM helpers: elements built from tag, attributes and children (text is always
// text, never HTML, so nothing a task carries can inject markup).
type Child = Node | string | null | undefined | false;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | number | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (name === "class") node.className = String(value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

export function clear(node: Element): void {
  node.replaceChildren();
}

/** The banner every page shows failures in (role=alert: screen readers announce it). */
export function showError(text: string): void {
  const banner = document.getElementById("error");
  if (!banner) return;
  banner.textContent = text;
  banner.hidden = !text;
}
