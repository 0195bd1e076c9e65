// Admin page: projects (create from a folder on the server, reviewers, reviews per image), Stage I and
// Stage II jobs (networks, folds, training settings), job progress (polled), export, images, users.
import { $, api, el, requireUser, setStatus, when } from "./common.js";

const POLL_MS = 1500;
const PAGE = 50;
const ARCHS = [["unet", "U-Net"], ["unetplusplus", "UNet++"], ["dla", "DLA"]];
const TRAINING = [["size", "Input size (px)", 96, 1], ["epochs", "Epochs", 8, 1], ["batch_size", "Batch size", 8, 1],
  ["lr", "Learning rate", 0.001, 0.0001]];
const STAGE_DEFAULTS = {
  stage1: [["unet", "resnet18"], ["unetplusplus", "resnet18"], ["dla", "resnet18"]],
  stage2: [["unet", "resnet18"], ["unetplusplus", "resnet18"], ["dla", "resnet18"]],
};

let projects = [];
let users = [];
let current = null; // the open project
let jobs = [];
let pollTimer = null;
let watchedExport = null;
let imageOffset = 0;

const pill = (text, kind) => el("span", { className: "pill " + (kind || text) }, text);

// --------------------------------------------------------------------------------------------- projects
async function loadProjects() {
  projects = (await api("/admin/projects")).projects;
  renderProjects();
}

function renderProjects() {
  const body = $("projects").tBodies[0];
  body.textContent = "";
  for (const p of projects) {
    const c = p.counts;
    const job = p.active_job;
    body.append(el("tr", { className: current && current.id === p.id ? "selected" : "" },
      el("th", { scope: "row" }, p.name),
      el("td", { className: "num" }, c.images), el("td", { className: "num" }, c.with_manual),
      el("td", { className: "num" }, c.accepted), el("td", { className: "num" }, c.pending),
      el("td", { className: "num" }, c.unannotated), el("td", { className: "num" }, p.reviews_per_image),
      el("td", {}, job ? [pill(job.kind + " " + job.state, job.state), " ", Math.round(100 * job.progress) + "%"] : "–"),
      el("td", {}, el("button", { type: "button", className: "button secondary small", onclick: () => openProject(p.id),
        aria: { label: "Open project " + p.name } }, "Open"))));
  }
  $("no-projects").hidden = projects.length > 0;
  $("new-project-box").open = $("new-project-box").open || projects.length === 0;
}

async function openProject(id) {
  current = (await api("/admin/projects/" + id)).project;
  history.replaceState(null, "", "/admin?project=" + id);
  $("project-panel").hidden = false;
  $("dashboard-link").href = "/dashboard?project=" + id;
  $("nav-dashboard").href = "/dashboard?project=" + id;
  imageOffset = 0;
  $("image-preview").hidden = true;
  renderProject();
  renderProjects();
  await Promise.all([pollJobs(), loadImages()]);
  $("project-title").scrollIntoView({ behavior: "smooth", block: "start" });
}

async function refreshProject() {
  if (!current) return;
  current = (await api("/admin/projects/" + current.id)).project;
  renderProject();
  const index = projects.findIndex((p) => p.id === current.id);
  if (index >= 0) projects[index] = current;
  renderProjects();
}

function renderProject() {
  const c = current.counts;
  $("project-title").textContent = "Project " + current.name;
  const box = $("project-counts");
  box.textContent = "";
  const items = [["Images", c.images], ["With doctors' masks", c.with_manual], ["Accepted", c.accepted],
    ["Under review", c.pending], ["Unannotated", c.unannotated]];
  if (current.rounds) {
    for (const [stage, n] of Object.entries(current.rounds)) items.push(["Stage " + stage + " rounds", n]);
  }
  for (const [label, value] of items) box.append(el("div", { className: "count" }, el("b", {}, value), el("span", {}, label)));
  $("rpi").value = String(current.reviews_per_image);
  renderMembers();
}

function renderMembers() {
  const list = $("members");
  list.textContent = "";
  const reviewers = users.filter((u) => u.role === "reviewer");
  const members = new Set(current.members.map((m) => m.id));
  for (const user of reviewers) {
    const box = el("input", { type: "checkbox", checked: members.has(user.id), id: "member-" + user.id,
      onchange: (event) => setMember(user, event.target.checked, event.target) });
    list.append(el("li", {}, el("label", { for: "member-" + user.id }, box,
      user.username + (user.active ? "" : " (inactive)"))));
  }
  $("no-reviewers").hidden = reviewers.length > 0;
}

async function setMember(user, member, box) {
  const status = $("members-status");
  box.disabled = true;
  try {
    current = (await api("/admin/projects/" + current.id + "/members/" + user.id,
      { method: member ? "PUT" : "DELETE" })).project;
    setStatus(status, user.username + (member ? " reviews " : " no longer reviews ") + current.name + ".", "ok");
  } catch (error) {
    box.checked = !member;
    setStatus(status, error.message, "error");
  } finally {
    box.disabled = false;
  }
}

async function saveSettings(event) {
  event.preventDefault();
  const status = $("members-status");
  try {
    current = (await api("/admin/projects/" + current.id,
      { method: "PATCH", body: { reviews_per_image: Number($("rpi").value) } })).project;
    renderProject();
    await loadProjects();
    setStatus(status, "Reviews per image: " + current.reviews_per_image + ".", "ok");
  } catch (error) {
    setStatus(status, error.message, "error");
  }
}

async function createProject(event) {
  event.preventDefault();
  const status = $("np-status");
  const kind = document.querySelector("input[name='np-kind']:checked").value;
  const source = kind === "folder"
    ? { kind, images: $("np-images").value.trim(), masks: $("np-masks").value.trim() || null }
    : { kind, root: $("np-root").value.trim() };
  const body = { name: $("np-name").value.trim(), source, reviews_per_image: Number($("np-reviews").value) || 1 };
  if (!body.name) {
    setStatus(status, "Give the project a name.", "error");
    return;
  }
  setStatus(status, "Creating…");
  try {
    const answer = await api("/admin/projects", { method: "POST", body });
    setStatus(status, "Created; importing the images (job " + answer.job.id + ").", "ok");
    $("new-project").reset();
    showSourceKind();
    await loadProjects();
    await openProject(answer.project.id);
  } catch (error) {
    setStatus(status, error.message, "error");
  }
}

function showSourceKind() {
  const kind = document.querySelector("input[name='np-kind']:checked").value;
  $("np-folder").hidden = kind !== "folder";
  $("np-tree").hidden = kind !== "tree";
}

// ------------------------------------------------------------------------------------------ stage forms
function networkRow(container, arch, encoder) {
  const n = container.children.length + 1;
  const prefix = container.closest("form").id + "-net-" + Date.now().toString(36) + n;
  const select = el("select", { id: prefix + "-arch", aria: { label: "Architecture" } },
    ARCHS.map(([value, title]) => el("option", { value, selected: value === arch }, title)));
  const input = el("input", { type: "text", id: prefix + "-enc", value: encoder, list: "encoders", spellcheck: false,
    aria: { label: "Encoder" }, placeholder: "encoder" });
  const row = el("div", { className: "network-row" }, select, input,
    el("button", { type: "button", className: "button secondary small", aria: { label: "Remove this network" },
      onclick: () => row.remove() }, "Remove"));
  container.append(row);
}

function setUpStageForm(form, defaults) {
  const networks = form.querySelector("[data-networks]");
  for (const [arch, encoder] of defaults) networkRow(networks, arch, encoder);
  form.querySelector("[data-add-network]").addEventListener("click", () => networkRow(networks, "unet", "resnet18"));
  const training = form.querySelector("[data-training]");
  const row = el("div", { className: "row" });
  for (const [key, label, value, step] of TRAINING) {
    const id = form.id + "-" + key;
    row.append(el("label", { className: "field", for: id }, el("span", {}, label),
      el("input", { type: "number", id, value: String(value), step: String(step), min: String(step), dataset: { key } })));
  }
  const augment = form.id + "-augment";
  row.append(el("label", { for: augment }, el("input", { type: "checkbox", id: augment, checked: true, dataset: { key: "augment" } }),
    " Augment (shift, rotate)"));
  training.append(row);
  form.addEventListener("submit", (event) => startStage(event, form));
}

function readStageForm(form) {
  const networks = [...form.querySelectorAll(".network-row")].map((row) => ({
    arch: row.querySelector("select").value, encoder: row.querySelector("input").value.trim(),
  }));
  const training = {};
  form.querySelectorAll("[data-training] [data-key]").forEach((input) => {
    training[input.dataset.key] = input.type === "checkbox" ? input.checked : Number(input.value);
  });
  const body = { networks, training };
  if (form.id === "stage1") body.folds = Number($("s1-folds").value);
  else body.limit = $("s2-limit").value ? Number($("s2-limit").value) : null;
  return body;
}

async function startStage(event, form) {
  event.preventDefault();
  const status = form.querySelector("[data-status]");
  const body = readStageForm(form);
  if (!body.networks.length) {
    setStatus(status, "Add at least one network.", "error");
    return;
  }
  setStatus(status, "Starting…");
  try {
    const answer = await api("/admin/projects/" + current.id + "/" + form.id, { method: "POST", body });
    setStatus(status, "Job " + answer.job.id + " queued.", "ok");
    await pollJobs();
  } catch (error) {
    setStatus(status, error.message, "error");
  }
}

// ------------------------------------------------------------------------------------------ jobs, export
async function pollJobs() {
  clearTimeout(pollTimer);
  if (!current) return;
  const project = current.id;
  let active = false;
  try {
    const before = new Map(jobs.map((j) => [j.id, j.state]));
    jobs = (await api("/admin/jobs?project_id=" + project)).jobs;
    if (!current || current.id !== project) return;
    renderJobs();
    active = jobs.some((j) => j.state === "queued" || j.state === "running");
    const finished = jobs.some((j) => before.has(j.id) && before.get(j.id) !== j.state &&
      !["queued", "running"].includes(j.state));
    if (finished) {
      await refreshProject();
      await loadImages();
    }
    showExport();
  } catch (error) {
    setStatus($("page-status"), "Jobs could not be loaded: " + error.message, "error");
    active = true; // try again
  }
  if (active) pollTimer = setTimeout(pollJobs, POLL_MS);
}

function renderJobs() {
  const body = $("jobs").tBodies[0];
  body.textContent = "";
  for (const job of jobs) {
    const running = job.state === "queued" || job.state === "running";
    const text = job.state === "failed" ? job.error || job.message : job.message;
    body.append(el("tr", {},
      el("td", {}, job.id), el("td", {}, job.kind), el("td", {}, pill(job.state)),
      el("td", {}, el("progress", { max: 1, value: job.progress, aria: { label: "Progress of job " + job.id } }),
        " " + Math.round(100 * job.progress) + "%"),
      el("td", { className: job.state === "failed" ? "error-text" : "" }, text || ""),
      el("td", {}, when(job.started_at)),
      el("td", {}, running ? el("button", { type: "button", className: "button danger small",
        onclick: () => cancelJob(job) }, "Cancel") : "")));
  }
  $("no-jobs").hidden = jobs.length > 0;
}

async function cancelJob(job) {
  if (!window.confirm("Cancel job " + job.id + " (" + job.kind + ")?")) return;
  try {
    await api("/admin/jobs/" + job.id + "/cancel", { method: "POST", body: {} });
    await pollJobs();
  } catch (error) {
    setStatus($("page-status"), error.message, "error");
  }
}

async function startExport() {
  const result = $("export-result");
  setStatus(result, "Exporting…");
  try {
    watchedExport = (await api("/admin/projects/" + current.id + "/export", { method: "POST", body: {} })).job.id;
    await pollJobs();
  } catch (error) {
    setStatus(result, error.message, "error");
  }
}

function showExport() {
  const result = $("export-result");
  const exports = jobs.filter((j) => j.kind === "export");
  const job = watchedExport !== null ? exports.find((j) => j.id === watchedExport) : exports.find((j) => j.state === "done");
  if (!job) return;
  result.textContent = "";
  result.classList.remove("error", "ok");
  if (job.state === "done" && job.result && job.result.path) {
    result.append(watchedExport === job.id ? "Exported " : "Last export ",
      (job.result.images ?? "?") + " images to ", el("span", { className: "export-path" }, job.result.path),
      " (" + when(job.finished_at) + ").");
    result.classList.add("ok");
  } else if (job.state === "failed" || job.state === "cancelled") {
    result.textContent = "Export " + job.state + ": " + (job.error || job.message || "");
    result.classList.add("error");
  } else {
    result.textContent = "Exporting… " + Math.round(100 * job.progress) + "%";
  }
}

// ----------------------------------------------------------------------------------------------- images
async function loadImages() {
  if (!current) return;
  const filter = $("image-filter").value;
  const query = "?offset=" + imageOffset + "&limit=" + PAGE + (filter ? "&status=" + filter : "");
  const answer = await api("/admin/projects/" + current.id + "/images" + query);
  const body = $("images").tBodies[0];
  body.textContent = "";
  for (const image of answer.images) {
    const accepted = image.accepted;
    body.append(el("tr", {},
      el("th", { scope: "row" }, image.name), el("td", {}, pill(image.status)),
      el("td", { className: "num" }, image.stage ?? "–"), el("td", {}, image.has_manual ? "yes" : "no"),
      el("td", { className: "num" }, image.reviews_done),
      el("td", {}, accepted ? (accepted.decision === "reject" ? "drawn by a reviewer"
        : accepted.origin + (accepted.model ? " (" + accepted.model + ")" : "")) : "–"),
      el("td", {}, el("button", { type: "button", className: "button secondary small", onclick: () => preview(image),
        aria: { label: "View " + image.name } }, "View"))));
  }
  const last = Math.min(answer.total, imageOffset + answer.images.length);
  $("images-range").textContent = answer.total ? imageOffset + 1 + "–" + last + " of " + answer.total : "no image";
  $("images-prev").disabled = imageOffset === 0;
  $("images-next").disabled = last >= answer.total;
}

async function preview(image) {
  $("image-preview").hidden = false;
  $("preview-title").textContent = image.name + " (" + image.status + ")";
  const figures = $("preview-figures");
  figures.textContent = "";
  const figure = (src, caption) => el("figure", {}, el("img", { src, alt: caption, loading: "lazy" }),
    el("figcaption", {}, caption));
  figures.append(figure("/api/v1/admin/images/" + image.id + "/image.png", "Radiograph"));
  if (image.accepted) figures.append(figure(image.accepted.mask_url || "/api/v1/admin/images/" + image.id + "/accepted.png",
    "Accepted mask"));
  try {
    const { candidates } = await api("/admin/images/" + image.id + "/candidates");
    for (const c of candidates) {
      const parts = ["stage " + c.stage, c.origin, c.model, c.fold !== null && c.fold !== undefined ? "fold " + c.fold : ""];
      figures.append(figure(c.mask_url, parts.filter(Boolean).join(" · ")));
    }
  } catch (error) {
    figures.append(el("p", { className: "error-text" }, error.message));
  }
  $("image-preview").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

// ------------------------------------------------------------------------------------------------ users
async function loadUsers() {
  users = (await api("/admin/users")).users;
  renderUsers();
  if (current) renderMembers();
}

function renderUsers() {
  const body = $("users").tBodies[0];
  body.textContent = "";
  for (const user of users) {
    const role = el("select", { aria: { label: "Role of " + user.username },
      onchange: (event) => patchUser(user, { role: event.target.value }) },
    ["reviewer", "admin"].map((r) => el("option", { value: r, selected: r === user.role }, r)));
    const active = el("input", { type: "checkbox", checked: user.active, aria: { label: user.username + " may log in" },
      onchange: (event) => patchUser(user, { active: event.target.checked }) });
    const password = el("input", { type: "password", autocomplete: "new-password", aria: { label: "New password for " + user.username } });
    const set = el("button", { type: "button", className: "button secondary small", onclick: () => {
      if (password.value) patchUser(user, { password: password.value });
    } }, "Set");
    body.append(el("tr", {}, el("th", { scope: "row" }, user.username), el("td", {}, role), el("td", {}, active),
      el("td", {}, when(user.created_at)), el("td", {}, el("div", { className: "row" }, password, set))));
  }
}

async function patchUser(user, change) {
  const status = $("users-status");
  try {
    await api("/admin/users/" + user.id, { method: "PATCH", body: change });
    setStatus(status, user.username + " updated" + (change.password ? " (new password; sessions ended)" : "") + ".", "ok");
  } catch (error) {
    setStatus(status, error.message, "error");
  }
  await loadUsers();
  if (current) await refreshProject();
}

async function createUser(event) {
  event.preventDefault();
  const status = $("users-status");
  const body = { username: $("nu-name").value.trim(), password: $("nu-password").value, role: $("nu-role").value };
  try {
    const { user } = await api("/admin/users", { method: "POST", body });
    setStatus(status, "Added " + user.role + " " + user.username + ".", "ok");
    $("new-user").reset();
    await loadUsers();
  } catch (error) {
    setStatus(status, error.message, "error");
  }
}

// ------------------------------------------------------------------------------------------------ start
async function init() {
  await requireUser("admin");
  $("new-project").addEventListener("submit", createProject);
  document.querySelectorAll("input[name='np-kind']").forEach((radio) => radio.addEventListener("change", showSourceKind));
  $("settings").addEventListener("submit", saveSettings);
  $("export").addEventListener("click", startExport);
  $("new-user").addEventListener("submit", createUser);
  $("image-filter").addEventListener("change", () => {
    imageOffset = 0;
    loadImages();
  });
  $("images-prev").addEventListener("click", () => {
    imageOffset = Math.max(0, imageOffset - PAGE);
    loadImages();
  });
  $("images-next").addEventListener("click", () => {
    imageOffset += PAGE;
    loadImages();
  });
  setUpStageForm($("stage1"), STAGE_DEFAULTS.stage1);
  setUpStageForm($("stage2"), STAGE_DEFAULTS.stage2);
  try {
    await Promise.all([loadProjects(), loadUsers()]);
    const wanted = Number(new URLSearchParams(location.search).get("project"));
    const id = projects.some((p) => p.id === wanted) ? wanted : projects.length === 1 ? projects[0].id : null;
    if (id !== null) await openProject(id);
  } catch (error) {
    setStatus($("page-status"), error.message, "error");
  }
}

init();
