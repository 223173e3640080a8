#!/usr/bin/env bash
# The hardware lab: a QEMU guest running Debian's own kernel with this machine's root shared
# read-only (see docs/software-key.md, "The hardware lab"). Idempotent and cached:
#  - as root, installs the apt packages the lab runs (QEMU, udev, libfido2's tools, busybox);
#  - downloads Debian's linux-image-amd64 kernel package and unpacks it into the cache WITHOUT
#    installing it (the host's own kernel, /boot and /lib/modules are not touched);
#  - builds a small initramfs (static busybox, the virtio/9p/overlay/uhid modules, lab-init.sh).
# The cache is $KEYADMIN_LAB_CACHE (default /var/cache/keyadmin-lab); the guest sees it at the same
# path. On success it prints the cache's lab.env (KERNEL=, INITRD=, KVER=).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${KEYADMIN_LAB_CACHE:-/var/cache/keyadmin-lab}

LAB_PACKAGES=(qemu-system-x86 udev fido2-tools busybox-static cpio kmod)
missing=()
for pkg in "${LAB_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "lab-setup: missing packages; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "lab-setup: installing apt packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

# The kernel package that linux-image-amd64 currently points at, e.g. linux-image-6.1.0-41-amd64.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
if [ -z "$kpkg" ]; then
  apt-get update -qq
  kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
fi
[ -n "$kpkg" ] || { echo "lab-setup: apt does not know linux-image-amd64" >&2; exit 1; }
kver=${kpkg#linux-image-}
kdir=$cache/kernel-$kver
if [ ! -f "$kdir/.unpacked" ]; then
  echo "lab-setup: downloading and unpacking $kpkg (not installed on the host)" >&2
  rm -rf "$kdir" "$cache/download"
  mkdir -p "$cache/download" "$kdir"
  chmod 0755 "$cache" && chmod 0777 "$cache/download"  # apt's download user (_apt) writes here
  (cd "$cache/download" && { apt-get download -q "$kpkg" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download -q "$kpkg" >/dev/null; }; })
  dpkg-deb -x "$cache"/download/"$kpkg"_*.deb "$kdir"
  # Debian 12 ships modules under /lib/modules; newer packages under /usr/lib/modules.
  mdir=$(dirname "$(find "$kdir" -maxdepth 4 -type d -path "*/modules/$kver" | head -1)")
  depmod -b "${mdir%/lib/modules}" "$kver" 2>/dev/null || depmod -b "${mdir%/usr/lib/modules}" "$kver"
  rm -rf "$cache/download"
  touch "$kdir/.unpacked"
fi
moddir=$(find "$kdir" -maxdepth 4 -type d -path "*/modules/$kver" | head -1)

# The initramfs: rebuilt when lab-init.sh, this script or the kernel changes.
want=$(cat "$here/lab-init.sh" "$0" <(echo "$kver") | sha256sum | cut -d" " -f1)
initrd=$cache/initrd-$kver.cpio.gz
if [ ! -f "$initrd" ] || [ "$(cat "$initrd.sha256" 2>/dev/null)" != "$want" ]; then
  echo "lab-setup: building the guest initramfs" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work"/{bin,dev,proc,sys,mnt,modules,lower,upper,newroot}
  cp /bin/busybox "$work/bin/busybox"
  for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache \
           9pnet 9pnet_virtio 9p overlay; do
    f=$(modinfo -b "${moddir%/lib/modules/$kver}" -k "$kver" -n "$m" 2>/dev/null \
        || modinfo -b "${moddir%/usr/lib/modules/$kver}" -k "$kver" -n "$m" 2>/dev/null || true)
    case "$f" in
      /*.ko*) cp "$f" "$work/modules/" ; echo "$(basename "$f")" >> "$work/modules/order" ;;
      *) : ;;  # built into this kernel
    esac
  done
  install -m 0755 "$here/lab-init.sh" "$work/init"
  (cd "$work" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  echo "$want" > "$initrd.sha256"
fi

cat > "$cache/lab.env.tmp" <<ENV
KVER=$kver
KERNEL=$kdir/boot/vmlinuz-$kver
INITRD=$initrd
MODULES=$moddir
ENV
mv "$cache/lab.env.tmp" "$cache/lab.env"
cat "$cache/lab.env"
