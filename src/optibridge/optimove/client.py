"""The async Optimove API client: one instance per tenant (one set of credentials).

Every call goes through `_send`, which adds authentication (API key, or a login token renewed
when idle too long or refused as expired), waits for a slot under the per-key rate limit shared
by the whole process, and retries transient failures (429, 5xx, timeouts, connection errors)
with jittered exponential backoff that honours `Retry-After`. The aiohttp session is the only
network boundary: pass one in, or the client opens (and closes) its own.

`outbound` is the operator's outbound policy (core.outbound): the client's own session resolves
through its guard, so a base URL whose name points inside is refused on every connection; a
literal-IP base URL (which aiohttp connects to without asking the resolver) is judged before any
request. Redirects are never followed. The service always passes its policy; None (no guard) is
for library use and tests against a local emulator.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import date
from types import TracebackType
from typing import Any, Final, TypeVar

import aiohttp

from optibridge.core.logs import get_logger
from optibridge.core.outbound import OutboundPolicy
from optibridge.optimove import responses
from optibridge.optimove.auth import ApiKeyAuth, LoginAuth, TokenState, is_token_expired_answer
from optibridge.optimove.batching import (
    MAX_INTERACTION_CUSTOMERS,
    MAX_ITEMS_PER_CALL,
    MAX_PREFERENCE_CUSTOMERS,
    chunked,
)
from optibridge.optimove.clock import SYSTEM_CLOCK, Clock
from optibridge.optimove.config import OptimoveClientConfig
from optibridge.optimove.errors import (
    OptimoveAuthError,
    OptimoveError,
    OptimoveRequestError,
    OptimoveResponseError,
    error_for_status,
    excerpt,
)
from optibridge.optimove.exchange import exchange
from optibridge.optimove.models import (
    CampaignDetails,
    CampaignMetric,
    CanceledCustomer,
    ChannelApp,
    ChannelTemplate,
    EventListener,
    ExecutionChannel,
    SendDetailsPage,
)
from optibridge.optimove.paging import iterate_pages
from optibridge.optimove.ratelimit import (
    DEFAULT_REGISTRY,
    Limiter,
    LimiterSource,
)
from optibridge.optimove.retry import backoff_delay, parse_retry_after
from optibridge.optimove.timefmt import format_optimove_date

T = TypeVar("T")

# Characters the attribute delimiter may not be (client-side rule of the reference client [GH-nr]).
_FORBIDDEN_DELIMITER_CHARS: Final = frozenset(":/?&#%$+=;")
_JSON_HEADERS: Final = {"Content-Type": "application/json"}
# Calls whose answer may legitimately be a bare JSON string (Login's token; GetLastDataUpdate's
# parser accepts a bare date). Any other 2xx string body is an error message, not data.
_STRING_ANSWERS: Final = frozenset({"GetLastDataUpdate"})

log = get_logger(__name__)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _number(value: float) -> float | int:
    # Optimove's samples send counts as integers; 925.0 would be a needless surprise.
    return int(value) if float(value).is_integer() else value


class OptimoveClient:
    """Async client for one Optimove tenant.

    Use as `async with OptimoveClient(config) as client: ...`, or call `aclose()` when done.
    `clock`, `rng` and `limiters` exist for tests: a `ManualClock` makes every wait instant,
    a seeded `random.Random` makes jitter repeatable, and a private `RateLimiterRegistry`
    keeps one test's budget from leaking into another's (the service passes a
    `SharedLimiters`, which shares each key's budget across processes through PostgreSQL).
    """

    def __init__(
        self,
        config: OptimoveClientConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        limiters: LimiterSource | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.config = config
        self._outbound = outbound
        self._refused = outbound.check_url(config.base_url) if outbound is not None else None
        self._session = session
        self._owns_session = session is None
        self._clock: Clock = clock or SYSTEM_CLOCK
        self._rng = rng or random.Random()
        registry = limiters or DEFAULT_REGISTRY
        key = config.auth.limiter_key(config.base_url)
        self._limiter: Limiter | None = (
            registry.limiter(key, config.rate_limit, self._clock) if config.rate_limit else None
        )
        self._login_limiter = registry.limiter(f"login:{key}", config.login_rate_limit, self._clock)
        self._token = TokenState(ttl_s=config.token_ttl_s, margin_s=config.token_refresh_margin_s)
        self._login_lock: asyncio.Lock | None = None
        self._base = config.base_url.rstrip("/") + "/" + config.path_prefix.strip("/")
        self._base = self._base.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=config.timeouts.total_s, sock_connect=config.timeouts.connect_s
        )
        # Counters for observability and tests.
        self.requests_sent = 0
        self.logins = 0
        self.retries = 0

    # -- life cycle ------------------------------------------------------------------------

    async def __aenter__(self) -> OptimoveClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_connections,
                resolver=self._outbound.resolver() if self._outbound is not None else None,
            )
            self._session = aiohttp.ClientSession(connector=connector, headers={"Accept": "application/json"})
        return self._session

    # -- transport, auth, retries -----------------------------------------------------------

    async def _auth_headers(self) -> tuple[dict[str, str], str | None]:
        auth = self.config.auth
        if isinstance(auth, ApiKeyAuth):
            return {"X-API-KEY": auth.api_key}, None
        for _ in range(3):  # bounded: another task may revoke the fresh token before we use it
            if not self._token.usable(self._clock.monotonic()):
                if self._login_lock is None:
                    self._login_lock = asyncio.Lock()
                async with self._login_lock:
                    # Single flight: tasks that queued behind a login reuse its token.
                    if not self._token.usable(self._clock.monotonic()):
                        await self._login(auth)
            token = self._token.token
            if token is not None:
                return {"Authorization-Token": token}, token
        raise OptimoveAuthError(
            "Optimove login tokens keep being revoked as soon as they are issued",
            call="Login",
            retryable=True,
        )

    async def _login(self, auth: LoginAuth) -> str:
        body = _dumps({"Username": auth.username, "Password": auth.password})
        payload = await self._send(
            "Login", "POST", "general/login", body=body, authenticate=False, login=True
        )
        token = self._decode("Login", payload, _parse_token)
        self._token.set(token, self._clock.monotonic())
        self.logins += 1
        log.info("optimove.login", base_url=self.config.base_url, user=auth.username)
        return token

    async def _send(
        self,
        call: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        authenticate: bool = True,
        login: bool = False,
    ) -> bytes:
        """Send one logical request, retrying as the policy allows; return the 2xx body."""
        if self._refused is not None:
            raise OptimoveRequestError(
                f"Optimove {call} not sent: the API base URL is refused ({self._refused})",
                call=call,
                retryable=False,
            )
        policy = self.config.retry
        url = f"{self._base}/{path}"
        renewed = False
        attempt = 0
        while True:  # bounded: `attempt` grows to policy.max_attempts; one token renewal
            attempt += 1
            headers: dict[str, str] = dict(_JSON_HEADERS) if body is not None else {}
            token: str | None = None
            if authenticate:
                auth_headers, token = await self._auth_headers()
                headers.update(auth_headers)
            if login:
                await self._login_limiter.wait()
            if self._limiter is not None:
                await self._limiter.wait()
            retry_after: float | None = None
            error: OptimoveError
            self.requests_sent += 1
            answer = await exchange(
                self._http(), method, url, call=call, attempt=attempt, limits=self._timeout,
                total_s=self.config.timeouts.total_s, params=params, data=body, headers=headers,
            )  # fmt: skip
            if isinstance(answer, OptimoveError):
                error = answer
            else:
                status, payload = answer.status, answer.payload
                message = None if login or call in _STRING_ANSWERS else responses.error_string(payload)
                if 200 <= status < 300 and message is None:
                    if token is not None:
                        self._token.touch(token, self._clock.monotonic())
                    return payload
                if token is not None and not renewed and is_token_expired_answer(status, payload):
                    # The sliding expiry lapsed on the server's side: log in again, once, and
                    # repeat the call without counting it as a retry.
                    renewed = True
                    self._token.invalidate(token)
                    attempt -= 1
                    log.info("optimove.token_expired", call=call)
                    continue
                if message is not None and 200 <= status < 300:
                    error = _error_string_answer(call, status, message, attempt)
                else:
                    error = error_for_status(call, status, payload, attempt)
                    retry_after = parse_retry_after(answer.retry_after, self._clock.now())
            if not error.retryable or attempt >= policy.max_attempts:
                raise error
            delay = backoff_delay(policy, attempt, self._rng.random(), retry_after)
            self.retries += 1
            log.warning(
                "optimove.retry",
                call=call,
                attempt=attempt,
                status=error.status,
                error=type(error).__name__,
                delay_s=round(delay, 3),
            )
            await self._clock.sleep(delay)

    @staticmethod
    def _decode(call: str, payload: bytes, parse: Callable[[Any], T]) -> T:
        try:
            data = json.loads(payload) if payload.strip() else None
            return parse(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # The parser's words without the row it quotes (upstream data: never in messages).
            what = str(exc).split(": {", 1)[0][:120]
            raise OptimoveResponseError(
                f"Optimove {call} returned a body that is not what the call returns "
                f"({len(payload)} bytes): {what}",
                call=call,
                body_excerpt=excerpt(payload),
            ) from exc

    async def _get(self, call: str, path: str, params: dict[str, str] | None = None) -> bytes:
        return await self._send(call, "GET", path, params=params)

    async def _post(self, call: str, path: str, body: Any, params: dict[str, str] | None = None) -> None:
        await self._send(call, "POST", path, params=params, body=_dumps(body))

    # -- general ----------------------------------------------------------------------------

    async def login(self) -> str:
        """Log in now (legacy auth) and return the token. Calls do this by themselves."""
        auth = self.config.auth
        if not isinstance(auth, LoginAuth):
            raise OptimoveRequestError("login() needs username/password auth", call="Login")
        return await self._login(auth)

    async def register_event_listener(
        self, event_type_id: int, listener_url: str, channel_id: int | None = None
    ) -> None:
        body: dict[str, Any] = {"EventTypeID": int(event_type_id), "ListenerURL": listener_url}
        if channel_id is not None:
            body["ChannelID"] = int(channel_id)
        await self._post("RegisterEventListener", "general/RegisterEventListener", body)

    async def unregister_event_listener(self, event_type_id: int, channel_id: int | None = None) -> None:
        body: dict[str, Any] = {"EventTypeID": int(event_type_id)}
        if channel_id is not None:
            body["ChannelID"] = int(channel_id)
        await self._post("UnregisterEventListener", "general/UnregisterEventListener", body)

    async def get_registered_event_listeners(self) -> list[EventListener]:
        call = "GetRegisteredEventListeners"
        payload = await self._get(call, f"general/{call}")
        return self._decode(call, payload, responses.parse_listeners)

    async def get_last_data_update(self) -> date:
        call = "GetLastDataUpdate"
        payload = await self._get(call, f"general/{call}")
        return self._decode(call, payload, responses.parse_last_data_update)

    # -- templates and apps -----------------------------------------------------------------

    async def get_channel_templates(self, channel_id: int) -> list[ChannelTemplate]:
        call = "GetChannelTemplates"
        payload = await self._get(call, f"integrations/{call}", {"ChannelID": str(channel_id)})
        return self._decode(call, payload, responses.parse_templates)

    async def add_channel_templates(self, channel_id: int, templates: Iterable[ChannelTemplate]) -> None:
        """Add (or rename) templates, in calls of at most 100."""
        call = "AddChannelTemplates"
        items = [{"TemplateID": int(t.template_id), "TemplateName": t.template_name} for t in templates]
        if any(not item["TemplateName"] for item in items):
            raise OptimoveRequestError("every template needs a non-empty name", call=call)
        for chunk in chunked(items, MAX_ITEMS_PER_CALL):
            await self._post(call, f"integrations/{call}", chunk, {"ChannelID": str(channel_id)})

    async def delete_channel_templates(self, channel_id: int, template_ids: Iterable[int]) -> None:
        call = "DeleteChannelTemplates"
        items = [{"ChannelID": int(channel_id), "TemplateID": int(t)} for t in template_ids]
        for chunk in chunked(items, MAX_ITEMS_PER_CALL):
            await self._post(call, f"integrations/{call}", chunk)

    async def add_channel_apps(self, channel_id: int, apps: Iterable[ChannelApp]) -> None:
        call = "AddChannelApps"
        items = [{"AppID": a.app_id, "AppName": a.app_name} for a in apps]
        for chunk in chunked(items, MAX_ITEMS_PER_CALL):
            await self._post(call, f"integrations/{call}", chunk, {"ChannelID": str(channel_id)})

    async def delete_channel_apps(self, channel_id: int, app_ids: Iterable[str]) -> None:
        call = "DeleteChannelApps"
        items = [{"ChannelID": int(channel_id), "AppID": a} for a in app_ids]
        for chunk in chunked(items, MAX_ITEMS_PER_CALL):
            await self._post(call, f"integrations/{call}", chunk)

    # -- customers --------------------------------------------------------------------------

    def _send_details_params(
        self,
        campaign_id: int,
        channel_id: int,
        attributes: Sequence[str],
        delimiter: str | None,
    ) -> dict[str, str]:
        call = "GetCustomerSendDetailsByChannel"
        params = {"CampaignID": str(campaign_id), "ChannelID": str(channel_id)}
        if attributes:
            bad = [name for name in attributes if not name or ";" in name]
            if bad:
                raise OptimoveRequestError(f"invalid attribute names: {bad!r}", call=call)
            params["CustomerAttributes"] = ";".join(attributes)
        if delimiter is not None:
            if len(delimiter) != 1 or delimiter in _FORBIDDEN_DELIMITER_CHARS:
                raise OptimoveRequestError(f"invalid delimiter: {delimiter!r}", call=call)
            params["CustomerAttributesDelimiter"] = delimiter
        return params

    async def get_send_details_page(
        self,
        campaign_id: int,
        channel_id: int,
        attributes: Sequence[str] = (),
        *,
        top: int | None = None,
        skip: int = 0,
        delimiter: str | None = None,
    ) -> SendDetailsPage:
        """One page of GetCustomerSendDetailsByChannel."""
        call = "GetCustomerSendDetailsByChannel"
        top = self.config.page_size if top is None else top
        params = self._send_details_params(campaign_id, channel_id, attributes, delimiter)
        params["$top"] = str(top)
        params["$skip"] = str(skip)
        payload = await self._get(call, f"customers/{call}", params)
        split_on = delimiter or ","
        expected = len(attributes)
        rows = self._decode(call, payload, lambda d: responses.parse_send_details(d, split_on, expected))
        return SendDetailsPage(campaign_id, channel_id, skip, top, tuple(attributes), rows)

    def iter_send_details(
        self,
        campaign_id: int,
        channel_id: int,
        attributes: Sequence[str] = (),
        *,
        page_size: int | None = None,
        start_skip: int = 0,
        delimiter: str | None = None,
    ) -> AsyncIterator[SendDetailsPage]:
        """All send details of a campaign on a channel, as an async iterator of non-empty pages.

        Stops at the first empty page or (by default) the first page shorter than requested.
        `start_skip` resumes from an offset, e.g. after a crash mid-campaign.
        """
        attrs = tuple(attributes)
        self._send_details_params(campaign_id, channel_id, attrs, delimiter)  # validate now
        size = page_size or self.config.page_size

        async def fetch(skip: int, top: int) -> SendDetailsPage:
            return await self.get_send_details_page(
                campaign_id, channel_id, attrs, top=top, skip=skip, delimiter=delimiter
            )

        return iterate_pages(
            fetch,
            call="GetCustomerSendDetailsByChannel",
            page_size=size,
            start_skip=start_skip,
            max_pages=self.config.max_pages,
            stop_on_short_page=self.config.stop_on_short_page,
            prefetch=self.config.prefetch_pages,
        )

    async def get_canceled_campaign_customers(self, campaign_id: int) -> list[CanceledCustomer]:
        """Customers removed from a canceled campaign (available 2 h after event 4).

        Not paged: the docs show no `$top`/`$skip` here, and a server that ignored them would
        make a paging loop re-read the same list forever.
        """
        call = "GetCanceledCampaignCustomers"
        payload = await self._get(call, f"customers/{call}", {"CampaignID": str(campaign_id)})
        return self._decode(call, payload, responses.parse_canceled_customers)

    # -- actions ----------------------------------------------------------------------------

    async def get_campaign_details(self, campaign_id: int) -> CampaignDetails:
        call = "GetCampaignDetails"
        payload = await self._get(call, f"actions/{call}", {"CampaignID": str(campaign_id)})
        return self._decode(call, payload, lambda d: responses.parse_campaign_details(campaign_id, d))

    async def get_execution_channels(self) -> list[ExecutionChannel]:
        call = "GetExecutionChannels"
        payload = await self._get(call, f"actions/{call}")
        return self._decode(call, payload, responses.parse_execution_channels)

    # -- reporting --------------------------------------------------------------------------

    async def update_campaign_metrics(self, metrics: Iterable[CampaignMetric]) -> None:
        """Report metric values (running totals), in calls of at most 100 items."""
        call = "UpdateCampaignMetrics"
        items = [
            {
                "CampaignID": int(m.campaign_id),
                "ChannelID": int(m.channel_id),
                "TemplateID": int(m.template_id),
                "MetricID": int(m.metric_id),
                "MetricValue": _number(m.metric_value),
            }
            for m in metrics
        ]
        for chunk in chunked(items, MAX_ITEMS_PER_CALL):
            await self._post(call, f"integrations/{call}", chunk)

    async def update_campaign_interactions(
        self,
        *,
        campaign_id: int,
        channel_id: int,
        template_id: int,
        event_id: int,
        interaction_date: date,
        customer_ids: Iterable[str],
        recipient_group_id: int = 1,
        app_id: str | None = None,
    ) -> None:
        """Report customers who had an interaction, in calls of at most 10,000 customers."""
        call = "UpdateCampaignInteractions"
        base: dict[str, Any] = {
            "CampaignID": int(campaign_id),
            "ChannelID": int(channel_id),
            "InteractionDate": format_optimove_date(interaction_date),
            "TemplateID": int(template_id),
            "EventID": int(event_id),
            "RecipientGroupID": int(recipient_group_id),
        }
        if app_id is not None:
            base["AppID"] = app_id
        for chunk in chunked(customer_ids, MAX_INTERACTION_CUSTOMERS):
            await self._post(call, f"integrations/{call}", {**base, "CustomerIDs": chunk})

    async def set_customer_channel_preference(
        self,
        *,
        channel_id: int,
        customer_ids: Iterable[str],
        communication_mode: int,
        app_id: str | None = None,
    ) -> None:
        """Set customers' opt-in/out on a channel, in calls of at most 50,000 customers."""
        call = "SetCustomerChannelPreference"
        base: dict[str, Any] = {
            "ChannelID": int(channel_id),
            "CommunicationMode": int(communication_mode),
        }
        if app_id is not None:
            base["AppID"] = app_id
        for chunk in chunked(customer_ids, MAX_PREFERENCE_CUSTOMERS):
            await self._post(call, f"integrations/{call}", {**base, "CustomerIDs": chunk})


def _error_string_answer(call: str, status: int, message: str, attempts: int) -> OptimoveResponseError:
    """A 2xx whose body is a bare JSON string such as "Error: ...": never data.

    Retryable: nothing says what such an answer means, and the one client that handles it
    ([CODE-go]) treats it as a server-side failure message; like a 5xx, trying again later may
    help, and the retry policy bounds how often. docs/optimove-api-notes.md, "Emulator realism".
    """
    text = excerpt(message)
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return OptimoveResponseError(
        f"Optimove {call} answered HTTP {status} with an error message instead of data{tries}",
        call=call,
        status=status,
        body_excerpt=text,
        attempts=attempts,
        retryable=True,
    )


def _parse_token(data: Any) -> str:
    # The live API answers with the token as a bare JSON string (optimove-api.md §2.1).
    if isinstance(data, str) and data:
        return data
    if isinstance(data, dict):
        for key, value in data.items():
            if key.lower() in ("token", "authorizationtoken") and isinstance(value, str):
                return value
    raise ValueError("no token in the login answer")
