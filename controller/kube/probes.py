"""Liveness, readiness and metrics on their own plain-HTTP port.

Kept off the webhook's TLS port so the kubelet's probes and Prometheus need
no certificate, and so a flood of admissions cannot starve the probes.
"""

from __future__ import annotations

import aiohttp.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.kube.runtime import GuardRuntime


def probes_app(runtime: GuardRuntime) -> aiohttp.web.Application:
    async def healthz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="ok\n")

    async def readyz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        if runtime.readiness.ready:
            return aiohttp.web.Response(text="ready\n")
        waiting = "\n".join(runtime.readiness.waiting_for())
        return aiohttp.web.Response(status=503, text=f"not ready:\n{waiting}\n")

    async def metrics(_: aiohttp.web.Request) -> aiohttp.web.Response:
        body = generate_latest(runtime.metrics.registry)
        return aiohttp.web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = aiohttp.web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_probes(
    runtime: GuardRuntime, host: str, port: int
) -> tuple[aiohttp.web.AppRunner, int]:
    """Start serving; returns the runner (to clean up) and the bound port."""
    runner = aiohttp.web.AppRunner(probes_app(runtime), handle_signals=False, access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    return runner, bound
