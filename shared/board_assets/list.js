// The list of work items: filters (kept in the URL), counts, one page at a time.

import { el, clear, ciName, severityBadge, stateBadge, time } from "./dom.js";
import { listItems, explain } from "./api.js";

export const PAGE_SIZE = 50;
export const FILTERS = ["state", "severity", "priority", "ci", "rule", "range", "since", "until", "flapping"];
const SEVERITIES = ["Sev0", "Sev1", "Sev2", "Sev3", "Sev4"];
const STATES = ["New", "Acknowledged", "InProgress", "Resolved", "Closed"];
const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };

/** The API's query for the filters in the page's URL. */
export function apiFilters(params) {
  const out = {};
  for (const name of ["state", "severity", "priority", "ci", "rule", "since", "until", "flapping"]) {
    const value = params.get(name);
    if (value) out[name] = value;
  }
  const range = RANGES[params.get("range")];
  if (range && !out.since) out.since = new Date(Date.now() - range).toISOString();
  return out;
}

function checkboxes(legend, name, values, selected, label = (v) => v) {
  const chosen = new Set((selected || "").split(",").filter(Boolean));
  return el("fieldset", { class: "checks" }, el("legend", {}, legend),
    values.map((value) => {
      const id = `f-${name}-${value}`;
      return el("span", { class: "check" },
        el("input", { type: "checkbox", id, name, value, checked: chosen.has(String(value)) }),
        el("label", { for: id }, label(value)));
    }));
}

function select(labelText, name, options, value) {
  const id = `f-${name}`;
  return el("span", { class: "field" }, el("label", { for: id }, labelText),
    el("select", { id, name }, options.map(([v, text]) =>
      el("option", { value: v, selected: (value || "") === v }, text))));
}

function text(labelText, name, value, placeholder) {
  const id = `f-${name}`;
  return el("span", { class: "field" }, el("label", { for: id }, labelText),
    el("input", { id, name, type: "search", value: value || "", placeholder, autocomplete: "off" }));
}

export function filterForm(params, onApply) {
  const form = el("form", { class: "filters", "aria-label": "Filters", role: "search" },
    select("State", "state", [["", "Open"], ["all", "All"], ...STATES.map((s) => [s, s])],
      params.get("state")),
    checkboxes("Severity", "severity", SEVERITIES, params.get("severity")),
    checkboxes("Priority", "priority", [1, 2, 3, 4, 5], params.get("priority"), (p) => `P${p}`),
    text("Configuration item", "ci", params.get("ci"), "name, resource id or CI id"),
    text("Alert rule", "rule", params.get("rule"), "rule name or id"),
    select("Fired", "range", [["", "Any time"], ["1h", "Last hour"], ["24h", "Last 24 hours"],
      ["7d", "Last 7 days"], ["30d", "Last 30 days"]], params.get("range")),
    select("Flapping", "flapping", [["", "Any"], ["true", "Flapping only"], ["false", "Not flapping"]],
      params.get("flapping")),
    el("span", { class: "buttons" },
      el("button", { type: "submit", class: "primary" }, "Apply filters"),
      el("button", { type: "reset" }, "Clear")));
  const read = () => {
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const name of ["state", "ci", "rule", "range", "flapping"]) {
      const value = String(data.get(name) || "").trim();
      if (value) next.set(name, value);
    }
    for (const name of ["severity", "priority"]) {
      const values = data.getAll(name);
      if (values.length) next.set(name, values.join(","));
    }
    // since/until come from a shared link only; keep them unless cleared.
    for (const name of ["since", "until"]) if (params.get(name)) next.set(name, params.get(name));
    return next;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onApply(read());
  });
  form.addEventListener("reset", (event) => {
    event.preventDefault();
    onApply(new URLSearchParams());
  });
  return form;
}

function counts(items) {
  const bySev = new Map();
  const byState = new Map();
  for (const item of items) {
    bySev.set(item.severity || "unknown", (bySev.get(item.severity || "unknown") || 0) + 1);
    byState.set(item.state, (byState.get(item.state) || 0) + 1);
  }
  const list = (label, entries, badge) => el("div", { class: "count-group" },
    el("h3", {}, label),
    el("ul", { class: "counts" }, entries.map(([key, n]) =>
      el("li", {}, badge(key), el("strong", { class: "n" }, String(n))))));
  const sevs = [...SEVERITIES, "unknown"].filter((s) => bySev.has(s)).map((s) => [s, bySev.get(s)]);
  const states = STATES.filter((s) => byState.has(s)).map((s) => [s, byState.get(s)]);
  return el("section", { class: "summary", "aria-label": "Counts on this page" },
    list("Severity, this page", sevs, severityBadge), list("State, this page", states, stateBadge));
}

function row(item, selectedId, link) {
  const cis = item.configurationItems || [];
  return el("tr", { "data-id": item.id, class: item.id === selectedId ? "selected" : undefined,
    "aria-current": item.id === selectedId ? "true" : undefined },
  el("td", { class: "c-sev" }, severityBadge(item.severity)),
  el("td", { class: "c-title" },
    el("a", { href: link(item.id), "data-id": item.id }, item.title),
    item.flapping ? el("span", { class: "flag" }, " ↯ flapping") : null,
    el("span", { class: "sub" }, "Fired ", time(item.firedAt),
      item.occurrences > 1 ? ` · ${item.occurrences} occurrences` : null)),
  el("td", {}, stateBadge(item.state)),
  el("td", {}, `P${item.priority}`),
  el("td", { class: "c-ci" }, cis.length ? el("span", { title: cis[0].display }, ciName(cis[0])) : "—",
    cis.length > 1 ? el("span", { class: "muted" }, ` +${cis.length - 1}`) : null),
  el("td", { class: "c-who" }, item.assignee || el("span", { class: "muted" }, "unassigned")));
}

/**
 * The list: renders the page `tokens[pageIndex]` of the filtered items into `host`.
 * refresh() re-reads the same page and keeps scroll position, focus and selection.
 */
export class ItemList {
  constructor(host, { params, selectedId, link, onSelect, setStatus }) {
    Object.assign(this, { host, params, selectedId, link, onSelect, setStatus });
    this.tokens = [null];
    this.pageIndex = 0;
    this.items = [];
    this.controller = null;
  }

  async load() {
    this.controller?.abort();
    const controller = (this.controller = new AbortController());
    const token = this.tokens[this.pageIndex];
    const params = { ...apiFilters(this.params), top: PAGE_SIZE, continuationToken: token };
    try {
      const { body } = await listItems(params, controller.signal);
      if (controller.signal.aborted) return;
      this.items = body.items;
      this.tokens[this.pageIndex + 1] = body.continuationToken;
      this.error = null;
    } catch (error) {
      if (error.name === "AbortError") return;
      this.error = explain(error);
    }
    this.render();
  }

  select(id) {
    this.selectedId = id;
    for (const tr of this.host.querySelectorAll("tr[data-id]")) {
      const on = tr.getAttribute("data-id") === id;
      tr.classList.toggle("selected", on);
      if (on) tr.setAttribute("aria-current", "true");
      else tr.removeAttribute("aria-current");
    }
  }

  render() {
    const focused = document.activeElement;
    const focusId = this.host.contains(focused) ? focused.getAttribute("data-id") : null;
    const focusNav = this.host.contains(focused) ? focused.getAttribute("data-action") : null;
    const scroll = [window.scrollX, window.scrollY];
    const wrap = this.host.querySelector(".table-wrap");
    const innerScroll = wrap ? wrap.scrollTop : 0;
    clear(this.host);
    if (this.error) {
      this.host.append(el("p", { class: "error", role: "alert" }, this.error));
    }
    this.host.append(counts(this.items));
    const table = el("table", { class: "items list-table" },
      el("caption", { class: "sr-only" }, "Work items, newest fired first"),
      el("thead", {}, el("tr", {}, ["Severity", "Title", "State", "Priority", "CI", "Assignee"]
        .map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, this.items.length ? this.items.map((item) => row(item, this.selectedId, this.link))
        : el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No work items match these filters."))));
    table.addEventListener("click", (event) => {
      const a = event.target.closest("a[data-id]");
      if (!a || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      this.onSelect(a.getAttribute("data-id"));
    });
    const newWrap = el("div", { class: "table-wrap" }, table);
    this.host.append(newWrap);
    const next = this.tokens[this.pageIndex + 1];
    this.host.append(el("nav", { class: "pager", "aria-label": "Pages" },
      el("button", { type: "button", "data-action": "prev", disabled: this.pageIndex === 0,
        onclick: () => this.go(-1) }, "← Newer"),
      el("span", { class: "page-no" }, `Page ${this.pageIndex + 1}`),
      el("button", { type: "button", "data-action": "next", disabled: !next,
        onclick: () => this.go(1) }, "Older →")));
    newWrap.scrollTop = innerScroll;
    window.scrollTo(scroll[0], scroll[1]);
    const again = focusId ? this.host.querySelector(`a[data-id="${CSS.escape(focusId)}"]`)
      : focusNav ? this.host.querySelector(`button[data-action="${CSS.escape(focusNav)}"]`) : null;
    if (again && !again.disabled) again.focus({ preventScroll: true });
    this.setStatus(`${this.items.length} work items on page ${this.pageIndex + 1}` +
      (next ? "; more on the next page." : "."));
  }

  go(delta) {
    this.pageIndex = Math.max(0, this.pageIndex + delta);
    window.scrollTo(0, 0);
    return this.load();
  }
}
