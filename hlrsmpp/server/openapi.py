"""The OpenAPI 3 document of the HTTP interface, served at /api/v1/openapi.json."""
from __future__ import annotations

import copy

from ..accounts.policy import ACCOUNT_KEYS

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
_AMOUNT = {"oneOf": [{"type": "string", "example": "12.5"}, {"type": "number"}],
           "description": "Credits, at most 6 decimals."}

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message", "smpp_status"],
            "properties": {
                "code": {"type": "string", "description":
                         "Stable machine code: the refusal (`no_credit`, `limit_day`, "
                         "`no_coverage`, `expired`, `bad_password`, `invalid_destination`, ...) "
                         "or `bad_request`, `unauthorized`, `forbidden`, `not_found`, "
                         "`admin_disabled`, `invalid_account`, `invalid_amount`, `exists`, "
                         "`unlimited_credit`, `system_error`."},
                "message": {"type": "string"},
                "smpp_status": {"type": ["string", "null"], "description":
                                "What SMPP answers for the same refusal, e.g. `ESME_RINSBAL`."},
                "name": {"type": "string", "description": "Seed 002 error name (report only)."},
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
            "account": {"type": "string"}, "channel": {"type": "string", "enum": ["smpp", "http"]},
            "number": {"type": "string"},
            "submitted": {"type": "string", "format": "date-time"},
            "done": {"type": "string", "format": "date-time"},
            "status": {"type": "string", "enum": ["ENROUTE", "DELIVRD", "UNDELIV"]},
            "err": {"type": ["integer", "null"], "description": "0 reachable, else 11..24 (SPEC §2)"},
            "error": {"type": ["string", "null"], "description": "e.g. ABSENT_SUBSCRIBER; empty when err is 0"},
            "cc": {"type": "string"}, "nnc": {"type": ["string", "null"]},
            "network": {"type": ["string", "null"], "description": "Current network: p_nnc if ported, else nnc"},
            "ported": {"type": ["boolean", "null"]}, "p_nnc": {"type": ["string", "null"]},
            "roaming": {"type": ["boolean", "null"]}, "r_cc": {"type": ["string", "null"]},
            "r_nnc": {"type": ["string", "null"]},
            "active": {"type": ["boolean", "null"]}, "reachable": {"type": ["boolean", "null"]},
            "cost": {"type": "string", "description": "Credits charged"},
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
                             "result is final; retried with backoff until a 2xx."},
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
    "History": {
        "type": "object", "required": ["items", "next"],
        "properties": {"items": {"type": "array", "items": _ref("Lookup")},
                       "next": {"type": ["string", "null"], "description": "Pass as `after` for the next page."}},
    },
    "Account": {
        "type": "object", "description": "An account's settings (never its password) and state.",
        "properties": {
            "system_id": {"type": "string"}, "system_type": {"type": "string"},
            "price": {"type": "string"}, "expires": {"type": "string", "format": "date"},
            "coverage": {"type": "array", "items": {"type": "string"}},
            "limits": {"type": "object"}, "allowed_ips": {"type": "array", "items": {"type": "string"}},
            "max_tx": {"type": "integer"}, "low_credit": {"type": "string"},
            "data_coding": {"type": "integer"}, "enabled": {"type": "boolean"},
            "packages": {"type": "array", "items": {"type": "object"}},
            "credit": {"type": ["string", "null"], "description": "null: unlimited"},
            "unlimited": {"type": "boolean"},
            "counters": {"type": "object", "properties": {
                "day": {"type": "integer"}, "week": {"type": "integer"}, "month": {"type": "integer"}}},
            "receipts_queued": {"type": "integer"},
        },
    },
    "AccountSettings": {
        "type": "object", "additionalProperties": False,
        "description": "As in the YAML configuration (SPEC §6).",
        "properties": {
            "system_id": {"type": "string", "minLength": 1, "maxLength": 15},
            "password": {"type": "string", "maxLength": 8},
            "system_type": {"type": "string", "maxLength": 12},
            "credit": _AMOUNT, "packages": {"type": "array", "items": {"type": "object"}},
            "price": _AMOUNT, "expires": {"type": "string", "format": "date"},
            "coverage": {"type": "array", "items": {"type": "string"}},
            "limits": {"type": "object", "properties": {
                "per_day": {"type": "integer", "minimum": 0}, "per_week": {"type": "integer", "minimum": 0},
                "per_month": {"type": "integer", "minimum": 0}, "min_delay_ms": {"type": "integer", "minimum": 0},
                "tps": {"type": "number", "exclusiveMinimum": 0}, "burst": {"type": "number", "minimum": 1}}},
            "allowed_ips": {"type": "array", "items": {"type": "string"}},
            "max_tx": {"type": "integer", "minimum": 0}, "low_credit": _AMOUNT,
            "data_coding": {"type": "integer", "minimum": 0, "maximum": 255},
            "enabled": {"type": "boolean"},
        },
    },
    "TopUp": {
        "type": "object", "required": ["credit"], "additionalProperties": False,
        "properties": {"credit": _AMOUNT, "bought": {"type": "string", "format": "date"},
                       "note": {"type": "string", "maxLength": 200}},
    },
    "Health": {
        "type": "object", "required": ["status", "checks"],
        "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]},
                       "checks": {"type": "object", "properties": {
                           "smpp": {"type": "boolean"}, "storage": {"type": "boolean"},
                           "hlr": {"type": "boolean"}}}},
    },
    "SeedReportRow": {
        "type": "object",
        "description": "Seed 002: `id` a number, every other value a string.",
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
# Keys the account layer knows that are not detailed above: any value (it validates them).
for _k in sorted(ACCOUNT_KEYS - set(SCHEMAS["AccountSettings"]["properties"])):
    SCHEMAS["AccountSettings"]["properties"][_k] = {"description": "See docs/accounts."}

_SEED_LOOKUP_PARAMS = [
    _q("username", "The account's system_id.", required=True, example="demo"),
    _q("password", "The account's password.", required=True, example="demo"),
    _q("destination", "One number, or up to 100 comma-separated.", required=True,
       example="447400123456,919589123456"),
]
_SEED_LOOKUP_RESPONSES = {"200": {
    "description": "`BatchId: <id>`, or `ERROR - HTTP01 --> Invalid HTTP URL Format`, or "
                   "`ERROR - <code> --> <description>` (001..007, seed 002). Always 200: "
                   "seed 002 clients read the body.",
    "content": _TEXT}}


def _paths() -> dict:
    account_path = [_p("system_id", "The account's system_id.", example="demo")]
    admin = [{"adminToken": []}]
    either = [{"accountBasic": []}, {"adminToken": []}]
    return {
        "/websmpp/hlr/lookup": {
            "get": {"tags": ["seed 002"], "summary": "Look numbers up (seed 002)",
                    "operationId": "seedLookupGet", "parameters": _SEED_LOOKUP_PARAMS,
                    "responses": _SEED_LOOKUP_RESPONSES},
            "post": {"tags": ["seed 002"], "summary": "Look numbers up (seed 002), form fields",
                     "operationId": "seedLookupPost",
                     "requestBody": {"required": False, "content": {
                         "application/x-www-form-urlencoded": {"schema": {
                             "type": "object", "properties": {
                                 "username": {"type": "string"}, "password": {"type": "string"},
                                 "destination": {"type": "string"}}}}}},
                     "responses": _SEED_LOOKUP_RESPONSES},
        },
        "/websmpp/hlr/report": {
            "get": {"tags": ["seed 002"], "summary": "Results of a batch (seed 002)",
                    "operationId": "seedReport",
                    "parameters": [_q("batchid", "The id after `BatchId: `.", required=True)],
                    "responses": {
                        "200": _json({"oneOf": [_ref("SeedReportRow"),
                                                {"type": "array", "items": _ref("SeedReportRow")}]},
                                     "One object for a one-number batch, else an array."),
                        "400": _err("batchid missing or not a decimal id."),
                        "404": _err("No such batch."),
                    }},
        },
        "/users/hlr_prepaid.php": {
            "get": {"tags": ["seed 001"], "summary": "Prepaid synchronous lookup (seed 001)",
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
                        _q("limit", "Page size 1..1000 (json, default 100); csv: at most this many rows (default all).",
                           {"type": "integer", "minimum": 1}),
                        _q("after", "Cursor: the `next` of the previous page.", {"type": "string"}),
                        _q("format", "json (default) or csv.", {"type": "string", "enum": ["json", "csv"]}),
                    ],
                    "responses": {
                        "200": {"description": "A page, or the CSV export.", "content": {
                            "application/json": {"schema": _ref("History")},
                            "text/csv": {"schema": {"type": "string"}}}},
                        "400": _err("Bad filter."), **_AUTH_ERRORS}},
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
             "description": "HLR lookups over HTTP beside SMPP: seed 002's /websmpp API, seed "
                            "001's prepaid service, and a JSON API for operators. A lookup costs "
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
