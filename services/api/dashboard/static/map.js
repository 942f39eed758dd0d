// Cerdas public dashboard: the choropleth map of the national view (issue 20).
// Loaded before app.js; at run time it uses app.js's helpers (api, t, $, lang). The boundaries
// are files of the package (data/kabkota.json, data/provinsi.json: Kemendagri code and name per
// shape, and the regions that have no shape), drawn with d3-geo.
"use strict";

const MAP_TEXT = {
  id: {
    mapHeading: "Peta sebaran", mapLevel: "Wilayah", mapKabkota: "Kabupaten/kota",
    mapProvinces: "Provinsi", mapColour: "Warna menurut", mapNone: "Belum ada hasil yang dipublikasikan",
    mapNoResult: "tanpa hasil",
    mapMissing: "Daerah tanpa batas wilayah di peta", mapMissingNone: "Semua daerah pilihan ini ada di peta.",
    mapNoBands: "Instrumen ini tidak memiliki predikat: warna menurut indeks.",
    mapTitle: (framework, period, level, by) => `Peta ${framework} ${period}: ${level} menurut ${by}`,
    mapDesc: (shown, withResult) => `${shown} daerah di peta, ${withResult} di antaranya memiliki hasil yang dipublikasikan; `
      + "daerah tanpa hasil diarsir abu-abu. Angka lengkapnya ada di tabel peringkat.",
    mapOpen: "klik untuk membuka", mapSource: "Batas wilayah: BIG melalui mashadinoor/Indonesia-Geojson-2026 (MIT), disederhanakan.",
    mapFailed: "Peta tidak dapat dimuat",
  },
  en: {
    mapHeading: "Map", mapLevel: "Regions", mapKabkota: "Kabupaten/kota",
    mapProvinces: "Provinces", mapColour: "Colour by", mapNone: "No published result yet",
    mapNoResult: "no result",
    mapMissing: "Regions with no boundary on the map", mapMissingNone: "Every region of this choice is on the map.",
    mapNoBands: "This instrument has no predicates: coloured by index.",
    mapTitle: (framework, period, level, by) => `Map of ${framework} ${period}: ${level} by ${by}`,
    mapDesc: (shown, withResult) => `${shown} regions on the map, ${withResult} of them with a published result; `
      + "regions without one are hatched grey. The ranking table gives every figure.",
    mapOpen: "click to open", mapSource: "Boundaries: BIG via mashadinoor/Indonesia-Geojson-2026 (MIT), simplified.",
    mapFailed: "Could not load the map",
  },
};

const MAP_WIDTH = 960;
const MAP_NONE = "url(#map-none)";
const mapBoundaries = {};
const mapFrameworks = {};
let mapDraws = 0;
let mapLast = null;
let mapPending = null; // the choice being drawn, so a change of level meanwhile is not lost

function mapData(level) {
  mapBoundaries[level] ??= fetch(`data/${level}.json`).then((response) => {
    if (!response.ok) throw new Error(response.statusText);
    return response.json();
  }).catch((error) => {
    delete mapBoundaries[level]; // tried again on the next choice
    throw error;
  });
  return mapBoundaries[level];
}

// The index node's scale and predicate bands, from the framework's tree.
function mapFramework(id) {
  mapFrameworks[id] ??= api(`frameworks/${id}`).then((framework) => {
    const root = framework.trees[0];
    return {
      name: framework.name,
      min: Number(root.scale?.min ?? 0),
      max: Number(root.scale?.max ?? 5),
      bands: root.predicates.filter((band) => band.predicate),
    };
  }).catch((error) => {
    delete mapFrameworks[id];
    throw error;
  });
  return mapFrameworks[id];
}

function mapSvg(name, attributes = {}) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

// Bands in order, low to high, each with its colour; the index's sequential scale.
function mapScales(framework) {
  const palette = d3.quantize(d3.interpolateYlGnBu, framework.bands.length + 1).slice(1);
  const bands = framework.bands.map((band, i) => ({ ...band, colour: d3.color(palette[i]).formatHex() }));
  const index = d3.scaleSequential([framework.min, framework.max], d3.interpolateYlGnBu);
  return { bands, index: (value) => d3.color(index(value)).formatHex() };
}

// The map's choices, read from the URL hash when drawing (the hash is where they live).
function mapState() {
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  return {
    level: params.get("map") === "provinsi" ? "provinsi" : "kabkota",
    colour: params.get("colour") === "index" ? "index" : "predicate",
  };
}

// Called by app.js once the ranking of the national view is in: draw, or redraw, the map.
async function drawNationalMap(state, items) {
  const draw = ++mapDraws;
  const view = mapState();
  mapPending = { state, items };
  const status = $("#map-status");
  status.textContent = "";
  $("#map-level").value = view.level === "provinsi" ? "provinsi" : "";
  try {
    const [data, framework, results] = await Promise.all([
      mapData(view.level),
      mapFramework(state.framework),
      view.level === "provinsi" && state.province
        ? api("rankings", { framework: state.framework, period: state.period }).then((r) => r.items)
        : items,
    ]);
    if (draw !== mapDraws) return; // a newer choice is being drawn
    mapLast = { state, view, data, framework, results, items };
    renderMap();
    if (!performance.getEntriesByName("map-drawn").length) performance.mark("map-drawn");
  } catch (error) {
    if (draw === mapDraws) status.textContent = `${t("mapFailed")}: ${error.message}`;
  }
}

function renderMap() {
  const { state, view, data, framework, results } = mapLast;
  const scales = mapScales(framework);
  const byPredicate = new Map(scales.bands.map((band) => [band.predicate, band.colour]));
  const colour = scales.bands.length && view.colour === "predicate" ? "predicate" : "index";
  $("#map-colour").value = colour === "index" ? "index" : "";
  $("#map-colour").options[0].disabled = !scales.bands.length;
  const byCode = new Map(results.map((item) => [item.region, item]));
  const inProvince = (code) => !state.province || code.split(".")[0] === state.province;
  const features = data.features.filter((f) => inProvince(f.properties.code));
  const shown = { type: "FeatureCollection", features };

  const projection = d3.geoIdentity().reflectY(true).fitWidth(MAP_WIDTH, shown);
  const path = d3.geoPath(projection);
  const [[, y0], [, y1]] = path.bounds(shown);
  const height = Math.max(1, Math.ceil(y1 - y0));
  projection.translate([projection.translate()[0], projection.translate()[1] - y0]);

  const levelName = t(view.level === "provinsi" ? "mapProvinces" : "mapKabkota").toLowerCase();
  const withResult = features.filter((f) => byCode.has(f.properties.code)).length;
  const svg = mapSvg("svg", {
    viewBox: `0 0 ${MAP_WIDTH} ${height}`, role: "img", "aria-labelledby": "map-title map-desc",
    class: `map-svg map-${view.level}`,
  });
  const title = mapSvg("title", { id: "map-title" });
  title.textContent = t("mapTitle")(framework.name, state.period, levelName,
    colour === "predicate" ? t("predicate").toLowerCase() : t("index").toLowerCase());
  const desc = mapSvg("desc", { id: "map-desc" });
  desc.textContent = t("mapDesc")(features.length, withResult);
  const defs = mapSvg("defs");
  const hatch = mapSvg("pattern", {
    id: "map-none", patternUnits: "userSpaceOnUse", width: 5, height: 5, patternTransform: "rotate(45)",
  });
  hatch.append(mapSvg("rect", { width: 5, height: 5, fill: "#e6e6e6" }),
    mapSvg("line", { x1: 0, y1: 0, x2: 0, y2: 5, stroke: "#9a9a9a", "stroke-width": 1.5 }));
  defs.append(hatch);
  svg.append(title, desc, defs);

  const layer = mapSvg("g", { class: "map-shapes" });
  for (const feature of features) {
    const { code, name } = feature.properties;
    const item = byCode.get(code);
    let fill = MAP_NONE;
    if (item && colour === "predicate") fill = byPredicate.get(item.predicate) ?? scales.index(Number(item.index));
    else if (item) fill = scales.index(Number(item.index));
    const shape = mapSvg("path", {
      d: path(feature), fill, "data-code": code, "data-fill": fill, "fill-rule": "evenodd",
    });
    if (item) {
      shape.dataset.index = item.index;
      shape.dataset.predicate = item.predicate ?? "";
    }
    const hover = mapSvg("title");
    hover.textContent = item
      ? `${name}: ${item.index}${item.predicate ? ` · ${item.predicate}` : ""} (${t("mapOpen")})`
      : `${name}: ${t("mapNone")}`;
    shape.append(hover);
    layer.append(shape);
  }
  svg.append(layer);
  // A shape opens what its ranking link opens: the region view (a province: its ranking).
  svg.addEventListener("click", (event) => {
    const code = event.target.closest?.("[data-code]")?.dataset.code;
    if (!code) return;
    const query = `framework=${state.framework}&period=${state.period}`;
    location.hash = view.level === "provinsi"
      ? `#/national?${query}&province=${code}&map=provinsi`
      : `#/region/${code}?${query}`;
  });
  $("#map").replaceChildren(svg);

  drawMapLegend(scales, colour, framework);
  drawMapMissing(data.missing.filter((region) => inProvince(region.code)), byCode, state);
}

function drawMapLegend(scales, colour, framework) {
  const legend = $("#map-legend");
  legend.replaceChildren();
  const swatch = (fill) => {
    const svg = mapSvg("svg", { width: 18, height: 14, "aria-hidden": "true", class: "swatch" });
    svg.append(mapSvg("rect", { width: 18, height: 14, fill, stroke: "#888", "stroke-width": 0.5 }));
    return svg;
  };
  if (colour === "predicate") {
    for (const band of scales.bands) {
      const li = document.createElement("li");
      li.dataset.predicate = band.predicate;
      li.dataset.fill = band.colour;
      const range = band.to == null ? `≥ ${band.from}` : `${band.from}–${band.to}`;
      li.append(swatch(band.colour), `${band.predicate} (${range})`);
      legend.append(li);
    }
  } else {
    // A ramp from the scale's low end to its high end, with the ends and the middle marked.
    const li = document.createElement("li");
    li.className = "ramp";
    const ramp = mapSvg("svg", { viewBox: "0 0 200 30", class: "ramp-svg", role: "img", "aria-label": t("index") });
    const gradient = mapSvg("linearGradient", { id: "map-ramp" });
    for (let i = 0; i <= 10; i += 1) {
      const value = framework.min + (framework.max - framework.min) * (i / 10);
      gradient.append(mapSvg("stop", { offset: `${i * 10}%`, "stop-color": scales.index(value) }));
    }
    const defs = mapSvg("defs");
    defs.append(gradient);
    ramp.append(defs, mapSvg("rect", { x: 5, y: 0, width: 190, height: 12, fill: "url(#map-ramp)" }));
    for (const [x, value, anchor] of [[5, framework.min, "start"], [100, (framework.min + framework.max) / 2, "middle"], [195, framework.max, "end"]]) {
      const label = mapSvg("text", { x, y: 26, "text-anchor": anchor, "font-size": 11 });
      label.textContent = String(value);
      ramp.append(label);
    }
    li.append(ramp);
    legend.append(li);
    if (!scales.bands.length) {
      const note = document.createElement("li");
      note.className = "note";
      note.textContent = t("mapNoBands");
      legend.append(note);
    }
  }
  const none = document.createElement("li");
  none.dataset.predicate = "";
  none.dataset.fill = MAP_NONE;
  none.id = "map-legend-none";
  none.append(swatch(MAP_NONE), t("mapNone"));
  legend.append(none);
}

function drawMapMissing(missing, byCode, state) {
  const list = $("#map-missing");
  list.replaceChildren();
  for (const region of missing) {
    const item = byCode.get(region.code);
    const li = document.createElement("li");
    li.dataset.code = region.code;
    const link = document.createElement("a");
    link.href = `#/region/${region.code}?framework=${state.framework}&period=${state.period}`;
    link.textContent = region.name;
    li.append(link, item ? `: ${item.index}${item.predicate ? ` · ${item.predicate}` : ""}` : ` (${t("mapNoResult")})`);
    list.append(li);
  }
  $("#map-missing-none").hidden = missing.length > 0;
}

// The map's two choices live in the URL hash like the filters, without reloading the ranking.
function setMapChoice(name, value) {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  if (value) params.set(name, value);
  else params.delete(name);
  history.replaceState(null, "", `#${path || "/national"}?${params}`);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#map-level").addEventListener("change", (event) => {
    setMapChoice("map", event.target.value);
    const basis = mapLast ?? mapPending;
    if (basis) drawNationalMap(basis.state, basis.items);
  });
  $("#map-colour").addEventListener("change", (event) => {
    setMapChoice("colour", event.target.value);
    if (!mapLast) return;
    mapLast.view = { ...mapLast.view, colour: event.target.value === "index" ? "index" : "predicate" };
    renderMap();
  });
});

// A new choice clears the map at once, as app.js clears the ranking: a choice whose data cannot
// be loaded must not leave the previous one's colours on screen.
window.addEventListener("hashchange", () => {
  mapDraws += 1;
  mapLast = null;
  mapPending = null;
  for (const id of ["#map", "#map-legend", "#map-missing"]) $(id).replaceChildren();
});

// Start loading the shapes with the page, alongside the API calls, when the national view opens.
if (!location.hash.startsWith("#/region")) mapData("kabkota");
