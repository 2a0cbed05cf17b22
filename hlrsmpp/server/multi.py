"""submit_multi: one request to up to 254 destinations, each submitted on its own (a
lookup, or a text message of an SMS account), all answered in one submit_multi_resp once
their commit is done. The k-th destination's id is message_id + k (SMPP gives the resp
one id); failures, and every destination when the commit fails, go in unsuccess_sme."""
from __future__ import annotations

from typing import Any, Callable

from ..accounts import smpp_status_of
from ..smpp.codec import Pdu
from ..smpp.status import Status


def submit_to_each(proto: Any, pdu: Pdu, accepted_type: type,
                   submit: Callable[[int, int, str, int], Any],
                   abandon: Callable[[Any], None],
                   done: Callable[[list[Any]], None]) -> None:
    """``submit(ton, npi, addr, id)`` gives an ``accepted_type`` or a refusal (a Status or
    a Refusal); ``abandon`` undoes an accepted one whose commit failed; ``done`` takes the
    accepted ones once durable."""
    server = proto.server
    dests = pdu.params["dest_address"]
    first = server.engine.ids.reserve(len(dests))
    accepted: list[Any] = []
    unsuccess: list[tuple[int, int, str, int]] = []
    for k, dest in enumerate(dests):
        if isinstance(dest, str):  # a distribution list: we keep none
            unsuccess.append((0, 0, dest[:20], Status.RINVDLNAME))
            continue
        ton, npi, addr = dest
        r = submit(ton, npi, addr, first + k)
        if isinstance(r, accepted_type):
            accepted.append(r)
        else:
            unsuccess.append((ton, npi, addr, smpp_status_of(r)))

    def committed(ok: bool) -> None:
        if not ok:
            for item in accepted:
                abandon(item)
            bad = [(0, 0, item.msisdn, Status.RSYSERR) for item in accepted] + unsuccess
        else:
            bad = unsuccess
        status = Status.ROK if accepted and ok else (bad[0][3] if bad else Status.RSYSERR)
        body = {"message_id": str(first) if status == Status.ROK else "", "unsuccess_sme": bad}
        proto.session.respond(pdu, status, body)
        proto.flush()
        if ok and accepted:
            done(accepted)

    server.journal.after_commit(committed)
