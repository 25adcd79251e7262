#!/usr/bin/env bash
# Build the guard controller image (linux/amd64) without a Docker daemon:
# mmdebstrap makes a Debian root filesystem with Python, buildah adds guard's
# wheel and its hash-locked dependencies to it, sets the same user, entry
# point, ports, environment and labels as the Dockerfile, and commits an OCI
# image. Run as root (buildah's vfs driver and chroot isolation need it).
#
# Outputs, under $OUT (default build/image):
#   oci/            the image as an OCI layout, tagged with the version
#   guard-image-VERSION.oci.tar   the same as one file (skopeo's oci-archive:), to carry
#   image.json      name, digest, sizes, build time (what tests and the release read)
#   sbom.cdx.json   the image's CycloneDX SBOM (packaging/sbom.py)
#   unavailable     only when the build could not run: the reason, for the tests
#
# Environment: PYTHON (a Python with `build` and PyYAML; default .venv/bin/python),
# GUARD_IMAGE_CACHE (root filesystem cache, default ~/.cache/guard-image),
# GUARD_IMAGE_MIN_FREE_MB (disk needed, default 3072).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
OUT=${OUT:-$ROOT/build/image}
CACHE=${GUARD_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guard-image}
MIN_FREE_MB=${GUARD_IMAGE_MIN_FREE_MB:-3072}
# A cached root filesystem older than this is rebuilt, to take Debian's security updates.
MAX_ROOTFS_AGE_DAYS=7
BUILDAH=(buildah --storage-driver vfs)

# Debian bookworm: Python 3.11, the minor version the lock was resolved for.
SUITE=bookworm
MIRRORS=(
    "deb http://deb.debian.org/debian $SUITE main"
    "deb http://deb.debian.org/debian $SUITE-updates main"
    "deb http://deb.debian.org/debian-security $SUITE-security main"
)
# Essential packages (no apt) plus Python, and the C++ runtime the CEL
# library (cel-cpp) is linked against. mmdebstrap's merged-/usr set-up
# installs usrmerge, which pulls Perl in; usr-is-merged satisfies the same
# dependency, so usrmerge and Perl's modules go again. Documentation is left
# out except the copyright files.
MMDEBSTRAP_OPTIONS=(
    --variant=essential --architectures=amd64
    --include=python3,libstdc++6,usr-is-merged
    '--customize-hook=chroot "$1" dpkg --purge usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl libperl5.36 perl-modules-5.36'
    "--dpkgopt=path-exclude=/usr/share/doc/*"
    "--dpkgopt=path-include=/usr/share/doc/*/copyright"
    "--dpkgopt=path-exclude=/usr/share/man/*"
    "--dpkgopt=path-exclude=/usr/share/info/*"
    "--dpkgopt=path-exclude=/usr/share/locale/*"
)

say() { printf 'image: %s\n' "$*" >&2; }

rm -rf "$OUT"
mkdir -p "$OUT" "$CACHE"

unavailable() {
    say "not built: $1"
    printf '%s\n' "$1" >"$OUT/unavailable"
    exit "${2:-1}"
}

[ "$(id -u)" = 0 ] || unavailable "needs root (buildah vfs storage and chroot isolation)"
for tool in buildah mmdebstrap; do
    command -v "$tool" >/dev/null || unavailable "$tool is not installed (apt-get install buildah mmdebstrap)"
done
for dir in "$OUT" "$CACHE" /var/lib/containers; do
    mkdir -p "$dir"
    free_mb=$(df -Pm "$dir" | awk 'NR==2 {print $4}')
    if [ "$free_mb" -lt "$MIN_FREE_MB" ]; then
        # Not a failure of guard: the tests report this reason as their skip.
        unavailable "only ${free_mb} MiB free under $dir, ${MIN_FREE_MB} MiB needed (vfs copies every layer)" 0
    fi
done

started=$(date +%s)
read -r VERSION REPOSITORY < <("$PYTHON" - <<'EOF'
import re, yaml
version = re.search(r'__version__ = "([^"]+)"', open("controller/__init__.py").read()).group(1)
values = yaml.safe_load(open("charts/guard/values.yaml"))
print(version, values["image"]["repository"])
EOF
)
IMAGE="$REPOSITORY:$VERSION"
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE=${GUARD_IMAGE_SOURCE:-https://github.com/guard-dev/guard}

# 1. The root filesystem, cached by the exact mmdebstrap inputs.
key=$(printf '%s\n' "$SUITE" "${MIRRORS[@]}" "${MMDEBSTRAP_OPTIONS[@]}" | sha256sum | cut -c1-16)
rootfs="$CACHE/rootfs-$SUITE-$key.tar"
if [ -f "$rootfs" ] && [ -z "$(find "$rootfs" -mtime +"$MAX_ROOTFS_AGE_DAYS")" ]; then
    say "root filesystem from cache: $rootfs"
else
    say "root filesystem: mmdebstrap $SUITE"
    # mmdebstrap picks the output format from the name: keep the .tar ending.
    partial="${rootfs%.tar}.partial.tar"
    rm -rf "$partial"
    mmdebstrap --quiet "${MMDEBSTRAP_OPTIONS[@]}" "$SUITE" "$partial" "${MIRRORS[@]}"
    mv "$partial" "$rootfs"
fi
rootfs_done=$(date +%s)

# 2. guard's wheel and the locked wheels, for linux/amd64 CPython 3.11 whatever
#    Python runs this script; every file is checked against the lock's hashes.
wheels="$OUT/wheels"
mkdir -p "$wheels"
# The wheel is built from the sdist, in a fresh folder: a stale build/lib in
# the checkout can never slip removed modules into the image.
"$PYTHON" -m build --no-isolation --outdir "$wheels" . >"$OUT/build.log" 2>&1 ||
    { cat "$OUT/build.log" >&2; exit 1; }
rm -f "$wheels"/*.tar.gz
# pip takes a wheel only for a platform named here: every glibc up to
# bookworm's 2.36, the newest first.
platforms=()
for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
for lock in requirements installer; do
    PIP_FIND_LINKS= PIP_EXTRA_INDEX_URL=https://pypi.org/simple "$PYTHON" -m pip download --quiet --no-deps \
        --require-hashes --only-binary=:all: "${platforms[@]}" \
        --python-version 3.11 --implementation cp --abi cp311 \
        --dest "$wheels" -r "packaging/$lock.lock"
done
cp packaging/requirements.lock "$wheels/requirements.lock"

# 3. The image: the root filesystem, a virtualenv without pip, the wheels
#    installed offline by the image's own Python (so scripts point at it).
ctr=$("${BUILDAH[@]}" from --quiet scratch)
trap '"${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
in_image() { "${BUILDAH[@]}" run --isolation chroot --user 0:0 "$ctr" -- "$@"; }
"${BUILDAH[@]}" add --quiet "$ctr" "$rootfs" /
"${BUILDAH[@]}" copy --quiet "$ctr" "$wheels" /tmp/wheels
pip_wheel=$(basename "$(ls "$wheels"/pip-*.whl)")
guard_wheel=$(basename "$(ls "$wheels"/guard-*.whl)")
in_image /usr/bin/python3 -m venv --without-pip /opt/guard
pip=(/opt/guard/bin/python "/tmp/wheels/$pip_wheel/pip" install --quiet --no-index
    --find-links /tmp/wheels --no-cache-dir --disable-pip-version-check)
in_image "${pip[@]}" --require-hashes -r /tmp/wheels/requirements.lock
in_image "${pip[@]}" --no-deps "/tmp/wheels/$guard_wheel"
# A named user for the numeric id (tools and libraries that look up $HOME),
# and nothing left of the build or of apt. The CEL library's optional
# extensions (strings, math, encoders, optional syntax, protobuf: 37 MB of
# the image) are never loaded by guard, whose CEL environment declares its
# own helpers. The CEL engine is imported once to prove the image runs it.
in_image /bin/sh -c '
    echo "guard:x:65532:65532:guard:/nonexistent:/usr/sbin/nologin" >>/etc/passwd
    echo "guard:x:65532:" >>/etc/group
    rm -rf /tmp/wheels /var/cache/apt /var/lib/apt /var/log/* /var/lib/dpkg/*-old \
        /var/cache/debconf/*-old /root/.cache \
        /opt/guard/lib/python3.11/site-packages/cel_expr_python/ext
    /opt/guard/bin/guard --version
    /opt/guard/bin/python -c "import controller.policy.engine"'

"${BUILDAH[@]}" config \
    --os linux --arch amd64 \
    --user 65532:65532 \
    --workingdir / \
    --env PATH=/opt/guard/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env PYTHONDONTWRITEBYTECODE=1 \
    --env PYTHONUNBUFFERED=1 \
    --port 8443/tcp --port 9090/tcp \
    --entrypoint '["/opt/guard/bin/guard"]' \
    --cmd '["--help"]' \
    --label "org.opencontainers.image.title=guard" \
    --label "org.opencontainers.image.description=Separation-of-duties admission webhook and CLI" \
    --label "org.opencontainers.image.source=$SOURCE" \
    --label "org.opencontainers.image.revision=$REVISION" \
    --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.licenses=Apache-2.0" \
    --label "org.opencontainers.image.base.name=debian:$SUITE" \
    "$ctr"
"${BUILDAH[@]}" rmi --force "$IMAGE" >/dev/null 2>&1 || true
"${BUILDAH[@]}" commit --quiet --rm --format oci "$ctr" "$IMAGE" >/dev/null
trap - EXIT
"${BUILDAH[@]}" push --quiet "$IMAGE" "oci:$OUT/oci:$VERSION"
# An oci-archive is the layout in one tar file: what a release carries to a
# registry the cluster can reach.
tar -C "$OUT/oci" -cf "$OUT/guard-image-$VERSION.oci.tar" .
rm -rf "$wheels"
finished=$(date +%s)

# 4. What was built, for the tests, the release and the README's numbers.
"$PYTHON" - "$OUT" "$IMAGE" "$VERSION" "$REVISION" "$((rootfs_done - started))" "$((finished - started))" <<'EOF'
import json, pathlib, sys
out, image, version, revision, rootfs_seconds, seconds = sys.argv[1:]
layout = pathlib.Path(out, "oci")
index = json.loads((layout / "index.json").read_text())
manifest_digest = index["manifests"][0]["digest"]
def blob(digest):
    return layout / "blobs" / digest.replace(":", "/")
manifest = json.loads(blob(manifest_digest).read_text())
info = {
    "image": image,
    "version": version,
    "revision": revision,
    "digest": manifest_digest,
    "compressedBytes": sum(layer["size"] for layer in manifest["layers"]),
    "rootfsSeconds": int(rootfs_seconds),
    "buildSeconds": int(seconds),
}
pathlib.Path(out, "image.json").write_text(json.dumps(info, indent=2) + "\n")
print(json.dumps(info))
EOF
say "built $IMAGE in $((finished - started)) s"
"$PYTHON" packaging/sbom.py "$OUT"
