// Dashboard: progress per stage, machine vs manual choices, win rate per network, reviewer agreement
// (Fleiss' kappa, Dice) and the position-bias check of one project; bar charts in plain DOM.
import { $, api, el, fixed, percent, requireUser, setStatus, when } from "./common.js";

const REFRESH_MS = 20000;
const SOURCES = [["model", "Network prediction", ""], ["manual", "Doctor's manual mask", "b"], ["drawn", "Drawn by a reviewer", "c"]];
let projectId = null;
let timer = null;

/** One labelled horizontal bar: `fraction` of the track filled, `value` written beside it. */
function bar(name, fraction, value, kind = "", marker = null) {
  const fill = el("span", { className: "fill " + kind });
  fill.style.width = Math.max(0, Math.min(1, fraction || 0)) * 100 + "%";
  const track = el("span", { className: "track", aria: { hidden: "true" } }, fill);
  if (marker !== null) {
    const line = el("span", { className: "fill expected" });
    line.style.width = Math.max(0, Math.min(1, marker)) * 100 + "%";
    track.append(line);
  }
  return el("div", { className: "bar-row" }, el("span", { className: "name" }, name), track,
    el("span", { className: "value" }, value));
}

function renderProgress(progress) {
  const total = progress.total || 0;
  $("progress-accepted").textContent = progress.accepted + " of " + total + " images accepted (" +
    percent(total ? progress.accepted / total : null, 0) + ")";
  const barBox = $("progress-bar");
  barBox.textContent = "";
  const legend = $("progress-legend");
  legend.textContent = "";
  const parts = [["accepted", "accepted"], ["pending", "under review"], ["unannotated", "unannotated"]];
  for (const [key, label] of parts) {
    const segment = el("span", { className: "seg " + key, title: label + ": " + progress[key] });
    segment.style.width = (total ? (100 * progress[key]) / total : 0) + "%";
    barBox.append(segment);
    legend.append(el("li", { className: key }, label + ": " + progress[key]));
  }
  barBox.setAttribute("aria-label", parts.map(([key, label]) => progress[key] + " " + label).join(", "));
  const body = $("stages").tBodies[0];
  body.textContent = "";
  for (const [stage, s] of Object.entries(progress.stages || {})) {
    body.append(el("tr", {}, el("th", { scope: "row" }, "Stage " + stage), el("td", { className: "num" }, s.images),
      el("td", { className: "num" }, s.accepted), el("td", { className: "num" }, s.pending),
      el("td", { className: "num" }, s.reviews_done)));
  }
}

function renderChoices(choices) {
  const box = $("choices");
  box.textContent = "";
  for (const [stage, block] of Object.entries(choices || {})) {
    const total = SOURCES.reduce((sum, [key]) => sum + (block[key] || 0), 0);
    box.append(el("h3", {}, "Stage " + stage));
    if (!total) {
      box.append(el("p", { className: "note" }, "No accepted mask yet."));
      continue;
    }
    box.append(el("p", {}, el("strong", {}, "Machine share: " + percent(block.machine_share)),
      " of " + total + " accepted masks"));
    const bars = el("div", { className: "bars" });
    for (const [key, label, kind] of SOURCES) {
      bars.append(bar(label, (block[key] || 0) / total, block[key] + " (" + percent((block[key] || 0) / total, 0) + ")", kind));
    }
    box.append(bars);
    const every = block.reviews;
    if (every) {
      box.append(el("p", { className: "note" }, "All reviews: " + SOURCES.map(([key, label]) => label.toLowerCase() + " " +
        (every[key] || 0)).join(", ") + "; machine share " + percent(every.machine_share) + "."));
    }
  }
}

function renderNetworks(networks) {
  const box = $("networks");
  box.textContent = "";
  for (const n of networks || []) {
    box.append(bar("Stage " + n.stage + " · " + n.model, n.win_rate, n.chosen + "/" + n.shown + " (" + percent(n.win_rate, 0) + ")"));
  }
  $("no-networks").hidden = (networks || []).length > 0;
}

function renderAgreement(agreement) {
  const box = $("agreement");
  box.textContent = "";
  const item = (label, value) => el("div", {}, el("span", {}, label), el("b", { className: "figure" }, value));
  box.append(item("Fleiss' kappa", fixed(agreement.fleiss_kappa, 2)),
    item("Mean pairwise Dice", fixed(agreement.mean_pairwise_dice, 3)),
    item("Images reviewed twice or more", agreement.images), item("Their reviews", agreement.reviews));
  $("agreement-note").textContent = agreement.images
    ? "Kappa over the chosen source (each network, the manual mask, or drawn); Dice between the masks the reviewers of one image chose or drew."
    : "Agreement needs images judged by two or more reviewers: set the project's reviews per image to 2 or more.";
}

function renderBias(bias) {
  const box = $("bias");
  box.textContent = "";
  const labels = bias.labels || [];
  const top = Math.max(1, ...bias.observed || [0], ...bias.expected || [0]);
  labels.forEach((label, i) => {
    box.append(bar(label, bias.observed[i] / top, bias.observed[i] + " vs " + fixed(bias.expected[i], 1), "",
      bias.expected[i] / top));
  });
  const verdict = $("bias-verdict");
  verdict.className = "verdict";
  if (bias.p_value === null || bias.p_value === undefined) {
    verdict.textContent = labels.length ? "Too few choices for a test yet (χ² needs choices at two positions or more)."
      : "No candidate has been chosen yet.";
  } else if (bias.p_value < 0.05) {
    verdict.classList.add("warn");
    verdict.textContent = "Choices depend on the position shown (χ² = " + fixed(bias.chi2, 2) + ", " + bias.dof +
      " dof, p = " + fixed(bias.p_value, 3) + "): check how the reviewers pick.";
  } else {
    verdict.classList.add("ok");
    verdict.textContent = "No sign of position bias (χ² = " + fixed(bias.chi2, 2) + ", " + bias.dof + " dof, p = " +
      fixed(bias.p_value, 3) + ").";
  }
}

function renderJobs(jobs) {
  const body = $("jobs").tBodies[0];
  body.textContent = "";
  for (const job of jobs || []) {
    body.append(el("tr", {}, el("td", {}, job.id), el("td", {}, job.kind),
      el("td", {}, el("span", { className: "pill " + job.state }, job.state)),
      el("td", {}, el("progress", { max: 1, value: job.progress, aria: { label: "Progress of job " + job.id } }),
        " " + Math.round(100 * job.progress) + "%"),
      el("td", { className: job.state === "failed" ? "error-text" : "" }, job.state === "failed" ? job.error || job.message : job.message || ""),
      el("td", {}, when(job.finished_at))));
  }
}

async function load() {
  clearTimeout(timer);
  if (projectId === null) return;
  try {
    const data = await api("/admin/projects/" + projectId + "/dashboard");
    renderProgress(data.progress);
    renderChoices(data.choices);
    renderNetworks(data.networks);
    renderAgreement(data.agreement);
    renderBias(data.position_bias);
    renderJobs(data.jobs);
    $("dashboard").hidden = false;
    setStatus($("page-status"), "");
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    setStatus($("page-status"), "The dashboard could not be loaded: " + error.message, "error");
  }
  timer = setTimeout(() => {
    if (document.visibilityState === "visible") load();
    else document.addEventListener("visibilitychange", load, { once: true });
  }, REFRESH_MS);
}

async function init() {
  await requireUser("admin");
  let projects;
  try {
    projects = (await api("/admin/projects")).projects;
  } catch (error) {
    setStatus($("page-status"), error.message, "error");
    return;
  }
  if (!projects.length) {
    setStatus($("page-status"), "No project yet: create one on the admin page.");
    return;
  }
  const select = $("project");
  for (const p of projects) select.append(el("option", { value: String(p.id) }, p.name));
  const wanted = Number(new URLSearchParams(location.search).get("project"));
  projectId = projects.some((p) => p.id === wanted) ? wanted : projects[0].id;
  select.value = String(projectId);
  $("nav-admin").href = "/admin?project=" + projectId;
  select.addEventListener("change", () => {
    projectId = Number(select.value);
    history.replaceState(null, "", "/dashboard?project=" + projectId);
    $("nav-admin").href = "/admin?project=" + projectId;
    load();
  });
  $("refresh").addEventListener("click", load);
  await load();
}

init();
