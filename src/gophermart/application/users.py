"""Registering and logging in."""

from __future__ import annotations

from dataclasses import dataclass

from gophermart.application.ports import (
    LoginThrottle,
    PasswordHasher,
    TokenIssuer,
    UnitOfWorkFactory,
)
from gophermart.domain.errors import InvalidCredentials
from gophermart.domain.users import Login, Password, UserId


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The outcome of register and login: who, and the credential to hand back."""

    user_id: UserId
    token: str


class Register:
    def __init__(self, uow: UnitOfWorkFactory, hasher: PasswordHasher, tokens: TokenIssuer) -> None:
        self._uow = uow
        self._hasher = hasher
        self._tokens = tokens

    async def __call__(self, raw_login: str, raw_password: str) -> Authenticated:
        login = Login.parse(raw_login)
        password = Password.parse(raw_password)
        # Hash before opening the transaction: ~100 ms of CPU must not hold a connection.
        password_hash = await self._hasher.hash(password)
        async with self._uow() as uow:
            user = await uow.users.add(login, password_hash)
            await uow.accounts.open(user.id)
            await uow.commit()
        return Authenticated(user.id, self._tokens.issue(user.id))


class LogIn:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: PasswordHasher,
        tokens: TokenIssuer,
        throttle: LoginThrottle,
    ) -> None:
        self._uow = uow
        self._hasher = hasher
        self._tokens = tokens
        self._throttle = throttle

    async def __call__(self, raw_login: str, raw_password: str, client: str) -> Authenticated:
        login = Login.parse(raw_login)
        password = Password.parse(raw_password)
        # Counted before the check, as a failure until it succeeds: a burst of
        # concurrent guesses is counted as it arrives.
        await self._throttle.attempt(login.value, client)
        async with self._uow() as uow:
            user = await uow.users.by_login(login)
        # A missing user is verified against a dummy hash: same cost, same answer.
        ok = await self._hasher.verify(user.password_hash if user else None, password)
        if user is None or not ok:
            raise InvalidCredentials("wrong login or password")
        await self._throttle.succeeded(login.value, client)
        return Authenticated(user.id, self._tokens.issue(user.id))
