#!/bin/sh
# PID 1 of the hardware-lab guest (started by scripts/lab/lab-init.sh after switch_root).
# Brings up the little a udev-managed USB key needs (proc, sys, /run, devpts, systemd-udevd with
# keyadmin's rule), then runs guest_checks.py, which writes its findings to /lab-results.
# Always powers the guest off, whatever happened.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
here=$(dirname "$0")
repo=$(cd "$here/../.." && pwd)
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
env_file=$(sed -n 's/.*lab\.env=\([^ ]*\).*/\1/p' /proc/cmdline)
. "$env_file"
# Debian's kernel modules, unpacked by scripts/lab/setup.sh, where modprobe and udevd look.
mkdir -p /lib/modules
ln -sfn "$MODULES" "/lib/modules/$KVER"
echo "lab-guest: kernel $(uname -r), repo $repo"
mode=$(sed -n 's/.*lab\.mode=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ "$mode" = bench ]; then
  timeout 150 "$repo/.venv/bin/python" "$repo/bench/bench_lab_hid.py" --guest /lab-results \
    > /lab-results/checks.log 2>&1
else
  timeout 390 "$repo/.venv/bin/python" "$repo/tests/lab/guest_checks.py" /lab-results \
    > /lab-results/checks.log 2>&1
fi
echo "lab-guest: checks exited $?"
dmesg > /lab-results/dmesg.log 2>&1  # the kernel's full log (the console runs quiet)
sync
poweroff -f
