// Cerdas public dashboard, the region view's parts beyond the trend and the tree: the gap-to-target
// plan, the super-app metrics that feed the region's indices, the region picker and the CSV links.
// Loaded before app.js, whose helpers (api, t, $, cell, lang, frameworks) it uses when called.
"use strict";

const REGION_TEXT = {
  id: {
    pickerLabel: "Cari daerah", pickRegion: "Cari daerah (nama atau kode)", open: "Buka",
    pickerLoading: "Memuat daftar daerah…", notFound: (q) => `Tidak ada kabupaten/kota bernama “${q}”.`,
    ambiguous: (n) => `${n} daerah cocok: pilih salah satu dari daftar.`,
    rankingCsv: "Unduh peringkat (CSV)", treeCsv: "Unduh rincian indeks (CSV)", planCsv: "Unduh rencana (CSV)",
    trendCaption: "Indeks, instrumen, predikat dan kenaikan per periode",
    treeCaption: "Komponen, aspek dan indikator dengan nilai, bobot, kontribusi dan jumlah bukti",
    selfAssessed: "Indeks penilaian mandiri", verified: "Indeks terverifikasi",
    planHeading: "Rencana menuju target",
    planIntro: "Langkah termurah pada indikator daerah sendiri untuk mencapai target, dihitung oleh API dari nilai yang berlaku.",
    target: "Target (predikat atau nilai indeks)", calculate: "Hitung",
    planCaption: "Indikator yang dinaikkan, dari nilai berapa ke berapa, dan kontribusinya pada indeks",
    indicator: "Indikator", from: "Dari", to: "Ke", steps: "Langkah",
    planSummary: (p) => `Dari ${p.current.index} (${p.current.predicate ?? "—"}) menjadi ${p.index} (${p.predicate ?? "—"}): ${p.steps.length} indikator, ${p.cost} langkah kenaikan.`,
    unreachable: "Target tidak tercapai walau semua indikator bernilai maksimum; langkah di bawah menuju indeks tertinggi yang dapat dicapai.",
    atTarget: "Indeks sudah mencapai target ini.",
    noPlan: "Rencana tidak tersedia: indeks ini berasal dari nilai resmi komponen atau indeks, bukan dari nilai indikator.",
    noPlanComputed: "Rencana tidak tersedia: indeks ini dihitung dari indeks lain dan metrik, tanpa indikator yang dinilai.",
    noIndex: "Rencana tidak tersedia: indeks belum dapat dihitung karena ada nilai yang belum diisi.",
    topPredicate: "Indeks sudah pada predikat tertinggi; masukkan nilai indeks sebagai target.",
    noBands: "Instrumen ini tidak memberi predikat; masukkan nilai indeks sebagai target.",
    metricsHeading: "Metrik super-app yang masuk indeks", feeds: "Masuk ke indeks",
    metricsCaption: "Nilai indikator berbasis metrik per periode dan indeks yang memakainya",
    noMetrics: "Belum ada metrik super-app yang dipublikasikan untuk daerah ini.",
    ofTarget: "% dari target", countOf: (a, b) => `${a} dari ${b}`,
    metricLatest: (name, value, period) => `${name}: ${value} pada ${period}`,
    metricSources: (keys) => `Dihitung dari metrik ${keys.join(" ÷ ")} yang dikirim super-app daerah.`,
    metricsChart: "Grafik nilai indikator berbasis metrik per periode.",
  },
  en: {
    pickerLabel: "Find a region", pickRegion: "Find a region (name or code)", open: "Open",
    pickerLoading: "Loading the regions…", notFound: (q) => `No kabupaten/kota is called “${q}”.`,
    ambiguous: (n) => `${n} regions match: pick one from the list.`,
    rankingCsv: "Download the ranking (CSV)", treeCsv: "Download the breakdown (CSV)", planCsv: "Download the plan (CSV)",
    trendCaption: "Index, instrument, predicate and change per period",
    treeCaption: "Components, aspects and indicators with their value, weight, contribution and evidence count",
    selfAssessed: "Self-assessed index", verified: "Verified index",
    planHeading: "Plan to a target",
    planIntro: "The cheapest steps on the region's own indicators to reach a target, computed by the API from the values that count.",
    target: "Target (predicate or index value)", calculate: "Calculate",
    planCaption: "Indicators to raise, from which value to which, and their contribution to the index",
    indicator: "Indicator", from: "From", to: "To", steps: "Steps",
    planSummary: (p) => `From ${p.current.index} (${p.current.predicate ?? "—"}) to ${p.index} (${p.predicate ?? "—"}): ${p.steps.length} indicators, ${p.cost} steps up.`,
    unreachable: "The target is out of reach even with every indicator at its maximum; the steps below lead to the best index reachable.",
    atTarget: "The index already reaches this target.",
    noPlan: "No plan: this index comes from official component or index values, not from indicator values.",
    noPlanComputed: "No plan: this index is computed from other indices and metrics, with no assessed indicators.",
    noIndex: "No plan: the index cannot be computed yet, as values are missing.",
    topPredicate: "The index is at the top predicate already; enter an index value as the target.",
    noBands: "This instrument gives no predicates; enter an index value as the target.",
    metricsHeading: "Super-app metrics that feed the index", feeds: "Feeds the index",
    metricsCaption: "Metric-driven indicators' values per period and the index that uses them",
    noMetrics: "No published super-app metrics for this region yet.",
    ofTarget: "% of target", countOf: (a, b) => `${a} of ${b}`,
    metricLatest: (name, value, period) => `${name}: ${value} in ${period}`,
    metricSources: (keys) => `Computed from the metrics ${keys.join(" ÷ ")} pushed by the region's super-app.`,
    metricsChart: "Chart of the metric-driven indicators' values per period.",
  },
};

const frameworkDetails = new Map();
let regionOptions = null;
let planFor = null;
let viewRun = 0; // bumped by each region view: answers for an older one are dropped

function frameworkDetail(id) {
  if (!frameworkDetails.has(id)) {
    const loading = api(`frameworks/${id}`);
    loading.catch(() => frameworkDetails.delete(id));
    frameworkDetails.set(id, loading);
  }
  return frameworkDetails.get(id);
}

function indexNode(detail) {
  return detail.trees.find((node) => node.id === detail.index_node) || detail.trees[0];
}

function* walk(node) {
  yield node;
  for (const child of node.children || []) yield* walk(child);
}

function v1(path, params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null));
  return `../v1/${path}?${query}`;
}

// A chart is one image with one label: Plot labels its marks' groups ("line", "rule"), which ARIA
// does not allow on a <g> without a role, and which say nothing a reader needs.
function labelChart(svg, label) {
  for (const element of svg.querySelectorAll("[aria-label], [aria-description]")) {
    element.removeAttribute("aria-label");
    element.removeAttribute("aria-description");
  }
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
}

function showLink(selector, href) {
  const link = $(selector);
  link.href = href;
  link.hidden = false;
}

// The national view: its ranking as CSV, from the export endpoint, for the filters shown.
function updateRankingExport(params) {
  const state = defaults(params);
  $("#ranking-export").href = v1("rankings/export", {
    framework: state.framework, period: state.period, province: state.province, format: "csv", lang,
  });
}

// The header's region picker: an input with a datalist of the 514 kabupaten/kota, loaded once on
// first use; a name, a code or "Name (code)" opens that region on the instrument and period shown.
async function loadRegionOptions() {
  if (!regionOptions) {
    regionOptions = api("regions", { limit: 1000 }).then(
      (page) => page.items.filter((region) => region.kind !== "provinsi"),
      (error) => { regionOptions = null; throw error; },
    );
    const regions = await regionOptions;
    $("#region-options").replaceChildren(
      ...regions.map((region) => new Option(`${region.name} (${region.code})`, `${region.name} (${region.code})`)),
    );
  }
  return regionOptions;
}

function matchRegion(regions, typed) {
  const query = typed.trim().toLowerCase();
  const code = query.match(/(\d{2}\.\d{2})\)?$/);
  if (code) return regions.filter((region) => region.code === code[1]);
  const exact = regions.filter((region) => region.name.toLowerCase() === query);
  if (exact.length) return exact;
  return regions.filter((region) => region.name.toLowerCase().includes(query));
}

async function pickRegion(event) {
  event.preventDefault();
  const status = $("#picker-status");
  const typed = $("#region-search").value;
  if (!typed.trim()) return;
  status.textContent = t("pickerLoading");
  try {
    const found = matchRegion(await loadRegionOptions(), typed);
    if (found.length !== 1) {
      status.textContent = found.length ? t("ambiguous")(found.length) : t("notFound")(typed.trim());
      return;
    }
    status.textContent = "";
    $("#region-search").value = "";
    const { params } = parseHash();
    const state = defaults(params);
    location.hash = `#/region/${found[0].code}?framework=${state.framework}&period=${state.period}`;
  } catch (error) {
    status.textContent = `${t("failed")}: ${error.message}`;
  }
}

// Gap to target: the next predicate up by default, or a target the reader types.
async function showPlan(assessment, results, run) {
  const status = $("#plan-status");
  const entered = results.nodes.some((n) => n.value_from === "verified" || n.value_from === "self");
  const official = results.nodes.some((n) => n.value_from === "official");
  const scored = results.result && results.result.index != null;
  if (official || !entered || !scored) {
    status.textContent = t(official ? "noPlan" : entered ? "noIndex" : "noPlanComputed");
    return;
  }
  let bands;
  try {
    bands = indexNode(await frameworkDetail(assessment.framework)).predicates;
  } catch (error) {
    if (run === viewRun) status.textContent = `${t("failed")}: ${error.message}`;
    return;
  }
  if (run !== viewRun) return;
  const above = bands.filter((band) => Number(band.from) > Number(results.result.index));
  $("#plan-targets").replaceChildren(...above.map((band) => new Option(band.predicate, band.predicate)));
  planFor = assessment.id;
  $("#plan-form").hidden = false;
  $("#plan-target").value = above.length ? above[0].predicate : "";
  if (!above.length) {
    status.textContent = bands.length ? t("topPredicate") : t("noBands");
    return;
  }
  await runPlan(assessment.id, above[0].predicate);
}

async function runPlan(assessmentId, target) {
  const status = $("#plan-status");
  status.textContent = t("loading");
  const body = $("#plan tbody");
  body.replaceChildren();
  try {
    const plan = await api(`assessments/${assessmentId}/plan`, { target });
    if (planFor !== assessmentId) return; // the reader has moved on
    for (const step of plan.steps) {
      const row = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = `${step.node} ${step.name}`;
      row.append(th);
      cell(row, step.from, "num");
      cell(row, step.to, "num");
      cell(row, String(step.steps), "num");
      cell(row, step.contribution, "num");
    }
    $("#plan").hidden = !plan.steps.length;
    $("#plan-summary").textContent = plan.steps.length ? t("planSummary")(plan) : t("atTarget");
    status.textContent = plan.reachable ? "" : t("unreachable");
    showLink("#plan-export", v1(`assessments/${assessmentId}/plan/export`, { target, format: "csv", lang }));
  } catch (error) {
    status.textContent = `${t("failed")}: ${error.message}`;
  }
}

// Metric-driven leaves (e.g. app integration: integrated apps ÷ target) of every instrument that
// has one, as published for the region, period by period.
async function showMetrics(code, run) {
  const status = $("#metrics-status");
  const body = $("#metrics tbody");
  body.replaceChildren();
  $("#metrics").hidden = true;
  $("#metrics-latest").replaceChildren();
  $("#metrics-chart").replaceChildren();
  status.textContent = t("loading");
  try {
    const details = await Promise.all(frameworks.map((f) => frameworkDetail(f.id)));
    const leavesOf = new Map();
    for (const detail of details) {
      const leaves = [...walk(indexNode(detail))].filter((node) => node.input === "metric");
      if (leaves.length) leavesOf.set(detail.id, leaves);
    }
    const pages = await Promise.all(
      [...leavesOf.keys()].map((id) => api("assessments", { framework: id, region: code, limit: 100 })),
    );
    const scored = pages.flatMap((page) => page.items).filter((a) => a.result && !a.internal);
    const trees = await Promise.all(scored.map((a) => api(`assessments/${a.id}/results`)));
    if (run !== viewRun) return;
    const points = [];
    for (const tree of trees) {
      const byId = new Map(tree.nodes.map((node) => [node.id, node]));
      for (const leaf of leavesOf.get(tree.framework)) {
        const node = byId.get(leaf.id);
        if (node && node.value != null) points.push({ period: tree.period, framework: tree.framework, leaf, node });
      }
    }
    points.sort((a, b) => a.period - b.period || a.leaf.id.localeCompare(b.leaf.id));
    if (!points.length) {
      status.textContent = t("noMetrics");
      return;
    }
    for (const point of points) {
      const row = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = String(point.period);
      row.append(th);
      cell(row, point.leaf.name);
      cell(row, metricValue(point), "num");
      cell(row, frameworkName(point.framework));
      cell(row, point.node.contribution, "num");
    }
    $("#metrics").hidden = false;
    const latest = points[points.length - 1];
    const paragraph = document.createElement("p");
    paragraph.id = "metric-latest";
    paragraph.className = "metric-latest";
    paragraph.textContent = t("metricLatest")(latest.leaf.name, metricValue(latest), latest.period);
    const meter = document.createElement("meter");
    meter.min = Number(latest.leaf.scale.min);
    meter.max = Number(latest.leaf.scale.max);
    meter.value = Number(latest.node.value);
    meter.setAttribute("aria-labelledby", "metric-latest");
    const sources = document.createElement("p");
    sources.className = "note";
    sources.textContent = t("metricSources")(latest.leaf.metric.keys);
    $("#metrics-latest").append(paragraph, meter, sources);
    drawMetrics(points);
    status.textContent = "";
  } catch (error) {
    if (run === viewRun) status.textContent = `${t("failed")}: ${error.message}`;
  }
}

// A ratio of two metrics times 100 is a share of the target: "148 of 327 (45.26% of target)"
// with the metric values the published result was computed from (results of older versions
// may not carry them: the share alone then).
function metricValue(point) {
  const rule = point.leaf.metric;
  if (!rule || rule.keys.length !== 2 || Number(rule.multiplier) !== 100) return point.node.value;
  const share = `${point.node.value}${t("ofTarget")}`;
  const [count, target] = rule.keys.map((key) => (point.node.metrics || {})[key]);
  return count != null && target != null ? `${t("countOf")(count, target)} (${share})` : share;
}

function drawMetrics(points) {
  const chart = $("#metrics-chart");
  const series = points.map((p) => ({ period: p.period, value: Number(p.node.value), name: p.leaf.name, text: p.node.value }));
  if (new Set(series.map((p) => p.period)).size < 2 || !window.Plot) return;
  const svg = Plot.plot({
    width: Math.min(chart.clientWidth || 640, 720),
    height: 180,
    marginLeft: 40,
    x: { label: t("period"), tickFormat: "d", ticks: [...new Set(series.map((p) => p.period))] },
    y: { label: t("value"), grid: true, zero: true },
    marks: [
      Plot.lineY(series, { x: "period", y: "value", z: "name", stroke: "#0b5394" }),
      Plot.dot(series, { x: "period", y: "value", fill: "#0b5394" }),
      Plot.text(series, { x: "period", y: "value", text: "text", dy: -10 }),
    ],
  });
  labelChart(svg, t("metricsChart"));
  chart.append(svg);
}

// Called by app.js when a region view starts loading: nothing of the previous one stays.
function resetRegionParts() {
  planFor = null;
  viewRun += 1;
  $("#tree-export").hidden = true;
  $("#plan-form").hidden = true;
  $("#plan").hidden = true;
  $("#plan-export").hidden = true;
  for (const id of ["#plan tbody", "#metrics tbody", "#metrics-latest", "#metrics-chart"]) $(id).replaceChildren();
  $("#metrics").hidden = true;
  for (const id of ["#plan-summary", "#plan-status", "#metrics-status"]) $(id).textContent = "";
}

// Called by app.js once the assessment shown is known (or not: assessment null).
async function showRegionParts(code, assessment, results) {
  const parts = [showMetrics(code, viewRun)];
  if (assessment) {
    showLink("#tree-export", v1(`assessments/${assessment.id}/results/export`, { format: "csv", lang }));
    parts.push(showPlan(assessment, results, viewRun));
  }
  await Promise.all(parts);
}

function installRegionParts() {
  $("#picker").addEventListener("submit", pickRegion);
  $("#region-search").addEventListener("focus", () => loadRegionOptions().catch(() => {}), { once: true });
  $("#plan-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const target = $("#plan-target").value.trim();
    if (planFor && target) runPlan(planFor, target);
  });
}
