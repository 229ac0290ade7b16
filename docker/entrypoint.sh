#!/bin/sh
# Container entrypoint: make /proc/sys/net writable, then run the command.
#
# Docker mounts /proc/sys read-only in every unprivileged container, and the lab writes each node
# namespace's forwarding and rp_filter sysctls under /proc/sys/net. With CAP_SYS_ADMIN (which the
# lab needs anyway for named namespaces) a read-write bind of /proc/sys/net over itself lifts that
# for the network sysctls only: they belong to whichever namespace opens them (the container's own
# or a lab node's), never to the host. The rest of /proc/sys (kernel.*, vm.*) stays read-only.
# (`security_opt: systempaths=unconfined` would unmask all of /proc instead, and Compose does not
# pass it on: the Docker daemon rejects it, only `docker run` understands it.)
set -e
probe=/proc/sys/net/ipv4/ip_forward
if [ ! -w "$probe" ]; then
  if ! { mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net; } 2>/dev/null \
     || [ ! -w "$probe" ]; then
    echo "tcplab container: /proc/sys/net is read-only and could not be remounted (needs cap_add SYS_ADMIN," \
         "and apparmor=unconfined on AppArmor hosts): the lab cannot set its nodes' sysctls" >&2
  fi
fi
exec "$@"
