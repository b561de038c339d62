#!/usr/bin/env bash
# Installs the Coral udev rules (run as root), then reloads udev. Replug USB devices afterwards.
# The rules file is 70-*: it must sort before systemd's 73-seat-late.rules for its uaccess tag
# (desktop access without a group) to take effect. An older 99-coral-edgetpu.rules is removed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
install -m 0644 "$here/70-coral-edgetpu.rules" /etc/udev/rules.d/70-coral-edgetpu.rules
rm -f /etc/udev/rules.d/99-coral-edgetpu.rules
getent group plugdev >/dev/null || groupadd --system plugdev
getent group apex >/dev/null || groupadd --system apex
udevadm control --reload-rules
udevadm trigger
echo "installed /etc/udev/rules.d/70-coral-edgetpu.rules; add yourself to plugdev/apex if your desktop has no uaccess: sudo usermod -aG plugdev,apex \$USER"
