"""A small async client for the emulator's control API (tests, benchmarks, demos)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import aiohttp


class EmulatorControlError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"emulator control {method} {path}: HTTP {status}: {body[:300]}")
        self.status = status


class EmulatorControl:
    """Typed-enough wrappers around `/emulator/...`; answers are the JSON documents."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> EmulatorControl:
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

    async def request(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = f"{self.base_url}/emulator{path}"
        async with self._session.request(method, url, json=body, params=params) as response:
            text = await response.text()
            if response.status >= 400:
                raise EmulatorControlError(method, path, response.status, text)
            return await response.json() if text else None

    # -- setup ------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/health")
        return result

    async def create_tenant(
        self,
        tenant_id: str | None = None,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        channels: dict[int, str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"tenant_id": tenant_id, "api_keys": [api_key] if api_key else []}
        if username is not None:
            body.update(username=username, password=password)
        if channels is not None:
            body["channels"] = channels
        result: dict[str, Any] = await self.request("POST", "/tenants", body)
        return result

    async def create_campaign(self, tenant_id: str, **spec: Any) -> dict[str, Any]:
        """`spec` follows `CampaignSpec` (customer_count, channel_ids, templates, ...)."""
        result: dict[str, Any] = await self.request("POST", f"/tenants/{tenant_id}/campaigns", spec)
        return result

    async def notify(self, tenant_id: str, **body: Any) -> dict[str, Any]:
        """`body` follows `NotifyRequest` (event_type_ids, campaign_id, duplicates, ...)."""
        path = f"/tenants/{tenant_id}/notifications"
        result: dict[str, Any] = await self.request("POST", path, body)
        return result

    async def cancel(self, tenant_id: str, campaign_id: int, **body: Any) -> dict[str, Any]:
        path = f"/tenants/{tenant_id}/campaigns/{campaign_id}/cancel"
        result: dict[str, Any] = await self.request("POST", path, body)
        return result

    async def expire_tokens(self, tenant_id: str, *, api_key_seconds: float | None = 5.0) -> int:
        """Expire the tenant's login tokens and refuse its API keys for `api_key_seconds` (None:
        until `enable_keys`); returns how many login tokens were expired."""
        body = {"api_key_seconds": api_key_seconds}
        result = await self.request("POST", f"/tenants/{tenant_id}/expire-tokens", body)
        return int(result["expired"])

    async def enable_keys(self, tenant_id: str) -> bool:
        result = await self.request("POST", f"/tenants/{tenant_id}/enable-keys")
        return bool(result["was_disabled"])

    # -- faults -----------------------------------------------------------------------------

    async def add_fault(self, **rule: Any) -> dict[str, Any]:
        """`rule` follows `FaultCreate` (function, status_codes, error_rate, times, hang_s...)."""
        result: dict[str, Any] = await self.request("POST", "/faults", rule)
        return result

    async def rate_limit_storm(self, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/faults/rate-limit-storm", body)
        return result

    async def clear_faults(self) -> None:
        await self.request("DELETE", "/faults")

    async def patch_settings(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("PATCH", "/settings", changes)
        return result

    # -- read back --------------------------------------------------------------------------

    async def _list(self, tenant_id: str, what: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request("GET", f"/tenants/{tenant_id}/{what}")
        return result

    async def metrics(self, tenant_id: str) -> list[dict[str, Any]]:
        return await self._list(tenant_id, "metrics")

    async def interactions(self, tenant_id: str) -> list[dict[str, Any]]:
        return await self._list(tenant_id, "interactions")

    async def preferences(self, tenant_id: str) -> list[dict[str, Any]]:
        return await self._list(tenant_id, "preferences")

    async def promotion_statuses(self, tenant_id: str) -> list[dict[str, Any]]:
        return await self._list(tenant_id, "promotion-statuses")

    async def listeners(self, tenant_id: str) -> list[dict[str, Any]]:
        return await self._list(tenant_id, "listeners")

    async def templates(self, tenant_id: str) -> list[dict[str, Any]]:
        return await self._list(tenant_id, "templates")

    async def apps(self, tenant_id: str) -> list[dict[str, Any]]:
        return await self._list(tenant_id, "apps")

    async def deliveries(self, tenant_id: str) -> list[dict[str, Any]]:
        return await self._list(tenant_id, "deliveries")

    async def requests(
        self, tenant_id: str | None = None, function: str | None = None
    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("tenant_id", tenant_id), ("function", function)) if v}
        result: list[dict[str, Any]] = await self.request("GET", "/requests", params=params)
        return result
