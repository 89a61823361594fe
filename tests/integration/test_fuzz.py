"""The fuzz run: hypothesis-generated requests against every route, on both databases,
over a real socket.

Bodies (JSON of any shape, credential- and withdrawal-shaped JSON with odd values and
raw number texts, deep nesting, order numbers, bytes), headers (Content-Type,
Content-Encoding with real, broken and bomb gzip) and credentials (none, garbage,
other schemes, the owner's real token, and validly signed tokens with odd subjects
and claims, signed with the service's own key) are thrown at every route and method.

The service must never answer 5xx; a 4xx carries a JSON ``{"error": ...}`` body (HEAD
aside: no body at all) and changes nothing: the owner's balance, orders and
withdrawals read the same before and after. Bounded: ``FUZZ_EXAMPLES`` examples per
database, a few seconds each.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gophermart.adapters.security import signing_key
from tests.conftest import TEST_SECRET, Service, start_service, throwaway_postgres
from tests.integration.backdoor import database_id
from tests.integration.seeding import luhn, seed_points

FUZZ_EXAMPLES = int(os.environ.get("GOPHERMART_FUZZ_EXAMPLES", "400"))

ROUTES = [
    ("POST", "/api/user/register"),
    ("POST", "/api/user/login"),
    ("POST", "/api/user/orders"),
    ("GET", "/api/user/orders"),
    ("GET", "/api/user/balance"),
    ("POST", "/api/user/balance/withdraw"),
    ("GET", "/api/user/withdrawals"),
    ("GET", "/healthz"),
]
OTHER_METHODS = ["HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "GET", "POST"]


@dataclass(frozen=True)
class Target:
    service: Service
    owner_login: str
    owner_id: int
    owner_token: str
    key: str  # the service's token signing key (secret bound to the database)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
        yield from _prepared(start_service(uri))
    else:
        request.getfixturevalue("postgres_available")
        with throwaway_postgres() as uri:
            yield from _prepared(start_service(uri))


def _prepared(svc: Service) -> Iterator[Target]:
    try:
        login = f"owner-{uuid.uuid4().hex[:8]}"
        with httpx.Client(base_url=svc.url, timeout=30) as c:
            signed = c.post("/api/user/register", json={"login": login, "password": "owner-pw"})
            assert signed.status_code == 200, signed.text
            token = signed.headers["authorization"].removeprefix("Bearer ")
            seed_points(svc.database_uri, login, 100_000)
            auth = {"Authorization": f"Bearer {token}"}
            order = luhn(f"5{uuid.uuid4().int % 10**10:010d}")
            assert c.post("/api/user/orders", content=order, headers=auth).status_code == 202
            spent = {"order": luhn("2377225"), "sum": 12.34}
            assert c.post("/api/user/balance/withdraw", json=spent, headers=auth).status_code == 200
        owner_id = int(jwt.decode(token, options={"verify_signature": False})["sub"])
        key = signing_key(TEST_SECRET, database_id(svc.database_uri))
        yield Target(svc, login, owner_id, token, key)
    finally:
        code = svc.stop()
        assert code == 0, f"service exited with {code}:\n{svc.output()}"
    assert "Traceback" not in svc.output(), svc.output()


# --- strategies ---------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

number_texts = st.one_of(
    st.sampled_from(
        [
            "1",
            "0",
            "-0",
            "-1",
            "0.01",
            "1.005",
            "751",
            "1e2",
            "1E-2",
            "1e999999999",
            "1e-999999999",
            "1e99999999999999999999",
            "1." + "0" * 5000,
            "1." + "0" * 5000 + "1",
            "9" * 5000,
            "10000000000000",
            "10000000000000.01",
            "92233720368547758.08",
            '"5"',
            "null",
            "[]",
            "{}",
            "true",
        ]
    ),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(str),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
)

order_texts = st.one_of(
    st.integers(min_value=0, max_value=10**20).map(lambda n: luhn(str(n))),
    st.text(alphabet="0123456789", min_size=0, max_size=80),
    st.text(max_size=20),
    st.sampled_from(["", " ", "12345678903", "12345678903\n", "0" * 65, luhn("1" * 80)]),
)


def _json_text(value: object) -> bytes:
    return json.dumps(value).encode()


@st.composite
def credential_bodies(draw: st.DrawFn, owner_login: str) -> bytes:
    login = draw(
        st.one_of(
            st.from_regex(r"\Afuzz-[a-z0-9]{1,8}\Z"),
            st.sampled_from(["", " a", owner_login, "x" * 65]),
            st.text(max_size=70),
            json_values,
        )
    )
    password = draw(
        st.one_of(st.sampled_from(["owner-pw", "guess"]), st.text(max_size=300), json_values)
    )
    fields: dict[str, Any] = {"login": login, "password": password}
    if draw(st.integers(0, 3)) == 0:
        del fields[draw(st.sampled_from(["login", "password"]))]
    body = _json_text(fields)
    if draw(st.integers(0, 4)) == 0:  # an extra field holding deep nesting
        depth = draw(st.integers(100, 3000))
        body = body[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
    return body


#: Numbers used again and again, so replays, conflicts and "already yours" happen.
KNOWN_ORDERS = [luhn("2377225"), luhn("456126121234546"), luhn("7992739871")]


@st.composite
def withdraw_bodies(draw: st.DrawFn) -> bytes:
    order = _json_text(draw(st.one_of(st.sampled_from(KNOWN_ORDERS), order_texts, json_values)))
    number = draw(st.one_of(st.sampled_from(["12.34", "0.5", "1", "5000", "999999"]), number_texts))
    parts = [b'"order": ' + order, b'"sum": ' + number.encode()]
    if draw(st.integers(0, 3)) == 0:
        parts.pop(draw(st.integers(0, 1)))
    if draw(st.integers(0, 4)) == 0:
        depth = draw(st.integers(100, 3000))
        parts.append(b'"x": ' + b"{" + b'"a":{' * depth + b"}" * depth + b"}")
    return b"{" + b", ".join(parts) + b"}"


def well_formed_credentials(owner_login: str) -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda login, password: _json_text({"login": login, "password": password}),
        st.one_of(st.just(owner_login), st.from_regex(r"\Afuzz-[a-z0-9]{1,8}\Z")),
        st.sampled_from(["owner-pw", "guess", "pw"]),
    )


well_formed_withdrawals = st.builds(
    lambda order, number: b'{"order": "' + order.encode() + b'", "sum": ' + number.encode() + b"}",
    st.one_of(st.sampled_from(KNOWN_ORDERS), st.integers(0, 10**12).map(lambda n: luhn(str(n)))),
    st.sampled_from(["12.34", "0.5", "1", "1.00", "5000", "999999", "0.001", "-1"]),
)

any_bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=200),
    json_values.map(_json_text),
    withdraw_bodies(),
    order_texts.map(str.encode),
    st.integers(100, 5000).map(lambda d: b"[" * d + b"]" * d),
)


def bodies_for(path: str, owner_login: str) -> st.SearchStrategy[bytes]:
    """Mostly what the route expects (so requests get past parsing), else anything."""
    fitting: st.SearchStrategy[bytes]
    if path in ("/api/user/register", "/api/user/login"):
        fitting = st.one_of(well_formed_credentials(owner_login), credential_bodies(owner_login))
    elif path == "/api/user/balance/withdraw":
        fitting = st.one_of(well_formed_withdrawals, withdraw_bodies())
    elif path == "/api/user/orders":
        fitting = st.one_of(st.sampled_from(KNOWN_ORDERS), order_texts).map(str.encode)
    else:
        return any_bodies
    return st.one_of(fitting, fitting, fitting, any_bodies)


content_types = st.sampled_from(
    [
        None,
        "application/json",
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
        "garbage",
        "",
    ]
)
encodings = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.sampled_from(["gzip", "gzip-broken", "gzip-bomb", "identity", "deflate", "br", "x"]),
)


@st.composite
def tokens(draw: st.DrawFn, target: Target) -> str:
    kind = draw(st.sampled_from(["signed", "raw-secret", "garbage", "none-alg"]))
    if kind == "garbage":
        return draw(
            st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60)
        )
    claims: dict[str, Any] = {}
    subject = draw(
        st.one_of(
            st.just(str(target.owner_id)),
            st.integers(min_value=-(2**70), max_value=2**70).map(str),
            st.text(max_size=20),
            st.sampled_from([str(2**63), str(2**63 - 1), "0", "01", "9" * 5000]),
            st.integers(0, 10),  # not a string at all
            st.none(),
        )
    )
    if subject is not None:
        claims["sub"] = subject
    exp = draw(
        st.one_of(
            st.just(int(time.time()) + 3600),
            st.integers(min_value=-(2**40), max_value=2**40),
            st.text(max_size=5),
            st.none(),
        )
    )
    if exp is not None:
        claims["exp"] = exp
    if draw(st.booleans()):
        claims.update(
            draw(
                st.dictionaries(
                    st.sampled_from(["iat", "nbf", "aud", "iss", "x"]), json_scalars, max_size=3
                )
            )
        )
    if kind == "none-alg":
        return _compact({"alg": "none", "typ": "JWT"}, claims, b"")
    key = target.key if kind == "signed" else TEST_SECRET
    return _signed(claims, key)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    signing_input = _b64(_json_text(header)) + b"." + _b64(_json_text(claims))
    return (signing_input + b"." + _b64(signature)).decode()


def _signed(claims: dict[str, Any], key: str) -> str:
    """HS256 by hand: any claims at all (PyJWT refuses to encode some odd ones)."""
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = _b64(_json_text(header)) + b"." + _b64(_json_text(claims))
    signature = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(signature)).decode()


@st.composite
def requests(draw: st.DrawFn, target: Target) -> dict[str, Any]:
    method, path = draw(st.sampled_from(ROUTES))
    if draw(st.integers(0, 5)) == 0:
        method = draw(st.sampled_from(OTHER_METHODS))
    headers: dict[str, str] = {}
    content_type = draw(st.one_of(st.none(), content_types))
    if content_type is not None:
        headers["Content-Type"] = content_type
    # Mostly the owner's real credential (so requests reach the use cases), else a
    # hostile one: absent, another scheme, garbage, or signed with odd claims.
    auth = draw(st.sampled_from(["bearer", "cookie", "both", "none", "scheme"]))
    owner = draw(st.integers(0, 3)) > 0
    token = target.owner_token if owner else draw(tokens(target))
    if owner and auth in ("none", "scheme"):
        auth = "bearer"
    if auth in ("bearer", "both"):
        headers["Authorization"] = f"Bearer {token}"
    if auth == "scheme":
        headers["Authorization"] = (
            draw(st.sampled_from(["Basic ", "Bearer", "bearer  ", "Token "])) + token
        )
    if auth in ("cookie", "both"):
        headers["Cookie"] = f"token={token}"
    body = draw(bodies_for(path, target.owner_login))
    encoding = draw(encodings)
    if encoding == "gzip":
        headers["Content-Encoding"], body = "gzip", gzip.compress(body)
    elif encoding == "gzip-broken":
        headers["Content-Encoding"], body = "gzip", gzip.compress(body)[:-5] + b"\x00"
    elif encoding == "gzip-bomb":
        headers["Content-Encoding"], body = "gzip", gzip.compress(b"[" * 3_000_000)
    elif encoding is not None:
        headers["Content-Encoding"] = encoding
    # HTTP/1.1 itself (h11) refuses surrounding whitespace in a header value
    headers = {name: value.strip() for name, value in headers.items()}
    return {"method": method, "url": path, "headers": headers, "content": body}


# --- the run ----------------------------------------------------------------------


def owner_state(client: httpx.Client, target: Target) -> tuple[tuple[int, bytes], ...]:
    auth = {"Authorization": f"Bearer {target.owner_token}"}
    return tuple(
        (r.status_code, r.content)
        for r in (
            client.get(p, headers=auth)
            for p in ("/api/user/balance", "/api/user/orders", "/api/user/withdrawals")
        )
    )


def test_fuzzed_requests_never_5xx_and_a_4xx_changes_nothing(target: Target) -> None:
    with httpx.Client(base_url=target.service.url, timeout=60) as client:
        baseline = owner_state(client, target)
        assert all(status == 200 for status, _ in baseline), baseline

        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(data=st.data())
        def run(data: st.DataObject) -> None:
            nonlocal baseline
            request = data.draw(requests(target))
            client.cookies.clear()
            response = client.request(**request)
            shown = (request["method"], request["url"], response.status_code, response.text[:300])
            assert response.status_code < 500, shown
            if 400 <= response.status_code < 500:
                if request["method"] == "HEAD":
                    assert response.content == b"", shown
                else:
                    assert response.headers["content-type"].startswith("application/json"), shown
                    assert isinstance(response.json().get("error"), str), shown
                assert owner_state(client, target) == baseline, shown
            else:
                baseline = owner_state(client, target)

        run()
