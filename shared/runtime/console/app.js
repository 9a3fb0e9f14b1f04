// The baton console: a runs list, a run page and a task inbox over the HTTP API (/api/*).
// Plain DOM code with no dependencies, so the binary serves it offline. Every value from the
// API is put on the page as text (textContent), never as markup.
"use strict";

const main = document.getElementById("main");
const ENDED = ["succeeded", "failed", "cancelled"];
let refresh = null;

// ---- API ------------------------------------------------------------------------------------

function token() {
  return localStorage.getItem("baton-token") || "";
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { error: text }; }
  if (resp.status === 401) throw new ApiError(401, "This server needs an API token: enter it above.");
  if (!resp.ok) {
    const msg = (data && (data.message || data.error)) || resp.statusText;
    const field = data && data.field ? " (" + data.field + ")" : "";
    throw new ApiError(resp.status, msg + field);
  }
  return data;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// ---- DOM helpers ------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function badge(status, paused) {
  const s = paused ? "paused" : status || "pending";
  return el("span", { class: "badge status s-" + s, "data-status": s }, s);
}

function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "";
}

function json(v) {
  return el("pre", {}, JSON.stringify(v, null, 2));
}

function toast(message, error) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.className = "show" + (error ? " error" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ""; }, 4000);
}

function showError(e) {
  main.replaceChildren(el("div", { class: "card", id: "error" }, el("strong", {}, "Cannot load: "), e.message));
}

// ---- Runs list --------------------------------------------------------------------------------

async function runsPage(params) {
  const status = params.get("status") || "";
  const workflow = params.get("workflow") || "";
  const filters = el("form", { class: "filters", id: "filters" },
    el("label", {}, "Status", el("select", { name: "status", id: "filter-status" },
      ["", "waiting", "succeeded", "failed", "cancelled"].map((s) =>
        el("option", { value: s, selected: s === status }, s || "any")))),
    el("label", {}, "Workflow", el("input", { name: "workflow", id: "filter-workflow", value: workflow })),
    el("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams(new FormData(filters));
    for (const [k, v] of [...q.entries()]) if (!v) q.delete(k);
    location.hash = "#/runs" + (q.toString() ? "?" + q : "");
  });
  const body = el("tbody");
  const table = el("table", { id: "runs-table" },
    el("thead", {}, el("tr", {}, ["Run", "Workflow", "Status", "Steps", "Created"].map((h) => el("th", {}, h)))), body);
  const more = el("button", { id: "more", hidden: true }, "Load more");
  const start = el("form", { class: "filters", id: "start-form" },
    el("label", {}, "Start a run of workflow", el("input", { name: "workflow", id: "start-workflow", required: true })),
    el("label", {}, "Input (JSON)", el("input", { name: "input", id: "start-input", value: "{}", size: "40" })),
    el("button", { type: "submit", class: "primary", id: "start-run" }, "Start"));
  start.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let input;
    try { input = JSON.parse(start.input.value || "{}"); } catch (e) { toast("the input is not JSON: " + e.message, true); return; }
    try {
      const r = await api("POST", "/api/workflows/" + encodeURIComponent(start.workflow.value) + "/runs", input);
      location.hash = "#/runs/" + encodeURIComponent(r.run_id);
    } catch (e) {
      toast(e.message, true);
    }
  });
  main.replaceChildren(el("h1", {}, "Runs"), start, filters, table, el("p", {}, more));

  const query = new URLSearchParams({ limit: "25" });
  if (status) query.set("status", status);
  if (workflow) query.set("workflow", workflow);
  let cursor = null;
  const row = (r) => el("tr", { "data-run-id": r.run_id },
    el("td", {}, el("a", { href: "#/runs/" + encodeURIComponent(r.run_id) }, el("code", {}, r.run_id))),
    el("td", {}, r.workflow || ""),
    el("td", {}, badge(r.status, r.paused)),
    el("td", {}, String(Object.keys(r.steps || {}).length)),
    el("td", {}, when(r.created_at)));
  const load = async (append) => {
    const q = new URLSearchParams(query);
    if (append && cursor) q.set("cursor", cursor);
    const page = await api("GET", "/api/runs?" + q);
    const rows = (page.runs || []).map(row);
    if (append) body.append(...rows); else body.replaceChildren(...rows);
    if (!rows.length && !append) body.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "No runs.")));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener("click", () => load(true).catch((e) => toast(e.message, true)));
  await load(false);
  // Live status: the first page is read again every two seconds while nobody paged further.
  refresh = setInterval(() => { if (!body.querySelector("tr:nth-child(26)")) load(false).catch(() => {}); }, 2000);
}

// ---- One run ----------------------------------------------------------------------------------

function layout(graph) {
  const depth = {};
  const byId = Object.fromEntries(graph.map((s) => [s.id, s]));
  const d = (id, seen) => {
    if (depth[id] !== undefined) return depth[id];
    if (seen.has(id)) return 0;
    seen.add(id);
    const needs = (byId[id] && byId[id].needs) || [];
    depth[id] = needs.length ? 1 + Math.max(...needs.map((n) => d(n, seen))) : 0;
    return depth[id];
  };
  graph.forEach((s) => d(s.id, new Set()));
  const cols = {};
  graph.forEach((s) => { (cols[depth[s.id]] = cols[depth[s.id]] || []).push(s.id); });
  const pos = {};
  Object.entries(cols).forEach(([c, ids]) => ids.forEach((id, r) => { pos[id] = { x: 20 + c * 190, y: 20 + r * 60 }; }));
  const width = 40 + (Math.max(0, ...Object.keys(cols).map(Number)) + 1) * 190;
  const height = 40 + Math.max(1, ...Object.values(cols).map((c) => c.length)) * 60;
  return { pos, width, height };
}

const COLORS = { succeeded: "#1f8a4c", failed: "#c0392b", waiting: "#b7791f", running: "#2b6cb0",
  cancelled: "#6b46c1", skipped: "#8a94a3", retry_scheduled: "#b7791f", fell_back: "#2c7a7b" };

function dag(graph, steps) {
  const NS = "http://www.w3.org/2000/svg";
  const { pos, width, height } = layout(graph);
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("id", "dag");
  const mk = (tag, attrs) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  for (const s of graph) {
    for (const n of s.needs || []) {
      if (!pos[n]) continue;
      svg.append(mk("line", { x1: pos[n].x + 150, y1: pos[n].y + 18, x2: pos[s.id].x, y2: pos[s.id].y + 18, stroke: "#9aa5b1" }));
    }
  }
  for (const s of graph) {
    const status = (steps[s.id] && steps[s.id].status) || "pending";
    const g = mk("g", { "data-step": s.id, "data-status": status });
    g.append(mk("rect", { x: pos[s.id].x, y: pos[s.id].y, width: 150, height: 36, rx: 5,
      fill: COLORS[status] || "#e2e8f0", stroke: "#4a5568" }));
    const t = mk("text", { x: pos[s.id].x + 8, y: pos[s.id].y + 15, fill: COLORS[status] ? "#fff" : "#1d232b" });
    t.textContent = s.id;
    const t2 = mk("text", { x: pos[s.id].x + 8, y: pos[s.id].y + 30, fill: COLORS[status] ? "#fff" : "#4a5568" });
    t2.textContent = (s.tool || "") + " · " + status;
    g.append(t, t2);
    svg.append(g);
  }
  return svg;
}

function timeline(records, run) {
  const spans = {};
  for (const r of records) {
    const key = r.node || r.step;
    if (!key) continue;
    const s = spans[key] || (spans[key] = { from: r.at, to: r.at, step: r.step || key });
    s.from = Math.min(s.from, r.at);
    s.to = Math.max(s.to, r.at);
  }
  const all = records.map((r) => r.at);
  const t0 = Math.min(...all), t1 = Math.max(...all);
  const span = Math.max(1, t1 - t0);
  const rows = Object.entries(spans).map(([key, s]) => {
    const step = (run.steps || {})[s.step] || {};
    const bar = el("div", { class: "timeline-bar", title: (s.to - s.from) + " ms" });
    bar.style.left = ((s.from - t0) / span * 100) + "%";
    bar.style.width = Math.max(0.5, (s.to - s.from) / span * 100) + "%";
    bar.style.background = COLORS[step.status] || "#a0aec0";
    return el("div", { class: "timeline-row", "data-node": key },
      el("span", {}, key + (step.attempts ? "  ×" + step.attempts : "")), el("div", { class: "timeline-track" }, bar));
  });
  return el("div", { id: "timeline" }, el("p", { class: "muted" }, "Over " + span + " ms (" + when(t0) + " to " + when(t1) + ")"), rows);
}

// When the last action was taken: an ended run's page keeps refreshing for a while after it,
// as a redrive or retry makes the run move again in the background.
let lastAction = 0;

async function act(runId, action, body) {
  lastAction = Date.now();
  try {
    // Actions that make the run move answer once it settles (at most five seconds).
    const wait = ["redrive", "retry", "unpause"].includes(action) ? "?wait=5" : "";
    const r = await api("POST", "/api/runs/" + encodeURIComponent(runId) + "/" + action + wait, body);
    toast(action + ": the run is " + (r.paused ? "paused" : r.status));
  } catch (e) {
    toast(action + " refused: " + e.message, true);
  }
  route();
}

async function runPage(runId) {
  const enc = encodeURIComponent(runId);
  const [run, records, graph] = await Promise.all([
    api("GET", "/api/runs/" + enc),
    api("GET", "/api/runs/" + enc + "/audit"),
    api("GET", "/api/runs/" + enc + "/graph").then((g) => g.steps || []),
  ]);
  const verifyBox = el("div", { id: "verify" }, el("span", { class: "muted" }, "checking the audit chain…"));
  api("GET", "/api/runs/" + enc + "/audit/verify").then((v) => {
    verifyBox.replaceChildren(el("span", { class: v.intact ? "verify-ok" : "verify-bad" }, v.intact ? "intact" : "TAMPERED"),
      " ", el("span", {}, v.intact ? v.records + " records" : v.problem));
  }).catch((e) => verifyBox.replaceChildren(el("span", { class: "verify-bad" }, e.message)));

  const ended = ENDED.includes(run.status);
  const reason = el("input", { id: "action-reason", placeholder: "reason (recorded in the audit log)", size: "40" });
  const r = () => (reason.value ? { reason: reason.value } : {});
  const retryStep = el("select", { id: "retry-step" }, graph.filter((s) => !s.role).map((s) => el("option", { value: s.id }, s.id)));
  const retryInput = el("textarea", { id: "retry-input", rows: "2", cols: "40", placeholder: "optional JSON merge patch over the step's arguments" });
  const retry = () => {
    let input;
    if (retryInput.value.trim()) {
      try { input = JSON.parse(retryInput.value); } catch (e) { toast("the patch is not JSON: " + e.message, true); return; }
    }
    act(runId, "retry", Object.assign({ from: retryStep.value }, input === undefined ? {} : { input }, r()));
  };
  const actions = el("div", { class: "card actions" },
    reason,
    el("button", { id: "btn-cancel", class: "danger", disabled: ended, onclick: () => act(runId, "cancel", r()) }, "Cancel"),
    el("button", { id: "btn-redrive", class: "primary", disabled: !(run.status === "failed" || run.status === "cancelled"), onclick: () => act(runId, "redrive", r()) }, "Redrive"),
    run.paused
      ? el("button", { id: "btn-unpause", onclick: () => act(runId, "unpause", r()) }, "Unpause")
      : el("button", { id: "btn-pause", disabled: ended, onclick: () => act(runId, "pause", r()) }, "Pause"),
    el("span", {}, "Retry from "), retryStep, retryInput,
    el("button", { id: "btn-retry", onclick: retry }, "Retry"));

  const decisions = el("table", { id: "decisions" },
    el("thead", {}, el("tr", {}, ["#", "At", "Decision", "Node", "Reason", "Values"].map((h) => el("th", {}, h)))),
    el("tbody", {}, records.map((rec) => el("tr", { "data-decision": rec.decision },
      el("td", {}, String(rec.seq)), el("td", {}, when(rec.at)), el("td", {}, el("code", {}, rec.decision)),
      el("td", {}, rec.node || ""), el("td", {}, rec.reason || ""),
      el("td", {}, rec.values && Object.keys(rec.values).length
        ? el("details", {}, el("summary", {}, "values"), json(rec.values)) : "")))));

  const stepRows = Object.entries(run.steps || {}).map(([id, s]) => el("tr", { "data-step": id },
    el("td", {}, id), el("td", {}, badge(s.status)), el("td", {}, String(s.attempts)),
    el("td", {}, s.error ? s.error.kind + ": " + s.error.message : ""),
    el("td", {}, s.output !== null && s.output !== undefined ? el("details", {}, el("summary", {}, "output"), json(s.output)) : "")));

  main.replaceChildren(
    el("h1", {}, "Run ", el("code", {}, runId), " ", el("span", { id: "run-status" }, badge(run.status, run.paused))),
    el("p", { class: "muted" }, (run.workflow ? "workflow " + run.workflow + " · " : "") +
      (run.paused ? "paused by " + run.paused.by + (run.paused.reason ? ": " + run.paused.reason : "") : "")),
    actions,
    el("div", { class: "card" }, el("h2", {}, "Steps"), dag(graph, run.steps || {})),
    el("div", { class: "grid" },
      el("div", { class: "card" }, el("h2", {}, "Timeline"), timeline(records, run)),
      el("div", { class: "card" }, el("h2", {}, "Audit"), verifyBox,
        run.status === "succeeded" ? [el("h2", {}, "Output"), json(run.output)] : null,
        run.error ? [el("h2", {}, "Error"), json(run.error)] : null)),
    el("div", { class: "card" }, el("h2", {}, "Step results"), el("table", { id: "steps" },
      el("thead", {}, el("tr", {}, ["Step", "Status", "Attempts", "Error", "Output"].map((h) => el("th", {}, h)))),
      el("tbody", {}, stepRows))),
    el("div", { class: "card" }, el("h2", {}, "Decisions and their reasons"), decisions));
  if (!ended || Date.now() - lastAction < 15000) {
    refresh = setInterval(() => { if (document.activeElement === document.body) route(); }, 1500);
  }
}

// ---- Task inbox -------------------------------------------------------------------------------

function formFields(schema) {
  const props = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  return Object.entries(props).map(([name, p]) => {
    const type = p.type === "number" || p.type === "integer" ? "number" : p.type === "boolean" ? "checkbox" : "text";
    const input = p.enum
      ? el("select", { name, "data-type": p.type || "string" }, p.enum.map((v) => el("option", { value: v }, String(v))))
      : el("input", { name, type, required: required.has(name) && type !== "checkbox", "data-type": p.type || "string" });
    return el("label", {}, name + (required.has(name) ? " *" : "") + (p.description ? " — " + p.description : ""), input);
  });
}

function formData(form) {
  const data = {};
  for (const input of form.querySelectorAll("[data-type]")) {
    const t = input.getAttribute("data-type");
    if (t === "boolean") data[input.name] = input.checked;
    else if (input.value === "") continue;
    else data[input.name] = t === "number" || t === "integer" ? Number(input.value) : input.value;
  }
  return data;
}

async function tasksPage() {
  const page = await api("GET", "/api/tasks");
  const tasks = page.tasks;
  const items = tasks.map((t) => {
    const comment = el("input", { name: "comment", placeholder: "comment (optional)" });
    const form = el("form", {}, formFields(t.form), el("label", {}, "Comment", comment));
    const answer = async (decision) => {
      if (decision === "approve" && !form.reportValidity()) return;
      const body = decision === "approve" ? { data: formData(form) } : {};
      if (comment.value) body.comment = comment.value;
      try {
        await api("POST", "/api/tasks/" + encodeURIComponent(t.id) + "/" + decision, body);
        toast(decision + "d task " + t.id);
        route();
      } catch (e) {
        toast(e.message, true);
      }
    };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); answer("approve"); });
    return el("div", { class: "task", "data-task-id": t.id },
      el("h2", {}, t.step + " ", el("span", { class: "muted" }, "queue " + t.queue + " · run "),
        el("a", { href: "#/runs/" + encodeURIComponent(t.run_id) }, el("code", {}, t.run_id))),
      el("p", {}, t.prompt),
      t.summary ? el("details", { open: true }, el("summary", {}, "Handover"), el("pre", { class: "handover" }, t.summary)) : null,
      form,
      el("div", { class: "actions" },
        el("button", { class: "primary approve", onclick: () => answer("approve") }, "Approve"),
        el("button", { class: "danger reject", onclick: () => answer("reject") }, "Reject")));
  });
  main.replaceChildren(el("h1", {}, "Tasks"), ...(items.length ? items : [el("p", { class: "muted", id: "no-tasks" }, "No open tasks.")]));
  refresh = setInterval(() => { if (!document.activeElement || document.activeElement === document.body) route(); }, 3000);
}

// ---- Routing ----------------------------------------------------------------------------------

async function route() {
  clearInterval(refresh);
  const hash = location.hash || "#/runs";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", hash.startsWith(a.getAttribute("href")));
  try {
    if (path.startsWith("/runs/")) await runPage(decodeURIComponent(path.slice(6)));
    else if (path === "/tasks") await tasksPage();
    else await runsPage(params);
  } catch (e) {
    showError(e);
  }
}

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  localStorage.setItem("baton-token", document.getElementById("token").value);
  document.getElementById("token").value = "";
  route();
});
window.addEventListener("hashchange", route);
route();
