"""Review evidence read from the forge itself (GitHub, GitLab).

``guard attest review --from github|gitlab`` reads the change from the
forge's API and builds the change-review predicate from what the forge
says, instead of flags a CI script fills: who wrote and pushed the change,
who approved which revision with what permission, what was built. The
readers share one forge-neutral model (``model``) and one bounded retry
(``retry``); every failure is one ``ForgeError`` line, never a partial
predicate.
"""
