# lib.sh: names, paths and process handling shared by the fleet scripts (up, down, host-*).
# Sourced, not run. Everything is derived from FLEET_DIR so that `down` can find and remove what
# `up` made even when `up` died half-way and never wrote fleet.env.
#
# Naming (ID = first 4 hex digits of sha1(FLEET_DIR), so two fleets in different FLEET_DIRs do not
# share names; set FLEET_ID to choose it):
#   network namespace   cvy-ID-hN        (/var/run/netns/cvy-ID-hN)
#   bridge (root ns)    cvyID-br         address FLEET_NET.1/24
#   veth, root side     cvyID-hN         enslaved to the bridge; the peer is `eth0` in the namespace
#   host N address      FLEET_NET.(10+N) e.g. 10.231.0.11
# Interface names must stay within 15 characters: these are at most 11.

FLEET_DIR=${FLEET_DIR:-/var/tmp/convoy-fleet}
FLEET_DIR=${FLEET_DIR%/}
FLEET_ID=${FLEET_ID:-$(printf '%s' "$FLEET_DIR" | sha1sum | cut -c1-4)}
# A fleet brought up with its own FLEET_NET keeps it: host-stop/host-start rewrite fleet.env, and
# the tests run them with FLEET_DIR alone.
if [[ -z ${FLEET_NET:-} && -f $FLEET_DIR/fleet.env ]]; then
  FLEET_NET=$(sed -n 's/^FLEET_NET=//p' "$FLEET_DIR/fleet.env")
fi
FLEET_NET=${FLEET_NET:-10.231.0}
FLEET_BRIDGE="cvy${FLEET_ID}-br"
FLEET_GATEWAY="${FLEET_NET}.1"
FLEET_ROOT_DOCKER=${FLEET_ROOT_DOCKER:-unix:///var/run/docker.sock}
# The proxy (HAProxy) and web server (nginx) images are real Debian software for the proxy's
# tests (scripts/test-image builds them; scripts/ensure-docker does that before the fleet).
FLEET_IMAGES=${FLEET_IMAGES:-"convoy-test/busybox:1 convoy-test/busybox:2 convoy-test/proxy:1 convoy-test/nginx:1"}
# Seconds to wait for a condition (an engine answering, a process exiting) before giving up.
FLEET_WAIT_SECS=${FLEET_WAIT_SECS:-60}

fleet_log() { printf '%s: %s\n' "${FLEET_CMD:-fleet}" "$*" >&2; }
fleet_die() { fleet_log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || fleet_die "must run as root (namespaces, veths, dockerd)"

host_ns() { printf 'cvy-%s-h%s' "$FLEET_ID" "$1"; }
host_veth() { printf 'cvy%s-h%s' "$FLEET_ID" "$1"; }
host_addr() { printf '%s.%s' "$FLEET_NET" "$((10 + $1))"; }
host_dir() { printf '%s/h%s' "$FLEET_DIR" "$1"; }
host_sock() { printf '%s/h%s/docker.sock' "$FLEET_DIR" "$1"; }
host_docker() { timeout 30 docker -H "unix://$(host_sock "$1")" "${@:2}"; }

# The hosts a fleet directory holds: from fleet.env when there is one, else from the h* folders.
fleet_host_numbers() {
  local d n
  for d in "$FLEET_DIR"/h[0-9]*; do
    [[ -d $d ]] || continue
    n=${d##*/h}
    [[ $n =~ ^[0-9]+$ ]] && printf '%s\n' "$n"
  done | sort -n
}

# A zombie counts as gone: daemons here are reparented to PID 1, which on some machines (this CI
# VM's init) reaps late, and `kill -0` succeeds on a zombie.
pid_alive() {
  local st
  [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null || return 1
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) } # the state follows the command name, which may itself hold spaces or ')'
  [[ ${st%% *} != Z ]]
}
pid_from_file() { [[ -s $1 ]] && tr -dc '0-9' <"$1" || true; }

# wait_gone DEADLINE_SECS PID...: true when every pid has exited before the deadline.
wait_gone() {
  local deadline=$((SECONDS + $1)) p left
  shift
  while :; do
    left=0
    for p in "$@"; do pid_alive "$p" && left=1; done
    ((left)) || return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# Children of a pid, read from /proc/*/stat (field 4, after the command name, which may itself
# hold spaces or ')'); /proc rather than ps: a fresh Debian 12 need not have procps.
children_of() {
  local f line rest
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue # the process may be gone by now
    rest=${line##*) }
    rest=${rest#* } # drop the state; the ppid comes next
    [[ ${rest%% *} == "$1" ]] && { f=${f#/proc/}; printf '%s\n' "${f%/stat}"; }
  done
  return 0
}

# Descendants of a pid, parents before their children.
descendants() {
  local k
  for k in $(children_of "$1"); do
    printf '%s\n' "$k"
    descendants "$k"
  done
}

# Processes that belong to host N's container runtime: the containerd that its dockerd supervises
# and the shims that containerd started, found by FLEET_DIR/hN/exec/containerd/ in their command
# lines (containerd's --config, the shims' -address: unique to this host), plus every process
# below them (the containers).
host_runtime_pids() {
  local addr="$(host_dir "$1")/exec/containerd/" p cmd
  for p in /proc/[0-9]*; do
    cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
    case $cmd in
      *containerd*"$addr"*)
        printf '%s\n' "${p#/proc/}"
        descendants "${p#/proc/}"
        ;;
    esac
  done | sort -u
}

# Stop host N's sshd: the listener and the per-connection processes below it, so that open SSH
# connections die too (as when a machine goes away).
stop_sshd() {
  local pid pids
  pid=$(pid_from_file "$(host_dir "$1")/sshd.pid")
  pid_alive "$pid" || return 0
  pids="$pid $(descendants "$pid" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  # shellcheck disable=SC2086
  wait_gone 10 $pids || { kill -KILL $pids 2>/dev/null || true; wait_gone 5 $pids || true; }
  rm -f "$(host_dir "$1")/sshd.pid"
}

# Kill host N's engine at once, as a power cut does: dockerd, its containerd, the shims and every
# container process. dockerd goes first so that it cannot restart the containers it sees die.
kill_engine_hard() {
  local dpid pids
  dpid=$(pid_from_file "$(host_dir "$1")/dockerd.pid")
  pid_alive "$dpid" && kill -KILL "$dpid" 2>/dev/null || true
  pids=$(host_runtime_pids "$1" | tr '\n' ' ')
  # shellcheck disable=SC2086
  [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
  # shellcheck disable=SC2086
  wait_gone 15 $dpid $pids || fleet_log "warning: host $1: processes still alive after SIGKILL: $pids"
  # dockerd trusts exec/containerd/containerd.pid on start-up: if that pid still exists (a zombie
  # not yet reaped, or a recycled pid) it waits for "its" containerd and times out. Remove it.
  rm -f "$(host_dir "$1")/dockerd.pid" "$(host_dir "$1")/exec/containerd/containerd.pid"
}

# Stop host N's engine the orderly way: dockerd stops its containers (each within its own stop
# timeout) and its containerd, then exits.
stop_engine_graceful() {
  local dpid
  dpid=$(pid_from_file "$(host_dir "$1")/dockerd.pid")
  if pid_alive "$dpid"; then
    kill -TERM "$dpid"
    wait_gone "$FLEET_WAIT_SECS" "$dpid" || fleet_log "warning: host $1: dockerd $dpid did not exit in ${FLEET_WAIT_SECS}s"
  fi
  # Anything left (a dockerd that hung, a containerd orphaned by a crash) goes the hard way.
  kill_engine_hard "$1"
}

# Host N's own UTS namespace, kept alive by a bind mount on FLEET_DIR/hN/uts, so that dockerd and
# sshd of host N see the hostname `hostN` (`docker info` then names the engine hostN, and
# `ssh host1 hostname` says host1) without touching the machine's hostname.
make_uts() {
  local n=$1 h
  h=$(host_dir "$n")
  mountpoint -q "$h/uts" 2>/dev/null && return 0
  : >"$h/uts"
  unshare --uts="$h/uts" hostname "host$n"
}
host_nsenter() { nsenter --net="/var/run/netns/$(host_ns "$1")" --uts="$(host_dir "$1")/uts" -- "${@:2}"; }

# Start host N's dockerd inside its namespace. nsenter --net (not `ip netns exec`, which remounts
# /sys so that dockerd fails with "Devices cgroup isn't mounted"). Distinct data and exec roots,
# pidfile and socket per host; a containerd namespace per host so that engines never see each
# other's containers even if they end up sharing a system containerd.
start_engine() {
  local n=$1 h ns
  h=$(host_dir "$n")
  ns=$(host_ns "$n")
  mkdir -p "$h/data" "$h/exec"
  rm -f "$h/docker.sock"
  make_uts "$n"
  setsid nohup nsenter --net="/var/run/netns/$ns" --uts="$h/uts" -- dockerd \
    --data-root "$h/data" \
    --exec-root "$h/exec" \
    --pidfile "$h/dockerd.pid" \
    -H "unix://$h/docker.sock" \
    --containerd-namespace "$ns" \
    --containerd-plugins-namespace "$ns-plugins" \
    >>"$h/dockerd.log" 2>&1 </dev/null 8>&- 9>&- &
  printf '%s\n' "$!" >"$h/dockerd.pid.start"
}

# Wait until host N's engine answers `docker info`.
wait_engine() {
  local n=$1 deadline=$((SECONDS + FLEET_WAIT_SECS)) pid
  pid=$(pid_from_file "$(host_dir "$n")/dockerd.pid.start")
  until docker -H "unix://$(host_sock "$n")" info >/dev/null 2>&1; do
    if ! pid_alive "$pid"; then
      tail -n 20 "$(host_dir "$n")/dockerd.log" >&2
      fleet_die "host $n: dockerd exited during start-up (log: $(host_dir "$n")/dockerd.log)"
    fi
    ((SECONDS < deadline)) || fleet_die "host $n: engine did not answer within ${FLEET_WAIT_SECS}s"
    sleep 0.1
  done
}

# Start host N's sshd in its namespace; it daemonises and writes its PidFile once it listens.
start_sshd() {
  local n=$1 h
  h=$(host_dir "$n")
  mkdir -p /run/sshd # privilege separation directory; sshd refuses to start without it
  chmod 0755 /run/sshd
  rm -f "$h/sshd.pid"
  make_uts "$n"
  # 8>&- 9>&-: daemons must not inherit the callers' lock descriptors (scripts/test holds the
  # fleet lock on 8), or a daemon that outlives its run keeps the lock forever.
  host_nsenter "$n" /usr/sbin/sshd -f "$h/sshd_config" -E "$h/sshd.log" </dev/null 8>&- 9>&-
}

# Wait until host N answers over SSH with the generated config and known_hosts.
wait_ssh() {
  local n=$1 deadline=$((SECONDS + FLEET_WAIT_SECS))
  until ssh -F "$FLEET_DIR/ssh_config" -n "host$n" true 2>/dev/null; do
    ((SECONDS < deadline)) || {
      ssh -F "$FLEET_DIR/ssh_config" -n "host$n" true || true
      fleet_die "host $n: no SSH within ${FLEET_WAIT_SECS}s (log: $(host_dir "$n")/sshd.log)"
    }
    sleep 0.1
  done
}

# fleet.env: KEY=VALUE lines, no quotes, no spaces in values (lists are comma-separated), so that
# bash can source it and any program can split lines on the first '='. Rewritten after
# host-start/host-stop, because pids change.
write_fleet_env() {
  local n hosts="" tmp="$FLEET_DIR/fleet.env.tmp"
  local -a nums
  mapfile -t nums < <(fleet_host_numbers)
  for n in "${nums[@]}"; do hosts+="${hosts:+,}host$n"; done
  {
    printf '# written by tests/fleet; KEY=VALUE, lists comma-separated\n'
    printf 'FLEET_DIR=%s\n' "$FLEET_DIR"
    printf 'FLEET_ID=%s\n' "$FLEET_ID"
    printf 'FLEET_NET=%s\n' "$FLEET_NET"
    printf 'FLEET_BRIDGE=%s\n' "$FLEET_BRIDGE"
    printf 'FLEET_GATEWAY=%s\n' "$FLEET_GATEWAY"
    printf 'FLEET_SSH_USER=root\n'
    printf 'FLEET_SSH_PORT=22\n'
    printf 'FLEET_SSH_KEY=%s\n' "$FLEET_DIR/client_key"
    printf 'FLEET_SSH_CONFIG=%s\n' "$FLEET_DIR/ssh_config"
    printf 'FLEET_KNOWN_HOSTS=%s\n' "$FLEET_DIR/known_hosts"
    printf 'FLEET_IMAGES=%s\n' "$(printf '%s' "$FLEET_IMAGES" | tr ' ' ',')"
    printf 'FLEET_N_HOSTS=%s\n' "${#nums[@]}"
    printf 'HOSTS=%s\n' "$hosts"
    for n in "${nums[@]}"; do
      local h P="HOST$n"
      h=$(host_dir "$n")
      printf '%s_NAME=host%s\n' "$P" "$n"
      printf '%s_ADDR=%s\n' "$P" "$(host_addr "$n")"
      printf '%s_NETNS=%s\n' "$P" "$(host_ns "$n")"
      printf '%s_VETH=%s\n' "$P" "$(host_veth "$n")"
      printf '%s_DIR=%s\n' "$P" "$h"
      printf '%s_DOCKER_SOCK=%s\n' "$P" "$h/docker.sock"
      printf '%s_DOCKER_HOST=unix://%s\n' "$P" "$h/docker.sock"
      printf '%s_DOCKERD_PID=%s\n' "$P" "$(pid_from_file "$h/dockerd.pid")"
      printf '%s_DOCKERD_LOG=%s\n' "$P" "$h/dockerd.log"
      printf '%s_SSHD_PID=%s\n' "$P" "$(pid_from_file "$h/sshd.pid")"
      printf '%s_SSHD_LOG=%s\n' "$P" "$h/sshd.log"
    done
  } >"$tmp"
  mv -f "$tmp" "$FLEET_DIR/fleet.env"
}
