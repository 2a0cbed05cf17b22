"""Why a bind or a lookup is refused, and the one place that maps it to each API's answer.

The policy (policy.py) only ever returns a Refusal; the SMPP, HTTP (AMS HLR API) and
prepaid (SMSPAY) front ends read their wire answer from here, so the three stay consistent.
"""
from __future__ import annotations

import enum
from typing import NamedTuple

from hlrsmpp.smpp.status import Status


class HttpError(NamedTuple):
    """An error of the AMS HLR HTTP API: `ERROR - <code> --> <text>`."""
    code: str
    name: str
    text: str

    @property
    def line(self) -> str:
        return f"ERROR - {self.code} --> {self.text}"


# The AMS HLR API's error table, verbatim.
INVALID_LOGIN = HttpError("001", "INVALID_LOGIN", "Either Systemid or password is incorrect")
INVALID_REQUEST = HttpError("002", "INVALID_REQUEST", "Required parameters are missing or Invalid parameters or invalid values of parameters")
ACCOUNT_EXPIRED = HttpError("003", "ACCOUNT_EXPIRED", "The Account has been Expired")
INSUF_BALANCE = HttpError("004", "INSUF_BALANCE", "Insufficient Balance to fulfill the Request")
INVALID_DEST_ADDR = HttpError("005", "INVALID_DEST_ADDR", "Invalid Destination Address")
NO_COVERAGE = HttpError("006", "NO_COVERAGE", "No Coverage for Requested Destination")
SYSTEM_ERROR = HttpError("007", "SYSTEM_ERROR", "System Error Occurred")


class Refusal(enum.Enum):
    EXPIRED = "expired"
    DISABLED = "disabled"
    NO_COVERAGE = "no_coverage"
    LIMIT_TPS = "limit_tps"
    LIMIT_DELAY = "limit_delay"
    LIMIT_DAY = "limit_day"
    LIMIT_WEEK = "limit_week"
    LIMIT_MONTH = "limit_month"
    NO_CREDIT = "no_credit"
    BAD_SYSTEM_ID = "bad_system_id"
    BAD_PASSWORD = "bad_password"
    BAD_SYSTEM_TYPE = "bad_system_type"
    IP_NOT_ALLOWED = "ip_not_allowed"
    IP_BANNED = "ip_banned"
    TLS_SUBJECT = "tls_subject"   # not the client certificate the account pinned

    @property
    def smpp_status(self) -> Status:
        """command_status of bind_resp / submit_sm_resp."""
        return _SMPP[self]

    @property
    def prepaid_answer(self) -> str:
        """The one-line answer of /users/hlr_prepaid.php (SMSPAY prepaid API)."""
        return _PREPAID[self]

    @property
    def http_error(self) -> HttpError:
        """The error of /websmpp/hlr/lookup (AMS HLR API)."""
        return _HTTP[self]


def smpp_status_of(outcome: Refusal | int) -> int:
    """The command_status answering a submission the account refused (a Refusal) or the
    protocol did (a Status)."""
    return outcome.smpp_status if isinstance(outcome, Refusal) else outcome



R = Refusal
_SMPP = {
    R.EXPIRED: Status.RACCEXPIRY,
    # A disabled account is refused like any other bind the operator does not allow; the
    # server is expected to unbind its live sessions, so submit_sm rarely sees it.
    R.DISABLED: Status.RBINDFAIL,
    R.NO_COVERAGE: Status.RCOVERR,
    R.LIMIT_TPS: Status.RTHROTTLED,
    R.LIMIT_DELAY: Status.RTHROTTLED,
    R.LIMIT_DAY: Status.RTHROTTLED,
    R.LIMIT_WEEK: Status.RTHROTTLED,
    R.LIMIT_MONTH: Status.RTHROTTLED,
    R.NO_CREDIT: Status.RINSBAL,
    R.BAD_SYSTEM_ID: Status.RINVSYSID,
    R.BAD_PASSWORD: Status.RINVPASWD,
    R.BAD_SYSTEM_TYPE: Status.RINVSYSTYP,
    R.IP_NOT_ALLOWED: Status.RBINDFAIL,
    R.IP_BANNED: Status.RBINDFAIL,
    R.TLS_SUBJECT: Status.RBINDFAIL,
}
_PREPAID = {
    # The SMSPAY prepaid API has one word for a terminated service; an expired one is the same to the client.
    R.EXPIRED: "SERVICE_DISABLED",
    R.DISABLED: "SERVICE_DISABLED",
    # The SMSPAY prepaid API has no coverage answer. INVALID_MSISDN would tell a list-cleaning client the
    # number is bad, which it is not; the request just does not match the service.
    R.NO_COVERAGE: "INVALID_INPUT",
    # The rate limit is the same promise as the minimum delay: "too soon, try later".
    R.LIMIT_TPS: "LIMIT_DELAY",
    R.LIMIT_DELAY: "LIMIT_DELAY",
    R.LIMIT_DAY: "LIMIT_DAY",
    R.LIMIT_WEEK: "LIMIT_WEEK",
    R.LIMIT_MONTH: "LIMIT_MONTH",
    R.NO_CREDIT: "LIMIT_EXCEEDED",
    # user_id/service_id that do not match an account are "mismatched parameters".
    R.BAD_SYSTEM_ID: "INVALID_INPUT",
    R.BAD_PASSWORD: "INVALID_INPUT",
    R.BAD_SYSTEM_TYPE: "INVALID_INPUT",
    R.IP_NOT_ALLOWED: "INVALID_IP",
    R.IP_BANNED: "BAN_IP_TEMP",
    R.TLS_SUBJECT: "INVALID_IP",   # a client that is not where the account must be
}
_HTTP = {
    R.EXPIRED: ACCOUNT_EXPIRED,
    R.DISABLED: INVALID_LOGIN,
    R.NO_COVERAGE: NO_COVERAGE,
    # The AMS HLR API has no throttling code. 007 is the one its clients already treat as
    # "transient, retry later", which is exactly what a rate or period limit means.
    R.LIMIT_TPS: SYSTEM_ERROR,
    R.LIMIT_DELAY: SYSTEM_ERROR,
    R.LIMIT_DAY: SYSTEM_ERROR,
    R.LIMIT_WEEK: SYSTEM_ERROR,
    R.LIMIT_MONTH: SYSTEM_ERROR,
    R.NO_CREDIT: INSUF_BALANCE,
    R.BAD_SYSTEM_ID: INVALID_LOGIN,
    R.BAD_PASSWORD: INVALID_LOGIN,
    R.BAD_SYSTEM_TYPE: INVALID_LOGIN,
    # Do not tell a caller from a wrong or banned address more than "login refused".
    R.IP_NOT_ALLOWED: INVALID_LOGIN,
    R.IP_BANNED: INVALID_LOGIN,
    R.TLS_SUBJECT: INVALID_LOGIN,
}
assert _SMPP.keys() == _PREPAID.keys() == _HTTP.keys() == set(Refusal)
del R
