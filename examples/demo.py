"""The guard demo: the whole product on bundled defaults, no cluster needed.

Run with ``make demo``. Each step runs a real ``guard`` command (in this
process) and prints what a user would see. A real cluster uses the Helm chart
in ``charts/guard``; this demo's cluster part runs the real operator against
an emulated API server.
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
sys.path.insert(0, str(ROOT))

from controller.cli import main as guard  # noqa: E402

BOLD = "\033[1m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""


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
        raise SystemExit(f"demo: expected exit {expect} from `guard {command}`, got {code}")
    return code


def policies_step() -> None:
    heading("1. The default policy bundle lints and passes its own tests")
    run("policy lint policies/", expect=0)
    run("policy test policies/", expect=0)


APP_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
VERIFY = (
    "attest verify {envelope} --trust examples/keys/demo-trust.yaml "
    f"--policy policies/review.yaml --digest {APP_DIGEST}"
)


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
        print("(terraform is not on PATH: skipping the real plan)")
        return
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder) / "config"
        shutil.copytree(ROOT / "examples" / "terraform" / "config", work)
        environment = {**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null", "TF_IN_AUTOMATION": "1"}
        for command in (["init", "-input=false"], ["plan", "-input=false", "-out=tfplan"]):
            subprocess.run(
                ["terraform", *command], cwd=work, env=environment, check=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )  # fmt: skip
        plan = work / "tfplan"
        attestation = Path(folder) / "plan.intoto.json"
        print("# a real binary plan of examples/terraform/config, not yet reviewed:")
        run(
            f"tf-plan {plan} --terraform-dir {work} --trust examples/keys/demo-trust.yaml", expect=1
        )
        print("# alice's change is approved by carol; CI attests the plan file:")
        run(
            f"attest review {REVIEW_FLAGS} --approval carol=github:1003 "
            f"--subject-file {plan} --output {attestation}",
            expect=0,
        )
        run(
            f"tf-plan {plan} --terraform-dir {work} --trust examples/keys/demo-trust.yaml "
            f"--attestation {attestation}",
            expect=0,
        )


def cluster_step() -> None:
    heading("4. In the cluster: the real operator answers AdmissionReviews")
    print("(an emulated API server stands in for the cluster; a real one uses charts/guard)")
    from examples.cluster_demo import main as cluster_demo

    if cluster_demo() != 0:
        raise SystemExit("demo: an admission answer was not what was expected")


STEPS: list[Callable[[], None]] = [policies_step, attest_step, terraform_step, cluster_step]


def main() -> int:
    os.chdir(ROOT)
    for step in STEPS:
        step()
    print("\ndemo: every step behaved as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
