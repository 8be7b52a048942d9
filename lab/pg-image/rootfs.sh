#!/usr/bin/env bash
# Assembles the root filesystem of rat-lab/postgres:15 in $1 from the host's installed packages:
# postgresql-15, postgresql-client-15 and libpq5, every shared library their binaries need, a
# shell, the few coreutils the entrypoint and rat.backup's container mode use, setpriv,
# zoneinfo and the C.utf8 locale.
set -euo pipefail
root="${1:?usage: rootfs.sh DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools=(/usr/bin/sh /usr/bin/dash /usr/bin/setpriv /usr/bin/mkdir /usr/bin/rm /usr/bin/cat
    /usr/bin/chown /usr/bin/chmod /usr/bin/mktemp /usr/bin/ls /usr/bin/env /usr/bin/id
    /usr/bin/sleep /usr/bin/printf /usr/bin/head /usr/bin/test)

for pkg in postgresql-15 postgresql-client-15 libpq5; do
    dpkg -s "$pkg" >/dev/null 2>&1 || { echo "rootfs.sh: package $pkg is not installed" >&2; exit 1; }
done

rm -rf "$root"
mkdir -p "$root"/{usr/bin,usr/lib,usr/sbin,usr/local/bin,etc,tmp,var/run/postgresql,var/lib/postgresql}
chmod 1777 "$root/tmp"
# Debian 12 has a merged /usr: libraries are named by their /usr path and the top-level
# directories must be links, or the dynamic loader (/lib64/ld-linux...) is not found.
for d in bin lib lib64 sbin; do ln -s "usr/$d" "$root/$d"; done
mkdir -p "$root/usr/lib64"

files=()
while IFS= read -r f; do
    [[ -f "$f" || -L "$f" ]] && files+=("$f")
done < <(dpkg -L postgresql-15 postgresql-client-15 libpq5 | grep -v -e '^/usr/share/doc' -e '^/usr/share/man' -e '^/\.$')
files+=("${tools[@]}")

# Every library any ELF file needs, by its /usr path (merged-usr).
libs=()
while IFS= read -r lib; do
    libs+=("$lib")
done < <(for f in "${files[@]}"; do
        [[ -f "$f" && -x "$f" || "$f" == *.so* ]] || continue
        ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^\t\/lib64\//{print $1}'
    done | sort -u | sed -e 's#^/lib/#/usr/lib/#' -e 's#^/lib64/#/usr/lib64/#')
# The loader itself is reached through /lib64; keep its real target as well.
libs+=(/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2)

# GNU cp resolves --parents against the working directory, so copy from /.
(cd / && cp -a --parents "${files[@]#/}" "$root/")
for lib in "${libs[@]}"; do
    (cd / && cp -aL --parents "${lib#/}" "$root/")
done
cp -aL /usr/lib64/ld-linux-x86-64.so.2 "$root/usr/lib64/"
(cd / && cp -a --parents usr/share/zoneinfo usr/lib/locale/C.utf8 "$root/")

install -m 0755 "$here/entrypoint.sh" "$root/usr/local/bin/entrypoint.sh"
cat >"$root/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh
PW
cat >"$root/etc/group" <<'GR'
root:x:0:
postgres:x:999:
GR
printf 'hosts: files\n' >"$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
