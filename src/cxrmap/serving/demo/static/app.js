// cxrmap demo page: upload a chest X-ray, show its infection map, decision, severity and the model card.
// No external asset, no inline script: the Content-Security-Policy allows scripts from this origin only.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let lastResult = null;

  const percent = (value, digits = 1) => (100 * value).toFixed(digits) + "%";

  function setStatus(text, isError) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function addRow(body, label, value) {
    const row = body.insertRow();
    const head = document.createElement("th");
    head.scope = "row";
    head.textContent = label;
    row.appendChild(head);
    row.insertCell().textContent = value;
  }

  function showTable(table) {
    const element = document.createElement("table");
    element.className = "metrics";
    element.createCaption().textContent = table.title;
    const head = element.createTHead().insertRow();
    table.columns.forEach((column) => {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = column;
      head.appendChild(th);
    });
    const row = element.createTBody().insertRow();
    table.values.forEach((value) => {
      row.insertCell().textContent = value;
    });
    return element;
  }

  function showCitation(citation) {
    const element = $("citation");
    element.textContent = citation.authors.join(", ") + ", ";
    const title = document.createElement("em");
    title.textContent = citation.title;
    const doi = document.createElement("a");
    doi.href = citation.doi_url;
    doi.textContent = "doi:" + citation.doi;
    element.append(
      title,
      ", " + citation.journal + " " + citation.volume + ", " + citation.article + " (" + citation.year + "), ",
      doi
    );
  }

  function showCard(card) {
    const body = $("card-body");
    body.textContent = "";
    card.card.rows.forEach(([label, value]) => addRow(body, label, value));
    addRow(body, "Model id", card.model_id + " (" + card.checkpoint + ")");
    const tables = $("card-tables");
    tables.textContent = "";
    card.card.tables.forEach((table) => tables.appendChild(showTable(table)));
    $("card-figures-note").textContent = card.card.figures_note;
    $("card-json").textContent = JSON.stringify(card, null, 1);
    $("card-notice").textContent = card.notice;
    $("notice").textContent = card.notice;
    showCitation(card.citation);
    if (card.trained_on_phantoms) {
      $("phantom-text").textContent = card.warnings.join(" ");
      $("phantom-warning").hidden = false;
    }
  }

  function showSeverity(result) {
    const severity = result.severity;
    const table = $("zones");
    const note = $("severity-note");
    if (!severity) {
      $("severity-overall").textContent = "Not available.";
      table.hidden = true;
      note.textContent = result.severity_note || "The model gives no lung segmentation for this image.";
      note.hidden = false;
      return;
    }
    $("severity-overall").textContent = percent(severity.lung_share) + " of the lungs";
    const body = $("zones-body");
    body.textContent = "";
    const cell = (v) => (v === null || v === undefined ? "–" : percent(v));
    for (const level of ["upper", "middle", "lower"]) {
      const row = body.insertRow();
      const head = document.createElement("th");
      head.scope = "row";
      head.textContent = level.charAt(0).toUpperCase() + level.slice(1);
      row.appendChild(head);
      row.insertCell().textContent = cell(severity["right_" + level]);
      row.insertCell().textContent = cell(severity["left_" + level]);
    }
    const total = body.insertRow();
    total.className = "total";
    const head = document.createElement("th");
    head.scope = "row";
    head.textContent = "Whole lung";
    total.appendChild(head);
    total.insertCell().textContent = cell(severity.right);
    total.insertCell().textContent = cell(severity.left);
    table.hidden = false;
    const text = severity.note || result.severity_note || "";
    note.textContent = text;
    note.hidden = !text;
  }

  function showResult(result) {
    lastResult = result;
    const covid = result.covid;
    $("decision").className = "decision " + (covid ? "positive" : "negative");
    $("decision-label").textContent = covid ? "COVID-19 detected" : "No COVID-19 detected";
    $("decision-score").textContent =
      "score " + result.score.toFixed(3) + " (threshold " + result.threshold.toFixed(2) +
      ": COVID-19 when any pixel's infection probability reaches it)";
    $("cxr").src = result.cxr_png;
    $("map-base").src = result.cxr_png;
    $("map-overlay").src = result.map_png;
    $("download-map").href = result.map_png;
    showSeverity(result);
    const warnings = $("warnings");
    warnings.textContent = "";
    for (const text of result.warnings) {
      const item = document.createElement("li");
      item.textContent = text;
      warnings.appendChild(item);
    }
    $("result").hidden = false;
    applyOpacity();
  }

  function applyOpacity() {
    const value = Number($("opacity").value);
    $("map-overlay").style.opacity = String(value / 100);
    $("opacity-value").textContent = value + "%";
  }

  async function upload(file) {
    if (!file) return;
    const form = new FormData();
    form.append("file", file);
    setStatus("Analysing " + file.name + " …", false);
    // Never leave one file's result on screen beside another file's name or error.
    $("result").hidden = true;
    lastResult = null;
    document.body.classList.add("busy");
    try {
      const response = await fetch("/api/v1/predict", { method: "POST", body: form });
      const payload = await response.json().catch(() => null);
      if (!response.ok) {
        const message = payload && payload.error ? payload.error.message : "HTTP " + response.status;
        setStatus("Refused: " + message, true);
        return;
      }
      showResult(payload);
      setStatus("Done in " + Math.round(payload.elapsed_ms) + " ms: " + file.name, false);
    } catch (error) {
      setStatus("The server could not be reached (" + error.message + ").", true);
    } finally {
      document.body.classList.remove("busy");
    }
  }

  function downloadJson() {
    if (!lastResult) return;
    const blob = new Blob([JSON.stringify(lastResult, null, 2)], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = "cxrmap-result.json";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function init() {
    const drop = $("drop");
    const input = $("file");
    input.addEventListener("change", () => upload(input.files[0]));
    ["dragenter", "dragover"].forEach((type) =>
      drop.addEventListener(type, (event) => {
        event.preventDefault();
        drop.classList.add("over");
      })
    );
    ["dragleave", "drop"].forEach((type) =>
      drop.addEventListener(type, () => drop.classList.remove("over"))
    );
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      upload(event.dataTransfer.files[0]);
    });
    $("opacity").addEventListener("input", applyOpacity);
    $("download-json").addEventListener("click", downloadJson);
    applyOpacity();
    fetch("/api/v1/model")
      .then((response) => response.json())
      .then(showCard)
      .catch(() => {
        $("card-body").textContent = "The model card could not be loaded.";
      });
  }

  document.addEventListener("DOMContentLoaded", init);
})();
