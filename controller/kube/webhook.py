"""The HTTPS server the API server posts AdmissionReviews to.

A ``kopf.WebhookServer`` with the parts guard cannot leave to defaults:

- one fixed path, ``/validate``; a request to any other path, or for a
  resource, subresource or operation guard does not judge, is **denied**
  (Kopf alone answers "allowed" when no handler matches);
- 503 until the policies, trust and attestations have been listed;
- a deliberate body limit, with a clear 413 beyond it and malformed JSON
  answered with a precise 400, so a hostile or huge request never takes the
  server down;
- the TLS certificate re-read when its files change, swapped into the live
  SSL context so no connection is refused during a renewal.

The request itself is judged here, in guard's own aiohttp application, by
the judge the operator's start-up handler sets on the runtime (it holds
Kopf's live indexes): Kopf's own admission path would rebuild a cause, a
body, a diff and a memo around every request for nothing guard reads. Kopf
still runs the process, its watches and the indexes, and starts this server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import ssl
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf
import orjson

from controller.kube.decide import unsupported_reason
from controller.kube.request import (
    AdmissionRequest,
    BadReview,
    decode_review,
    identity_of,
    parse_review,
)
from controller.kube.result import AdmissionResult, Reason, refuse
from controller.kube.runtime import GuardRuntime, Judge, not_ready_result
from controller.kube.settings import WEBHOOK_PATH
from controller.kube.text import printable

logger = logging.getLogger(__name__)


class GuardWebhookServer(kopf.WebhookServer):  # type: ignore[misc]
    """Kopf's webhook server, narrowed to guard's single path and rules."""

    def __init__(
        self,
        runtime: GuardRuntime,
        *,
        addr: str | None,
        port: int,
        certfile: Path,
        pkeyfile: Path,
        host: str | None = None,
        max_body: int,
        file_check_interval: float = 60.0,
    ) -> None:
        super().__init__(
            addr=addr,
            port=port or None,
            host=host,
            certfile=str(certfile),
            pkeyfile=str(pkeyfile),
            file_check_interval=file_check_interval,
        )
        self.runtime = runtime
        self.max_body = max_body
        self.tls_files = (certfile, pkeyfile)
        # Set once the socket listens; ``bound_port`` is the real port.
        self.listening = threading.Event()
        self.bound_port: int | None = None
        self.tls_reloads = 0
        # Set after each certificate swap (cleared by whoever waits for the next).
        self.tls_reloaded = threading.Event()

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        # ``fn`` is Kopf's admission machinery; guard judges with the judge
        # the operator's start-up handler set on the runtime instead.
        cadata, context = self._build_ssl()

        async def serve(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
            return await self._serve_guard(request)

        app = aiohttp.web.Application(client_max_size=self.max_body)
        app.router.add_route("*", "/{tail:.*}", serve)
        runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        readiness = asyncio.create_task(self.runtime.become_ready(), name="guard readiness")
        events = asyncio.create_task(self.runtime.events.run(), name="guard events")
        try:
            site = aiohttp.web.TCPSite(
                runner, self.addr or None, self.port or 0, ssl_context=context, reuse_address=True
            )
            await site.start()
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            self.bound_port = int(sockets[0].getsockname()[1]) if sockets else self.port
            host = self.host or self._get_accessible_addr(self.addr)
            url = self._build_url("https", host, self.bound_port or 0, WEBHOOK_PATH)
            logger.info("Serving admission reviews at %s", url)
            self.listening.set()
            config: kopf.WebhookClientConfig = {"url": url}
            if cadata is not None:
                config["caBundle"] = base64.b64encode(cadata).decode("ascii")
            yield config
            assert context is not None
            await self._reload_tls_forever(context)
        finally:
            readiness.cancel()
            events.cancel()
            await asyncio.gather(readiness, events, return_exceptions=True)
            await runner.cleanup()
            self.listening.clear()

    # ----------------------------------------------------------- TLS

    def _tls_digest(self) -> str:
        hasher = hashlib.sha256()
        for path in self.tls_files:
            hasher.update(Path(path).read_bytes())
        return hasher.hexdigest()

    async def _reload_tls_forever(self, context: ssl.SSLContext) -> None:
        """Swap a renewed certificate into the live context (new handshakes use it)."""
        current = self._tls_digest()
        while True:
            await asyncio.sleep(self.file_check_interval)
            try:
                latest = self._tls_digest()
                if latest == current:
                    continue
                context.load_cert_chain(str(self.tls_files[0]), str(self.tls_files[1]))
            except (OSError, ssl.SSLError) as exc:
                # A half-written renewal: keep serving the old certificate.
                logger.error(
                    "Cannot load the renewed TLS certificate, keeping the old one: %s", exc
                )
                continue
            current = latest
            self.tls_reloads += 1
            self.tls_reloaded.set()
            logger.info("Loaded the renewed TLS certificate.")

    # ----------------------------------------------------------- requests

    async def _serve_guard(self, http: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        """Answer one HTTP request; every answer is recorded exactly once."""
        started = time.perf_counter()
        try:
            result, http_status = await self._decide(http)
        except Exception as exc:  # a bug must deny, and leave its audit line
            logger.exception("Answering an admission review failed")
            result = refuse(
                "",
                Reason.error,
                f"guard failed while reading the request: {_describe(exc)}; denied",
                code=500,
            )
            http_status = 500
        return self._answer(result, started, http_status=http_status)

    async def _decide(self, http: aiohttp.web.Request) -> tuple[AdmissionResult, int]:
        """The answer to one HTTP request and the HTTP status to send it with."""
        try:
            body = await http.read()
        except aiohttp.web.HTTPRequestEntityTooLarge:
            message = (
                f"AdmissionReview body is larger than guard's {self.max_body}-byte limit; "
                "the request is denied (no Kubernetes object is this large)"
            )
            return refuse("", Reason.too_large, message, code=413), 413
        try:
            data = decode_review(body)
        except BadReview as exc:
            return _malformed(exc)
        uid, api_version = identity_of(data)
        if http.method != "POST" or http.path != WEBHOOK_PATH:
            message = (
                f"guard judges admission reviews only at POST {WEBHOOK_PATH}, not "
                f"{http.method} {http.path}: the request is denied unchecked; fix the "
                "webhook configuration's path"
            )
            result = refuse(uid, Reason.unsupported, message, code=404, api_version=api_version)
            return result, 200 if uid else 404
        try:
            request = parse_review(data)
        except BadReview as exc:
            return _malformed(exc)
        judge = self.runtime.judge
        if not self.runtime.readiness.ready or judge is None:
            waiting = self.runtime.readiness.waiting_for() or ["the operator's indexes"]
            return not_ready_result(request, request.uid, waiting), 503
        problem = unsupported_reason(request)
        if problem is not None:
            result = refuse(
                request.uid,
                Reason.unsupported,
                problem,
                request=request,
                api_version=request.api_version,
            )
            return result, 200
        return await self._judge(judge, request), 200

    async def _judge(self, judge: Judge, request: AdmissionRequest) -> AdmissionResult:
        try:
            return await judge(request)
        except Exception as exc:  # a bug must deny, never allow
            logger.exception("Admission of %s failed", request.uid)
            return refuse(
                request.uid,
                Reason.error,
                f"guard could not judge {request.resource_label} {request.operation}: "
                f"{_describe(exc)}; denied",
                code=500,
                request=request,
                api_version=request.api_version,
            )

    def _answer(
        self, result: AdmissionResult, started: float, *, http_status: int = 200
    ) -> aiohttp.web.Response:
        self.runtime.finish(result, started)
        if http_status != 200:
            return _plain(http_status, result.message)
        return _json(result.response())


def _describe(exc: BaseException) -> str:
    """An exception as one short line for an answer (the log has the traceback)."""
    return printable(str(exc) or type(exc).__name__)[:300]


def _json(data: Mapping[str, Any], status: int = 200) -> aiohttp.web.Response:
    """A JSON answer written by orjson (the response is guard's own data)."""
    try:
        body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        # A message orjson cannot write (a lone surrogate) must still be
        # answered: an HTTP 500 would hand the verdict to the failure policy.
        body = json.dumps(data).encode("ascii")
    return aiohttp.web.Response(body=body, status=status, content_type="application/json")


def _plain(status: int, message: str) -> aiohttp.web.Response:
    return _json(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": status,
            "message": message,
        },
        status=status,
    )


def _malformed(exc: BadReview) -> tuple[AdmissionResult, int]:
    """A review guard cannot read: denied in an AdmissionReview (HTTP 200,
    ``status.code`` 400) whenever its uid is known, so the API server takes
    the denial as the answer; an HTTP error would hand the verdict to the
    webhook's failure policy, which may be ``Ignore``. Only without a uid is
    there no review to answer, and a bare HTTP 400 is all that is left."""
    result = refuse(exc.uid, Reason.malformed, str(exc), code=400, api_version=exc.api_version)
    return result, 200 if exc.uid else 400
