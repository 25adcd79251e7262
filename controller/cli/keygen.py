"""``guard keygen``: a signing key pair for attesters and reviewers.

The private key is created mode 0600 from the start; with a password it is
written in cosign's encrypted format, so cosign can use it too.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from controller.attest.keys import KEY_KINDS, generate
from controller.errors import InputError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keygen = commands.add_parser(
        "keygen",
        help="make a signing key pair (NAME.key, mode 0600, and NAME.pub)",
        description="Make a key pair. With a password the private key is written in "
        "cosign's encrypted format, so cosign can use it too.",
    )
    keygen.add_argument("name", metavar="NAME")
    keygen.add_argument("--dir", default=".", help="where to write the files (default: .)")
    keygen.add_argument("--type", choices=KEY_KINDS, default="ecdsa", dest="key_type")
    keygen.add_argument("--password-env", metavar="VAR", help="encrypt with the password in $VAR")
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    keygen.set_defaults(handler=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    if not _NAME.match(args.name):
        raise InputError(f"key name {args.name!r}: use letters, digits, '.', '_' and '-'")
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / f"{args.name}.key", folder / f"{args.name}.pub"
    for path in (private_path, public_path):
        if path.exists() and not args.force:
            raise InputError(f"{path}: already exists (use --force to replace it)")
    password = None
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise InputError(f"--password-env {args.password_env}: the variable is not set")
        password = value.encode()
    key = generate(args.key_type)
    if private_path.exists():
        private_path.unlink()
    # Created 0600 from the start: a umask-wide window would leak the key.
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key.private_pem(password))
    public_path.write_text(key.public.pem(), encoding="ascii")
    state = "encrypted" if password else "NOT encrypted"
    print(f"wrote {private_path} (private, mode 0600, {state}) and {public_path}")
    print(f"keyid {key.keyid} ({key.public.algorithm})")
    return 0
