#!/usr/bin/env bash
# Root filesystem of a local execution-environment base image, assembled from this Debian 12
# host's own packages (no registry is reachable): Python 3.11 with ensurepip's wheels, bash and
# the tools ansible-builder's scripts call, the PostgreSQL 15 client, dpkg's database (so bindep
# sees what is installed), CA certificates, and a no-op package manager for ansible-builder.
set -euo pipefail
root="$(realpath -m "${1:?usage: rootfs.sh DIR}")"
pkgs=(python3.11 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib python3.11-venv
    python3-pip-whl python3-setuptools-whl bash dash coreutils grep sed findutils diffutils
    tar gzip dpkg libc-bin ca-certificates postgresql-client-15 postgresql-client-common libpq5
    openssh-client)
for pkg in "${pkgs[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || { echo "rootfs.sh: package $pkg is not installed" >&2; exit 1; }
done
rm -rf "$root"
mkdir -p "$root"/{usr/bin,usr/lib,usr/sbin,usr/local/bin,etc,tmp,root,var/lib/dpkg,usr/lib64}
chmod 1777 "$root/tmp"
for d in bin lib lib64 sbin; do ln -s "usr/$d" "$root/$d"; done
files=()
while IFS= read -r f; do
    [[ -f "$f" || -L "$f" ]] && files+=("$f")
done < <(dpkg -L "${pkgs[@]}" | grep -v -e '^/usr/share/doc' -e '^/usr/share/man' -e '^/usr/share/locale' -e '^/\.$' \
    | sed -e 's#^/\(bin\|sbin\|lib\|lib64\)/#/usr/\1/#' | grep -v -x -e /bin -e /sbin -e /lib -e /lib64 | sort -u)
libs=()
while IFS= read -r lib; do
    libs+=("$lib")
done < <(for f in "${files[@]}"; do
        [[ -f "$f" && ( -x "$f" || "$f" == *.so* ) ]] || continue
        ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^\t\/lib64\//{print $1}'  || true
    done | sort -u | sed -e 's#^/lib/#/usr/lib/#' -e 's#^/lib64/#/usr/lib64/#')
libs+=(/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2)
(cd / && printf '%s\0' "${files[@]#/}" | xargs -0 cp -a --parents -t "$root/")
for lib in "${libs[@]}"; do
    (cd / && cp -aL --parents "${lib#/}" "$root/")
done
cp -aL /usr/lib64/ld-linux-x86-64.so.2 "$root/usr/lib64/"
(cd / && cp -a --parents usr/share/zoneinfo usr/lib/locale/C.utf8 etc/ssl usr/lib/os-release etc/os-release \
    etc/postgresql-common "$root/")
(cd / && cp -aL --parents etc/ssl/certs/ca-certificates.crt "$root/")
# dpkg's status, limited to the packages copied: bindep asks dpkg-query what is installed.
dpkg-query -s "${pkgs[@]}" postgresql-client >"$root/var/lib/dpkg/status"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
cat >"$root/usr/bin/rat-no-pkgmgr" <<'SH'
#!/bin/sh
# ansible-builder calls its package manager to install the Python interpreter and bindep's
# packages; this image was assembled with them already, so there is nothing to install.
echo "rat-no-pkgmgr: nothing to install ($*)"
exit 0
SH
chmod 0755 "$root/usr/bin/rat-no-pkgmgr"
cat >"$root/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/bash
PW
cat >"$root/etc/group" <<'GR'
root:x:0:
GR
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
