// Shared by the annotation pages: JSON API calls (CSRF header, session expiry), the page header, DOM helpers.
// Plain ES module, no build step; the Content-Security-Policy allows scripts and styles from this origin only.

const API = "/api/v1";
let csrfToken = null;
const beforeLeaveHooks = [];

/** An API refusal: HTTP status, the error code of the JSON error shape, a message for people. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  /** True when the request never got an answer (network down, server away) or the server failed. */
  get transient() {
    return this.status === 0 || this.status >= 500 || this.status === 408 || this.status === 429;
  }
}

/** The session: {authenticated, user, csrf_token}; remembers the CSRF token for later changes. */
export async function getSession() {
  let response;
  try {
    response = await fetch(API + "/auth/session", { credentials: "same-origin", cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, "network", "The server cannot be reached (" + error.message + ").");
  }
  const data = await response.json();
  csrfToken = data.csrf_token;
  return data;
}

export function setCsrfToken(token) {
  csrfToken = token;
}

/** Run `hook()` before the page leaves for the login page (e.g. to keep a draft locally). */
export function beforeLogin(hook) {
  beforeLeaveHooks.push(hook);
}

/** Go to the login page, coming back here afterwards. */
export function goToLogin() {
  for (const hook of beforeLeaveHooks) {
    try {
      hook();
    } catch (error) {
      console.warn("before-login hook failed", error);
    }
  }
  const here = location.pathname + location.search;
  location.assign("/login?next=" + encodeURIComponent(here));
}

/**
 * Call the JSON API. `path` starts after /api/v1 (or is a full /api/v1 URL).
 * Changes carry the X-CSRF-Token header; a 403 csrf_failed is retried once with a fresh token;
 * a 401 sends the browser to the login page (unless `redirect401` is false). Throws ApiError.
 */
export async function api(path, { method = "GET", body, keepalive = false, redirect401 = true } = {}) {
  const url = path.startsWith(API) ? path : API + path;
  const change = !["GET", "HEAD"].includes(method);
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (change) {
      if (!csrfToken) await getSession();
      headers["X-CSRF-Token"] = csrfToken;
    }
    let response;
    try {
      response = await fetch(url, {
        method, headers, keepalive, credentials: "same-origin", cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, "network", "The server cannot be reached (" + error.message + ").");
    }
    const data = await response.json().catch(() => null);
    if (response.ok) return data;
    const info = (data && data.error) || {};
    const retry = Number(response.headers.get("Retry-After")) || null;
    const error = new ApiError(response.status, info.code || "http_" + response.status,
      info.message || "The server answered " + response.status + " " + response.statusText + ".", retry);
    if (response.status === 403 && error.code === "csrf_failed" && attempt === 0) {
      await getSession();
      continue;
    }
    if (response.status === 401 && redirect401) goToLogin();
    throw error;
  }
  throw new ApiError(403, "csrf_failed", "The request was refused twice (CSRF token).");
}

/** The home page of a role. */
export function homeOf(role) {
  return role === "admin" ? "/admin" : "/review";
}

/**
 * Check that someone with `role` is logged in (else go to the login page, or to the role's own home);
 * fill the page header (user name, navigation for the role, log-out button). Returns the user.
 */
export async function requireUser(role) {
  let session;
  try {
    session = await getSession();
  } catch (error) {
    showFatal(error.message);
    throw error;
  }
  if (!session.authenticated) {
    goToLogin();
    return new Promise(() => {});
  }
  if (role && session.user.role !== role) {
    location.replace(homeOf(session.user.role));
    return new Promise(() => {});
  }
  fillHeader(session.user);
  return session.user;
}

function fillHeader(user) {
  const who = document.getElementById("who");
  if (who) who.textContent = user.username + " (" + user.role + ")";
  document.querySelectorAll("[data-role]").forEach((node) => {
    node.hidden = node.dataset.role !== user.role;
  });
  document.querySelectorAll(".top nav a").forEach((link) => {
    if (link.getAttribute("href") === location.pathname) link.setAttribute("aria-current", "page");
  });
  const account = document.getElementById("account");
  if (account) {
    account.hidden = false;
    const logout = document.getElementById("logout");
    account.insertBefore(el("button", { type: "button", className: "link-button", onclick: openPasswordDialog },
      "Password"), logout);
  }
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      logout.disabled = true;
      try {
        await api("/auth/logout", { method: "POST", body: {}, redirect401: false });
      } catch (error) {
        // logged out already (expired session): nothing to undo
      }
      location.assign("/login");
    });
  }
}

/** A dialog to change one's own password (POST /auth/password; other sessions of the account end). */
function openPasswordDialog() {
  const field = (id, label, autocomplete) => el("label", { className: "field", for: id }, el("span", {}, label),
    el("input", { type: "password", id, autocomplete, required: true }));
  const status = el("p", { className: "status", role: "status", aria: { live: "polite" } });
  const form = el("form", { method: "dialog", novalidate: true },
    el("h2", {}, "Change your password"),
    field("pw-old", "Current password", "current-password"),
    field("pw-new", "New password (10 characters or more)", "new-password"),
    field("pw-again", "New password again", "new-password"),
    status,
    el("div", { className: "actions" },
      el("button", { type: "submit", className: "button" }, "Change password"),
      el("button", { type: "button", className: "button secondary", onclick: () => dialog.close() }, "Close")));
  const dialog = el("dialog", { className: "card", aria: { label: "Change your password" } }, form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const [old, fresh, again] = ["pw-old", "pw-new", "pw-again"].map((id) => form.querySelector("#" + id).value);
    if (fresh !== again) {
      setStatus(status, "The two new passwords differ.", "error");
      return;
    }
    try {
      await api("/auth/password", { method: "POST", body: { old_password: old, new_password: fresh } });
      setStatus(status, "Password changed; your other sessions have ended.", "ok");
      form.reset();
    } catch (error) {
      setStatus(status, error.message, "error");
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

function showFatal(text) {
  const main = document.querySelector("main");
  if (main) main.prepend(el("p", { className: "status error", role: "alert" }, text));
}

/**
 * Create an element: el("button", {className: "button", type: "button", onclick: fn}, "text", child...).
 * Keys starting with "on" add event listeners; `dataset` and `aria` take objects; everything else is a property.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "aria") for (const [name, v] of Object.entries(value)) node.setAttribute("aria-" + name, v);
    else if (key in node && !["list", "form"].includes(key)) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

/** 0.6123 -> "61.2%" ("–" for null). */
export function percent(value, digits = 1) {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : (100 * value).toFixed(digits) + "%";
}

/** A number with `digits` decimals, "–" for null. */
export function fixed(value, digits = 2) {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : Number(value).toFixed(digits);
}

/** An ISO time as local date and time (short). */
export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
}

/** Set a status line's text and its kind ("", "error", "ok"). */
export function setStatus(node, text, kind = "") {
  node.textContent = text;
  node.classList.toggle("error", kind === "error");
  node.classList.toggle("ok", kind === "ok");
}

/** Wait `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** True when a keyboard event is typed into a form field (shortcuts stay off there). */
export function typing(event) {
  const target = event.target;
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName) &&
      !["range", "checkbox", "radio", "button"].includes(target.type));
}
