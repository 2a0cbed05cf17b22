"""The SMS composer of an SMS account (``service: sms``): type a text, see how many SMS it
is as it is typed (the segment counter of the JSON API, the same code), send it to a
number, and watch the message reach its final state.

Without JavaScript the form still works: "Count" posts it back with the count, "Send"
sends; the message's page then shows its state (reload to see it change)."""
from __future__ import annotations

import time

from aiohttp import web

from ...domain import Lookup
from ...sms import UnencodableText
from ..http import api
from ..http.common import SERVER, json_response, lookup_view, read, with_sms
from .common import customer, customer_account, form, missing, render

#: What the sender field may hold (source_addr, a C-Octet String of 21).
SENDER_MAX = 20


def _sms_account(request: web.Request):
    acc = customer_account(request)
    if acc.settings.service != "sms":
        raise missing(request, "This account makes HLR lookups: the SMS composer is for SMS accounts "
                               "(service: sms).")
    return acc


def _page(request: web.Request, fields: dict, error: str | None = None, status: int = 200) -> web.Response:
    count = api.segments_of_query({"text": fields["text"]}) if fields["text"] else None
    return render(request, "sms.html", {
        "title": "Send an SMS", "error": error, "number": fields["number"], "text": fields["text"],
        "sender": fields["sender"], "count": count if isinstance(count, dict) else None,
        "count_error": count if isinstance(count, str) else None}, status)


@customer
async def composer(request: web.Request) -> web.Response:
    _sms_account(request)
    return _page(request, {"number": "", "text": "", "sender": ""})


@customer
async def segments(request: web.Request) -> web.Response:
    """The live counter (JSON), as GET /api/v1/sms/segments answers it."""
    _sms_account(request)
    count = api.segments_of_query(request.query)
    if isinstance(count, str):
        return api._bad(count)
    return json_response(count)


@customer
async def send(request: web.Request) -> web.Response:
    server, acc = request.app[SERVER], _sms_account(request)
    f = await form(request)
    fields = {"number": f.get("number", "").strip(), "text": f.get("text", ""), "sender": f.get("sender", "").strip()}
    if f.get("action") == "count":  # the counter without JavaScript
        return _page(request, fields)
    if not fields["number"]:
        return _page(request, fields, "Give the number to send the SMS to.", 422)
    if not fields["text"]:
        return _page(request, fields, "Type the text of the SMS.", 422)
    if len(fields["sender"]) > SENDER_MAX:
        return _page(request, fields, f"The sender is at most {SENDER_MAX} characters.", 422)
    try:
        m = await server.sms.send(acc, fields["number"], fields["text"], fields["sender"])
    except UnencodableText as err:
        return _page(request, fields, str(err), 422)
    if not hasattr(m, "id"):
        return _page(request, fields, _refusal(m), 422)
    raise web.HTTPSeeOther(f"/console/sms/{m.id}")


def _refusal(status) -> str:
    name = getattr(status, "name", str(status))
    return {"RINVDSTADR": "That is not a valid destination number.",
            "RINSBAL": "Not enough credit for this message.",
            "RINVMSGLEN": "The text is too long for one message."}.get(
        name, f"The message was refused ({getattr(status, 'name', status)}).")


async def _message(request: web.Request) -> dict:
    server, acc = request.app[SERVER], _sms_account(request)
    mid = api._lookup_id(request.match_info["id"])
    row = await read(server.store.lookup, mid) if mid is not None else None
    if row is None or row["system_id"] != acc.system_id or row["channel"] != "sms":
        raise missing(request, "No such message in this account.")
    view = with_sms(lookup_view(Lookup.from_row(row), time.time(), server.resolver.network_names),
                    await read(server.store.sms, mid))
    return view


@customer
async def message(request: web.Request) -> web.Response:
    view = await _message(request)
    return render(request, "sms_message.html", {"title": "SMS sent", "m": view, "id": request.match_info["id"]})


@customer
async def message_state(request: web.Request) -> web.Response:
    """The message's state alone: what the page's script polls until it is final."""
    view = await _message(request)
    return render(request, "_sms_state.html", {"m": view})


def routes(r: web.UrlDispatcher) -> None:
    r.add_get("/console/sms", composer)
    r.add_post("/console/sms", send)
    r.add_get("/console/sms/segments", segments)
    r.add_get("/console/sms/{id}", message)
    r.add_get("/console/sms/{id}/state", message_state)
