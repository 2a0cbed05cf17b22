"""Numbering plans as prefix tables, precomputed from phonenumbers' metadata.

phonenumbers validates with one regular expression per (region, number type); calling it
costs ~30 µs a number, too slow for every submit_sm.  Its patterns use a tiny regex
subset (digits, [classes], \\d, (?:...), |, ?, {n}, {n,m}), so each pattern expands into
"digit prefix + n free digits" pieces.  Per calling code we store one dict
    national prefix -> {NSN length: Range(region, number type, home network)}
where every key already carries what its shorter prefixes say (ancestor entries are
merged in at build time), so a lookup is a single longest-prefix match.  For the hot path
that match is precomputed as well (build_index): a dict get per level (3 digits after the
calling code, then 2 at a time; most numbers need one or two) instead of one get per key
length present (up to 8).
Tables are built lazily per calling code (a few ms each) and kept for the process.
"""
from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from collections.abc import Container
from typing import Any, NamedTuple

import phonenumbers
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

ALL = "0123456789"

# phonenumbers' own precedence in get_number_type(): special services first.
_SPECIAL = (("premium_rate", "premium_rate"), ("toll_free", "toll_free"),
            ("shared_cost", "shared_cost"), ("voip", "voip"),
            ("personal_number", "personal"), ("pager", "pager"), ("uan", "uan"),
            ("voicemail", "voicemail"))
_DESCS = ("general_desc", "fixed_line", "mobile") + tuple(d for d, _ in _SPECIAL)
# Number types an HLR serves: only these can be SMS destinations with a home network.
MOBILE_TYPES = frozenset({"mobile", "fixed_or_mobile", "pager"})


class Range(NamedTuple):
    region: str   # ISO 3166 alpha-2 (or "001" for non-geographic calling codes)
    ntype: str    # mobile, fixed, fixed_or_mobile, toll_free, premium_rate, voip, ...
    nnc: str      # range holder MCC+MNC ("" for non-mobile types)


# --- regex subset -> sequences of digit classes -------------------------------------

#: A parsed pattern: ('c', digits) | ('s', [nodes]) | ('a', [nodes]) | ('r', node, lo, hi).
_Tree = tuple[Any, ...]


def _parse(pattern: str) -> _Tree:
    """Parse the phonenumbers regex subset into nested tuples:
    ('c', digits) | ('s', [nodes]) | ('a', [nodes]) | ('r', node, lo, hi)."""
    pos = 0

    def alt() -> _Tree:
        nonlocal pos
        branches = [seq()]
        while pos < len(pattern) and pattern[pos] == "|":
            pos += 1
            branches.append(seq())
        return branches[0] if len(branches) == 1 else ("a", branches)

    def seq() -> _Tree:
        nonlocal pos
        items = []
        while pos < len(pattern) and pattern[pos] not in "|)":
            node = atom()
            if pos < len(pattern) and pattern[pos] == "?":
                pos += 1
                node = ("r", node, 0, 1)
            elif pos < len(pattern) and pattern[pos] == "{":
                end = pattern.index("}", pos)
                lo, _, hi = pattern[pos + 1:end].partition(",")
                node = ("r", node, int(lo), int(hi) if hi else int(lo))
                pos = end + 1
            items.append(node)
        return ("s", items)

    def atom() -> _Tree:
        nonlocal pos
        ch = pattern[pos]
        if pattern.startswith("(?:", pos):
            pos += 3
            node = alt()
            if pattern[pos] != ")":
                raise ValueError(f"unbalanced group in {pattern!r}")
            pos += 1
            return node
        if ch == "[":
            end = pattern.index("]", pos)
            body, i = pattern[pos + 1:end], 0
            digits: set[str] = set()
            while i < len(body):
                if i + 2 < len(body) and body[i + 1] == "-":
                    digits.update(str(d) for d in range(int(body[i]), int(body[i + 2]) + 1))
                    i += 3
                else:
                    digits.add(body[i])
                    i += 1
            pos = end + 1
            return ("c", "".join(sorted(digits)))
        if pattern.startswith("\\d", pos):
            pos += 2
            return ("c", ALL)
        if ch.isdigit():
            pos += 1
            return ("c", ch)
        raise ValueError(f"unsupported regex construct {ch!r} in {pattern!r}")

    tree = alt()
    if pos != len(pattern):
        raise ValueError(f"trailing text in {pattern!r}")
    return tree


def _expand(node: _Tree) -> list[tuple[str, ...]]:
    """All fixed-length sequences of digit classes the node matches."""
    kind = node[0]
    if kind == "c":
        return [(node[1],)]
    if kind == "a":
        return [s for branch in node[1] for s in _expand(branch)]
    if kind == "s":
        out: list[tuple[str, ...]] = [()]
        for part in node[1]:
            pieces = _expand(part)
            out = [a + b for a in out for b in pieces]
        return out
    _, sub, lo, hi = node
    pieces = _expand(sub)
    out = []
    for n in range(lo, hi + 1):
        acc: list[tuple[str, ...]] = [()]
        for _ in range(n):
            acc = [a + b for a in acc for b in pieces]
        out.extend(acc)
    return out


def pattern_prefixes(pattern: str) -> list[tuple[str, int]]:
    """(digit prefix, total length) pairs: the pattern matches exactly the strings of
    that length starting with one of the prefixes (trailing \\d's become free digits)."""
    out = []
    for classes in _expand(_parse(pattern)):
        cut = len(classes)
        while cut and classes[cut - 1] == ALL:
            cut -= 1
        for digits in itertools.product(*classes[:cut]):
            out.append(("".join(digits), len(classes)))
    return out


# --- per calling code tables ----------------------------------------------------------

def _metadata(cc: int, region: str) -> Any:
    if region == "001":
        return phonenumbers.PhoneMetadata.metadata_for_nongeo_region(cc)
    return phonenumbers.PhoneMetadata.metadata_for_region(region)


class Node:
    """One level of a Country's prefix index: ``map.get(msisdn[:depth], best)`` is a leaf
    (a tuple of Ranges indexed by len(msisdn)) or the Node of the next level.  Keys and
    indexes are of the whole E.164 number, calling code included, so that the hot path
    needs no NSN slice."""
    __slots__ = ("depth", "map", "best")

    def __init__(self, depth: int, map: dict[str, Any], best: tuple[Range, ...]):
        self.depth, self.map, self.best = depth, map, best


# Leaves cover numbers of 0..LEAF_LEN-1 digits, calling code included: parse() admits at
# most 15; longer ones go the slow way (Country.scan).
LEAF_LEN = 16
# Digits a Node spans: 3 at the top (most lookups end there or one level down), then 2.
# Wider strides save a level but cost memory: 3/2 adds ~15 MB to the tables, 3/3 ~50 MB.
STRIDE_TOP = 3
STRIDE = 2


class Country:
    """Numbering plan of one calling code."""
    __slots__ = ("cc", "regions", "lengths", "table", "keylens", "index")

    def __init__(self, cc: str, regions: tuple[str, ...], lengths: frozenset[int]):
        self.cc, self.regions, self.lengths = cc, regions, lengths
        self.table: dict[str, dict[int, Range]] | None = None   # built on first use
        self.keylens: tuple[int, ...] = ()
        self.index: Node | None = None   # build_index(table), with the table

    def lookup(self, nsn: str) -> Range:
        """Range of a national significant number; ntype "" when not allocated (its nnc
        is then the holder of the enclosing block, if any: HLR lookups report it)."""
        msisdn = self.cc + nsn
        if not (nsn.isdigit() and nsn.isascii() and len(msisdn) < LEAF_LEN):
            return self.scan(nsn)
        node = self.index   # Resolver.resolve() inlines this walk
        leaf = node.map.get(msisdn[:node.depth], node.best)  # type: ignore[union-attr]  # ready: see Resolver
        while leaf.__class__ is Node:
            leaf = leaf.map.get(msisdn[:leaf.depth], leaf.best)
        return leaf[len(msisdn)]  # type: ignore[no-any-return]

    def scan(self, nsn: str) -> Range:
        """lookup() by probing the table once per key length (any string)."""
        table = self.table
        for k in self.keylens:   # the empty key is always present: the loop always hits
            hit = table.get(nsn[:k])  # type: ignore[union-attr]  # ready: see Resolver
            if hit is not None:
                return hit.get(len(nsn)) or hit[0]
        raise AssertionError("numbering table without a root entry")


def build_index(table: dict[str, dict[int, Range]], cc: str) -> Node:
    """The longest-prefix match of a build_table() table, precomputed for the digit
    strings after cc.  A Node at prefix p answers for every digit string s extending p
    with len(p) <= len(s) <= depth: the leaf of the longest key that is a prefix of s or,
    where longer keys extend s (only if len(s) == depth), the Node below s.  Only answers
    other than the Node's best (the leaf for p itself) are stored: most blocks are uniform.
    Shorter strings are there for numbers shorter than depth (msisdn[:depth] is all of
    them).  Depth is len(p) + STRIDE (STRIDE_TOP at the root), or less where no key
    below p is that long."""
    table = {cc + key: hit for key, hit in table.items()}   # keys of whole numbers
    below: dict[str, int] = {}   # prefix -> length of the longest key extending it
    for key in table:
        for k in range(len(key) + 1):
            if below.get(key[:k], -1) < len(key):
                below[key[:k]] = len(key)
    leaves: dict[int, tuple[Range, ...]] = {}   # table values are interned: one leaf each

    def leaf(hit: dict[int, Range]) -> tuple[Range, ...]:
        if id(hit) not in leaves:
            leaves[id(hit)] = tuple(hit.get(n - len(cc)) or hit[0] for n in range(LEAF_LEN))
        return leaves[id(hit)]

    def node(prefix: str, best: tuple[Range, ...], stride: int = STRIDE) -> Node:
        depth = min(len(prefix) + stride, below[prefix])
        out: dict[str, object] = {}

        def fill(s: str, up: tuple[Range, ...]) -> None:
            if s in table:
                up = leaf(table[s])
            if len(s) == depth and below.get(s, 0) > depth:
                out[s] = node(s, up)
                return
            if up is not best:
                out[s] = up
            elif s not in below:   # no key is s or extends it: all of it answers best
                return
            if len(s) < depth:
                for d in ALL:
                    fill(s + d, up)

        fill(prefix, best)
        return Node(depth, out, best)

    return node(cc, leaf(table[cc]), STRIDE_TOP)


def _number_type(md: Any, matched: set[str]) -> str | None:
    """phonenumbers' get_number_type() on the set of descs a number matches."""
    if "general_desc" not in matched:
        return None
    for desc, name in _SPECIAL:
        if desc in matched:
            return name
    mobile = "mobile" in matched
    if "fixed_line" in matched:
        return "fixed_or_mobile" if (md.same_mobile_and_fixed_line_pattern or mobile) else "fixed"
    if mobile and not md.same_mobile_and_fixed_line_pattern:
        return "mobile"
    return None


def _closest(keys: Container[str], key: str) -> str | None:
    """Longest proper prefix of key present in keys (the empty key counts)."""
    for k in range(len(key) - 1, -1, -1):
        if key[:k] in keys:
            return key[:k]
    return None


def build_table(cc: int, regions: tuple[str, ...], holders: dict[str, str],
                defaults: dict[str, str]) -> dict[str, dict[int, Range]]:
    """holders: national prefix -> range holder MCC+MNC; defaults: region -> fallback.
    Values map NSN length -> Range, and 0 -> the Range of unallocated numbers there."""
    # prefix -> [(length|None, region idx, desc)]
    entries: dict[str, list[tuple[int | None, int, str]]] = defaultdict(list)
    entries[""] = []
    metas = [_metadata(cc, r) for r in regions]
    for ri, md in enumerate(metas):
        if md is None:
            continue
        for desc_name in _DESCS:
            desc = getattr(md, desc_name)
            if desc is None or not desc.national_number_pattern:
                continue
            allowed = set(desc.possible_length or ())
            if allowed == {-1}:
                continue
            for prefix, length in pattern_prefixes(desc.national_number_pattern):
                if not allowed or length in allowed:
                    entries[prefix].append((length, ri, desc_name))
        if md.leading_digits:   # region claims numbers by leading digits (e.g. NANPA)
            for prefix, _ in pattern_prefixes(md.leading_digits):
                entries[prefix].append((None, ri, "lead"))
    # Carry every ancestor's entries down so the longest prefix alone decides.
    merged: dict[str, list[tuple[int | None, int, str]]] = {}
    for key in sorted(entries, key=len):
        parent = _closest(merged, key)
        merged[key] = (merged[parent] if parent is not None else []) + entries[key]
    keys = set(merged) | set(holders)
    interned: dict[tuple[Any, ...], dict[int, Range]] = {}
    table: dict[str, dict[int, Range]] = {}
    for key in sorted(keys, key=len):
        src = key if key in merged else _closest(merged, key)
        ents = merged.get(src, []) if src is not None else []
        hk = key if key in holders else _closest(holders, key)
        holder = holders.get(hk, "") if hk is not None else ""
        leads = {ri for ln, ri, d in ents if ln is None}
        claimed = next((r for ri, r in enumerate(regions) if ri in leads), regions[0])
        value = {0: Range(claimed, "", holder)}
        for length in sorted({ln for ln, _, _ in ents if ln is not None}):
            matched = defaultdict(set)
            for ln, ri, d in ents:
                if ln == length:
                    matched[ri].add(d)
            # phonenumbers' region choice: leading digits claim, else first valid region
            for ri, md in enumerate(metas):
                if md is None:
                    continue
                if md.leading_digits:
                    if ri in leads:
                        ntype = _number_type(md, matched[ri])
                        break
                elif _number_type(md, matched[ri]):
                    ntype = _number_type(md, matched[ri])
                    break
            else:
                ntype = None
            if ntype is None:
                continue
            region = regions[ri]
            nnc = (holder or defaults.get(region, "")) if ntype in MOBILE_TYPES else ""
            value[length] = Range(region, ntype, nnc)
        canon = tuple(sorted(value.items()))
        table[key] = interned.setdefault(canon, value)
    # Drop keys that say the same as their nearest ancestor: smaller, same answers.
    for key in sorted(table, key=len, reverse=True):
        parent = _closest(table, key)
        if parent is not None and table[parent] is table[key]:
            del table[key]
    return table


class NumberingPlan:
    """All calling codes; parse-time checks are eager, prefix tables lazy per cc."""

    def __init__(self, holders: dict[str, str] | None = None,
                 defaults: dict[str, str] | None = None):
        self.defaults = defaults or {}   # region -> MCC+MNC
        self.countries: dict[str, Country] = {}
        for cc, regions in COUNTRY_CODE_TO_REGION_CODE.items():
            md = _metadata(cc, regions[0])
            if md is None or md.general_desc is None:
                continue
            lengths = frozenset(n for n in md.general_desc.possible_length if n > 0)
            self.countries[str(cc)] = Country(str(cc), tuple(regions), lengths)
        # For parse(): every string of 1..3 digits -> (the calling code it starts with,
        # the lengths of a whole number valid there, at most 15): one dict get a number
        # instead of up to three plus a subtraction.
        self.e164: dict[str, tuple[str, frozenset[int]]] = {}
        for n in (1, 2, 3):
            for digits in map("".join, itertools.product(ALL, repeat=n)):
                country = self.country(digits)
                if country is not None:
                    self.e164[digits] = (country.cc, frozenset(
                        len(country.cc) + k for k in country.lengths if len(country.cc) + k <= 15))
        self.holders: dict[str, dict[str, str]] = defaultdict(dict)   # cc -> NSN prefix -> nnc
        for prefix, nnc in (holders or {}).items():
            country = self.country(prefix)
            if country is not None:
                self.holders[country.cc][prefix[len(country.cc):]] = nnc
        self._lock = threading.Lock()

    def country(self, msisdn: str) -> Country | None:
        """Calling codes are prefix-free: at most one of 1..3 digits matches."""
        c = self.countries
        return c.get(msisdn[:1]) or c.get(msisdn[:2]) or c.get(msisdn[:3])

    def table(self, country: Country) -> Country:
        if country.table is None:
            with self._lock:   # build once even if called from several threads
                if country.table is None:
                    self._build(country)
        return country

    def _build(self, country: Country) -> None:
        table = build_table(int(country.cc), country.regions, self.holders.get(country.cc, {}),
                            self.defaults)
        country.keylens = tuple(sorted({len(k) for k in table}, reverse=True))
        country.index = build_index(table, country.cc)
        country.table = table   # last: a non-None table means the Country is ready

    def warm(self) -> None:
        """Build every calling code now (start-up) instead of on first use."""
        for country in self.countries.values():
            self.table(country)

    def lookup(self, msisdn: str, country: Country) -> Range:
        if country.table is None:
            self.table(country)
        return country.lookup(msisdn[len(country.cc):])
