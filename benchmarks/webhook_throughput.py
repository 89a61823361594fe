"""Withdrawals with and without one webhook endpoint (issue 18, "Done when": the withdraw
bench stays >= 0.9x with one endpoint, and the deliverer keeps up with it).

    .venv/bin/python benchmarks/webhook_throughput.py [--pairs 3] [--duration 15] [--workers 2]
        [--separate-worker] [--service-src DIR]

1. one service (``gophermart -w N`` with its in-process workers, which sequence the events
   and deliver webhooks), on a seeded PostgreSQL database (run.py's seeding: users,
   funded accounts, real tokens); with ``--separate-worker``, the documented scale-out
   deployment instead: ``gophermart -w N --no-worker`` and one ``gophermart worker``
   process beside it (README, "Webhooks");
2. a fast local receiver *process* (this file with ``--receiver``): it answers every POST
   ``200`` at once and records, per event, its lag: arrival time minus the event's ``at``
   (the entry's commit time, to the clock's precision). It stands in for the shop's
   endpoint, which in production runs on the shop's machines: here it shares the
   service's cores, so its CPU is **not** the service's cost and is kept as small as
   it can be (an asyncio Protocol, requests found by bytes search, no JSON parsing);
3. pairs of wrk runs of ``withdraw.lua``: *off* (no endpoint) and *on* (one endpoint,
   subscribed to ``*``, registered just before the run and deleted after it), in
   alternating order; after each *on* run, the time until its last delivery is done
   (the drain: how far behind the deliverer was when the load stopped);
4. prints per pair requests/s off and on, the ratio, and the delivery lag (p50, p99,
   max during the run) and the drain; the median ratio is the figure of merit.

Every event of an *on* run is POSTed: the receiver's count is checked against the
deliveries. All traffic is on 127.0.0.1; the database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx
import run
from run import HOST, RESULTS_DIR, Config, Databases, Processes, log

#: A worker polls the accrual system when it has an address; no order is ever uploaded
#: here, so it is never asked. With an address every server process runs its worker.
NO_ACCRUAL = "http://127.0.0.1:9"


# --- the receiver process ---------------------------------------------------------------


class _Tally:
    """What the receiver saw since the last ``GET /stats``: POSTs, and each one's lag."""

    def __init__(self) -> None:
        self.received = 0
        self.lags: list[float] = []

    def stats(self) -> bytes:
        answer = json.dumps({"received": self.received, "lags": self.lags}).encode()
        self.lags = []
        return answer


class _ReceiverConnection(asyncio.Protocol):
    """One connection of the stand-in endpoint: requests found by bytes search (the
    head's end, Content-Length, and the event's ``"at":"`` in the body: its first
    occurrence is the top-level one, msgspec writes the fields in order), each
    answered ``200`` at once. Its CPU is the shop's, not the service's: it is lean so
    that it takes as little as it can of the two cores the service runs on."""

    def __init__(self, tally: _Tally) -> None:
        self._tally = tally
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self._buffer[: end + 2]).lower()  # each header line ends in CRLF
            start = head.find(b"content-length:")
            length = int(head[start + 15 : head.find(b"\r\n", start)]) if start >= 0 else 0
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4 : end + 4 + length])
            del self._buffer[: end + 4 + length]
            self._answer(head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        if head.startswith(b"post"):
            self._tally.received += 1
            at = body.find(b'"at":"') + 6
            when = datetime.fromisoformat(body[at : body.find(b'"', at)].decode())
            self._tally.lags.append(time.time() - when.timestamp())
            answer = b"ok"
        elif head.startswith(b"get /stats"):
            answer = self._tally.stats()
        else:
            answer = b"?"
        assert self._transport is not None
        self._transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
        )


async def _receive(port: int) -> None:
    tally = _Tally()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _ReceiverConnection(tally), HOST, port, backlog=1024)
    async with server:
        await server.serve_forever()


# --- the measurement ---------------------------------------------------------------------


async def _register(dsn: str, url: str) -> int:
    from gophermart import Gophermart

    async with Gophermart.open(dsn, migrate=False) as loyalty:
        return (await loyalty.add_webhook(url, ["*"])).endpoint.id


async def _delete(dsn: str, endpoint: int) -> None:
    from gophermart import Gophermart

    async with Gophermart.open(dsn, migrate=False) as loyalty:
        await loyalty.delete_webhook(endpoint)


async def _drain(dsn: str, endpoint: int, timeout: float = 300.0) -> tuple[float, int]:
    """Seconds until the endpoint has nothing pending (bounded), and its deliveries."""
    from gophermart import Gophermart

    started = time.monotonic()
    async with Gophermart.open(dsn, migrate=False) as loyalty:
        while time.monotonic() - started < timeout:
            lag = {x.endpoint_id: x for x in await loyalty.webhook_lag()}
            if endpoint in lag and lag[endpoint].pending == 0:
                break
            await asyncio.sleep(0.1)
        took = time.monotonic() - started
        count = 0
        before: int | None = None
        while page := await loyalty.webhook_deliveries(endpoint, 1000, before):
            count += len(page)
            before = page[-1].event_id
    return took, count


async def _receiver_stats(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        stats: dict[str, Any] = (await client.get(url + "/stats")).json()
        return stats


async def _one_run(
    cfg: Config, service: run.Service, tokens: Path, dsn: str, receiver: str, mode: str, pair: int
) -> dict[str, Any]:
    endpoint = await _register(dsn, receiver + "/hooks") if mode == "on" else None
    await _receiver_stats(receiver)  # forget earlier lags
    result = await run.run_wrk(
        cfg, service.url, "withdraw.lua", tokens, cfg.duration, f"pair {pair} webhooks {mode}"
    )
    row: dict[str, Any] = {"mode": mode, "rps": result.rps, "p99_ms": result.p99_ms}
    row["errors"] = result.errors
    if endpoint is not None:
        drain, deliveries = await _drain(dsn, endpoint)
        await asyncio.sleep(0.5)  # the last answers reach the receiver's tally
        stats = await _receiver_stats(receiver)
        await _delete(dsn, endpoint)
        lags = sorted(stats["lags"])
        row |= {
            "drain_s": round(drain, 2),
            "deliveries": deliveries,
            "received": len(lags),
            "lag_p50_ms": round(1000 * statistics.median(lags), 1) if lags else None,
            "lag_p99_ms": round(1000 * lags[int(0.99 * (len(lags) - 1))], 1) if lags else None,
            "lag_max_ms": round(1000 * lags[-1], 1) if lags else None,
        }
        log(
            f"  delivered {len(lags)} of {deliveries}; lag p50 {row['lag_p50_ms']} ms, p99 "
            f"{row['lag_p99_ms']} ms, max {row['lag_max_ms']} ms; drained {drain:.1f} s after"
        )
    return row


async def measure(args: argparse.Namespace, cfg: Config, procs: Processes) -> dict[str, Any]:
    dbs = Databases(cfg.pg_url)
    work = Path(tempfile.mkdtemp(prefix="gophermart-webhooks-"))
    port = run.free_port()
    receiver_url = f"http://{HOST}:{port}"
    procs.start(
        "receiver",
        [sys.executable, str(Path(__file__).resolve()), "--receiver", str(port)],
        RESULTS_DIR / "webhooks-receiver.log",
    )
    try:
        await dbs.create(dbs.bench)
        dsn = dbs.service_dsn(dbs.bench)
        inside = None if args.separate_worker else NO_ACCRUAL
        service = await run.start_service(procs, cfg, dsn, "webhooks-service.log", inside)
        worker = None
        if args.separate_worker:
            worker = procs.start(
                "worker",
                [*run.gophermart_cmd(), "worker", "-d", dsn, "-r", NO_ACCRUAL],
                RESULTS_DIR / "webhooks-worker.log",
            )
        try:
            seeded = await run.seed(cfg, dbs, service)
            tokens = work / "tokens.txt"
            tokens.write_text("\n".join(seeded.tokens) + "\n")
            await run.run_wrk(cfg, service.url, "balance.lua", tokens, cfg.warmup, "warm-up")
            rows = []
            for pair in range(1, args.pairs + 1):
                order = ["off", "on"] if pair % 2 else ["on", "off"]
                runs = {
                    m: await _one_run(cfg, service, tokens, dsn, receiver_url, m, pair)
                    for m in order
                }
                rows.append(
                    {"pair": pair, **{f"{m}_{k}": v for m in runs for k, v in runs[m].items()}}
                )
                rows[-1]["ratio"] = round(runs["on"]["rps"] / max(runs["off"]["rps"], 1e-9), 3)
        finally:
            procs.stop(service.proc)
            if worker is not None:
                procs.stop(worker)
        return {"rows": rows, "integrity": await run.integrity(dbs)}
    finally:
        await dbs.drop_all()


def render(out: dict[str, Any], cfg: Config) -> str:
    where = "a separate worker process" if out.get("separate_worker") else "in-process workers"
    lines = [
        f"withdrawals without / with one webhook endpoint: wrk -t{cfg.threads} "
        f"-c{cfg.connections} -d{cfg.duration}s, -w {cfg.workers} ({where}), "
        f"{cfg.users} users",
        "",
        "| pair | off req/s | on req/s | ratio | lag p50 / p99 / max (ms) | drain after "
        "| delivered |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        lines.append(
            f"| {r['pair']} | {r['off_rps']:,.0f} | {r['on_rps']:,.0f} | {r['ratio']:.2f} "
            f"| {r['on_lag_p50_ms']} / {r['on_lag_p99_ms']} / {r['on_lag_max_ms']} "
            f"| {r['on_drain_s']} s | {r['on_received']} of {r['on_deliveries']} |"
        )
    if out["rows"]:
        median = statistics.median(r["ratio"] for r in out["rows"])
        lines += ["", f"median ratio (on / off): **{median:.2f}**"]
    ok = out["integrity"].get("ok")
    lines.append(
        f"integrity: {'ok' if ok else 'FAILED'} — {out['integrity'].get('reconcile_summary', '')}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--pairs", type=int, default=3, help="off/on pairs (default 3)")
    p.add_argument(
        "--separate-worker",
        action="store_true",
        help="servers with --no-worker and one `gophermart worker` process",
    )
    p.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "webhooks.json", help="results as JSON"
    )
    args, rest = p.parse_known_args(argv)
    if args.receiver is not None:
        asyncio.run(_receive(args.receiver))
        return 0
    # Everything else is run.py's: --workers, --duration, --connections, --users, --tokens...
    cfg = run.parse_args([*rest, "--skip-accrual"])
    cfg = replace(cfg, users=cfg.users if "--users" in rest else 1000)
    cfg = replace(cfg, tokens=min(cfg.tokens, cfg.users) if "--tokens" in rest else 64)
    if cfg.service_src:  # as run.py's main: every process imports that tree
        path = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [cfg.service_src, path]))
        os.environ[run.SERVICE_SRC_ENV] = cfg.service_src
        sys.path.insert(0, cfg.service_src)  # _register, _drain: the same tree
    run.ensure_wrk()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    out = run.run_stopping_processes(measure(args, cfg, procs), procs)
    if out is None:
        return 130
    out["separate_worker"] = args.separate_worker
    args.output.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print()
    print(render(out, cfg))
    print(f"\nresults in {args.output}")
    return 0 if out["integrity"].get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
