"""Home networks of real number ranges, checked against the mcc-mnc-p1 table.

The rows are the table of docs/numbers.md ("Real ranges"): keep them in step.
"""
from __future__ import annotations

import csv
import random
import re
from pathlib import Path

import phonenumbers
import pytest
from mcc_mnc_lut.p1_mnc import P1_MNC   # test dependency only (AGPL): never imported by hlrsmpp

from hlrsmpp.hlr import Resolver
from hlrsmpp.hlr.networks import DEFAULT_DIR

ROOT = Path(__file__).resolve().parent.parent

# msisdn, cc, region, nnc, operator as named by mcc-mnc-p1 (brand or operator)
REAL = [
    ("919589123456", "91", "IN", "40493", "AirTel"),      # the AMS HLR API's example
    ("919810123456", "91", "IN", "40410", "AirTel"),
    ("919820123456", "91", "IN", "40422", "Vi India"),
    ("917012345678", "91", "IN", "405840", "Jio"),
    ("447400123456", "44", "GB", "23420", "Hutchison 3G"),
    ("447780123456", "44", "GB", "23415", "Vodafone"),
    ("447510123456", "44", "GB", "23410", "O2"),
    ("447960123456", "44", "GB", "23430", "EE"),
    ("4915112345678", "49", "DE", "26201", "Telekom"),
    ("4917612345678", "49", "DE", "26203", "O2"),
    ("33612345678", "33", "FR", "20809", "SFR"),
    ("33699123456", "33", "FR", "20820", "Bouygues"),
    ("34622123456", "34", "ES", "21404", "Yoigo"),
    ("393471234567", "39", "IT", "22210", "Vodafone"),
    ("393201234567", "39", "IT", "22288", "Wind Tre"),
    ("5511987654321", "55", "BR", "72402", "TIM"),
    ("5521998765432", "55", "BR", "72406", "Vivo"),
    ("79031234567", "7", "RU", "25099", "Beeline"),
    ("8613812345678", "86", "CN", "46000", "China Mobile"),
    ("8618612345678", "86", "CN", "46001", "China Unicom"),
    ("2348031234567", "234", "NG", "62130", "MTN"),
    ("2348051234567", "234", "NG", "62150", "Glo"),
    ("27821234567", "27", "ZA", "65501", "Vodacom"),
    ("27831234567", "27", "ZA", "65510", "MTN"),
    ("61412345678", "61", "AU", "50502", "Optus"),
    ("819012345678", "81", "JP", "44050", "KDDI"),
    ("359888123456", "359", "BG", "28401", "A1"),
    ("359878123456", "359", "BG", "28403", "Vivacom"),
    ("971501234567", "971", "AE", "42402", "Etisalat"),
    ("971551234567", "971", "AE", "42403", "du"),
    ("254712345678", "254", "KE", "63902", "Safaricom"),
    ("254733123456", "254", "KE", "63903", "Airtel"),
    ("6591234567", "65", "SG", "52501", "SingTel"),
    ("6281234567890", "62", "ID", "51010", "Telkomsel"),
]


def p1_records(nnc: str) -> list[dict]:
    recs = P1_MNC.get(nnc) or []
    return recs if isinstance(recs, list) else [recs]


@pytest.fixture(scope="module")
def resolver() -> Resolver:
    return Resolver.from_config({}, ROOT / "conf")


def test_table_is_broad():
    assert len(REAL) >= 20 and len({row[2] for row in REAL}) >= 8


@pytest.mark.parametrize("msisdn,cc,region,nnc,operator", REAL)
def test_real_range_home_network(resolver, msisdn, cc, region, nnc, operator):
    dest = resolver.parse(msisdn)
    assert dest is not None and dest.cc == cc
    rng = resolver.describe(dest)
    assert (rng.region, rng.ntype, rng.nnc) == (region, "mobile", nnc)
    res = resolver.resolve(dest)
    assert res.nnc == nnc and res.cc == cc
    # the network is real, in that country, and is the operator the range belongs to
    recs = [r for r in p1_records(nnc) if region in r["cc2s"]]
    assert recs, f"{nnc} is not a network of {region} in mcc-mnc-p1"
    names = " ".join(r["brand"] + " " + r["operator"] for r in recs).lower()
    assert operator.lower() in names


def test_docs_table_matches(resolver):
    """docs/numbers.md lists the same rows."""
    text = (ROOT / "docs" / "numbers.md").read_text()
    for msisdn, cc, region, nnc, _ in REAL:
        assert re.search(rf"\|\s*{msisdn}\s*\|\s*{cc}\s*\|\s*{region}\s*\|\s*{nnc}\s*\|", text), msisdn


def test_networks_csv_codes_are_real():
    """Every range holder shipped is an MCC+MNC of mcc-mnc-p1, kept as a 5-6 digit string."""
    with open(DEFAULT_DIR / "networks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 20000
    codes = {r["mccmnc"] for r in rows}
    assert all(re.fullmatch(r"\d{5,6}", c) for c in codes)
    assert not [c for c in codes if not p1_records(c)]


def test_countries_csv_networks_belong_to_their_country():
    with open(DEFAULT_DIR / "countries.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for nnc in row["networks"].split():
            recs = p1_records(nnc)
            assert recs, (row["region"], nnc)
        if row["default_nnc"]:
            assert row["default_nnc"] == row["networks"].split()[0]
    by_region = {r["region"]: r for r in rows}
    for region in ("GB", "DE", "FR", "IN", "US", "BR", "NG"):
        assert len(by_region[region]["networks"].split()) >= 3, region


def test_numbering_agrees_with_phonenumbers(resolver):
    """The precomputed tables answer what phonenumbers answers (validity, region, type)."""
    types = {0: "fixed", 1: "mobile", 2: "fixed_or_mobile", 3: "toll_free", 4: "premium_rate",
             5: "shared_cost", 6: "voip", 7: "personal", 8: "pager", 9: "uan", 10: "voicemail"}
    rnd = random.Random(7)
    countries = resolver._plan.countries
    checked = valid = 0
    for country in countries.values():
        keys = list(country.table) or [""]
        for i in range(60):
            length = rnd.choice(sorted(country.lengths))
            head = rnd.choice(keys) if i % 2 else ""
            nsn = (head + "".join(rnd.choices("0123456789", k=length)))[:length]
            num = phonenumbers.parse("+" + country.cc + nsn)
            national = ("0" * (num.number_of_leading_zeros or 1) if num.italian_leading_zero
                        else "") + str(num.national_number)
            if national != nsn or str(num.country_code) != country.cc:
                continue   # phonenumbers stripped a trunk prefix: not an E.164 reading
            rng = resolver._plan.lookup(country.cc + nsn, country)
            ok = phonenumbers.is_valid_number(num)
            want = ((phonenumbers.region_code_for_number(num), types[phonenumbers.number_type(num)])
                    if ok else None)
            assert ((rng.region, rng.ntype) if rng.ntype else None) == want, country.cc + nsn
            checked += 1
            valid += ok
    assert checked > 10000 and valid > 3000
