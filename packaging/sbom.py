"""The image's SBOM (CycloneDX 1.6 JSON).

The Python part comes from cyclonedx-py (PyPI: cyclonedx-bom) run on the
hash-locked requirements, which are exactly what the image installs (a test
compares the image's installed distributions with the lock). This script
adds what that generator cannot see: the image itself as the described
component (by digest), guard's own wheel, and the Debian packages, read from
dpkg's database inside the image's layer. The result is validated against
the CycloneDX schema before it is written.

    python packaging/sbom.py build/image            # writes build/image/sbom.cdx.json
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tarfile
from email.parser import Parser
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
DPKG_STATUS = "var/lib/dpkg/status"
DEBIAN_RELEASE = "debian-12"


def python_components() -> dict[str, Any]:
    """cyclonedx-py's BOM of the lock, with guard (from pyproject.toml) as its root."""
    result = subprocess.run(
        [
            sys.executable, "-m", "cyclonedx_py", "requirements",
            str(ROOT / "packaging" / "requirements.lock"),
            "--pyproject", str(ROOT / "pyproject.toml"),
            "--spec-version", "1.6", "--output-reproducible", "--output-file", "-",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    bom: dict[str, Any] = json.loads(result.stdout)
    return bom


def _layout_blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / digest.replace(":", "/")


def debian_packages(layout: Path, manifest_digest: str) -> list[dict[str, str]]:
    """Installed packages from dpkg's status file in the image's layers."""
    manifest = json.loads(_layout_blob(layout, manifest_digest).read_text())
    status = ""
    for layer in manifest["layers"]:
        with (
            gzip.open(_layout_blob(layout, layer["digest"])) as stream,
            tarfile.open(fileobj=stream, mode="r|") as archive,
        ):
            for member in archive:
                if member.name.lstrip("./") == DPKG_STATUS and member.isfile():
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    status = extracted.read().decode()
    if not status:
        raise SystemExit(f"sbom: no {DPKG_STATUS} in the image's layers")
    packages = []
    for paragraph in status.strip().split("\n\n"):
        fields = Parser().parsestr(paragraph)
        if "install ok installed" in (fields["Status"] or ""):
            packages.append(
                {
                    "name": fields["Package"],
                    "version": fields["Version"],
                    "arch": fields["Architecture"],
                }
            )
    return packages


def image_bom(image_dir: Path) -> dict[str, Any]:
    info = json.loads((image_dir / "image.json").read_text())
    layout = image_dir / "oci"
    repository, version = info["image"].rsplit(":", 1)
    bom = python_components()
    guard = dict(bom["metadata"]["component"])
    guard.update(
        {
            "bom-ref": "guard",
            "type": "application",
            "version": version,
            "purl": f"pkg:pypi/guard@{version}",
        }
    )
    image_ref = f"image:{info['digest']}"
    bom["metadata"]["component"] = {
        "bom-ref": image_ref,
        "type": "container",
        "name": repository,
        "version": info["digest"],
        "purl": f"pkg:oci/{repository.rsplit('/', 1)[-1]}@{quote(info['digest'])}"
        f"?repository_url={quote(repository, safe='')}&tag={version}",
        "hashes": [{"alg": "SHA-256", "content": info["digest"].removeprefix("sha256:")}],
    }
    debs = [
        {
            "bom-ref": f"deb:{p['name']}@{p['version']}",
            "type": "library",
            "name": p["name"],
            "version": p["version"],
            "purl": f"pkg:deb/debian/{p['name']}@{quote(p['version'])}"
            f"?arch={p['arch']}&distro={DEBIAN_RELEASE}",
        }
        for p in debian_packages(layout, info["digest"])
    ]
    components = [guard, *bom.get("components", []), *debs]
    bom["components"] = components
    bom["dependencies"] = [
        {"ref": image_ref, "dependsOn": [c["bom-ref"] for c in components]},
        *({"ref": c["bom-ref"]} for c in components),
    ]
    return bom


def validate(bom: dict[str, Any]) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom))
    if error is not None:
        raise SystemExit(f"sbom: not valid CycloneDX 1.6: {error}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python packaging/sbom.py IMAGE_DIR", file=sys.stderr)
        return 2
    image_dir = Path(argv[0])
    bom = image_bom(image_dir)
    validate(bom)
    out = image_dir / "sbom.cdx.json"
    out.write_text(json.dumps(bom, indent=1) + "\n")
    print(f"sbom: {out}: {len(bom['components'])} components")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
