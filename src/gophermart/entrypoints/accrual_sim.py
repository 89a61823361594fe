"""A stand-in for the external accrual system, for development, demos and tests.

The real accrual system is somebody else's service: we cannot make it slow, throttle us,
fail on demand or tell us how often we called it. This simulator implements its public API
(SPEC.md, "The accrual system") in memory so the gophermart poller can be exercised
against every behaviour the contract allows, on a laptop and in CI.

Shop API: ``POST /api/goods`` registers a reward mechanic, ``POST /api/orders`` an order.
Polled API: ``GET /api/orders/{number}``. Test hooks live under ``/__sim/`` (see
:func:`create_sim_app`).

Rules the SPEC leaves open, decided here:

* An order registered with an **empty goods list is INVALID** (there is nothing to reward, so
  the shop sent something broken). An order whose goods match no mechanic is PROCESSED
  without an ``accrual`` field, as is one whose accrual sums to zero.
* Each good earns the reward of the *first registered* mechanic whose ``match`` occurs
  (case-sensitively) in its description. The accrual is fixed when the order is registered;
  mechanics registered later do not change it.
* Amounts are exact ``Decimal`` end to end and are never rounded (the service rounds).
  They must be JSON numbers (numeric strings are refused), at most 1e15 and with at most 20
  decimal places, so that exact arithmetic always fits. ``%`` rewards lie in (0, 100],
  ``pt`` rewards are positive, prices are non-negative; ``match`` must not be empty.
* Order numbers are ASCII digits passing the Luhn check. Polling any unknown number,
  malformed or not, answers 204.
* The rate limit counts the GETs it let through in a rolling 60-second window; refused
  (429) GETs do not extend the pause. Injected failures (``/__sim/fail``) are applied after
  the limiter and do count towards it. ``/__sim/reset-stats`` clears the statistics only,
  never the limiter's window.
"""

import argparse
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, localcontext
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
import uvicorn
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Example, Tag

from gophermart.entrypoints.schema_site import (
    SCHEMA_PATH,
    documented_body,
    render_plugins,
    struct_schema,
)
from gophermart.entrypoints.serving import clean_exit_on_stop_signals

Clock = Callable[[], float]
Status = Literal["REGISTERED", "PROCESSING", "INVALID", "PROCESSED"]
FinalStatus = Literal["PROCESSED", "INVALID"]
_T = TypeVar("_T")
_Req = Request[Any, Any, Any]

_WINDOW_SECONDS: Final = 60.0
_MAX_AMOUNT: Final = Decimal(10) ** 15
_MAX_PLACES: Final = 20
# Bounded inputs (see _amount) need well under 100 digits; trapping Inexact turns any
# silent rounding into a loud 500 instead of a wrong number.
_EXACT: Final = Context(prec=100, traps=[Inexact, InvalidOperation, Overflow])
_DIGITS: Final = re.compile(r"[0-9]+")
_JSON: Final = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True)
class SimSettings:
    """How the simulator behaves; every default gives an instant, unlimited, seeded system."""

    calc_delay: float = 0.0
    rate_limit: int | None = None
    retry_after: int = 60
    seed_goods: bool = True

    def __post_init__(self) -> None:
        # Fail at construction, not on the first poll, when a test passes nonsense.
        if not (math.isfinite(self.calc_delay) and self.calc_delay >= 0):
            raise ValueError(f"calc_delay must be finite and >= 0, got {self.calc_delay}")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ValueError(f"rate_limit must be None or >= 1, got {self.rate_limit}")
        if self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {self.retry_after}")


# ``Meta`` here only documents (the OpenAPI schema at /schema); msgspec enforces none of it.
_NUMBER: Final = msgspec.Meta(extra_json_schema={"type": "number", "minimum": 0})


class _GoodsIn(msgspec.Struct):
    match: Annotated[str, msgspec.Meta(description="text looked for in a good's description")]
    # Raw so that "10" (a string) can be told apart from 10 (a number)
    reward: Annotated[msgspec.Raw, _NUMBER]
    reward_type: Literal["%", "pt"]


class _ItemIn(msgspec.Struct):
    description: str
    price: Annotated[msgspec.Raw, _NUMBER]


class _OrderIn(msgspec.Struct):
    order: Annotated[str, msgspec.Meta(description="digits passing the Luhn check")]
    goods: list[_ItemIn]


class _FixedOrderIn(msgspec.Struct):
    order: str
    status: FinalStatus
    accrual: Annotated[msgspec.Raw, _NUMBER] = msgspec.Raw(b"null")


class _FailIn(msgspec.Struct):
    order: str
    times: int
    status: int


class _OrderOut(msgspec.Struct, omit_defaults=True):
    order: str
    status: Status
    accrual: Annotated[
        Decimal | None,
        msgspec.Meta(extra_json_schema={"extra": {"type": "number", "one_of": None}}),
    ] = None


class _StatsOut(msgspec.Struct):
    requests: int
    throttled: int
    request_times: list[float]


def _text(description: str, example: str | None = None) -> ResponseSpec:
    return ResponseSpec(
        data_container=str,
        media_type=MediaType.TEXT,
        description=description,
        generate_examples=False,
        examples=[Example(value=example)] if example else None,
    )


def _none(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=None, description=description)


_BAD = {400: _text("Malformed body or invalid values", "malformed body: ...")}
_DOCS: Final[dict[str, dict[str, Any]]] = {
    "register_goods": {
        "summary": "Register a reward mechanic",
        "tags": ["registration"],
        "media_type": MediaType.TEXT,
        "operation_class": documented_body(
            MediaType.JSON,
            struct_schema(_GoodsIn),
            {"bork": {"match": "Bork", "reward": 10, "reward_type": "%"}},
            "`%` of the price (0 < reward <= 100) or `pt` fixed points",
        ),
        "response_description": "Registered",
        "responses": {**_BAD, 409: _text("A mechanic with this match exists")},
    },
    "register_order": {
        "summary": "Register an order and its goods",
        "tags": ["registration"],
        "media_type": MediaType.TEXT,
        "operation_class": documented_body(
            MediaType.JSON,
            struct_schema(_OrderIn),
            {
                "order": {
                    "order": "9278923470",
                    "goods": [{"description": "Bork phone", "price": 7297.75}],
                }
            },
            "The order's accrual is the sum of its goods' rewards",
        ),
        "response_description": "Accepted",
        "responses": {**_BAD, 409: _text("The order is registered already")},
    },
    "poll_order": {
        "summary": "What an order earns",
        "tags": ["polled"],
        "response_description": "The order's status and accrual",
        "responses": {
            200: ResponseSpec(
                data_container=_OrderOut,
                description="Known: REGISTERED, PROCESSING, INVALID or PROCESSED; `accrual` only "
                "when points were awarded",
                generate_examples=False,
                examples=[
                    Example(value={"order": "9278923470", "status": "PROCESSED", "accrual": 500})
                ],
            ),
            204: _none("Not registered (yet)"),
            429: _text(
                "Too many requests: pause for `Retry-After` seconds, then keep to N a minute",
                "No more than 600 requests per minute allowed",
            ),
            500: _text("Internal error (or an injected failure): retry later"),
        },
    },
    "stats": {
        "summary": "How often the polled API was called",
        "tags": ["test hooks"],
        "responses": {200: ResponseSpec(data_container=_StatsOut, description="Statistics")},
    },
    "fail": {
        "summary": "Make the next polls of an order fail",
        "tags": ["test hooks"],
        "media_type": MediaType.TEXT,
        "operation_class": documented_body(
            MediaType.JSON,
            struct_schema(_FailIn),
            {"fail": {"order": "9278923470", "times": 2, "status": 500}},
            "The next `times` polls of `order` answer `status` (204 or 400..599)",
        ),
        "response_description": "Armed",
        "responses": _BAD,
    },
    "reset_stats": {"summary": "Clear the statistics", "tags": ["test hooks"]},
    "register_fixed_order": {
        "summary": "Register an order with a fixed outcome",
        "tags": ["test hooks"],
        "media_type": MediaType.TEXT,
        "operation_class": documented_body(
            MediaType.JSON,
            {  # by hand: msgspec cannot render the Raw default
                "type": "object",
                "properties": {
                    "order": {"type": "string"},
                    "status": {"enum": ["PROCESSED", "INVALID"]},
                    "accrual": {"type": ["number", "null"], "minimum": 0},
                },
                "required": ["order", "status"],
            },
            {"fixed": {"order": "9278923470", "status": "PROCESSED", "accrual": 729.975}},
            "`calc_delay` still applies",
        ),
        "response_description": "Accepted",
        "responses": {**_BAD, 409: _text("The order is registered already")},
    },
}


@dataclass(frozen=True)
class _Mechanic:
    match: str
    reward: Decimal
    reward_type: Literal["%", "pt"]


# Pre-registered so the README demo works with a bare POST /api/orders.
_SEED_GOODS: Final = (_Mechanic("Bork", Decimal(10), "%"), _Mechanic("Gopher", Decimal(15), "pt"))


@dataclass(frozen=True)
class _Order:
    registered_at: float
    status: FinalStatus
    accrual: Decimal | None


@dataclass
class _Failure:
    remaining: int
    status: int


class _HttpError(Exception):
    """Refusal of a request; turned into a text/plain response by :func:`_error_response`."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def _error_response(_: _Req, exc: Exception) -> Response[str]:
    code = exc.status_code if isinstance(exc, _HttpError) else 500
    return Response(str(exc), status_code=code, media_type=MediaType.TEXT)


def _empty(status_code: int) -> Response[bytes]:
    """Acknowledge with an empty body (returning None would make Litestar send ``null``)."""
    return Response(b"", status_code=status_code, media_type=MediaType.TEXT)


def _luhn_ok(number: str) -> bool:
    """Luhn checksum: double every second digit from the right, the sum must end in 0."""
    total = 0
    for i, char in enumerate(reversed(number)):
        digit = int(char)
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _order_number(text: str) -> str:
    if not (_DIGITS.fullmatch(text) and _luhn_ok(text)):
        raise _HttpError(400, f"order number {text!r} is not digits passing the Luhn check")
    return text


def _decode(body: bytes, kind: type[_T]) -> _T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise _HttpError(400, f"malformed body: {exc}") from exc


def _amount(raw: msgspec.Raw, what: str) -> Decimal:
    """Decode a JSON number exactly; strings, booleans and huge or ultra-fine values are 400."""
    text = bytes(raw)
    if not text[:1].isdigit() and text[:1] != b"-":
        raise _HttpError(400, f"{what} must be a JSON number")
    try:
        value = msgspec.json.decode(text, type=Decimal)
    except msgspec.DecodeError:
        raise _HttpError(400, f"{what} must be a JSON number") from None
    exponent = value.as_tuple().exponent
    if not (isinstance(exponent, int) and -exponent <= _MAX_PLACES and value <= _MAX_AMOUNT):
        raise _HttpError(400, f"{what} must be at most 1e15 with at most 20 decimal places")
    if value < 0:
        raise _HttpError(400, f"{what} must not be negative")
    return value


class _Simulator:
    """All the simulator's state and rules; single event loop, so no locks are needed."""

    def __init__(self, settings: SimSettings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._mechanics: dict[str, _Mechanic] = {}  # insertion order = registration order
        self._orders: dict[str, _Order] = {}
        self._failures: dict[str, _Failure] = {}
        self._window: deque[float] = deque()
        self._request_times: list[float] = []
        self._throttled = 0
        if settings.seed_goods:
            for seed in _SEED_GOODS:
                self._mechanics[seed.match] = seed

    def add_mechanic(self, body: _GoodsIn) -> None:
        reward = _amount(body.reward, "reward")
        if not body.match:
            raise _HttpError(400, "match must not be empty")
        if reward == 0 or (body.reward_type == "%" and reward > 100):
            raise _HttpError(400, "reward must be > 0, and at most 100 for '%'")
        if body.match in self._mechanics:
            raise _HttpError(409, f"mechanic {body.match!r} is already registered")
        self._mechanics[body.match] = _Mechanic(body.match, reward, body.reward_type)

    def add_order(self, body: _OrderIn) -> None:
        number = _order_number(body.order)
        items = [(item.description, _amount(item.price, "price")) for item in body.goods]
        if not items:
            self._register(number, "INVALID", None)
            return
        total = Decimal(0)
        with localcontext(_EXACT):
            for description, price in items:
                mechanic = next(
                    (m for m in self._mechanics.values() if m.match in description), None
                )
                if mechanic is not None:
                    total += (
                        price * mechanic.reward / 100
                        if mechanic.reward_type == "%"
                        else mechanic.reward
                    )
        self._register(number, "PROCESSED", total)

    def add_fixed_order(self, body: _FixedOrderIn) -> None:
        number = _order_number(body.order)
        accrual = None if bytes(body.accrual) == b"null" else _amount(body.accrual, "accrual")
        if body.status == "INVALID" and accrual:
            raise _HttpError(400, "an INVALID order carries no accrual")
        self._register(number, body.status, accrual)

    def _register(self, number: str, status: FinalStatus, accrual: Decimal | None) -> None:
        if number in self._orders:
            raise _HttpError(409, f"order {number} is already registered")
        accrual = accrual if accrual is not None and accrual > 0 else None
        self._orders[number] = _Order(self._clock(), status, accrual)

    def inject_failure(self, body: _FailIn) -> None:
        if body.times < 1 or not (body.status == 204 or 400 <= body.status <= 599):
            raise _HttpError(400, "times must be >= 1 and status 204 or 400..599")
        self._failures[body.order] = _Failure(body.times, body.status)

    def poll(self, number: str) -> Response[bytes]:
        """Answer one GET /api/orders/{number}: limiter, then injected failure, then truth."""
        now = self._clock()
        self._request_times.append(now)
        limit = self._settings.rate_limit
        if limit is not None:
            while self._window and now - self._window[0] >= _WINDOW_SECONDS:
                self._window.popleft()
            if len(self._window) >= limit:
                return self._too_many(f"No more than {limit} requests per minute allowed")
            self._window.append(now)
        failure = self._failures.get(number)
        if failure is not None:
            failure.remaining -= 1
            if failure.remaining == 0:
                del self._failures[number]
            if failure.status == 429:
                return self._too_many("injected failure")
            content = b"" if failure.status == 204 else b"injected failure"
            return Response(content, status_code=failure.status, media_type=MediaType.TEXT)
        order = self._orders.get(number)
        if order is None:
            return _empty(204)
        elapsed, delay = now - order.registered_at, self._settings.calc_delay
        out = _OrderOut(number, order.status, order.accrual)
        if elapsed < delay:
            out = _OrderOut(number, "PROCESSING" if elapsed >= delay / 2 else "REGISTERED")
        return Response(_JSON.encode(out), media_type=MediaType.JSON)

    def _too_many(self, text: str) -> Response[bytes]:
        self._throttled += 1
        headers = {"Retry-After": str(self._settings.retry_after)}
        return Response(text.encode(), status_code=429, media_type=MediaType.TEXT, headers=headers)

    def stats(self) -> _StatsOut:
        return _StatsOut(len(self._request_times), self._throttled, list(self._request_times))

    def reset_stats(self) -> None:
        self._request_times.clear()
        self._throttled = 0


def create_sim_app(settings: SimSettings, *, clock: Clock = time.monotonic) -> Litestar:
    """Build a fresh simulator app; each call has its own in-memory state.

    ``clock`` (monotonic seconds) is injectable so tests can step through the status
    timeline and the rate-limit window without sleeping.

    Hooks: ``GET /__sim/stats`` → ``{"requests", "throttled", "request_times"}`` counting
    every GET /api/orders/{n} (``throttled`` = those answered 429); ``POST /__sim/fail``
    ``{"order", "times", "status"}`` → 200, the next ``times`` GETs of that order answer
    ``status`` (204 or 400..599); ``POST /__sim/reset-stats`` → 204; ``POST /__sim/orders``
    ``{"order", "status": "PROCESSED"|"INVALID", "accrual": number|null}`` → 202, an order
    with a fixed outcome (``calc_delay`` still applies).
    """
    sim = _Simulator(settings, clock)
    # Handlers take only the Request: typed body/path kwargs changed style across Litestar 2.x
    # minors (bytes -> RawBody, inferred -> FromPath) and either spelling warns on some of them.

    @post("/api/goods", status_code=200, **_DOCS["register_goods"])
    async def register_goods(request: _Req) -> Response[bytes]:
        sim.add_mechanic(_decode(await request.body(), _GoodsIn))
        return _empty(200)

    @post("/api/orders", status_code=202, **_DOCS["register_order"])
    async def register_order(request: _Req) -> Response[bytes]:
        sim.add_order(_decode(await request.body(), _OrderIn))
        return _empty(202)

    @get("/api/orders/{number:str}", **_DOCS["poll_order"])
    async def poll_order(request: _Req) -> Response[bytes]:
        return sim.poll(request.path_params["number"])

    return Litestar(
        route_handlers=[register_goods, register_order, poll_order, *_test_hooks(sim)],
        exception_handlers={_HttpError: _error_response},
        openapi_config=_openapi_config(),
    )


def _test_hooks(sim: _Simulator) -> list[HTTPRouteHandler]:
    """``/__sim/...``: counting requests, injecting failures, fixing outcomes."""

    @get("/__sim/stats", **_DOCS["stats"])
    async def stats() -> Response[bytes]:
        return Response(_JSON.encode(sim.stats()), media_type=MediaType.JSON)

    @post("/__sim/fail", status_code=200, **_DOCS["fail"])
    async def fail(request: _Req) -> Response[bytes]:
        sim.inject_failure(_decode(await request.body(), _FailIn))
        return _empty(200)

    @post("/__sim/reset-stats", status_code=204, **_DOCS["reset_stats"])
    async def reset_stats() -> None:
        sim.reset_stats()

    @post("/__sim/orders", status_code=202, **_DOCS["register_fixed_order"])
    async def register_fixed_order(request: _Req) -> Response[bytes]:
        sim.add_fixed_order(_decode(await request.body(), _FixedOrderIn))
        return _empty(202)

    return [stats, fail, reset_stats, register_fixed_order]


def _openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Accrual system (simulator)",
        version="1",
        description="A stand-in for the external accrual system (SPEC.md, 'The accrual "
        "system'): the polled API, the shops' registration API, and test hooks.",
        path=SCHEMA_PATH,
        render_plugins=render_plugins(),
        tags=[
            Tag(name="polled", description="What gophermart polls"),
            Tag(name="registration", description="What shops call"),
            Tag(name="test hooks", description="Simulator controls for tests"),
        ],
    )


def _parse_address(text: str) -> tuple[str, int]:
    """Accept ``host:port``, ``:port`` (all interfaces, as in Go) and ``http://host:port``."""
    rest = text.removeprefix("http://").rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected host:port, :port or http://host:port: {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - ":port" means every interface


def _non_negative(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and value >= 0):
            raise argparse.ArgumentTypeError(f"must be finite and >= 0: {text!r}")
        return value

    return parse


#: A flag: (flags, parser, metavar, environment variables, default, help).
_Option = tuple[tuple[str, ...], Callable[[str], Any], str, tuple[str, ...], str, str]

#: The simulator's flags. Of several variables the first one set wins. The address also
#: reads RUN_ADDRESS because that is all a client of the reference accrual binary sets
#: (it starts the binary with only that): the simulator is then a drop-in for it.
#: ACCRUAL_RUN_ADDRESS, more specific, keeps the two apart when one shell runs both.
_OPTIONS: tuple[_Option, ...] = (
    (
        ("-a", "--address"), _parse_address, "HOST:PORT", ("ACCRUAL_RUN_ADDRESS", "RUN_ADDRESS"),
        "localhost:8081", "listen address: host:port, :port (all interfaces) or http://host:port",
    ),
    (
        ("--delay",), _non_negative(float), "SECONDS", ("ACCRUAL_CALC_DELAY",), "0",
        "seconds an order stays REGISTERED (first half) then PROCESSING before its final "
        "status; 0 answers final at once",
    ),
    (
        ("--rate-limit",), _non_negative(int), "N", ("ACCRUAL_RATE_LIMIT",), "0",
        "allow at most N GET /api/orders/{number} per rolling minute, answer 429 beyond; "
        "0 means unlimited",
    ),
    (
        ("--retry-after",), _non_negative(int), "SECONDS", ("ACCRUAL_RETRY_AFTER",), "60",
        "Retry-After header value sent with 429",
    ),
)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="gophermart accrual-sim",
        description="Run an in-memory simulator of the external accrual system (dev/demo/test). "
        "Seeded mechanics: 'Bork' 10 %, 'Gopher' 15 pt. Stop with Ctrl-C or SIGTERM.",
        epilog="Test hooks: GET /__sim/stats, POST /__sim/fail, POST /__sim/reset-stats, "
        "POST /__sim/orders (see the module docstring).",
    )
    for flags, parse, metavar, env_names, default, help_text in _OPTIONS:
        parser.add_argument(
            *flags,
            type=parse,
            metavar=metavar,
            default=next(filter(None, map(env, env_names)), default),
            help=f"{help_text} (env {', else '.join(env_names)}; default {default})",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM, then return 0 (a clean stop is a success)."""
    args = _parser().parse_args(argv)
    settings = SimSettings(
        calc_delay=args.delay,
        rate_limit=int(args.rate_limit) or None,
        retry_after=int(args.retry_after),
    )
    host, port = args.address
    server = uvicorn.Server(uvicorn.Config(create_sim_app(settings), host=host, port=port))
    with clean_exit_on_stop_signals():
        server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
