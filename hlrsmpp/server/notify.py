"""Account notifications: low credit, 80 % and 100 % of a period limit, expiry in 7 days,
a contact-list cleaning finished (with its report); by e-mail (the server's ``smtp:``,
aiosmtplib) and/or a signed webhook (the lookup callbacks' signing and address rules),
to each account's ``notify: {email: [...], webhook: URL}``.

Nothing of it runs on the lookup path. A crossing seen there (the book's low-credit hook)
or by a check every ``CHECK`` seconds (limits, expiry) is only noted in memory; a
background task writes it to the store's outbox, where each event has a key that makes
it once per crossing (a second insert of the key is ignored), then sends what is due,
retrying a failed channel with a doubling backoff (``notify.retry_min`` to
``notify.retry_max``) for as long as it takes: an SMTP server down loses nothing, its
mail goes out once it is back. Kept in the outbox, a notification survives kill -9.

Once per crossing: the low-credit event's key counts the credit the account was given
(ledger entries that added credit), so it comes again only after a top-up; a limit's key
names its window (that day, week or month) and its step (80 or 100); expiry's names the
date; a cleaning's, the job; an auto-recharge's, its month and its number in that month
(``auto_recharge:2026-12:2``). An auto-recharge is durable before it is noted (its ledger
entry commits with the charge that crossed; on Redis the commit script writes the
notification itself), and the task notes again, at start, the month's auto-recharges the
ledger holds: a kill -9 between the two loses none (the key makes it once).
"""
from __future__ import annotations

import asyncio
import email.message
import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any

import structlog
from aiohttp import ClientSession, ClientTimeout
from yarl import URL

from .. import metrics
from ..accounts import from_micro
from ..config import ConfigError

log = structlog.get_logger("hlrsmpp.notify")

#: Seconds between the checks of limits and expiry (and the outbox's wake-up when idle).
CHECK = 5.0
#: Days before `expires` that the expiry notice goes out.
EXPIRY_NOTICE_DAYS = 7
#: Steps of a period limit that are notified (per cent).
LIMIT_STEPS = (80, 100)

SUBJECTS = {
    "low_credit": "credit below {threshold}: {credit} left",
    "limit": "{percent} % of the {period} limit ({used} of {limit} lookups)",
    "expiry": "account expires on {expires}",
    "auto_recharge": "credit recharged by {amount} ({count} of {max_per_month} in {month})",
    "cleaning_done": "contact-list cleaning {job} {status}",
}


class Notifier:
    """The background task that fills and empties the outbox (``server.store.outbox``)."""

    def __init__(self, server, hooks):
        self.server = server
        self.hooks = hooks           # the lookup callbacks' Webhooks: signing, SSRF rules
        cfg = server.cfg
        self.smtp = dict(cfg.get("smtp") or {})
        if self.smtp.get("tls", "none") not in ("none", "starttls", "ssl"):
            raise ConfigError(f"smtp.tls: expected none, starttls or ssl, got {self.smtp.get('tls')!r}")
        nc = cfg.get("notify") or {}
        self.retry_min = float(nc.get("retry_min", 5.0))
        self.retry_max = float(nc.get("retry_max", 600.0))
        self._noted: list[tuple[str, str, str, dict]] = []
        self._seen: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._session: ClientSession | None = None

    # ------------------------------------------------------------ noting (on the loop)
    def note(self, system_id: str, kind: str, key: str, data: dict) -> None:
        """An event happened: written and sent by the task, never here. A key already
        noted by this process is not written again (the checks see a reached limit at
        every round); the outbox's unique key is what holds across processes and restarts."""
        if kind != "low_credit":   # its key is completed by the store (the credit given)
            if (system_id, key) in self._seen:
                return
            if len(self._seen) > 100_000:
                self._seen.clear()
            self._seen.add((system_id, key))
        self._noted.append((system_id, kind, key, data))
        self._wake.set()

    def low_credit(self, acc) -> None:
        """The book's hook: ``acc``'s credit just fell below its low_credit."""
        self.note(acc.system_id, "low_credit", "low_credit", {
            "credit": from_micro(acc.credit or 0), "threshold": from_micro(acc.settings.low_credit)})

    def auto_recharged(self, acc, month: str, n: int, amount: int) -> None:
        """``acc``'s ``n``-th auto-recharge of ``month``, of ``amount`` micro-credits, is durable."""
        ar = acc.settings.auto_recharge
        if ar is not None:
            self.note(acc.system_id, "auto_recharge", *recharge_event(ar, month, n, amount))

    def wake(self) -> None:
        """Something was written to the outbox (a shared store's commit): send it now."""
        self._wake.set()

    def _noted_recharges(self) -> None:
        """This month's and last month's auto-recharges as the ledger holds them, noted again
        (on a worker thread, at start): one made just before a kill -9 is not left unsent."""
        book, store = self.server.book, self.server.store
        now = time.time()
        months = (book.month(book.calendar.day(now).month_start - 1), book.month(now))
        for acc in book:
            if acc.settings.auto_recharge is not None:
                for month in months:
                    for n, amount in ledger_recharges(store, book, acc.system_id, month):
                        self.auto_recharged(acc, month, n, amount)

    def cleaning_done(self, owner: str | None, job_id: str, status: str, report: dict | None) -> None:
        if owner is not None:
            self.note(owner, "cleaning_done", f"cleaning:{job_id}",
                      {"job": job_id, "status": status, "report": report})

    def check(self, now: float) -> None:
        """Limits reached (80 % and 100 %) and expiry within EXPIRY_NOTICE_DAYS."""
        book = self.server.book
        today = book.calendar.date(now)
        keys = book.calendar.keys(now)
        for acc in book:
            st = acc.settings
            if st.notify is None:
                continue
            c = book.counters(acc, now)
            for period, window in zip(("day", "week", "month"), keys):
                cap = getattr(st.limits, f"per_{period}")
                if not cap:
                    continue
                for step in LIMIT_STEPS:
                    if c[period] * 100 >= cap * step:
                        self.note(acc.system_id, "limit", f"limit:{window}:{step}", {
                            "period": period, "percent": step, "used": c[period], "limit": cap})
            if st.expires is not None and st.expires - today <= timedelta(days=EXPIRY_NOTICE_DAYS) \
                    and st.expires >= today:
                self.note(acc.system_id, "expiry", f"expiry:{st.expires.isoformat()}",
                          {"expires": st.expires.isoformat()})

    # ------------------------------------------------------------ the task
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        outbox = self.server.store.outbox
        due: list = []
        try:
            await loop.run_in_executor(None, self._noted_recharges)
        except Exception:   # the store: the next start tries again
            log.exception("notify_recharges_failed")
        while True:
            try:
                self.check(time.time())
                noted, self._noted = self._noted, []
                if noted:
                    channels = {sid: self._channels(sid) for sid, *_ in noted}
                    added = await loop.run_in_executor(None, outbox.add, [
                        (sid, kind, key, json.dumps(data), channels[sid]) for sid, kind, key, data in noted])
                    for kind in added:
                        metrics.STATS.notifications[kind, "noted"] += 1
                due = await loop.run_in_executor(None, outbox.due, time.time())
                for row in due:
                    await self._send(row)
            except asyncio.CancelledError:
                raise
            except Exception:   # the store or a bug: logged, tried again at the next round
                log.exception("notify_round_failed")
            self._wake.clear()
            try:   # a failed channel is due again after retry_min at the soonest
                await asyncio.wait_for(self._wake.wait(), min(CHECK, self.retry_min) if due else CHECK)
            except TimeoutError:
                pass

    def _channels(self, system_id: str) -> list[str]:
        acc = self.server.book.get(system_id)
        return acc.settings.notify_channels() if acc is not None else []

    async def _send(self, row: dict) -> None:
        acc = self.server.book.get(row["system_id"])
        n = (acc.settings.notify if acc is not None else None) or {}
        results: dict[str, str | None] = {}
        for channel in row["pending"]:
            try:
                if channel == "email":
                    await self._email(n.get("email") or (), row)
                else:
                    await self._webhook(n.get("webhook"), row)
                results[channel] = None
                metrics.STATS.notifications[row["kind"], f"{channel}_sent"] += 1
            except asyncio.CancelledError:
                raise
            except Exception as e:   # refused, unreachable, timed out: tried again later
                results[channel] = repr(e)[:300]
                metrics.STATS.notifications[row["kind"], f"{channel}_failed"] += 1
                log.warning("notify_failed", system_id=row["system_id"], kind=row["kind"],
                            channel=channel, attempt=row["attempts"] + 1, error=results[channel])
        delay = min(self.retry_max, self.retry_min * 2 ** row["attempts"])
        await asyncio.get_running_loop().run_in_executor(
            None, self.server.store.outbox.settle, row["id"], results, time.time() + delay)

    async def _email(self, to, row: dict) -> None:
        import aiosmtplib   # only a server that sends e-mail needs it loaded
        s = self.smtp
        if not to:
            return
        if not s.get("host"):
            raise OSError("no smtp.host configured")
        msg = email.message.EmailMessage()
        msg["From"] = s.get("from") or "hlrsmpp@localhost"
        msg["To"] = ", ".join(to)
        msg["Subject"] = f"[hlrsmpp] {row['system_id']}: {subject(row['kind'], row['data'])}"
        msg["Message-ID"] = f"<hlrsmpp-{row['id']}-{row['system_id']}@{s['host']}>"
        msg.set_content(json.dumps(payload(row), indent=2) + "\n")
        tls = s.get("tls") or "none"
        await aiosmtplib.send(msg, hostname=s["host"], port=int(s.get("port") or 25),
                              use_tls=tls == "ssl", start_tls=tls == "starttls",
                              username=s.get("username") or None, password=s.get("password") or None,
                              timeout=float(s.get("timeout") or 10.0))

    async def _webhook(self, url: str | None, row: dict) -> None:
        if not url:
            return
        body = json.dumps(payload(row), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Hlrsmpp-Event": row["kind"]}
        if self.hooks.secret:
            stamp = str(int(time.time()))
            mac = hmac.new(self.hooks.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            headers |= {"X-Hlrsmpp-Timestamp": stamp, "X-Hlrsmpp-Signature": f"sha256={mac}"}
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=self.hooks.timeout),
                                          headers={"User-Agent": "hlrsmpp-webhook"})
        target, host_header, server_name = await self.hooks._target(URL(url))
        async with self._session.post(target, data=body, headers=headers | host_header,
                                      server_hostname=server_name, allow_redirects=False) as resp:
            await resp.read()
            if not 200 <= resp.status < 300:
                raise OSError(f"webhook answered {resp.status}")


def recharge_event(ar, month: str, n: int, amount: int) -> tuple[str, dict]:
    """The key and data of the ``n``-th auto-recharge of ``month`` (YYYY-MM), of ``amount``
    micro-credits, for auto_recharge settings ``ar`` (the Redis commit script writes the same)."""
    return f"auto_recharge:{month}:{n}", {"amount": from_micro(amount), "below": from_micro(ar.below),
                                           "count": n, "max_per_month": ar.max_per_month, "month": month}


def ledger_recharges(store, book, system_id: str, month: str) -> list[tuple[int, int]]:
    """(number in the month, amount) of each auto-recharge of ``month`` in the account's ledger."""
    amounts = [r["amount"] for r in store.ledger(system_id)
               if r["kind"] == "auto_recharge" and book.month(r["at"]) == month]
    return list(enumerate(amounts, start=1))


def subject(kind: str, data: dict) -> str:
    try:
        return SUBJECTS[kind].format(**data)
    except (KeyError, IndexError):
        return kind


def payload(row: dict) -> dict[str, Any]:
    """What a notification says, by e-mail (as text) and webhook (as JSON)."""
    return {"event": row["kind"], "account": row["system_id"], "at": row["at"], "id": str(row["id"]),
            "subject": subject(row["kind"], row["data"]), "data": row["data"]}
