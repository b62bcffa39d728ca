// Tandem console: a small single-page app over /api/v1 (no build step). Every
// element is built with textContent, never innerHTML, so data cannot inject markup.
"use strict";

const API = "/api/v1";
let me = null;          // { username, role, tenant, csrf_token }
let feed = null;        // the EventSource of the alert page
const main = () => document.getElementById("main");
// The pages of the nav bar (ids nav-<page>, routes #/<page>).
const NAV = ["feed", "fleet", "silences", "rules", "enroll", "users", "audit"];

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) { super(body.message || ("HTTP " + status)); this.status = status; this.code = body.code; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && me && me.csrf_token) headers["X-CSRF-Token"] = me.csrf_token;
  const r = await fetch(API + path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({ code: "bad_answer", message: "HTTP " + r.status }));
  if (!r.ok) {
    if (r.status === 401 && path !== "/auth/login") { me = null; showLogin(data.message); }
    throw new ApiError(r.status, data);
  }
  return data;
}

function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
const agoMs = ms => ago(new Date(ms).toISOString());
function bytes(n) {
  const u = ["B", "KB", "MB", "GB", "TB", "PB"]; let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)) + " " + u[i];
}
function meter(pct, what) {
  if (pct == null) return "?";
  const p = Math.round(pct);
  return h("span", { class: "meter" + (p >= 90 ? " bad" : p >= 80 ? " warn" : "") },
    h("span", { class: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(p), "aria-label": what + " used" },
      h("span", { style: "width:" + Math.min(100, Math.max(0, p)) + "%" })), p + " %");
}
function say(text) { document.getElementById("live").textContent = text; }

function stopFeed() { if (feed) { feed.close(); feed = null; } }

function setView(title, ...content) {
  const m = main();
  m.replaceChildren(h("h1", {}, title), ...content);
  document.title = title + " · Tandem";
  for (const id of NAV) {
    const a = document.getElementById("nav-" + id);
    if (!a) continue;
    if (location.hash.startsWith("#/" + id)) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
}

// ------------------------------------------------------------------ login

function showLogin(message) {
  stopFeed();
  document.getElementById("top").hidden = true;
  const err = h("p", { class: "err", id: "login-error", role: "alert" }, message || "");
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true, autofocus: true });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "card login", "aria-labelledby": "login-title", onsubmit: async ev => {
    ev.preventDefault();
    err.textContent = "";
    try {
      me = await api("POST", "/auth/login", { username: user.value, password: pass.value });
      pass.value = "";
      start();
    } catch (e) { err.textContent = e.message; pass.select(); }
  } },
    h("h1", { id: "login-title" }, "Tandem console"),
    h("label", { for: "username" }, "User name"), user,
    h("label", { for: "password" }, "Password"), pass,
    err,
    h("button", { type: "submit", id: "login-submit" }, "Log in"));
  main().replaceChildren(form);
  document.title = "Log in · Tandem";
  user.focus();
}

// ------------------------------------------------------------------ alert feed

function alertItem(i, fresh) {
  const li = h("li", { class: "alert " + i.severity + (fresh ? " fresh" : ""), id: "alert-" + i.id, "data-state": i.state });
  const host = i.hostname || i.device_id || "(tenant)";
  const acked = i.acked_by ? [" · acknowledged by ", i.acked_by, i.ack_note ? " “" + i.ack_note + "”" : ""] : [];
  const actions = h("div", { class: "actions" });
  const may = me.role !== "tenant-viewer";
  if (may && i.state === "open") {
    actions.append(h("button", { type: "button", class: "ack", "aria-label": "Acknowledge " + i.rule + " on " + host,
      onclick: () => ackForm(li, i, host) }, "Acknowledge"));
  } else if (may && (i.state === "acked" || i.state === "snoozed")) {
    actions.append(h("button", { type: "button", class: "secondary unack", "aria-label": "Take back acknowledgement of " + i.rule + " on " + host,
      onclick: async () => { try { await api("POST", "/alerts/" + i.id + "/unack", {}); } catch (e) { say(e.message); } } }, "Unacknowledge"));
  }
  if (may && i.state !== "resolved") {
    actions.append(h("button", { type: "button", class: "secondary snooze", "aria-label": "Snooze " + i.rule + " on " + host,
      onclick: () => snoozeForm(li, i, host) }, "Snooze"),
      h("button", { type: "button", class: "secondary silence", "aria-label": "Silence " + i.rule + " on " + host,
        onclick: () => silenceForm(li, i, host) }, "Silence"));
  }
  li.append(
    h("span", { class: "sev " + i.severity }, i.severity),
    h("div", { class: "what" },
      h("b", {}, i.rule), " on ", h("a", { href: i.device_id ? "#/device/" + encodeURIComponent(i.device_id) : "#/feed" }, host),
      h("div", { class: "meta" }, i.tenant, i.site ? " / " + i.site : "", " · value ", String(Math.round(i.value * 100) / 100),
        " · opened ", ago(i.opened_at), ...acked,
        i.state === "snoozed" && i.snoozed_until ? " · snoozed until " + when(i.snoozed_until) : ""),
      h("span", { class: "state " + i.state }, i.state)),
    actions);
  return li;
}

function ackForm(li, i, host) {
  li.querySelector(".ackform")?.remove();
  const note = h("input", { id: "note-" + i.id, name: "note", maxlength: "500", placeholder: "What are you doing about it? (optional)" });
  const form = h("form", { class: "ackform", onsubmit: async ev => {
    ev.preventDefault();
    try { await api("POST", "/alerts/" + i.id + "/ack", { note: note.value }); }
    catch (e) { say(e.message); form.append(h("span", { class: "err" }, e.message)); }
  } },
    h("label", { for: "note-" + i.id, class: "sr-only" }, "Note for " + i.rule + " on " + host), note,
    h("button", { type: "submit", class: "confirm-ack" }, "Acknowledge"));
  li.append(form);
  note.focus();
}

// Durations offered for a snooze or a silence (minutes).
const DURATIONS = [["30", "30 minutes"], ["60", "1 hour"], ["240", "4 hours"], ["480", "8 hours"], ["1440", "1 day"], ["10080", "7 days"]];
function when(iso) { const d = new Date(iso); return d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" }); }
function durationSelect(id) {
  return h("select", { id, name: "minutes" }, DURATIONS.map(([v, t]) => h("option", { value: v, selected: v === "60" }, t)));
}

// One inline form per alert at a time (ack, snooze or silence).
function inlineForm(li, cls, build) {
  li.querySelector(".ackform")?.remove();
  const form = build();
  form.classList.add("ackform", cls);
  li.append(form);
  form.querySelector("input, select")?.focus();
}

function snoozeForm(li, i, host) {
  inlineForm(li, "snoozeform", () => {
    const mins = durationSelect("snooze-min-" + i.id);
    const note = h("input", { id: "snooze-note-" + i.id, name: "note", maxlength: "500", placeholder: "Why? (optional)" });
    const form = h("form", { onsubmit: async ev => {
      ev.preventDefault();
      try { await api("POST", "/alerts/" + i.id + "/snooze", { minutes: Number(mins.value), note: note.value }); say("Snoozed " + i.rule + " on " + host); }
      catch (e) { say(e.message); form.append(h("span", { class: "err" }, e.message)); }
    } },
      h("label", { for: "snooze-min-" + i.id, class: "sr-only" }, "Snooze " + i.rule + " on " + host + " for"), mins,
      h("label", { for: "snooze-note-" + i.id, class: "sr-only" }, "Note"), note,
      h("button", { type: "submit", class: "confirm-snooze" }, "Snooze"));
    return form;
  });
}

function silenceForm(li, i, host) {
  inlineForm(li, "silenceform", () => {
    const mins = durationSelect("silence-min-" + i.id);
    const scope = h("select", { id: "silence-scope-" + i.id }, [
      ["rule-device", "This rule on " + host], ["device", "Everything on " + host], ["rule-tenant", "This rule for all of " + i.tenant]]
      .map(([v, t]) => h("option", { value: v }, t)));
    const comment = h("input", { id: "silence-comment-" + i.id, name: "comment", maxlength: "500", required: true, placeholder: "Why? (required)" });
    const form = h("form", { onsubmit: async ev => {
      ev.preventDefault();
      const b = { tenant: i.tenant, minutes: Number(mins.value), comment: comment.value };
      if (scope.value !== "rule-tenant" && i.device_id) b.device = i.device_id;
      if (scope.value !== "device") b.rule = i.rule;
      try { const s = await api("POST", "/silences", b); say("Silence " + s.id + " created: " + s.matchers); form.replaceWith(h("p", { class: "ok ackform" }, "Silenced (" + s.matchers + ") until " + when(new Date(s.ends_ms).toISOString()) + ". ", h("a", { href: "#/silences" }, "Silences"))); }
      catch (e) { say(e.message); form.append(h("span", { class: "err" }, e.message)); }
    } },
      h("label", { for: "silence-scope-" + i.id, class: "sr-only" }, "What to silence"), scope,
      h("label", { for: "silence-min-" + i.id, class: "sr-only" }, "For how long"), mins,
      h("label", { for: "silence-comment-" + i.id, class: "sr-only" }, "Comment"), comment,
      h("button", { type: "submit", class: "confirm-silence" }, "Silence"));
    return form;
  });
}

async function showFeed() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const state = params.get("state") || "active", severity = params.get("severity") || "", tenant = params.get("tenant") || "";
  const site = params.get("site") || "";
  const list = h("ul", { class: "alerts", id: "alerts", "aria-label": "Alerts" });
  const status = h("p", { class: "status", id: "feed-status" }, "Connecting…");
  const sel = (id, label, value, opts) => h("div", {}, h("label", { for: id }, label),
    h("select", { id, onchange: ev => { params.set(id.replace("f-", ""), ev.target.value); location.hash = "#/feed?" + params; } },
      opts.map(([v, t]) => h("option", { value: v, selected: v === value }, t))));
  const filters = [sel("f-state", "State", state, [["active", "Active"], ["open", "Open"], ["acked", "Acknowledged"], ["snoozed", "Snoozed"], ["resolved", "Resolved"], ["all", "All"]]),
    sel("f-severity", "Severity", severity, [["", "Any"], ["warning", "Warning"], ["critical", "Critical"]])];
  if (!me.tenant) {
    const ts = await api("GET", "/tenants");
    filters.push(sel("f-tenant", "Tenant", tenant, [["", "All tenants"], ...ts.map(t => [t.name, t.name])]));
  }
  const sites = await api("GET", "/sites" + (tenant ? "?tenant=" + encodeURIComponent(tenant) : ""));
  filters.push(sel("f-site", "Site", site, [["", "All sites"], ...sites.map(s => [s.name, me.tenant || tenant ? s.name : s.tenant + " / " + s.name])]));
  setView("Alerts", h("div", { class: "card filters", role: "group", "aria-label": "Filters" }, filters), status, list);
  const q = new URLSearchParams({ state, per_page: "100" });
  if (severity) q.set("severity", severity);
  if (tenant) q.set("tenant", tenant);
  if (site) q.set("site", site);
  const page = await api("GET", "/alerts?" + q);
  const shown = i => (state === "all" || (state === "active" ? i.state !== "resolved" : i.state === state)) &&
    (!severity || i.severity === severity) && (!tenant || i.tenant === tenant) && (!site || i.site === site);
  for (const i of page.items) list.append(alertItem(i, false));
  if (!page.items.length) list.append(h("li", { class: "status", id: "no-alerts" }, "No alerts. All quiet."));
  stopFeed();
  const eq = new URLSearchParams();
  if (tenant) eq.set("tenant", tenant);
  if (severity === "critical") eq.set("min_severity", "critical");
  feed = new EventSource(API + "/events?" + eq);
  feed.onopen = () => { status.textContent = "Live: new alerts appear here as they happen."; };
  feed.onerror = () => { status.textContent = "Live feed interrupted; reconnecting…"; };
  const onEvent = ev => {
    const d = JSON.parse(ev.data), i = d.incident;
    const old = document.getElementById("alert-" + i.id);
    document.getElementById("no-alerts")?.remove();
    if (!shown(i)) { old?.remove(); return; }
    const item = alertItem(i, true);
    if (old) old.replaceWith(item); else list.prepend(item);
    say(ev.type + ": " + i.rule + " on " + (i.hostname || i.device_id) + " (" + i.severity + ")");
  };
  for (const k of ["opened", "escalated", "acked", "snoozed", "reopened", "resolved"]) feed.addEventListener(k, onEvent);
}

// ------------------------------------------------------------------ silences

const fmtMs = ms => when(new Date(ms).toISOString());

async function showSilences() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const all = params.get("all") === "true";
  const rows = await api("GET", "/silences" + (all ? "?all=true" : ""));
  const may = me.role !== "tenant-viewer";
  const body = h("tbody", {}, rows.map(s => h("tr", { id: "silence-" + s.id },
    h("td", { "data-label": "Matches" }, h("code", {}, s.matchers)),
    h("td", { "data-label": "Status" }, h("span", { class: "pill " + s.status }, s.status)),
    h("td", { "data-label": "Ends" }, s.ends_ms > 4e15 ? "when removed" : fmtMs(s.ends_ms)),
    h("td", { "data-label": "Why" }, s.comment, h("div", { class: "meta" }, "by " + s.created_by + ", " + agoMs(s.created_ms),
      s.removed_by ? " · expired by " + s.removed_by : "")),
    h("td", { "data-label": "" }, may && (s.status === "active" || s.status === "upcoming" || s.status === "recurring") ?
      h("button", { type: "button", class: "secondary expire", "aria-label": "Expire silence " + s.id + " (" + s.matchers + ")", onclick: async () => {
        try { await api("DELETE", "/silences/" + s.id); say("Silence " + s.id + " expired"); route(); } catch (e) { say(e.message); }
      } }, "Expire") : ""))));
  const table = rows.length ? h("table", { id: "silences" }, h("thead", {}, h("tr", {}, ["Matches", "Status", "Ends", "Why", ""].map(c => h("th", { scope: "col" }, c)))), body)
    : h("p", { class: "status", id: "no-silences" }, all ? "No silences were ever made." : "No active silences.");
  const toggle = h("a", { href: all ? "#/silences" : "#/silences?all=true" }, all ? "Show active only" : "Show ended and expired too");
  const content = [h("section", { class: "card" }, h("p", { class: "status" }, "A silence pauses notifications for what it matches; the alerts are still evaluated and shown. ", toggle), table)];
  if (may) content.unshift(await newSilenceForm());
  setView("Silences", ...content);
}

async function newSilenceForm() {
  const f = (id, label, input) => h("div", {}, h("label", { for: id }, label), input);
  const inp = (id, ph) => h("input", { id, name: id.slice(3), placeholder: ph || "" });
  const tenants = me.tenant ? [] : await api("GET", "/tenants");
  const tenant = me.tenant ? null : h("select", { id: "ns-tenant" }, [h("option", { value: "" }, "Any tenant"), ...tenants.map(t => h("option", { value: t.name }, t.name))]);
  const site = inp("ns-site", "e.g. hq"), device = inp("ns-device", "device id"), rule = inp("ns-rule", "e.g. disk_full"), tag = inp("ns-tag", "e.g. role=db");
  const mins = durationSelect("ns-minutes");
  const comment = h("input", { id: "ns-comment", name: "comment", required: true, maxlength: "500", placeholder: "Why? (required)" });
  const err = h("p", { class: "err", role: "alert" });
  const form = h("form", { class: "card", id: "new-silence", "aria-labelledby": "ns-title", onsubmit: async ev => {
    ev.preventDefault(); err.textContent = "";
    const b = { minutes: Number(mins.value), comment: comment.value };
    for (const [k, el] of [["tenant", tenant], ["site", site], ["device", device], ["rule", rule], ["tag", tag]]) if (el && el.value.trim()) b[k] = el.value.trim();
    try { const s = await api("POST", "/silences", b); say("Silence " + s.id + " created"); route(); } catch (e) { err.textContent = e.message; }
  } },
    h("h2", { id: "ns-title" }, "New silence"),
    h("div", { class: "filters" }, tenant ? f("ns-tenant", "Tenant", tenant) : "", f("ns-site", "Site", site), f("ns-device", "Device", device),
      f("ns-rule", "Rule", rule), f("ns-tag", "Tag", tag), f("ns-minutes", "For", mins)),
    h("div", { class: "filters" }, h("div", { class: "grow" }, h("label", { for: "ns-comment" }, "Comment"), comment), h("button", { type: "submit", id: "ns-submit" }, "Create silence")),
    err);
  return form;
}

// ------------------------------------------------------------------ enrollment tokens

async function showEnroll() {
  const [tenants, sites, defaults] = await Promise.all([me.tenant ? [] : api("GET", "/tenants"), api("GET", "/sites"), api("GET", "/enrollment/defaults")]);
  const f = (id, label, input, hint) => h("div", {}, h("label", { for: id }, label), input, hint ? h("div", { class: "hint", id: id + "-hint" }, hint) : "");
  const tenant = me.tenant ? null : h("select", { id: "et-tenant", required: true }, tenants.map(t => h("option", { value: t.name }, t.name)));
  const site = h("select", { id: "et-site" });
  const fillSites = () => site.replaceChildren(h("option", { value: "" }, "No site"),
    ...sites.filter(s => !tenant || s.tenant === tenant.value).map(s => h("option", { value: s.name }, s.name)));
  fillSites();
  if (tenant) tenant.addEventListener("change", fillSites);
  // The collector's own answer (collector.toml's listeners, the certificate's names);
  // without one, this page's host with the configured enrollment port.
  const host = location.hostname.includes(":") ? "[" + location.hostname + "]" : location.hostname;
  const address = h("input", { id: "et-address", required: true, value: defaults.address || host + ":" + defaults.enrollment_port, "aria-describedby": "et-address-hint" });
  const server = h("input", { id: "et-server", placeholder: "optional, e.g. " + (defaults.server || host + ":" + defaults.telemetry_port), "aria-describedby": "et-server-hint" });
  const expires = h("select", { id: "et-expires" }, [["1", "1 hour"], ["24", "1 day"], ["168", "7 days"], ["720", "30 days"], ["2160", "90 days"]]
    .map(([v, t]) => h("option", { value: v, selected: v === "168" }, t)));
  const uses = h("input", { id: "et-uses", type: "number", min: "1", max: "100000", value: "10", required: true });
  const err = h("p", { class: "err", role: "alert" });
  const result = h("div", { id: "et-result", "aria-live": "polite" });
  const form = h("form", { class: "card", id: "new-token", "aria-labelledby": "et-title", onsubmit: async ev => {
    ev.preventDefault(); err.textContent = "";
    const b = { address: address.value.trim(), expires_hours: Number(expires.value), uses: Number(uses.value) };
    if (tenant) b.tenant = tenant.value;
    if (site.value) b.site = site.value;
    if (server.value.trim()) b.server = server.value.trim();
    try {
      const t = await api("POST", "/enrollment-tokens", b);
      result.replaceChildren(tokenCard(t));
      result.querySelector("button")?.focus();
      await refreshTokens();
    } catch (e) { err.textContent = e.message; }
  } },
    h("h2", { id: "et-title" }, "New enrollment token"),
    h("div", { class: "filters" }, tenant ? f("et-tenant", "Tenant", tenant) : "", f("et-site", "Site", site),
      f("et-expires", "Valid for", expires), f("et-uses", "Devices (uses)", uses)),
    h("div", { class: "filters" },
      h("div", { class: "grow" }, f("et-address", "Enrollment address", address, "host:port of this collector's enrollment listener, as the devices reach it")),
      h("div", { class: "grow" }, f("et-server", "Telemetry address (MSI SERVER)", server, "only when it differs from the enrollment host with port " + defaults.telemetry_port))),
    h("button", { type: "submit", id: "et-submit" }, "Create token"), err);
  const list = h("div", { id: "token-list" });
  const refreshTokens = async () => {
    const rs = await api("GET", "/enrollment-tokens");
    list.replaceChildren(rs.length ? h("table", { id: "tokens" }, h("thead", {}, h("tr", {}, ["Token", "Tenant / site", "Uses", "Expires", "State", ""].map(c => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rs.map(t => h("tr", { id: "token-" + t.id },
        h("td", { "data-label": "Token" }, h("code", {}, t.id)),
        h("td", { "data-label": "Tenant / site" }, t.tenant + (t.site ? " / " + t.site : "")),
        h("td", { "data-label": "Uses" }, t.uses + " of " + t.max_uses),
        h("td", { "data-label": "Expires" }, fmtMs(t.expires_ms)),
        h("td", { "data-label": "State" }, h("span", { class: "pill " + t.state.replace(" ", "-") }, t.state)),
        h("td", { "data-label": "" }, t.state !== "revoked" ? h("button", { type: "button", class: "secondary revoke", "aria-label": "Revoke token " + t.id,
          onclick: async () => { try { await api("DELETE", "/enrollment-tokens/" + t.id); say("Token " + t.id + " revoked"); await refreshTokens(); } catch (e) { say(e.message); } } }, "Revoke") : "")))))
      : h("p", { class: "status" }, "No enrollment tokens yet."));
  };
  setView("Enrollment tokens", form, result, h("section", { class: "card" }, h("h2", {}, "Tokens"), list));
  await refreshTokens();
}

function tokenCard(t) {
  const line = (id, label, text) => h("div", { class: "install" },
    h("label", { for: id }, label),
    h("div", { class: "copyrow" }, h("textarea", { id, readonly: true, rows: "2", spellcheck: "false" }, text),
      h("button", { type: "button", class: "secondary copy", "aria-label": "Copy the " + label + " line", onclick: async ev => {
        const ta = document.getElementById(id);
        try { await navigator.clipboard.writeText(text); } catch (_) { ta.select(); document.execCommand("copy"); }
        ev.target.textContent = "Copied"; say(label + " line copied");
      } }, "Copy")));
  return h("section", { class: "card created", id: "created-token", "aria-labelledby": "ct-title" },
    h("h2", { id: "ct-title" }, "Token " + t.id + " for " + t.tenant + (t.site ? " / " + t.site : "")),
    h("p", { class: "warnbox" }, "Copy it now: the token is shown only this once (only its hash is kept). It enrolls up to " + t.uses +
      " device" + (t.uses === 1 ? "" : "s") + " until " + fmtMs(t.expires_ms) + "."),
    line("il-deb", "Debian / Ubuntu (.deb)", t.install.deb),
    line("il-rpm", "RHEL / Fedora / SUSE (.rpm)", t.install.rpm),
    line("il-msi", "Windows (MSI, as SYSTEM or an administrator)", t.install.msi),
    line("il-agent", "Agent already installed", t.install.agent));
}

// ------------------------------------------------------------------ rules, users, audit

const scopeText = sc => {
  const parts = [];
  for (const k of ["tenants", "sites", "tags", "os", "devices", "rules"]) if (sc[k] && sc[k].length) parts.push(k + ": " + sc[k].join(", "));
  return parts.length ? parts.join(" · ") : "all devices";
};

async function showRules() {
  let set;
  try { set = await api("GET", "/rules"); }
  catch (e) { if (e.status !== 503) throw e; setView("Rules", h("p", { class: "status" }, e.message)); return; }
  const rules = h("table", { id: "rules" }, h("thead", {}, h("tr", {}, ["Rule", "Watches", "Warning", "Critical", "For", "Applies to"].map(c => h("th", { scope: "col" }, c)))),
    h("tbody", {}, set.rules.map(r => h("tr", {},
      h("td", { "data-label": "Rule" }, h("b", {}, r.name), r.summary ? h("div", { class: "meta" }, r.summary) : "", h("div", { class: "meta" }, h("code", {}, r.origin))),
      h("td", { "data-label": "Watches" }, h("span", { class: "pill" }, r.kind), " ", r.watches, r.dimension ? " (" + r.dimension + ")" : ""),
      h("td", { "data-label": "Warning" }, r.warning || "—"),
      h("td", { "data-label": "Critical" }, r.critical || "—", r.recover ? h("div", { class: "meta" }, "recovers at " + r.recover) : ""),
      h("td", { "data-label": "For" }, r.for_secs ? (r.for_secs >= 60 ? Math.round(r.for_secs / 60) + " min" : r.for_secs + " s") : "at once"),
      h("td", { "data-label": "Applies to" }, scopeText(r.scope))))));
  const wins = set.windows.length ? h("table", { id: "windows" }, h("thead", {}, h("tr", {}, ["Window", "When", "Zone", "Applies to", "Now"].map(c => h("th", { scope: "col" }, c)))),
    h("tbody", {}, set.windows.map(w => h("tr", {},
      h("td", { "data-label": "Window" }, h("b", {}, w.name)),
      h("td", { "data-label": "When" }, w.schedule),
      h("td", { "data-label": "Zone" }, w.tz),
      h("td", { "data-label": "Applies to" }, scopeText(w.scope)),
      h("td", { "data-label": "Now" }, w.active_now ? h("span", { class: "pill active" }, "in maintenance") : "—")))))
    : h("p", { class: "status" }, "No maintenance windows are defined.");
  setView("Rules",
    h("p", { class: "status" }, "What the alert engine has loaded (" + set.rules.length + " rules, " + set.windows.length + " windows, as of " + fmtMs(set.loaded_ms) +
      "). Rules and the windows below are defined in the rule files on the collector ([[rule]] and [[maintenance]]) and reload when the files change; here they are read-only. Windows made on this page are kept in the database; the engine picks them up within a tick. For a pause of one alert, use a ", h("a", { href: "#/silences" }, "silence"), "."),
    h("section", { class: "card" }, h("h2", {}, "Rules"), set.rules.length ? rules : h("p", { class: "status" }, "No rules are loaded.")),
    h("section", { class: "card" }, h("h2", {}, "Maintenance windows"), wins),
    ...await runtimeWindows());
}

// Maintenance windows made here (stored in the database, honoured like the files').
async function runtimeWindows() {
  const rows = await api("GET", "/maintenance");
  const may = me.role !== "tenant-viewer";
  const list = rows.length ? h("table", { id: "db-windows" }, h("thead", {}, h("tr", {}, ["Window", "From", "To", "Applies to", "Status", ""].map(c => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map(w => h("tr", { id: "window-" + w.id },
      h("td", { "data-label": "Window" }, h("b", {}, w.note), h("div", { class: "meta" }, "by " + w.created_by + ", " + agoMs(w.created_ms))),
      h("td", { "data-label": "From" }, fmtMs(w.starts_ms)),
      h("td", { "data-label": "To" }, fmtMs(w.ends_ms)),
      h("td", { "data-label": "Applies to" }, "tenant " + w.tenant + (w.site ? ", site " + w.site : "") + (w.device_id ? ", device " + w.device_id : "")),
      h("td", { "data-label": "Status" }, h("span", { class: "pill " + w.status }, w.status === "active" ? "in maintenance" : w.status)),
      h("td", { "data-label": "" }, may ? h("button", { type: "button", class: "secondary delete-window", "aria-label": "Delete maintenance window " + w.id + " (" + w.note + ")", onclick: async () => {
        try { await api("DELETE", "/maintenance/" + w.id); say("Maintenance window " + w.id + " deleted"); route(); } catch (e) { say(e.message); }
      } }, "Delete") : "")))))
    : h("p", { class: "status", id: "no-db-windows" }, "No maintenance windows made here are current or upcoming.");
  const out = [h("section", { class: "card" }, h("h2", {}, "Maintenance windows made here"), list)];
  if (!may) return out;
  const f = (id, label, input) => h("div", {}, h("label", { for: id }, label), input);
  const tenants = me.tenant ? [] : await api("GET", "/tenants");
  const tenant = me.tenant ? null : h("select", { id: "mw-tenant" }, [h("option", { value: "" }, "The device's tenant"), ...tenants.map(t => h("option", { value: t.name }, t.name))]);
  const site = h("input", { id: "mw-site", placeholder: "whole tenant" });
  const device = h("input", { id: "mw-device", placeholder: "device id (optional)" });
  const start = h("input", { id: "mw-start", type: "datetime-local", "aria-describedby": "mw-start-hint" });
  const mins = durationSelect("mw-minutes");
  const note = h("input", { id: "mw-note", required: true, maxlength: "500", placeholder: "What is done (required)" });
  const err = h("p", { class: "err", role: "alert" });
  const form = h("form", { class: "card", id: "new-window", "aria-labelledby": "mw-title", onsubmit: async ev => {
    ev.preventDefault(); err.textContent = "";
    const b = { minutes: Number(mins.value), note: note.value };
    if (start.value) b.start = new Date(start.value).toISOString();
    for (const [k, el] of [["tenant", tenant], ["site", site], ["device", device]]) if (el && el.value.trim()) b[k] = el.value.trim();
    try { const w = await api("POST", "/maintenance", b); say("Maintenance window " + w.id + " created"); route(); } catch (e) { err.textContent = e.message; }
  } },
    h("h2", { id: "mw-title" }, "New maintenance window"),
    h("div", { class: "filters" }, tenant ? f("mw-tenant", "Tenant", tenant) : "", f("mw-site", "Site", site), f("mw-device", "Device", device)),
    h("div", { class: "filters" }, h("div", {}, h("label", { for: "mw-start" }, "Starts"), start, h("div", { class: "hint", id: "mw-start-hint" }, "your local time; empty = now")),
      f("mw-minutes", "For", mins), h("div", { class: "grow" }, h("label", { for: "mw-note" }, "Note"), note), h("button", { type: "submit", id: "mw-submit" }, "Create window")),
    err);
  return [form, ...out];
}

const ROLES = [["msp-admin", "MSP admin"], ["msp-tech", "MSP technician"], ["tenant-admin", "Tenant admin"], ["tenant-viewer", "Tenant viewer"]];

async function showUsers() {
  const [users, tenants] = await Promise.all([api("GET", "/users"), me.tenant ? [] : api("GET", "/tenants")]);
  const roles = me.tenant ? ROLES.filter(([r]) => r.startsWith("tenant-")) : ROLES;
  const f = (id, label, input) => h("div", {}, h("label", { for: id }, label), input);
  const name = h("input", { id: "nu-name", required: true, autocomplete: "off"});
  const pw = h("input", { id: "nu-password", type: "password", required: true, minlength: "10", autocomplete: "new-password" });
  const role = h("select", { id: "nu-role" }, roles.map(([v, t]) => h("option", { value: v }, t)));
  const tenant = me.tenant ? null : h("select", { id: "nu-tenant" }, [h("option", { value: "" }, "— (MSP roles)"), ...tenants.map(t => h("option", { value: t.name }, t.name))]);
  const err = h("p", { class: "err", role: "alert" });
  const form = h("form", { class: "card", id: "new-user", "aria-labelledby": "nu-title", onsubmit: async ev => {
    ev.preventDefault(); err.textContent = "";
    const b = { username: name.value.trim(), password: pw.value, role: role.value };
    if (me.tenant) b.tenant = me.tenant; else if (tenant.value) b.tenant = tenant.value;
    try { await api("POST", "/users", b); pw.value = ""; say("User " + b.username + " added"); route(); } catch (e) { err.textContent = e.message; }
  } },
    h("h2", { id: "nu-title" }, "Add a user"),
    h("div", { class: "filters" }, f("nu-name", "User name", name), f("nu-password", "Password (10+ characters)", pw), f("nu-role", "Role", role), tenant ? f("nu-tenant", "Tenant", tenant) : ""),
    h("button", { type: "submit", id: "nu-submit" }, "Add user"), err);
  const rows = users.map(u => h("tr", { id: "user-" + u.username },
    h("td", { "data-label": "User" }, h("b", {}, u.username), u.username === me.username ? " (you)" : ""),
    h("td", { "data-label": "Role" }, (ROLES.find(([r]) => r === u.role) || [0, u.role])[1]),
    h("td", { "data-label": "Tenant" }, u.tenant || "all tenants"),
    h("td", { "data-label": "Added" }, agoMs(u.created_ms)),
    h("td", { "data-label": "" }, h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", "aria-label": "Set the password of " + u.username, onclick: ev => passwordForm(ev.target.closest("td"), u.username) }, "Set password"),
      h("button", { type: "button", class: "secondary", "aria-label": "Change the role of " + u.username, onclick: ev => roleForm(ev.target.closest("td"), u, roles, tenants) }, "Change role"),
      u.username === me.username ? "" : h("button", { type: "button", class: "secondary danger", "aria-label": "Remove user " + u.username, onclick: async () => {
        if (!confirm("Remove " + u.username + "? Their sessions end.")) return;
        try { await api("DELETE", "/users/" + encodeURIComponent(u.username)); say("User " + u.username + " removed"); route(); } catch (e) { say(e.message); }
      } }, "Remove")))));
  setView("Users", form, h("section", { class: "card" }, h("h2", {}, "Users (" + users.length + ")"),
    h("table", { id: "users" }, h("thead", {}, h("tr", {}, ["User", "Role", "Tenant", "Added", ""].map(c => h("th", { scope: "col" }, c)))), h("tbody", {}, rows))),
    await apiTokensSection(roles, tenants));
}

// Role (and tenant) of a user: a tenant admin is offered only its tenant's roles; the
// API refuses anything else anyway.
function roleForm(cell, u, roles, tenants) {
  cell.querySelector(".roleform")?.remove();
  const id = "role-" + u.username.replace(/[^a-zA-Z0-9]/g, "_");
  const role = h("select", { id }, roles.map(([v, t]) => h("option", { value: v, selected: v === u.role }, t)));
  const tenant = me.tenant ? null : h("select", { id: id + "-tenant", "aria-label": "Tenant for " + u.username },
    [h("option", { value: "" }, "— (MSP roles)"), ...tenants.map(t => h("option", { value: t.name, selected: t.name === u.tenant }, t.name))]);
  const err = h("span", { class: "err", role: "alert" });
  const form = h("form", { class: "roleform ackform", onsubmit: async ev => {
    ev.preventDefault();
    const b = { role: role.value };
    if (me.tenant) b.tenant = me.tenant; else if (tenant.value) b.tenant = tenant.value;
    try { await api("PUT", "/users/" + encodeURIComponent(u.username) + "/role", b); say("Role of " + u.username + " changed; their sessions ended"); route(); }
    catch (e) { err.textContent = e.message; }
  } }, h("label", { for: id, class: "sr-only" }, "New role for " + u.username), role, tenant || "", h("button", { type: "submit" }, "Change"), err);
  cell.append(form);
  role.focus();
}

function passwordForm(cell, user) {
  cell.querySelector(".pwform")?.remove();
  const id = "pw-" + user.replace(/[^a-zA-Z0-9]/g, "_");
  const pw = h("input", { id, type: "password", minlength: "10", required: true, autocomplete: "new-password" });
  const err = h("span", { class: "err", role: "alert" });
  const form = h("form", { class: "pwform ackform", onsubmit: async ev => {
    ev.preventDefault();
    try { await api("PUT", "/users/" + encodeURIComponent(user) + "/password", { password: pw.value }); form.replaceWith(h("span", { class: "ok" }, "Password set; their sessions ended.")); say("Password of " + user + " set"); }
    catch (e) { err.textContent = e.message; }
  } }, h("label", { for: id, class: "sr-only" }, "New password for " + user), pw, h("button", { type: "submit" }, "Set"), err);
  cell.append(form);
  pw.focus();
}

// API tokens for scripts: a role and optionally a tenant; shown once.
async function apiTokensSection(roles, tenants) {
  const sec = h("section", { class: "card", id: "api-tokens", "aria-labelledby": "at-title" });
  const draw = async shown => {
    const rows = await api("GET", "/tokens");
    const f = (id, label, input) => h("div", {}, h("label", { for: id }, label), input);
    const name = h("input", { id: "at-name", required: true, placeholder: "e.g. psa-sync" });
    const role = h("select", { id: "at-role" }, roles.map(([v, t]) => h("option", { value: v }, t)));
    const tenant = me.tenant ? null : h("select", { id: "at-tenant" }, [h("option", { value: "" }, "— (MSP roles)"), ...tenants.map(t => h("option", { value: t.name }, t.name))]);
    const err = h("p", { class: "err", role: "alert" });
    const form = h("form", { onsubmit: async ev => {
      ev.preventDefault(); err.textContent = "";
      const b = { name: name.value.trim(), role: role.value };
      if (me.tenant) b.tenant = me.tenant; else if (tenant.value) b.tenant = tenant.value;
      try { const t = await api("POST", "/tokens", b); await draw(t); } catch (e) { err.textContent = e.message; }
    } }, h("div", { class: "filters" }, f("at-name", "Name", name), f("at-role", "Role", role), tenant ? f("at-tenant", "Tenant", tenant) : "",
      h("div", {}, h("button", { type: "submit", id: "at-submit" }, "Create API token"))), err);
    sec.replaceChildren(h("h2", { id: "at-title" }, "API tokens"),
      h("p", { class: "status" }, "For scripts: send Authorization: Bearer <token>. A token is shown once; only its hash is kept."),
      shown ? h("div", { class: "install" }, h("label", { for: "at-new" }, "New token " + shown.id + " (copy it now)"),
        h("div", { class: "copyrow" }, h("textarea", { id: "at-new", readonly: true, rows: "1", spellcheck: "false" }, shown.token))) : "",
      form,
      rows.length ? h("table", { id: "tokens-api" }, h("thead", {}, h("tr", {}, ["Name", "Role", "Tenant", "Made", ""].map(c => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.map(t => h("tr", {},
          h("td", { "data-label": "Name" }, h("b", {}, t.name)),
          h("td", { "data-label": "Role" }, t.role || "feed only"),
          h("td", { "data-label": "Tenant" }, t.tenant || "all tenants"),
          h("td", { "data-label": "Made" }, agoMs(t.created_ms) + (t.created_by ? " by " + t.created_by : "")),
          h("td", { "data-label": "" }, t.revoked_ms ? h("span", { class: "pill revoked" }, "revoked") : h("button", { type: "button", class: "secondary danger", "aria-label": "Revoke API token " + t.name,
            onclick: async () => { try { await api("DELETE", "/tokens/" + t.id); say("API token " + t.name + " revoked"); await draw(); } catch (e) { say(e.message); } } }, "Revoke"))))))
        : h("p", { class: "status" }, "No API tokens."));
  };
  await draw();
  return sec;
}

async function showAudit() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const page = Math.max(1, Number(params.get("page")) || 1);
  const a = await api("GET", "/audit?per_page=50&page=" + page);
  const pages = Math.max(1, Math.ceil(a.total / a.per_page));
  const detail = d => {
    if (!d || typeof d !== "object") return "";
    return Object.entries(d).filter(([, v]) => v !== null && v !== "").map(([k, v]) => k.endsWith("_ms") && typeof v === "number" ? k.slice(0, -3) + ": " + fmtMs(v) : k + ": " + (typeof v === "object" ? JSON.stringify(v) : v)).join(" · ");
  };
  const rows = a.items.map(r => h("tr", {},
    h("td", { "data-label": "When" }, h("time", { datetime: new Date(r.at_ms).toISOString(), title: new Date(r.at_ms).toISOString() }, fmtMs(r.at_ms))),
    h("td", { "data-label": "Who" }, r.actor),
    h("td", { "data-label": "What" }, h("code", {}, r.action)),
    h("td", { "data-label": "On" }, r.target, r.tenant ? h("div", { class: "meta" }, r.tenant) : ""),
    h("td", { "data-label": "Detail" }, detail(r.detail))));
  setView("Audit log",
    h("p", { class: "status" }, "Every change — logins, acknowledgements, snoozes, silences, users, tokens — from the console, the API or the command line, newest first."),
    h("section", { class: "card" }, a.items.length ? h("table", { id: "audit" }, h("thead", {}, h("tr", {}, ["When", "Who", "What", "On", "Detail"].map(c => h("th", { scope: "col" }, c)))), h("tbody", {}, rows)) : h("p", { class: "status" }, "Nothing recorded yet."),
      pages > 1 ? h("nav", { class: "ranges", "aria-label": "Audit pages" },
        page > 1 ? h("a", { href: "#/audit?page=" + (page - 1) }, "← Newer") : "", h("span", { class: "status" }, "page " + page + " of " + pages + " (" + a.total + " entries)"),
        page < pages ? h("a", { href: "#/audit?page=" + (page + 1) }, "Older →") : "") : ""));
}

// ------------------------------------------------------------------ fleet

async function showFleet() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const dq = new URLSearchParams({ per_page: "200" });
  for (const k of ["hostname", "tag"]) if (params.get(k)) dq.set(k, params.get(k));
  const [fleet, devs] = await Promise.all([api("GET", "/fleet"), api("GET", "/devices?" + dq)]);
  // Patch compliance: the share of devices with no security update pending longer than overdue_days.
  const compliance = t => t.devices ? Math.floor(100 * (t.devices - t.security_overdue) / t.devices) + "%" : "—";
  const num = (label, n, cls) => h("div", { class: "num " + (cls || "") }, h("b", {}, String(n)), label);
  const cards = h("div", { class: "grid", id: "tenants" }, fleet.map(t => h("section", { class: "card tenant", "aria-label": "Tenant " + t.tenant },
    h("h2", {}, t.tenant),
    h("div", { class: "nums" },
      num("online", t.online, t.online ? "good" : ""), num("offline", t.offline, t.offline ? "bad" : ""),
      num("critical alerts", t.alerts_critical, t.alerts_critical ? "bad" : ""), num("warnings", t.alerts_warning),
      num("not seen for a day", t.stale_24h, t.stale_24h ? "bad" : ""), num("security updates pending", t.security_pending),
      num("security updates over " + t.overdue_days + " days", t.security_overdue, t.security_overdue ? "bad" : ""),
      num("patch compliance", compliance(t)), num("reboot pending", t.reboot_pending)))));
  const search = h("input", { id: "hostname", type: "search", value: params.get("hostname") || "", placeholder: "part of a host name" });
  const tagIn = h("input", { id: "tag", type: "search", value: params.get("tag") || "", placeholder: "e.g. servers" });
  const form = h("form", { class: "filters", role: "search", onsubmit: ev => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (search.value.trim()) q.set("hostname", search.value.trim());
    if (tagIn.value.trim()) q.set("tag", tagIn.value.trim());
    location.hash = "#/fleet?" + q;
  } },
    h("div", {}, h("label", { for: "hostname" }, "Find a device"), search),
    h("div", {}, h("label", { for: "tag" }, "Tag"), tagIn), h("button", { type: "submit" }, "Search"));
  const rows = devs.items.map(d => h("tr", {},
    h("td", { "data-label": "Host" }, h("span", { class: "dot " + (d.online ? "on" : "off"), "aria-hidden": "true" }),
      h("a", { href: "#/device/" + encodeURIComponent(d.id) }, d.hostname || d.id)),
    h("td", { "data-label": "Status" }, d.online ? "online" : "offline, seen " + agoMs(d.last_seen_ms)),
    h("td", { "data-label": "Tenant" }, d.tenant + (d.site ? " / " + d.site : "")),
    h("td", { "data-label": "OS" }, (d.os_family + " " + d.os_version).trim()),
    h("td", { "data-label": "Open alerts" }, String(d.open_alerts))));
  setView("Fleet", cards, h("section", { class: "card" }, h("h2", {}, "Devices (" + devs.total + ")"), form,
    h("table", { id: "devices" }, h("thead", {}, h("tr", {}, ["Host", "Status", "Tenant / site", "OS", "Open alerts"].map(c => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows))));
}

// ------------------------------------------------------------------ device

// The charts an operator looks at first.
const PREFERRED = ["cpu.usage.percent", "mem.used.percent", "load.1m", "fs.used.percent", "disk.busy.percent",
  "net.rx.bytes_per_sec", "net.tx.bytes_per_sec", "swap.used.percent"];
const RANGES = [["1 h", 3600e3, null], ["24 h", 86400e3, 300e3], ["7 d", 7 * 86400e3, 1800e3]];

async function showDevice(id, rangeIdx) {
  const r = RANGES[rangeIdx || 0];
  const dev = "/devices/" + encodeURIComponent(id);
  const [info, latest, alerts, fss, svcs, ups] = await Promise.all([api("GET", dev), api("GET", dev + "/latest"),
    api("GET", "/alerts?state=all&per_page=20&device=" + encodeURIComponent(id)),
    api("GET", dev + "/filesystems"), api("GET", dev + "/services"), api("GET", dev + "/updates")]);
  const d = info.device;
  const kv = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
  const inv = info.inventory;
  const facts = h("dl", { class: "kv" }, kv("Status", d.online ? "online" : "offline, seen " + agoMs(d.last_seen_ms)),
    kv("Tenant", d.tenant + (d.site ? " / " + d.site : "")), kv("OS", inv && inv.os_name ? [inv.os_name, inv.os_version, inv.kernel].filter(Boolean).join(" · ") : (d.os_family + " " + d.os_version).trim()),
    kv("Agent", d.agent_version || "?"), kv("Device id", h("code", {}, d.id)),
    info.patch ? kv("Patches", info.patch.pending + " pending, " + info.patch.security + " security" + (info.patch.reboot_required ? ", reboot required" : "")) : [],
    inv ? kv("Hardware", [inv.hw_vendor, inv.hw_model, inv.cpu_model, inv.cpu_cores ? inv.cpu_cores + " cores" : "", inv.memory_bytes ? bytes(inv.memory_bytes) + " RAM" : ""].filter(Boolean).join(", ") || "?") : []);
  const ranges = h("div", { class: "ranges", role: "group", "aria-label": "Time range" }, RANGES.map(([label], i) =>
    h("button", { type: "button", class: "secondary", "aria-pressed": String(i === (rangeIdx || 0)), onclick: () => showDevice(id, i) }, label)));
  // The main series first: one chart per metric (its first dimension), at most eight.
  const metrics = [];
  for (const l of latest) if (!metrics.find(m => m.name === l.name)) metrics.push(l);
  const rank = n => { const i = PREFERRED.indexOf(n); return i >= 0 ? i : PREFERRED.length + (n.startsWith("agent.") ? 1 : 0); };
  metrics.sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
  const charts = h("div", { class: "charts", id: "charts" });
  const hist = h("ul", { class: "alerts" }, alerts.items.map(i => alertItem(i, false)));
  const none = t => h("p", { class: "status" }, t);
  const fsTable = fss.length ? h("table", { id: "filesystems" }, h("thead", {}, h("tr", {}, ["Mount", "Used", "Free", "Size"].map(c => h("th", { scope: "col" }, c)))),
    h("tbody", {}, fss.map(f => h("tr", {},
      h("td", { "data-label": "Mount" }, h("code", {}, f.mount)),
      h("td", { "data-label": "Used" }, meter(f.used_percent, f.mount)),
      h("td", { "data-label": "Free" }, f.free_bytes == null ? "?" : bytes(f.free_bytes)),
      h("td", { "data-label": "Size" }, f.total_bytes == null ? "?" : bytes(f.total_bytes))))))
    : none("No filesystem values from this device yet.");
  const svcList = svcs.length ? h("ul", { class: "svcs", id: "services" }, svcs.map(v => h("li", {},
    h("span", { class: "dot " + (v.running ? "on" : "bad"), "aria-hidden": "true" }), h("code", {}, v.name), " ",
    v.running ? "running" : (v.kind === "failed-unit" ? "failed" : "not running"),
    h("span", { class: "meta" }, " · " + (v.kind === "failed-unit" ? "systemd unit" : "watched") + ", " + agoMs(v.ts_ms)))))
    : none("The agent watches no services here and no unit has failed.");
  const upTable = ups.length ? h("table", { id: "updates" }, h("thead", {}, h("tr", {}, ["Package", "Version", "Kind", "Pending for"].map(c => h("th", { scope: "col" }, c)))),
    h("tbody", {}, ups.map((u, n) => h("tr", { class: (u.classification === "security" ? "sec" : "") + (n >= 10 ? " more" : ""), hidden: n >= 10 },
      h("td", { "data-label": "Package" }, u.name, u.advisory_id ? h("div", { class: "meta" }, u.advisory_id) : ""),
      h("td", { "data-label": "Version" }, u.current_version + " → " + u.new_version),
      h("td", { "data-label": "Kind" }, h("span", { class: "pill " + (u.classification === "security" ? "revoked" : "") }, u.classification)),
      h("td", { "data-label": "Pending for" }, u.age_days + (u.age_days === 1 ? " day" : " days"))))))
    : none(info.patch ? "Up to date: no pending updates in the latest report." : "No patch report from this device yet.");
  const moreUps = ups.length > 10 ? h("button", { type: "button", class: "secondary", id: "updates-all", "aria-controls": "updates", onclick: ev => {
    for (const tr of document.querySelectorAll("#updates tr.more")) tr.hidden = false;
    ev.target.remove();
  } }, "Show all " + ups.length + " updates") : "";
  const swSearch = h("input", { id: "sw-q", type: "search", placeholder: "name or publisher" });
  const swBox = h("div", { id: "software" });
  const loadSw = async pg => {
    const q = new URLSearchParams({ per_page: "25", page: String(pg) });
    if (swSearch.value.trim()) q.set("q", swSearch.value.trim());
    const sw = await api("GET", dev + "/software?" + q);
    const pages = Math.max(1, Math.ceil(sw.total / sw.per_page));
    swBox.replaceChildren(
      h("p", { class: "status", id: "sw-count" }, sw.total + " program" + (sw.total === 1 ? "" : "s") + (swSearch.value.trim() ? " match" : "") + (inv ? " · inventory of " + agoMs(inv.received_ms) : "")),
      sw.items.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Version", "Publisher"].map(c => h("th", { scope: "col" }, c)))),
        h("tbody", {}, sw.items.map(x => h("tr", {}, h("td", { "data-label": "Name" }, x.name), h("td", { "data-label": "Version" }, x.version), h("td", { "data-label": "Publisher" }, x.publisher || "—"))))) : "",
      pages > 1 ? h("div", { class: "ranges" },
        h("button", { type: "button", class: "secondary", disabled: pg <= 1, onclick: () => loadSw(pg - 1) }, "Previous"),
        h("span", { class: "status" }, "page " + pg + " of " + pages),
        h("button", { type: "button", class: "secondary", disabled: pg >= pages, onclick: () => loadSw(pg + 1) }, "Next")) : "");
  };
  const swForm = h("form", { class: "filters", role: "search", onsubmit: ev => { ev.preventDefault(); loadSw(1); } },
    h("div", {}, h("label", { for: "sw-q" }, "Search the software"), swSearch), h("button", { type: "submit", class: "secondary" }, "Search"));
  setView(d.hostname || d.id, h("section", { class: "card" }, facts),
    h("section", { class: "card" }, h("h2", {}, "Metrics"), ranges, charts),
    h("div", { class: "cols" },
      h("section", { class: "card", "aria-labelledby": "h-fs" }, h("h2", { id: "h-fs" }, "Filesystems"), fsTable),
      h("section", { class: "card", "aria-labelledby": "h-svc" }, h("h2", { id: "h-svc" }, "Services"), svcList)),
    h("section", { class: "card", "aria-labelledby": "h-up" }, h("h2", { id: "h-up" }, "Pending updates" + (ups.length ? " (" + ups.length + ")" : "")), upTable, moreUps),
    h("section", { class: "card", "aria-labelledby": "h-sw" }, h("h2", { id: "h-sw" }, "Software"), swForm, swBox),
    h("section", {}, h("h2", {}, "Alert history"), alerts.items.length ? hist : none("No alerts for this device.")));
  await loadSw(1);
  const to = Date.now(), from = to - r[1];
  // All charts in one request; each is drawn from its series in the answer.
  const shown = metrics.slice(0, 8);
  const q = new URLSearchParams({ from_ms: String(from), to_ms: String(to) });
  if (shown.length) q.set("metrics", shown.map(m => m.name).join(","));
  if (r[2]) q.set("step_ms", String(r[2]));
  const all = shown.length ? (await api("GET", "/devices/" + encodeURIComponent(id) + "/charts?" + q)).series : [];
  shown.forEach(m => {
    const box = h("figure", { class: "card chart", "aria-label": "Chart of " + m.name + (m.dimension ? " " + m.dimension : "") },
      h("h3", {}, m.name + (m.dimension ? " (" + m.dimension + ")" : "") + " — now " + (Math.round(m.value * 100) / 100)));
    charts.append(box);
    const s = all.find(x => x.metric === m.name && x.dimension === m.dimension) || { points: [] };
    const xs = s.points.map(p => p[0] / 1000), ys = s.points.map(p => p[1]);
    if (!xs.length) { box.append(h("p", { class: "status" }, "No data in this range.")); return; }
    const width = Math.max(260, box.clientWidth - 32);
    new uPlot({ width, height: 180, legend: { show: false }, scales: { x: { time: true } },
      series: [{}, { label: m.name, stroke: "#0b57d0", width: 2, fill: "rgba(11,87,208,0.08)" }],
      axes: [{ stroke: "#4d5866" }, { stroke: "#4d5866", size: 60 }] }, [xs, ys], box);
    box.setAttribute("data-points", String(xs.length));
  });
}

// ------------------------------------------------------------------ routing

async function route() {
  if (!me) return;
  const hash = location.hash || "#/feed";
  try {
    if (!hash.startsWith("#/feed")) stopFeed();
    if (hash.startsWith("#/fleet")) await showFleet();
    else if (hash.startsWith("#/silences")) await showSilences();
    else if (hash.startsWith("#/enroll")) await showEnroll();
    else if (hash.startsWith("#/rules")) await showRules();
    else if (hash.startsWith("#/users")) await showUsers();
    else if (hash.startsWith("#/audit")) await showAudit();
    else if (hash.startsWith("#/device/")) await showDevice(decodeURIComponent(hash.slice(9)), 0);
    else await showFeed();
  } catch (e) {
    if (me) main().replaceChildren(h("h1", {}, "Something went wrong"), h("p", { class: "err", role: "alert" }, e.message));
  }
}

function start() {
  document.getElementById("top").hidden = false;
  // Pages a role cannot use are not offered (the API refuses them anyway).
  const admin = me.role === "msp-admin" || me.role === "tenant-admin";
  for (const [id, show] of [["enroll", me.role !== "tenant-viewer"], ["users", admin], ["audit", admin]]) {
    const a = document.getElementById("nav-" + id);
    if (a) a.hidden = !show;
  }
  document.getElementById("who").textContent = me.username + " · " + me.role + (me.tenant ? " · " + me.tenant : "");
  if (!location.hash || location.hash === "#/login") location.hash = "#/feed"; else route();
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("POST", "/auth/logout"); } catch (_) { /* gone already */ }
    me = null; showLogin("Logged out.");
  });
  try { me = await api("GET", "/auth/me"); start(); } catch (_) { showLogin(""); }
});
