// Sign-in: MSAL.js (vendored UMD bundle, global `msal`), authorization code flow with PKCE,
// tokens in sessionStorage. The board reads its client id, authority and scope from
// GET /api/board-config. There is no other way in: the browser tests sign in through this
// very code against a stand-in for Entra's endpoints (tests/board_browser.py).

export class Session {
  constructor(getToken, claims) {
    this.getToken = getToken;
    this.claims = claims;
    const roles = Array.isArray(claims.roles) ? claims.roles : [];
    this.roles = roles;
    this.canRead = roles.includes("WorkItems.Read") || roles.includes("WorkItems.ReadWrite");
    // Only hides buttons; the API still refuses a PATCH without the role.
    this.canWrite = roles.includes("WorkItems.ReadWrite");
    this.name = String(claims.name || claims.preferred_username || claims.upn || claims.oid || "");
    // What "assign to me" writes: the sign-in name people recognise.
    this.username = String(claims.upn || claims.preferred_username || claims.unique_name ||
      claims.name || claims.oid || "");
  }
}

export function claimsOf(token) {
  const part = String(token).split(".")[1] || "";
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
  try {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : {};
  } catch {
    return {};
  }
}

async function boardConfig() {
  const response = await fetch("/api/board-config", { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `board-config answered ${response.status}`);
  return body;
}

/** A Session, or null while the browser is on its way to the sign-in page. */
export async function signIn() {
  const config = await boardConfig();
  if (!globalThis.msal) throw new Error("The sign-in library did not load.");
  const msal = globalThis.msal;
  const app = new msal.PublicClientApplication({
    auth: {
      clientId: config.clientId,
      authority: config.authority,
      redirectUri: new URL(config.redirectPath, location.origin).href,
    },
    cache: { cacheLocation: "sessionStorage" },
  });
  await app.initialize();
  const result = await app.handleRedirectPromise();
  const account = result?.account || app.getActiveAccount() || app.getAllAccounts()[0];
  const request = { scopes: config.scopes };
  if (!account) {
    // Back to this very page (filters, selected item) after signing in.
    await app.loginRedirect({ ...request, redirectStartPage: location.href });
    return null;
  }
  app.setActiveAccount(account);
  const getToken = async () => {
    try {
      return (await app.acquireTokenSilent({ ...request, account })).accessToken;
    } catch (error) {
      if (error instanceof msal.InteractionRequiredAuthError) {
        await app.acquireTokenRedirect({ ...request, redirectStartPage: location.href });
      }
      throw error;
    }
  };
  const token = await getToken();
  return new Session(getToken, claimsOf(token));
}
