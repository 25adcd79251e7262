"""What a review read from a forge must show.

``guard attest review --from github|gitlab`` records the forge's facts in
the predicate's ``source`` block: where they came from, whether the pushers
to the change could be read, and the settings that bind approvals to the
head revision. These checks judge them, with the policy's ``review.forge``
rules when it has them and fail-closed defaults when it has none:

- pushers that could not be read (a fork's branch, a token without the
  scope) are accepted only where the forge itself refuses approvals older
  than the last push (GitHub's "require approval of the most recent
  push", GitLab's "reset approvals on push"): someone who pushed to another
  person's change is an author, and an author's approval never counts;
- an approval from a forge counts only if the reviewer holds at least write
  permission (``tally`` applies it; see ``forgerules.approval_problem``).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.attest.checks import Claim, Verdict, failure
from controller.attest.forgerules import rules_or_default
from controller.attest.statement import ForgeSource
from controller.policy.documents import ForgeRules
from controller.policy.identity import match_key

FIX_FORGE = (
    "release engineer: attest with guard attest review --from github|gitlab, so the "
    "review is read from the forge"
)
FIX_PUSH_RULE = (
    "repository admin: require approval of the most recent push (GitHub branch rules) or "
    "reset approvals on push (GitLab), or give the attesting token the scope to read pushes"
)
FIX_UNRESOLVED = (
    "developer: commit with an e-mail address linked to your forge account (and co-authors "
    "with theirs), then re-run the release pipeline"
)
FIX_REPOSITORY_ID = (
    "policy author: the repository was renamed or re-created: check it, then update "
    "spec.review.forge.repositoryIds"
)


def _pushers(source: ForgeSource) -> str | None:
    if source.pushers == "read":
        return None
    if source.last_push_approval_required or source.reset_approvals_on_push:
        return None
    note = f" ({source.pushers_note})" if source.pushers_note else ""
    return (
        f"who pushed to the change could not be read{note}, and the "
        f"{'target branch does not require approval of the most recent push' if source.system == 'github' else 'project does not reset approvals on push'}: "
        "an approval may predate someone else's push"
    )


@dataclass(frozen=True)
class ForgeEvidence:
    """The ``source`` block and the policy's ``review.forge`` rules."""

    rules: ForgeRules | None

    def check(self, claim: Claim) -> Verdict:
        review = claim.review
        source = review.source
        if source is None:
            if self.rules is None:
                return Verdict()
            return failure(
                "the review was not read from a forge (no source in the predicate), and the "
                "policy's review.forge accepts only reviews read from one",
                fix=FIX_FORGE,
            )
        reasons: list[str] = []
        fixes: list[str] = []
        pushers = _pushers(source)
        if pushers is not None:
            reasons.append(pushers)
            fixes.append(FIX_PUSH_RULE)
        rules = rules_or_default(self.rules)
        if rules.require_last_push_approval and not source.last_push_approval_required:
            reasons.append(
                "the target branch does not require approval of the most recent push "
                "(review.forge.requireLastPushApproval)"
            )
            fixes.append(FIX_PUSH_RULE)
        if rules.require_reset_on_push and not source.reset_approvals_on_push:
            reasons.append(
                "the project does not reset approvals when commits are pushed "
                "(review.forge.requireResetOnPush)"
            )
            fixes.append(FIX_PUSH_RULE)
        if rules.deny_unresolved_authors:
            unresolved = [a for a in review.authors if a.unresolved]
            if unresolved:
                shown = ", ".join(f"{a.login} ({a.id})" for a in unresolved)
                reasons.append(
                    f"authors the forge could not link to an account: {shown} "
                    "(review.forge.denyUnresolvedAuthors)"
                )
                fixes.append(FIX_UNRESOLVED)
        if rules.repository_ids and match_key(source.repository_id) not in {
            match_key(i) for i in rules.repository_ids
        }:
            reasons.append(
                f"repository id {source.repository_id} is not one the policy pins "
                f"({', '.join(rules.repository_ids)})"
            )
            fixes.append(FIX_REPOSITORY_ID)
        return Verdict(tuple(reasons), tuple(dict.fromkeys(fixes)))
