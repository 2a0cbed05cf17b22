"""Generate hlrsmpp/hlr/data/networks.csv and countries.csv (run by hand, offline).

    .venv/bin/python -m hlrsmpp.hlr.tools.build_networks [--out hlrsmpp/hlr/data]

Inputs (nothing is downloaded):
- phonenumbers (Apache-2.0): carrierdata, i.e. the carrier name of each mobile number
  block (E.164 prefix -> "Vodafone"), and the numbering metadata (regions, lengths).
- mcc-mnc-p1 (AGPL-3.0-or-later, P1 Security; aggregated from ITU-T bulletins, Wikipedia,
  the World Factbook): MCC+MNC -> brand, operator, country. Used HERE ONLY, never imported
  by the server: what we ship is the derived fact table (which MCC+MNC a number block's
  carrier holds), see docs/numbers.md for provenance and licence notes.

Outputs:
- networks.csv  prefix,mccmnc,carrier  (E.164 block prefix -> range holder's MCC+MNC)
- countries.csv region,cc,default_nnc,networks  (default_nnc: range holder assumed for
  mobile blocks of unknown carrier = the network holding most numbering capacity there;
  networks: those holding >= 1% of it, the ported-to choices; FALLBACKS where no data)
"""
from __future__ import annotations

import argparse
import collections
import csv
import re
import unicodedata
from pathlib import Path
from typing import Any

import phonenumbers
from mcc_mnc_lut.p1_mnc import P1_MNC   # build-time only (AGPL): see module docstring
from phonenumbers.carrierdata import CARRIER_DATA
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from hlrsmpp.hlr.numbering import MOBILE_TYPES, NumberingPlan

# Blocks whose range holder is documented more precisely than "the carrier's first MNC":
# India and a few others run one MNC per licence area, which phonenumbers does not name.
OVERRIDES = {
    "919589": ("40493", "the AMS HLR API's example: 919589... answered nnc 40493 (Airtel Madhya Pradesh)"),
}
# Regions where phonenumbers has (next to) no carrier data, all numbers being portable:
# their main networks, the first one being the fallback range holder.
FALLBACKS = {"US": ["310410", "310260", "311480"], "CA": ["302720", "302610", "302220"],
             "MX": ["334020", "334030", "334050"], "PR": ["330110", "310260"],
             "GU": ["310140", "310370"], "VI": ["310260"], "MP": ["310370"],
             # regions served by a neighbour's networks (p1 lists them under it)
             "VA": ["22201", "22210"], "SJ": ["24201", "24202"], "AX": ["24414"],
             "EH": ["60401", "60400", "60402"], "AC": ["65801"], "TA": ["65801"]}
MIN_SHARE = 0.01   # networks holding less numbering capacity are not ported-to targets

# Carrier names in phonenumbers that differ from every p1 brand/operator of the region
# (renamed or merged networks), or name an operator with several MNCs whose main one is
# known: value = p1 brand to match, or the MCC+MNC itself. Checked by hand with --report.
ALIASES = {
    ("GB", "O2"): "23410", ("DE", "T-Mobile"): "26201", ("DE", "Eplus"): "26203",
    ("IT", "3 Italia"): "22288", ("EG", "TE"): "60204", ("AE", "Virgin Mobile"): "42403",
    ("NL", "Tele2"): "20416", ("NL", "T-Mobile Thuis"): "20416",
    ("GB", "Three"): "3", ("GB", "Orange"): "EE", ("AT", "Three"): "3",
    ("AT", "A1 TA"): "A1.net", ("AT", "T-Mobile AT"): "Magenta", ("HU", "One"): "Vodafone",
    ("IN", "Idea"): "Vi India", ("IN", "Vodafone"): "Vi India", ("RU", "T2"): "Tele2",
    ("SE", "TeliaSonera"): "Telia", ("LT", "Tele 2"): "Tele2", ("EE", "Tele 2"): "Tele2",
    ("MK", "T-Mobile"): "Telekom.mk", ("FO", "Faroese Telecom"): "Føroya Tele",
    ("KI", "ATHKL"): "Kiribati - ATH", ("IR", "IR-MCI"): "IR-TCI (Hamrah-e-Avval)",
    ("TH", "TOT Mobile"): "NT Mobile", ("GE", "Cellfie"): "Beeline",
    ("CL", "Compania De Telecomunicaciones De Chile S.A."): "Movistar",
    ("CL", "Telefonica Del Sur S.A."): "Telsur", ("BR", "Telemig Celular"): "Vivo",
    ("RU", "МегаФон"): "MegaFon",
}

NOISE = {"ltd", "limited", "sa", "s", "a", "plc", "inc", "llc", "gmbh", "ag", "ab", "as",
         "oy", "bv", "nv", "spa", "srl", "sarl", "co", "corp", "corporation", "company",
         "group", "the", "de", "of", "and", "telecom", "telecommunications", "telecoms",
         "telecommunication", "communications", "communication",
         "wireless", "cellular", "networks", "network", "telekom", "telecomunicacoes",
         "telecomunicaciones", "tel", "pty", "pvt", "private", "holding", "holdings", "sas",
         "services", "solutions", "international", "uk", "us", "gsm"}


def tokens(name: str) -> frozenset[str]:
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", name.replace("&", " and "))
    return frozenset(w for w in words if w not in NOISE)


def p1_by_region() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for code, recs in P1_MNC.items():
        for rec in recs if isinstance(recs, list) else [recs]:
            for region in rec["cc2s"]:
                out[region].append(dict(rec, code=code))
    return out


def bands(rec: dict[str, Any]) -> list[str]:
    return rec["bands"] if isinstance(rec["bands"], list) else []


def score(name: str, rec: dict[str, Any]) -> float:
    """How well a phonenumbers carrier name names a p1 network; 0 = not at all."""
    want = tokens(name)
    if not want:
        return 0.0
    best = 0.0
    for field, weight in (("brand", 1.0), ("operator", 0.9)):
        have = tokens(rec[field])
        if not have:
            continue
        if have == want:
            s = 3.0
        elif have <= want or want <= have:
            s = 2.0
        elif want & have:
            s = 1.0 * len(want & have) / len(want | have)
        else:
            continue
        best = max(best, s * weight)
    if best:
        best += 0.3 * bool(rec["ope"]) - 0.1 * ("MVNO" in bands(rec))
    return best


def candidates(p1: dict[str, list[dict[str, Any]]], region: str) -> list[dict[str, Any]]:
    """p1 networks of the region, then of the regions sharing its calling code."""
    cc = phonenumbers.country_code_for_region(region)
    near = [r for r in COUNTRY_CODE_TO_REGION_CODE.get(cc, ()) if r != region]
    return p1[region] + [rec for r in near for rec in p1[r]]


def block_region(plan: NumberingPlan, prefix: str) -> str:
    """Region of a carrier block: the numbering plan on a few completions of the prefix."""
    country = plan.country(prefix)
    assert country is not None, prefix  # a carrier block of a known calling code
    for fill in "0519372648":
        for length in sorted(country.lengths):
            number = (prefix + fill * 15)[:len(country.cc) + length]
            rng = plan.lookup(number, country) if len(number) >= len(prefix) else None
            if rng is not None and rng.ntype in MOBILE_TYPES:
                return rng.region
    return country.regions[0]


def build(out: Path, report: bool = False) -> None:
    p1 = p1_by_region()
    plan = NumberingPlan()
    rows = []
    capacity: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    matched_names: collections.Counter[tuple[str, str]] = collections.Counter()
    unmatched_names: collections.Counter[tuple[str, str]] = collections.Counter()
    cache: dict[tuple[str, str], str] = {}
    for prefix in sorted(CARRIER_DATA):
        names = CARRIER_DATA[prefix]
        name = names.get("en") or next(iter(names.values()))
        region = block_region(plan, prefix)
        key = (region, name)
        if key not in cache:
            alias = ALIASES.get(key, name)
            ranked = [(9.0, 0, 0, alias)] if alias.isdigit() and len(alias) >= 5 else []
            ranked += sorted(((score(alias, r), len(bands(r)), -int(r["code"][3:]), r["code"])
                              for r in candidates(p1, region)), reverse=True)
            cache[key] = ranked[0][-1] if ranked and ranked[0][0] >= 1.0 else ""
        code = cache[key]
        if prefix in OVERRIDES:
            code = OVERRIDES[prefix][0]
        (matched_names if code else unmatched_names)[key] += 1
        if code:
            rows.append((prefix, code, name))
            capacity[region][code] += 10 ** (15 - len(prefix))
    for prefix, (code, _why) in OVERRIDES.items():
        if prefix not in CARRIER_DATA:
            rows.append((prefix, code, ""))
    rows.sort()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "networks.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("prefix", "mccmnc", "carrier"))
        w.writerows(rows)
    # countries.csv: every region of the numbering plan
    with open(out / "countries.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("region", "cc", "default_nnc", "networks"))
        for country in sorted(plan.countries.values(), key=lambda c: int(c.cc)):
            for region in country.regions:
                held = capacity[region]
                total = sum(held.values())
                nets = FALLBACKS.get(region) or [c for c, n in held.most_common()
                                                  if n >= MIN_SHARE * total]
                if not nets:   # no block data: the region's operational MNOs, by code
                    nets = sorted({r["code"] for r in p1.get(region, [])
                                   if r["ope"] and bands(r) and "MVNO" not in bands(r)})
                w.writerow((region, country.cc, nets[0] if nets else "", " ".join(nets)))
    if report:
        codes = {c: (r if isinstance(r, list) else [r])[0] for c, r in P1_MNC.items()}
        for (region, name), code in sorted(cache.items()):
            n = matched_names[(region, name)] + unmatched_names[(region, name)]
            rec = codes.get(code, {"brand": "", "operator": ""})
            print(f"{region}\t{n}\t{name}\t{code or '-'}\t{rec['brand']}\t{rec['operator']}")
    total = sum(matched_names.values()) + sum(unmatched_names.values())
    print(f"{len(rows)} blocks mapped of {len(CARRIER_DATA)} ({len(rows) / total:.1%}); "
          f"carrier names unmatched: {len(unmatched_names)} of {len(cache)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data")
    ap.add_argument("--report", action="store_true", help="print every carrier name mapping")
    args = ap.parse_args()
    build(args.out, args.report)


if __name__ == "__main__":
    main()
