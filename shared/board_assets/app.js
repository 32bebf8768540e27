// The board: signs in, then shows the view the URL names. Everything a person can share
// (filters, the selected item, the CMDB search, a CI) is in the URL's query.
//   /board/?severity=Sev0,Sev1&item=<id>   list (filters) with an item open beside it
//   /board/?view=cmdb&q=<text>             CMDB search
//   /board/?view=ci&id=<ci id>             one configuration item

import { el, clear } from "./dom.js";
import { signIn } from "./auth.js";
import { useSession } from "./api.js";
import { ItemList, filterForm, FILTERS } from "./list.js";
import { ItemDetail } from "./detail.js";
import { renderSearch, renderCi } from "./cmdb.js";

const REFRESH_MS = 30_000;
const view = document.getElementById("view");
const statusLine = document.getElementById("status");
let session = null;
let list = null;
let detail = null;
let listKey = null;

function setStatus(text) {
  statusLine.textContent = text;
}

function url(change) {
  const params = new URLSearchParams(location.search);
  for (const [name, value] of Object.entries(change)) {
    if (value === null || value === undefined || value === "") params.delete(name);
    else params.set(name, value);
  }
  const text = params.toString();
  return `/board/${text ? `?${text}` : ""}`;
}

const itemLink = (id) => url({ view: null, q: null, id: null, item: id });
const ciLink = (id) => `/board/?view=ci&id=${encodeURIComponent(id)}`;

function navigate(target, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", target);
  else history.pushState(null, "", target);
  route();
}

function filterKey(params) {
  return FILTERS.map((name) => `${name}=${params.get(name) || ""}`).join("&");
}

function markNav(name) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.getAttribute("data-nav") === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function route() {
  const params = new URLSearchParams(location.search);
  const which = params.get("view") || "list";
  document.body.classList.toggle("has-detail", which === "list" && Boolean(params.get("item")));
  if (which === "cmdb" || which === "ci") {
    markNav("cmdb");
    list = detail = listKey = null;
    const host = clear(view).appendChild(el("section", { class: "page" }));
    document.title = "CMDB · Work items";
    if (which === "cmdb") await renderSearch(host, { params, ciLink, navigate, setStatus });
    else await renderCi(host, { id: params.get("id") || "", itemLink: (id) => `/board/?item=${encodeURIComponent(id)}`, setStatus });
    host.querySelector("h2")?.focus();
    return;
  }
  markNav("list");
  document.title = "Work items";
  const key = filterKey(params);
  if (!list || key !== listKey) {
    listKey = key;
    const listHost = el("div", { class: "list-body" });
    const detailHost = el("section", { class: "detail", id: "detail", "aria-label": "Work item" });
    clear(view).append(el("div", { class: "board" },
      el("section", { class: "list", "aria-label": "Work items" },
        el("h2", { class: "sr-only" }, "Open work"),
        filterForm(params, (next) => {
          const item = new URLSearchParams(location.search).get("item");
          if (item) next.set("item", item);
          const text = next.toString();
          navigate(`/board/${text ? `?${text}` : ""}`);
        }), listHost),
      detailHost));
    list = new ItemList(listHost, { params, selectedId: params.get("item"), link: itemLink,
      onSelect: (id) => navigate(itemLink(id)), setStatus });
    detail = null;
    await list.load();
  }
  const itemId = params.get("item");
  const detailHost = document.getElementById("detail");
  list.select(itemId);
  if (!itemId) {
    detail = null;
    clear(detailHost).append(el("p", { class: "muted hint" }, "Select a work item to see its detail."));
    return;
  }
  if (!detail || detail.id !== itemId) {
    detail = new ItemDetail(detailHost, { id: itemId, session, ciLink, setStatus,
      onChanged: () => list.load(), onBack: () => navigate(itemLink(null)) });
    detailHost.replaceChildren(el("p", { class: "muted" }, "Loading…"));
    await detail.load();
    document.getElementById("detail-title")?.focus();
    if (detail.item) document.title = `${detail.item.title} · Work items`;
  }
}

function refresh() {
  // Only the list refreshes on its own: a half-typed note in the detail stays as it is.
  if (list && document.visibilityState === "visible") list.load();
}

async function start() {
  try {
    session = await signIn();
  } catch (error) {
    setStatus(`Sign-in failed: ${error.message || error}`);
    return;
  }
  if (!session) return; // on the way to the sign-in page
  useSession(session);
  document.getElementById("who").textContent =
    `${session.name || "Signed in"} · ${session.canWrite ? "can act" : session.canRead ? "read only" : "no role"}`;
  document.body.classList.toggle("read-only", !session.canWrite);
  window.addEventListener("popstate", route);
  document.addEventListener("click", (event) => {
    const a = event.target.closest("a[href^='/board/']");
    if (!a || a.target || event.defaultPrevented || event.ctrlKey || event.metaKey || event.shiftKey ||
      event.button !== 0) return;
    event.preventDefault();
    navigate(a.getAttribute("href"));
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
  window.addEventListener("focus", refresh);
  // Escape closes an open item and puts focus back on its row in the list.
  document.addEventListener("keydown", (event) => {
    const itemId = new URLSearchParams(location.search).get("item");
    if (event.key !== "Escape" || !itemId || event.target.closest("input, textarea, select")) return;
    navigate(itemLink(null));
    document.querySelector(`a[data-id="${CSS.escape(itemId)}"]`)?.focus();
  });
  setInterval(refresh, REFRESH_MS);
  await route();
}

start();
