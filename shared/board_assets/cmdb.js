// The CMDB: search configuration items, and one CI with its open and recent work items.

import { el, append, clear, severityBadge, stateBadge, time } from "./dom.js";
import { searchCis, getCi, explain } from "./api.js";

export async function renderSearch(host, { params, ciLink, navigate, setStatus }) {
  const input = el("input", { id: "cmdb-q", name: "query", type: "search", value: params.get("q") || "",
    autocomplete: "off", placeholder: "name prefix or ARM resource id" });
  const form = el("form", { class: "filters", role: "search", "aria-label": "Search the CMDB" },
    el("span", { class: "field wide" }, el("label", { for: "cmdb-q" }, "Configuration item"), input),
    el("span", { class: "buttons" }, el("button", { type: "submit", class: "primary" }, "Search")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = input.value.trim();
    navigate(`/board/?view=cmdb${q ? `&q=${encodeURIComponent(q)}` : ""}`);
  });
  const results = el("div", { class: "results" });
  clear(host).append(el("h2", { tabindex: -1 }, "CMDB"), form, results);
  const q = params.get("q");
  if (!q) {
    setStatus("Search configuration items by name or resource id.");
    return;
  }
  try {
    const { body } = await searchCis({ query: q, top: 50 });
    const cis = body.items || body.value || [];
    results.append(el("table", { class: "items" },
      el("caption", { class: "sr-only" }, "Configuration items found"),
      el("thead", {}, el("tr", {}, ["Name", "Kind", "Resource type", "Resource group", "Last seen"]
        .map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, cis.length ? cis.map((ci) => el("tr", {},
        el("td", {}, el("a", { href: ciLink(ci.id) }, ci.display)),
        el("td", {}, ci.kind || "—"), el("td", {}, ci.resourceType || "—"),
        el("td", {}, ci.resourceGroup || "—"), el("td", {}, time(ci.lastSeen))))
        : el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No configuration item matches.")))));
    setStatus(`${cis.length} configuration items found.`);
  } catch (error) {
    results.append(el("p", { class: "error", role: "alert" }, explain(error)));
    setStatus(explain(error));
  }
}

function itemTable(caption, items, itemLink) {
  return el("table", { class: "items" }, el("caption", {}, caption),
    el("thead", {}, el("tr", {}, ["Severity", "Title", "State", "Fired"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, items.length ? items.map((item) => el("tr", {},
      el("td", {}, severityBadge(item.severity)), el("td", {}, el("a", { href: itemLink(item.id) }, item.title)),
      el("td", {}, stateBadge(item.state)), el("td", {}, time(item.firedAt))))
      : el("tr", {}, el("td", { colspan: 4, class: "empty" }, "None."))));
}

export async function renderCi(host, { id, itemLink, setStatus }) {
  clear(host);
  try {
    const { body: ci } = await getCi(id);
    const rows = [["Kind", ci.kind], ["Resource type", ci.resourceType], ["Subscription", ci.subscriptionId],
      ["Resource group", ci.resourceGroup], ["Key", ci.key], ["First seen", time(ci.firstSeen)],
      ["Last seen", time(ci.lastSeen)]];
    append(host, [el("h2", { tabindex: -1 }, ci.display),
      el("dl", { class: "fields" }, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v || "—")])),
      itemTable("Open work items", ci.openWorkItems, itemLink),
      ci.moreOpenWorkItems ? el("p", {}, el("a", { href: `/board/?ci=${encodeURIComponent(ci.id)}` },
        "All open work items of this CI")) : null,
      itemTable("Recent work items", ci.recentWorkItems, itemLink)]);
    setStatus(`Configuration item ${ci.display}.`);
  } catch (error) {
    host.append(el("p", { class: "error", role: "alert" }, explain(error)));
    setStatus(explain(error));
  }
}
