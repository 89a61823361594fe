"""Users: registering, logging in, and the credential a token carries."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

from gophermart.application.errors import StoreUnavailable, Unauthenticated
from gophermart.application.ports import (
    HostConnection,
    LoginThrottle,
    PasswordHasher,
    TokenIssuer,
    UnitOfWorkFactory,
    UserRepository,
)
from gophermart.domain.errors import InvalidCredentials, InvalidInput, LoginTaken
from gophermart.domain.users import Login, Password, User, UserId, valid_user_id


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The outcome of register and login: who, and the credential to hand back; and
    the device token to keep on the client (the HTTP API's ``device`` cookie): sent back
    at later logins, it proves the device logged in before, and such a device is not
    locked out by other people's guesses at the login."""

    user_id: UserId
    token: str
    device: str | None = None


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

    async def register(
        self,
        login: str,
        password: str,
        client: str = "",
        device: str | None = None,
        *,
        connection: HostConnection | None = None,
    ) -> Authenticated:
        """A new user with an empty account; their token comes back too. ``client``
        and ``device`` are remembered as the owner's, as after a login. ``connection``:
        the host's open transaction, which the new user joins."""
        valid_login = Login.parse(login)
        secret = Password.parse(password)
        client, device = _caller(client, device)
        # Hash before opening the transaction: ~100 ms of CPU must not hold a connection.
        password_hash = await self._hasher.hash(secret)
        async with self._uow(connection) as uow:
            # A login registered before issue 15 under exactly what was typed (a
            # look-alike that is now folded) is taken: it is what that typing reaches.
            for older in Login.candidates(login):
                if older != valid_login and await uow.users.by_login(older) is not None:
                    raise LoginTaken(older.value)
            user = await uow.users.add(valid_login, password_hash)
            await uow.accounts.open(user.id)
            await uow.commit()
        kept = None
        # The account exists now: an outage here must not turn its creation into a
        # 503 that a retry answers 409. Unremembered, the device waits for a login.
        with contextlib.suppress(StoreUnavailable):
            kept = await self._throttle.remember(valid_login.value, client, device)
        return Authenticated(user.id, self._tokens.issue(user.id), kept)

    async def log_in(
        self, login: str, password: str, client: str = "", device: str | None = None
    ) -> Authenticated:
        """``client`` (an address) and ``device`` (the token a device cookie carries)
        feed the login throttle."""
        candidates = Login.candidates(login)
        secret = Password.parse(password)
        client, device = _caller(client, device)
        async with self._uow() as uow:
            user = await _first(uow.users, candidates)
        # Throttled under the account's own login: typing it another way (fullwidth,
        # a ligature) must not open a fresh budget of guesses.
        name = user.login.value if user is not None else candidates[-1].value
        await self._throttle.check(name, client, device)
        # Counted when the hasher gives it its turn, as a failure until it succeeds:
        # at the speed passwords are checked, whatever the speed requests arrive at.
        ok = await self._hasher.verify(
            user.password_hash if user else None,  # None costs a dummy hash: same answer time
            secret,
            admitted=functools.partial(self._throttle.attempt, name, client, device),
        )
        if user is None or not ok:
            raise InvalidCredentials("wrong login or password")
        kept = await self._throttle.succeeded(name, client, device)
        return Authenticated(user.id, self._tokens.issue(user.id), kept)

    def authenticate(self, token: str) -> UserId:
        """The user a token speaks for; :class:`gophermart.Unauthenticated` otherwise."""
        if type(token) is not str:
            raise Unauthenticated(f"a token is text, not {type(token).__name__}")
        return self._tokens.verify(token)

    def issue_token(self, user_id: UserId) -> str:
        """A token for a user the host authenticated by its own means."""
        return self._tokens.issue(valid_user_id(user_id))


def _caller(client: object, device: object) -> tuple[str, str | None]:
    """The caller's address and device token as a host hands them in: text, and text or
    ``None`` (anything else would reach the login throttle's keys)."""
    if type(client) is not str or not client.isprintable():
        raise InvalidInput(f"client is an address as printable text, not {client!r:.40}")
    if device is not None and (type(device) is not str or not device.isprintable()):
        raise InvalidInput(f"device is a token as printable text, not {device!r:.40}")
    return client, device


async def _first(users: UserRepository, logins: tuple[Login, ...]) -> User | None:
    """The first of ``logins`` that is an account's (:meth:`Login.candidates`' order)."""
    for login in logins:
        user = await users.by_login(login)
        if user is not None:
            return user
    return None
