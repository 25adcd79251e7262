"""Review verifications per second, uncached and cached, next to the floor.

The floor is one raw ``cryptography`` ECDSA P-256 verify of the attester's
signature over the envelope's PAE: the least any verifier must do. The
uncached run is the full ``AttestationReview.review`` on a deployment with
one image, with the signature cache disabled (every trusted key tried on
every signature, statement parsed, every check run); the cached run keeps
signature results, so it measures parsing plus the checks that always run.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from controller.attest import dsse
from controller.attest.review import AttestationReview, EnvelopeList
from controller.attest.verify import SignatureCache
from controller.policy.results import Result
from tests.attest import helpers as h
from tests.bench.timing import rate

SECONDS = 0.5


def main() -> None:
    keys = h.Keys.make()
    raw = h.envelope(signers=[keys.ci, keys.bob])
    envelope = dsse.parse(raw)
    message = envelope.pae()
    signature = envelope.signatures[0].sig
    public = keys.ci.public.key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    algorithm = ec.ECDSA(hashes.SHA256())

    policy = h.policy()
    subject = h.deployment_subject()
    source = EnvelopeList([raw])

    def review(cache: SignatureCache) -> Callable[[], object]:
        evaluator = AttestationReview(h.trust_spec(keys), source, lambda: h.NOW, cache=cache)
        assert evaluator.review(policy, subject).result is Result.passed

        def run() -> object:
            return evaluator.review(policy, subject)

        return run

    floor = rate(lambda: public.verify(signature, message, algorithm), SECONDS)
    uncached = rate(review(SignatureCache(size=0)), SECONDS)
    cached = rate(review(SignatureCache()), SECONDS)
    trusted = len(h.trust_spec(keys).keys)
    print(
        f"trust: {trusted} keys; envelope: {len(envelope.signatures)} signatures, {len(raw)} bytes"
    )
    print(f"{'measure':<42}{'per second':>12}{'vs floor':>10}")
    print(f"{'floor: one raw ECDSA P-256 verify':<42}{floor:>12,.0f}{1:>10.2f}")
    print(f"{'review, uncached (every key tried)':<42}{uncached:>12,.0f}{uncached / floor:>10.2f}")
    print(f"{'review, signature results cached':<42}{cached:>12,.0f}{cached / floor:>10.2f}")


if __name__ == "__main__":
    main()
