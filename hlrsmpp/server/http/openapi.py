"""The OpenAPI 3 document of the HTTP interface, served at /api/v1/openapi.json."""
from __future__ import annotations

import copy

from ...accounts.settings import ACCOUNT_TABLE, AMOUNT, record_schema, settings_schema
from ..faults import ACTIONS as FAULT_ACTIONS

VERSION = "0.1.0"

_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict:
    return _json(_ref("Error"), description)


def _q(name: str, description: str, schema: dict | None = None, required: bool = False,
       example=None) -> dict:
    d = {"name": name, "in": "query", "required": required, "description": description,
         "schema": schema or {"type": "string"}}
    if example is not None:
        d["example"] = example
    return d


def _p(name: str, description: str, example: str | None = None) -> dict:
    d = {"name": name, "in": "path", "required": True, "description": description,
         "schema": {"type": "string"}}
    if example is not None:
        d["example"] = example
    return d


def _body(schema: dict, example=None, media: str = "application/json") -> dict:
    content = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"required": True, "content": {media: content}}


_NUMBER = {"type": "string", "pattern": "^\\+?[1-9][0-9]{6,14}$", "example": "447400123456",
           "description": "E.164 digits, an optional leading +."}


_AUTH_ERRORS = {
    "401": _err("Missing or wrong credentials (`WWW-Authenticate` says which scheme)."),
    "403": _err("Account expired or disabled, source address not allowed or banned, or not "
                "the caller's to see."),
}
_ADMIN_ERRORS = {
    "401": _err("Missing or wrong admin token."),
    "403": _err("The admin API is disabled (no `admin.token`), or the source address is "
                "temporarily banned."),
}
_ID = {"type": "string", "pattern": "^[0-9]{1,19}$", "description": "Decimal id (a string: it may exceed 2^53)."}
_NAME = {"type": ["string", "null"], "description": "The network's name (networks.csv); empty when unnamed"}
_AMOUNT = dict(AMOUNT)

SCHEMAS = {
    "SmsSegments": {
        "type": "object",
        "required": ["encoding", "data_coding", "characters", "units", "unit", "segments", "per_segment", "left"],
        "properties": {
            "encoding": {"type": "string", "enum": ["GSM", "IA5", "LATIN1", "UCS2", "BINARY"]},
            "data_coding": {"type": "integer"},
            "characters": {"type": "integer", "description": "Characters (octets for binary)."},
            "units": {"type": "integer", "description": "The length in the encoding's unit: an extension "
                                                        "character is two septets, an emoji two UTF-16 code units."},
            "unit": {"type": "string", "enum": ["septets", "code units", "octets"]},
            "segments": {"type": "integer", "description": "SMS sent, and charged."},
            "per_segment": {"type": "integer", "description": "160/153 septets, 70/67 code units, 140/134 octets."},
            "left": {"type": "integer", "description": "Units left in the last segment."},
        },
    },
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message", "smpp_status"],
            "properties": {
                "code": {"type": "string", "description":
                         "Stable machine code: the refusal (`no_credit`, `limit_day`, "
                         "`no_coverage`, `expired`, `invalid_login`, `invalid_destination`, ...) "
                         "or `bad_request`, `unauthorized`, `forbidden`, `not_found`, "
                         "`admin_disabled`, `invalid_account`, `invalid_amount`, `exists`, "
                         "`unlimited_credit`, `system_error`, `invalid_faults`, `invalid_trace`, "
                         "`invalid_file`, `too_large`, `over_quota`, `too_many_jobs`, `unsupported_media_type`, "
                         "`job_running`, `job_failed`, `gone`."},
                "message": {"type": "string"},
                "smpp_status": {"type": ["string", "null"], "description":
                                "What SMPP answers for the same refusal, e.g. `ESME_RINSBAL`."},
                "name": {"type": "string", "description": "AMS HLR API error name (report only)."},
                "rejected": {"type": "array", "items": _ref("Rejected")},
            }}},
    },
    "Rejected": {
        "type": "object", "required": ["index", "number", "error"],
        "properties": {"index": {"type": "integer"}, "number": {"type": "string"},
                       "error": {"type": "object"}},
    },
    "Lookup": {
        "type": "object",
        "description": "One lookup. While `status` is ENROUTE (before `done`) the result "
                       "fields are null.",
        "required": ["id", "account", "number", "status"],
        "properties": {
            "id": _ID, "batch_id": {"type": ["string", "null"]},
            "account": {"type": "string"},
            "channel": {"type": "string", "enum": ["smpp", "http", "sms"],
                        "description": "sms: a text message of an SMS account (docs/sms.md)"},
            "number": {"type": "string"},
            "submitted": {"type": "string", "format": "date-time"},
            "done": {"type": "string", "format": "date-time"},
            "status": {"type": "string", "enum": ["ENROUTE", "DELIVRD", "UNDELIV", "EXPIRED", "DELETED"],
                       "description": "EXPIRED and DELETED: text messages only"},
            "err": {"type": ["integer", "null"], "description": "0 reachable, else 11..24 (docs/smpp.md)"},
            "error": {"type": ["string", "null"], "description": "e.g. ABSENT_SUBSCRIBER; empty when err is 0"},
            "cc": {"type": "string"}, "nnc": {"type": ["string", "null"]},
            "nnc_name": _NAME,
            "network": {"type": ["string", "null"], "description": "Current network: p_nnc if ported, else nnc"},
            "network_name": _NAME,
            "ported": {"type": ["boolean", "null"]}, "p_nnc": {"type": ["string", "null"]},
            "p_nnc_name": _NAME,
            "roaming": {"type": ["boolean", "null"]}, "r_cc": {"type": ["string", "null"]},
            "r_nnc": {"type": ["string", "null"]}, "r_nnc_name": _NAME,
            "active": {"type": ["boolean", "null"]}, "reachable": {"type": ["boolean", "null"]},
            "cost": {"type": "string", "description": "Credits charged"},
            "segments": {"type": "integer", "description": "Text messages only: SMS segments charged"},
            "data_coding": {"type": "integer", "description": "Text messages only"},
            "encoding": {"type": "string", "enum": ["GSM", "IA5", "LATIN1", "UCS2", "BINARY"],
                         "description": "Text messages only: the data_coding's encoding"},
        },
    },
    "LookupRequest": {
        "type": "object", "additionalProperties": False,
        "description": "Give `number` or `numbers`. Synchronous by default (waits for the "
                       "results up to `timeout`); with `callback_url`, or `wait: false`, it "
                       "answers 202 at once.",
        "properties": {
            "number": _NUMBER,
            "numbers": {"type": "array", "minItems": 1, "maxItems": 100, "items": _NUMBER},
            "account": {"type": "string", "description": "With the admin token: whose lookup it is."},
            "wait": {"type": "boolean"},
            "timeout": {"type": "number", "minimum": 0, "maximum": 3600,
                        "description": "Seconds; capped by http.sync_timeout."},
            "callback_url": {"type": "string", "format": "uri", "description":
                             "POSTed the batch (as in the response, complete) once every "
                             "result is final; retried with backoff until a 2xx (redirects "
                             "are not followed). Public addresses only (http.webhook_private, "
                             "http.webhook_allow); an IPv4 address only as a.b.c.d; signed "
                             "with X-Hlrsmpp-Signature when http.webhook_secret is set."},
        },
    },
    "Batch": {
        "type": "object", "required": ["batch_id", "lookups"],
        "properties": {
            "batch_id": _ID, "account": {"type": "string"}, "complete": {"type": "boolean"},
            "lookups": {"type": "array", "items": _ref("Lookup")},
            "rejected": {"type": "array", "items": _ref("Rejected")},
        },
    },
    "Me": {
        "type": "object", "description": "An account's own view of itself (GET /api/v1/me).",
        "required": ["system_id", "credit", "packages", "usage", "limits", "expires", "auto_recharge"],
        "properties": {
            "system_id": {"type": "string"}, "enabled": {"type": "boolean"},
            "credit": {"type": ["string", "null"], "description": "Decimal credits; null: unlimited"},
            "low_credit": {"type": ["string", "null"], "description": "The low-credit alert threshold"},
            "packages": {"type": ["array", "null"], "items": {"type": "object"},
                         "description": "Prepaid packages, oldest first; null: unlimited"},
            "price": {"type": "string", "description": "Credits per lookup"},
            "usage": {"type": "object", "description": "Lookups this day, ISO week and month (accounts_timezone)",
                      "properties": {"day": {"type": "integer"}, "week": {"type": "integer"},
                                     "month": {"type": "integer"}}},
            "limits": {"type": "object"},
            "expires": {"type": ["string", "null"], "format": "date"},
            "coverage": {"type": "array", "items": {"type": "string"}},
            "auto_recharge": {
                "type": ["object", "null"], "description": "Its auto_recharge settings (null: none) and "
                "the packages they added this month",
                "properties": {"below": {"type": "string"}, "add": {"type": "string"},
                               "max_per_month": {"type": "integer"},
                               "month": {"type": "string", "example": "2026-12"},
                               "this_month": {"type": "integer"}}},
            "notify": {"type": ["object", "null"], "description": "Where its notifications go"},
        },
    },
    "MeChange": {
        "type": "object", "description": "What an account may change of itself (PATCH /api/v1/me).",
        "required": ["notify"], "additionalProperties": False,
        "properties": {"notify": {**ACCOUNT_TABLE["notify"].schema, "type": ["object", "null"]}},
    },
    "Stats": {
        "type": "object", "required": ["account", "since", "until", "by", "total", "items"],
        "properties": {
            "account": {"type": "string"},
            "since": {"type": "string", "format": "date"}, "until": {"type": "string", "format": "date"},
            "by": {"type": "string", "enum": ["day", "country", "network", "status"]},
            "total": {"type": "object", "properties": {"lookups": {"type": "integer"}, "cost": {"type": "string"}}},
            "items": {"type": "array", "items": {
                "type": "object", "description": "One value of `by` (day, country, network and "
                "network_name, or status, err and error), its lookups and their cost.",
                "properties": {"day": {"type": "string", "format": "date"}, "country": {"type": "string"},
                               "network": {"type": "string"}, "network_name": {"type": "string"},
                               "status": {"type": "string", "enum": ["DELIVRD", "UNDELIV"]},
                               "err": {"type": "integer"}, "error": {"type": "string"},
                               "lookups": {"type": "integer"}, "cost": {"type": "string"}}}},
        },
    },
    "Notifications": {
        "type": "object", "required": ["items"],
        "properties": {"items": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "id": _ID, "kind": {"type": "string", "enum": ["low_credit", "limit", "expiry",
                                                                "auto_recharge", "cleaning_done"]},
                "at": {"type": "string", "format": "date-time"}, "subject": {"type": "string"},
                "data": {"type": "object"},
                "sent": {"type": "array", "items": {"type": "string", "enum": ["email", "webhook"]}},
                "pending": {"type": "array", "items": {"type": "string", "enum": ["email", "webhook"]},
                            "description": "Channels still to send (retried with backoff)"},
                "attempts": {"type": "integer"}, "error": {"type": ["string", "null"]}}}}},
    },
    "History": {
        "type": "object", "required": ["items", "next"],
        "properties": {"items": {"type": "array", "items": _ref("Lookup")},
                       "next": {"type": ["string", "null"], "description": "Pass as `after` for the next page."}},
    },
    # Both from the table of account keys (accounts/settings.py).
    "Account": {
        "type": "object", "description": "An account's settings (never its password) and state.",
        "properties": {
            **record_schema(),
            "credit": {"type": ["string", "null"], "description": "null: unlimited"},
            "unlimited": {"type": "boolean"},
            "counters": {"type": "object", "properties": {
                "day": {"type": "integer"}, "week": {"type": "integer"}, "month": {"type": "integer"}}},
            "receipts_queued": {"type": "integer"},
        },
    },
    "AccountSettings": settings_schema(),
    "TopUp": {
        "type": "object", "required": ["credit"], "additionalProperties": False,
        "properties": {"credit": _AMOUNT, "bought": {"type": "string", "format": "date"},
                       "note": {"type": "string", "maxLength": 200}},
    },
    "FaultRule": {
        "type": "object", "required": ["action"], "additionalProperties": False,
        "description": "One test-bench rule (docs/testbench.md): WHO (account, prefix), HOW "
                       "OFTEN (percent, seeded) and WHAT (action).",
        "properties": {
            "action": {"type": "string", "enum": sorted(FAULT_ACTIONS)},
            "account": {"type": ["string", "null"], "description": "Only this account (absent: every account)."},
            "prefix": {"type": "string", "pattern": "^\\+?[0-9]{0,15}$",
                       "description": "Only destinations starting with these digits."},
            "percent": {"type": "number", "minimum": 0, "maximum": 100,
                        "description": "Share of matching PDUs (default 100), seeded."},
            "status": {"oneOf": [{"type": "string", "example": "RTHROTTLED"},
                                 {"type": "integer", "minimum": 0, "maximum": 4294967295}],
                       "description": "command_status for status/generic_nack: a name or a number."},
            "delay_ms": {"oneOf": [{"type": "number", "minimum": 0},
                                   {"type": "array", "items": {"type": "number", "minimum": 0},
                                    "minItems": 2, "maxItems": 2}],
                         "description": "A fixed delay or [min, max]."},
            "after": {"type": "integer", "minimum": 0, "description": "close/unbind: after N PDUs received."},
            "seed": {"type": "integer", "description": "Seed of the percentage draw (default: the rule's position)."},
        },
    },
    "Faults": {
        "type": "object", "required": ["faults"], "additionalProperties": False,
        "properties": {"faults": {"type": "array", "items": _ref("FaultRule"),
                                  "description": "Every rule in force, in order (the first match wins)."}},
    },
    "TraceSetting": {
        "type": "object", "required": ["trace"], "additionalProperties": False,
        "properties": {"trace": {"oneOf": [
            {"type": "boolean", "description": "true: the last 10,000 entries in memory; false: off."},
            {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
             "description": "Also append to the file <storage.path>/traces/NAME (no path, no '..')."}]}},
    },
    "Trace": {
        "type": "object", "required": ["account", "trace", "lines"],
        "properties": {
            "account": {"type": "string"},
            "trace": {"type": ["boolean", "string"], "description": "false, true (memory) or the trace file."},
            "lines": {"type": "array", "items": {"type": "string"},
                      "description": "The last entries, oldest first (a bind's password never appears)."},
        },
    },
    "CleanJobCreated": {
        "type": "object", "required": ["job", "status", "status_url", "download_url"],
        "properties": {"job": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                       "status": {"type": "string", "enum": ["running"]},
                       "status_url": {"type": "string"}, "download_url": {"type": "string"}},
    },
    "CleanJob": {
        "type": "object",
        "required": ["job", "status", "mode", "account", "file", "created", "finished", "progress",
                     "report", "error", "status_url", "download_url"],
        "properties": {
            "job": {"type": "string"},
            "status": {"type": "string", "enum": ["running", "done", "failed"]},
            "mode": {"type": "string", "enum": ["free", "premium"]},
            "account": {"type": ["string", "null"], "description": "The owner (charged when premium)."},
            "file": {"type": "string", "description": "The uploaded file's name."},
            "created": {"type": "string", "format": "date-time"},
            "finished": {"type": ["string", "null"], "format": "date-time"},
            "progress": {"type": ["object", "null"], "properties": {
                "state": {"type": "string"}, "bytes_read": {"type": ["integer", "null"]},
                "bytes_total": {"type": ["integer", "null"]}, "fraction": {"type": ["number", "null"]},
                "counts": {"type": "object"}}},
            "report": {"type": ["object", "null"], "description":
                       "Once finished: the report of `hlrsmpp clean` (docs/cli.md): counts, "
                       "err split (premium), refusals, error."},
            "error": {"type": ["string", "null"], "description": "Why a failed job failed."},
            "status_url": {"type": "string"}, "download_url": {"type": "string"},
        },
    },
    "Health": {
        "type": "object", "required": ["status", "checks"],
        "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]},
                       "checks": {"type": "object", "properties": {
                           "smpp": {"type": "boolean"}, "storage": {"type": "boolean"},
                           "hlr": {"type": "boolean"}}}},
    },
    "WebsmppReportRow": {
        "type": "object",
        "description": "As the AMS HLR API: `id` a number, every other value a string.",
        "properties": {
            "id": {"type": "integer"}, "batchid": {"type": "string"},
            "destination": {"type": "string"},
            "time": {"type": "string", "example": "2015-07-14 13:41:59"},
            "status": {"type": "string", "enum": ["DELIVRD", "UNDELIV", "ENROUTE"]},
            "error_code": {"type": "string", "example": "000"}, "error": {"type": "string"},
            "cc": {"type": "string"}, "nnc": {"type": "string"},
            "isPorted": {"type": "string", "enum": ["Yes", "No"]}, "p_nnc": {"type": "string"},
            "isRoaming": {"type": "string", "enum": ["Yes", "No"]}, "r_cc": {"type": "string"},
            "r_nnc": {"type": "string"},
        },
    },
}

_WEBSMPP_LOOKUP_PARAMS = [
    _q("username", "The account's system_id.", required=True, example="demo"),
    _q("password", "The account's password.", required=True, example="demo"),
    _q("destination", "One number, or up to 100 comma-separated.", required=True,
       example="447400123456,919589123456"),
]
_WEBSMPP_LOOKUP_RESPONSES = {"200": {
    "description": "`BatchId: <id>`, or `ERROR - HTTP01 --> Invalid HTTP URL Format`, or "
                   "`ERROR - <code> --> <description>` (001..007, AMS HLR API). Always 200: "
                   "its clients read the body.",
    "content": _TEXT}}


def _paths() -> dict:
    account_path = [_p("system_id", "The account's system_id.", example="demo")]
    admin: list[dict[str, list[str]]] = [{"adminToken": []}]
    either: list[dict[str, list[str]]] = [{"accountBasic": []}, {"adminToken": []}]
    return {
        "/websmpp/hlr/lookup": {
            "get": {"tags": ["AMS HLR API"], "summary": "Look numbers up (AMS HLR API)",
                    "operationId": "websmppLookupGet", "parameters": _WEBSMPP_LOOKUP_PARAMS,
                    "responses": _WEBSMPP_LOOKUP_RESPONSES},
            "post": {"tags": ["AMS HLR API"], "summary": "Look numbers up (AMS HLR API), form fields",
                     "operationId": "websmppLookupPost",
                     "requestBody": {"required": False, "content": {
                         "application/x-www-form-urlencoded": {"schema": {
                             "type": "object", "properties": {
                                 "username": {"type": "string"}, "password": {"type": "string"},
                                 "destination": {"type": "string"}}}}}},
                     "responses": _WEBSMPP_LOOKUP_RESPONSES},
        },
        "/websmpp/hlr/report": {
            "get": {"tags": ["AMS HLR API"], "summary": "Results of a batch (AMS HLR API)",
                    "operationId": "websmppReport",
                    "description": "The batch id alone reads the report (it is 63 random bits); "
                                   "with username and password they are checked and only that "
                                   "account's batches are found. Unknown batch ids count towards "
                                   "the source address's ban, like wrong passwords.",
                    "parameters": [_q("batchid", "The id after `BatchId: `.", required=True),
                                   _q("username", "Optional: the account (then checked with password)."),
                                   _q("password", "Optional: the account's password.")],
                    "responses": {
                        "200": _json({"oneOf": [_ref("WebsmppReportRow"),
                                                {"type": "array", "items": _ref("WebsmppReportRow")}]},
                                     "One object for a one-number batch, else an array."),
                        "400": _err("batchid missing or not a decimal id."),
                        "401": _err("username/password given and wrong (001 INVALID_LOGIN)."),
                        "403": _err("The source address is banned for a while (001 INVALID_LOGIN)."),
                        "404": _err("No such batch (of this account, when credentials are given)."),
                    }},
        },
        "/users/hlr_prepaid.php": {
            "get": {"tags": ["SMSPAY prepaid API"], "summary": "Prepaid synchronous lookup (SMSPAY prepaid API)",
                    "operationId": "prepaidLookup",
                    "parameters": [_q("user_id", "Your user id (a number).", required=True, example="1"),
                                   _q("service_id", "The service's id (a number).", required=True, example="1"),
                                   _q("msisdn", "The number, international format.", required=True,
                                      example="359888123456")],
                    "responses": {
                        "200": {"description": "One line: the result in the service's format "
                                               "(e.g. BG_MTEL_PORT ... BG_NONE) or BAN_IP_TEMP, "
                                               "INVALID_IP, INVALID_INPUT, SERVICE_DISABLED, "
                                               "INVALID_MSISDN, LIMIT_DAY, LIMIT_WEEK, LIMIT_MONTH, "
                                               "LIMIT_DELAY, LIMIT_EXCEEDED.", "content": _TEXT},
                        "503": {"description": "SYSTEM_ERROR: the store refused the lookup.",
                                "content": _TEXT},
                    }},
        },
        "/api/v1/openapi.json": {
            "get": {"tags": ["api"], "summary": "This document", "operationId": "openapi",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")}},
        },
        "/api/v1/lookups": {
            "post": {"tags": ["lookups"], "summary": "Look numbers up", "operationId": "createLookups",
                     "security": either,
                     "requestBody": _body(_ref("LookupRequest"),
                                          {"numbers": ["447400123456", "919589123456"], "account": "demo"}),
                     "responses": {
                         "200": _json(_ref("Batch"), "Synchronous: the results (complete: false "
                                                     "if the timeout came first)."),
                         "202": _json(_ref("Batch"), "Asynchronous: accepted; results later "
                                                     "(callback, GET lookup or batch)."),
                         "400": _err("Malformed request."),
                         **_AUTH_ERRORS,
                         "402": _err("Insufficient credit (ESME_RINSBAL)."),
                         "404": _err("Admin: no such account."),
                         "422": _err("No number accepted: invalid (ESME_RINVDSTADR) or not "
                                     "covered (ESME_RCOVERR)."),
                         "429": _err("Over a rate or day/week/month limit (ESME_RTHROTTLED)."),
                         "503": _err("The store refused the commit; nothing charged."),
                     }},
        },
        "/api/v1/lookups/{id}": {
            "get": {"tags": ["lookups"], "summary": "One lookup", "operationId": "getLookup",
                    "security": either, "parameters": [_p("id", "The lookup's id.")],
                    "responses": {"200": _json(_ref("Lookup"), "The lookup."), **_AUTH_ERRORS,
                                  "404": _err("No such lookup (of this account).")}},
        },
        "/api/v1/batches/{id}": {
            "get": {"tags": ["lookups"], "summary": "A batch's lookups", "operationId": "getBatch",
                    "security": either, "parameters": [_p("id", "The batch id.")],
                    "responses": {"200": _json(_ref("Batch"), "The batch."), **_AUTH_ERRORS,
                                  "404": _err("No such batch (of this account).")}},
        },
        "/api/v1/history": {
            "get": {"tags": ["lookups"], "summary": "Lookup history (JSON pages or CSV export)",
                    "operationId": "history", "security": either,
                    "parameters": [
                        _q("account", "Admin: filter by account. An account sees only its own."),
                        _q("since", "From (inclusive): ISO 8601 date/date-time (UTC if naive) or epoch seconds."),
                        _q("until", "To (exclusive), same forms."),
                        _q("status", "Only lookups of this result: DELIVRD, UNDELIV or ENROUTE (not in yet).",
                           {"type": "string", "enum": ["DELIVRD", "UNDELIV", "ENROUTE"]}),
                        _q("err", "Only this error code (0..999).", {"type": "integer", "minimum": 0, "maximum": 999}),
                        _q("cc", "Only numbers of this country calling code.",
                           {"type": "string", "pattern": "^[+]?[0-9]{1,3}$"}),
                        _q("network", "Only this network, MCC+MNC (the ported-to one when ported).",
                           {"type": "string", "pattern": "^[0-9]{5,6}$"}),
                        _q("prefix", "Only numbers starting with these digits.",
                           {"type": "string", "pattern": "^[+]?[0-9]{1,15}$"}),
                        _q("limit", "Page size 1..1000 (json, default 100); csv: at most this many rows (default all).",
                           {"type": "integer", "minimum": 1}),
                        _q("after", "Cursor: the `next` of the previous page. With a filter a page reads a "
                           "bounded part of the history: it may hold fewer than `limit` items and still have a `next`.",
                           {"type": "string"}),
                        _q("order", "asc (default): oldest first; desc: newest first.",
                           {"type": "string", "enum": ["asc", "desc"]}),
                        _q("format", "json (default) or csv.", {"type": "string", "enum": ["json", "csv"]}),
                    ],
                    "responses": {
                        "200": {"description": "A page, or the CSV export.", "content": {
                            "application/json": {"schema": _ref("History")},
                            "text/csv": {"schema": {"type": "string"}}}},
                        "400": _err("Bad filter."), **_AUTH_ERRORS}},
        },
        "/api/v1/me": {
            "get": {"tags": ["self-service"], "summary": "The calling account: credit, packages, usage, limits",
                    "operationId": "me", "security": [{"accountBasic": []}],
                    "responses": {"200": _json(_ref("Me"), "The account."),
                                  "403": _err("The operator's token (it has no account), or a banned address."),
                                  **{k: v for k, v in _AUTH_ERRORS.items() if k != "403"}}},
            "patch": {"tags": ["self-service"], "summary": "Change the calling account's notification settings",
                      "description": "Only `notify` (null: none). The webhook follows the lookup callbacks' "
                                     "address rules. Applied once durable.",
                      "operationId": "updateMe", "security": [{"accountBasic": []}],
                      "requestBody": _body(_ref("MeChange"), {"notify": {"email": ["ops@example.com"],
                                                                         "webhook": "https://example.com/hook"}}),
                      "responses": {"200": _json(_ref("Me"), "The account, changed."),
                                    "400": _err("Not a JSON object."),
                                    "403": _err("The operator's token (it has no account), or a banned address."),
                                    "422": _err("Another setting than notify, or a bad value."),
                                    **{k: v for k, v in _AUTH_ERRORS.items() if k != "403"}}},
        },
        "/api/v1/me/stats": {
            "get": {"tags": ["self-service"], "summary": "The calling account's lookups and cost, from per-day rollups",
                    "operationId": "meStats", "security": [{"accountBasic": []}],
                    "parameters": [
                        _q("since", "First day (inclusive), YYYY-MM-DD in accounts_timezone; default: "
                           "30 days before until.", {"type": "string", "format": "date"}),
                        _q("until", "Last day (exclusive); default: tomorrow.", {"type": "string", "format": "date"}),
                        _q("by", "day (default), country, network or status.",
                           {"type": "string", "enum": ["day", "country", "network", "status"]}),
                    ],
                    "responses": {"200": _json(_ref("Stats"), "The sums, in order of the value."),
                                  "400": _err("Bad since, until or by."),
                                  "403": _err("The operator's token (it has no account), or a banned address."),
                                  **{k: v for k, v in _AUTH_ERRORS.items() if k != "403"}}},
        },
        "/api/v1/me/notifications": {
            "get": {"tags": ["self-service"], "summary": "The calling account's notifications, newest first",
                    "operationId": "meNotifications", "security": [{"accountBasic": []}],
                    "responses": {"200": _json(_ref("Notifications"), "The last 100."),
                                  "403": _err("The operator's token (it has no account), or a banned address."),
                                  **{k: v for k, v in _AUTH_ERRORS.items() if k != "403"}}},
        },
        "/api/v1/sms/segments": {
            "get": {"tags": ["sms"], "summary": "How many SMS a text is (the live counter)",
                    "operationId": "smsSegments", "security": either,
                    "parameters": [
                        _q("text", "The message (with a binary data_coding, 2 or 4: its octets in hex).",
                           required=True, example="Hello €uro"),
                        _q("data_coding", "0 GSM 03.38, 1 IA5, 3 Latin-1, 8 UCS2, 2 or 4 binary; default: 0 "
                           "when every character is in the GSM alphabet, else 8.",
                           {"type": "integer", "minimum": 0, "maximum": 255}),
                    ],
                    "responses": {"200": _json(_ref("SmsSegments"), "The count."),
                                  "400": _err("No text, a data_coding that cannot carry it, or more than 255 SMS."),
                                  **_AUTH_ERRORS}},
        },
        "/api/v1/accounts": {
            "get": {"tags": ["accounts"], "summary": "List accounts", "operationId": "listAccounts",
                    "security": admin,
                    "responses": {"200": _json({"type": "object", "properties": {
                        "accounts": {"type": "array", "items": _ref("Account")}}}, "Every account."),
                        **_ADMIN_ERRORS}},
            "post": {"tags": ["accounts"], "summary": "Create an account", "operationId": "createAccount",
                     "security": admin,
                     "requestBody": _body(_ref("AccountSettings"),
                                          {"system_id": "acme2", "password": "s3cret", "credit": "100",
                                           "coverage": [44, 91], "limits": {"per_day": 10000}}),
                     "responses": {"201": _json(_ref("Account"), "Created (durable)."),
                                   "400": _err("Not a JSON object."), **_ADMIN_ERRORS,
                                   "409": _err("The account exists."),
                                   "422": _err("Invalid settings (the message names the key)."),
                                   "503": _err("The store refused the commit.")}},
        },
        "/api/v1/accounts/{system_id}": {
            "get": {"tags": ["accounts"], "summary": "One account", "operationId": "getAccount",
                    "security": admin, "parameters": account_path,
                    "responses": {"200": _json(_ref("Account"), "The account."), **_ADMIN_ERRORS,
                                  "404": _err("No such account.")}},
            "patch": {"tags": ["accounts"], "summary": "Change settings (not credit: top-up)",
                      "operationId": "updateAccount", "security": admin, "parameters": account_path,
                      "requestBody": _body(_ref("AccountSettings"), {"price": "0.1", "max_tx": 5}),
                      "responses": {"200": _json(_ref("Account"), "Updated (durable)."),
                                    "400": _err("Not a JSON object."), **_ADMIN_ERRORS,
                                    "404": _err("No such account."),
                                    "422": _err("Invalid settings."),
                                    "503": _err("The store refused the commit.")}},
        },
        "/api/v1/accounts/{system_id}/top-up": {
            "post": {"tags": ["accounts"], "summary": "Add a prepaid credit package",
                     "operationId": "topUp", "security": admin, "parameters": account_path,
                     "requestBody": _body(_ref("TopUp"), {"credit": "50", "note": "invoice 42"}),
                     "responses": {"200": _json({"type": "object", "properties": {
                         "account": _ref("Account"), "package": {"type": "object"}}}, "Topped up (durable)."),
                         "400": _err("Malformed request."), **_ADMIN_ERRORS,
                         "404": _err("No such account."),
                         "409": _err("The account has unlimited credit."),
                         "422": _err("Not a positive amount."),
                         "503": _err("The store refused the commit.")}},
        },
        "/api/v1/accounts/{system_id}/enable": {
            "post": {"tags": ["accounts"], "summary": "Enable an account", "operationId": "enableAccount",
                     "security": admin, "parameters": account_path,
                     "responses": {"200": _json(_ref("Account"), "Enabled."), **_ADMIN_ERRORS,
                                   "404": _err("No such account."),
                                   "503": _err("The store refused the commit.")}},
        },
        "/api/v1/accounts/{system_id}/disable": {
            "post": {"tags": ["accounts"], "summary": "Disable an account (unbinds its sessions)",
                     "operationId": "disableAccount", "security": admin, "parameters": account_path,
                     "responses": {"200": _json(_ref("Account"), "Disabled."), **_ADMIN_ERRORS,
                                   "404": _err("No such account."),
                                   "503": _err("The store refused the commit.")}},
        },
        "/api/v1/accounts/{system_id}/ledger": {
            "get": {"tags": ["accounts"], "summary": "Credit movements (top-ups)",
                    "operationId": "ledger", "security": admin, "parameters": account_path,
                    "responses": {"200": _json({"type": "object", "properties": {
                        "account": {"type": "string"}, "entries": {"type": "array", "items": {
                            "type": "object", "properties": {
                                "at": {"type": "string", "format": "date-time"},
                                "kind": {"type": "string"}, "amount": {"type": "string"},
                                "note": {"type": "string"}}}}}}, "The ledger."),
                        **_ADMIN_ERRORS, "404": _err("No such account.")}},
        },
        "/api/v1/faults": {
            "get": {"tags": ["test bench"], "summary": "The fault rules in force", "operationId": "getFaults",
                    "security": admin,
                    "responses": {"200": _json(_ref("Faults"), "Every rule, as it would be written."),
                                  **_ADMIN_ERRORS}},
            "put": {"tags": ["test bench"], "summary": "Replace every fault rule",
                    "operationId": "putFaults", "security": admin,
                    "requestBody": _body(_ref("Faults"), {"faults": [
                        {"action": "status", "prefix": "4477", "status": "RTHROTTLED"},
                        {"action": "delay_receipt", "account": "demo", "delay_ms": 3000}]}),
                    "responses": {"200": _json(_ref("Faults"), "The rules now in force."),
                                  "400": _err("Not {\"faults\": [...]}."), **_ADMIN_ERRORS,
                                  "422": _err("A rule is invalid (`invalid_faults`, the message names "
                                              "it): nothing changed.")}},
        },
        "/api/v1/accounts/{system_id}/trace": {
            "get": {"tags": ["test bench"], "summary": "An account's PDU trace", "operationId": "getTrace",
                    "security": admin,
                    "parameters": account_path + [_q("limit", "The last N entries, 1..10000 (default 1000).",
                                                     {"type": "integer", "minimum": 1, "maximum": 10000})],
                    "responses": {"200": _json(_ref("Trace"), "The setting and the last entries."),
                                  "400": _err("Bad limit."), **_ADMIN_ERRORS,
                                  "404": _err("No such account.")}},
            "put": {"tags": ["test bench"], "summary": "Switch an account's PDU trace",
                    "operationId": "putTrace", "security": admin, "parameters": account_path,
                    "requestBody": _body(_ref("TraceSetting"), {"trace": True}),
                    "responses": {"200": _json(_ref("Trace"), "The new setting (durable); its sessions "
                                                              "bound now are traced from now on."),
                                  "400": _err("Not {\"trace\": true|false|\"NAME\"}."), **_ADMIN_ERRORS,
                                  "404": _err("No such account."),
                                  "422": _err("Not a plain file name (`invalid_trace`)."),
                                  "503": _err("The trace file cannot be opened, or the store refused the commit.")}},
        },
        "/api/v1/clean": {
            "post": {"tags": ["cleaning"], "summary": "Clean a contact list (upload; runs as a job)",
                     "operationId": "createCleanJob", "security": either,
                     "description": "The file is the request body (a CSV with a `numbers` column, "
                                    "or one number a line) or the multipart field `file`. Free: "
                                    "syntax and duplicates; premium: every remaining number looked "
                                    "up, charged per contact to the account. Poll `status_url`, "
                                    "then fetch `download_url`.",
                     "parameters": [
                         _q("premium", "Also look every number up (charged per contact).", {"type": "boolean"}),
                         _q("account", "The job's account (charged when premium): the operator names it; "
                                       "an account may only name itself."),
                         _q("style", "How kept numbers are written.",
                            {"type": "string", "enum": ["digits", "plus", "keep"]}),
                         _q("drop_absent", "Premium: also remove absent subscribers (err 011).",
                            {"type": "boolean"}),
                         _q("delimiter", "CSV delimiter (default: found from the header).",
                            {"type": "string", "enum": [",", ";", "|", "tab"]}),
                         _q("format", "auto (default), csv or text.",
                            {"type": "string", "enum": ["auto", "csv", "text"]}),
                         _q("column", "The numbers column's header (default numbers).",
                            {"type": "string", "minLength": 1, "maxLength": 64}),
                         _q("encoding", "The file's encoding (default UTF-8, with or without BOM).",
                            {"type": "string", "example": "latin-1"}),
                         _q("filename", "A raw body's name (for the download).",
                            {"type": "string", "example": "contacts.csv"}),
                     ],
                     "requestBody": {"required": True, "content": {
                         "text/csv": {"schema": {"type": "string"},
                                      "example": "id,name,numbers\n1,Ann,+44 7911 000001\n2,Bob,447911000001\n"},
                         "text/plain": {"schema": {"type": "string"}, "example": "447911000001\n12025550143\n"},
                         "multipart/form-data": {"schema": {
                             "type": "object", "required": ["file"],
                             "properties": {"file": {"type": "string", "format": "binary"}}}}}},
                     "responses": {
                         "202": _json(_ref("CleanJobCreated"), "Uploaded and started."),
                         "400": _err("Bad parameter, empty or malformed upload."), **_AUTH_ERRORS,
                         "402": _err("Premium: the account has no credit left."),
                         "404": _err("The operator named no existing account."),
                         "413": _err("Over `http.clean_max_bytes` (`too_large`), or the account's "
                                     "jobs would be over `http.clean_quota_bytes` (`over_quota`)."),
                         "415": _err("Not text/csv, text/plain or multipart/form-data."),
                         "422": _err("Neither a CSV with the numbers column nor one number a line "
                                     "(`invalid_file`)."),
                         "429": _err("Too many jobs running (`too_many_jobs`); retry later."),
                         "503": _err("The upload could not be stored."),
                     }},
        },
        "/api/v1/clean/{id}": {
            "get": {"tags": ["cleaning"], "summary": "A cleaning job's progress and report",
                    "operationId": "getCleanJob", "security": either,
                    "parameters": [_p("id", "The job id.")],
                    "responses": {"200": _json(_ref("CleanJob"), "The job."), **_AUTH_ERRORS,
                                  "404": _err("No such job (of this account).")}},
            "delete": {"tags": ["cleaning"], "summary": "Delete a finished cleaning job and its files",
                       "operationId": "deleteCleanJob", "security": either,
                       "parameters": [_p("id", "The job id.")],
                       "responses": {"204": {"description": "Deleted: its files no longer count "
                                                            "towards the account's quota."},
                                     **_AUTH_ERRORS,
                                     "404": _err("No such job (of this account)."),
                                     "409": _err("The job is still running (`job_running`).")}},
        },
        "/api/v1/clean/{id}/download": {
            "get": {"tags": ["cleaning"], "summary": "A cleaning job's files",
                    "operationId": "downloadClean", "security": either,
                    "parameters": [_p("id", "The job id."),
                                   _q("file", "cleaned (default), report or original.",
                                      {"type": "string", "enum": ["cleaned", "report", "original"]})],
                    "responses": {
                        "200": {"description": "The cleaned file (the original's layout, encoding and "
                                               "other columns), the original, or the report.",
                                "content": {"text/csv": {"schema": {"type": "string"}},
                                            "text/plain": {"schema": {"type": "string"}},
                                            "application/json": {"schema": {"type": "object"}}}},
                        "400": _err("Bad `file`."), **_AUTH_ERRORS,
                        "404": _err("No such job (of this account)."),
                        "409": _err("The job is still running (`job_running`) or failed (`job_failed`)."),
                        "410": _err("The job's files were deleted."),
                    }},
        },
        "/metrics": {
            "get": {"tags": ["operations"], "summary": "Prometheus metrics", "operationId": "metrics",
                    "responses": {"200": {"description": "Prometheus text format 0.0.4",
                                          "content": {"text/plain": {"schema": {"type": "string"}}}}}},
        },
        "/healthz": {
            "get": {"tags": ["operations"], "summary": "Health", "operationId": "healthz",
                    "responses": {"200": _json(_ref("Health"), "SMPP listener, storage and HLR tables up."),
                                  "503": _json(_ref("Health"), "Something is down (see checks).")}},
        },
    }


_DOC = {
    "openapi": "3.1.0",
    "info": {"title": "hlrsmpp HTTP interface", "version": VERSION,
             "description": "HLR lookups over HTTP beside SMPP: the AMS HLR API (/websmpp), the "
                            "SMSPAY prepaid service, and a JSON API for operators. A lookup costs "
                            "and counts the same on every channel. See docs/http.md."},
    "paths": _paths(),
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "accountBasic": {"type": "http", "scheme": "basic",
                             "description": "An account's system_id and password."},
            "adminToken": {"type": "http", "scheme": "bearer",
                           "description": "The operator's admin.token (HLRSMPP_ADMIN_TOKEN)."},
        },
    },
}


def document() -> dict:
    """A fresh copy of the document (callers may add `servers`)."""
    return copy.deepcopy(_DOC)
