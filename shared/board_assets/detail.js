// One work item: fields, links, configuration items, timeline, actions.

import { el, append, clear, ciName, externalLink, severityBadge, stateBadge, time } from "./dom.js";
import { getItem, patchItem, historyPage, eventPayload, explain, ApiError } from "./api.js";

const TRANSITIONS = {
  New: ["Acknowledged", "InProgress", "Resolved", "Closed"],
  Acknowledged: ["InProgress", "Resolved", "Closed"],
  InProgress: ["Resolved", "Closed"],
  Resolved: ["Closed", "New"],
  Closed: ["New"],
};
const STATE_ACTIONS = [
  ["Acknowledged", "Acknowledge"], ["InProgress", "Start work"], ["Resolved", "Resolve"],
  ["Closed", "Close"], ["New", "Reopen"],
];
const COMPARED = [
  ["state", "State"], ["severity", "Severity"], ["priority", "Priority"], ["assignee", "Assignee"],
  ["assignmentGroup", "Assignment group"], ["title", "Title"], ["lastEventAt", "Last alert event"],
];

function portalResourceLink(key, tenantId) {
  if (!/^\/subscriptions\/[^/]+\/resourcegroups\/[^/]+\/providers\//i.test(key)) return null;
  const tenant = tenantId && /^[0-9a-f-]{36}$/i.test(tenantId) ? `@${tenantId}/` : "";
  return `https://portal.azure.com/#${tenant}resource${encodeURI(key)}`;
}

function describe(change) {
  return Object.entries(change).map(([k, v]) => (k === "note" ? "a note" : `${k} → ${v ?? "none"}`))
    .join(", ");
}

/** What differs between the version the person acted on and the current one. */
export function differences(before, after) {
  const out = [];
  for (const [field, label] of COMPARED) {
    if ((before[field] ?? null) !== (after[field] ?? null)) {
      out.push([label, before[field] ?? "none", after[field] ?? "none"]);
    }
  }
  return out;
}

// Which ItemDetail a host shows now: an answer arriving after the person opened another item
// must not draw the old item over it.
const OWNER = new WeakMap();

export class ItemDetail {
  constructor(host, { id, session, ciLink, onChanged, onBack, setStatus }) {
    Object.assign(this, { host, id, session, ciLink, onChanged, onBack, setStatus });
    this.item = null;
    this.etag = null;
    this.message = null; // {kind, nodes}
    this.timeline = []; // newest first: the detail's latest page, then each older page
    this.historyToken = null; // the next older page's, or null when all is shown
    this.loadingOlder = false;
    OWNER.set(host, this);
  }

  async load({ keepMessage = false } = {}) {
    try {
      const { body, etag } = await getItem(this.id);
      this.accept(body, etag);
      if (!keepMessage) this.message = null;
    } catch (error) {
      this.item = null;
      this.message = { kind: "error", nodes: [explain(error)] };
    }
    this.render();
  }

  accept(body, etag) {
    this.item = body;
    this.etag = etag;
    this.timeline = Array.isArray(body.history) ? [...body.history] : [];
    this.historyToken = body.historyContinuationToken || null;
  }

  async act(change, label) {
    const before = this.item;
    this.setStatus(`${label}…`);
    try {
      const { body, etag } = await patchItem(this.id, change, this.etag);
      this.accept(body, etag);
      this.message = { kind: "ok", nodes: [`${label}: done.`] };
      this.onChanged?.();
    } catch (error) {
      if (error instanceof ApiError && error.status === 412) {
        await this.conflict(before, change, label);
        return;
      }
      if (error instanceof ApiError && error.status === 409) {
        const allowed = error.body.allowedTransitions || [];
        this.message = { kind: "error", nodes: [
          `${label} is not possible from ${error.body.state || before.state}. `,
          allowed.length ? `Allowed now: ${allowed.join(", ")}.` : "No state change is allowed now.",
        ] };
        await this.load({ keepMessage: true });
        return;
      }
      this.message = { kind: "error", nodes: [explain(error)] };
    }
    this.render();
    this.setStatus(this.message.nodes.join(""));
  }

  async conflict(before, change, label) {
    let fresh;
    try {
      fresh = await getItem(this.id);
    } catch (error) {
      this.message = { kind: "error", nodes: [explain(error)] };
      this.render();
      return;
    }
    this.accept(fresh.body, fresh.etag);
    const diff = differences(before, fresh.body);
    const retry = el("button", { type: "button", class: "primary", "data-action": "reapply",
      onclick: () => this.act(change, label) }, `Apply "${label}" again`);
    const dismiss = el("button", { type: "button", "data-action": "dismiss",
      onclick: () => { this.message = null; this.render(); } }, "Dismiss");
    this.message = { kind: "conflict", nodes: [
      el("p", {}, el("strong", {}, "Someone else changed this item"),
        ` while you were looking at it; "${label}" (${describe(change)}) was not applied.`),
      diff.length ? el("ul", { class: "diff" }, diff.map(([field, a, b]) =>
        el("li", {}, el("span", { class: "field-name" }, `${field}: `), el("del", {}, String(a)),
          " → ", el("ins", {}, String(b)))))
        : el("p", {}, "Its history changed (see the timeline)."),
      el("p", { class: "buttons" }, retry, dismiss),
    ], focus: retry };
    this.render();
    this.setStatus("Someone else changed this item; your action was not applied.");
  }

  async olderHistory(button) {
    // One page at a time: a second click while a page loads would ask for the same page again.
    if (this.loadingOlder || !this.historyToken) return;
    this.loadingOlder = true;
    button.disabled = true;
    const before = this.timeline.length;
    try {
      const { body } = await historyPage(this.id, this.historyToken);
      const known = new Set(this.timeline.map((e) => e.id));
      this.timeline.push(...(Array.isArray(body.value) ? body.value : []).filter((e) => !known.has(e.id)));
      this.historyToken = body.continuationToken || null;
    } catch (error) {
      this.message = { kind: "error", nodes: [explain(error)] };
    } finally {
      this.loadingOlder = false;
    }
    this.render();
    // Focus the first entry the page added, so keyboard and screen reader users carry on there.
    const first = this.timeline[before];
    if (first) this.host.querySelector(`li[data-id="${CSS.escape(String(first.id))}"]`)?.focus();
  }

  async payload(entry, holder, button) {
    if (button.getAttribute("aria-expanded") === "true") {
      holder.replaceChildren();
      button.setAttribute("aria-expanded", "false");
      button.textContent = "Show raw payload";
      return;
    }
    button.disabled = true;
    try {
      const { body } = await eventPayload(this.id, entry.id);
      holder.replaceChildren(el("pre", { class: "payload", tabindex: 0, "aria-label": "Raw payload" },
        JSON.stringify(body, null, 2)));
    } catch (error) {
      holder.replaceChildren(el("p", { class: "error" },
        error instanceof ApiError && error.status === 404 ? "No payload is kept for this event."
          : explain(error)));
    }
    button.disabled = false;
    button.setAttribute("aria-expanded", "true");
    button.textContent = "Hide raw payload";
  }

  render() {
    if (OWNER.get(this.host) !== this) return;
    const host = clear(this.host);
    const item = this.item;
    host.append(el("button", { type: "button", class: "back", "data-action": "back",
      onclick: () => this.onBack() }, "← Back to the list"));
    if (this.message) {
      const box = el("div", { class: `message ${this.message.kind}`,
        role: this.message.kind === "ok" ? "status" : "alert" }, this.message.nodes);
      host.append(box);
    }
    if (!item) return;
    const heading = el("h2", { id: "detail-title", tabindex: -1 }, item.title);
    append(host, [heading,
      el("p", { class: "badges" }, severityBadge(item.severity), " ", stateBadge(item.state), " ",
        el("span", { class: "prio" }, `Priority P${item.priority}`),
        item.flapping ? el("span", { class: "flag" }, " ↯ flapping") : null),
      this.fields(item), this.custom(item), this.links(item), this.cis(item)]);
    if (this.session.canWrite) host.append(this.actions(item));
    host.append(this.timelineSection());
    this.message?.focus?.focus();
    if (this.message?.focus) this.message.focus = null;
  }

  fields(item) {
    const rows = [
      ["Assignee", item.assignee || "unassigned"],
      ["Assignment group", item.assignmentGroup || "none"],
      ["Alert rule", item.alertRule || "—"],
      ["Fired", time(item.firedAt)], ["Resolved", time(item.resolvedAt)],
      ["Occurrences", String(item.occurrences)], ["Reopened", String(item.reopenCount)],
    ];
    const summary = item.summary && typeof item.summary === "object" ? item.summary : {};
    for (const [key, value] of Object.entries(summary.fields || {})) {
      if (value !== null && typeof value !== "object") rows.push([key, String(value)]);
    }
    return el("section", { "aria-labelledby": "s-fields" },
      el("h3", { id: "s-fields" }, "Summary"),
      item.description ? el("p", { class: "description" }, item.description) : null,
      el("dl", { class: "fields" }, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
  }

  custom(item) {
    const props = item.customProperties && typeof item.customProperties === "object"
      ? Object.entries(item.customProperties) : [];
    if (!props.length) return null;
    return el("section", { "aria-labelledby": "s-custom" },
      el("h3", { id: "s-custom" }, "Custom properties"),
      el("dl", { class: "fields" }, props.map(([k, v]) => [el("dt", {}, k),
        el("dd", {}, typeof v === "string" ? v : JSON.stringify(v))])));
  }

  links(item) {
    const links = item.links && typeof item.links === "object" ? item.links : {};
    const list = [];
    if (links.portal) list.push(externalLink(links.portal, "The alert in the Azure portal"));
    if (links.investigation) list.push(externalLink(links.investigation, "Investigation"));
    for (const [i, url] of (Array.isArray(links.searchResults) ? links.searchResults : []).entries()) {
      list.push(externalLink(url, `Log search results ${i + 1}`));
    }
    return el("section", { "aria-labelledby": "s-links" }, el("h3", { id: "s-links" }, "Links"),
      list.length ? el("ul", { class: "links" }, list.map((a) => el("li", {}, a)))
        : el("p", { class: "muted" }, "No links came with the alert."));
  }

  cis(item) {
    const cis = item.configurationItems || [];
    return el("section", { "aria-labelledby": "s-cis" }, el("h3", { id: "s-cis" }, "Configuration items"),
      cis.length ? el("ul", { class: "cis" }, cis.map((ci) => {
        const portal = portalResourceLink(ci.key, item.tenantId);
        return el("li", {}, el("a", { href: this.ciLink(ci.id), title: ci.display }, ciName(ci)),
          ci.kind ? el("span", { class: "muted" }, ` (${ci.kind})`) : null,
          portal ? [" · ", externalLink(portal, "resource in the Azure portal")] : null);
      })) : el("p", { class: "muted" }, "None."));
  }

  actions(item) {
    const allowed = TRANSITIONS[item.state] || [];
    const stateButtons = STATE_ACTIONS.filter(([state]) => allowed.includes(state)).map(
      ([state, label]) => el("button", { type: "button", "data-action": state,
        onclick: () => this.act({ state }, label) }, label));
    const assignInput = el("input", { id: "a-assignee", name: "assignee", maxlength: 256, autocomplete: "off" });
    const assign = el("form", { class: "inline", "aria-label": "Assign the item" },
      el("label", { for: "a-assignee" }, "Assign to"), assignInput,
      el("button", { type: "submit" }, "Assign"));
    assign.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = assignInput.value.trim();
      if (name) this.act({ assignee: name }, `Assign to ${name}`);
    });
    const prio = el("select", { id: "a-priority", name: "priority" },
      [1, 2, 3, 4, 5].map((p) => el("option", { value: p, selected: p === item.priority }, `P${p}`)));
    const prioForm = el("form", { class: "inline", "aria-label": "Change the priority" },
      el("label", { for: "a-priority" }, "Priority"), prio, el("button", { type: "submit" }, "Set priority"));
    prioForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.act({ priority: Number(prio.value) }, `Set priority P${prio.value}`);
    });
    const noteInput = el("textarea", { id: "a-note", name: "note", rows: 2, maxlength: 4000 });
    const note = el("form", { class: "note", "aria-label": "Add a note" },
      el("label", { for: "a-note" }, "Note"), noteInput, el("button", { type: "submit" }, "Add note"));
    note.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = noteInput.value.trim();
      if (text) this.act({ note: text }, "Add note");
    });
    const me = this.session.username;
    return el("section", { "aria-labelledby": "s-actions", class: "actions" },
      el("h3", { id: "s-actions" }, "Actions"),
      el("div", { class: "buttons" }, stateButtons,
        me && item.assignee !== me ? el("button", { type: "button", "data-action": "assign-me",
          onclick: () => this.act({ assignee: me }, "Assign to me") }, "Assign to me") : null),
      assign, prioForm, note);
  }

  timelineSection() {
    const older = this.historyToken ? el("button", { type: "button", "data-action": "older",
      onclick: () => this.olderHistory(older) }, "Show older events") : null;
    return el("section", { "aria-labelledby": "s-timeline" },
      el("h3", { id: "s-timeline" }, "Timeline"),
      el("ol", { class: "timeline" }, this.timeline.map((e) => this.entry(e))),
      older);
  }

  entry(e) {
    const people = e.source === "manual";
    const sync = e.source === "sync"; // a person's change reaching the Azure alerts
    const actor = e.actor || {};
    const alert = e.alert || {};
    // The note is shown once, as a quote, not again inside the change list.
    const changes = (e.changes || []).filter((c) => !(people && e.note && String(c).endsWith(e.note)));
    const li = el("li", { class: people ? "person" : sync ? "sync" : "event", "data-id": e.id, tabindex: -1 },
      el("div", { class: "when" }, time(e.time, { asSent: true })),
      el("div", { class: "what" },
        el("strong", {}, people ? (actor.name || actor.appId || actor.oid || "someone")
          : sync ? "Azure alert sync" : "Alert event"),
        ` ${e.effect}`, e.ignored ? el("span", { class: "muted" }, " (ignored)") : null,
        changes.length ? el("span", { class: "changes" }, ` · ${changes.join(", ")}`) : null),
      people && e.note ? el("blockquote", { class: "note" }, e.note) : null,
      !people && (alert.status || alert.condition) ? el("div", { class: "sub" },
        [alert.status, alert.condition, alert.severity].filter(Boolean).join(" · ")) : null);
    // Only alert events have a payload (what Azure Monitor sent); people's changes have none.
    if (e.source === "alert" && e.id) {
      const holder = el("div", { id: `payload-${e.id}` });
      const button = el("button", { type: "button", class: "small", "data-action": "payload",
        "aria-expanded": "false", "aria-controls": holder.id,
        onclick: () => this.payload(e, holder, button) }, "Show raw payload");
      li.append(button, holder);
    }
    return li;
  }
}
