#!/bin/sh
# Entry point of the wgplane image: use the iptables backend (nf_tables or legacy) that the host's
# kubelet and kube-proxy use, then run `wgplane "$@"`. Rules written through the other backend would
# still be enforced, but in a second, separately ordered set of tables that `iptables-save` on the host
# does not show: wgplane's chains must sit beside kube-proxy's.
#
# The choice, as kubernetes-sigs/iptables-wrappers makes it: the backend holding the kubelet's marker
# chains (KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY in the mangle table) wins; else the one with more
# rules; nf_tables on a tie. WGPLANE_IPTABLES_MODE=nft|legacy overrides it.
# The root file system is read-only: the chosen backend is linked in WGPLANE_RUN_DIR (an emptyDir).
set -eu

rules() { # $1 = legacy|nft: the number of rules in that backend, both families
  { xtables-"$1"-multi iptables-save 2>/dev/null || true; xtables-"$1"-multi ip6tables-save 2>/dev/null || true; } | grep -c '^-' || true
}

marked() { # $1 = legacy|nft: does that backend hold the kubelet's marker chains?
  { xtables-"$1"-multi iptables-save -t mangle 2>/dev/null || true; xtables-"$1"-multi ip6tables-save -t mangle 2>/dev/null || true; } |
    grep -q -E '^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) '
}

mode="${WGPLANE_IPTABLES_MODE:-auto}"
if [ "$mode" = auto ]; then
  if marked nft; then mode=nft
  elif marked legacy; then mode=legacy
  elif [ "$(rules legacy)" -gt "$(rules nft)" ]; then mode=legacy
  else mode=nft
  fi
fi
case "$mode" in
  nft|legacy) ;;
  *) echo "wgplane-entrypoint: WGPLANE_IPTABLES_MODE=$mode: want auto, nft or legacy" >&2; exit 1 ;;
esac

bindir="${WGPLANE_RUN_DIR:-/run/wgplane}/xtables-$mode"
mkdir -p "$bindir"
multi="$(command -v xtables-"$mode"-multi)"
for tool in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -sf "$multi" "$bindir/$tool"
done
PATH="$bindir:$PATH"
export PATH WGPLANE_IPTABLES_MODE="$mode"
exec wgplane "$@"
