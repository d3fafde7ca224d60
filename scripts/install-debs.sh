#!/usr/bin/env bash
# Install the Debian packages the tests need, without enabling or starting any of them as a
# system service: the tests start their own servers on loopback (Prometheus, PostgreSQL,
# sshd...) and stop them by PID, and a package's own daemon would take their ports.
#
#   scripts/install-debs.sh PACKAGE...     (scripts/test.sh calls it with its list)
#
# Only packages that are missing are installed. While apt-get runs, /usr/sbin/policy-rc.d
# answers "101: no service may start"; a policy-rc.d that is already there is kept exactly as
# found (not replaced, not removed), one this script had to write is removed afterwards, also
# when the install fails. Then each newly installed package's systemd units are disabled and
# masked (linked to /dev/null, so no boot starts them either) and its SysV init scripts are
# disabled. Nothing here is specific to one package: add a package to the list and it is
# handled the same way.
#
# DEBS_ROOT (default: empty, i.e. /) is where policy-rc.d and /etc/systemd live; the tests of
# this script point it at a temporary directory, with stand-ins for apt-get and dpkg.
set -euo pipefail

root=${DEBS_ROOT:-}
policy="$root/usr/sbin/policy-rc.d"
units_dir="$root/etc/systemd/system"

missing=()
for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

as_root=()
[ "$(id -u)" -ne 0 ] && as_root=(sudo)

wrote_policy=
remove_policy() {
    if [ -n "$wrote_policy" ]; then
        "${as_root[@]}" rm -f "$policy"
        wrote_policy=
    fi
}
trap remove_policy EXIT

if [ ! -e "$policy" ]; then
    "${as_root[@]}" mkdir -p "$(dirname "$policy")"
    printf '#!/bin/sh\n# written by scripts/install-debs.sh while it installs packages\nexit 101\n' |
        "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    wrote_policy=1
fi

echo "installing Debian packages: ${missing[*]} (their services neither started nor enabled)" >&2
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"

systemd_running=
[ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null && systemd_running=1
for pkg in "${missing[@]}"; do
    while IFS= read -r file; do
        case "$file" in
        */lib/systemd/system/*.service | */lib/systemd/system/*.socket | */lib/systemd/system/*.timer)
            unit=$(basename "$file")
            if [ -n "$systemd_running" ]; then
                "${as_root[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
                "${as_root[@]}" systemctl mask "$unit" >/dev/null 2>&1 || true
            else
                # no systemd running (a container): disable and mask by hand, as systemctl would
                "${as_root[@]}" mkdir -p "$units_dir"
                "${as_root[@]}" find "$units_dir" -path "*.wants/$unit" -delete 2>/dev/null || true
                "${as_root[@]}" ln -sfn /dev/null "$units_dir/$unit"
            fi
            ;;
        /etc/init.d/*)
            if [ -z "$root" ] && command -v update-rc.d >/dev/null; then
                "${as_root[@]}" update-rc.d "$(basename "$file")" disable >/dev/null 2>&1 || true
            fi
            ;;
        esac
    done < <(dpkg -L "$pkg" 2>/dev/null)
done
remove_policy
