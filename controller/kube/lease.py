"""One report writer among the replicas, elected with a coordination.k8s.io Lease.

Every replica serves admission; only the holder of the Lease writes policy
reports, so two replicas never fight over the same report. Kopf's own
peering is never used: it pauses the watch streams of the replicas that do
not hold priority, which would freeze the indexes admission reads.

The holder renews the Lease every round (``renew``, a few seconds); another
replica takes it over once ``renewTime`` is older than
``leaseDurationSeconds`` by its own clock, so a holder that dies is replaced
within ``duration + renew``. The API server's resourceVersion check makes
the take-over atomic: of two replicas updating the same Lease, one gets a
conflict and stays a follower. A holder that stops (a roll-out) releases the
Lease so the next replica takes over at once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from controller.kube.kubeapi import ApiConflict, object_path

API_VERSION = "coordination.k8s.io/v1"
PLURAL = "leases"
logger = logging.getLogger(__name__)


class LeaseApi(Protocol):
    """get/create/replace of one Lease (``LeaseResource`` in the operator)."""

    async def get(self) -> Mapping[str, Any] | None: ...

    async def create(self, body: Mapping[str, Any]) -> Mapping[str, Any] | None: ...

    async def replace(self, body: Mapping[str, Any]) -> Mapping[str, Any] | None: ...


def micro_time(at: dt.datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC)."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class LeaseState:
    holder: str
    renewed: dt.datetime | None
    duration: dt.timedelta
    transitions: int


def state_of(lease: Mapping[str, Any]) -> LeaseState:
    spec = lease.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    seconds = spec.get("leaseDurationSeconds")
    transitions = spec.get("leaseTransitions")
    return LeaseState(
        holder=str(spec.get("holderIdentity") or ""),
        renewed=_parse(spec.get("renewTime")),
        duration=dt.timedelta(seconds=seconds if isinstance(seconds, int) else 0),
        transitions=transitions if isinstance(transitions, int) else 0,
    )


class LeaderElector:
    """Holds (or waits for) one Lease on behalf of ``identity``."""

    def __init__(
        self,
        api: LeaseApi,
        *,
        name: str,
        namespace: str,
        identity: str,
        duration: dt.timedelta,
        now: Callable[[], dt.datetime],
    ) -> None:
        if duration < dt.timedelta(seconds=1):
            raise ValueError("a lease lasts at least one second")
        self.api = api
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.duration = duration
        self.now = now
        self.leading = False

    def _body(self, previous: Mapping[str, Any] | None, state: LeaseState | None) -> dict[str, Any]:
        now = micro_time(self.now())
        taking_over = state is None or state.holder != self.identity
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration.total_seconds()),
            "renewTime": now,
            "acquireTime": now,
            "leaseTransitions": (state.transitions + 1) if state and taking_over else 0,
        }
        if state is not None and not taking_over and previous is not None:
            old_spec = previous.get("spec")
            if isinstance(old_spec, Mapping) and old_spec.get("acquireTime"):
                spec["acquireTime"] = old_spec["acquireTime"]
            spec["leaseTransitions"] = state.transitions
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if previous is not None:
            version = (previous.get("metadata") or {}).get("resourceVersion")
            if version:
                metadata["resourceVersion"] = version
        return {"apiVersion": API_VERSION, "kind": "Lease", "metadata": metadata, "spec": spec}

    async def hold(self) -> bool:
        """One round: acquire, renew, or see that another replica holds it."""
        try:
            leading = await self._round()
        except ApiConflict:
            leading = False  # another replica moved first
        except Exception as exc:  # the API is unreachable: stop writing, keep serving
            logger.warning("report writer lease %s: %s", self.name, exc)
            leading = False
        self.leading = leading
        return leading

    async def _round(self) -> bool:
        lease = await self.api.get()
        if lease is None:
            return await self.api.create(self._body(None, None)) is not None
        state = state_of(lease)
        expired = state.renewed is None or self.now() > state.renewed + state.duration
        if state.holder and state.holder != self.identity and not expired:
            return False
        return await self.api.replace(self._body(lease, state)) is not None

    async def release(self) -> None:
        """Give the Lease up on a clean stop, so another replica writes at once."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = await self.api.get()
            if lease is None or state_of(lease).holder != self.identity:
                return
            body = self._body(lease, state_of(lease))
            body["spec"]["holderIdentity"] = ""
            body["spec"]["renewTime"] = None
            await self.api.replace(body)
        except Exception as exc:  # best effort: expiry hands it over anyway
            logger.warning("report writer lease %s: not released: %s", self.name, exc)


class LeaseResource:
    """``LeaseApi`` over one request function (``kubeapi.call``)."""

    def __init__(
        self,
        call: Callable[..., Awaitable[Mapping[str, Any] | None]],
        namespace: str,
        name: str,
    ) -> None:
        self._call = call
        self._collection = object_path(API_VERSION, PLURAL, namespace)
        self._object = object_path(API_VERSION, PLURAL, namespace, name)

    async def get(self) -> Mapping[str, Any] | None:
        return await self._call("get", self._object)

    async def create(self, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return await self._call("post", self._collection, body)

    async def replace(self, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
        # A merge patch that names the resourceVersion read: the API server
        # refuses it (409) if another replica wrote the Lease in between.
        return await self._call(
            "patch", self._object, body, content_type="application/merge-patch+json"
        )
