"""Lookups and their receipts: the receipt text (docs/smpp.md), and each account's outbox.

An ``Outbox`` holds an account's receipts from the moment their lookup is
durable until the ESME answers deliver_sm_resp ESME_ROK: ready ones in id
order, the ones in flight on the receiving session (bounded by its window, which grows
with the transmitters feeding it), and
the ones waiting for their HLR latency or a retry. It never drops one except
past the TTL, and that is counted.
"""
from __future__ import annotations

import hashlib
import time
from collections import deque
from struct import Struct
from typing import Callable

from ..accounts.store import EXPIRED
from ..smpp.codec import Command, Tag, encode_receipt, speedups
from .. import metrics

_TLV_STR = Struct(">HH")
_DELIVER_SM_OK = (int(Command.DELIVER_SM), 0)  # what a pump writes, for the PDU metrics
_DATE_CACHE: dict[int, str] = {}
_STANDARD_TAILS: dict[tuple, tuple[bytes, bytes]] = {}  # HLR result -> receipt text and TLVs after the id
_STANDARD = {"profile": "standard"}
# The default-profile receipt around its cached tail, in C when built (the Python below is the reference).
_standard_receipt_parts = speedups.standard_receipt_parts if speedups is not None else None

STATE_ENROUTE, STATE_DELIVERED, STATE_UNDELIVERABLE = 1, 2, 5


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

    def __init__(self, id, batch_id, system_id, channel, msisdn, submitted, done, cost,
                 err, cc, nnc, ported, p_nnc, roaming, r_cc, r_nnc, map_error, pending):
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
    def from_row(cls, r) -> "Lookup":
        return cls(*tuple(r))

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
        if _standard_receipt_parts is not None:
            parts = _standard_receipt_parts(self.id, self.submitted, self.done, tail[0], tail[1])
            if parts is not None:
                return parts
        mid = b"%d" % self.id
        submitted = receipt_date(self.submitted).encode()
        done = submitted if self.done == self.submitted else receipt_date(self.done).encode()
        text = b"id:%s sub:001 dlvrd:001 submit date:%s done date:%s %s" % (mid, submitted, done, tail[0])
        receipted = _TLV_STR.pack(Tag.RECEIPTED_MESSAGE_ID, len(mid) + 1) + mid + b"\0"
        if len(text) > 254:  # pragma: no cover - an id of 64 digits; as _build_parts does
            return b"", tail[1] + _TLV_STR.pack(Tag.MESSAGE_PAYLOAD, len(text)) + text + receipted
        return text, tail[1] + receipted

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

    def receipt_parts(self, profile: dict | None = None) -> tuple[bytes, bytes]:
        """(short_message, TLVs) of the receipt, built once and kept for retries."""
        parts = self.pdu_cache
        if parts is None:
            parts = self.pdu_cache = self._standard_parts() if profile is None else self._build_parts(profile)
        return parts

    def _build_parts(self, profile: dict) -> tuple[bytes, bytes]:
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
            tlvs += [_TLV_STR.pack(profile["mcc_tag"], 4), mcc, b"\0",
                     _TLV_STR.pack(profile["mnc_tag"], len(mnc) + 1), mnc, b"\0"]
        text = self.receipt_text(kind == "extended").encode("ascii")
        if len(text) > 254:  # SMPP 3.4 §5.2.21: longer text goes in message_payload
            tlvs.append(_TLV_STR.pack(Tag.MESSAGE_PAYLOAD, len(text)) + text)
            text = b""
        # receipted_message_id last: some ESMEs take the id from the first 0x001E tag to the
        # end of the PDU.
        tlvs += [_TLV_STR.pack(Tag.RECEIPTED_MESSAGE_ID, len(mid) + 1), mid, b"\0"]
        return text, b"".join(tlvs)


class Outbox:
    """The receipts of one account, and the session they go to."""

    __slots__ = ("system_id", "ready", "inflight", "size", "receiver", "window", "transmitters", "data_coding",
                 "on_ack", "retry_min", "retry_max", "_call_later", "withheld", "reverse", "profile",
                 "acked", "retries", "timeouts")

    def __init__(self, system_id: str, on_ack: Callable[[list[Lookup], int], None], call_later,
                 window: int = 64, data_coding: int = 3, retry_min: float = 1.0, retry_max: float = 60.0):
        self.system_id = system_id
        self.ready: deque[Lookup] = deque()
        self.inflight: dict[int, tuple[Lookup, float]] = {}
        self.size = 0          # every receipt not yet acknowledged (for ESME_RMSGQFUL)
        self.receiver = None   # the SmppProtocol bound Rx/TRx for this account
        self.window = window
        # The account's bound transmitters (the registry's live set): each feeds the one
        # receiver as much as a transceiver feeds itself, so each adds a window.
        self.transmitters: set = set()
        self.data_coding = data_coding
        self.on_ack = on_ack
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._call_later = call_later
        self.withheld: list[Lookup] = []  # test bench: until the ESME reconnects
        self.reverse = False              # test bench: each window out of order
        self.profile: dict | None = None  # the account's receipt profile (None: standard)
        # Metrics, read at scrape time: answered ESME_ROK, sent again after an error
        # status, sent again after no answer within smpp.response_timeout.
        self.acked = self.retries = self.timeouts = 0

    def add(self, lookup: Lookup, now: float, extra: float = 0.0) -> None:
        """A durable lookup: deliver at its done time (plus ``extra``)."""
        delay = lookup.done - now + extra
        if delay > 0.0005:
            self._call_later(delay, self._due, lookup)
        else:
            self.ready.append(lookup)

    def _due(self, lookup: Lookup) -> None:
        self.ready.append(lookup)
        self.pump()

    def pump(self) -> None:
        """Send ready receipts while the receiver's window has room: one write."""
        receiver = self.receiver
        if receiver is None or not self.ready or receiver.paused:
            return
        room = self.window * (1 + len(self.transmitters)) - len(self.inflight)
        if room <= 0:
            return
        ready, inflight, session = self.ready, self.inflight, receiver.session
        now = time.monotonic()
        chunks = []
        dc = self.data_coding
        while room and ready:
            lookup = ready.popleft()
            seq = session.next_sequence()
            text, tlvs = lookup.receipt_parts(self.profile)
            chunks.append(encode_receipt(seq, lookup.msisdn.encode(), text, dc, tlvs))
            inflight[seq] = (lookup, now)
            room -= 1
        if self.reverse:
            chunks.reverse()
        receiver.write(b"".join(chunks), _DELIVER_SM_OK, len(chunks))

    def acknowledge(self, sequence: int, status: int) -> None:
        """One answer to a deliver_sm: deliver_sm_resp, data_sm_resp or generic_nack."""
        lookup = self._answer(self.inflight.pop(sequence, None), status)
        if lookup is not None:
            self.size -= 1
            self.acked += 1
            self.on_ack([lookup], 0)

    def acknowledge_all(self, responses: list) -> None:
        """The deliver_sm_resp of one read, in order: what they acknowledge is settled
        in one ``on_ack`` (one journal entry, one clock read for the metrics)."""
        done = []
        pop = self.inflight.pop
        for pdu in responses:
            entry = pop(pdu.sequence, None)
            if entry is not None and pdu.status == 0 and not entry[0].duplicate:
                done.append(entry[0])
            else:
                lookup = self._answer(entry, pdu.status)
                if lookup is not None:
                    done.append(lookup)
        if done:
            self.size -= len(done)
            self.acked += len(done)
            self.on_ack(done, 0)

    def _answer(self, entry: tuple[Lookup, float] | None, status: int) -> Lookup | None:
        """The lookup whose receipt is now done (ESME_ROK), else None: an answer to
        nothing in flight is counted, an error retries, a test-bench duplicate goes again."""
        if entry is None:
            metrics.STATS.unexpected_resp += 1
            return None
        lookup = entry[0]
        if status:
            self.retries += 1
            self._retry(lookup)
            return None
        if lookup.duplicate:  # test bench: the same receipt, same id, once more
            lookup.duplicate = False
            self.ready.append(lookup)
            return None
        return lookup

    def _retry(self, lookup: Lookup) -> None:
        lookup.attempts += 1
        delay = min(self.retry_min * (2 ** (lookup.attempts - 1)), self.retry_max)
        self._call_later(delay, self._due, lookup)

    def oldest_sent(self) -> float:
        """When the longest-waiting deliver_sm in flight was sent (they are kept in send order)."""
        return next(iter(self.inflight.values()))[1]

    def timed_out(self, deadline: float) -> None:
        """Retry every deliver_sm sent before ``deadline`` and still unanswered."""
        late = [seq for seq, (_, sent) in self.inflight.items() if sent < deadline]
        for seq in late:
            lookup, _ = self.inflight.pop(seq)
            self.timeouts += 1
            self._retry(lookup)

    def expire(self, before: float) -> int:
        """Drop ready receipts submitted before ``before`` (the TTL); count them."""
        expired = []
        ready = self.ready
        while ready and ready[0].submitted < before:
            expired.append(ready.popleft())
        if expired:
            self.size -= len(expired)
            self.on_ack(expired, EXPIRED)
        return len(expired)

    def detach(self, receiver) -> None:
        """The receiver went away: what was in flight goes back first, in id order."""
        if self.receiver is not receiver:
            return
        self.receiver = None
        if self.inflight:
            back = sorted((lk for lk, _ in self.inflight.values()), key=lambda lk: lk.id, reverse=True)
            self.inflight.clear()
            self.ready.extendleft(back)
