// Building the page from data that whoever can create an alert rule controls.
// Text only ever goes in as text nodes; attributes come from a short allow-list; links only
// as https: URLs. Nothing here parses HTML.

const ATTRIBUTES = new Set([
  "id", "class", "type", "name", "value", "for", "role", "tabindex", "title", "hidden",
  "colspan", "scope", "placeholder", "autocomplete", "min", "max", "maxlength", "rows",
  "aria-label", "aria-live", "aria-current", "aria-expanded", "aria-controls", "aria-describedby",
  "aria-labelledby", "aria-busy", "aria-hidden", "aria-sort", "aria-pressed", "datetime",
  "data-id", "data-action", "data-state", "data-sev", "data-field", "lang", "disabled",
  "checked", "selected", "required", "rel", "target",
]);

/** el("a", {class: "x", href: url}, "text", child): an element; children are text or nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "href") {
      const href = safeHref(value);
      if (href) node.setAttribute("href", href);
      continue;
    }
    if (name.startsWith("on")) {
      node.addEventListener(name.slice(2), value);
      continue;
    }
    if (!ATTRIBUTES.has(name)) throw new Error(`attribute ${name} is not allowed`);
    node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Our own pages (a path on this origin) or an https: URL; anything else is no link at all. */
export function safeHref(value) {
  if (typeof value !== "string") return null;
  if (value.startsWith("/") && !value.startsWith("//") && !value.includes("\\")) return value;
  try {
    const url = new URL(value);
    return url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** An external https: link, or the text alone when the URL is anything else. */
export function externalLink(url, text) {
  const href = safeHref(url);
  if (!href || href.startsWith("/")) return el("span", {}, text);
  return el("a", { href, rel: "noopener noreferrer", target: "_blank" }, text,
    el("span", { class: "sr-only" }, " (opens in a new tab)"));
}

/** The short name of a CI: an ARM resource id's last segment, anything else as it is. */
export function ciName(ci) {
  const display = String(ci.display || ci.key || "");
  return display.startsWith("/subscriptions/") ? display.split("/").filter(Boolean).pop() : display;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

const SEVERITY_NAMES = {
  Sev0: "Critical", Sev1: "Error", Sev2: "Warning", Sev3: "Informational", Sev4: "Verbose",
};
// A shape per severity as well as a colour, so it reads in greyscale and to screen readers.
const SEVERITY_MARKS = { Sev0: "◆", Sev1: "▲", Sev2: "●", Sev3: "■", Sev4: "○" };

export function severityBadge(severity) {
  const sev = SEVERITY_NAMES[severity] ? severity : "unknown";
  const name = SEVERITY_NAMES[severity] || "Unknown";
  return el("span", { class: "sev", "data-sev": sev },
    el("span", { class: "mark", "aria-hidden": "true" }, SEVERITY_MARKS[severity] || "?"),
    ` ${sev === "unknown" ? "Sev?" : sev} ${name}`);
}

export function stateBadge(state) {
  return el("span", { class: "state", "data-state": String(state) }, String(state));
}

/** A time for people (short, local), or exactly as sent with asSent (the timeline). */
export function time(iso, { asSent = false } = {}) {
  if (!iso) return el("span", { class: "muted" }, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return el("span", {}, String(iso));
  const text = asSent ? String(iso) : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  return el("time", { datetime: date.toISOString(), title: String(iso) }, text);
}
