"""The nouns every layer shares: a lookup (its row in the history, its receipt's
text and TLVs, docs/smpp.md) and the states of its receipt."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from struct import Struct
from typing import Any

from .ids import first_id_at, time_of_id
from .smpp.codec import Tag, speedups

#: Columns of a lookup row, in the order ``LookupRow`` tuples carry them.
LOOKUP_COLUMNS = (
    "id", "batch_id", "system_id", "channel", "msisdn", "submitted", "done", "cost",
    "err", "cc", "nnc", "ported", "p_nnc", "roaming", "r_cc", "r_nnc", "map_error", "pending",
)
#: A lookup's receipt, as reads give it: none or acknowledged, still owed (its id is in
#: ``receipt_queue``), or dropped unacknowledged after receipts.ttl. The stored column keeps
#: PENDING_RECEIPT once acknowledged (schema 2); the queue decides.
PENDING_NONE, PENDING_RECEIPT = 0, 1
EXPIRED = 2

_N_COLUMNS = len(LOOKUP_COLUMNS)

#: A per-day rollup's key: (system_id, day, cc, network, err); its value [count, cost].
#: ``network`` is the one the subscriber is on (p_nnc if ported, else nnc).
RollupKey = tuple[str, str, str, str, int]


def sum_rollup_rows(sums: dict[tuple[str, str, str, int], list[int]], rows: list[tuple[Any, ...]],
                    start: int, end_id: int) -> int:
    """rows[start:] (in id order) added to ``sums``, {(system_id, cc, network, err):
    [count, cost]}, up to the first with an id of ``end_id`` or more (the next day's); its
    index, or len(rows). ``network`` is the one the subscriber is on: p_nnc if ported,
    else nnc. The reference of _sqlite_batch.c's sum_rollups."""
    for i in range(max(start, 0), len(rows)):
        r = rows[i]
        if r[0] >= end_id:
            return i
        key = (r[2], r[9], r[12] if r[11] and r[12] else r[10], r[8])
        v = sums.get(key)
        if v is None:
            sums[key] = [1, r[7]]
        else:
            v[0] += 1
            v[1] += r[7]
    return len(rows)


def rollup(rows: Iterable[tuple[Any, ...]],
           day_of: Callable[[float], tuple[float, float, str]]) -> dict[RollupKey, list[int]]:
    """The lookup rows of one group commit (in id order) summed per rollup key, so a commit
    writes one upsert per distinct key, not one per lookup. A lookup's day is its id's
    (the instant it was taken); ``day_of(t)``: (start, end, name) of the day holding t."""
    rows = rows if isinstance(rows, list) else list(rows)
    out: dict[RollupKey, list[int]] = {}
    i = 0
    while i < len(rows):
        _, end, day = day_of(time_of_id(rows[i][0]))
        of_day: dict[tuple[str, str, str, int], list[int]] = {}
        i = sum_rollup_rows(of_day, rows, i, max(first_id_at(end), rows[i][0] + 1))
        for (sid, cc, network, err), v in of_day.items():
            out[(sid, day, cc, network, err)] = v
    return out


#: What statistics sum a day's rollups by: the whole day (value ""), the country (cc),
#: the network, the status (err, as decimal text).
ROLLUP_DIMENSIONS = {"day": "d", "country": "c", "network": "n", "status": "s"}


def rollup_dimensions(sums: dict[RollupKey, list[int]]) -> dict[tuple[str, str, str, str], list[int]]:
    """``rollup``'s sums again per (system_id, dimension, value, day): what a statistic by
    one dimension reads, a few rows a day instead of every key of the day."""
    out: dict[tuple[str, str, str, str], list[int]] = {}
    for (sid, day, cc, network, err), (n, cost) in sums.items():
        for key in ((sid, "d", "", day), (sid, "c", cc, day), (sid, "n", network, day),
                    (sid, "s", str(err), day)):
            v = out.get(key)
            if v is None:
                out[key] = [n, cost]
            else:
                v[0] += n
                v[1] += cost
    return out


_TLV_STR = Struct(">HH")
_DATE_CACHE: dict[int, str] = {}
_STANDARD_TAILS: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}  # HLR result -> receipt text and TLVs after the id
_STANDARD: dict[str, Any] = {"profile": "standard"}
# The default-profile receipt around its cached tail, in C when built (the Python below is the reference).
_standard_receipt_parts = speedups.standard_receipt_parts if speedups is not None else None

STATE_ENROUTE, STATE_DELIVERED, STATE_UNDELIVERABLE = 1, 2, 5


def delivered_parts(message_id: int, submitted: float, done: float, tail: bytes, tlvs: bytes,
                    delivered: bool = True) -> tuple[bytes, bytes]:
    """(short_message, TLVs) of a receipt ``id:ID sub:001 dlvrd:001 submit date:D done
    date:D `` + ``tail``, its TLVs ``tlvs`` then receipted_message_id: what every delivered
    receipt shares, lookups' and text messages' (in C when built); ``delivered`` false:
    ``dlvrd:000``, a text message's receipt in any other final state."""
    if _standard_receipt_parts is not None:
        parts: tuple[bytes, bytes] | None = (
            _standard_receipt_parts(message_id, submitted, done, tail, tlvs) if delivered
            else _standard_receipt_parts(message_id, submitted, done, tail, tlvs, False))
        if parts is not None:
            return parts
    mid = b"%d" % message_id
    sub = receipt_date(submitted).encode()
    fin = sub if done == submitted else receipt_date(done).encode()
    text = b"id:%s sub:001 dlvrd:%s submit date:%s done date:%s %s" % (mid, b"001" if delivered else b"000", sub,
                                                                          fin, tail)
    receipted = _TLV_STR.pack(Tag.RECEIPTED_MESSAGE_ID, len(mid) + 1) + mid + b"\0"
    if len(text) > 254:  # pragma: no cover - an id of 64 digits; as _build_parts does
        return b"", tlvs + _TLV_STR.pack(Tag.MESSAGE_PAYLOAD, len(text)) + text + receipted
    return text, tlvs + receipted


def receipt_date(t: float) -> str:
    """YYMMDDhhmm (UTC), cached per minute: it changes once a minute."""
    minute = int(t // 60)
    s = _DATE_CACHE.get(minute)
    if s is None:
        if len(_DATE_CACHE) > 4096:
            _DATE_CACHE.clear()
        s = _DATE_CACHE[minute] = time.strftime("%y%m%d%H%M", time.gmtime(minute * 60))
    return s


class Lookup:
    """One accepted lookup: its row in the history and its receipt."""

    __slots__ = ("id", "batch_id", "system_id", "channel", "msisdn", "submitted", "done", "cost",
                 "err", "cc", "nnc", "ported", "p_nnc", "roaming", "r_cc", "r_nnc", "map_error",
                 "pending", "attempts", "pdu_cache", "duplicate", "withheld")

    def __init__(self, id: int, batch_id: int | None, system_id: str, channel: str, msisdn: str,
                 submitted: float, done: float, cost: int, err: int, cc: str, nnc: str, ported: int,
                 p_nnc: str, roaming: int, r_cc: str, r_nnc: str, map_error: int | None, pending: int):
        self.id = id
        self.batch_id = batch_id
        self.system_id = system_id
        self.channel = channel
        self.msisdn = msisdn
        self.submitted = submitted
        self.done = done
        self.cost = cost
        self.err = err
        self.cc = cc
        self.nnc = nnc
        self.ported = ported
        self.p_nnc = p_nnc
        self.roaming = roaming
        self.r_cc = r_cc
        self.r_nnc = r_nnc
        self.map_error = map_error
        self.pending = pending
        self.attempts = 0
        self.pdu_cache: tuple[bytes, bytes] | None = None
        self.duplicate = False  # test bench: deliver once more after the ack
        self.withheld = False   # test bench: held until a new receiver binds

    @classmethod
    def from_row(cls, r: Iterable[Any]) -> "Lookup":
        return cls(*tuple(r)[:_N_COLUMNS])  # a read may carry more (a text message's, see views)

    @property
    def stat(self) -> str:
        return "DELIVRD" if self.err == 0 else "UNDELIV"

    def message_state(self, now: float) -> int:
        if now < self.done:
            return STATE_ENROUTE
        return STATE_DELIVERED if self.err == 0 else STATE_UNDELIVERABLE

    def receipt_text(self, extended: bool = False) -> str:
        extra = ""
        if extended:
            imsi, msc = self.subscriber_identity()
            extra = f"imsi:{imsi} msc:{msc} mccmnc:{self.serving_nnc} "
        return (f"id:{self.id} sub:001 dlvrd:001 submit date:{receipt_date(self.submitted)} "
                f"done date:{receipt_date(self.done)} stat:{self.stat} err:{self.err:03d} "
                f"cc:{self.cc} nnc:{self.nnc} isPorted:{'true' if self.ported else 'false'} "
                f"p_nnc:{self.p_nnc} isRoaming:{'true' if self.roaming else 'false'} "
                f"r_cc:{self.r_cc} r_nnc:{self.r_nnc} {extra}text:dlr")

    def _standard_parts(self) -> tuple[bytes, bytes]:
        """``receipt_parts`` of the default profile, the one nearly every account gets: all
        after the dates (text) and after the id (TLVs) depends on the HLR result only,
        so it is built once per distinct result."""
        key = (self.err, self.cc, self.nnc, self.ported, self.p_nnc, self.roaming, self.r_cc,
               self.r_nnc, self.map_error)
        tail = _STANDARD_TAILS.get(key)
        if tail is None:
            if len(_STANDARD_TAILS) > 65536:
                _STANDARD_TAILS.clear()
            tail = _STANDARD_TAILS[key] = self._standard_tail()
        if _standard_receipt_parts is not None:  # delivered_parts' C, called straight: once per receipt
            parts: tuple[bytes, bytes] | None = _standard_receipt_parts(self.id, self.submitted, self.done,
                                                                       tail[0], tail[1])
            if parts is not None:
                return parts
        return delivered_parts(self.id, self.submitted, self.done, tail[0], tail[1])

    def _standard_tail(self) -> tuple[bytes, bytes]:
        text = self.receipt_text()
        tlvs = self._build_parts(_STANDARD)[1]
        # The text after "done date:YYMMDDhhmm "; the TLVs before receipted_message_id (last).
        return text[text.index(" stat:") + 1:].encode("ascii"), tlvs[:-(5 + len(str(self.id)))]

    @property
    def serving_nnc(self) -> str:
        """The network the subscriber is on now: ported-to, else the range holder."""
        return self.p_nnc if self.ported and self.p_nnc else self.nnc

    def subscriber_identity(self) -> tuple[str, str]:
        """A plausible IMSI and serving MSC, stable per number (the extended profile).
        An unknown subscriber has neither; an absent one has an IMSI but no MSC."""
        if self.err in (12, 18) or not self.serving_nnc:
            return "", ""
        h = int.from_bytes(hashlib.blake2b(self.msisdn.encode(), digest_size=8).digest(), "big")
        network = self.serving_nnc
        imsi = network + str(h % 10 ** (15 - len(network))).zfill(15 - len(network))
        if self.err in (11, 14, 16):
            return imsi, ""
        cc = self.r_cc if self.roaming and self.r_cc else self.cc
        msc = cc + str(h % 10 ** (12 - len(cc))).zfill(12 - len(cc))
        return imsi, msc

    def receipt_parts(self, profile: Mapping[str, Any] | None = None) -> tuple[bytes, bytes]:
        """(short_message, TLVs) of the receipt, built once and kept for retries."""
        parts = self.pdu_cache
        if parts is None:
            parts = self.pdu_cache = self._standard_parts() if profile is None else self._build_parts(profile)
        return parts

    def _build_parts(self, profile: Mapping[str, Any]) -> tuple[bytes, bytes]:
        """(short_message, TLVs) of the receipt in any profile (standard, extended, tlv)."""
        kind = profile["profile"]
        mid = str(self.id).encode()
        tlvs = [_TLV_STR.pack(Tag.MESSAGE_STATE, 1), b"\x02" if self.err == 0 else b"\x05"]
        if self.err:
            # network_error_code: type 3 (GSM), then the MAP error (the receipt's err when none).
            code = self.map_error if self.map_error is not None else self.err
            tlvs.append(_TLV_STR.pack(Tag.NETWORK_ERROR_CODE, 3) + bytes((3,)) + code.to_bytes(2, "big"))
        if kind == "tlv" and self.serving_nnc:
            # Vendor TLVs (0x1400-0x3FFF) for clients that read TLVs, not text.
            mcc, mnc = self.serving_nnc[:3].encode(), self.serving_nnc[3:].encode()
            tlvs += [_TLV_STR.pack(profile["mcc_tag"], len(mcc) + 1), mcc, b"\0",
                     _TLV_STR.pack(profile["mnc_tag"], len(mnc) + 1), mnc, b"\0"]
        text = self.receipt_text(kind == "extended").encode("ascii")
        if len(text) > 254:  # SMPP 3.4 §5.2.21: longer text goes in message_payload
            tlvs.append(_TLV_STR.pack(Tag.MESSAGE_PAYLOAD, len(text)) + text)
            text = b""
        # receipted_message_id last: some ESMEs take the id from the first 0x001E tag to the
        # end of the PDU.
        tlvs += [_TLV_STR.pack(Tag.RECEIPTED_MESSAGE_ID, len(mid) + 1), mid, b"\0"]
        return text, b"".join(tlvs)
