#!/usr/bin/env bash
# Installs what tests/test_slurm.py needs for a real one-node SLURM cluster on loopback:
# slurmctld + slurmd + the client commands (Debian's slurm-wlm) and munge for authentication;
# and for the two-node cluster of tests/test_slurm_multinode.py (one slurmd per network
# namespace): iproute2 (`ip netns`, veth, bridge) and util-linux (`nsenter`).
# Idempotent: installs only what is missing. Needs root (CI runs as root). The test itself writes
# /etc/slurm/slurm.conf and starts/stops the daemons; nothing is started here.
set -euo pipefail

PACKAGES=(slurm-wlm slurm-client munge iproute2 util-linux)
if ! dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No recommends: docs, mail and web bits; the daemons and clients do not need them.
  apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
fi

# Debian's postinst creates the munge key; make sure one exists wherever it did not.
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --force
  else
    /usr/sbin/create-munge-key -f
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
