#!/usr/bin/env bash
# Builds the test guest from Debian packages: the Debian cloud kernel and a busybox initramfs
# with the virtio drivers (balloon, serial, block, net), an init that brings hot-added vCPUs online
# (udev's job on a full system) and a shell on the serial console; with a shardex binary, it is
# carried too (stripped, with the libraries it links), so `shardex guest` can run inside.
#
#   bash tools/guest/build.sh [OUT] [SHARDEX_BINARY]     # OUT defaults to target/guest
#
# Writes OUT/vmlinuz and OUT/initrd.img; everything it downloads stays under OUT (nothing is
# cached outside the clone). Needs apt-get (Debian's archive), dpkg-deb, gzip and strip.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/target/guest}
bin=${2:-}
mkdir -p "$out"
out=$(cd "$out" && pwd)
debs="$out/debs"
mkdir -p "$debs"

# The cloud kernel's current image package (the metapackage only depends on it).
kernel_pkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
pkg=$(kernel_pkg)
if [ -z "$pkg" ]; then
    apt-get update -qq
    pkg=$(kernel_pkg)
fi
[ -n "$pkg" ] || { echo "no linux-image-cloud-amd64 in the package lists" >&2; exit 1; }
if ! ls "$debs"/"$pkg"_*.deb >/dev/null 2>&1 || ! ls "$debs"/busybox-static_*.deb >/dev/null 2>&1; then
    # apt-get download writes into the current folder; as root it warns that _apt cannot.
    (cd "$debs" && apt-get download -q "$pkg" busybox-static 2>&1 | grep -v "unsandboxed" || true)
fi
ls "$debs"/"$pkg"_*.deb "$debs"/busybox-static_*.deb >/dev/null

x="$out/extract"
rm -rf "$x" "$out/root"
mkdir -p "$x"
dpkg-deb -x "$debs"/"$pkg"_*.deb "$x/kernel"
dpkg-deb -x "$debs"/busybox-static_*.deb "$x/busybox"
version=$(ls "$x/kernel/lib/modules")
cp "$x/kernel/boot/vmlinuz-$version" "$out/vmlinuz"

r="$out/root"
mkdir -p "$r"/{bin,dev,proc,sys,tmp,run,lib/modules,etc}
cp "$x/busybox/bin/busybox" "$r/bin/busybox"
# The drivers the tests use, in load order (the Debian package has no modules.dep yet).
mods=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
      virtio_balloon virtio_console virtio_blk failover net_failover virtio_net)
for m in "${mods[@]}"; do
    f=$(find "$x/kernel/lib/modules/$version" -name "$m.ko" | head -1)
    [ -n "$f" ] || { echo "module $m is not in $pkg" >&2; exit 1; }
    cp "$f" "$r/lib/modules/"
done
printf '%s\n' "${mods[@]}" > "$r/lib/modules/order"
install -m 0755 "$here/init" "$r/init"

if [ -n "$bin" ]; then
    # The binary, stripped, and the shared libraries it links, at the same paths.
    mkdir -p "$r/usr/bin"
    strip -o "$r/usr/bin/shardex" "$bin"
    ldd "$bin" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
        mkdir -p "$r$(dirname "$lib")"
        cp -L "$lib" "$r$lib"
    done
fi

(cd "$r" && find . | "$r/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -1 > "$out/initrd.img"
rm -rf "$x"
echo "guest: $out/vmlinuz ($version), $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1))"
