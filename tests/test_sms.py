"""The SMS package (hlrsmpp/sms/): data codings, segment counting against an independent
reference (smpplib's splitter) and a table of edge cases, concatenation headers and SAR
TLVs, the SMPP time format, final states and the Appendix B receipt."""
from __future__ import annotations

import calendar
import time

import pytest
from hypothesis import given, settings, strategies as st
from smpplib import consts as smpplib_consts, gsm as smpplib_gsm

from hlrsmpp.sms import (DELETED, DELIVERED, EXPIRED, UNDELIVERABLE, ConcatError, Reassembly, UnencodableText, count_payload,
                         count_text, decode, encode, outcome_of, parse_sar, parse_udh, parse_smpp_time,
                         receipt_text, segments_of, split_payload, split_udh, SmppTimeError)
from hlrsmpp.sms.alphabet import GSM_BASIC, GSM_EXTENSION
from hlrsmpp.sms.concat import check_part_length
from hlrsmpp.domain import receipt_date
from hlrsmpp.sms.message import STAT_WORDS, wants_receipt
from hlrsmpp.smpp.codec import Tag
from hlrsmpp.sms.times import format_smpp_time
from hlrsmpp.smpp.status import Status

# smpplib's table differs from GSM 03.38 at 0x5F (it has '`' where GSM has '§') and lacks
# the form feed of the extension table: the property tests draw from the characters both
# tables agree on.
SHARED_GSM = [ch for ch in GSM_BASIC if ch not in "§`\x1b"] + [ch for ch in GSM_EXTENSION if ch != "\f"]
BASIC_ONLY = [ch for ch in SHARED_GSM if ch not in GSM_EXTENSION]


# ---------------------------------------------------------------- the edge cases

@pytest.mark.parametrize("text, encoding, segments, left", [
    ("", "GSM", 1, 160),
    ("a" * 160, "GSM", 1, 0),
    ("a" * 161, "GSM", 2, 145),
    ("a" * 306, "GSM", 2, 0),           # 153 x 2
    ("a" * 307, "GSM", 3, 152),
    ("€" * 80, "GSM", 1, 0),            # extension characters count two septets
    ("a" * 159 + "€", "GSM", 2, 145),   # 161 septets
    ("a" * 152 + "€" + "a" * 153, "GSM", 3, 151),   # the euro sign would straddle parts 1 and 2: it moves to part 2
    ("a" * 151 + "€" + "a" * 153, "GSM", 2, 0),     # exactly 153 + 153
    ("Ж" * 70, "UCS2", 1, 0),
    ("Ж" * 71, "UCS2", 2, 63),
    ("Ж" * 134, "UCS2", 2, 0),          # 67 x 2
    ("Ж" * 66 + "😀" + "Ж" * 66, "UCS2", 3, 66),     # the emoji would straddle parts 1 and 2
    ("Ж" * 65 + "😀" + "Ж" * 67, "UCS2", 2, 0),
    ("😀" * 35, "UCS2", 1, 0),          # 70 code units
])
def test_segment_edge_cases(text, encoding, segments, left):
    count = count_text(text)
    assert (count.encoding, count.segments, count.left) == (encoding, segments, left)
    assert count.characters == len(text)


def test_binary_and_8bit_codings_count_octets():
    assert count_payload(b"\x00" * 140, 4)[5:] == (1, 0)
    assert count_payload(b"\x00" * 141, 2)[5:] == (2, 127)
    assert count_payload(b"\xff" * 268, 4).segments == 2
    assert count_text("é" * 141, 3)[5:] == (2, 127)      # Latin-1: 140 / 134
    assert count_text("a" * 161, 1)[5:] == (2, 145)      # IA5: 7-bit on the air, 160 / 153
    assert segments_of(b"\x00" * 135, 0xF6) == 1         # a GSM message class in 8-bit


def test_a_coding_that_cannot_carry_the_text_is_a_clear_error():
    with pytest.raises(UnencodableText, match="GSM 03.38"):
        count_text("Жук", 0)
    with pytest.raises(UnencodableText):
        count_text("€", 3)
    with pytest.raises(UnencodableText, match="binary"):
        count_text("abc", 4)


def test_gsm_alphabet_round_trip_and_escape():
    text = "Hello {world} [€5] ~|^\\ @£$ §¿"
    octets = encode(text, 0)
    assert octets.count(0x1B) == 9
    assert decode(octets, 0) == text
    assert encode("€", 0) == b"\x1b\x65"
    assert decode(b"\x1b\x41", 0) == "A"    # an unknown extension reads as its basic character
    assert decode(b"\xc0", 0) == "?"
    assert decode("Жук😀".encode("utf-16-be"), 8) == "Жук😀"


# ------------------------------------------------- against an independent reference

def _reference_parts(octets: bytes, per_part: int) -> list[bytes]:
    return [octets[i:i + per_part] for i in range(0, len(octets), per_part)]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(BASIC_ONLY), max_size=800))
def test_gsm_basic_agrees_with_smpplib(text):
    parts, coding, esm_class = smpplib_gsm.make_parts(text, smpplib_consts.SMPP_ENCODING_DEFAULT)
    assert coding == 0
    payloads = [p[6:] for p in parts] if esm_class == 0x40 else parts
    assert split_payload(encode(text, 0), 0) == payloads
    assert count_text(text).segments == len(parts)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(SHARED_GSM), max_size=800))
def test_gsm_with_extension_characters_never_splits_an_escape(text):
    """smpplib cuts the octets every 153 (it may cut an escape from its character); the
    same octets in our parts, no part over 153 septets, no part ending in a lone escape,
    and one part more than smpplib's only when smpplib cut an escape."""
    octets = encode(text, 0)
    parts, _, esm_class = smpplib_gsm.make_parts(text, smpplib_consts.SMPP_ENCODING_DEFAULT)
    ours = split_payload(octets, 0)
    assert b"".join(ours) == octets == b"".join(p[6:] if esm_class == 0x40 else p for p in parts)
    if len(ours) > 1:
        assert all(len(p) <= 153 and not p.endswith(b"\x1b") for p in ours)
        assert "".join(decode(p, 0) for p in ours) == text
    cut = any(p[6:][-1:] == b"\x1b" for p in parts[:-1]) if esm_class == 0x40 else False
    assert len(ours) - len(parts) in ((0, 1) if cut else (0,))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=300))
def test_ucs2_agrees_with_smpplib_and_never_splits_a_surrogate_pair(text):
    parts, coding, esm_class = smpplib_gsm.make_parts(text, smpplib_consts.SMPP_ENCODING_ISO10646)
    octets = text.encode("utf-16-be")
    ours = split_payload(octets, 8)
    assert b"".join(ours) == octets
    for p in ours:
        p.decode("utf-16-be")            # no part ends in half a surrogate pair
        assert len(p) <= (140 if len(ours) == 1 else 134)
    ref = [p[6:] for p in parts] if esm_class == 0x40 else parts
    if not any(0xD8 <= p[-2] <= 0xDB for p in ref[:-1]):
        assert ours == ref               # where smpplib cuts no pair, the same parts
    else:
        assert len(ours) >= len(ref)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(SHARED_GSM), max_size=600))
def test_left_and_segments_are_consistent(text):
    count = count_text(text)
    capacity = 160 if count.segments == 1 else 153
    assert 0 <= count.left <= capacity
    assert count.segments == segments_of(encode(text, 0), 0)
    if count.segments > 1:
        assert count.units > 160


# ------------------------------------------------------------ concatenation

def test_udh_8_and_16_bit_references():
    udh, text = split_udh(b"\x05\x00\x03\x2a\x03\x02hello")
    assert (udh, text) == (b"\x05\x00\x03\x2a\x03\x02", b"hello")
    assert tuple(parse_udh(udh)) == (0x2A, 3, 2, "udh8")
    udh, _ = split_udh(b"\x06\x08\x04\x12\x34\x02\x01hi")
    assert tuple(parse_udh(udh)) == (0x1234, 2, 1, "udh16")
    # A header with only a port addressing IE: not a concatenated part.
    assert parse_udh(split_udh(b"\x06\x05\x04\x0b\x84\x23\xf0x")[0]) is None


@pytest.mark.parametrize("short_message, status", [
    (b"", Status.RINVMSGLEN),                               # UDHI with no message
    (b"\x09\x00\x03\x01\x02\x01", Status.RINVMSGLEN),       # UDH longer than the message
    (b"\x05\x00\x03\x01\x00\x01x", Status.RINVESMCLASS),    # 0 parts
    (b"\x05\x00\x03\x01\x02\x00x", Status.RINVESMCLASS),    # part 0
    (b"\x05\x00\x03\x01\x02\x03x", Status.RINVESMCLASS),    # part 3 of 2
    (b"\x04\x00\x02\x01\x02x", Status.RINVESMCLASS),        # IE of the wrong length
    (b"\x04\x00\x05\x01\x02x", Status.RINVESMCLASS),        # IE past the header
    (b"\x0a\x00\x03\x01\x02\x01\x00\x03\x01\x02\x01x", Status.RINVESMCLASS),  # two of them
])
def test_bad_udh(short_message, status):
    with pytest.raises(ConcatError) as err:
        udh, _ = split_udh(short_message)
        parse_udh(udh)
    assert err.value.status == status


def test_part_length_checks():
    udh = b"\x05\x00\x03\x01\x02\x01"
    check_part_length(udh, b"a" * 153, 0)
    with pytest.raises(ConcatError) as err:
        check_part_length(udh, b"a" * 154, 0)
    assert err.value.status == Status.RINVMSGLEN
    check_part_length(udh, b"\x04\x10" * 67, 8)
    with pytest.raises(ConcatError):
        check_part_length(udh, b"\x04\x10" * 68, 8)
    check_part_length(b"", b"a" * 153, 0, sar_total=2)
    with pytest.raises(ConcatError):
        check_part_length(b"", b"a" * 154, 0, sar_total=2)


def test_sar_tlvs():
    assert parse_sar(None, None, None) is None
    assert tuple(parse_sar(7, 3, 3)) == (7, 3, 3, "sar")
    with pytest.raises(ConcatError) as err:
        parse_sar(7, 3, None)
    assert err.value.status == Status.RMISSINGOPTPARAM
    for total, seq in ((0, 0), (2, 0), (2, 3)):
        with pytest.raises(ConcatError) as err:
            parse_sar(7, total, seq)
        assert err.value.status == Status.RINVOPTPARAMVAL


def test_reassembly_out_of_order_and_a_total_that_changes():
    r = Reassembly()
    text = "x" * 10 + "The quick brown fox jumps over the lazy dog " * 8
    parts = split_payload(encode(text, 0), 0)
    heads = [parse_udh(b"\x05\x00\x03\x09" + bytes((len(parts), i))) for i in range(1, len(parts) + 1)]
    entry = r.add("k", heads[2], parts[2], 0, 0.0)
    assert entry.text() == ""                  # part 1 not seen yet
    entry = r.add("k", heads[0], parts[0], 0, 1.0)
    assert entry.text().startswith("xxxxxxxxxxThe quick") and not entry.complete
    entry = r.add("k", heads[1], parts[1], 0, 2.0)
    assert entry.complete and entry.text() == text
    with pytest.raises(ConcatError) as err:
        r.add("k", parse_udh(b"\x05\x00\x03\x09\x05\x01"), b"x", 0, 3.0)
    assert err.value.status == Status.RINVESMCLASS
    r.add("k", parse_udh(b"\x05\x00\x03\x09\x05\x01"), b"x", 0, 10000.0)   # the old one expired


# ---------------------------------------------------------------- SMPP time

NOW = calendar.timegm((2026, 1, 31, 12, 0, 0))


@pytest.mark.parametrize("value, expected", [
    ("", None),
    ("260131120000000+", NOW),
    ("260131130000004+", NOW),                      # 13:00 at UTC+1 is 12:00 UTC
    ("260131100000008-", NOW),                      # 10:00 at UTC-2
    ("260131120000500+", NOW + 0.5),
    ("000000000500000R", NOW + 300),
    ("000001000000000R", NOW + 86400),
    ("000100000000000R", calendar.timegm((2026, 2, 28, 12, 0, 0))),   # a month on: Feb has 28 days
    ("010000000000000R", calendar.timegm((2027, 1, 31, 12, 0, 0))),
])
def test_smpp_time(value, expected):
    assert parse_smpp_time(value, NOW) == expected


@pytest.mark.parametrize("value", ["2601311200", "260131120000000X", "261331120000000+", "260131120000049+",
                                   "26013112000000a+", "000000250000000R", "260230120000000+"])
def test_bad_smpp_time(value):
    with pytest.raises(SmppTimeError):
        parse_smpp_time(value, NOW)


def test_format_smpp_time_round_trips():
    t = time.time() // 1
    assert parse_smpp_time(format_smpp_time(t), 0) == t


# ---------------------------------------------------- states and receipts

def test_outcome_from_hlr_truth():
    assert outcome_of(0) == (DELIVERED, 0, False)
    for err in (12, 19, 21):            # unknown, barred, not provisioned
        assert outcome_of(err) == (UNDELIVERABLE, err, False)
    assert outcome_of(11) == (EXPIRED, 11, True)    # absent: retried, then expired


def test_registered_delivery():
    assert not wants_receipt(0, DELIVERED)
    assert wants_receipt(1, DELIVERED) and wants_receipt(1, EXPIRED)
    assert not wants_receipt(2, DELIVERED) and wants_receipt(2, UNDELIVERABLE)


def test_appendix_b_receipt():
    assert receipt_text(6002, "2607140141", "2607140142", DELIVERED, 0, "Hello world, this is long") == (
        "id:6002 sub:001 dlvrd:001 submit date:2607140141 done date:2607140142 stat:DELIVRD err:000 "
        "text:Hello world, this is")
    assert receipt_text(7, "2607140141", "2607140142", EXPIRED, 11, "hi").endswith(
        "dlvrd:000 submit date:2607140141 done date:2607140142 stat:EXPIRED err:011 text:hi")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=60))
def test_gsm_decode_reads_each_octet_as_the_alphabet_says(octets):
    # Octet by octet from the table (the fast path for ASCII-like texts must agree).
    out, escaped = [], False
    for b in octets:
        if escaped:
            escaped = False
            ext = {code: ch for ch, code in GSM_EXTENSION.items()}.get(b)
            out.append(ext or (GSM_BASIC[b] if b < 0x80 and b != 0x1B else "?"))
        elif b == 0x1B:
            escaped = True
        else:
            out.append(GSM_BASIC[b] if b < 0x80 else "?")
    assert decode(octets, 0) == "".join(out)
    assert decode(b"Hello, world 42", 0) == "Hello, world 42"
    assert decode(b"a\x1b", 0) == "a"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=90), st.binary(max_size=60).map(lambda b: bytes(0x20 + x % 0x5F for x in b))),
       st.sampled_from([0, 1, 2, 3, 4, 8, 0xF1, 0xF5, 0x11]))
def test_a_receipts_text_of_printable_octets_is_the_decoded_texts(octets, dc):
    """The receipt's octets taken as they are (printable ASCII reading as itself) are
    the decoded, '?'-for-unprintable head's, in every coding."""
    from hlrsmpp.server.sms import SmsMessage
    m = SmsMessage(1, None, "texter", "sms", "447400123456", 0.0, 1.0, 1, 0, "44", "23410", 0, "", 0, "", "", None,
                   1)
    m.data_coding, m.text, m.entry = dc, octets[:80].decode("latin-1"), None
    assert m.head_octets() == m.text_head().encode("latin-1", "replace")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, (1 << 63) - 1), st.sampled_from([DELIVERED, EXPIRED, UNDELIVERABLE]),
       st.text(max_size=30), st.sampled_from([0, 3, 8]))
def test_a_text_message_receipt_is_appendix_b_built_either_way(mid, state, text, dc):
    """The delivered receipt's fast builder (C when built) and the general one agree."""
    from hlrsmpp import domain
    from hlrsmpp.server.sms import SmsMessage, delivered_tail
    now = 1_780_000_000.0
    m = SmsMessage(mid, None, "texter", "sms", "447400123456", now, now + 3, 1, 0 if state == DELIVERED else 11,
                   "44", "23410", 0, "", 0, "", "", None, 1)
    octets = text.encode("utf-16-be") if dc == 8 else text.encode("latin-1", "replace")
    m.segments, m.data_coding, m.registered_delivery, m.source_addr = 1, dc, 1, "ACME"
    m.text, m.state, m.version, m.entry, m.key, m.tail = octets[:80].decode("latin-1"), state, 0, None, None, None
    text_part, tlvs = m.receipt_parts()
    assert text_part == m.receipt_text().encode("latin-1", "replace")
    # As accepted: its delivered receipt's tail built once, from the octets submitted.
    m.tail = delivered_tail(octets, dc)
    assert m.receipt_parts() == (text_part, tlvs)
    saved, domain._standard_receipt_parts = domain._standard_receipt_parts, None
    try:
        assert m.receipt_parts() == (text_part, tlvs)
    finally:
        domain._standard_receipt_parts = saved
    assert tlvs.endswith(str(mid).encode() + b"\0")


@pytest.mark.parametrize("state, err, map_error", [(EXPIRED, 27, None), (UNDELIVERABLE, 1, 7), (DELETED, 27, None)])
def test_a_text_message_receipt_not_delivered_says_so_in_text_and_tlvs(state, err, map_error):
    """dlvrd:000, the state's stat word and err; message_state, network_error_code (GSM,
    the MAP error when there is one) unless deleted, receipted_message_id last."""
    from hlrsmpp.server.sms import SmsMessage
    from hlrsmpp.smpp.codec import decode_tlvs
    now = 1_780_000_000.0
    m = SmsMessage(1234567, None, "texter", "sms", "447400123456", now, now + 3, 1, err, "44", "23410", 0, "", 0, "",
                   "", map_error, 1)
    m.segments, m.data_coding, m.registered_delivery, m.source_addr = 1, 0, 1, "ACME"
    m.text, m.state, m.version, m.entry, m.key, m.tail = "Hello", state, 0, None, None, None
    text, tlvs = m.receipt_parts()
    shown = 0 if state == DELETED else err
    assert text == (f"id:1234567 sub:001 dlvrd:000 submit date:{receipt_date(now)} done date:"
                    f"{receipt_date(now + 3)} stat:{STAT_WORDS[state]} err:{shown:03d} text:Hello").encode()
    got = decode_tlvs(tlvs, 0, len(tlvs))
    assert got[Tag.MESSAGE_STATE] == bytes((state,))
    if state == DELETED:
        assert Tag.NETWORK_ERROR_CODE not in got
    else:
        assert got[Tag.NETWORK_ERROR_CODE] == bytes((3,)) + (map_error or err).to_bytes(2, "big")
    assert tlvs.endswith(b"\x00\x1e\x00\x08" + b"1234567\0")
