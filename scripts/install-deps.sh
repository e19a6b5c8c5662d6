#!/bin/sh
# Installs what mailrestore's sandbox (sandbox/src/) and benches need on a
# Debian 12 machine, as root: the real servers the integration tests start
# (Dovecot, Radicale, Postfix, Xandikos), mbsync for the benches, htpasswd,
# and the `vmail` system user that owns the sandbox mail.
#
# Idempotent and fast the second time: apt-get runs only when a package is
# missing. Services the packages would start are kept stopped (policy-rc.d):
# the sandbox runs its own private instances on free loopback ports.
#
# Postfix needs no /etc/postfix/main.cf edits: `alternate_config_directories`
# is only enforced for non-root users, and the sandbox starts Postfix's master
# as root with `-c <temp dir>` (see sandbox/src/postfix.rs).
set -eu

PACKAGES="dovecot-imapd dovecot-lmtpd radicale postfix isync restic xandikos apache2-utils ca-certificates openssl systemd fuse3"
MAIL_USER=vmail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: must run as root" >&2
    exit 1
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=""
for package in $PACKAGES; do
    installed "$package" || missing="$missing $package"
done

if [ -n "$missing" ]; then
    echo "install-deps.sh: installing$missing"
    # Keep package scripts from starting system-wide daemons (Dovecot on 143,
    # Radicale on 5232): the sandbox starts its own. Only ours is removed.
    policy=/usr/sbin/policy-rc.d
    own_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        own_policy=1
    fi
    trap '[ -z "$own_policy" ] || rm -f "$policy"' EXIT
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086 # word splitting of the package list is wanted
    apt-get install -y -q --no-install-recommends $missing
fi

# The unprivileged owner of the sandbox mail (Dovecot's mail_uid/mail_gid).
if ! getent passwd "$MAIL_USER" >/dev/null; then
    if ! getent group "$MAIL_USER" >/dev/null; then
        groupadd --system "$MAIL_USER"
    fi
    useradd --system --gid "$MAIL_USER" --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$MAIL_USER"
fi

# Accounts the packages create; checked so that a half-installed machine
# fails here, with a clear message, rather than inside a test.
for account in dovecot dovenull postfix; do
    if ! getent passwd "$account" >/dev/null; then
        echo "install-deps.sh: system user $account is missing (reinstall its package)" >&2
        exit 1
    fi
done
if ! getent group postdrop >/dev/null; then
    echo "install-deps.sh: group postdrop is missing (reinstall postfix)" >&2
    exit 1
fi

echo "install-deps.sh: all sandbox dependencies present"
