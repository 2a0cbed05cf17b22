"""hlrsmpp.hlr: parse, deterministic scenarios, mix, rules, files, reload, sandbox."""
from __future__ import annotations

import collections
import hashlib
import os
import random
import struct
import subprocess
import sys
import textwrap
import threading
from dataclasses import fields
from pathlib import Path

import pytest

from hypothesis import given, settings, strategies as st

from hlrsmpp import config
from hlrsmpp.hlr import ERR_NAMES, MAP_ERRORS, PERMANENT, Destination, HlrResult, Resolver
from hlrsmpp.hlr import resolver as resolver_module
from hlrsmpp.hlr.networks import DEFAULT_DIR, load_regions

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = "4477009000"
SRI_SM_ERRORS = {1, 6, 11, 13, 21, 34, 35, 36}   # MAP SendRoutingInfoForSM user errors
REGIONS = load_regions(DEFAULT_DIR / "countries.csv")


def make(tmp_path: Path | None = None, **hlr) -> Resolver:
    return Resolver.from_config(hlr, tmp_path or ROOT / "conf")


def mobiles(n: int, prefix: str = "4479", width: int = 12) -> list[str]:
    """n distinct possible numbers in a mobile block (some are unallocated: callers filter)."""
    step = 10 ** (width - len(prefix)) // n
    return [f"{prefix}{i * step + 7:0{width - len(prefix)}d}" for i in range(n)]


@pytest.fixture(scope="module")
def default() -> Resolver:
    return make()


# -- interface -------------------------------------------------------------------------

def test_interface_shapes(default):
    dest = default.parse("919589123456")
    assert dest == Destination("919589123456", "91") and dest.msisdn == "919589123456"
    res = default.resolve(dest)
    assert isinstance(res, HlrResult)
    assert [f.name for f in fields(HlrResult)] == [
        "msisdn", "cc", "nnc", "err", "ported", "p_nnc", "roaming", "r_cc", "r_nnc", "latency",
        "map_error"]
    assert not hasattr(res, "__dict__")   # slots
    assert res.delivered == (res.err == 0)
    assert res.cc == "91" and res.nnc == "40493"


def test_err_names_and_map_errors():
    assert ERR_NAMES[11] == "ABSENT_SUBSCRIBER" and ERR_NAMES[24] == "UNEXPECTED_DATA_VALUE"
    assert sorted(ERR_NAMES) == list(range(11, 25)) == sorted(MAP_ERRORS)
    assert set(MAP_ERRORS.values()) <= SRI_SM_ERRORS
    assert MAP_ERRORS[11] == 6 and MAP_ERRORS[12] == 1 and MAP_ERRORS[19] == 13
    assert PERMANENT <= set(ERR_NAMES) and 11 not in PERMANENT and 12 in PERMANENT


# -- parse -----------------------------------------------------------------------------

@pytest.mark.parametrize("addr,ton,npi,want", [
    ("919589123456", 1, 1, ("919589123456", "91")),
    ("+919589123456", 1, 1, ("919589123456", "91")),
    ("919589123456", 0, 0, ("919589123456", "91")),
    ("919589123456", 0, 1, ("919589123456", "91")),
    ("12015550123", 1, 1, ("12015550123", "1")),
    ("79031234567", 1, 1, ("79031234567", "7")),
    ("359888123456", 1, 1, ("359888123456", "359")),
    ("447700900011", 1, 1, ("447700900011", "44")),
])
def test_parse_accepts(default, addr, ton, npi, want):
    assert default.parse(addr, ton, npi) == Destination(*want)


@pytest.mark.parametrize("addr,ton,npi", [
    ("919589123456", 2, 1),        # national TON
    ("919589123456", 5, 0),        # alphanumeric
    ("919589123456", 1, 0),        # international without E.164 NPI
    ("919589123456", 0, 9),        # private numbering plan
    ("HLRTEST", 5, 0), ("9195891234a6", 1, 1), ("", 1, 1), ("+", 1, 1), ("++919589123456", 1, 1),
    (" 919589123456", 1, 1), ("91 9589123456", 1, 1), ("٩١٩٥٨٩١٢٣٤٥٦", 1, 1),  # Arabic-Indic digits
    ("3361234567", 1, 1),          # too short for France
    ("336123456789", 1, 1),        # too long for France
    ("4479111234", 1, 1),          # too short for the UK
    ("9991234567", 1, 1),          # 999 is no calling code
    ("2801234567", 1, 1),          # 28x is spare
    ("1234567890123456", 1, 1),    # over 15 digits
    ("0919589123456", 1, 1),       # trunk/international prefix
])
def test_parse_rejects(default, addr, ton, npi):
    assert default.parse(addr, ton, npi) is None
    assert default.lookup(addr, ton, npi) is None


def test_parse_takes_keywords_in_both_builds(default):
    """The public signature is parse(destination_addr, ton=1, npi=1), in C as in Python."""
    builds = {"default": default.parse, "python": Resolver.parse.__get__(default)}
    for name, parse in builds.items():
        want = Destination("919589123456", "91")
        assert parse("+919589123456", ton=1, npi=1) == want, name
        assert parse(destination_addr="919589123456") == want, name
        assert parse("919589123456", npi=0, ton=0) == want, name
        assert parse("919589123456", 0, npi=1) == want, name
        assert parse("919589123456", npi=0) is None, name      # TON 1 needs NPI 1
        for args, kw in [((), {}), (("919589123456",), {"msisdn": "1"}),
                         (("919589123456",), {"destination_addr": "1"}),
                         (("919589123456", 1, 1, 1), {}), (("919589123456", 1), {"ton": 1})]:
            with pytest.raises(TypeError):
                parse(*args, **kw)


def test_unallocated_and_non_mobile(default):
    # possible but unallocated (Ofcom drama range, ACMA fiction range): unknown subscriber
    for n in ("447700900123", "61491570156"):
        res = default.lookup(n)
        assert res.err == 12 and res.map_error == 1 and not res.ported and not res.roaming
    # allocated but not mobile (London fixed line, UK freephone): invalid MSISDN
    for n in ("442071234567", "448001234567"):
        res = default.lookup(n)
        assert (res.err, res.nnc, res.map_error) == (18, "", 36)
    # NANPA numbers may be mobile: served with the fallback range holder
    assert default.lookup("12125550123").nnc == "310410"


# -- determinism -----------------------------------------------------------------------

@pytest.mark.slow
def test_same_config_same_answer(default):
    nums = mobiles(2000)
    first = [default.lookup(n) for n in nums]
    assert first == [default.lookup(n) for n in nums]
    assert first == [make().lookup(n) for n in nums]          # fresh Resolver
    other = [make(seed=1).lookup(n) for n in nums]
    assert sum(a != b for a, b in zip(first, other)) > 100     # the seed matters


def test_deterministic_across_processes():
    """No dependence on PYTHONHASHSEED or process state."""
    code = textwrap.dedent("""
        import hashlib
        from pathlib import Path
        from hlrsmpp.hlr import Resolver
        r = Resolver.from_config({"seed": 42, "warm": False}, Path("conf"))
        out = [repr(r.lookup(f"4479{i:08d}")) for i in range(0, 10**8, 99991)]
        print(hashlib.sha256("\\n".join(out).encode()).hexdigest())
    """)
    digests = set()
    # Each hash seed, and the draws in C (_resolve.c) and in Python (hashlib).
    for hashseed, pure in (("1", "0"), ("2", "0"), ("1", "1")):
        env = dict(os.environ, PYTHONHASHSEED=hashseed, PYTHONPATH=str(ROOT), HLRSMPP_PURE_PYTHON=pure)
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


@pytest.mark.skipif(not resolver_module.DRAWS_IN_C, reason="_resolve not built (HLRSMPP_PURE_PYTHON)")
@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(), st.text(max_size=40)),
       st.one_of(st.text(st.sampled_from("0123456789"), min_size=1, max_size=15),
                 st.text(min_size=1, max_size=32)))
def test_the_c_draws_are_hashlibs(seed, msisdn):
    key = hashlib.blake2b(str(seed).encode(), digest_size=32).digest()
    h = hashlib.blake2b(msisdn.encode(), digest_size=16, key=key)
    assert resolver_module._NativeResolver(key).draw(msisdn) == struct.unpack("<IHHII", h.digest())


def test_the_c_draws_refuse_what_they_cannot_hash():
    if not resolver_module.DRAWS_IN_C:
        pytest.skip("_resolve not built (HLRSMPP_PURE_PYTHON)")
    draws = resolver_module._NativeResolver(b"k" * 32)
    for bad in ("", "9" * 129):
        with pytest.raises(ValueError):
            draws.draw(bad)
    for key in (b"", b"k" * 65):
        with pytest.raises(ValueError):
            resolver_module._NativeResolver(key)
    assert draws.draw("9" * 128) == draws.draw("9" * 128)


RULES = [{"prefix": "4477009", "err": 11, "latency_ms": 500}, {"prefix": "447911", "status": "barred"},
         {"msisdn": "447911100001", "err": 0, "ported_to": "23420"}, {"prefix": "91958901", "ported": True},
         {"msisdn": "919589000002", "roaming": {"cc": "33", "nnc": "20801"}}]


@pytest.mark.skipif(not resolver_module.DRAWS_IN_C, reason="_resolve not built (HLRSMPP_PURE_PYTHON)")
@pytest.mark.parametrize("hlr", [
    {},                                                                   # the defaults
    {"seed": 7, "mix": {"absent": 20, "timeout": 10, "ported": 30, "roaming": 25}},
    {"portability": "hlr/portability.txt", "subscribers": "hlr/subscribers.csv", "rules": RULES},
    {"latency_ms": [10, 50], "timeout_ms": 3000, "mix": {"timeout": 30}},  # a range: Python draws it
    {"latency_ms": 20, "timeout_ms": 3000, "mix": {"timeout": 30}, "sandbox": False},
    {"warm": False},                                                     # tables built on first use
])
def test_the_c_parse_and_resolve_answer_as_the_python_ones(hlr):
    """parse() and resolve()'s common case in C (_resolve.c) against this module's Python,
    on numbers of every kind: mobiles of 20 countries, unallocated and fixed ones, the
    sandbox, the portability and subscriber files, rule prefixes, bad input."""
    r = make(**hlr)
    rng = random.Random(hash(str(hlr)) & 0xFFFF)
    numbers = [f"{SANDBOX}{k:02d}" for k in range(45)] + ["359888000001", "359878000002", "447700900100",
                                                          "447911100001", "919589010005", "919589000002"]
    for cc in ("44", "33", "49", "1", "91", "7", "86", "234", "971", "90", "66", "41", "359", "65", "52"):
        numbers += [cc + "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 15 - len(cc))))
                    for _ in range(400)]
    numbers += ["", "+", "44", "4479x0000000", "４４７９１１１２３４５６", "4479111234567890", "+447911123456"]
    answered_in_c = 0
    for n in numbers:
        for ton, npi in ((1, 1), (0, 0), (0, 1), (1, 0), (5, 1)):
            want = Resolver.parse(r, n, ton, npi)
            got = r.parse(n, ton, npi)
            assert got == want and type(got) is type(want), (n, ton, npi)
        dest = r.parse(n)
        if dest is None:
            continue
        fields = r.fast_fields(dest)
        if fields is not None:
            answered_in_c += 1
            want = r.result_fields(dest)
            assert fields == want and list(map(type, fields)) == list(map(type, want)), n
            assert HlrResult(*fields) == r.resolve(dest)
    # Most numbers take the C path, but with a latency range (drawn per number, in Python).
    assert answered_in_c > 1000 if not isinstance(hlr.get("latency_ms"), list) else answered_in_c < 1000
    assert r.parse("447911123456") == r.parse("447911123456", 1, 1)


def test_the_resolver_draws_in_c_unless_turned_off(default):
    from hlrsmpp import native
    assert resolver_module.DRAWS_IN_C != native.PURE_PYTHON


# -- the mix ---------------------------------------------------------------------------

def shares(results: list[HlrResult]) -> dict:
    n = len(results)
    errs = collections.Counter(r.err for r in results)
    reachable = [r for r in results if r.err == 0]
    return {"errs": {e: 100 * c / n for e, c in errs.items()},
            "ported": 100 * sum(r.ported for r in results) / n,
            "roaming": 100 * sum(r.roaming for r in reachable) / len(reachable)}


def test_mix_over_100k_numbers():
    mix = {"reachable": 80, "absent": 8, "unknown": 5, "barred": 2, "timeout": 1,
           "system_failure": 2, "busy": 2, "ported": 10, "roaming": 3}
    r = make(mix=mix, seed=7)
    nums = [n for n in mobiles(120_000) if r.describe(r.parse(n)).ntype == "mobile"][:100_000]
    assert len(nums) == 100_000
    got = shares([r.lookup(n) for n in nums])
    want = {0: 80, 11: 8, 12: 5, 19: 2, 14: 1, 17: 2, 23: 2}
    assert set(got["errs"]) == set(want)
    for err, pct in want.items():
        assert abs(got["errs"][err] - pct) < 1, (err, got["errs"][err])
    assert abs(got["ported"] - 10) < 1
    assert abs(got["roaming"] - 3) < 1   # roaming: percent of reachable subscribers


def test_default_mix_is_realistic(default):
    nums = [n for n in mobiles(20_000, "9198", 12)]
    got = shares([default.lookup(n) for n in nums])
    assert 80 < got["errs"][0] < 90 and 5 < got["errs"][11] < 9
    assert 8 < got["ported"] < 12 and 1 < got["roaming"] < 5


def test_mix_remainder_is_reachable_and_validation():
    r = make(mix={"absent": 100})
    dests = [d for d in map(r.parse, mobiles(200)) if r.describe(d).ntype == "mobile"]
    assert len(dests) > 150 and {r.resolve(d).err for d in dests} == {11}
    r = make(mix={"absent": 20, "unknown": 10})    # reachable: the remaining 70
    got = shares([r.lookup(n) for n in mobiles(5000, "9198")])["errs"]
    assert abs(got[0] - 70) < 3 and abs(got[11] - 20) < 3
    with pytest.raises(ValueError):
        make(mix={"absent": 60, "unknown": 50})
    with pytest.raises(ValueError):
        make(mix={"asleep": 5})
    with pytest.raises(ValueError):
        make(mix={"absent": -1})
    with pytest.raises(ValueError):
        make(colour="blue")


def test_ported_and_roaming_are_consistent(default):
    results = [default.lookup(n) for n in mobiles(20_000, "4479")] + \
              [default.lookup(n) for n in mobiles(20_000, "9198")]
    ported = [r for r in results if r.ported]
    roaming = [r for r in results if r.roaming]
    assert len(ported) > 1000 and len(roaming) > 200
    for r in results:
        assert r.ported == bool(r.p_nnc) and r.roaming == bool(r.r_cc) == bool(r.r_nnc)
        assert r.map_error == MAP_ERRORS.get(r.err)
    for r in ported:
        region = REGIONS[default.describe(Destination(r.msisdn, r.cc)).region]
        assert r.p_nnc != r.nnc and r.p_nnc in region.networks    # same country
    for r in roaming:
        assert r.err == 0 and r.r_cc != r.cc
        assert any(reg.cc == r.r_cc and r.r_nnc in reg.networks for reg in REGIONS.values())


# -- latency ---------------------------------------------------------------------------

def test_latency(default):
    assert default.lookup("919589123456").latency == 0
    assert make(latency_ms=250).lookup("919589123456").latency == 0.25
    ranged = make(latency_ms=[1000, 3000])
    lat = [ranged.lookup(n).latency for n in mobiles(500)]
    assert all(1.0 <= x <= 3.0 for x in lat) and len(set(lat)) > 100
    assert lat == [ranged.lookup(n).latency for n in mobiles(500)]
    r = make(latency_ms=100, timeout_ms=8000, rules=[{"prefix": "4479", "err": "timeout"}])
    assert r.lookup("447911123456").latency == 8.0
    assert r.lookup("919589123456").latency == 0.1
    with pytest.raises(ValueError):
        make(latency_ms=[3000, 1000])


# -- sandbox ---------------------------------------------------------------------------

@pytest.mark.parametrize("mix", [None, {"absent": 100}, {"reachable": 100}])
def test_sandbox_numbers(mix):
    r = make(mix=mix, latency_ms=[10, 20], timeout_ms=9000)
    for err in [0, *ERR_NAMES]:
        res = r.lookup(f"{SANDBOX}{err:02d}")
        assert (res.err, res.nnc, res.ported, res.roaming) == (err, "23410", False, False)
        assert res.map_error == MAP_ERRORS.get(err)
    assert r.lookup(SANDBOX + "14").latency == 9.0
    p = r.lookup(SANDBOX + "30")
    assert (p.err, p.ported, p.p_nnc, p.roaming) == (0, True, "23415", False)
    v = r.lookup(SANDBOX + "31")
    assert (v.err, v.ported, v.roaming, v.r_cc, v.r_nnc) == (0, False, True, "33", "20801")
    both = r.lookup(SANDBOX + "32")
    assert both.ported and both.roaming
    absent_ported = r.lookup(SANDBOX + "33")
    assert absent_ported.err == 11 and absent_ported.p_nnc == "23415"
    slow = r.lookup(SANDBOX + "40")
    assert slow.err == 0 and slow.latency == 5.0


def test_sandbox_can_be_disabled():
    assert make(sandbox=False).lookup(SANDBOX + "11").err == 12   # back to unallocated


# -- rules -----------------------------------------------------------------------------

def test_prefix_and_number_rules():
    r = make(mix={"reachable": 100}, rules=[
        {"prefix": "4477009", "err": 11, "latency_ms": 500},
        {"prefix": "447911", "status": "barred"},
        {"prefix": "4479111", "err": "UNKNOWN_SUBSCRIBER"},        # longest prefix wins
        {"msisdn": "447911100001", "err": 0, "ported_to": "23420"},
        {"msisdn": "+919589000001", "ported_to": "40410"},
        {"msisdn": "919589000002", "roaming": {"cc": "33", "nnc": "20801"}},
        {"msisdn": "919589000003", "roaming": True},
        {"msisdn": "919589000004", "nnc": "40445"},
        {"prefix": "91958901", "ported": True},
    ])
    a = r.lookup("447700900111")
    assert (a.err, a.latency, a.map_error) == (11, 0.5, 6)
    assert r.lookup(SANDBOX + "31").err == 11             # a rule beats the sandbox
    assert r.lookup("447911234567").err == 19
    assert r.lookup("447911123456").err == 12
    b = r.lookup("447911100001")
    assert (b.err, b.ported, b.p_nnc) == (0, True, "23420")
    c = r.lookup("919589000001")
    assert (c.nnc, c.ported, c.p_nnc) == ("40493", True, "40410")
    d = r.lookup("919589000002")
    assert (d.roaming, d.r_cc, d.r_nnc, d.ported) == (True, "33", "20801", False)
    e = r.lookup("919589000003")
    assert e.roaming and e.r_cc != "91"
    f = r.lookup("919589000004")
    assert f.nnc == "40445" and not f.ported
    for n in ("919589010001", "919589019999"):
        g = r.lookup(n)
        assert g.ported and g.p_nnc != g.nnc and g.p_nnc in REGIONS["IN"].networks


def test_rule_ported_to_home_network_is_not_ported():
    r = make(rules=[{"msisdn": "919589000001", "ported_to": "40493"}])
    assert not r.lookup("919589000001").ported


def test_prefix_rule_mix():
    r = make(rules=[{"prefix": "9198", "mix": {"absent": 100, "ported": 0}}])
    assert {r.lookup(n).err for n in mobiles(300, "9198")} == {11}
    assert 0 in {r.lookup(n).err for n in mobiles(300, "9197")}


@pytest.mark.parametrize("rule", [
    {"err": 11},                                   # no key
    {"prefix": "44", "msisdn": "447911123456"},    # two keys
    {"prefix": "44x", "err": 11},
    {"prefix": "44", "err": 42},
    {"prefix": "44", "status": "sleepy"},
    {"prefix": "44", "ported_to": "2341"},
    {"prefix": "44", "colour": "red"},
    {"msisdn": "447911123456", "mix": {"absent": 1}},
    {"prefix": "44", "latency_ms": "soon"},
])
def test_bad_rules_are_refused(rule):
    with pytest.raises(ValueError):
        make(rules=[rule])


def test_rules_file_and_reload(tmp_path):
    (tmp_path / "rules.yaml").write_text("- {prefix: '4479', err: 11}\n")
    r = make(tmp_path, rules="rules.yaml")
    assert r.lookup("447911123456").err == 11
    (tmp_path / "rules.yaml").write_text("- {prefix: '4479', err: barred}\n")
    r.reload()
    assert r.lookup("447911123456").err == 19


# -- subscriber and portability files ----------------------------------------------------

SUBSCRIBERS = """\
msisdn,status,err,nnc,p_nnc,r_cc,r_nnc
# a comment
447911000001,reachable,,,,,
447911000002,absent,,,,,
447911000003,,19,,,,
447911000004,reachable,,,23420,,
447911000005,reachable,,,,33,20801
+919589000009,ABSENT_SUBSCRIBER,,40445,40410,,
447911000006,unknown,,,,,
"""


def test_subscriber_file(tmp_path):
    (tmp_path / "subs.csv").write_text(SUBSCRIBERS)
    r = make(tmp_path, mix={"absent": 100, "ported": 100, "roaming": 100}, subscribers="subs.csv",
             rules=[{"msisdn": "447911000006", "err": 0}])
    one = r.lookup("447911000001")     # the row is the truth: not ported, not roaming
    assert (one.err, one.ported, one.roaming) == (0, False, False)
    assert r.lookup("447911000002").err == 11
    assert r.lookup("447911000003").err == 19
    four = r.lookup("447911000004")
    assert (four.err, four.p_nnc) == (0, "23420")
    five = r.lookup("447911000005")
    assert (five.roaming, five.r_cc, five.r_nnc) == (True, "33", "20801")
    nine = r.lookup("919589000009")
    assert (nine.err, nine.nnc, nine.p_nnc) == (11, "40445", "40410")
    assert r.lookup("447911000006").err == 0      # a per-number rule beats the file
    assert r.lookup("447911000007").err == 11     # not in the file: the mix


def test_subscriber_file_without_header_and_errors(tmp_path):
    (tmp_path / "s.csv").write_text("447911000002,absent\n447911000003,,21\n")
    r = make(tmp_path, subscribers="s.csv")
    assert r.lookup("447911000002").err == 11 and r.lookup("447911000003").err == 21
    (tmp_path / "bad.csv").write_text("447911000002,asleep\n")
    with pytest.raises(ValueError, match="bad.csv:1"):
        make(tmp_path, subscribers="bad.csv")
    with pytest.raises(FileNotFoundError):
        make(tmp_path, subscribers="missing.csv")


def test_portability_file_and_reload(tmp_path):
    pdb = tmp_path / "portability.txt"
    pdb.write_text("# prefix;mccmnc\n919589;40410\n9195891;40493\n919589100001;40445\n")
    r = make(tmp_path, mix={"reachable": 100, "ported": 0}, portability="portability.txt")
    a = r.lookup("919589000001")          # 919589 -> 40410, home is 40493
    assert (a.nnc, a.ported, a.p_nnc) == ("40493", True, "40410")
    assert not r.lookup("919589100002").ported     # longer prefix: back at the range holder
    assert r.lookup("919589100001").p_nnc == "40445"  # per-number line
    assert not r.lookup("919810123456").ported
    pdb.write_text("919810;40493\n")
    r.reload()
    assert not r.lookup("919589000001").ported
    assert r.lookup("919810123456").p_nnc == "40493"
    pdb.write_text("919810;4049\n")       # bad line: reload fails, old tables stay
    with pytest.raises(ValueError, match="portability.txt:1"):
        r.reload()
    assert r.lookup("919810123456").p_nnc == "40493"


def test_portability_beaten_by_rules(tmp_path):
    (tmp_path / "p.txt").write_text("919589;40410\n")
    r = make(tmp_path, portability="p.txt", rules=[{"prefix": "9195890", "ported": False}])
    assert not r.lookup("919589012345").ported
    assert r.lookup("919589123456").p_nnc == "40410"


def test_reload_during_lookups(tmp_path):
    pdb = tmp_path / "p.txt"
    pdb.write_text("9198;40410\n")
    r = make(tmp_path, portability="p.txt")
    nums, errors, stop = mobiles(2000, "9198"), [], threading.Event()

    def lookups():
        try:
            while not stop.is_set():
                for n in nums:
                    assert r.lookup(n).p_nnc in ("40410", "40445", "")
        except Exception as exc:   # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=lookups) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(30):
        pdb.write_text(f"9198;{'40410' if i % 2 else '40445'}\n")
        r.reload()
    stop.set()
    for t in threads:
        t.join()
    assert not errors


def test_config_relative_paths_and_shipped_demo(tmp_path):
    """Paths in the hlr section are relative to the config file's directory."""
    (tmp_path / "hlr").mkdir()
    (tmp_path / "hlr" / "subscribers.csv").write_text("447911000002,absent\n")
    r = Resolver.from_config({"subscribers": "hlr/subscribers.csv"}, tmp_path)
    assert r.lookup("447911000002").err == 11


def test_shipped_demo_files_load():
    r = make(subscribers="hlr/subscribers.csv", portability="hlr/portability.txt")
    assert r.lookup("447700900101").err == 11
    assert r.lookup("447700900104").r_nnc == "26202"
    assert r.lookup("447700900105").latency == 2.0
    bg = r.lookup("359888000001")
    assert (bg.nnc, bg.ported, bg.p_nnc) == ("28401", True, "28403")


def test_demo_config_answers_as_slowly_as_real_hlrs():
    """Real HLRs answer in 0.2 to 3 s and gateways rely on it (some store their id mapping
    only after the submit_sm_resp): the shipped demo does the same, never at once."""
    demo = config.load(ROOT / "conf" / "hlrsmpp.yaml", environ={})
    resolver = Resolver.from_config(demo["hlr"], ROOT / "conf")
    latencies = collections.Counter()
    for msisdn in mobiles(400) + mobiles(400, "9198"):
        dest = resolver.parse(msisdn)
        if dest is not None:
            res = resolver.resolve(dest)
            assert 0.2 <= res.latency <= 3.0, (msisdn, res.err, res.latency)
            latencies[round(res.latency)] += 1
    assert latencies[1] > sum(latencies.values()) / 3, latencies   # most around 1 s
