"""The ``guard serve`` process: the Kopf operator with guard's webhook server and probes.

Always standalone: Kopf's peering pauses watch streams when another replica
holds priority, and a paused replica would keep answering admissions from
stale indexes. Kopf's managed webhook configuration is off: it is URL-only,
fixes a 30 s timeout, has no namespaceSelector and removes its webhooks on
exit (failing open during restarts); the chart ships the configuration.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf

from controller.errors import InputError
from controller.kube.audit import AuditLog
from controller.kube.kubeapi import list_objects, post_event, read_named
from controller.kube.probes import start_probes
from controller.kube.reporting import background_scan
from controller.kube.runtime import GuardRuntime
from controller.kube.settings import ServeSettings
from controller.kube.state import FileInputs
from controller.kube.webhook import GuardWebhookServer
from controller.policy.strictmodel import complete_guard_models
from controller.strict import StrictJSONError, load_json_or_yaml

Flag = asyncio.Event | asyncio.Future[Any] | threading.Event

# Where a Pod's service account token is mounted (what Kopf's in-cluster login reads).
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def preflight(settings: ServeSettings, environ: Mapping[str, str] = os.environ) -> None:
    """What ``guard serve`` needs before anything starts, each refused in
    one line: its TLS files, then a way to reach the API server."""
    require_tls_files(settings)
    require_api_credentials(environ)


def require_tls_files(settings: ServeSettings) -> tuple[Path, Path]:
    if settings.tls_cert is None or settings.tls_key is None:
        raise InputError("--tls-cert and --tls-key are required: the API server only speaks HTTPS")
    for flag, path in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key)):
        if not path.is_file():
            raise InputError(f"{flag} {path}: no such file")
    return settings.tls_cert, settings.tls_key


def require_api_credentials(
    environ: Mapping[str, str] = os.environ,
    *,
    token: Path | None = None,
    home: Path | None = None,
) -> None:
    """Refuse, in one line, to start without a way to reach the API server.

    The operator logs in as ``controller.operator.login`` does: the
    in-cluster service account, else a kubeconfig (``KUBECONFIG``, a list of
    files, or ``~/.kube/config``). Without either, Kopf would fail deep in
    its start-up with a long traceback; this names what is missing instead.
    """
    token = token or SERVICE_ACCOUNT_TOKEN
    if token.is_file():
        return
    listed = environ.get("KUBECONFIG", "")
    paths = [Path(p.strip()).expanduser() for p in listed.split(os.pathsep) if p.strip()]
    source = "KUBECONFIG"
    if not paths:
        default = (home or Path.home()) / ".kube" / "config"
        if not default.is_file():
            raise InputError(
                "guard serve needs the Kubernetes API: no in-cluster service account "
                f"({token} does not exist) and no kubeconfig (KUBECONFIG is not set and "
                f"{default} does not exist); run it in a cluster or set KUBECONFIG"
            )
        paths, source = [default], str(default)
    current: Any = None
    for path in paths:
        try:
            config = load_json_or_yaml(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, StrictJSONError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else exc
            raise InputError(f"{source}: cannot read kubeconfig {path}: {reason}") from None
        if current is None and isinstance(config, Mapping):
            current = config.get("current-context")
    if not isinstance(current, str) or not current:
        raise InputError(
            f"{source}: the kubeconfig sets no current-context "
            "(kubectl config use-context NAME chooses one)"
        )


def operator_settings(server: GuardWebhookServer) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.admission.server = server
    settings.admission.managed = None
    # Kopf would post every handler log line as a Kubernetes Event; guard
    # posts the events it means to, rate-limited, itself.
    settings.posting.enabled = False
    return settings


class GuardService:
    """One running ``guard serve``: runtime, webhook server, probes, operator."""

    def __init__(
        self,
        settings: ServeSettings,
        files: FileInputs,
        *,
        registry: kopf.OperatorRegistry,
    ) -> None:
        tls_cert, tls_key = require_tls_files(settings)
        self.settings = settings
        self.runtime = GuardRuntime(
            settings,
            files,
            lister=self._list,
            reader=self._read,
            poster=self._post_event,
            audit=AuditLog.for_service(settings),
        )
        self.server = GuardWebhookServer(
            self.runtime,
            addr=settings.webhook_host,
            port=settings.webhook_port,
            certfile=tls_cert,
            pkeyfile=tls_key,
            max_body=settings.max_review_bytes,
            file_check_interval=settings.tls_check_interval,
        )
        self.kopf_settings = operator_settings(self.server)
        # The Kopf handlers (``controller.operator``), handed in by the caller:
        # nothing below the operator imports it.
        self.registry = registry
        self.probes_port: int | None = None
        self.scanner = background_scan(settings, self.kopf_settings, self.runtime, self._post_event)

    async def _list(self, plural: str, namespace: str | None) -> list[Mapping[str, Any]]:
        return await list_objects(self.kopf_settings, plural, namespace)

    async def _read(
        self, api_version: str, plural: str, namespace: str, name: str
    ) -> Mapping[str, Any] | None:
        return await read_named(
            self.kopf_settings,
            api_version,
            plural,
            namespace,
            name,
            timeout=self.settings.fallback_timeout,
        )

    async def _post_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        await post_event(self.kopf_settings, namespace, body)

    async def run(self, stop_flag: Flag | None = None) -> None:
        runner, self.probes_port = await start_probes(
            self.runtime, self.settings.metrics_host, self.settings.metrics_port
        )
        try:
            await kopf.operator(
                registry=self.registry,
                settings=self.kopf_settings,
                standalone=True,
                clusterwide=self.settings.clusterwide,
                namespaces=list(self.settings.namespaces),
                memo=kopf.Memo(runtime=self.runtime, scanner=self.scanner),
                stop_flag=stop_flag,
            )
        finally:
            await runner.cleanup()
            self.runtime.audit.close()


def freeze_start_up_objects() -> None:
    """Build every document validator, then leave everything start-up made
    out of the garbage collector's walks.

    Imports, validators and loaded policies are about 200,000 objects that
    live as long as the process. The collector's full pass walks all of them
    (a tenth of a second on a small node) and would land in the middle of an
    admission request; frozen, they are never walked again and its passes
    see only what was made since (``gc.freeze``). The price: the start-up
    engine, once cluster policies replace it, is freed by reference counts
    only, so a reference cycle in it stays (once, not per reload). Called
    once by ``guard serve``, before the operator starts.
    """
    complete_guard_models()
    gc.collect()
    gc.freeze()
