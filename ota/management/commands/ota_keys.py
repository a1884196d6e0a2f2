"""OTA signing keys: init (root key to an offline file), rotate, revoke, publish, show."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from fleet.audit import Actor
from ota.errors import OtaError
from ota.models import KeyListDocument, SigningKey
from ota.services import keylist_publish, keys_init, keys_revoke, keys_rotate
from ota.services.keys import load_root_key
from protocol import jsonsafe


class Command(BaseCommand):
    help = "Manage the OTA root key, release keys and the root-signed key list devices trust."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        init = sub.add_parser(
            "init", help="Create the root key (written to --root-out), a release key, key list v1."
        )
        init.add_argument(
            "--root-out", required=True, help="Where to write the root private key (keep it offline)."
        )
        rotate = sub.add_parser("rotate", help="Add a new release key; publish a new key list.")
        rotate.add_argument("--root-key", required=True)
        rotate.add_argument(
            "--revoke-previous", action="store_true", help="Also revoke the older release keys."
        )
        revoke = sub.add_parser("revoke", help="Revoke a release key; publish a new key list.")
        revoke.add_argument("keyid")
        revoke.add_argument("--root-key", required=True)
        publish = sub.add_parser("publish", help="Publish a key list signed offline (JSON signed document).")
        publish.add_argument("file")
        sub.add_parser("show", help="Print the current key list and keys.")

    def handle(self, *args, **options):
        actor = Actor.system("manage.py ota_keys")
        try:
            getattr(self, f"do_{options['action']}")(actor, options)
        except OtaError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc

    def do_init(self, actor, options):
        result = keys_init(actor=actor, root_out=options["root_out"])
        self.stdout.write(
            f"root key {result.root_keyid} written to {options['root_out']} (mode 0600): move it offline.\n"
            f"release key {result.release_keyid}; key list v{result.keylist_version} published."
        )

    def do_rotate(self, actor, options):
        doc = keys_rotate(
            actor=actor,
            root_key=load_root_key(options["root_key"]),
            revoke_previous=options["revoke_previous"],
        )
        self.stdout.write(f"key list v{doc.version} published.")

    def do_revoke(self, actor, options):
        doc = keys_revoke(actor=actor, keyid=options["keyid"], root_key=load_root_key(options["root_key"]))
        self.stdout.write(f"key {options['keyid'][:12]} revoked; key list v{doc.version} published.")

    def do_publish(self, actor, options):
        try:
            document = jsonsafe.loads(Path(options["file"]).read_bytes())
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read {options['file']}: {exc}") from exc
        doc = keylist_publish(actor=actor, document=document)
        self.stdout.write(f"key list v{doc.version} published.")

    def do_show(self, actor, options):
        doc = KeyListDocument.objects.order_by("-version").first()
        for key in SigningKey.objects.order_by("id"):
            state = "revoked" if key.revoked_at else "active"
            self.stdout.write(f"{key.role:8} {key.keyid} {state}")
        self.stdout.write(json.dumps(doc.document if doc else None, indent=2))
