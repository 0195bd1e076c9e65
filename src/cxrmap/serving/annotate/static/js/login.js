// Login page: user name + password, errors (wrong credentials, too many attempts with the wait), then the
// role's page (reviewer -> /review, admin -> /admin) or the page that sent the user here (?next=).
import { $, ApiError, api, getSession, homeOf, setCsrfToken, setStatus } from "./common.js";

const PAGES_OF = { reviewer: ["/review"], admin: ["/admin", "/dashboard"] };
let countdown = null;

/** Where to go after login: ?next= when it is a page of this server meant for the role, else the home. */
function destination(role) {
  const next = new URLSearchParams(location.search).get("next") || "";
  const local = next.startsWith("/") && !next.startsWith("//") && !next.includes("\\");
  const path = next.split(/[?#]/)[0];
  if (local && (PAGES_OF[role] || []).includes(path)) return next;
  return homeOf(role);
}

function waitThenEnable(seconds) {
  const button = $("login-button");
  const status = $("login-status");
  clearInterval(countdown);
  let left = Math.max(1, Math.ceil(seconds));
  button.disabled = true;
  const tick = () => {
    if (left <= 0) {
      clearInterval(countdown);
      button.disabled = false;
      setStatus(status, "You can try again now.");
      return;
    }
    const minutes = Math.floor(left / 60);
    const text = minutes ? minutes + " min " + String(left % 60).padStart(2, "0") + " s" : left + " s";
    setStatus(status, "Too many failed attempts. Try again in " + text + ".", "error");
    left -= 1;
  };
  tick();
  countdown = setInterval(tick, 1000);
}

async function submit(event) {
  event.preventDefault();
  const status = $("login-status");
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) {
    setStatus(status, "Enter your user name and password.", "error");
    (username ? $("password") : $("username")).focus();
    return;
  }
  const button = $("login-button");
  button.disabled = true;
  setStatus(status, "Logging in…");
  try {
    const answer = await api("/auth/login", { method: "POST", body: { username, password }, redirect401: false });
    setCsrfToken(answer.csrf_token);
    setStatus(status, "Welcome, " + answer.user.username + ".", "ok");
    location.assign(destination(answer.user.role));
  } catch (error) {
    if (error instanceof ApiError && error.status === 429) {
      waitThenEnable(error.retryAfter || 60);
      return;
    }
    button.disabled = false;
    if (error instanceof ApiError && error.code === "bad_credentials") {
      setStatus(status, "Wrong user name or password.", "error");
      $("password").value = "";
      $("password").focus();
    } else {
      setStatus(status, error.message, "error");
    }
  }
}

async function init() {
  $("login-form").addEventListener("submit", submit);
  try {
    const session = await getSession();
    if (session.authenticated) {
      location.replace(destination(session.user.role));
      return;
    }
    if (new URLSearchParams(location.search).get("next")) {
      setStatus($("login-status"), "Please log in (again) to continue where you were.");
    }
  } catch (error) {
    setStatus($("login-status"), error.message, "error");
  }
  $("username").focus();
}

init();
