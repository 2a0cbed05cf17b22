"""An account's own view, with its own credentials (HTTP Basic system_id:password):
/api/v1/me (credit, packages, usage, limits), /api/v1/me/stats (from the per-day rollups)
and /api/v1/me/notifications. The same login as every other route: wrong credentials
count towards the IP ban, a banned address is refused."""
from __future__ import annotations

import time
from datetime import date, timedelta

from aiohttp import web

from ...accounts import Account, from_micro
from ...hlr import ERR_NAMES
from .api import WEBHOOKS, _body, authenticate, change_settings, url_refused
from ..notify import subject
from .common import SERVER, iso, json_error, json_response, read


async def account_of(request: web.Request) -> Account | web.Response:
    """The account calling, or the error to answer (the operator has no /me)."""
    who = await authenticate(request)
    if isinstance(who, web.Response):
        return who
    if who.admin or who.account is None:
        return json_error(403, "forbidden", "/api/v1/me is an account's own view: authenticate "
                                            "with HTTP Basic (system_id:password)")
    return who.account


def me_view(server, acc) -> dict:
    """What an account sees of itself."""
    c = server.book.counters(acc)
    st = acc.settings
    return {
        "system_id": acc.system_id,
        "enabled": st.enabled,
        "credit": from_micro(acc.credit) if acc.credit is not None else None,
        "low_credit": from_micro(st.low_credit) if st.low_credit else None,
        "packages": [p.to_record() for p in acc.packages] if acc.packages is not None else None,
        "price": from_micro(st.price),
        "usage": {"day": c["day"], "week": c["week"], "month": c["month"]},
        "limits": st.limits.to_config(),
        "expires": st.expires.isoformat() if st.expires is not None else None,
        "coverage": sorted(st.coverage, key=lambda cc: (len(cc), cc)),
        "auto_recharge": auto_recharge_view(server.book, acc),
        "notify": acc.to_record().get("notify"),
    }


def auto_recharge_view(book, acc) -> dict | None:
    """An account's auto_recharge settings and the packages it added this month."""
    ar = acc.settings.auto_recharge
    if ar is None:
        return None
    month, n = book.recharges(acc)
    return dict(ar.to_config(), month=month, this_month=n)


async def me(request: web.Request) -> web.Response:
    """GET /api/v1/me"""
    account = await account_of(request)
    if isinstance(account, web.Response):
        return account
    return json_response(me_view(request.app[SERVER], account))


#: What an account may change of itself (the rest is the operator's).
ME_CHANGES = ("notify",)


async def update_me(request: web.Request) -> web.Response:
    """PATCH /api/v1/me: an account's own notification settings."""
    account = await account_of(request)
    if isinstance(account, web.Response):
        return account
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    return await change_me(request, account, body)


async def change_me(request: web.Request, acc, body: dict) -> web.Response:
    """Change what an account may change of itself (the API's and the console's): only
    ``notify``, validated as the operator's edits are, its webhook under the lookup
    callbacks' address rules; applied once durable. The account's view, or the error."""
    server = request.app[SERVER]
    if not body or any(k not in ME_CHANGES for k in body):
        return json_error(422, "invalid_account", f"an account changes only {', '.join(ME_CHANGES)} of "
                                                  "itself; the rest is the operator's")
    notify = body["notify"]
    if isinstance(notify, dict) and notify.get("webhook") is not None:
        if (why := url_refused(notify["webhook"], request.app[WEBHOOKS], "notify: webhook")) is not None:
            return json_error(422, "invalid_account", why)
    if (err := await change_settings(server, acc, {"notify": notify})) is not None:
        return err
    return json_response(me_view(server, server.book.get(acc.system_id)))


#: What statistics are summed by.
STATS_BY = ("day", "country", "network", "status")
#: The longest statistics range, in days (ten years).
STATS_MAX_DAYS = 3660


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name}: expected a date, YYYY-MM-DD") from None


async def stats(request: web.Request) -> web.Response:
    """GET /api/v1/me/stats?since=&until=&by=day|country|network|status"""
    account = await account_of(request)
    if isinstance(account, web.Response):
        return account
    server = request.app[SERVER]
    q = request.query
    by = q.get("by", "day")
    if by not in STATS_BY:
        return json_error(400, "bad_request", "by: expected day, country, network or status")
    try:
        today = server.book.calendar.date(time.time())
        until = _day(q["until"], "until") if q.get("until") else today + timedelta(days=1)
        since = _day(q["since"], "since") if q.get("since") else until - timedelta(days=30)
    except ValueError as err:
        return json_error(400, "bad_request", str(err))
    if not since < until or (until - since).days > STATS_MAX_DAYS:
        return json_error(400, "bad_request", f"since must be before until, at most {STATS_MAX_DAYS} days apart")
    rows = await read(server.store.rollups, account.system_id, since.isoformat(), until.isoformat(), by)
    names = server.resolver.network_names
    items = []
    for value, n, cost in rows:
        item: dict = {by: value}
        if by == "network":
            item["network_name"] = names.get(value, "")
        elif by == "status":
            item = {"status": "DELIVRD" if value == 0 else "UNDELIV", "err": value,
                    "error": ERR_NAMES.get(value, "")}
        item |= {"lookups": n, "cost": from_micro(cost)}
        items.append(item)
    return json_response({
        "account": account.system_id, "since": since.isoformat(), "until": until.isoformat(),
        "by": by, "total": {"lookups": sum(r[1] for r in rows), "cost": from_micro(sum(r[2] for r in rows))},
        "items": items})


async def notifications(request: web.Request) -> web.Response:
    """GET /api/v1/me/notifications: the account's notifications, newest first."""
    account = await account_of(request)
    if isinstance(account, web.Response):
        return account
    server = request.app[SERVER]
    rows = await read(server.store.outbox.list, account.system_id)
    return json_response({"items": [{
        "id": str(r["id"]), "kind": r["kind"], "at": iso(r["at"]), "subject": subject(r["kind"], r["data"]),
        "data": r["data"], "sent": r["sent"], "pending": r["pending"], "attempts": r["attempts"],
        "error": r["error"] or None} for r in rows]})
