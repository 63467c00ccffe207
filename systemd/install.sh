#!/usr/bin/env bash
# Install (or upgrade) cxstream as a systemd service on Debian or Ubuntu.
#
#   sudo systemd/install.sh            # from a checkout or an unpacked source tree
#
# Idempotent: run it again to upgrade; it never overwrites your configuration
# or your credentials. What it does, in order (README "Installing on a host"):
#   1. python3-venv if missing; a venv in /opt/cxstream with the package in it
#   2. the cxstream system user (sysusers.d) and /etc/cxstream (tmpfiles.d)
#   3. /etc/cxstream/cxstream.toml from config/cxstream.toml, if absent
#   4. /etc/cxstream/credentials/{webhook_secret,cxone_client_secret,archive_secret},
#      created empty (mode 0600, root) if absent, for you to fill
#   5. the unit and the logrotate file; `systemctl enable`, and start (or
#      restart, on an upgrade) once check-config passes with those credentials
#
# ROOT=/some/dir stages everything under that directory instead of / and
# touches no running system (no apt, no users, no systemctl): for packaging
# and for tests.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="${ROOT:-}"
PREFIX="$ROOT/opt/cxstream"
ETC="$ROOT/etc/cxstream"
CREDS="$ETC/credentials"
UNIT_DIR="$ROOT/etc/systemd/system"
live() { [[ -z "$ROOT" ]]; }
say() { printf 'cxstream-install: %s\n' "$*"; }

if live && [[ $EUID -ne 0 ]]; then
    say "run as root (sudo $0)" >&2
    exit 2
fi

# 1. The package, in its own venv.
if live && ! python3 -c "import venv, ensurepip" 2>/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi
[[ -x "$PREFIX/bin/python" ]] || python3 -m venv "$PREFIX"
"$PREFIX/bin/pip" install --quiet --upgrade pip
"$PREFIX/bin/pip" install --quiet --upgrade "$SRC"
install -D -m 0644 "$SRC/README.md" "$PREFIX/share/doc/cxstream/README.md"
say "installed $("$PREFIX/bin/cxstream" --version) in $PREFIX"

# 2. User and directories.
install -D -m 0644 "$SRC/systemd/cxstream.sysusers" "$ROOT/etc/sysusers.d/cxstream.conf"
install -D -m 0644 "$SRC/systemd/cxstream.tmpfiles" "$ROOT/etc/tmpfiles.d/cxstream.conf"
if live; then
    systemd-sysusers /etc/sysusers.d/cxstream.conf
    systemd-tmpfiles --create /etc/tmpfiles.d/cxstream.conf
else
    install -d -m 0750 "$ETC"
    install -d -m 0700 "$CREDS"
fi

# 3. Configuration: yours is kept.
if [[ ! -e "$ETC/cxstream.toml" ]]; then
    install -m 0640 "$SRC/config/cxstream.toml" "$ETC/cxstream.toml"
    live && chgrp cxstream "$ETC/cxstream.toml"
    say "wrote $ETC/cxstream.toml: set cxone.base_url, token_url and client_id"
fi

# 4. Credentials: yours are kept; missing ones start empty (an empty
# archive_secret means no archive callbacks, as archive.url = "" does).
for name in webhook_secret cxone_client_secret archive_secret; do
    if [[ ! -e "$CREDS/$name" ]]; then
        install -m 0600 /dev/null "$CREDS/$name"
        say "created empty $CREDS/$name"
    fi
done

# 5. Unit and log rotation.
install -D -m 0644 "$SRC/systemd/cxstream.service" "$UNIT_DIR/cxstream.service"
install -D -m 0644 "$SRC/config/logrotate" "$ROOT/etc/logrotate.d/cxstream"
if ! live; then
    say "staged under $ROOT"
    exit 0
fi
systemctl daemon-reload
if CREDENTIALS_DIRECTORY="$CREDS" "$PREFIX/bin/cxstream" check-config --config "$ETC/cxstream.toml"; then
    systemctl enable cxstream.service
    # An upgrade restarts: SIGTERM checkpoints every stream, the new code resumes them.
    if systemctl is-active --quiet cxstream.service; then
        systemctl restart cxstream.service
    else
        systemctl start cxstream.service
    fi
    say "cxstream is running: systemctl status cxstream; journalctl -u cxstream -o cat"
else
    systemctl enable cxstream.service
    say "not started: fix what check-config said above (the secrets go in $CREDS/,"
    say "one per file), then: systemctl start cxstream"
fi
