// The work item API on our own origin: bearer token, JSON, ETags.

export class ApiError extends Error {
  constructor(status, body, etag) {
    super((body && body.detail) || `The API answered ${status}.`);
    this.status = status;
    this.body = body || {};
    this.etag = etag;
  }
}

let session = null;

export function useSession(s) {
  session = s;
}

/** {body, etag} of one API call; ApiError for any non-2xx answer. */
export async function call(path, { method = "GET", body, etag, signal } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${await session.getToken()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (etag) headers["If-Match"] = etag;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: "no-store",
    credentials: "omit",
  });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { detail: "The answer was not JSON." };
  }
  if (!response.ok) throw new ApiError(response.status, parsed, response.headers.get("ETag"));
  return { body: parsed, etag: response.headers.get("ETag") };
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export const listItems = (params, signal) => call(`/api/workitems${query(params)}`, { signal });
export const getItem = (id) => call(`/api/workitems/${encodeURIComponent(id)}`);
export const patchItem = (id, change, etag) =>
  call(`/api/workitems/${encodeURIComponent(id)}`, { method: "PATCH", body: change, etag });
// Issue 13's contract: older history pages and an event's raw payload.
export const historyPage = (id, token) =>
  call(`/api/workitems/${encodeURIComponent(id)}/history${query({ top: 50, continuationToken: token })}`);
export const eventPayload = (id, eventId) =>
  call(`/api/workitems/${encodeURIComponent(id)}/events/${encodeURIComponent(eventId)}/payload`);
export const searchCis = (params) => call(`/api/cis${query(params)}`);
export const getCi = (id) => call(`/api/cis/${encodeURIComponent(id)}`);

/** What to tell a person about a failed call. */
export function explain(error) {
  if (!(error instanceof ApiError)) return `The request failed: ${error.message || error}`;
  if (error.status === 401) return "Your sign-in has expired or was refused; reload the page.";
  if (error.status === 403) {
    return "You do not have the role for this (WorkItems.Read to read, WorkItems.ReadWrite to act).";
  }
  if (error.status === 404) return "Not found: it may have been removed, or the link is wrong.";
  if (error.status === 503 || error.status === 429) return "The service is busy; try again shortly.";
  return error.body.detail || error.message;
}
