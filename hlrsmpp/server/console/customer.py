"""A customer's pages: the dashboard, a new request, past requests, the account."""
from __future__ import annotations

import re
import time
from datetime import date, timedelta
from urllib.parse import urlencode

from aiohttp import web

from ...accounts import from_micro
from ...domain import Lookup
from ..http import api, me
from ...hlr import ERR_NAMES
from ..http.history import STATUSES, HistoryFilter, Query
from ..http.me import auto_recharge_view
from ..http.common import MAX_BATCH, SERVER, lookup_view, read, unknown_batch
from .charts import lookups_per_day
from .common import api_error, customer, customer_account, form, missing, render
from .sessions import account_sessions

#: Rows of a page of past requests.
HISTORY_PAGE = 50
_SPLIT = re.compile(r"[\s,;]+")


def _account_summary(server, acc) -> dict:
    c = server.book.counters(acc)
    return {"credit": from_micro(acc.credit) if acc.credit is not None else None,
            "counters": {"day": c["day"], "week": c["week"], "month": c["month"]},
            "auto_recharge": auto_recharge_view(server.book, acc),
            "expires": acc.settings.expires.isoformat() if acc.settings.expires else None,
            "price": from_micro(acc.settings.price), "limits": acc.settings.limits.to_config(),
            "low_credit": from_micro(acc.settings.low_credit) if acc.settings.low_credit else None}


#: Days of the dashboard's chart, and how many networks and errors it lists.
CHART_DAYS = 30
TOP = 5


def _statistics(store, system_id: str, today: date) -> tuple[list[dict], list, list]:
    """From the per-day rollups (never the history), on a worker thread: each of the last
    CHART_DAYS days' lookups by result, and this month's networks and errors."""
    days = []
    for k in range(CHART_DAYS - 1, -1, -1):
        d = today - timedelta(days=k)
        by_err = store.rollups(system_id, d.isoformat(), (d + timedelta(days=1)).isoformat(), "status")
        ok = sum(n for err, n, _ in by_err if err == 0)
        days.append({"day": d.isoformat(), "delivered": ok, "undelivered": sum(n for _, n, _ in by_err) - ok})
    month = today.replace(day=1).isoformat()
    end = (today + timedelta(days=1)).isoformat()
    networks = sorted(store.rollups(system_id, month, end, "network"), key=lambda r: -r[1])[:TOP]
    errors = sorted((r for r in store.rollups(system_id, month, end, "status") if r[0] != 0),
                    key=lambda r: -r[1])[:TOP]
    return days, networks, errors


@customer
async def dashboard(request: web.Request) -> web.Response:
    server, acc = request.app[SERVER], customer_account(request)
    days, networks, errors = await read(_statistics, server.store, acc.system_id,
                                        server.book.calendar.date(time.time()))
    names = server.resolver.network_names
    return render(request, "dashboard.html", {
        "title": "Dashboard", "me": _account_summary(server, acc),
        "chart": lookups_per_day(days) if any(d["delivered"] or d["undelivered"] for d in days) else None,
        "top_networks": [{"nnc": v, "name": names.get(v, ""), "count": n} for v, n, _ in networks],
        "top_errors": [{"name": ERR_NAMES.get(v, str(v)), "count": n} for v, n, _ in errors]})


# ------------------------------------------------------------------ new request

@customer
async def lookup_form(request: web.Request) -> web.Response:
    return render(request, "lookup.html", {"title": "New request", "numbers": "", "error": None,
                                           "max": MAX_BATCH})


@customer
async def lookup_post(request: web.Request) -> web.Response:
    server, acc = request.app[SERVER], customer_account(request)
    text = (await form(request)).get("numbers", "")
    numbers = [n for n in _SPLIT.split(text) if n]

    def again(message: str, status: int) -> web.Response:
        return render(request, "lookup.html", {"title": "New request", "numbers": text,
                                               "error": message, "max": MAX_BATCH}, status)

    if not numbers:
        return again("Give a number, or a list of numbers (one a line).", 422)
    if len(numbers) > MAX_BATCH:
        return again(f"At most {MAX_BATCH} numbers a request ({len(numbers)} given): split the list, "
                     "or clean it as a contact list.", 422)
    submitted = await api.submit_lookups(server, acc, numbers)
    if isinstance(submitted, web.Response):
        return again(api_error(submitted), submitted.status)
    batch_id, accepted, rejected = submitted
    at, names = time.time(), server.resolver.network_names
    return _batch_page(request, batch_id, [lookup_view(lk, at, names) for lk in accepted], rejected)


def _batch_page(request: web.Request, batch_id: int, views: list[dict], rejected: list[dict]) -> web.Response:
    return render(request, "batch.html", {
        "title": "Request results", "batch_id": str(batch_id), "rows": views, "rejected": rejected,
        "pending": any(v["status"] == "ENROUTE" for v in views)})


async def _batch_views(request: web.Request) -> tuple[int, list[dict]]:
    server, acc = request.app[SERVER], customer_account(request)
    bid = api._lookup_id(request.match_info["batch"])
    rows = await api.batch_rows(server, bid, acc.system_id)
    if bid is None or not rows:
        unknown_batch(server, request)
        raise missing(request, "No such request in this account.")
    at = time.time()
    return bid, [lookup_view(Lookup.from_row(r), at, server.resolver.network_names) for r in rows]


@customer
async def batch(request: web.Request) -> web.Response:
    bid, views = await _batch_views(request)
    return _batch_page(request, bid, views, [])


@customer
async def batch_rows(request: web.Request) -> web.Response:
    """The results table alone: what the page's script polls until every result is in."""
    bid, views = await _batch_views(request)
    return render(request, "_results.html", {"batch_id": str(bid), "rows": views,
                                             "pending": any(v["status"] == "ENROUTE" for v in views)})


# ------------------------------------------------------------------ past requests

def _range(q) -> tuple[float | None, float | None]:
    """The filter's dates (inclusive days, UTC); ValueError names the bad one."""
    since = api._when(q["since"], "from") if q.get("since") else None
    until = api._when(q["until"], "to") + 86400 if q.get("until") else None
    return since, until


def _filters(q) -> Query:
    """The page's query from its filters (ValueError names the bad one): the account is
    the viewer's, set by the caller."""
    since, until = _range(q)
    return Query(None, since, until, 0, True, HistoryFilter.parse(q))


@customer
async def history(request: web.Request) -> web.Response:
    acc = customer_account(request)
    q = request.query
    error = None
    try:
        query = _filters(q)
    except ValueError as e:
        query, error = Query(None, None, None, 0, True), str(e)
    after = api._lookup_id(q.get("before", "") or "0")
    if after is None:
        after, error = 0, "before: not a lookup id"
    page = await request.app[api.HISTORY].views(query._replace(account=acc.system_id, after=after),
                                                HISTORY_PAGE)
    filters = {k: q.get(k, "") for k in ("since", "until", "status", "err", "cc", "network", "prefix")}
    kept = urlencode({k: v for k, v in filters.items() if v}) if error is None else ""
    return render(request, "history.html", {
        "title": "Past requests", "rows": page["items"], "filters": filters, "error": error,
        "statuses": STATUSES, "query": kept, "page_size": HISTORY_PAGE, "older": page["next"], "first": after == 0},
        400 if error else 200)


@customer
async def history_csv(request: web.Request) -> web.StreamResponse:
    acc = customer_account(request)
    try:
        query = _filters(request.query)
    except ValueError as e:
        raise web.HTTPBadRequest(text=str(e)) from None
    return await api.history_csv(request, query._replace(account=acc.system_id), None)


# ------------------------------------------------------------------ account

def _account_page(request: web.Request, notify_form: dict | None = None, error: str | None = None,
                  status: int = 200) -> web.Response:
    server, acc = request.app[SERVER], customer_account(request)
    sc = server.cfg["smpp"]
    notify = acc.to_record().get("notify") or {}
    if notify_form is None:
        notify_form = {"email": "\n".join(notify.get("email", ())), "webhook": notify.get("webhook", "")}
    return render(request, "account.html", {
        "title": "Account", "me": _account_summary(server, acc), "acc": acc,
        "coverage": sorted(acc.settings.coverage, key=lambda c: (len(c), c)),
        "allowed_ips": [str(n) for n in acc.settings.allowed_ips],
        "smpp": {"host": request.url.host or "", "port": server.smpp_port or sc["port"],
                 "system_id": acc.system_id, "system_type": acc.settings.system_type, "max_tx": acc.settings.max_tx},
        "sessions": account_sessions(server, acc.system_id),
        "notify": notify, "notify_form": notify_form, "notify_error": error,
        "notice": "Notification settings saved." if request.query.get("saved") == "notify" else "",
        "flash_error": ""}, status)


@customer
async def account(request: web.Request) -> web.Response:
    return _account_page(request)


@customer
async def account_notify(request: web.Request) -> web.Response:
    """The notification settings form: PATCH /api/v1/me's change, with the session's
    account."""
    data = await form(request)
    typed = {"email": data.get("email", ""), "webhook": data.get("webhook", "").strip()}
    emails = [e for e in _SPLIT.split(typed["email"]) if e]
    notify = {k: v for k, v in (("email", emails), ("webhook", typed["webhook"])) if v} or None
    answer = await me.change_me(request, customer_account(request), {"notify": notify})
    if answer.status != 200:
        return _account_page(request, typed, api_error(answer), answer.status)
    raise web.HTTPSeeOther("/console/account?saved=notify")


def routes(r: web.UrlDispatcher) -> None:
    r.add_get("/console/", dashboard)
    r.add_get("/console/lookup", lookup_form)
    r.add_post("/console/lookup", lookup_post)
    r.add_get("/console/lookup/{batch}", batch)
    r.add_get("/console/lookup/{batch}/rows", batch_rows)
    r.add_get("/console/history", history)
    r.add_get("/console/history.csv", history_csv)
    r.add_get("/console/account", account)
    r.add_post("/console/account/notify", account_notify)
