"""Users: registering, logging in, and the credential a token carries."""

from __future__ import annotations

from dataclasses import dataclass

from gophermart.application.ports import (
    LoginThrottle,
    PasswordHasher,
    TokenIssuer,
    UnitOfWorkFactory,
)
from gophermart.domain.errors import InvalidCredentials
from gophermart.domain.users import Login, Password, UserId, valid_user_id


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The outcome of register and login: who, and the credential to hand back."""

    user_id: UserId
    token: str


class Users:
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

    async def register(self, login: str, password: str) -> Authenticated:
        """A new user with an empty account; their token comes back too."""
        valid_login = Login.parse(login)
        secret = Password.parse(password)
        # Hash before opening the transaction: ~100 ms of CPU must not hold a connection.
        password_hash = await self._hasher.hash(secret)
        async with self._uow() as uow:
            user = await uow.users.add(valid_login, password_hash)
            await uow.accounts.open(user.id)
            await uow.commit()
        return Authenticated(user.id, self._tokens.issue(user.id))

    async def log_in(self, login: str, password: str, client: str = "") -> Authenticated:
        """``client`` (an address) feeds the per-client login throttle."""
        valid_login = Login.parse(login)
        secret = Password.parse(password)
        # Counted before the check, as a failure until it succeeds: a burst of
        # concurrent guesses is counted as it arrives.
        await self._throttle.attempt(valid_login.value, client)
        async with self._uow() as uow:
            user = await uow.users.by_login(valid_login)
        # A missing user is verified against a dummy hash: same cost, same answer.
        ok = await self._hasher.verify(user.password_hash if user else None, secret)
        if user is None or not ok:
            raise InvalidCredentials("wrong login or password")
        await self._throttle.succeeded(valid_login.value, client)
        return Authenticated(user.id, self._tokens.issue(user.id))

    def authenticate(self, token: str) -> UserId:
        """The user a token speaks for; :class:`gophermart.Unauthenticated` otherwise."""
        return self._tokens.verify(token)

    def issue_token(self, user_id: UserId) -> str:
        """A token for a user the host authenticated by its own means."""
        return self._tokens.issue(valid_user_id(user_id))
