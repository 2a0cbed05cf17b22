"""The SMSC of SMS accounts (``service: sms``): text messages submitted over SMPP
(submit_sm, submit_multi, data_sm), counted in segments and charged per segment, their
final state from the destination's HLR answer, their receipts in the SMPP 3.4 Appendix B
form, and query_sm, cancel_sm and replace_sm on messages not yet final (docs/sms.md).

A message is a lookups row (the HLR answer, the charge, its receipt queued) and an sms
row (segments, coding, state), written in one group commit before the ESME is answered,
like a lookup. Its final state is known when it is accepted: reachable is DELIVERED
after the HLR latency, unknown/barred/not provisioned UNDELIVERABLE, absent (or busy, or
an HLR failure) retried until its validity period ends, then EXPIRED. What the message
is until then is time: nothing runs per message but the timer of its final state.
"""
from __future__ import annotations

import time
from struct import Struct
from typing import Any

from ..accounts import smpp_status_of
from ..domain import PENDING_NONE, PENDING_RECEIPT, Lookup, delivered_parts, receipt_date
from ..smpp.codec import MESSAGE_FIELDS, Pdu, SubmitSm, Tag
from ..smpp.status import Status
from ..sms import (DELETED, DELIVERED, ENROUTE, EXPIRED, MAX_PARTS, STAT_WORDS, ConcatError, Reassembly,
                   SmppTimeError, count_text, encode,
                   decode, outcome_of, parse_sar, parse_smpp_time, parse_udh, receipt_text, segments_of,
                   split_udh)
from ..sms.alphabet import AS_PRINTABLE_ASCII
from ..sms.concat import UDHI, check_part_length
from ..sms.segments import USER_DATA_OCTETS
from ..sms.message import OUTCOMES, wants_receipt
from ..sms.times import format_smpp_time
from .. import metrics
from .multi import submit_to_each
from .sms_shared import SharedMessages

CHANNEL = "sms"
#: Seconds: messages final within the same tick are settled together.
TICK = 0.01
_TLV = Struct(">HH")
#: message_state with each state; network_error_code's head (type 3: GSM).
_STATE_TLVS = {state: _TLV.pack(Tag.MESSAGE_STATE, 1) + bytes((state,)) for state in range(1, 9)}
_NETWORK_ERROR_TLV = _TLV.pack(Tag.NETWORK_ERROR_CODE, 3) + bytes((3,))
_STAT_OCTETS = {state: word.encode() for state, word in STAT_WORDS.items()}
_DELIVERED_TAIL = b"stat:DELIVRD err:000 text:"
_DELIVERED_TLVS = _STATE_TLVS[DELIVERED]


class SmsMessage(Lookup):
    """An accepted text message: its lookups row (``done``: when its final state is
    reached, ``err``: the HLR answer) and what the sms row keeps."""

    __slots__ = ("segments", "data_coding", "registered_delivery", "source_addr", "text", "state",
                 "version", "entry", "key", "gen", "tail")
    segments: int
    data_coding: int
    registered_delivery: int
    source_addr: str
    text: str                # the first octets of the message, as latin-1 characters
    state: int               # its final state
    version: int             # changes (cancel_sm, replace_sm) made to it
    entry: Any               # its concatenation's reassembly, if a part
    key: tuple | None        # what replace_if_present_flag finds it by
    gen: int                 # shared store: the receiver generation it waits for
    tail: bytes | None       # its DELIVRD receipt's text after the dates, when known on accepting it

    def sms_row(self) -> tuple:
        return (self.id, self.segments, self.data_coding, self.registered_delivery, self.source_addr,
                self.text, self.state, self.done)

    def shared_row(self, service_type: str, replace_if_present: bool) -> tuple:
        """A new message as a shared store takes it (redis/messages.py): the sms row, then
        what replace_if_present_flag finds it by."""
        return self.sms_row() + (self.system_id, self.msisdn, service_type, replace_if_present)

    def message_state(self, now: float) -> int:
        return ENROUTE if now < self.done else self.state

    @property
    def stat(self) -> str:
        return STAT_WORDS[self.state]

    def receipt_err(self) -> int:
        return 0 if self.state in (DELIVERED, DELETED) else self.err

    def text_head(self) -> str:
        """The receipt's text: the message's first 20 characters, unprintable ones as '?'."""
        entry = self.entry
        if entry is not None and 1 in entry.parts:  # the start of the whole message, once seen
            text = entry.text()[:20]
        else:  # 20 characters are at most 40 octets (80 in UCS2: surrogate pairs)
            dc = self.data_coding
            text = decode(self.text[:80 if dc == 8 else 40].encode("latin-1"), dc)[:20]
        if not text.isprintable():
            text = "".join(ch if ch.isprintable() else "?" for ch in text)
        return text

    def head_octets(self) -> bytes:
        """``text_head`` as the receipt's octets; most texts (printable ASCII that reads
        as itself in their coding, not a part) are their first 20 octets as they are."""
        if self.entry is None:
            head = plain_head(self.text[:20].encode("latin-1"), self.data_coding)
            if head is not None:
                return head
        return self.text_head().encode("latin-1", "replace")

    def receipt_text(self, extended: bool = False) -> str:
        return receipt_text(self.id, receipt_date(self.submitted), receipt_date(self.done), self.state,
                            self.receipt_err(), self.text_head())

    def receipt_parts(self, profile: dict[str, Any] | None = None) -> tuple[bytes, bytes]:
        """(short_message, TLVs): the Appendix B text (``receipt_text``), message_state,
        network_error_code when not delivered, receipted_message_id last (as a lookup's
        receipt), built around their tail as a delivered lookup's is."""
        if self.state == DELIVERED:  # most receipts
            tail = self.tail
            return delivered_parts(self.id, self.submitted, self.done,
                                   tail if tail is not None else _DELIVERED_TAIL + self.head_octets(), _DELIVERED_TLVS)
        state, err = self.state, self.receipt_err()
        tlvs = _STATE_TLVS[state]
        if err:
            code = self.map_error if self.map_error is not None else err
            tlvs += _NETWORK_ERROR_TLV + code.to_bytes(2, "big")
        return delivered_parts(self.id, self.submitted, self.done,
                               b"stat:%s err:%03d text:%s" % (_STAT_OCTETS[state], err, self.head_octets()), tlvs,
                               delivered=False)


def plain_head(octets: bytes, data_coding: int) -> bytes | None:
    """A message's first 20 octets when they are its receipt's text as they are: printable
    ASCII that reads as itself in its coding (one C call to tell), else None."""
    head = octets[:20]
    table = AS_PRINTABLE_ASCII.get(data_coding)
    return head if table is not None and head.translate(table) == head else None


def delivered_tail(body: bytes, data_coding: int) -> bytes | None:
    """A whole message's DELIVRD receipt text after the dates, when its start is printable
    as it is (most texts): built once when accepted, for every destination, not per receipt."""
    head = plain_head(body, data_coding)
    return None if head is None else _DELIVERED_TAIL + head


class Parsed:
    """A submitted message, checked: what every destination of it shares."""
    __slots__ = ("payload", "body", "data_coding", "segments", "concat", "registered_delivery", "schedule",
                 "validity", "text", "tail")


class SmsCenter:
    def __init__(self, server):
        self.server = server
        cfg = server.cfg["sms"]
        self.default_validity = float(cfg["validity"])
        self.reassembly = Reassembly(ttl=float(cfg["reassembly_ttl"]))
        # A shared store: the messages are in it, for every process (server/sms_shared.py).
        messages = server.store.messages
        self.shared = SharedMessages(self, messages) if messages is not None else None
        # Messages not final yet, by id: what query_sm, cancel_sm and replace_sm act on.
        self.live: dict[int, SmsMessage] = {}
        # (system_id, source_addr, destination_addr, service_type) -> id: replace_if_present_flag.
        self.by_address: dict[tuple, int] = {}
        # Messages waiting for their final state, by tick of it: (message, its version then).
        self.ticks: dict[int, list[tuple[SmsMessage, int]]] = {}

    # ------------------------------------------------------------ parsing
    def parse_params(self, params: dict, tlvs: dict, now: float, short_message: bool = True) -> Parsed | Status:
        """``parse`` of a decoded PDU's parameters (data_sm has no short_message, no
        schedule and no validity)."""
        g = params.get
        return self.parse(g("esm_class", 0), g("registered_delivery", 0), g("data_coding", 0),
                          g("short_message", b"") if short_message else b"", g("schedule_delivery_time", ""),
                          g("validity_period", ""), tlvs, now)

    def parse(self, esm_class: int, rd: int, dc: int, sm: bytes, schedule: str, validity: str, tlvs: dict,
              now: float) -> Parsed | Status:
        """The message of a submit_sm, submit_multi or data_sm, checked once for all its
        destinations: registered_delivery, the text (short_message or message_payload),
        the concatenation header or SAR TLVs, segments, schedule and validity."""
        if rd & 3 == 3:
            return Status.RINVREGDLVFLG
        p = Parsed()
        p.registered_delivery = rd & 3
        p.data_coding = dc
        p.schedule = None
        if not tlvs and not esm_class & UDHI:
            # Most messages: the text in short_message, not split by the ESME.
            payload, body, concat = sm, sm, None
        else:
            payload = tlvs.get(Tag.MESSAGE_PAYLOAD)
            if payload is not None and sm:
                return Status.RINVOPTPARAMVAL  # short_message or message_payload, not both
            payload = sm if payload is None else payload
            try:
                udh, body = split_udh(payload) if esm_class & UDHI else (b"", payload)
                concat = parse_udh(udh) if udh else None
                sar = parse_sar(_int(tlvs.get(Tag.SAR_MSG_REF_NUM)), _int(tlvs.get(Tag.SAR_TOTAL_SEGMENTS)),
                                _int(tlvs.get(Tag.SAR_SEGMENT_SEQNUM)))
                if concat is not None and sar is not None and (concat.total, concat.seq) != (sar.total, sar.seq):
                    return Status.RINVESMCLASS  # split two ways at once (some clients send both, alike)
                if concat is not None:
                    check_part_length(udh, body, dc)
                elif sar is not None:
                    check_part_length(b"", body, dc, sar.total)
                    concat = sar
            except ConcatError as err:
                return err.status
        if dc == 8 and len(body) % 2:
            return Status.RINVMSGLEN  # UCS2 is two octets a code unit
        p.payload = payload
        p.body = body
        p.concat = concat
        # One SMS in every coding: no count (``segments_of``'s first test, without a call).
        p.segments = 1 if concat is not None or len(payload) <= USER_DATA_OCTETS else segments_of(payload, dc)
        if p.segments > MAX_PARTS:
            return Status.RINVMSGLEN
        # The octets a receipt's 20 characters come from (at most 4 octets a character: a
        # UCS2 surrogate pair), kept as they are (latin-1 maps each octet to one character)
        # and decoded only when a receipt is built.
        p.text = body[:80].decode("latin-1")
        p.tail = delivered_tail(body, dc) if concat is None else None
        if not schedule and not validity:
            p.validity = now + self.default_validity
            return p
        try:
            p.schedule = parse_smpp_time(schedule, now)
        except SmppTimeError:
            return Status.RINVSCHED
        try:
            until = parse_smpp_time(validity, now)
        except SmppTimeError:
            return Status.RINVEXPIRY
        start = max(now, p.schedule or now)
        p.validity = until if until is not None else start + self.default_validity
        if p.validity <= start:
            return Status.RINVEXPIRY
        return p

    # ------------------------------------------------------------ submit
    def submit(self, account, msg: Parsed, ton: int, npi: int, destination_addr: str, source_addr: str,
               service_type: str, now: float, lookup_id: int | None = None,
               replace_if_present: bool = False) -> SmsMessage | Status:
        """Accept (charge, record) or refuse one message to one destination; accepted,
        it is in the journal and durable once its next commit completes."""
        server = self.server
        resolver = server.resolver
        dest = resolver.parse(destination_addr, ton, npi)
        if dest is None:
            metrics.STATS.refusals[CHANNEL, "invalid_destination"] += 1
            return Status.RINVDSTADR
        receipt = msg.registered_delivery != 0
        settings = account.settings
        sid = settings.system_id
        box = server.outboxes[sid]
        if receipt and box.size >= server.engine.max_queue:
            metrics.STATS.refusals[CHANNEL, "queue_full"] += 1
            return Status.RMSGQFUL
        entry = None
        if msg.concat is not None:
            try:
                entry = self.reassembly.add((sid, source_addr, dest.msisdn), msg.concat, msg.body,
                                            msg.data_coding, now)
            except ConcatError as err:
                return err.status
        cost = msg.segments * settings.sms_price
        refusal = server.book.admit(account, dest.cc, now, cost)
        if refusal is not None:
            metrics.STATS.refusals[CHANNEL, refusal.name.lower()] += 1
            return refusal
        if receipt:
            box.size += 1
        fields = resolver.fast_fields(dest)
        msisdn, cc, nnc, err, ported, p_nnc, roaming, r_cc, r_nnc, latency, map_error = \
            fields if fields is not None else resolver.result_fields(dest)
        state, _, retried = OUTCOMES.get(err) or outcome_of(err)
        schedule = msg.schedule
        done = (now if schedule is None or schedule < now else schedule) + latency
        if retried or done > msg.validity:
            done, state = msg.validity, EXPIRED  # retried until its validity period ends
        mid = lookup_id or server.ids.next(now)
        row = (mid, None, sid, CHANNEL, msisdn, now, done, cost, err, cc, nnc, int(ported), p_nnc, int(roaming),
               r_cc, r_nnc, map_error, PENDING_RECEIPT if receipt else PENDING_NONE)
        m = SmsMessage(*row)
        segments, dc, rd, text = msg.segments, msg.data_coding, msg.registered_delivery, msg.text
        m.segments, m.data_coding, m.registered_delivery = segments, dc, rd
        m.source_addr, m.text, m.state, m.version, m.entry, m.tail = source_addr, text, state, 0, entry, msg.tail
        m.key = (sid, source_addr, msisdn, service_type)
        metrics.STATS.lookups[CHANNEL, err] += 1
        if self.shared is not None:  # the message it replaces, in the store, once committed
            server.journal.add_message(row, m.shared_row(service_type, replace_if_present))
            return m
        if replace_if_present:
            old = self.live.get(self.by_address.get(m.key, -1))
            if old is not None and now < old.done:
                self._end(old, DELETED, now)
        server.journal.add_message(row, (mid, segments, dc, rd, source_addr, text, state, done))  # sms_row()
        return m

    async def send(self, account, destination_addr: str, text: str, source_addr: str = "") -> SmsMessage | Status:
        """A text a person typed (the console): in the GSM alphabet when every character is
        in it, else UCS2, split as the segment counter says, charged and recorded as a
        submit_sm with message_payload (no receipt: the page shows its state). Raises
        UnencodableText (as the counter does) for a text no SMS can carry."""
        count = count_text(text)
        payload = encode(text, count.data_coding)
        now = time.time()
        msg = self.parse(0, 0, count.data_coding, b"", "", "", {Tag.MESSAGE_PAYLOAD: payload}, now)
        if msg.__class__ is not Parsed:
            return msg  # type: ignore[return-value]
        m = self.submit(account, msg, 1, 1, destination_addr, source_addr, "", now)  # type: ignore[arg-type]
        if not isinstance(m, SmsMessage):
            return m
        done = self.server.loop.create_future()
        self.server.journal.after_commit(lambda ok: done.done() or done.set_result(ok))
        if not await done:
            self.abandon(account, m)
            return Status.RSYSERR
        self.accepted([m])
        return m

    def abandon(self, account, m: SmsMessage) -> None:
        """The commit holding ``m`` failed: give the credit back, forget it."""
        self.server.engine.abandon(account, m)

    def accepted(self, messages: list[SmsMessage]) -> None:
        """Durable and answered: each waits for its final state (those final already,
        most of them, are settled together). With a shared store, the account's receipt
        stream carries them to the process of its receiver (``SharedMessages.receive``)."""
        if self.shared is not None:
            return
        now = time.time()
        due = []
        live, by_address, wake = self.live, self.by_address, self._wake_at
        for m in messages:
            if m.done <= now:
                due.append(m)
                continue
            live[m.id] = m
            by_address[m.key] = m.id
            wake(m, now)
        if due:
            self._finals(due)

    def _wake_at(self, m: SmsMessage, now: float) -> None:
        """At its final state's time, with every message final in the same tick: one
        timer and one write of receipts for them all, not one each."""
        tick = int(m.done / TICK) + 1
        waiting = self.ticks.get(tick)
        if waiting is None:
            waiting = self.ticks[tick] = []
            self.server.loop.call_later(max(0.0, tick * TICK - now), self._tick, tick)
        waiting.append((m, m.version))

    def _tick(self, tick: int) -> None:
        final = []
        live, by_address = self.live, self.by_address
        for m, version in self.ticks.pop(tick, ()):
            if version != m.version:
                continue  # cancelled or replaced since: its new time decides
            if self.shared is not None:
                final.append(m)
                continue
            live.pop(m.id, None)
            if by_address.get(m.key) == m.id:
                del by_address[m.key]
            final.append(m)
        if final:
            if self.shared is not None:
                self.shared.due(final)
            else:
                self._finals(final)

    def receive(self, system_id: str, gen: int, lookups: list[Lookup]) -> None:
        """A shared store's receipts of text messages, for the account's receiver here."""
        if self.shared is not None:
            self.shared.receive(system_id, gen, lookups)

    def changed(self, ids: list[int]) -> None:
        """A shared store's messages another process changed."""
        if self.shared is not None:
            self.shared.changed(ids)

    def replay(self, row, now: float) -> None:
        """A message whose receipt was still owed at start-up."""
        extra = self.server.store.sms(row["id"])
        if extra is None:
            return
        self.server.outboxes[row["system_id"]].size += 1
        self.accepted([self.rebuild(row, extra)])

    def _final(self, m: SmsMessage, version: int) -> None:
        if version != m.version:
            return  # cancelled or replaced since: its new timer decides
        self.live.pop(m.id, None)
        if self.by_address.get(m.key) == m.id:
            del self.by_address[m.key]
        self._finals([m])

    def _finals(self, messages: list[SmsMessage]) -> None:
        """Messages that reached their final state: their receipts go out if asked for,
        in one write per account."""
        boxes = set()
        acks = []
        outboxes = self.server.outboxes
        system_id, box = None, None
        for m in messages:
            if not m.pending:
                continue
            if m.system_id != system_id:  # most messages of a tick are one account's
                system_id = m.system_id
                box = outboxes.get(system_id)
                if box is not None:
                    boxes.add(box)
            if box is None:
                continue
            if m.registered_delivery == 1 or wants_receipt(m.registered_delivery, m.state):  # mostly 1: always
                box.ready.append(m)
            else:  # registered_delivery 2 and delivered: nothing to say
                box.size -= 1
                acks.append(m.id)
        if acks:
            self.server.journal.add_acks(acks)
        for box in boxes:
            box.pump()

    def _end(self, m: SmsMessage, state: int, now: float) -> None:
        m.state, m.done = state, now
        m.version += 1
        self.server.journal.add_sms(m.sms_row())
        self.server.loop.call_soon(self._final, m, m.version)

    # ----------------------------------------------------- the PDUs
    def find(self, account, message_id: str) -> SmsMessage | None:
        """The account's message by id: in memory while not final, else from the store."""
        try:
            mid = int(message_id)
        except ValueError:
            return None
        m = self.live.get(mid)
        if m is None and 0 <= mid < 1 << 63:
            row = self.server.store.lookup(mid)
            extra = self.server.store.sms(mid) if row is not None else None
            if extra is not None:
                m = self.rebuild(row, extra)
        return m if m is not None and m.system_id == account.system_id else None

    @staticmethod
    def rebuild(row, extra) -> SmsMessage:
        m = SmsMessage.from_row(row)
        (_, m.segments, m.data_coding, m.registered_delivery, m.source_addr, m.text, m.state,
         m.done) = tuple(extra)[:8]
        m.version, m.entry, m.tail = 0, None, None
        m.key = (m.system_id, m.source_addr, m.msisdn, "")
        return m

    def query(self, proto, pdu: Pdu) -> None:
        if self.shared is not None:
            return self.shared.query(proto, pdu)
        m = self.find(proto.account, pdu.params["message_id"])
        if m is None:
            proto.session.respond(pdu, Status.RQUERYFAIL)
            return
        now = time.time()
        state = m.message_state(now)
        proto.session.respond(pdu, 0, {
            "message_id": pdu.params["message_id"], "final_date": "" if state == ENROUTE else format_smpp_time(m.done),
            "message_state": state, "error_code": m.receipt_err() if state != ENROUTE else 0})

    def cancel(self, proto, pdu: Pdu) -> None:
        """cancel_sm of one message (by message_id) not yet final: DELETED."""
        if self.shared is not None:
            return self.shared.cancel(proto, pdu)
        m = self.find(proto.account, pdu.params["message_id"])
        now = time.time()
        if m is None or now >= m.done or m.id not in self.live:
            proto.session.respond(pdu, Status.RCANCELFAIL)
            return
        self._end(m, DELETED, now)
        self._answer_after_commit(proto, pdu)

    def replace(self, proto, pdu: Pdu) -> None:
        """replace_sm of a message not yet final: its text, registered_delivery, schedule
        and validity (its segments at most those it was charged for)."""
        if self.shared is not None:
            return self.shared.replace(proto, pdu)
        p = pdu.params
        m = self.find(proto.account, p["message_id"])
        now = time.time()
        if (m is None or now >= m.done or m.id not in self.live
                or (p["source_addr"] and p["source_addr"] != m.source_addr)):
            proto.session.respond(pdu, Status.RREPLACEFAIL)
            return
        change = self.replacement(m, p, now)
        if isinstance(change, Status):
            proto.session.respond(pdu, change)
            return
        m.text, m.registered_delivery, m.state, m.done = change
        m.entry = m.tail = None
        m.version += 1
        self.server.journal.add_sms(m.sms_row())
        self._wake_at(m, now)
        self._answer_after_commit(proto, pdu)

    def replacement(self, m: SmsMessage, params: dict, now: float) -> tuple[str, int, int, float] | Status:
        """What replace_sm makes of ``m``: (text, registered_delivery, state, done), or why not."""
        msg = self.parse_params(dict(params, data_coding=m.data_coding, esm_class=0), {}, now)
        if isinstance(msg, Status):
            return msg
        if msg.segments > m.segments:
            return Status.RREPLACEFAIL
        outcome = outcome_of(m.err)
        # What was left of its way to the handset, from its new start.
        done, state = max(now, msg.schedule or now) + max(0.0, m.done - now), outcome.state
        if outcome.retried or done > msg.validity:
            done, state = msg.validity, EXPIRED
        return msg.text, msg.registered_delivery or m.registered_delivery, state, done

    def _answer_after_commit(self, proto, pdu: Pdu) -> None:
        def committed(ok: bool) -> None:
            proto.session.respond(pdu, Status.ROK if ok else Status.RSYSERR)
            proto.flush()
        self.server.journal.after_commit(committed)

    def submit_sm(self, proto, pdu: SubmitSm, now: float) -> SmsMessage | Status:
        if pdu.__class__ is SubmitSm:
            fields = pdu.message()
        else:  # decoded whole (a PDU the lean decoder did not make)
            fields = (*(pdu.params[name] for name in MESSAGE_FIELDS), pdu.params["short_message"])
        service_type, source_addr, esm_class, schedule, validity, rd, replace, dc, sm = fields
        msg = self.parse(esm_class, rd, dc, sm, schedule, validity, pdu.tlvs, now)
        if msg.__class__ is not Parsed:
            return msg  # type: ignore[return-value]
        return self.submit(proto.account, msg, pdu.dest_addr_ton, pdu.dest_addr_npi,  # type: ignore[arg-type]
                           pdu.destination_addr, source_addr, service_type, now, replace_if_present=replace == 1)

    def data_sm(self, proto, pdu: Pdu) -> None:
        """data_sm: the message in message_payload, answered by data_sm_resp."""
        p, now = pdu.params, time.time()
        msg = self.parse_params(p, pdu.tlvs, now, short_message=False)
        r = msg if isinstance(msg, Status) else self.submit(
            proto.account, msg, p["dest_addr_ton"], p["dest_addr_npi"], p["destination_addr"], p["source_addr"],
            p["service_type"], now)
        if not isinstance(r, SmsMessage):
            proto.session.respond(pdu, smpp_status_of(r))
            return
        account = proto.account

        def committed(ok: bool) -> None:
            if not ok:
                self.abandon(account, r)
                proto.session.respond(pdu, Status.RSYSERR)
            else:
                proto.session.respond(pdu, 0, {"message_id": str(r.id)})
                self.accepted([r])
            proto.flush()

        self.server.journal.after_commit(committed)

    def submit_multi(self, proto, pdu: Pdu) -> None:
        """One message to up to 254 destinations, each charged and recorded as a
        submit_sm, in one commit; the k-th destination's id is message_id + k."""
        p, now = pdu.params, time.time()
        account = proto.account
        msg = self.parse_params(p, pdu.tlvs, now)
        if isinstance(msg, Status):
            proto.session.respond(pdu, msg)
            return
        submit_to_each(proto, pdu, SmsMessage,
                       lambda ton, npi, addr, lookup_id: self.submit(
                           account, msg, ton, npi, addr, p["source_addr"], p["service_type"], now,
                           lookup_id=lookup_id),
                       lambda m: self.abandon(account, m), self.accepted)

    def committed(self, proto, sequences: list[int], messages: list[SmsMessage], ok: bool) -> None:
        """A batch of submit_sm (their sequences, their messages) is durable (or failed): answer them."""
        session = proto.session
        if not ok:
            for m in messages:
                self.abandon(proto.account, m)
            session.submit_sm_failed(sequences, Status.RSYSERR)
        else:
            session.submit_sm_resps(sequences, messages)
            self.accepted(messages)
        proto.flush()


def _int(value: bytes | None) -> int | None:
    return None if value is None else int.from_bytes(value, "big")
