#!/usr/bin/env bash
# sign.sh ENVELOPE: sign the built image's digest (build/image/image.json) with
# a review attestation made by guard itself, then verify it against guard's
# own release policy, so nothing is pushed that the project's policy rejects.
#
# Who wrote and who approved the change is read from GitHub by guard (the
# merged pull request that produced REVISION on main: its commits' authors,
# pushers, co-authors and the reviewers' latest verdicts at its last
# revision), never typed in: the token can read them, nobody can edit them.
#
# Environment: GUARD (the guard command), KEY (the release key file; its
# password, if any, in GUARD_KEY_PASSWORD), TRUST (GuardTrust with its public
# key), REVISION (the commit that was built), GITHUB_TOKEN (reads the
# repository, its pull requests and checks), and optionally GITHUB_API_URL
# and RELEASE_REPOSITORY (default guard-dev/guard).
set -euo pipefail
envelope=$1
here=$(cd "$(dirname "$0")" && pwd)
image_json="$here/../../build/image/image.json"
read -r name digest < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["image"], d["digest"])' "$image_json")
repository=${name%:*}
$GUARD attest review --from github --repository "${RELEASE_REPOSITORY:-guard-dev/guard}" \
    --commit "$REVISION" --target-ref refs/heads/main \
    --key "$KEY" --password-env GUARD_KEY_PASSWORD --attester guard-release \
    --digest "$repository@$digest" --check make-test=pass --output "$envelope"
# The release key signs whatever GitHub shows; the policy decides. A refused
# envelope is removed so that nothing later in the job can pick it up.
status=0
$GUARD attest verify "$envelope" --trust "$TRUST" --policy "$here/review-policy.yaml" \
    --digest "$digest" || status=$?
if [ "$status" -ne 0 ]; then
    rm -f "$envelope"
    exit "$status"
fi
