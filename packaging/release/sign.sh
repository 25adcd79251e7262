#!/usr/bin/env bash
# sign.sh ENVELOPE: sign the built image's digest (build/image/image.json) with
# a review attestation made by guard itself, then verify it against guard's
# own release policy, so nothing is pushed that the project's policy rejects.
#
# Environment: GUARD (the guard command), KEY (the release key file; its
# password, if any, in GUARD_KEY_PASSWORD), TRUST (GuardTrust with its public
# key), REVISION, CHANGE_ID, HEAD_REVISION, and AUTHORS / APPROVALS as
# space-separated login=github:ID words. The facts come from the forge in the
# release workflow and from the test in tests/ship.
set -euo pipefail
envelope=$1
here=$(cd "$(dirname "$0")" && pwd)
image_json="$here/../../build/image/image.json"
read -r name digest < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["image"], d["digest"])' "$image_json")
repository=${name%:*}
flags=()
for author in $AUTHORS; do flags+=(--author "$author"); done
for approval in $APPROVALS; do flags+=(--approval "$approval"); done
$GUARD attest review --key "$KEY" --password-env GUARD_KEY_PASSWORD --attester guard-release \
    --digest "$repository@$digest" \
    --repository github.com/guard-dev/guard --target-ref refs/heads/main \
    --revision "$REVISION" --head-revision "${HEAD_REVISION:-$REVISION}" \
    --change-system github --change-id "$CHANGE_ID" \
    --change-uri "https://github.com/guard-dev/guard/pull/$CHANGE_ID" \
    --check make-test=pass "${flags[@]}" --output "$envelope"
$GUARD attest verify "$envelope" --trust "$TRUST" --policy "$here/review-policy.yaml" \
    --digest "$digest"
