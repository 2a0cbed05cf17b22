"""Network tables shipped in the package (hlrsmpp/hlr/data/, made by tools/build_networks.py)."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import NamedTuple

# Package data: found by an installed wheel as well as from a checkout.
DEFAULT_DIR = Path(__file__).resolve().parent / "data"


class Region(NamedTuple):
    region: str
    cc: str
    default_nnc: str            # range holder assumed for mobile blocks of unknown carrier
    networks: tuple[str, ...]   # networks holding number blocks there (ported-to choices)


def load_holders(path: Path) -> dict[str, str]:
    """networks.csv: E.164 block prefix -> range holder MCC+MNC."""
    with open(path, newline="") as f:
        return {row["prefix"]: row["mccmnc"] for row in csv.DictReader(f) if row["mccmnc"]}


def load_network_names(path: Path) -> dict[str, str]:
    """networks.csv: MCC+MNC -> the carrier's name (the name most of its blocks carry)."""
    counts: dict[str, Counter[str]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["mccmnc"] and row.get("carrier"):
                counts.setdefault(row["mccmnc"], Counter())[row["carrier"]] += 1
    return {nnc: c.most_common(1)[0][0] for nnc, c in counts.items()}


def load_regions(path: Path) -> dict[str, Region]:
    with open(path, newline="") as f:
        return {row["region"]: Region(row["region"], row["cc"], row["default_nnc"],
                                      tuple(row["networks"].split()))
                for row in csv.DictReader(f) if row["region"] != "001"}


def network_country(regions: dict[str, Region]) -> dict[str, str]:
    """MCC+MNC -> calling code, for networks named in the tables."""
    return {nnc: r.cc for r in regions.values() for nnc in r.networks}
