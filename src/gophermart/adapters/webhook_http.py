"""Webhook POSTs over HTTP (httpx): every outcome becomes an :class:`Attempt`.

The lessons of the accrual poller (``accrual_http.py``), for endpoints we do not run:

* connections **per endpoint**, as many as the endpoint's concurrency: a slow or dead
  endpoint holds its own connections, never another's. Each is an httpx transport of
  one connection, taken by one POST at a time: httpcore's pool looks at every one of
  its connections (is it expired? readable?) twice per request, so one pool of 16
  idle-most-of-the-time connections cost a third of the deliverer's CPU (py-spy,
  docs/performance.md "Webhooks");
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
import ssl
from typing import Final

import httpx

from gophermart.domain.webhooks import Attempt

#: The most of an answer's body read: enough for an error message shown to operators.
MAX_BODY: Final = 4 * 1024
DEFAULT_DEADLINE: Final = 10.0
USER_AGENT: Final = "Gophermart-Webhooks/1"
_FIXED: Final[list[tuple[str, str]]] = [("User-Agent", USER_AGENT), ("Accept-Encoding", "identity")]


class _Endpoint:
    """One endpoint's URL, parsed once, and its idle transports (a connection each)."""

    __slots__ = ("id", "idle", "url")

    def __init__(self, endpoint_id: int, url: str) -> None:
        self.id = endpoint_id
        self.url = httpx.URL(url)
        self.idle: list[httpx.AsyncBaseTransport] = []


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
        self._tls: ssl.SSLContext | None = None  # shared by every transport
        connect = min(deadline, 3.0)
        self._timeouts = {"connect": connect, "read": deadline, "write": deadline, "pool": deadline}

    def _endpoint(self, endpoint_id: int, url: str) -> _Endpoint:
        found = self._endpoints.get(endpoint_id)
        if found is None:  # an endpoint's URL never changes (there is no such verb)
            found = self._endpoints[endpoint_id] = _Endpoint(endpoint_id, url)
        return found

    def _take(self, endpoint: _Endpoint) -> httpx.AsyncBaseTransport:
        """An idle transport of the endpoint's, or a new one (the delivery worker never
        has more POSTs in flight per endpoint than ``connections``)."""
        if self._shared is not None:
            return self._shared
        if endpoint.idle:
            return endpoint.idle.pop()
        if self._tls is None:  # loading the CA bundle takes ~50 ms: once per sender
            self._tls = httpx.create_ssl_context()
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        return httpx.AsyncHTTPTransport(verify=self._tls, limits=limits, retries=0)

    async def _give_back(self, endpoint: _Endpoint, transport: httpx.AsyncBaseTransport) -> None:
        if transport is self._shared:
            return
        kept = self._endpoints.get(endpoint.id) is endpoint  # not forgotten meanwhile
        if kept and len(endpoint.idle) < self._connections:
            endpoint.idle.append(transport)
        else:
            with contextlib.suppress(Exception):
                await transport.aclose()

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
        transport = self._take(endpoint)
        try:
            async with asyncio.timeout(self._deadline):
                answer = await transport.handle_async_request(request)
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
        finally:
            await self._give_back(endpoint, transport)
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
        """Close the endpoint's idle connections (one in use is closed when it is given
        back: the endpoint is no longer ours to keep connections to)."""
        endpoint = self._endpoints.pop(endpoint_id, None)
        if endpoint is not None:
            idle, endpoint.idle = endpoint.idle, []
            for transport in idle:
                with contextlib.suppress(Exception):
                    await transport.aclose()

    async def aclose(self) -> None:
        for endpoint_id in list(self._endpoints):
            await self.forget(endpoint_id)
