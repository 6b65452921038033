#!/bin/sh
# `sysctl` for the wgplane container, installed ahead of procps' sysctl on PATH.
# /proc/sys is read-only in an unprivileged container, and the runtime refuses to mount anything over
# /proc/sys/net; the DaemonSet mounts the host's /proc/sys/net at /host/proc/sys/net instead and sets
# WGPLANE_SYSCTL_ROOT=/host/proc/sys. Then `sysctl -w KEY=VALUE...` (the executor's only use) writes
# under that root, net.* keys only; everything else, and everything when WGPLANE_SYSCTL_ROOT is unset,
# is procps' sysctl. Keys take dots, or slashes when a name holds a dot (net/ipv4/conf/eth0.100/rp_filter),
# as procps reads them.
set -eu
root="${WGPLANE_SYSCTL_ROOT:-}"
real="${WGPLANE_REAL_SYSCTL:-/sbin/sysctl}"
if [ -z "$root" ] || [ "${1:-}" != "-w" ]; then exec "$real" "$@"; fi
shift
[ "$#" -gt 0 ] || { echo "sysctl: -w needs KEY=VALUE" >&2; exit 1; }
for kv in "$@"; do
  case "$kv" in
    *=*) ;;
    *) echo "sysctl: \"$kv\" must be of the form name=value" >&2; exit 1 ;;
  esac
  key="${kv%%=*}"
  value="${kv#*=}"
  case "$key" in
    */*) rel="$key" ;;
    *) rel="$(printf '%s' "$key" | tr . /)" ;;
  esac
  case "$rel" in
    net/*) ;;
    *) echo "sysctl: setting key \"$key\": only net.* keys are writable through $root" >&2; exit 1 ;;
  esac
  case "/$rel/" in
    */../*|*/./*) echo "sysctl: setting key \"$key\": not a sysctl name" >&2; exit 1 ;;
  esac
  file="$root/$rel"
  if [ ! -f "$file" ]; then echo "sysctl: cannot stat $file: No such file or directory (setting key \"$key\")" >&2; exit 1; fi
  if ! printf '%s\n' "$value" 2>/dev/null > "$file"; then
    echo "sysctl: setting key \"$key\": write to $file failed" >&2; exit 1
  fi
  echo "$key = $value"
done
