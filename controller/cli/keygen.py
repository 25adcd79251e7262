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
from controller.attest.trustfile import key_roles, with_key
from controller.cli.catalog import help_for
from controller.cli.options import EXIT_OK, Commands, Console, add_command
from controller.errors import InputError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def register(commands: Commands[argparse.ArgumentParser]) -> None:
    keygen = add_command(
        commands,
        "keygen",
        help=help_for("keygen"),
        description="Make a key pair for an attester (CI) or a reviewer. With a password "
        "the private key is written in cosign's encrypted format, so cosign can use it too "
        "(like `cosign generate-key-pair`).",
        examples=[
            ("the CI attester's key, encrypted", "guard keygen ci-attester --password-env PW"),
            (
                "a reviewer's Ed25519 key in another folder",
                "guard keygen bob --type ed25519 --dir keys/",
            ),
            (
                "the CI attester's key, trusted in trust.yaml (made if missing)",
                "guard keygen ci-attester --trust trust.yaml --role attester",
            ),
            (
                "a reviewer's key: co-signing with it is one approval by github:1002",
                "guard keygen bob --trust trust.yaml --role person --principal github:1002",
            ),
        ],
    )
    keygen.add_argument("name", metavar="NAME", help="file name of the pair: NAME.key, NAME.pub")
    keygen.add_argument("--dir", default=".", metavar="DIR", help="where to write the files")
    keygen.add_argument(
        "--type", choices=KEY_KINDS, default="ecdsa", dest="key_type", help="the key algorithm"
    )
    keygen.add_argument(
        "--password-env",
        metavar="VAR",
        help="encrypt with the password in $VAR (default: not encrypted)",
    )
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    trust = keygen.add_argument_group("trust (add the public key to a GuardTrust file)")
    trust.add_argument(
        "--trust",
        metavar="FILE",
        help="add the public key to this GuardTrust file, made if missing (default: none)",
    )
    trust.add_argument("--role", choices=key_roles(), help="the key's role in the trust")
    trust.add_argument(
        "--principal", metavar="ID", help="whose key it is (a person key), e.g. github:1002"
    )
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
    if (args.role or args.principal) and not args.trust:
        raise InputError("--role and --principal describe the key in a trust: add --trust FILE")
    if args.trust and not args.role:
        raise InputError(f"--trust {args.trust}: say the key's role with --role")
    password = None
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise InputError(f"--password-env {args.password_env}: the variable is not set")
        password = value.encode()
    key = generate(args.key_type)
    trust_text: str | None = None
    trust_path = Path(args.trust) if args.trust else None
    if trust_path is not None:
        # Checked before any file is written: a refused trust leaves nothing behind.
        trust_text, existed = with_key(
            trust_path,
            name=args.name,
            role=args.role,
            public_pem=key.public.pem(),
            principal=args.principal,
        )
    if private_path.exists():
        private_path.unlink()
    # Created 0600 from the start: a umask-wide window would leak the key.
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key.private_pem(password))
    public_path.write_text(key.public.pem(), encoding="ascii")
    state = "encrypted" if password else "NOT encrypted"
    console = Console.of(args)
    console.out(f"wrote {private_path} (private, mode 0600, {state}) and {public_path}")
    console.out(f"keyid {key.keyid} ({key.public.algorithm})")
    if trust_path is not None and trust_text is not None:
        trust_path.write_text(trust_text, encoding="utf-8")
        done = "added to" if existed else "wrote"
        console.out(f"{done} {trust_path}: {args.role} key {args.name!r}")
    return EXIT_OK
