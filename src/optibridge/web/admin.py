"""Everything operator-facing, mounted on the service's FastAPI app in one call:

/api/v1/...   admin API (bearer API keys)       optibridge.web.api
/ui/...       dashboard (login, session cookie)  optibridge.web.dashboard
/metrics      Prometheus                         optibridge.web.metrics
/livez /readyz  load-balancer probes             optibridge.web.probes
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from optibridge.runtime import Runtime
from optibridge.web import api, dashboard, metrics, probes
from optibridge.web.auth import ApiError


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 without the `input` and `ctx` it would echo: a body refused for one bad field
    would otherwise answer back every value around it, an API key or a password included."""
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def install(app: FastAPI, runtime: Runtime) -> None:
    """Mount it all; a second call on the same app does nothing."""
    if getattr(app.state, "optibridge_admin", False):
        return
    app.state.optibridge_admin = True
    if getattr(app.state, "runtime", None) is None:
        app.state.runtime = runtime  # the API's auth dependency finds the runtime there
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(probes.router(runtime))
    app.include_router(metrics.router(runtime))
    app.include_router(api.router(runtime))
    app.include_router(dashboard.router(runtime))
    app.mount(dashboard.PREFIX + "/static", StaticFiles(directory=dashboard.STATIC_DIR), name="ui-static")
