// Review page: the reviewer's queue per project. Each image comes with its candidate masks, blinded and
// labelled A, B, C... in the order the server gives (paper Sec. II-B, Fig. 4). The reviewer chooses one,
// or finds none acceptable and draws the mask (from empty or from a candidate). Drafts are kept in this
// browser at once and on the server (debounced PUT with an increasing seq, retried with backoff), so an
// expired session, a closed tab or a lost network loses nothing.
import { $, api, beforeLogin, el, requireUser, sleep, typing } from "./common.js";
import { MaskEditor, Viewport, bindPointer, loadImage, maskFromImage, rleDecode } from "./draw.js";

const SAVE_DEBOUNCE_MS = 1200;
const SAVE_MAX_WAIT_MS = 4000;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const LOCAL_PREFIX = "cxrmap-annotate-draft:";
const PROJECT_KEY = "cxrmap-annotate-project";
const STATE_VERSION = 1;
const LOCAL_KEEP_MS = 30 * 24 * 3600 * 1000;

let projects = [];
let projectId = null;
let review = null;
let shown = null;
let lastShown = null;
let mode = "choose";
let startFrom = null;
let editor = null;
let tool = "brush";
let brushSize = 8;
let spaceDown = false;
let submitting = false;
let ready = false; // the review on screen is complete (image decoded, draft restored)
let viewport = null;
let draft = freshDraft();

function freshDraft() {
  return { seq: 0, state: null, dirty: false, inFlight: false, again: false, timer: null, since: 0, failures: 0,
           closed: false };
}

const size = () => ({ width: review.image.width, height: review.image.height });
const candidate = (token) => (review ? review.candidates.find((c) => c.token === token) : undefined);
const labelOf = (token) => (candidate(token) || {}).label;

// ------------------------------------------------------------------------------------------ status lines
function message(text, isError = false) {
  const node = $("message");
  node.textContent = text;
  node.classList.toggle("error", isError);
  node.hidden = !text;
}

function saveStatus(kind, text) {
  const node = $("save-status");
  node.hidden = !text;
  node.textContent = text;
  node.className = "save-status " + kind;
}

const clock = () => new Date().toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

// ------------------------------------------------------------------------------------------------ drafts
function localKey(token) {
  return LOCAL_PREFIX + token;
}

function readLocal(token) {
  try {
    const value = JSON.parse(localStorage.getItem(localKey(token)) || "null");
    return value && Number.isFinite(value.seq) && value.state ? value : null;
  } catch (error) {
    return null;
  }
}

function writeLocal() {
  if (!review || !draft.state) return;
  try {
    localStorage.setItem(localKey(review.token), JSON.stringify({ seq: draft.seq, state: draft.state }));
  } catch (error) {
    console.warn("the draft could not be kept in this browser", error);
  }
}

/** Forget drafts kept in this browser for over a month (reviews submitted elsewhere or withdrawn). */
function pruneLocal() {
  try {
    for (let i = localStorage.length - 1; i >= 0; i -= 1) {
      const key = localStorage.key(i);
      if (!key || !key.startsWith(LOCAL_PREFIX)) continue;
      const value = JSON.parse(localStorage.getItem(key) || "null");
      if (!value || !(value.seq > Date.now() - LOCAL_KEEP_MS)) localStorage.removeItem(key);
    }
  } catch (error) {
    // storage unavailable or a foreign value: nothing to prune
  }
}

function clearLocal(token) {
  try {
    localStorage.removeItem(localKey(token));
  } catch (error) {
    // storage unavailable: nothing to clear
  }
}

function currentState() {
  return { v: STATE_VERSION, mode, shown, start_from: startFrom, mask: editor ? editor.toRle() : null };
}

/** Something changed: keep it in this browser now, send it to the server soon (debounced). */
function markDirty() {
  if (!review || !ready || draft.closed) return;
  draft.seq = Math.max(draft.seq + 1, Date.now());
  draft.state = currentState();
  writeLocal();
  if (!draft.dirty) draft.since = Date.now();
  draft.dirty = true;
  if (draft.failures) return; // a retry is already scheduled: it sends the newest state
  if (!draft.inFlight) saveStatus("dirty", "Unsaved changes");
  clearTimeout(draft.timer);
  const wait = Date.now() - draft.since >= SAVE_MAX_WAIT_MS ? 0 : SAVE_DEBOUNCE_MS;
  draft.timer = setTimeout(saveDraft, wait);
}

/** PUT the draft (the newest seq wins on the server); on a network failure retry with backoff. */
async function saveDraft({ keepalive = false } = {}) {
  if (!review || !draft.dirty || draft.closed) return;
  if (draft.inFlight) {
    draft.again = true;
    return;
  }
  clearTimeout(draft.timer);
  const mine = draft;
  const token = review.token;
  const body = { seq: mine.seq, state: mine.state };
  mine.inFlight = true;
  let ok = false;
  saveStatus("saving", "Saving…");
  try {
    const text = JSON.stringify(body);
    await api("/reviews/" + encodeURIComponent(token) + "/draft",
      { method: "PUT", body, keepalive: keepalive && text.length < 60000 });
    ok = true;
    mine.failures = 0;
    if (mine.seq === body.seq) mine.dirty = false;
    if (draft === mine && !mine.dirty) saveStatus("saved", "Draft saved " + clock());
  } catch (error) {
    if (draft !== mine || mine.closed) return;
    if (error.status === 409) {
      mine.closed = true;
      clearLocal(token);
      if (!submitting) {
        message(error.message + " Loading the next image…");
        loadNext();
      }
    } else if (error.status === 401) {
      saveStatus("offline", "Session expired: the draft is kept in this browser");
    } else if (error.transient) {
      mine.failures += 1;
      const wait = BACKOFF_MS[Math.min(mine.failures, BACKOFF_MS.length) - 1];
      saveStatus("offline", "Offline, will retry in " + Math.round(wait / 1000) + " s (kept in this browser)");
      mine.timer = setTimeout(saveDraft, wait);
    } else {
      saveStatus("failed", "Draft not saved on the server (" + error.message + "); kept in this browser");
    }
  } finally {
    mine.inFlight = false;
    if (mine.again) {
      mine.again = false;
      if (ok && mine.dirty && draft === mine) saveDraft();
    }
  }
}

function flushDraft() {
  if (draft.dirty) {
    writeLocal();
    saveDraft({ keepalive: true });
  }
}

// ---------------------------------------------------------------------------------------- the projects
async function loadProjects() {
  projects = (await api("/review/projects")).projects;
  const select = $("project");
  select.textContent = "";
  for (const project of projects) {
    select.append(el("option", { value: String(project.id) }, project.name));
  }
  if (!projects.length) return;
  const wanted = Number(new URLSearchParams(location.search).get("project") || localStorage.getItem(PROJECT_KEY));
  const known = (id) => projects.some((p) => p.id === id);
  if (!known(projectId)) {
    projectId = known(wanted) ? wanted
      : (projects.find((p) => p.open_by_me > 0 || p.waiting > 0) || projects[0]).id;
  }
  select.value = String(projectId);
  showQueue();
}

function showQueue() {
  const project = projects.find((p) => p.id === projectId);
  $("queue").textContent = project
    ? project.waiting + " waiting · " + project.done_by_me + " done by you" +
      (project.open_by_me ? " · " + project.open_by_me + " open" : "")
    : "";
}

async function refreshQueue() {
  try {
    await loadProjects();
  } catch (error) {
    // the counts are a convenience; the next call shows real errors
  }
}

// ------------------------------------------------------------------------------------------ the reviews
function resetReview() {
  clearTimeout(draft.timer);
  draft = freshDraft();
  ready = false;
  review = null;
  shown = lastShown = startFrom = null;
  editor = null;
  mode = "choose";
  $("workspace").hidden = true;
  $("empty").hidden = true;
  saveStatus("", "");
}

async function loadNext() {
  if (projectId === null) return;
  resetReview();
  message("Loading the next image…");
  let failures = 0;
  for (;;) {
    try {
      const answer = await api("/review/projects/" + projectId + "/next", { method: "POST", body: {} });
      refreshQueue();
      if (!answer.review) {
        showEmpty(answer.message);
        return;
      }
      await openReview(answer.review);
      return;
    } catch (error) {
      if (error.status === 401) return;
      if (!error.transient) {
        message("The next image could not be loaded: " + error.message, true);
        return;
      }
      failures += 1;
      const wait = BACKOFF_MS[Math.min(failures, BACKOFF_MS.length) - 1];
      message("The server cannot be reached; trying again in " + Math.round(wait / 1000) + " s.", true);
      await sleep(wait);
    }
  }
}

function showEmpty(text) {
  message("");
  const project = projects.find((p) => p.id === projectId);
  $("empty-text").textContent = (text || "Nothing is waiting for you in this project.") +
    (project ? " You have reviewed " + project.done_by_me + " image(s) in " + project.name + "." : "");
  $("empty").hidden = false;
}

async function openReview(item) {
  review = item;
  draft = freshDraft();
  ready = false;
  const server = item.draft && item.draft.state ? item.draft : null;
  const local = readLocal(item.token);
  const { width, height } = size();
  const image = $("radiograph");
  image.src = item.image.url;
  try {
    await image.decode();
  } catch (error) {
    message("The radiograph could not be loaded; reload the page.", true);
    return;
  }
  $("viewer").style.aspectRatio = width + " / " + height;
  $("workspace").hidden = false;
  message("");
  viewport.setSize(width, height);
  $("ui-layer").setAttribute("viewBox", "0 0 " + width + " " + height);
  const largest = Math.max(8, Math.round(Math.min(width, height) / 4));
  $("brush-size").max = String(largest);
  setBrushSize(Math.max(1, Math.round(Math.min(width, height) / 40)));
  buildGallery();
  buildStartFrom();
  setMode("choose");
  show(null, false);

  draft.seq = Math.max(server ? server.seq : 0, local ? local.seq : 0, item.draft ? item.draft.seq : 0);
  const best = local && (!server || local.seq > server.seq) ? local : server;
  if (best) {
    applyState(best.state);
    message("Your draft of this image was restored.");
  }
  ready = true;
  if (best && best === local) markDirty(); // the server missed it (offline or session expired): send it
  else if (best) saveStatus("saved", "Draft restored");
  $("viewer").focus({ preventScroll: true });
}

function applyState(state) {
  if (!state || state.v !== STATE_VERSION) return;
  const { width, height } = size();
  if (state.mask && state.mask.width === width && state.mask.height === height) {
    try {
      editor = createEditor();
      editor.restore(rleDecode(state.mask.counts, width * height));
    } catch (error) {
      editor = null;
    }
  }
  if (state.mode === "draw" && !editor) editor = createEditor();
  startFrom = candidate(state.start_from) ? state.start_from : null;
  markStartFrom();
  setMode(state.mode === "draw" ? "draw" : "choose");
  show(candidate(state.shown) ? state.shown : null, false);
  updateDrawInfo();
}

function buildGallery() {
  const list = $("gallery");
  list.textContent = "";
  for (const c of review.candidates) {
    const button = el("button", {
      type: "button", className: "thumb", dataset: { token: c.token },
      aria: { pressed: "false", label: "Candidate " + c.label },
      title: "Show candidate " + c.label + " (" + c.label + ")",
      onclick: () => toggle(c.token),
    }, el("img", { src: c.overlay_url, alt: "", draggable: false, loading: "eager" }),
    el("span", { className: "label", aria: { hidden: "true" } }, c.label));
    list.append(el("li", {}, button));
  }
}

function buildStartFrom() {
  const group = $("start-from");
  group.textContent = "";
  const make = (token, text, title) => el("button", {
    type: "button", className: "button secondary small", dataset: { start: token || "" },
    aria: { pressed: "false" }, title, onclick: () => startFromCandidate(token),
  }, text);
  group.append(make(null, "Empty", "Start from an empty mask"));
  for (const c of review.candidates) group.append(make(c.token, c.label, "Start from candidate " + c.label));
}

function markStartFrom() {
  $("start-from").querySelectorAll("button").forEach((button) => {
    button.setAttribute("aria-pressed", String((button.dataset.start || null) === startFrom && editor !== null));
  });
}

/** Show candidate `token` over the radiograph (null: the radiograph alone). */
function show(token, save = true) {
  shown = token;
  if (token) lastShown = token;
  const c = candidate(token);
  const overlay = $("overlay");
  if (c) {
    overlay.src = c.overlay_url;
    overlay.alt = "Candidate " + c.label + " over the radiograph";
  }
  overlay.hidden = !c;
  $("viewer-label").textContent = (c ? "Candidate " + c.label : "Radiograph") +
    (mode === "draw" ? " + your drawing" : "");
  $("gallery").querySelectorAll(".thumb").forEach((button) => {
    button.setAttribute("aria-pressed", String(button.dataset.token === token));
  });
  const choose = $("choose");
  choose.disabled = !c || mode !== "choose" || submitting;
  choose.textContent = c ? "Choose " + c.label : "Choose a candidate";
  if (save) markDirty();
}

function toggle(token) {
  show(shown === token ? null : token);
}

function setMode(next) {
  mode = next;
  const drawing = mode === "draw";
  $("draw-panel").hidden = !drawing;
  $("choose-actions").hidden = drawing;
  $("mask-canvas").hidden = !drawing || !editor;
  $("candidates-hint").textContent = drawing
    ? "Click a thumbnail to show that candidate under your drawing (click again to hide it)."
    : "Click a thumbnail or press its letter to show it over the radiograph (again, or Space, to hide it).";
  $("viewer").classList.toggle("drawing", drawing && tool !== "pan");
  if (drawing) setTool(tool);
}

function createEditor() {
  const { width, height } = size();
  const created = new MaskEditor($("mask-canvas"), width, height, () => {
    markDirty();
    updateDrawInfo();
  });
  applyOpacity();
  return created;
}

function enterDraw() {
  if (!editor) editor = createEditor();
  setMode("draw");
  show(null, false);
  markStartFrom();
  updateDrawInfo();
  markDirty();
  $("viewer").focus({ preventScroll: true });
}

function leaveDraw() {
  setMode("choose");
  show(lastShown && candidate(lastShown) ? lastShown : null, false);
  markDirty();
}

async function startFromCandidate(token) {
  if (!editor) return;
  if (!token) {
    startFrom = null;
    editor.load(null);
  } else {
    const c = candidate(token);
    try {
      const { width, height } = size();
      const image = await loadImage(c.mask_url);
      const mask = maskFromImage(image, width, height);
      startFrom = token;
      editor.load(mask);
    } catch (error) {
      message("Candidate " + c.label + " could not be loaded: " + error.message, true);
      return;
    }
  }
  markStartFrom();
}

function setTool(name) {
  tool = name;
  $("tools").querySelectorAll(".tool").forEach((button) => {
    button.setAttribute("aria-pressed", String(button.dataset.tool === name));
  });
  $("viewer").classList.toggle("drawing", mode === "draw" && name !== "pan");
}

function setBrushSize(value) {
  const input = $("brush-size");
  brushSize = Math.min(Number(input.max), Math.max(1, Math.round(value)));
  input.value = String(brushSize);
  $("brush-size-value").textContent = brushSize + " px";
}

function applyOpacity() {
  const value = Number($("mask-opacity").value);
  $("mask-canvas").style.opacity = String(value / 100);
  $("mask-opacity-value").textContent = value + "%";
}

function updateDrawInfo() {
  $("undo").disabled = !editor || !editor.canUndo();
  $("redo").disabled = !editor || !editor.canRedo();
  $("mask-canvas").hidden = mode !== "draw" || !editor;
  if (!editor) return;
  const count = editor.count();
  const share = (100 * count) / (editor.width * editor.height);
  $("mask-size").textContent = count
    ? count.toLocaleString() + " pixels marked (" + share.toFixed(1) + "% of the image)"
    : "Nothing marked yet.";
}

// ------------------------------------------------------------------------------------------ submission
function setBusy(value) {
  submitting = value;
  for (const id of ["reject", "submit-drawn", "back", "clear"]) $(id).disabled = value;
  $("choose").disabled = value || !shown || mode !== "choose";
}

async function submit(body) {
  if (!review || submitting) return;
  const token = review.token;
  setBusy(true);
  clearTimeout(draft.timer);
  draft.closed = true;
  message("Submitting…");
  let failures = 0;
  for (;;) {
    try {
      await api("/reviews/" + encodeURIComponent(token) + "/submit", { method: "POST", body });
      break;
    } catch (error) {
      if (error.status === 401) return; // on the way to the login page; the draft is kept here
      if (error.transient) {
        failures += 1;
        const wait = BACKOFF_MS[Math.min(failures, BACKOFF_MS.length) - 1];
        saveStatus("offline", "Offline: the submission will be retried in " + Math.round(wait / 1000) + " s");
        await sleep(wait);
        continue;
      }
      if (error.status === 409) {
        message(error.message, true);
        await sleep(1500);
        break;
      }
      message("Not submitted: " + error.message, true);
      draft.closed = false;
      setBusy(false);
      return;
    }
  }
  clearLocal(token);
  setBusy(false);
  await loadNext();
}

function chooseShown() {
  if (shown && mode === "choose") submit({ decision: "choose", choice: shown });
}

function submitDrawn() {
  if (!editor) return;
  if (editor.isEmpty() &&
      !window.confirm("The drawn mask is empty: no infected region on this image. Submit it anyway?")) return;
  submit({ decision: "reject", start_from: startFrom, mask: editor.toRle() });
}

// -------------------------------------------------------------------------------------------- keyboard
function onKeyDown(event) {
  if (typing(event) || !ready || submitting) return;
  const key = event.key;
  const command = event.ctrlKey || event.metaKey;
  if (command && mode === "draw" && editor && (key === "z" || key === "Z" || key === "y")) {
    event.preventDefault();
    if (key === "y" || event.shiftKey) editor.redo();
    else editor.undo();
    updateDrawInfo();
    return;
  }
  if (command || event.altKey) return;
  if (key === "+" || key === "=") {
    viewport.zoom(1.25);
  } else if (key === "-" || key === "_") {
    viewport.zoom(0.8);
  } else if (key === "0") {
    viewport.fit();
  } else if (mode === "choose" && /^[a-z]$/i.test(key)) {
    const c = review.candidates.find((item) => item.label === key.toUpperCase());
    if (!c) return;
    toggle(c.token);
  } else if (mode === "choose" && key === " ") {
    if (event.target instanceof HTMLButtonElement) return;
    toggle(shown || lastShown || (review.candidates[0] || {}).token);
  } else if (mode === "draw") {
    const tools = { b: "brush", e: "eraser", f: "fill", h: "pan", l: event.shiftKey ? "lasso-remove" : "lasso-add" };
    const lower = key.toLowerCase();
    if (tools[lower]) setTool(tools[lower]);
    else if (key === "[") setBrushSize(brushSize / 1.25);
    else if (key === "]") setBrushSize(Math.max(brushSize + 1, brushSize * 1.25));
    else if (key === " ") {
      if (event.target instanceof HTMLButtonElement) return;
      spaceDown = true;
    } else return;
  } else {
    return;
  }
  event.preventDefault();
}

function onKeyUp(event) {
  if (event.key === " ") spaceDown = false;
}

// ------------------------------------------------------------------------------------------------ start
function bind() {
  viewport = new Viewport($("viewer"), $("stage"), (v) => {
    $("zoom-level").textContent = Math.round(v.scale * 100) + "%";
  });
  bindPointer(viewport, {
    getEditor: () => (mode === "draw" && !submitting ? editor : null),
    getTool: () => tool,
    getSize: () => brushSize,
    lassoLine: $("lasso-line"),
    cursor: $("brush-cursor"),
    spaceHeld: () => spaceDown,
  });
  $("zoom-in").addEventListener("click", () => viewport.zoom(1.25));
  $("zoom-out").addEventListener("click", () => viewport.zoom(0.8));
  $("zoom-fit").addEventListener("click", () => viewport.fit());
  $("choose").addEventListener("click", chooseShown);
  $("reject").addEventListener("click", enterDraw);
  $("back").addEventListener("click", leaveDraw);
  $("submit-drawn").addEventListener("click", submitDrawn);
  $("undo").addEventListener("click", () => editor && editor.undo());
  $("redo").addEventListener("click", () => editor && editor.redo());
  $("clear").addEventListener("click", () => editor && !editor.isEmpty() && editor.load(null));
  $("tools").addEventListener("click", (event) => {
    const button = event.target.closest(".tool");
    if (button) setTool(button.dataset.tool);
  });
  $("brush-size").addEventListener("input", (event) => setBrushSize(Number(event.target.value)));
  $("mask-opacity").addEventListener("input", applyOpacity);
  $("check-again").addEventListener("click", async () => {
    await refreshQueue();
    loadNext();
  });
  $("project").addEventListener("change", async (event) => {
    await saveDraft();
    projectId = Number(event.target.value);
    localStorage.setItem(PROJECT_KEY, String(projectId));
    history.replaceState(null, "", "/review?project=" + projectId);
    showQueue();
    loadNext();
  });
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("keyup", onKeyUp);
  window.addEventListener("blur", () => {
    spaceDown = false;
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") flushDraft();
  });
  window.addEventListener("pagehide", flushDraft);
  window.addEventListener("online", () => {
    if (draft.dirty && !draft.inFlight) {
      draft.failures = 0;
      saveDraft();
    }
  });
  window.addEventListener("offline", () => {
    if (draft.dirty) saveStatus("offline", "Offline: changes are kept in this browser and sent when back online");
  });
  beforeLogin(writeLocal);
}

async function init() {
  await requireUser("reviewer");
  pruneLocal();
  bind();
  try {
    await loadProjects();
  } catch (error) {
    message("Your projects could not be loaded: " + error.message, true);
    return;
  }
  if (!projects.length) {
    message("");
    $("empty-title").textContent = "No project yet";
    $("empty-text").textContent = "You are not a reviewer of any project yet. Ask an admin to add you to one.";
    $("empty").hidden = false;
    return;
  }
  await loadNext();
}

init();
