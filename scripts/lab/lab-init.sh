#!/bin/busybox sh
# PID 1 of the lab guest's initramfs: the host's root, shared read-only over 9p, becomes the
# guest's root under a tmpfs overlay (writable, nothing reaches the host); the writable 9p share
# "results" is mounted at /lab-results; then lab.run=SCRIPT runs as PID 1 of the new root.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod "/modules/$m" || echo "lab-init: insmod $m failed"; done < /modules/order
run=$(sed -n 's/.*lab\.run=\([^ ]*\).*/\1/p' /proc/cmdline)
mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=loose,msize=262144 hostroot /lower || {
  echo "lab-init: cannot mount the host root"; poweroff -f; }
mount -t tmpfs -o size=256m tmpfs /upper
mkdir -p /upper/up /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/up,workdir=/upper/work overlay /newroot || {
  echo "lab-init: overlay failed"; poweroff -f; }
mkdir -p /newroot/lab-results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /newroot/lab-results || {
  echo "lab-init: cannot mount the results share"; poweroff -f; }
umount /proc /sys
mount --move /dev /newroot/dev
echo "lab-init: switching to $run"
exec switch_root /newroot "$run"
