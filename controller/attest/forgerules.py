"""Which approvals read from a forge count: the reviewer's permission on
the repository and, where a policy asks, membership of an approver team.

Apart from the other forge checks (``forgecheck``) because the approval
tally applies it to each approval.
"""

from __future__ import annotations

from controller.attest.statement import PERMISSIONS, Approval, ChangeReview
from controller.policy.documents import ForgeRules

# On GitHub anyone can leave an APPROVED review on a public repository:
# only people who could push themselves count, whatever the policy.
DEFAULT_PERMISSION = "write"


def rules_or_default(rules: ForgeRules | None) -> ForgeRules:
    """The policy's rules, or the defaults every review read from a forge
    meets (reviewers with at least ``DEFAULT_PERMISSION``)."""
    return rules if rules is not None else ForgeRules(reviewerPermission=DEFAULT_PERMISSION)


def approval_problem(
    review: ChangeReview, approval: Approval, rules: ForgeRules | None
) -> str | None:
    """Why a forge approval does not count (permission, team), else None.

    Applies to predicates read from a forge, and to any predicate when the
    policy has ``review.forge`` (which then requires a forge source anyway).
    """
    if review.source is None and rules is None:
        return None
    wanted = rules_or_default(rules)
    login = approval.reviewer.login
    permission = approval.permission
    least = wanted.reviewer_permission
    if permission is None:
        return f"{login}'s permission on the repository was not recorded"
    if PERMISSIONS.index(permission) < PERMISSIONS.index(least):
        return (
            f"{login} has {permission} permission on the repository, less than {least}: "
            "their approval does not count"
        )
    if wanted.approver_teams:
        teams = set(approval.teams or ())
        if not teams.intersection(wanted.approver_teams):
            return f"{login} is in none of the approver teams ({', '.join(wanted.approver_teams)})"
    return None
