#!/usr/bin/env bash
# Installs the real peers the tests and benchmarks talk to (Debian packages), when missing.
set -euo pipefail
need=()
command -v /usr/sbin/smtp-sink >/dev/null 2>&1 || need+=(postfix)
command -v /usr/sbin/postfix >/dev/null 2>&1 || need+=(postfix)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v saslpasswd2 >/dev/null 2>&1 || need+=(sasl2-bin libsasl2-modules)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v strace >/dev/null 2>&1 || need+=(strace)
# a loop-mounted ext4 spool for the read-only spool test
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v findmnt >/dev/null 2>&1 || need+=(util-linux)
# headless Chromium for the dashboard tests (driven by playwright-core)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing test peers: ${need[*]}"
  $SUDO apt-get update -qq
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
