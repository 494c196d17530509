// fedgate control panel: a small single-page app over the admin REST API (/api/v1).
// No build step and no framework: the server embeds this file. Every text from the server is put in
// the page with textContent, never as HTML. Validation is the server's: the panel asks it (dry runs,
// /negotiation) as the admin types, so the texts are the CLI's.
"use strict";

const API = "/api/v1";
const state = { csrf: null, role: null, name: null, keepFlash: false };

// Navigate after an action, keeping its message on screen.
function go(hash) {
  state.keepFlash = true;
  if (location.hash === hash) route(); else location.hash = hash;
}

// ---------- DOM helpers ----------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const view = () => document.getElementById("view");
function show(...nodes) {
  const v = view();
  v.replaceChildren(...nodes);
  v.focus();
}
function flash(text, kind = "ok") {
  const f = document.getElementById("flash");
  f.replaceChildren(text ? h("p", { class: kind }, text) : "");
}

// ---------- API ----------
async function call(method, path, body, headers = {}) {
  const opts = { method, headers: { ...headers }, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  if (method !== "GET" && state.csrf) opts.headers["X-CSRF-Token"] = state.csrf;
  const res = await fetch(API + path, opts);
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: { message: text } }; }
  }
  if (res.status === 401 && !path.startsWith("/session")) {
    state.csrf = null;
    renderLogin("Your session ended; sign in again.");
    throw new Error("unauthenticated");
  }
  return { status: res.status, ok: res.ok, data, etag: res.headers.get("ETag") };
}
function errorOf(r) {
  const e = (r.data && (r.data.error || r.data.Error)) || {};
  return { parameter: e.parameter || e.Parameter || null, message: e.message || e.Message || `HTTP ${r.status}` };
}
const canWrite = () => state.role === "admin";

// ---------- login ----------
function renderLogin(message) {
  document.getElementById("nav").hidden = true;
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "current-password", required: true });
  const err = h("p", { id: "login-error", class: "field-error", role: "alert" }, message || "");
  const form = h("form", { class: "login", onsubmit: async (ev) => {
    ev.preventDefault();
    const r = await call("POST", "/session", { Token: input.value });
    if (!r.ok) { err.textContent = errorOf(r).message; input.setAttribute("aria-invalid", "true"); input.focus(); return; }
    input.value = "";
    startSession(r.data);
    location.hash = "#/partners";
    route();
  } },
    h("h2", {}, "Sign in"),
    h("label", { for: "token" }, "API token"),
    h("span", { class: "hint" }, "Create one with: fedgate token create --name <you> --role admin"),
    input, err,
    h("button", { type: "submit" }, "Sign in"));
  show(form);
  input.focus();
}
function startSession(s) {
  state.csrf = s.CsrfToken;
  state.role = s.Role;
  state.name = s.Name;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").textContent = `${s.Name} (${s.Role})`;
}

// ---------- partner fields ----------
// The partner form's fields, in order: name, label, hint, input type (bool, list, number, select
// with its options, text), the default a new partner has (def), the range (min, max) and whether
// an empty input clears the field (clear). The server fills them in from its field table
// (fedgate_manage::fields) as it serves this file.
const PARTNER_FIELDS = [] /* partner form, from the field table */;

function fieldInput(f, value) {
  const id = `f-${f.name}`;
  const common = { id, name: f.name, "aria-describedby": `${id}-hint ${id}-error` };
  if (f.type === "select") {
    return h("select", common, f.options.map((o) => h("option", { value: o, selected: o === (value ?? f.def) }, o)));
  }
  if (f.type === "bool") return h("input", { ...common, type: "checkbox", checked: value ?? f.def });
  if (f.type === "list") return h("textarea", { ...common, rows: 3 }, (value || []).join("\n"));
  if (f.type === "number") return h("input", { ...common, type: "number", min: f.min, max: f.max, value: value ?? "" });
  return h("input", { ...common, type: "text", value: value ?? "" });
}

function readField(form, f) {
  const el = form.elements[f.name];
  if (f.type === "bool") return el.checked;
  if (f.type === "list") return el.value.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
  if (f.type === "number") return el.value.trim() === "" ? null : Number(el.value);
  if (f.clear) return el.value.trim() === "" ? null : el.value.trim();
  return el.value;
}

function fieldRow(f, value) {
  const id = `f-${f.name}`;
  return [
    h("div", { class: "label" }, h("label", { for: id }, f.label), h("span", { class: "hint", id: `${id}-hint` }, f.hint || "")),
    h("div", {}, fieldInput(f, value), h("p", { class: "field-error", id: `${id}-error` })),
  ];
}

function clearErrors(form) {
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  form.querySelector(".form-error").replaceChildren();
}
function showError(form, err) {
  const target = err.parameter && form.querySelector(`#f-${err.parameter}`);
  if (target) {
    target.setAttribute("aria-invalid", "true");
    form.querySelector(`#f-${err.parameter}-error`).textContent = err.message;
  } else {
    form.querySelector(".form-error").replaceChildren(h("p", { class: "error", role: "alert" }, err.message));
  }
}

// The TLS × SASL × Dialback panel: warnings and expected methods for the chosen values.
async function updateNegotiation(form, box) {
  const q = new URLSearchParams({
    TlsNegotiation: form.elements.TlsNegotiation.value,
    SaslNegotiation: form.elements.SaslNegotiation.value,
    SupportDialbackNegotiation: String(form.elements.SupportDialbackNegotiation.checked),
  });
  const r = await call("GET", `/negotiation?${q}`);
  if (!r.ok) return;
  const n = r.data;
  // (replaceChildren would show a null as the text "null".)
  box.replaceChildren(...[
    h("h3", { id: "negotiation-title" }, "Authentication with this partner"),
    n.Valid ? null : h("p", { class: "error", id: "negotiation-error" }, n.Error),
    ...(n.Warnings || []).map((w) => h("p", { class: "warning" }, w)),
    n.Valid ? h("p", {}, "Expected methods, strongest first:") : null,
    n.Valid ? h("ul", { class: "methods" }, n.Methods.map((m) => h("li", {}, m))) : null,
  ].filter(Boolean));
  form.querySelector("button[type=submit]").disabled = !n.Valid || !canWrite();
}

function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

// ---------- partners ----------
let partnerSort = { key: "Identity", dir: 1 };

async function renderPartners() {
  const search = h("input", { type: "search", id: "search", "aria-controls": "partners", placeholder: "contoso" });
  const tbody = h("tbody");
  const table = h("table", { id: "partners", class: "cards" });
  const status = h("p", { role: "status", "aria-live": "polite", id: "partners-status" });
  let items = [];
  const columns = [["Identity", "Domain"], ["AdditionalDomains", "Additional domains"], ["PartnerType", "Type"], ["TlsNegotiation", "TLS"], ["SaslNegotiation", "SASL"], ["SupportDialbackNegotiation", "Dialback"]];
  let health = new Map();
  function sortButton(key, label) {
    const active = partnerSort.key === key;
    return h("th", { scope: "col", "aria-sort": active ? (partnerSort.dir > 0 ? "ascending" : "descending") : "none" },
      h("button", { type: "button", onclick: () => { partnerSort = { key, dir: active ? -partnerSort.dir : 1 }; draw(); } }, label));
  }
  function draw() {
    const q = search.value.trim().toLowerCase();
    const rows = items
      .filter((p) => !q || p.Identity.includes(q) || p.AdditionalDomains.some((d) => d.includes(q)))
      .sort((a, b) => String(a[partnerSort.key]).localeCompare(String(b[partnerSort.key])) * partnerSort.dir);
    table.replaceChildren(h("caption", { class: "hint" }, "XMPP federated partners"),
      h("thead", {}, h("tr", {}, columns.map(([k, l]) => sortButton(k, l)), h("th", { scope: "col" }, "Traffic, last hour"))), tbody);
    tbody.replaceChildren(...rows.map((p) => {
      const rowsOf = health.get(p.Identity) || [];
      const problems = healthProblems(rowsOf);
      const traffic = rowsOf.length ? rowsOf[0].Traffic : null;
      return h("tr", { class: problems.length ? "unhealthy" : null, dataset: { partner: p.Identity } },
      h("td", { "data-label": "Domain" }, h("a", { href: `#/partners/${encodeURIComponent(p.Identity)}` }, p.Identity), problems.length ? [" ", healthMark(problems)] : null),
      h("td", { "data-label": "Additional domains" }, p.AdditionalDomains.join(", ")),
      h("td", { "data-label": "Type" }, p.PartnerType),
      h("td", { "data-label": "TLS" }, p.TlsNegotiation),
      h("td", { "data-label": "SASL" }, p.SaslNegotiation),
      h("td", { "data-label": "Dialback" }, p.SupportDialbackNegotiation ? "On" : "Off"),
      h("td", { "data-label": "Traffic, last hour" }, traffic ? sparkline(traffic) : "-"));
    }));
    status.textContent = `${rows.length} of ${items.length} partners`;
  }
  search.addEventListener("input", draw);
  show(h("h2", {}, "XMPP federated partners"),
    h("div", { class: "toolbar" },
      h("label", { for: "search" }, "Search", search),
      canWrite() ? h("a", { class: "button", href: "#/partners/new" }, "New") : null),
    status, table);
  items = [];
  for (let offset = 0; ; ) {
    const r = await call("GET", `/partners?offset=${offset}&limit=500`);
    if (!r.ok) { flash(errorOf(r).message, "error"); break; }
    items.push(...r.data.Items);
    offset += r.data.Items.length;
    if (r.data.Items.length === 0 || offset >= r.data.Total) break;
  }
  // Health and traffic of every partner, as the gateway recorded them (one row per direction).
  const hr = await call("GET", "/partner-health");
  health = new Map();
  for (const row of hr.ok && Array.isArray(hr.data) ? hr.data : []) {
    if (!health.has(row.Partner)) health.set(row.Partner, []);
    health.get(row.Partner).push(row);
  }
  draw();
}

async function renderPartnerForm(identity) {
  const isNew = identity === null;
  let current = {};
  let etag = null;
  if (!isNew) {
    const r = await call("GET", `/partners/${encodeURIComponent(identity)}`);
    if (!r.ok) { flash(errorOf(r).message, "error"); go("#/partners"); return; }
    current = r.data;
    etag = r.etag;
  }
  const negotiation = h("section", { class: "negotiation", "aria-live": "polite", id: "negotiation", "aria-labelledby": "negotiation-title" });
  const formError = h("div", { class: "form-error" });
  const form = h("form", { class: "record", novalidate: true },
    isNew ? fieldRow({ name: "Identity", label: "Domain", type: "text", hint: "The partner's primary domain, e.g. contoso.com." }, "") : null,
    PARTNER_FIELDS.map((f) => fieldRow(f, current[f.name])),
    h("div", { class: "actions" }, negotiation),
    h("div", { class: "actions" }, formError),
    h("div", { class: "actions" },
      h("button", { type: "submit", disabled: !canWrite() }, isNew ? "Create" : "Save"),
      !isNew && canWrite() ? h("button", { type: "button", class: "danger", onclick: () => removePartner(identity, etag) }, "Delete") : null,
      !isNew && canWrite() ? h("button", { type: "button", class: "secondary", onclick: (ev) => testPartner(identity, ev.currentTarget, testResult) }, "Test") : null,
      h("a", { class: "button secondary", href: "#/partners" }, "Cancel")));
  const testResult = h("section", { class: "partner-test", id: "partner-test", "aria-live": "polite" });

  function body() {
    const b = {};
    if (isNew) b.Identity = form.elements.Identity.value.trim();
    for (const f of PARTNER_FIELDS) b[f.name] = readField(form, f);
    return b;
  }
  async function submit(whatIf) {
    const path = isNew ? "/partners" : `/partners/${encodeURIComponent(identity)}`;
    const q = whatIf ? "?whatIf=true" : "";
    const headers = isNew ? {} : { "If-Match": etag };
    return call(isNew ? "POST" : "PATCH", path + q, body(), headers);
  }
  // Inline validation: a dry run as the admin types.
  const validate = debounce(async () => {
    if (!canWrite() || (isNew && !form.elements.Identity.value.trim())) return;
    const r = await submit(true);
    clearErrors(form);
    if (!r.ok && r.status !== 412) showError(form, errorOf(r));
  }, 350);
  form.addEventListener("input", validate);
  form.addEventListener("change", (ev) => {
    if (["TlsNegotiation", "SaslNegotiation", "SupportDialbackNegotiation"].includes(ev.target.name)) updateNegotiation(form, negotiation);
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await submit(false);
    clearErrors(form);
    if (r.status === 412) { showError(form, { message: "Someone else changed this partner since you opened it. Reload to see their change." }); return; }
    if (!r.ok) { showError(form, errorOf(r)); return; }
    const warnings = (r.data.Warnings || []).join(" ");
    flash(`${isNew ? "Created" : "Saved"} ${r.data.Value.Identity}.${warnings ? " Warning: " + warnings : ""}`, warnings ? "warning" : "ok");
    go("#/partners");
  });
  const health = isNew ? null : h("section", { class: "partner-health", id: "partner-health", "aria-labelledby": "health-title" });
  show(...[h("h2", {}, isNew ? "New XMPP federated partner" : `Partner ${identity}`), form, isNew ? null : testResult, health].filter(Boolean));
  if (health) renderHealth(identity, health);
  updateNegotiation(form, negotiation);
}

// Partner health as the gateway recorded it: per direction, the last success and failure,
// streams and failures in the last hour and day, the certificate's not-after.
async function renderHealth(identity, box) {
  const r = await call("GET", `/partner-health?partner=${encodeURIComponent(identity)}`);
  if (!r.ok) return;
  const when = utc;
  const rows = r.data.map((x) => h("tr", {},
    h("td", { "data-label": "Direction" }, x.Direction),
    h("td", { "data-label": "Last success" }, x.LastSuccess ? `${when(x.LastSuccess.At)} ${x.LastSuccess.Method}${x.LastSuccess.TlsVersion ? " " + x.LastSuccess.TlsVersion : ""}` : "never"),
    h("td", { "data-label": "Last failure" }, x.LastFailure ? `${when(x.LastFailure.At)} ${x.LastFailure.Step}: ${x.LastFailure.Reason}` : "none"),
    h("td", { "data-label": "Streams 1h/24h" }, `${x.StreamsLastHour}/${x.StreamsLastDay}`),
    h("td", { "data-label": "Failures 1h/24h" }, `${x.FailuresLastHour}/${x.FailuresLastDay}`),
    h("td", { "data-label": "Refusals 1h/24h" }, `${x.RefusalsLastHour}/${x.RefusalsLastDay}`),
    h("td", { "data-label": "Certificate not after" }, x.CertificateNotAfter ? when(x.CertificateNotAfter) : "-")));
  const problems = healthProblems(r.data);
  const traffic = r.data.length ? r.data[0].Traffic : null;
  box.replaceChildren(...[
    h("h3", { id: "health-title" }, "Health"),
    ...problems.map((p) => h("p", { class: "warning health-problem" }, h("span", { class: "health-mark", "aria-hidden": "true" }, "⚠"), " ", p)),
    rows.length ? h("table", { class: "cards health" },
      h("thead", {}, h("tr", {}, ["Direction", "Last success", "Last failure", "Streams 1h/24h", "Failures 1h/24h", "Refusals 1h/24h", "Certificate not after"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows)) : h("p", {}, "No stream with this partner yet."),
    traffic ? h("figure", { class: "chart", id: "traffic-chart" },
      h("figcaption", {}, "Traffic, last hour (stanzas per minute)"), trafficChart(traffic)) : null,
    traffic ? h("figure", { class: "chart", id: "refusals-chart" },
      h("figcaption", {}, "Refusals by reason, last hour"), refusalsChart(traffic)) : null,
  ].filter(Boolean));
}

// ---------- partner health marks and charts ----------
// Drawn here as inline SVG (no library). Texts from the network (reasons, partner names) only
// ever go in text nodes and attributes.
const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const CERT_WARNING_DAYS = 14;
const utc = (t) => new Date(t * 1000).toISOString().replace(".000Z", "Z");
const day = (t) => new Date(t * 1000).toISOString().slice(0, 10);
// What is wrong with a partner, from its health rows: a direction whose last stream failed (after
// its last success), a certificate that expires within CERT_WARNING_DAYS days or has expired.
function healthProblems(rows, now = Date.now() / 1000) {
  const out = [];
  for (const x of rows) {
    const f = x.LastFailure;
    if (f && (!x.LastSuccess || f.At >= x.LastSuccess.At)) out.push(`last ${x.Direction} stream failed: ${f.Step}: ${f.Reason} (${utc(f.At)})`);
  }
  const notAfter = rows.map((x) => x.CertificateNotAfter).filter((t) => typeof t === "number");
  if (notAfter.length) {
    const t = Math.min(...notAfter);
    if (t < now) out.push(`certificate expired ${day(t)}`);
    else if (t < now + CERT_WARNING_DAYS * 86400) out.push(`certificate expires ${day(t)}`);
  }
  return out;
}
function healthMark(problems) {
  const text = problems.join("; ");
  return h("span", { class: "health-mark", role: "img", "aria-label": text, title: text }, "⚠");
}
const SERIES = [["Inbound", "in", "#0b5cad"], ["Outbound", "out", "#b35900"]];
const REASON_COLOURS = ["#b42318", "#8a5a00", "#6e40c9", "#116329", "#0b7285", "#c2255c", "#57606a", "#1b1f24"];
const sum = (a) => a.reduce((x, y) => x + y, 0);
// A polyline through one value per minute, in a box of width w and height ht (top at y0).
function line(values, w, ht, max, x0 = 0, y0 = 0) {
  const step = w / Math.max(values.length - 1, 1);
  return values.map((v, i) => `${(x0 + i * step).toFixed(1)},${(y0 + ht - (v / max) * ht).toFixed(1)}`).join(" ");
}
// The partners list's small chart: stanzas in and out per minute over the last hour.
function sparkline(t) {
  const [w, ht] = [120, 24];
  const max = Math.max(1, ...t.Inbound, ...t.Outbound);
  const label = `Traffic, last hour: ${sum(t.Inbound)} stanzas in, ${sum(t.Outbound)} out (at most ${max} a minute)`;
  return s("svg", { class: "sparkline", viewBox: `0 0 ${w} ${ht + 2}`, width: w, height: ht + 2, role: "img", "aria-label": label },
    s("title", {}, label),
    SERIES.map(([k, cls, colour]) => s("polyline", { class: `series-${cls}`, points: line(t[k], w, ht, max, 0, 1), fill: "none", stroke: colour, "stroke-width": 1.5 })));
}
// Axes of a per-minute chart: minutes ago along the bottom (minute m of 0..59, oldest first, at
// x(m)), stanzas/min up the left.
function axes(w, ht, left, top, max, yLabel, x = (m) => left + (m * w) / 59) {
  const ticks = [...new Set([0, Math.round(max / 2), max])];
  const y = (v) => top + ht - (v / max) * ht;
  return s("g", { class: "axes", "font-size": 11, fill: "#57606a" },
    s("line", { x1: left, y1: top + ht, x2: left + w, y2: top + ht, stroke: "#57606a" }),
    s("line", { x1: left, y1: top, x2: left, y2: top + ht, stroke: "#57606a" }),
    ticks.map((v) => s("g", { class: "y-tick" },
      s("line", { x1: left - 4, y1: y(v), x2: left + w, y2: y(v), stroke: "#d0d7de" }),
      s("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, v))),
    [59, 45, 30, 15, 0].map((ago) => s("text", { class: "x-tick", x: x(59 - ago), y: top + ht + 14, "text-anchor": "middle" }, ago)),
    s("text", { class: "x-label", x: left + w / 2, y: top + ht + 30, "text-anchor": "middle" }, "minutes ago"),
    s("text", { class: "y-label", x: -(top + ht / 2), y: 12, transform: "rotate(-90)", "text-anchor": "middle" }, yLabel));
}
function legend(entries) {
  return h("ul", { class: "legend" }, entries.map(([label, colour]) => h("li", {},
    s("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true" }, s("rect", { width: 12, height: 12, fill: colour })), " ", label)));
}
const [CW, CH, CL, CT] = [560, 160, 44, 8];
// The partner page's traffic chart: stanzas in and out per minute, with axes and a legend.
function trafficChart(t) {
  const max = Math.max(1, ...t.Inbound, ...t.Outbound);
  const label = `Stanzas per minute over the last hour: ${sum(t.Inbound)} in, ${sum(t.Outbound)} out, at most ${max} a minute`;
  return [
    s("svg", { class: "chart-svg traffic", viewBox: `0 0 ${CL + CW + 8} ${CT + CH + 36}`, role: "img", "aria-label": label },
      s("title", {}, label),
      axes(CW, CH, CL, CT, max, "stanzas/min"),
      SERIES.map(([k, cls, colour]) => s("polyline", { class: `series-${cls}`, points: line(t[k], CW, CH, max, CL, CT), fill: "none", stroke: colour, "stroke-width": 2 }))),
    legend(SERIES.map(([k, , colour]) => [`${k} (${sum(t[k])})`, colour])),
  ];
}
// Refusals per minute as bars stacked by reason, one bar per minute, with a legend.
function refusalsChart(t) {
  const reasons = Object.keys(t.Refusals || {}).sort();
  if (!reasons.length) return h("p", { class: "hint" }, "No refusals in the last hour.");
  const colour = (i) => REASON_COLOURS[i % REASON_COLOURS.length];
  const totals = t.Minutes.map((_, m) => sum(reasons.map((r) => t.Refusals[r][m] || 0)));
  const max = Math.max(1, ...totals);
  // One slot per minute, the bar in its middle.
  const step = CW / 60;
  const mid = (m) => CL + (m + 0.5) * step;
  const bw = Math.max(2, step * 0.7);
  const label = `Refusals per minute over the last hour, by reason: ${reasons.map((r) => `${r} ${sum(t.Refusals[r])}`).join(", ")}`;
  const bars = t.Minutes.map((_, m) => {
    let y = CT + CH;
    return s("g", { class: "bar", "data-minutes-ago": 59 - m }, reasons.map((r, i) => {
      const n = t.Refusals[r][m] || 0;
      if (!n) return null;
      const ht = (n / max) * CH;
      y -= ht;
      return s("rect", { x: (mid(m) - bw / 2).toFixed(1), y: y.toFixed(1), width: bw.toFixed(1), height: ht.toFixed(1), fill: colour(i) },
        s("title", {}, `${n} ${r}, ${59 - m} minutes ago`));
    }));
  });
  return [
    s("svg", { class: "chart-svg refusals", viewBox: `0 0 ${CL + CW + 8} ${CT + CH + 36}`, role: "img", "aria-label": label },
      s("title", {}, label), axes(CW, CH, CL, CT, max, "refusals/min", mid), bars),
    legend(reasons.map((r, i) => [`${r} (${sum(t.Refusals[r])})`, colour(i)])),
  ];
}

// A test's verdict as a CSS class.
const verdictClass = (v) => ({ Ok: "ok", Warning: "warning", Fail: "error" }[v] || "error");

// A test's steps (Test-CsXmppAllowedPartner, Test-CsXmppGatewayConfiguration) as a table.
function stepsTable(steps) {
  return h("table", { class: "cards steps" },
    h("thead", {}, h("tr", {}, ["Step", "Result", "Time", "Detail"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, steps.map((s) => h("tr", {},
      h("td", { "data-label": "Step" }, s.Step),
      h("td", { "data-label": "Result" }, s.Ok === true ? "ok" : s.Ok === false ? "failed" : "not run"),
      h("td", { "data-label": "Time" }, `${s.Ms} ms`),
      h("td", { "data-label": "Detail" }, s.Detail)))));
}

// The certificate a test saw (null: none), as a definition list.
function certificateList(cert, trustAnchor) {
  if (!cert) return null;
  return h("dl", { class: "certificate" },
    ["Subject", "Issuer", "NotAfter"].map((k) => [h("dt", {}, k), h("dd", {}, cert[k])]),
    h("dt", {}, "Names"), h("dd", {}, [...cert.DnsNames, ...cert.XmppAddrs].join(", ") || "none"),
    h("dt", {}, "Purposes"), h("dd", {}, cert.ExtendedKeyUsage.join(", ") || "none given"),
    h("dt", {}, "Trusted"), h("dd", {}, cert.Trusted ? (trustAnchor ? `yes (${trustAnchor})` : "yes") : "no"),
    h("dt", {}, "Valid for the domain"), h("dd", {}, cert.ValidForDomain ? "yes" : "no"));
}

const problemList = (problems) => problems.length ? h("ul", { class: "problems" }, problems.map((p) => h("li", {}, p))) : null;

// Test-CsXmppAllowedPartner from the gateway: each step, the certificate, the verdict.
async function testPartner(identity, button, out) {
  button.disabled = true;
  out.replaceChildren(h("p", {}, `Testing ${identity}… (each step is bounded; this can take up to a minute)`));
  let r;
  try {
    r = await call("POST", `/partners/${encodeURIComponent(identity)}/test`);
  } finally {
    button.disabled = false;
  }
  if (!r.ok) { out.replaceChildren(h("p", { class: "error" }, errorOf(r).message)); return; }
  const t = r.data;
  const outbound = t.Methods.Outbound || "none";
  const inbound = (t.Methods.Inbound || []).join(", ") || "none known";
  out.replaceChildren(...[
    h("h3", {}, "Test result"),
    h("p", { class: verdictClass(t.Verdict), id: "test-verdict" }, `Verdict: ${t.Verdict}. Outbound: ${outbound}. Inbound: ${inbound}. Tested as ${t.From}.`),
    problemList(t.Problems),
    stepsTable(t.Steps),
    certificateList(t.Certificate),
  ].filter(Boolean));
}

async function removePartner(identity, etag) {
  if (!window.confirm(`Delete the partner ${identity}? Streams with it close at once.`)) return;
  const r = await call("DELETE", `/partners/${encodeURIComponent(identity)}`, undefined, etag ? { "If-Match": etag } : {});
  if (!r.ok) { flash(errorOf(r).message, "error"); return; }
  flash(`Deleted ${identity}.`);
  go("#/partners");
}

// ---------- policies and grants ----------
// The policies' switches ({name, label}), the one fedgate acts on first: the server fills them in
// from its field table as it serves this file.
const POLICY_FLAGS = [] /* policy switches, from the field table */;

async function renderPolicies() {
  const [pr, gr] = await Promise.all([call("GET", "/policies"), call("GET", "/grants")]);
  const policies = pr.ok ? (pr.data.Items || pr.data) : [];
  const grants = gr.ok ? (gr.data.Items || gr.data) : [];
  const newForm = h("form", { class: "record", id: "new-policy" },
    h("div", { class: "label" }, h("label", { for: "p-identity" }, "Identity"), h("span", { class: "hint" }, "site:<name> or tag:<name>")),
    h("div", {}, h("input", { type: "text", id: "p-identity", name: "Identity", required: true }), h("p", { class: "field-error", id: "p-identity-error" })),
    h("div", { class: "label" }, h("label", { for: "p-xmpp" }, "XMPP federation")), h("div", {}, h("input", { type: "checkbox", id: "p-xmpp", name: "EnableXmppAccess" })),
    h("div", { class: "actions" }, h("div", { class: "form-error" })),
    h("div", { class: "actions" }, h("button", { type: "submit", disabled: !canWrite() }, "Create policy")));
  newForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await call("POST", "/policies", { Identity: newForm.elements.Identity.value.trim(), EnableXmppAccess: newForm.elements.EnableXmppAccess.checked });
    if (!r.ok) { newForm.querySelector(".form-error").replaceChildren(h("p", { class: "error", role: "alert" }, errorOf(r).message)); return; }
    flash(`Created ${r.data.Value.Identity}.`);
    renderPolicies();
  });
  const grantForm = h("form", { class: "record", id: "grant" },
    h("div", { class: "label" }, h("label", { for: "g-user" }, "User"), h("span", { class: "hint" }, "alice@corp.example")),
    h("div", {}, h("input", { type: "text", id: "g-user", name: "User", required: true })),
    h("div", { class: "label" }, h("label", { for: "g-policy" }, "Policy"), h("span", { class: "hint" }, "A tag: policy; empty removes the grant")),
    h("div", {}, h("input", { type: "text", id: "g-policy", name: "PolicyName" })),
    h("div", { class: "actions" }, h("div", { class: "form-error" })),
    h("div", { class: "actions" }, h("button", { type: "submit", disabled: !canWrite() }, "Grant")));
  grantForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = grantForm.elements.PolicyName.value.trim();
    const r = await call("PUT", `/grants/${encodeURIComponent(grantForm.elements.User.value.trim())}`, { PolicyName: name || null });
    if (!r.ok) { grantForm.querySelector(".form-error").replaceChildren(h("p", { class: "error", role: "alert" }, errorOf(r).message)); return; }
    flash("Grant saved.");
    renderPolicies();
  });
  const rows = policies.map((p) => {
    const id = p.Identity;
    const boxes = POLICY_FLAGS.map(({ name: k, label }) => h("label", {}, h("input", { type: "checkbox", name: k, checked: p[k], disabled: !canWrite(),
      onchange: async (ev) => {
        const cur = await call("GET", `/policies/${encodeURIComponent(id)}`);
        const r = await call("PATCH", `/policies/${encodeURIComponent(id)}`, { [k]: ev.target.checked }, { "If-Match": cur.etag || "*" });
        flash(r.ok ? `${id}: ${label} ${ev.target.checked ? "on" : "off"}.` : errorOf(r).message, r.ok ? "ok" : "error");
      } }), " ", label));
    return h("tr", {},
      h("td", { "data-label": "Identity" }, id),
      h("td", { "data-label": "Settings" }, boxes),
      h("td", { "data-label": "" }, canWrite() ? h("button", { type: "button", class: "secondary", "aria-label": `Remove ${id}`, onclick: async () => {
        if (!window.confirm(id === "Global" ? "Reset the Global policy to its defaults?" : `Remove ${id}?`)) return;
        const r = await call("DELETE", `/policies/${encodeURIComponent(id)}?force=true`);
        flash(r.ok ? `Removed ${id}.` : errorOf(r).message, r.ok ? "ok" : "error");
        renderPolicies();
      } }, id === "Global" ? "Reset" : "Remove") : null));
  });
  show(h("h2", {}, "External access policies"),
    h("p", { class: "hint" }, "Which policy applies to a user: their tag: grant, else their site's policy, else Global."),
    h("table", { class: "cards" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Identity"), h("th", { scope: "col" }, "Settings"), h("th", { scope: "col" }, "Actions"))), h("tbody", {}, rows)),
    h("h3", {}, "New policy"), newForm,
    h("h3", {}, "Per-user grants"),
    h("table", { class: "cards" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "User"), h("th", { scope: "col" }, "Policy"))),
      h("tbody", {}, grants.map((g) => h("tr", {}, h("td", { "data-label": "User" }, g.Identity), h("td", { "data-label": "Policy" }, g.ExternalAccessPolicy))))),
    grantForm);
}

// ---------- gateway settings ----------
// Get-CsXmppGatewayConfiguration (read-only here; Set-CsXmppGatewayConfiguration from the CLI or
// the REST API), and Test-CsXmppGatewayConfiguration for admins.
async function renderGateway() {
  const r = await call("GET", "/gateway-configuration");
  const settings = r.ok ? r.data : {};
  const testResult = h("section", { class: "gateway-test", id: "gateway-test", "aria-live": "polite" });
  show(...[
    h("h2", {}, "Gateway settings"),
    r.ok ? h("dl", { class: "settings" }, Object.entries(settings).map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v ?? ""))])) : h("p", { class: "error" }, errorOf(r).message),
    canWrite() ? h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", id: "gateway-test-button", onclick: (ev) => testGateway(ev.currentTarget, testResult) }, "Test"),
      h("span", { class: "hint" }, " Each hosted domain as partners see it: DNS, listeners, TLS and certificate.")) : null,
    testResult,
  ].filter(Boolean));
}

// Test-CsXmppGatewayConfiguration in the gateway: per hosted domain the steps, the certificate
// and the verdict, then the overall verdict.
async function testGateway(button, out) {
  button.disabled = true;
  out.replaceChildren(h("p", {}, "Testing the hosted domains… (each step is bounded; this can take up to a minute)"));
  let r;
  try {
    r = await call("POST", "/gateway-configuration/test");
  } finally {
    button.disabled = false;
  }
  if (!r.ok) { out.replaceChildren(h("p", { class: "error" }, errorOf(r).message)); return; }
  const t = r.data;
  out.replaceChildren(
    h("h3", {}, "Test result"),
    h("p", { class: verdictClass(t.Verdict), id: "gateway-test-verdict" }, `Verdict: ${t.Verdict}. Listeners: ${t.Listeners.join(", ") || "none"}.`),
    ...t.Domains.map((d) => h("section", { class: "gateway-test-domain" }, ...[
      h("h4", {}, d.Domain),
      h("p", { class: verdictClass(d.Verdict) }, `Verdict: ${d.Verdict}.`),
      problemList(d.Problems),
      stepsTable(d.Steps),
      certificateList(d.Certificate, d.TrustAnchor),
    ].filter(Boolean))));
}

// ---------- audit and streams ----------
async function renderAudit() {
  const r = await call("GET", "/audit?limit=200");
  const entries = r.ok ? (r.data.Items || r.data) : [];
  show(h("h2", {}, "Audit log"),
    h("table", { class: "cards" },
      h("thead", {}, h("tr", {}, ["Time", "Who", "Command", "Record", "Change"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, entries.slice().reverse().map((e) => h("tr", {},
        h("td", { "data-label": "Time" }, e.Time), h("td", { "data-label": "Who" }, e.Actor),
        h("td", { "data-label": "Command" }, e.Command), h("td", { "data-label": "Record" }, e.Target),
        h("td", { "data-label": "Change" }, h("details", {}, h("summary", {}, "Before / after"),
          h("pre", {}, `Before: ${JSON.stringify(e.Before, null, 2)}\nAfter: ${JSON.stringify(e.After, null, 2)}`))))))));
}

let streamsTimer = null;
async function renderStreams() {
  const table = h("table", { class: "cards", id: "streams" });
  const status = h("p", { role: "status", "aria-live": "polite" });
  async function load() {
    if (!location.hash.startsWith("#/streams")) { clearInterval(streamsTimer); return; }
    const r = await call("GET", "/streams");
    const streams = r.ok ? (r.data.Items || r.data) : [];
    const keys = streams.length ? Object.keys(streams[0]) : ["Partner", "Direction", "AuthMethod", "TlsVersion", "Since", "BytesIn", "BytesOut"];
    table.replaceChildren(h("thead", {}, h("tr", {}, keys.map((k) => h("th", { scope: "col" }, k)))),
      h("tbody", {}, streams.map((s) => h("tr", {}, keys.map((k) => h("td", { "data-label": k }, String(s[k] ?? "")))))));
    status.textContent = `${streams.length} live streams (refreshed every 5 s)`;
    await loadCluster();
  }
  // The nodes of the pool sharing the store (GET /cluster/nodes), from their heartbeats.
  const cluster = h("table", { class: "cards", id: "cluster" });
  async function loadCluster() {
    const r = await call("GET", "/cluster/nodes");
    const nodes = r.ok ? r.data : [];
    const cols = [["Node", (n) => n.Node], ["State", (n) => (n.Alive ? "alive" : "dead")],
      ["Last heartbeat", (n) => `${n.SecondsSinceHeartbeat.toFixed(1)} s ago`], ["Started", (n) => n.StartedAt],
      ["Version", (n) => n.Version], ["Address", (n) => n.Address ?? ""], ["Streams in", (n) => n.InboundStreams],
      ["Streams out", (n) => n.OutboundStreams], ["Leases", (n) => n.Leases]];
    cluster.replaceChildren(h("thead", {}, h("tr", {}, cols.map(([c]) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, nodes.map((n) => h("tr", {}, cols.map(([c, f]) => h("td", { "data-label": c }, String(f(n))))))));
  }
  show(h("h2", {}, "Live streams"), status, table, h("h2", {}, "Cluster"), cluster);
  clearInterval(streamsTimer);
  streamsTimer = setInterval(load, 5000);
  await load();
}

// ---------- routing ----------
async function route() {
  if (!state.csrf) return;
  const hash = location.hash || "#/partners";
  for (const a of document.querySelectorAll("nav a")) {
    if (hash.startsWith(a.getAttribute("href"))) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  try {
    if (hash === "#/partners/new") return await renderPartnerForm(null);
    if (hash.startsWith("#/partners/")) return await renderPartnerForm(decodeURIComponent(hash.slice("#/partners/".length)));
    if (hash.startsWith("#/policies")) return await renderPolicies();
    if (hash.startsWith("#/gateway")) return await renderGateway();
    if (hash.startsWith("#/audit")) return await renderAudit();
    if (hash.startsWith("#/streams")) return await renderStreams();
    return await renderPartners();
  } catch (e) {
    if (e.message !== "unauthenticated") flash(String(e), "error");
  }
}

window.addEventListener("hashchange", () => {
  if (!state.keepFlash) flash("");
  state.keepFlash = false;
  route();
});
window.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("logout").addEventListener("click", async () => {
    await call("DELETE", "/session");
    state.csrf = null;
    renderLogin("Signed out.");
  });
  const r = await call("GET", "/session");
  if (r.ok) { startSession(r.data); route(); } else renderLogin();
});
