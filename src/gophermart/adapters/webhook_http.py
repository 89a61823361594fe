"""Webhook POSTs over HTTP (httpx): every outcome becomes an :class:`Attempt`.

The lessons of the accrual poller (``accrual_http.py``), for endpoints we do not run:

* one ``httpx.AsyncClient`` **per endpoint**, its pool as large as the endpoint's
  concurrency: a slow or dead endpoint holds its own connections, never another's;
* a total **deadline** per POST (connection, request, status line, headers and what
  is read of the body): httpx's own timeouts are per read, so a receiver dripping a
  byte every few seconds would never trip them;
* the answer's **body is capped**: only the status matters, so at most ``max_body``
  bytes are read (for the error shown to operators), and the rest is dropped with the
  connection;
* no redirects (a 3xx is not a delivery: the operator registers the right URL), no
  compression asked for, no cookies kept between deliveries.
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


class HttpWebhookSender:
    """The WebhookSender port: one client per endpoint, created on its first POST."""

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
        self._transport = transport
        self._clients: dict[int, httpx.AsyncClient] = {}

    def _client(self, endpoint_id: int) -> httpx.AsyncClient:
        client = self._clients.get(endpoint_id)
        if client is None:
            client = self._clients[endpoint_id] = httpx.AsyncClient(
                timeout=httpx.Timeout(self._deadline, connect=min(self._deadline, 3.0)),
                limits=httpx.Limits(
                    max_connections=self._connections,
                    max_keepalive_connections=self._connections,
                ),
                transport=self._transport,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
        return client

    async def post(
        self, endpoint_id: int, url: str, body: bytes, headers: dict[str, str]
    ) -> Attempt:
        client = self._client(endpoint_id)
        try:
            async with asyncio.timeout(self._deadline):
                async with client.stream("POST", url, content=body, headers=headers) as answer:
                    status = answer.status_code
                    excerpt = b"" if 200 <= status < 300 else await self._excerpt(answer)
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

    async def _excerpt(self, answer: httpx.Response) -> bytes:
        """The first ``max_body`` bytes of a refusal's body, for the operator."""
        body = bytearray()
        async for chunk in answer.aiter_raw():
            body += chunk
            if len(body) >= self._max_body:
                break
        return bytes(body[: self._max_body])

    async def forget(self, endpoint_id: int) -> None:
        client = self._clients.pop(endpoint_id, None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def aclose(self) -> None:
        for endpoint_id in list(self._clients):
            await self.forget(endpoint_id)
