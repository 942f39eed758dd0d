// Cerdas public dashboard: reads only the public JSON API (/v1/...) of the host that served it.
"use strict";

const TEXT = {
  id: {
    skip: "Langsung ke isi", title: "Dasbor Cerdas", language: "Bahasa",
    nationalHeading: "Peringkat nasional", provincialHeading: "Peringkat provinsi",
    instrument: "Instrumen", period: "Periode", province: "Provinsi",
    allProvinces: "Semua provinsi", show: "Tampilkan", rankingHeading: "Peringkat",
    rank: "Peringkat", region: "Daerah", index: "Indeks", predicate: "Predikat",
    movement: "Perubahan peringkat", countsHeading: "Jumlah daerah per predikat",
    regions: "Daerah",
    back: "← Kembali ke peringkat", trendHeading: "Indeks dari tahun ke tahun",
    improvement: "Kenaikan", treeHeading: "Rincian indeks", node: "Komponen", value: "Nilai",
    weight: "Bobot", contribution: "Kontribusi", evidence: "Bukti",
    footer: "Hanya hasil yang telah dipublikasikan, dibaca dari API publik Cerdas.",
    loading: "Memuat…", empty: "Belum ada hasil yang dipublikasikan untuk pilihan ini.",
    failed: "Data tidak dapat dimuat", coverage: (w, n, p) => `${w} dari ${n} kabupaten/kota memiliki hasil (${p}%).`,
    nationalRank: "Peringkat nasional", provinceRank: "Peringkat provinsi", of: "dari",
    previous: "Indeks periode sebelumnya", changed: "instrumen berganti", noAssessment: "Tidak ada penilaian yang dipublikasikan untuk periode ini.",
    chartLabel: "Grafik indeks per periode; garis putus-putus menandai pergantian instrumen.",
    switchTo: "English", switchLang: "en",
    signIn: "Masuk", tokenLabel: "Kunci API atau token SSO", signInButton: "Masuk", signOut: "Keluar",
    signedInAs: (me) => `Masuk sebagai ${me.name} (${me.role})`,
    signInFailed: "Kunci atau token ditolak", footerSignedIn: (me) =>
      `Hasil yang boleh dilihat ${me.name} (${me.role}), termasuk yang belum dipublikasikan bila perannya mengizinkan.`,
  },
  en: {
    skip: "Skip to content", title: "Cerdas dashboard", language: "Language",
    nationalHeading: "National ranking", provincialHeading: "Provincial ranking",
    instrument: "Instrument", period: "Period", province: "Province",
    allProvinces: "All provinces", show: "Show", rankingHeading: "Ranking",
    rank: "Rank", region: "Region", index: "Index", predicate: "Predicate",
    movement: "Rank movement", countsHeading: "Regions per predicate",
    regions: "Regions",
    back: "← Back to the ranking", trendHeading: "The index over the years",
    improvement: "Change", treeHeading: "How the index is made up", node: "Component", value: "Value",
    weight: "Weight", contribution: "Contribution", evidence: "Evidence",
    footer: "Published results only, read from Cerdas's public API.",
    loading: "Loading…", empty: "No published results for this choice yet.",
    failed: "Could not load the data", coverage: (w, n, p) => `${w} of ${n} kabupaten/kota have results (${p}%).`,
    nationalRank: "National rank", provinceRank: "Provincial rank", of: "of",
    previous: "Previous period's index", changed: "instrument changed", noAssessment: "No published assessment for this period.",
    chartLabel: "Chart of the index per period; a dashed line marks a change of instrument.",
    switchTo: "Bahasa Indonesia", switchLang: "id",
    signIn: "Sign in", tokenLabel: "API key or SSO token", signInButton: "Sign in", signOut: "Sign out",
    signedInAs: (me) => `Signed in as ${me.name} (${me.role})`,
    signInFailed: "The key or token was refused", footerSignedIn: (me) =>
      `The results ${me.name} (${me.role}) may see, unpublished ones included where the role allows.`,
  },
};

for (const code of Object.keys(TEXT)) Object.assign(TEXT[code], REGION_TEXT[code]); // region.js

let lang = localStorage.getItem("cerdas-lang") === "en" ? "en" : "id";
let frameworks = [];
let provinces = [];
const t = (key) => TEXT[lang][key] ?? MAP_TEXT[lang][key]; // MAP_TEXT: map.js
const $ = (selector) => document.querySelector(selector);

// Signed in: a key or an SSO bearer token for this tab only (sessionStorage, never localStorage),
// sent with every read, so the API shows what that caller may see (a ministry-admin: unpublished
// results too). Signed out, the pages are anonymous: published results only.
let token = sessionStorage.getItem("cerdas-token");
let me = null;

async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null));
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`../v1/${path}${query.size ? "?" + query : ""}`, { headers });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch { /* not JSON */ }
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

// The CSV links. Anonymous, a link is a plain download. Signed in, a link cannot carry the
// bearer, so the file is fetched with it (the same rows the pages show, unpublished ones
// included where the role allows) and handed to the browser as a download of the same name.
async function downloadSigned(link) {
  const status = link.closest("section")?.querySelector("[role=status]") ?? $("#national-status");
  try {
    const response = await fetch(link.href, { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch { /* not JSON */ }
      throw new Error(detail);
    }
    const disposition = response.headers.get("Content-Disposition") || "";
    const name = /filename="([^"]+)"/.exec(disposition)?.[1] || "cerdas.csv";
    const url = URL.createObjectURL(await response.blob());
    const anchor = Object.assign(document.createElement("a"), { href: url, download: name });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    status.textContent = `${t("failed")}: ${error.message}`;
  }
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text ?? "—";
  if (className) td.className = className;
  return td;
}

function signed(value) {
  if (value == null) return "—";
  const number = Number(value);
  return number > 0 ? `+${value}` : String(value);
}

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of document.querySelectorAll("[data-i18n-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel));
  }
  const button = $("#lang");
  button.textContent = t("switchTo");
  button.lang = t("switchLang");
  button.setAttribute("aria-pressed", String(lang === "en"));
  document.title = t("title");
  showSignedIn();
}

function showSignedIn() {
  $("#signin-form").hidden = Boolean(me);
  $("#signed-in").hidden = !me;
  $("#signed-in-as").textContent = me ? t("signedInAs")(me) + " " : "";
  $("#footer").textContent = me ? t("footerSignedIn")(me) : t("footer");
}

async function signIn(candidate) {
  const previous = token;
  token = candidate;
  try {
    me = await api("me");
  } catch (error) {
    token = previous;
    $("#signin-status").textContent = `${t("signInFailed")}: ${error.message}`;
    return false;
  }
  sessionStorage.setItem("cerdas-token", token);
  $("#signin-status").textContent = "";
  showSignedIn();
  return true;
}

function signOut() {
  token = null;
  me = null;
  sessionStorage.removeItem("cerdas-token");
  showSignedIn();
}

function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query) };
}

function frameworkName(id) {
  const framework = frameworks.find((f) => f.id === id);
  return framework ? framework.name : id;
}

function periodsOf(framework) {
  const now = new Date().getFullYear();
  const from = framework.in_force.from ?? now - 5;
  const to = Math.min(framework.in_force.to ?? now, now);
  const years = [];
  for (let year = to; year >= from; year -= 1) years.push(year);
  return years;
}

function fillFilters(state) {
  const select = $("#f-framework");
  select.replaceChildren(...frameworks.map((f) => new Option(f.name, f.id)));
  select.value = state.framework;
  const framework = frameworks.find((f) => f.id === state.framework) || frameworks[0];
  $("#f-period").replaceChildren(...periodsOf(framework).map((y) => new Option(String(y), String(y))));
  $("#f-period").value = String(state.period);
  const province = $("#f-province");
  province.replaceChildren(province.options[0], ...provinces.map((p) => new Option(p.name, p.code)));
  province.value = state.province || "";
}

function defaults(params) {
  const framework = frameworks.find((f) => f.id === params.get("framework"))
    || frameworks.find((f) => f.id === "spbe-2020") || frameworks[0];
  const period = Number(params.get("period")) || periodsOf(framework)[0];
  return { framework: framework.id, period, province: params.get("province") || "" };
}

async function showNational(params) {
  const state = defaults(params);
  fillFilters(state);
  const heading = $("#national-heading");
  heading.dataset.i18n = state.province ? "provincialHeading" : "nationalHeading";
  heading.textContent = t(heading.dataset.i18n);
  const status = $("#national-status");
  status.textContent = t("loading");
  const body = $("#ranking tbody");
  const counts = $("#counts tbody");
  body.replaceChildren();
  counts.replaceChildren();
  $("#coverage").textContent = "";
  try {
    const query = { framework: state.framework, period: state.period, province: state.province };
    const [ranking, dashboard] = await Promise.all([api("rankings", query), api("dashboard", query)]);
    for (const item of ranking.items) {
      const row = body.insertRow();
      cell(row, String(item.rank), "num");
      const link = document.createElement("a");
      link.href = `#/region/${item.region}?framework=${state.framework}&period=${state.period}`;
      link.textContent = item.name;
      row.insertCell().append(link);
      cell(row, item.index, "num");
      cell(row, item.predicate);
      cell(row, signed(item.movement), "num");
    }
    for (const [predicate, count] of Object.entries(dashboard.predicates)) {
      const row = counts.insertRow();
      cell(row, predicate);
      cell(row, String(count), "num");
    }
    const c = dashboard.coverage;
    $("#coverage").textContent = t("coverage")(c.with_results, c.regions, c.percent);
    status.textContent = ranking.items.length ? "" : t("empty");
    await drawNationalMap(state, ranking.items); // map.js
  } catch (error) {
    status.textContent = `${t("failed")}: ${error.message}`;
  }
}

function drawTrend(trend) {
  const chart = $("#trend-chart");
  chart.replaceChildren();
  const points = trend.items.filter((p) => p.index != null).map((p) => ({ ...p, value: Number(p.index) }));
  if (!points.length || !window.Plot) return;
  const changes = trend.items.filter((p) => p.instrument_changed).map((p) => p.period - 0.5);
  const svg = Plot.plot({
    width: Math.min(chart.clientWidth || 640, 720),
    height: 240,
    marginLeft: 40,
    x: { label: t("period"), tickFormat: "d", ticks: points.map((p) => p.period) },
    y: { label: t("index"), grid: true, zero: true },
    marks: [
      Plot.ruleX(changes, { strokeDasharray: "4,3", stroke: "#8a5a00" }),
      Plot.text(changes, { x: (d) => d, frameAnchor: "top", text: () => t("changed"), dy: 4, fill: "#8a5a00" }),
      Plot.lineY(points, { x: "period", y: "value", z: "framework", stroke: "#0b5394" }),
      Plot.dot(points, { x: "period", y: "value", fill: "#0b5394", title: (p) => `${p.period}: ${p.index}` }),
      Plot.text(points, { x: "period", y: "value", text: "index", dy: -10 }),
    ],
  });
  labelChart(svg, t("chartLabel"));
  chart.append(svg);
}

function depthOf(node, byId) {
  let depth = 0;
  for (let parent = node.parent; parent && byId.has(parent); parent = byId.get(parent).parent) depth += 1;
  return depth;
}

async function showRegion(code, params) {
  const status = $("#region-status");
  status.textContent = t("loading");
  const state = defaults(params);
  const framework = frameworks.find((f) => f.id === state.framework);
  $("#back").href = `#/national?framework=${state.framework}&period=${state.period}`;
  for (const id of ["#figures", "#trend tbody", "#tree tbody", "#trend-chart"]) $(id).replaceChildren();
  resetRegionParts();
  try {
    const [region, trend, assessments] = await Promise.all([
      api(`regions/${code}`),
      api("trends", { family: framework.family, region: code }),
      api("assessments", { framework: state.framework, region: code, period: state.period }),
    ]);
    $("#region-heading").textContent = `${region.name} — ${framework.name} ${state.period}`;
    for (const point of trend.items) {
      const row = $("#trend tbody").insertRow();
      const period = document.createElement("th");
      period.scope = "row";
      const link = document.createElement("a");
      link.href = `#/region/${code}?framework=${point.framework}&period=${point.period}`;
      link.textContent = String(point.period);
      if (point.framework === state.framework && point.period === state.period) {
        link.setAttribute("aria-current", "page");
      }
      period.append(link);
      row.append(period);
      cell(row, frameworkName(point.framework) + (point.instrument_changed ? ` (${t("changed")})` : ""));
      cell(row, point.index, "num");
      cell(row, point.predicate);
      cell(row, signed(point.improvement), "num");
    }
    drawTrend(trend);
    const [assessment] = assessments.items;
    if (!assessment) {
      status.textContent = t("noAssessment");
      await showRegionParts(code, null, null);
      return;
    }
    const [summary, results] = await Promise.all([
      api(`assessments/${assessment.id}/summary`),
      api(`assessments/${assessment.id}/results`),
    ]);
    const figures = [
      [t("index"), summary.index, "figure-index"],
      [t("predicate"), summary.predicate],
      [t("nationalRank"), summary.rank.national && `${summary.rank.national} ${t("of")} ${summary.rank.of_national}`],
      [t("provinceRank"), summary.rank.province && `${summary.rank.province} ${t("of")} ${summary.rank.of_province}`],
      [t("previous"), summary.previous_index, "figure-previous"],
      [t("improvement"), signed(summary.improvement), "figure-improvement"],
      [t("selfAssessed"), summary.indices.self_assessed.value, "figure-self", summary.indices.self_assessed.predicate],
      [t("verified"), summary.indices.verified.value, "figure-verified", summary.indices.verified.predicate],
    ];
    for (const [label, value, id, predicate] of figures) {
      const wrapper = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = label;
      dd.textContent = value ?? "—";
      if (id) dd.id = id;
      if (predicate) {
        const sub = document.createElement("span");
        sub.className = "sub";
        sub.textContent = predicate;
        dd.append(" ", sub);
      }
      wrapper.append(dt, dd);
      $("#figures").append(wrapper);
    }
    const byId = new Map(results.nodes.map((n) => [n.id, n]));
    for (const node of results.nodes) {
      const row = $("#tree tbody").insertRow();
      const name = document.createElement("th");
      name.scope = "row";
      name.textContent = `${node.id} ${node.name}`;
      row.append(name);
      name.style.paddingInlineStart = `${0.5 + depthOf(node, byId) * 1.25}rem`;
      cell(row, node.value, "num");
      cell(row, node.weight, "num");
      cell(row, node.contribution, "num");
      cell(row, String(node.evidence_count), "num");
    }
    status.textContent = "";
    await showRegionParts(code, assessment, results);
  } catch (error) {
    status.textContent = `${t("failed")}: ${error.message}`;
  }
}

async function route() {
  const { parts, params } = parseHash();
  const region = parts[0] === "region" && parts[1];
  $("#national").hidden = Boolean(region);
  $("#region").hidden = !region;
  if (region) await showRegion(region, params);
  else {
    updateRankingExport(params);
    await showNational(params);
  }
}

async function start() {
  applyLanguage();
  installRegionParts();
  $("#lang").addEventListener("click", () => {
    lang = lang === "id" ? "en" : "id";
    localStorage.setItem("cerdas-lang", lang);
    applyLanguage();
    route();
  });
  $("#f-framework").addEventListener("change", (event) => {
    const framework = frameworks.find((f) => f.id === event.target.value);
    const periods = periodsOf(framework);
    $("#f-period").replaceChildren(...periods.map((y) => new Option(String(y), String(y))));
  });
  $("#filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const query = new URLSearchParams([...form].filter(([, v]) => v !== ""));
    location.hash = `#/national?${query}`;
  });
  $("#signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const field = $("#signin-token");
    if (await signIn(field.value.trim())) {
      field.value = "";
      $("#signin").open = false;
      route();
    }
  });
  document.addEventListener("click", (event) => {
    const link = event.target.closest?.("a[download][href]");
    if (!link || !token || link.href.startsWith("blob:")) return;
    event.preventDefault();
    downloadSigned(link);
  });
  $("#signout").addEventListener("click", () => {
    signOut();
    route();
  });
  if (token && !(await signIn(token))) signOut(); // a stored token that no longer works
  window.addEventListener("hashchange", () => {
    route();
    $("#main").focus();
  });
  try {
    const [frameworkPage, provincePage] = await Promise.all([
      api("frameworks"),
      api("regions", { kind: "provinsi", limit: 100 }),
    ]);
    frameworks = frameworkPage.items;
    provinces = provincePage.items;
  } catch (error) {
    $("#national-status").textContent = `${t("failed")}: ${error.message}`;
    $("#national").hidden = false;
    return;
  }
  await route();
  document.body.dataset.ready = "true";
}

start();
