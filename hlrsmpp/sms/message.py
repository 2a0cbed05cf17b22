"""A text message's states (SMPP 3.4 message_state), its final state from the destination's
HLR truth, and its delivery receipt in the SMPP 3.4 Appendix B form."""
from __future__ import annotations

from typing import NamedTuple

from ..hlr.resolver import PERMANENT

ENROUTE, DELIVERED, EXPIRED, DELETED, UNDELIVERABLE, ACCEPTED, UNKNOWN, REJECTED = range(1, 9)
STATE_NAMES = {ENROUTE: "ENROUTE", DELIVERED: "DELIVERED", EXPIRED: "EXPIRED", DELETED: "DELETED",
               UNDELIVERABLE: "UNDELIVERABLE", ACCEPTED: "ACCEPTED", UNKNOWN: "UNKNOWN",
               REJECTED: "REJECTED"}
#: The receipt's stat: word of each final state (Appendix B).
STAT_WORDS = {DELIVERED: "DELIVRD", EXPIRED: "EXPIRED", DELETED: "DELETED", UNDELIVERABLE: "UNDELIV",
              ACCEPTED: "ACCEPTD", UNKNOWN: "UNKNOWN", REJECTED: "REJECTD"}
FINAL = frozenset(STAT_WORDS)


class Outcome(NamedTuple):
    """Where a message ends: its final state and err, and whether the SMSC keeps retrying
    it until its validity period ends (then it is EXPIRED)."""
    state: int
    err: int
    retried: bool


def outcome_of(err: int) -> Outcome:
    """The final state from the destination's HLR answer: reachable is delivered; a
    subscriber who is unknown, barred, not provisioned (an answer a retry will not change)
    is undeliverable; absent, busy or an HLR failure is retried until the message expires."""
    outcome = OUTCOMES.get(err)
    if outcome is None:
        if err == 0:
            outcome = Outcome(DELIVERED, 0, False)
        elif err in PERMANENT:
            outcome = Outcome(UNDELIVERABLE, err, False)
        else:
            outcome = Outcome(EXPIRED, err, True)
        OUTCOMES[err] = outcome
    return outcome


#: ``outcome_of`` per err seen (a few dozen at most): the hot path reads it first.
OUTCOMES: dict[int, Outcome] = {}


def wants_receipt(registered_delivery: int, state: int) -> bool:
    """registered_delivery bits 0-1: 0 no receipt, 1 on the final state, 2 on failure only."""
    mode = registered_delivery & 3
    return mode == 1 or (mode == 2 and state != DELIVERED)


def receipt_text(message_id: int, submit_date: str, done_date: str, state: int, err: int, text: str) -> str:
    """Appendix B: ``id:IIII sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm
    stat:DELIVRD err:000 text:<the message's first 20 characters>``."""
    return (f"id:{message_id} sub:001 dlvrd:{'001' if state == DELIVERED else '000'} "
            f"submit date:{submit_date} done date:{done_date} stat:{STAT_WORDS[state]} "
            f"err:{err:03d} text:{text[:20]}")
