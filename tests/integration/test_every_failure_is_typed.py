"""Every exception a verb can raise is a ``GophermartError`` (SPEC "Embedding": every
failure is a GophermartError): each verb of the face, walked with odd arguments in each
position, on a closed instance, and with its database stopped."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dependency_injector import providers

from gophermart import AccrualVerdict, Gophermart, GophermartError, NotOpen
from gophermart.bootstrap import build
from gophermart.facade import Call, Delegate, Face, Stream
from gophermart.settings import Settings
from gophermart.testing import TEST_SECRET, PlainPasswordHasher
from tests.pg_proxy import PgProxy

VERBS = {name: verb for name, verb in vars(Face).items() if isinstance(verb, Delegate)}
#: Verbs that leave the database for good or belong to the operator's lifecycle.
NOT_WALKED = {"migrate"}
#: A value of the right shape for each parameter name (the user and order exist).
GOOD: dict[str, Any] = {
    "login": "walker",
    "password": "pw",
    "client": "",
    "device": None,
    "number": "9278923470",
    "order": "2377225624",
    "accrual": "1",
    "verdict": AccrualVerdict.PROCESSED,
    "overdue_after": 30.0,
    "ttl": 900,
    "hold_id": 1,
    "reason": "goodwill",
    "operator": None,
    "amount": "1",
    "limit": 10,
    "before": None,
    "after": 0,
    "idle": 0.0,
    "connection": None,
    "name": "walker-operator",
    "key": "gmo_" + "A" * 43,  # well-formed: the store is asked
    "url": "https://shop.example/hooks",
    "events": ["*"],
    "endpoint_id": 1,
    "event_id": 1,
}
ODD: tuple[Any, ...] = (
    None,
    "",
    "\x00",
    "１２３",  # full-width digits
    "9" * 5000,
    -1,
    0,
    2**70,
    1.5,
    float("nan"),
    True,
    b"12345678903",
    [],
    object(),
)


def _parameters(verb: Delegate) -> list[inspect.Parameter]:
    return list(inspect.signature(verb.method).parameters.values())[1:]  # not self


def _good(loyalty: Gophermart, user_id: int, token: str, name: str) -> Any:
    if name == "user_id":
        return user_id
    if name == "token":
        return token
    return GOOD[name]


async def _call(loyalty: Gophermart, name: str, args: dict[str, Any]) -> Any:
    result = getattr(loyalty, name)(**args)
    if isinstance(VERBS[name], Call):
        return result
    if isinstance(VERBS[name], Stream):  # its first step (idle=0: none waits)
        return await anext(result, None)
    return await result


def _calls(user_id: int, token: str) -> list[tuple[str, dict[str, Any]]]:
    """Each verb with good arguments, then with each odd value in each position."""
    found = []
    for name, verb in VERBS.items():
        if name in NOT_WALKED:
            continue
        params = _parameters(verb)
        good = {p.name: _good_value(p.name, user_id, token) for p in params}
        found.append((name, good))
        for p in params:
            for odd in ODD:
                found.append((name, {**good, p.name: odd}))
    return found


def _good_value(name: str, user_id: int, token: str) -> Any:
    return {"user_id": user_id, "token": token}.get(name, GOOD.get(name))


@pytest.fixture
async def walker(database_uri: str) -> AsyncIterator[tuple[Gophermart, int, str]]:
    """Every real part but the password hasher (hundreds of hashes, and its inputs are
    checked before it is reached)."""
    container = build(Settings.for_database(database_uri, secret=TEST_SECRET))
    container.hasher.override(providers.Object(PlainPasswordHasher()))
    async with Gophermart(container) as loyalty:
        first = await loyalty.register("first", "pw")
        await loyalty.upload_order(first.user_id, "9278923470")
        yield loyalty, first.user_id, first.token


async def test_odd_arguments_in_every_position_are_typed_errors(
    walker: tuple[Gophermart, int, str],
) -> None:
    loyalty, user_id, token = walker
    untyped = []
    for name, args in _calls(user_id, token):
        try:
            await _call(loyalty, name, args)
        except GophermartError:
            pass
        except Exception as exc:  # the finding: anything else escaped
            untyped.append(f"{name}({_shown(args)}): {type(exc).__name__}: {exc}"[:300])
    assert not untyped, "\n".join(untyped)


def _shown(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r:.30}" for k, v in args.items())


async def test_every_verb_of_a_closed_instance_raises_not_open(database_uri: str) -> None:
    loyalty = Gophermart.open(database_uri, secret=TEST_SECRET)
    async with loyalty:
        alice = await loyalty.register("alice", "pw")
    for name in VERBS:
        args = {
            p.name: _good_value(p.name, alice.user_id, alice.token)
            for p in _parameters(VERBS[name])
        }
        with pytest.raises(NotOpen):
            await _call(loyalty, name, args)


async def test_every_verb_with_its_database_stopped_raises_a_typed_error(
    postgres_uri: str,
) -> None:
    with PgProxy() as proxy:
        uri = proxy.uri_for(postgres_uri)
        async with Gophermart.open(uri, secret=TEST_SECRET, db_timeout=1.0) as loyalty:
            alice = await loyalty.register("alice", "pw")
            proxy.stop()
            outcomes: dict[str, str] = {}
            for name in VERBS:
                args = {
                    p.name: _good_value(p.name, alice.user_id, alice.token)
                    for p in _parameters(VERBS[name])
                }
                try:
                    await _call(loyalty, name, args)
                    outcomes[name] = "answered"
                except GophermartError as exc:
                    outcomes[name] = type(exc).__name__
                except Exception as exc:
                    outcomes[name] = f"UNTYPED {type(exc).__name__}: {exc}"
    untyped = {n: o for n, o in outcomes.items() if o.startswith("UNTYPED")}
    assert not untyped, untyped
    # Those that need the database say so; a token is checked without it.
    needs_db = set(VERBS) - {"authenticate", "issue_token", "readiness"}
    assert {n: outcomes[n] for n in needs_db} == dict.fromkeys(needs_db, "StoreUnavailable")
