"""Webhook POSTs over HTTP (httpx): every outcome becomes an :class:`Attempt`.

The lessons of the accrual poller (``accrual_http.py``), for endpoints we do not run:

* one httpx transport (its connection pool) **per endpoint**, as large as the endpoint's
  concurrency: a slow or dead endpoint holds its own connections, never another's;
* connections are **kept alive** between POSTs: an answer's body is read to its end
  (at most ``max_body`` bytes), so its connection goes back to the pool; one not read
  to the end would be closed, and every POST would pay a new connection (it did: the
  2xx's body was never read, docs/performance.md "Webhooks");
* a total **deadline** per POST (connection, request, status line, headers and what
  is read of the body): httpx's own timeouts are per read, so a receiver dripping a
  byte every few seconds would never trip them;
* the answer's **body is capped**: only the status matters, so at most ``max_body``
  bytes are read (for the error shown to operators), and a longer body is dropped
  with its connection;
* no redirects (a 3xx is not a delivery: the operator registers the right URL), no
  compression asked for, no cookies kept between deliveries.

A POST goes straight to the endpoint's transport (``handle_async_request``) with its
URL parsed and its fixed headers built once per endpoint: the client's per-request
machinery (merging its defaults, cookies, auth and redirect flows) did nothing for us
and cost a share of the deliverer's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import httpx

from gophermart.domain.webhooks import Attempt

#: The most of an answer's body read: enough for an error message shown to operators.
MAX_BODY: Final = 4 * 1024
DEFAULT_DEADLINE: Final = 10.0
USER_AGENT: Final = "Gophermart-Webhooks/1"
_FIXED: Final[list[tuple[str, str]]] = [("User-Agent", USER_AGENT), ("Accept-Encoding", "identity")]


class _Endpoint:
    """One endpoint's transport (its own pool) and its URL, parsed once."""

    __slots__ = ("transport", "url")

    def __init__(self, url: str, transport: httpx.AsyncBaseTransport) -> None:
        self.url = httpx.URL(url)
        self.transport = transport


class HttpWebhookSender:
    """The WebhookSender port: one transport per endpoint, created on its first POST."""

    def __init__(
        self,
        deadline: float = DEFAULT_DEADLINE,
        connections: int = 16,
        max_body: int = MAX_BODY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._deadline = deadline
        self._connections = connections
        self._max_body = max_body
        self._shared = transport  # tests' (never closed here)
        self._endpoints: dict[int, _Endpoint] = {}
        connect = min(deadline, 3.0)
        self._timeouts = {"connect": connect, "read": deadline, "write": deadline, "pool": deadline}

    def _endpoint(self, endpoint_id: int, url: str) -> _Endpoint:
        found = self._endpoints.get(endpoint_id)
        if found is None:  # an endpoint's URL never changes (there is no such verb)
            transport = self._shared or httpx.AsyncHTTPTransport(
                limits=httpx.Limits(
                    max_connections=self._connections,
                    max_keepalive_connections=self._connections,
                ),
                retries=0,
            )
            found = self._endpoints[endpoint_id] = _Endpoint(url, transport)
        return found

    async def post(
        self, endpoint_id: int, url: str, body: bytes, headers: dict[str, str]
    ) -> Attempt:
        endpoint = self._endpoint(endpoint_id, url)
        request = httpx.Request(
            "POST",
            endpoint.url,
            headers=_FIXED + list(headers.items()),
            content=body,
            extensions={"timeout": self._timeouts},
        )
        try:
            async with asyncio.timeout(self._deadline):
                answer = await endpoint.transport.handle_async_request(request)
                try:
                    status = answer.status_code
                    excerpt = await self._read(answer)
                finally:
                    await answer.aclose()
        except TimeoutError:
            return Attempt(None, f"no answer within {self._deadline:g}s", "timeout")
        except httpx.TimeoutException as exc:
            return Attempt(None, f"{type(exc).__name__}: {exc}"[:500], "timeout")
        except httpx.HTTPError as exc:
            # ConnectError (refused, unreachable, a name that does not resolve), a
            # connection dropped mid-answer, a malformed status line...
            return Attempt(None, f"{type(exc).__name__}: {exc}"[:500], "network")
        if 200 <= status < 300:
            return Attempt(status)
        text = excerpt.decode("utf-8", "replace").strip()
        error = f"HTTP {status}" + (f": {text}" if text else "")
        return Attempt(status, error[:500], f"http_{status // 100}xx")

    async def _read(self, answer: httpx.Response) -> bytes:
        """The answer's body up to ``max_body`` bytes (for a refusal's error): read to
        its end, its connection is kept alive; longer, it is dropped on close."""
        body = bytearray()
        async for chunk in answer.aiter_raw():
            body += chunk
            if len(body) >= self._max_body:
                break
        return bytes(body[: self._max_body])

    async def forget(self, endpoint_id: int) -> None:
        endpoint = self._endpoints.pop(endpoint_id, None)
        if endpoint is not None and endpoint.transport is not self._shared:
            with contextlib.suppress(Exception):
                await endpoint.transport.aclose()

    async def aclose(self) -> None:
        for endpoint_id in list(self._endpoints):
            await self.forget(endpoint_id)
