"""The guard demo: the whole product on bundled defaults, no cluster needed.

Run with ``make demo``. Each step runs a real ``guard`` command (in this
process) and prints what a user would see. A real cluster uses the Helm chart
in ``charts/guard``; this demo's cluster part runs the real operator against
an emulated API server.

A step that cannot run as designed never passes silently: without
``terraform`` the real-plan step runs on the JSON fixture and says so, and
the demo does not claim that every step behaved; when terraform is there but
fails, the demo stops with its output and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from controller.cli import main as guard  # noqa: E402
from controller.report.output import colour_wanted  # noqa: E402

COLOUR = colour_wanted(sys.stdout)
BOLD = "\033[1m" if COLOUR else ""
RESET = "\033[0m" if COLOUR else ""
TERRAFORM_URL = "https://developer.hashicorp.com/terraform/install"
PASSING_PLAN = "examples/terraform/plans/aws-passing.json"

# Steps that ran on a stand-in, said again at the end: the demo must never
# claim that every step behaved when one did not run as designed.
FALLBACKS: list[str] = []


class DemoError(SystemExit):
    """A step could not run: the message says why and how to fix it (exit 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"demo: {message}")


def heading(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}")


def run(command: str, expect: int | None = None) -> int:
    """Run one ``guard`` command line as a user would, printing its output."""
    print(f"$ guard {command}")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            code = guard(shlex.split(command))
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    for line in buffer.getvalue().rstrip().splitlines():
        print(f"  {line}")
    print(f"  (exit {code})")
    if expect is not None and code != expect:
        raise DemoError(f"expected exit {expect} from `guard {command}`, got {code}")
    return code


def policies_step() -> None:
    heading("1. The default policy bundle lints and passes its own tests")
    run("policy lint policies/", expect=0)
    run("policy test policies/", expect=0)


APP_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
TRUST = "--trust examples/keys/demo-trust.yaml"
VERIFY = f"attest verify {{envelope}} {TRUST} --policy policies/review.yaml --digest {APP_DIGEST}"


def attest_step() -> None:
    heading("2. Review attestations: an independent review verifies, a self-approval does not")
    run(VERIFY.format(envelope="examples/attestations/app-reviewed.json"), expect=0)
    run(VERIFY.format(envelope="examples/attestations/app-self-approved.json"), expect=1)
    replayed = VERIFY.format(envelope="examples/attestations/app-reviewed.json").replace(
        APP_DIGEST, "sha256:" + "0" * 64
    )
    print("# the same attestation replayed onto another image:")
    run(replayed, expect=1)


REVIEW_FLAGS = (
    "--key examples/keys/ci-attester.key --repository github.com/example/app "
    "--target-ref refs/heads/main --revision 9f2c4e1 --head-revision 7d1a0b3 "
    "--change-system github --change-id 43 --author alice=github:1001 "
    "--check unit-tests=pass"
)


def terraform_step() -> None:
    heading("3. guard tf-plan: the same policies on Terraform plans, review included")
    run("tf-plan examples/terraform/plans/aws-failing.json", expect=1)
    if shutil.which("terraform") is None:
        json_plan_fallback()
        return
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder) / "config"
        shutil.copytree(ROOT / "examples" / "terraform" / "config", work)
        for command in (["init", "-input=false"], ["plan", "-input=false", "-out=tfplan"]):
            terraform(command, work)
        plan = work / "tfplan"
        attestation = Path(folder) / "plan.intoto.json"
        print("# a real binary plan of examples/terraform/config, not yet reviewed:")
        run(f"tf-plan {plan} --terraform-dir {work} {TRUST}", expect=1)
        print("# alice's change is approved by carol; CI attests the plan file:")
        run(
            f"attest review {REVIEW_FLAGS} --approval carol=github:1003 "
            f"--subject-file {plan} --output {attestation}",
            expect=0,
        )
        print("# the review passes, and the summary names who approved, in which attestation:")
        run(
            f"tf-plan {plan} --terraform-dir {work} {TRUST} --attestation {attestation}",
            expect=0,
        )


def terraform(command: list[str], work: Path) -> None:
    """Run terraform in ``work``; a failure stops the demo with terraform's own words."""
    environment = {**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null", "TF_IN_AUTOMATION": "1"}
    done = subprocess.run(
        ["terraform", *command], cwd=work, env=environment, check=False,
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise DemoError(
            f"`terraform {' '.join(command)}` failed (exit {done.returncode}):\n  "
            + "\n  ".join(output)
        )


def json_plan_fallback() -> None:
    """Without terraform there is no binary plan: review the JSON fixture instead,
    which guard accepts only when told to (--accept-json-review), and say so."""
    note = (
        f"terraform is not on PATH: this step runs on the JSON fixture {PASSING_PLAN} "
        f"instead of a real binary plan. Get terraform from {TERRAFORM_URL} (any 1.x) and "
        "run `make demo` again to see a real plan."
    )
    print(f"!! {note}")
    FALLBACKS.append(
        f"step 3 ran on the JSON fixture {PASSING_PLAN}: terraform is not on PATH "
        f"(get it from {TERRAFORM_URL})"
    )
    with tempfile.TemporaryDirectory() as folder:
        attestation = Path(folder) / "plan.intoto.json"
        print("# alice's change is approved by carol; CI attests the plan JSON:")
        run(
            f"attest review {REVIEW_FLAGS} --approval carol=github:1003 "
            f"--subject-file {PASSING_PLAN} --output {attestation}",
            expect=0,
        )
        print("# a review of the JSON counts only when accepted explicitly:")
        run(f"tf-plan {PASSING_PLAN} {TRUST} --attestation {attestation}", expect=1)
        run(
            f"tf-plan {PASSING_PLAN} {TRUST} --attestation {attestation} --accept-json-review",
            expect=0,
        )


def kube_check_step() -> None:
    heading("4. In CI: guard kube check judges manifests as the admission webhook will")
    check = f"kube check -f examples/manifests/web.yaml {TRUST} --user ci-deployer"
    run(f"{check} --attestation examples/attestations/app-reviewed.json", expect=0)
    print("# the same manifests with only the self-approved attestation:")
    run(f"{check} --attestation examples/attestations/app-self-approved.json", expect=1)


def cluster_step() -> None:
    heading("5. In the cluster: the real operator answers AdmissionReviews")
    print("(an emulated API server stands in for the cluster; a real one uses charts/guard)")
    from examples.cluster_demo import main as cluster_demo

    if cluster_demo() != 0:
        raise DemoError("an admission answer was not what was expected")


STEPS: list[Callable[[], None]] = [
    policies_step,
    attest_step,
    terraform_step,
    kube_check_step,
    cluster_step,
]


def main() -> int:
    os.chdir(ROOT)
    FALLBACKS.clear()
    for step in STEPS:
        step()
    if FALLBACKS:
        print("\ndemo: finished, but not every step ran as designed:")
        for fallback in FALLBACKS:
            print(f"  - {fallback}")
        return 0
    print("\ndemo: every step behaved as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
