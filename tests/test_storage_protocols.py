"""The deployment seam: each implementation has every member its protocol declares, in the
same shape (a coroutine where the protocol has one, a plain method where it has not), so the
server never needs to ask which one it got."""
from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest

from hlrsmpp.accounts import Account
from hlrsmpp.accounts.store import Store as SQLiteStore
from hlrsmpp.redis import Cluster, RedisStore
from hlrsmpp.redis.cluster import RedisRegistry
from hlrsmpp.server.standalone import Standalone
from hlrsmpp.smpp.session import BindMode
from hlrsmpp.smpp.status import Status
from hlrsmpp.storage import protocols
from hlrsmpp.storage.local import LocalRegistry

from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)


def _methods(proto: type) -> dict[str, bool]:
    """The protocol's methods, each with whether it is a coroutine function."""
    return {name: inspect.iscoroutinefunction(fn) for name, fn in vars(proto).items()
            if inspect.isfunction(fn) and not name.startswith("_")}


def _attributes(proto: type) -> set[str]:
    """Its attributes: annotated, or read-only (a property)."""
    return set(getattr(proto, "__annotations__", {})) | {
        name for name, member in vars(proto).items() if isinstance(member, property)}


def _conforms(proto: type, impl: type, instance: object | None = None) -> list[str]:
    """What ``impl`` (and, for attributes set at construction, ``instance``) lacks or has
    in another shape than ``proto`` declares."""
    wrong = []
    for name, is_coroutine in _methods(proto).items():
        fn = getattr(impl, name, None)
        if fn is None or not callable(fn):
            wrong.append(f"{name}: missing")
        elif inspect.iscoroutinefunction(fn) != is_coroutine:
            wrong.append(f"{name}: {'not ' if is_coroutine else ''}a coroutine function")
    if instance is not None:
        wrong += [f"{name}: missing" for name in _attributes(proto) if not hasattr(instance, name)]
    return wrong


def test_the_sqlite_store_is_a_store(tmp_path):
    store = SQLiteStore(tmp_path)
    try:
        assert _conforms(protocols.Store, SQLiteStore, store) == []
        assert _conforms(protocols.NotificationOutbox, type(store.outbox)) == []
        # Alone with its text messages; its history filtered in SQL.
        assert store.messages is None and callable(store.history_scan)
    finally:
        store.close()


def test_the_redis_store_is_a_store(redis_url):  # noqa: F811
    store = RedisStore({"url": redis_url})
    try:
        assert _conforms(protocols.Store, RedisStore, store) == []
        assert store.committer is None and store.period_counts((0.0, 0.0, 0.0)) == {}
        assert _conforms(protocols.NotificationOutbox, type(store.outbox)) == []
        assert store.messages is not None and _conforms(protocols.SharedMessages, type(store.messages)) == []
        # The history's reader filters its pages; with no committer, no steps to give.
        assert store.history_scan is None
        with pytest.raises(TypeError):
            store.steps([], [], [])
    finally:
        store.close()


def test_both_registries_are_session_registries():
    assert _conforms(protocols.SessionRegistry, LocalRegistry, LocalRegistry()) == []
    assert _conforms(protocols.SessionRegistry, RedisRegistry) == []


def test_both_deployments_are_deployments():
    standalone = Standalone(SimpleNamespace(cfg={"node_id": 7}), None)
    assert _conforms(protocols.Deployment, Standalone, standalone) == []
    assert standalone.node == 7 and isinstance(standalone.registry, LocalRegistry)
    assert _conforms(protocols.Deployment, Cluster) == []


async def test_a_local_claim_is_decided_at_once():
    """Already done when it returns: a submit_sm pipelined behind the bind finds the
    session bound in the same read."""
    registry = LocalRegistry()
    account = Account.from_config({"system_id": "a", "password": "pw", "max_tx": 1})
    rx, tx, tx2 = object(), object(), object()
    answers = [registry.claim(account, BindMode.RX, rx), registry.claim(account, BindMode.TRX, tx),
               registry.claim(account, BindMode.TX, tx), registry.claim(account, BindMode.TX, tx2)]
    assert all(answer.done() for answer in answers)
    assert [answer.result() for answer in answers] == [Status.ROK, Status.RBINDFAIL, Status.ROK,
                                                       Status.RBINDFAIL]
    registry.release("a", tx)
    assert registry.claim(account, BindMode.TX, tx2).result() == Status.ROK


@pytest.mark.parametrize("proto", [protocols.Store, protocols.SessionRegistry, protocols.Deployment,
                                   protocols.NotificationOutbox, protocols.SharedMessages])
def test_a_protocol_declares_something(proto):
    """The conformance tests above would pass on an empty protocol."""
    assert _methods(proto) and (_attributes(proto) or proto in (protocols.NotificationOutbox,
                                                                protocols.SharedMessages))
