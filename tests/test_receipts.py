"""The receipt a lookup becomes: the default profile's cached fast path builds exactly what
the general builder does, for any lookup."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hlrsmpp import domain
from hlrsmpp.domain import LOOKUP_COLUMNS, Lookup
from hlrsmpp.tools.esme import parse_receipt_text

DIGITS = st.text("0123456789", min_size=0, max_size=6)


@st.composite
def lookups(draw):
    # Any time, and times a hair either side of a minute (the dates the receipt shows).
    minute = st.integers(26_666_667, 35_000_000).map(lambda m: m * 60.0)
    submitted = draw(st.one_of(st.floats(1.6e9, 2.1e9), minute,
                               minute.map(lambda t: t - 1e-6), minute.map(lambda t: t - 2e-7)))
    err = draw(st.sampled_from([0, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]))
    return Lookup(draw(st.integers(0, (1 << 63) - 1)), None, "a", "smpp", draw(DIGITS), submitted,
                  submitted + draw(st.floats(0, 120)), 0, err, draw(DIGITS), draw(DIGITS),
                  draw(st.booleans()), draw(DIGITS), draw(st.booleans()), draw(DIGITS), draw(DIGITS),
                  draw(st.one_of(st.none(), st.integers(0, 255))), 1)


def _copy(lookup: Lookup) -> Lookup:
    """The same lookup, as its history row would bring it back."""
    return Lookup.from_row([getattr(lookup, c) for c in LOOKUP_COLUMNS])


@settings(max_examples=500, deadline=None)
@given(lookups(), st.data())
def test_standard_fast_path_equals_the_general_builder(lookup, data):
    general = _copy(lookup)
    assert general.receipt_parts({"profile": "standard"}) == lookup.receipt_parts(None)
    # Twice: the second one comes from the cache of HLR results.
    again = _copy(general)
    again.id = data.draw(st.integers(0, (1 << 63) - 1))
    reference = _copy(again)
    assert again.receipt_parts(None) == reference.receipt_parts({"profile": "standard"})
    text = lookup.receipt_parts(None)[0].decode()
    assert parse_receipt_text(text)["id"] == str(lookup.id)
    # The C builder (when built) and the Python one make the same bytes.
    saved, domain._standard_receipt_parts = domain._standard_receipt_parts, None
    try:
        assert _copy(general).receipt_parts(None) == lookup.receipt_parts(None)
    finally:
        domain._standard_receipt_parts = saved
