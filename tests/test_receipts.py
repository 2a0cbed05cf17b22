"""The receipt a lookup becomes: the default profile's cached fast path builds exactly what
the general builder does, for any lookup."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hlrsmpp import domain
from hlrsmpp.domain import LOOKUP_COLUMNS, Lookup
from hlrsmpp.smpp.codec import Tag, decode, encode_receipt, encode_receipt_smpp33
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


PROFILES = [None, {"profile": "standard"}, {"profile": "extended"},
            {"profile": "tlv", "mcc_tag": 0x1400, "mnc_tag": 0x1401}]


@settings(max_examples=300, deadline=None)
@given(lookups(), st.sampled_from(PROFILES))
def test_an_smpp33_receipt_is_its_text_without_tlvs(lookup, profile):
    """SMPP 3.3 has no TLVs: the receipt an SMPP 3.3 receiver gets ends after short_message,
    the same text a 3.4 receiver gets, whatever the profile."""
    text, tlvs = lookup.receipt_parts(profile)
    pdu = decode(encode_receipt_smpp33(9, lookup.msisdn.encode(), text, 3, tlvs))
    want = decode(encode_receipt(9, lookup.msisdn.encode(), text, 3, tlvs))
    assert pdu.tlvs == {} and want.tlvs
    assert pdu.params == want.params and pdu.params["short_message"] == text != b""


def test_an_smpp33_receipt_over_254_octets_is_cut():
    """A text over 254 octets goes to message_payload for a 3.4 receiver; 3.3 has no such
    TLV: its receiver gets the first 254 octets in short_message."""
    lookup = Lookup(123, None, "a", "smpp", "447700900123", 1.7e9, 1.7e9, 0, 0, "44", "2" * 90, True,
                    "3" * 90, False, "", "", None, 1)
    full = lookup.receipt_text(True).encode()
    assert len(full) > 254
    text, tlvs = lookup.receipt_parts({"profile": "extended"})
    assert text == b"" and decode(encode_receipt(9, b"447700900123", text, 3, tlvs)).tlvs[Tag.MESSAGE_PAYLOAD] == full
    pdu = decode(encode_receipt_smpp33(9, b"447700900123", text, 3, tlvs))
    assert pdu.tlvs == {} and pdu.params["short_message"] == full[:254]
