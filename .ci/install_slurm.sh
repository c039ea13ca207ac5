#!/usr/bin/env bash
# Installs what tests/test_slurm.py needs for a real single-node SLURM cluster on loopback:
# slurmctld + slurmd + the client commands (Debian's slurm-wlm) and munge for authentication.
# Idempotent: does nothing when everything is already installed. Needs root (CI runs as root).
set -euo pipefail

PACKAGES=(slurm-wlm slurm-client munge)
if dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps out slurm-wlm-doc, mail and web bits; the daemons do not need them.
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
# Debian's postinst creates the munge key; make sure one exists even where it did not.
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --force
  else
    /usr/sbin/create-munge-key -f
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
