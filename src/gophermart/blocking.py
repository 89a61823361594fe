"""The blocking twin of :class:`~gophermart.facade.Gophermart`, for hosts that are not
async (a Django or Flask shop): the same verbs, each one a plain call.

The async facade runs on an event loop in one background thread that this object
owns; every verb hands its coroutine to that loop and waits for the answer. Pools and
the accrual worker live on that loop, so any number of the host's threads may call in
at once (they queue on the loop, as requests of an async server would).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine, Sequence
from datetime import timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, TypeVar

from gophermart.application.orders import UploadOutcome
from gophermart.application.ports import BalanceView, OrderView, WithdrawalView
from gophermart.application.readiness import Readiness
from gophermart.application.reconcile import ReconcileReport
from gophermart.application.users import Authenticated
from gophermart.domain.orders import AccrualVerdict, Order
from gophermart.domain.points import Points
from gophermart.domain.users import UserId
from gophermart.facade import Gophermart
from gophermart.settings import DEFAULT_DATABASE_URI

T = TypeVar("T")


class BlockingGophermart:
    """``with BlockingGophermart.open("sqlite:///shop.db") as loyalty: ...``"""

    def __init__(self, loyalty: Gophermart) -> None:
        self.loyalty = loyalty
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def open(
        cls,
        url: str = DEFAULT_DATABASE_URI,
        *,
        secret: str | None = None,
        accrual_address: str | None = None,
        token_ttl: timedelta = timedelta(hours=24),
        migrate: bool = True,
    ) -> Self:
        """See :meth:`Gophermart.open`."""
        return cls(
            Gophermart.open(
                url,
                secret=secret,
                accrual_address=accrual_address,
                token_ttl=token_ttl,
                migrate=migrate,
            )
        )

    @classmethod
    def in_memory(cls, *, secret: str | None = None, accrual_address: str | None = None) -> Self:
        return cls(Gophermart.in_memory(secret=secret, accrual_address=accrual_address))

    # --- life -------------------------------------------------------------------------

    def start(self) -> None:
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="gophermart-loop", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._run(self.loyalty.start())
        except BaseException:
            self._stop_loop()
            raise

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            self._run(self.loyalty.aclose())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
        problem = None
        if self._loop is None:
            problem = "start() the BlockingGophermart (or use `with`) first"
        elif threading.current_thread() is self._thread:
            problem = "a blocking verb was called from the library's own loop"
        if problem is not None or self._loop is None:
            if isinstance(coro, Coroutine):
                coro.close()  # never to run: say so, rather than warn of it never awaited
            raise RuntimeError(problem)

        async def wrapped() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result()

    # --- the verbs (see Gophermart for what each does) ------------------------------------

    def register(self, login: str, password: str) -> Authenticated:
        return self._run(self.loyalty.register(login, password))

    def log_in(self, login: str, password: str, client: str = "") -> Authenticated:
        return self._run(self.loyalty.log_in(login, password, client))

    def authenticate(self, token: str) -> UserId:
        return self.loyalty.authenticate(token)

    def issue_token(self, user_id: UserId) -> str:
        return self.loyalty.issue_token(user_id)

    def upload_order(self, user_id: UserId, number: str) -> UploadOutcome:
        return self._run(self.loyalty.upload_order(user_id, number))

    def orders(self, user_id: UserId) -> Sequence[OrderView]:
        return self._run(self.loyalty.orders(user_id))

    def balance(self, user_id: UserId) -> BalanceView:
        return self._run(self.loyalty.balance(user_id))

    def withdraw(self, user_id: UserId, order: str, amount: Points | Decimal | int | str) -> bool:
        return self._run(self.loyalty.withdraw(user_id, order, amount))

    def withdrawals(self, user_id: UserId) -> Sequence[WithdrawalView]:
        return self._run(self.loyalty.withdrawals(user_id))

    def record_accrual(
        self,
        order: str,
        accrual: Points | Decimal | int | str | None = None,
        *,
        verdict: AccrualVerdict = AccrualVerdict.PROCESSED,
    ) -> Order:
        return self._run(self.loyalty.record_accrual(order, accrual, verdict=verdict))

    def reconcile(self) -> ReconcileReport:
        return self._run(self.loyalty.reconcile())

    def readiness(self) -> Readiness:
        return self._run(self.loyalty.readiness())

    def start_worker(self) -> None:
        """The accrual worker runs on the library's background loop until
        :meth:`stop_worker` or :meth:`close`."""
        self._run(self.loyalty.start_worker())

    def stop_worker(self) -> None:
        self._run(self.loyalty.stop_worker())
