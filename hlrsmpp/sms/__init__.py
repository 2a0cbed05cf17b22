"""Text messages as an SMSC sees them, sans-IO: data codings and the GSM 03.38 alphabet,
segments and what they cost, concatenation (UDH and the SAR TLVs) and its reassembly, the
SMPP time format, message states and the SMPP 3.4 Appendix B delivery receipt.

No asyncio, no server: the SMPP session and the server call these pure functions."""
from .alphabet import UnencodableText, decode, encode, gsm_septets
from .concat import Concat, ConcatError, Reassembly, parse_sar, parse_udh, split_udh
from .message import (DELIVERED, DELETED, ENROUTE, EXPIRED, REJECTED, UNDELIVERABLE, ACCEPTED, STATE_NAMES,
                      STAT_WORDS, Outcome, outcome_of, receipt_text)
from .segments import MAX_PARTS, Count, count_payload, count_text, count_view, segments_of, split_payload
from .times import SmppTimeError, parse_smpp_time

__all__ = [
    "UnencodableText", "decode", "encode", "gsm_septets",
    "Concat", "ConcatError", "Reassembly", "parse_sar", "parse_udh", "split_udh",
    "ENROUTE", "DELIVERED", "EXPIRED", "DELETED", "UNDELIVERABLE", "ACCEPTED", "REJECTED",
    "STATE_NAMES", "STAT_WORDS", "Outcome", "outcome_of", "receipt_text",
    "MAX_PARTS", "Count", "count_payload", "count_text", "count_view", "segments_of", "split_payload",
    "SmppTimeError", "parse_smpp_time",
]
