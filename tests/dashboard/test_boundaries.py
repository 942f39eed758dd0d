"""The map's boundary files: names matched to Kemendagri codes (tools/boundaries.py), and the
shipped files agreeing with the region list Cerdas seeds."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from tools.boundaries import RENAMES, Matcher, kemendagri, quantise, visvalingam

DATA = Path(__file__).resolve().parents[2] / "services/api/dashboard/static/data"

# The seven Kemendagri kab/kota the source has no geometry for (its per-region files for them
# have a null geometry too): listed beside the map, documented in docs/dashboard.md.
NO_SHAPE = {"12.73", "12.76", "13.74", "13.75", "31.01", "33.71", "35.76"}


@cache
def matcher() -> Matcher:
    regions, _ = kemendagri()
    return Matcher(regions)


@pytest.mark.parametrize(
    ("province", "name", "code"),
    [
        ("Jawa Barat", "Kota Bogor", "32.71"),
        ("Jawa Barat", "Bogor", "32.01"),  # a bare name is the kabupaten
        ("Jawa Barat", "Kota Bekasi", "32.75"),
        ("Jawa Barat", "Bekasi", "32.16"),
        ("Jawa Tengah", "Kebumen", "33.05"),
        ("DKI Jakarta", "Kota Administrasi Jakarta Pusat", "31.71"),  # province alias
        ("Bengkulu", "Muko Muko", "17.06"),  # spaces
        ("Sulawesi Selatan", "Kota Pare Pare", "73.72"),
        ("Sumatera Utara", "Kota Tanjung Balai", "12.74"),
        ("Sulawesi Selatan", "Pangkajene Kepulauan", "73.10"),  # "dan"
        ("Sulawesi Utara", "Kepulauan Siau Tagulandang Biaro", "71.09"),  # "Kep."
        ("Sumatera Utara", "Kota Padang Sidempuan", "12.77"),  # the rename table
        ("Papua Selatan", "Merauke", "93.01"),  # provinces split in 2022
        ("Papua Barat Daya", "Kota Sorong", "96.71"),
    ],
)
def test_source_names_match_their_kemendagri_code(province: str, name: str, code: str) -> None:
    region = matcher().match(province, name)
    assert region is not None, f"{name} ({province}) no longer matches"
    assert region.code == code


def test_a_name_in_another_province_or_of_another_kind_does_not_match() -> None:
    assert matcher().match("Jawa Tengah", "Kota Bogor") is None
    assert matcher().match("Jawa Barat", "Kota Kebumen") is None


def test_every_rename_leads_to_a_kemendagri_region() -> None:
    for (province, name), _renamed in RENAMES.items():
        assert matcher().match(province, name) is not None


@cache
def shipped(name: str) -> dict[str, object]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_the_shipped_kabkota_file_has_one_shape_per_matched_region() -> None:
    regions, _ = kemendagri()
    names = {r.code: r.name for r in regions}
    collection = shipped("kabkota.json")
    features = collection["features"]
    assert isinstance(features, list)
    codes = [f["properties"]["code"] for f in features]
    assert len(codes) == len(set(codes)) == 507
    for feature in features:
        assert feature["properties"]["name"] == names[feature["properties"]["code"]]
    assert {m["code"] for m in collection["missing"]} == NO_SHAPE  # type: ignore[attr-defined]
    assert set(codes) | NO_SHAPE == set(names)


def test_the_shipped_province_file_has_all_38() -> None:
    _, provinces = kemendagri()
    features = shipped("provinsi.json")["features"]
    assert isinstance(features, list)
    assert {f["properties"]["code"]: f["properties"]["name"] for f in features} == provinces


def test_the_data_stays_small() -> None:
    total = sum((DATA / name).stat().st_size for name in ("kabkota.json", "provinsi.json"))
    assert total <= 400_000


def test_simplifying_keeps_a_small_island_and_drops_a_spike() -> None:
    square = [(0.0, 0.0), (1.0, 0.0), (1.0, 0.5), (1.0005, 0.5), (1.0, 0.50001), (1.0, 1.0)]
    square += [(0.0, 1.0), (0.0, 0.0)]
    assert visvalingam(square, 0.01) == [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)]
    islet = [(0.0, 0.0), (0.002, 0.0), (0.002, 0.002), (0.0, 0.002), (0.0, 0.0)]
    kept = quantise(visvalingam(islet, 1.0), 3)
    assert len(kept) >= 4  # a triangle at least, closed
