"""``otel-telemetry keys``: CURVE keypairs for a ZeroMQ collector on tcp:// and its apps."""

from __future__ import annotations

import os
from pathlib import Path

import click


def register(main: click.Group) -> None:
    """Attach the ``keys`` group to the top-level CLI group."""
    main.add_command(keys)


@click.group("keys")
def keys() -> None:
    """Create CURVE keys that authenticate apps and the collector over tcp://.

    \b
    Example:
      otel-telemetry keys generate --dir /etc/otel-telemetry/keys --name collector
      otel-telemetry keys generate --dir ./clients --name billing-app
    """


@keys.command("generate")
@click.option("--dir", "key_dir", type=click.Path(file_okay=False), required=True, metavar="DIR",
              help="Directory for the key files (created with mode 0700 if missing).")
@click.option("--name", default="collector", show_default=True, metavar="NAME",
              help="Base name of the files: 'collector', 'client' or an app's name.")
@click.option("--force", is_flag=True, help="Overwrite existing key files of that name.")
def keys_generate(key_dir: str, name: str, force: bool) -> None:
    """Write a Z85 CURVE keypair: NAME.key (public) and NAME.key_secret (secret, mode 0600).

    The collector uses its NAME.key_secret as receivers.zmq.curve.secret_key_file and admits
    the apps whose NAME.key files are in receivers.zmq.curve.allowed_clients_dir (read at
    start-up). An app sets OTEL_TELEMETRY_CURVE_SERVER_KEY to the collector's .key file and
    OTEL_TELEMETRY_CURVE_CLIENT_KEY to its own .key_secret file. Prints the public key.

    \b
    Example:
      otel-telemetry keys generate --dir keys --name collector
      otel-telemetry keys generate --dir keys/clients --name client
    """
    import zmq
    import zmq.auth

    if not zmq.has("curve"):
        raise click.ClickException("this libzmq has no CURVE support")
    if not name or "/" in name or name.startswith("."):
        raise click.UsageError(f"--name: not a plain file name: {name!r}")
    directory = Path(key_dir)
    public_file, secret_file = directory / f"{name}.key", directory / f"{name}.key_secret"
    existing = [str(p) for p in (public_file, secret_file) if p.exists()]
    if existing and not force:
        raise click.ClickException(f"{', '.join(existing)} already exist(s); pass --force to overwrite")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for p in (public_file, secret_file):
            p.unlink(missing_ok=True)  # a fresh file, so the umask below decides its mode
        old_umask = os.umask(0o077)  # the secret is never readable by others, not even briefly
        try:
            zmq.auth.create_certificates(directory, name)
        finally:
            os.umask(old_umask)
        os.chmod(secret_file, 0o600)
        os.chmod(public_file, 0o644)
        public, _ = zmq.auth.load_certificate(public_file)
    except OSError as exc:
        raise click.ClickException(f"{directory}: {exc.strerror or exc}") from None
    click.echo(f"public key:  {public_file}")
    click.echo(f"secret key:  {secret_file}  (mode 0600; keep it private)")
    click.echo(f"public (Z85): {public.decode()}")
