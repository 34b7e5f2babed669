#!/usr/bin/env bash
# A one-node SLURM cluster (with accounting) on this Debian machine, for tests.
#
#   scripts/slurm_cluster.sh start    # install if needed, start, wait until the node is idle
#   scripts/slurm_cluster.sh status   # which daemons run, sinfo
#   scripts/slurm_cluster.sh stop     # stop every daemon started here
#   scripts/slurm_cluster.sh stop --purge   # ... and delete the state directory
#
# Needs root and Debian (apt-get). No systemd: every daemon is started by hand, in the
# background, with its pid file, log and state under the state directory
#   ${O2O_SLURM_DIR:-/tmp/o2o-slurm}
#     etc/slurm.conf, etc/slurmdbd.conf (mode 600)   configs (rewritten at each start)
#     munge/  munge.key, munged.pid, munged.log, seed  (owned by the munge user)
#     mysql/  private MariaDB datadir, socket mysql/mysqld.sock (no TCP port)
#     slurmctld/ slurmd/   StateSaveLocation / SlurmdSpoolDir
#     run/*.pid   log/*.log
# The client tools (sbatch, squeue, sacct, used by submitit) read /etc/slurm/slurm.conf:
# `start` makes that a symlink to the state directory's slurm.conf (a foreign file there is
# moved aside to slurm.conf.o2o-backup and put back by `stop`). munged keeps its default
# socket /run/munge/munge.socket.2, which is where slurm and the munge tools look.
# Ports: slurmctld 6817, slurmd 6818, slurmdbd 6819 (SLURM defaults), on 127.0.0.1.
#
# `start` when the cluster already runs is a no-op. `stop` keeps the state (munge key,
# accounting database, job-id counter), so a later `start` takes ~3 s and job ids keep
# growing (sacct keys on job ids); `stop --purge` removes it.
#
# Packages (installed only when a binary is missing; `apt-get update` only when apt has no
# candidate for them): slurmctld slurmd slurm-client munge slurmdbd mariadb-server, with
# --no-install-recommends (25 packages instead of 74), under a policy-rc.d guard so that
# their init scripts start no system service. Measured here: install ~10-40 s, start 2-4 s
# (incl. a new MariaDB datadir), stop 1-3 s.
#
# Environment: O2O_SLURM_DIR (state dir), O2O_SLURM_TIMEOUT (seconds to wait for the node
# to be idle, default 60).
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

STATE="${O2O_SLURM_DIR:-/tmp/o2o-slurm}"
TIMEOUT="${O2O_SLURM_TIMEOUT:-60}"
CLUSTER_NAME="o2o"
PARTITION="debug"
ETC_CONF="/etc/slurm/slurm.conf"
MUNGE_RUN="/run/munge"

CONF="$STATE/etc/slurm.conf"
DBD_CONF="$STATE/etc/slurmdbd.conf"
DB_DIR="$STATE/mysql"
DB_SOCK="$DB_DIR/mysqld.sock"
RUN="$STATE/run"
LOG="$STATE/log"
MUNGE_DIR="$STATE/munge"

log() { printf '[slurm_cluster] %s\n' "$*" >&2; }
die() { printf '[slurm_cluster] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }

# ---------------------------------------------------------------- helpers
running() { # running PID: alive and not a zombie (this machine's pid 1 reaps orphans late)
    local st
    st="$(sed -E 's/^.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null || true)"
    [[ -n "$st" && "$st" != Z ]]
}
pid_of() { # pid_of NAME -> pid from the pid file, if that process is alive
    local f
    case "$1" in
        munged) f="$MUNGE_DIR/munged.pid" ;;
        *) f="$RUN/$1.pid" ;;
    esac
    [[ -s "$f" ]] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$f")"
    [[ -n "$pid" ]] && running "$pid" || return 1
    # A stale pid file whose pid now belongs to another program does not count.
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$1" ]] || return 1
    echo "$pid"
}
alive() { pid_of "$1" >/dev/null; }

wait_for() { # wait_for SECONDS LABEL CMD...: until CMD succeeds; 1 after SECONDS
    local secs="$1"; shift 2
    local end=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        if (( $(date +%s) >= end )); then
            return 1
        fi
        sleep 0.2
    done
}

slurm_env() { SLURM_CONF="$CONF" "$@"; }

need_root_debian() {
    [[ "$(id -u)" == 0 ]] || die "must run as root (it installs packages and starts daemons)"
    if [[ ! -f /etc/debian_version ]] || ! command -v apt-get >/dev/null; then
        die "needs Debian (apt-get)"
    fi
}

# ---------------------------------------------------------------- install
PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
BINS=(slurmctld slurmd sinfo sbatch sacct sacctmgr scontrol munged munge slurmdbd
      mariadbd mariadb-install-db mariadb mariadb-admin)

install_packages() {
    local missing=0 b
    for b in "${BINS[@]}"; do
        command -v "$b" >/dev/null 2>&1 || missing=1
    done
    (( missing )) || return 0
    local t0; t0=$(now)
    log "installing ${PKGS[*]} ..."
    export DEBIAN_FRONTEND=noninteractive
    # `apt-get update` only when apt does not know the packages yet.
    # (output captured first: `grep -q` closing the pipe early would fail it under pipefail)
    local policy; policy="$(apt-cache policy "${PKGS[@]}" 2>/dev/null || true)"
    if [[ "$(grep -c 'Candidate: [0-9]' <<<"$policy")" -lt "${#PKGS[@]}" ]]; then
        log "apt-get update"
        apt-get update -qq
    fi
    # Keep the packages' init scripts from starting system services (Docker-style guard;
    # many images already have one).
    local guard=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        guard=1
    fi
    local rc=0
    apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >"/tmp/o2o-slurm-apt.log" 2>&1 || rc=$?
    if (( rc != 0 )); then
        log "apt-get install failed ($rc); retrying after apt-get update"
        apt-get update -qq
        rc=0
        apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >"/tmp/o2o-slurm-apt.log" 2>&1 || rc=$?
    fi
    (( guard )) && rm -f /usr/sbin/policy-rc.d
    (( rc == 0 )) || { tail -n 30 /tmp/o2o-slurm-apt.log >&2; die "apt-get install failed"; }
    log "installed in $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s"
}

# ---------------------------------------------------------------- configs
write_configs() {
    mkdir -p "$STATE/etc" "$RUN" "$LOG" "$STATE/slurmctld" "$STATE/slurmd" "$DB_DIR"
    # munged (the munge user) must reach its files under the state dir.
    chmod 755 "$STATE" "$STATE/etc" "$RUN" "$LOG"

    local node_line host
    # e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24032"
    node_line="$(slurmd -C | grep '^NodeName=' | head -n1)"
    [[ -n "$node_line" ]] || die "slurmd -C printed no NodeName line"
    host="$(sed -E 's/^NodeName=([^ ]+).*/\1/' <<<"$node_line")"

    cat >"$CONF.tmp" <<EOF
# Written by scripts/slurm_cluster.sh ($(date -Is)); state dir $STATE. Do not edit.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits cred_expire seconds before it restarts (default 120; <5 means 120).
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=2
MailProg=/bin/true
ReturnToService=2
KillWait=5
InactiveLimit=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
$node_line NodeAddr=127.0.0.1 NodeHostname=$host State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
    chmod 644 "$CONF"

    local pass_file="$STATE/etc/db.pass" pass
    if [[ ! -s "$pass_file" ]]; then
        (umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$pass_file")
    fi
    pass="$(cat "$pass_file")"
    (umask 077; cat >"$DBD_CONF" <<EOF
# Written by scripts/slurm_cluster.sh; must be mode 600.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
# localhost = the unix socket named by MYSQL_UNIX_PORT (set when slurmdbd is started)
StorageHost=localhost
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$DBD_CONF"
}

link_etc_conf() {
    mkdir -p /etc/slurm
    if [[ -L "$ETC_CONF" ]]; then
        local target; target="$(readlink "$ETC_CONF")"
        if [[ "$target" != "$CONF" ]]; then
            # Another state dir's cluster: refuse if it is still running.
            local other="${target%/etc/slurm.conf}"
            if [[ -s "$other/run/slurmctld.pid" ]] && running "$(cat "$other/run/slurmctld.pid")"; then
                die "$ETC_CONF points to a running cluster in $other; stop it first (O2O_SLURM_DIR=$other $0 stop)"
            fi
        fi
    elif [[ -e "$ETC_CONF" ]]; then
        log "moving the existing $ETC_CONF to $ETC_CONF.o2o-backup"
        mv "$ETC_CONF" "$ETC_CONF.o2o-backup"
    fi
    ln -sfn "$CONF" "$ETC_CONF"
}

# ---------------------------------------------------------------- daemons
start_munged() {
    alive munged && munge -n | unmunge >/dev/null 2>&1 && return 0
    mkdir -p "$MUNGE_DIR" "$MUNGE_RUN"
    chown munge:munge "$MUNGE_DIR" "$MUNGE_RUN"
    chmod 700 "$MUNGE_DIR"; chmod 755 "$MUNGE_RUN"
    if [[ ! -s "$MUNGE_DIR/munge.key" ]]; then
        (umask 077; dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none)
    fi
    chown munge:munge "$MUNGE_DIR/munge.key"; chmod 400 "$MUNGE_DIR/munge.key"
    # A munged from elsewhere (another state dir, the system service) holds the socket.
    if [[ -S "$MUNGE_RUN/munge.socket.2" ]] && munge -n >/dev/null 2>&1; then
        die "another munged already serves $MUNGE_RUN/munge.socket.2; stop it first"
    fi
    rm -f "$MUNGE_RUN/munge.socket.2" "$MUNGE_RUN/munge.socket.2.lock"
    runuser -u munge -- munged \
        --key-file="$MUNGE_DIR/munge.key" \
        --pid-file="$MUNGE_DIR/munged.pid" \
        --log-file="$MUNGE_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" \
        --socket="$MUNGE_RUN/munge.socket.2" \
        || die "munged failed to start; see $MUNGE_DIR/munged.log"
    wait_for 15 munged sh -c 'munge -n | unmunge' \
        || die "munged does not answer; see $MUNGE_DIR/munged.log"
}

db() { mariadb --no-defaults --socket="$DB_SOCK" -uroot "$@"; }

start_mariadb() {
    if ! alive mariadbd; then
        if [[ ! -d "$DB_DIR/mysql" ]]; then
            log "initialising the accounting database in $DB_DIR"
            mariadb-install-db --no-defaults --datadir="$DB_DIR" --user=root \
                --auth-root-authentication-method=socket --skip-test-db \
                >"$LOG/mariadb-install-db.log" 2>&1 \
                || { tail -n 20 "$LOG/mariadb-install-db.log" >&2; die "mariadb-install-db failed"; }
        fi
        rm -f "$DB_SOCK"
        setsid mariadbd --no-defaults --user=root --datadir="$DB_DIR" \
            --socket="$DB_SOCK" --pid-file="$RUN/mariadbd.pid" --skip-networking \
            --log-error="$LOG/mariadbd.log" \
            --innodb-buffer-pool-size=128M --innodb-log-file-size=64M \
            --innodb-lock-wait-timeout=900 \
            </dev/null >>"$LOG/mariadbd.log" 2>&1 &
        wait_for 30 mariadbd mariadb-admin --no-defaults --socket="$DB_SOCK" -uroot ping \
            || { tail -n 20 "$LOG/mariadbd.log" >&2; die "MariaDB did not come up; see $LOG/mariadbd.log"; }
        # mariadbd writes its pid file itself; make sure it is there before we go on.
        wait_for 10 mariadbd-pid test -s "$RUN/mariadbd.pid" || die "no $RUN/mariadbd.pid"
    fi
    local pass; pass="$(cat "$STATE/etc/db.pass")"
    db -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
           ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
           FLUSH PRIVILEGES;" || die "could not create the slurm database user"
}

start_slurmdbd() {
    if ! alive slurmdbd; then
        MYSQL_UNIX_PORT="$DB_SOCK" SLURM_CONF="$CONF" slurmdbd \
            || die "slurmdbd failed to start; see $LOG/slurmdbd.log"
    fi
    wait_for 30 slurmdbd slurm_env sacctmgr -n list cluster \
        || { tail -n 20 "$LOG/slurmdbd.log" >&2; die "slurmdbd does not answer; see $LOG/slurmdbd.log"; }
    if ! slurm_env sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER_NAME"; then
        slurm_env sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null \
            || die "sacctmgr add cluster $CLUSTER_NAME failed"
    fi
}

start_slurmctld() {
    alive slurmctld && return 0
    slurm_env slurmctld || die "slurmctld failed to start; see $LOG/slurmctld.log"
    wait_for 30 slurmctld sh -c "SLURM_CONF='$CONF' scontrol ping | grep -q 'is UP'" \
        || { tail -n 20 "$LOG/slurmctld.log" >&2; die "slurmctld does not answer; see $LOG/slurmctld.log"; }
}

cancel_leftover_jobs() {
    # Jobs kept in StateSaveLocation from a run that died without `stop` (a batch job on a
    # failed node is requeued by default): cancel them, so a fresh start has an empty queue.
    # Done once slurmd is registered, so that it also ends their surviving slurmstepd.
    local jobs
    jobs="$(slurm_env squeue -h -o '%A' 2>/dev/null | tr '\n' ' ' || true)"
    if [[ -n "${jobs// /}" ]]; then
        log "cancelling jobs left from an earlier run: $jobs"
        # shellcheck disable=SC2086
        slurm_env scancel $jobs 2>/dev/null || true
        wait_for 20 leftovers-gone sh -c "[ -z \"\$(SLURM_CONF='$CONF' squeue -h -o %A)\" ]" \
            || log "some leftover jobs are still listed after scancel"
    fi
}

start_slurmd() {
    alive slurmd && return 0
    slurm_env slurmd || die "slurmd failed to start; see $LOG/slurmd.log"
}

node_state() { slurm_env sinfo -h -N -p "$PARTITION" -o '%T' 2>/dev/null | head -n1; }

wait_idle() {
    local end=$(( $(date +%s) + TIMEOUT )) st=""
    while :; do
        st="$(node_state || true)"
        case "$st" in
            idle|mixed|allocated|completing) return 0 ;;
        esac
        if (( $(date +%s) >= end )); then
            {
                echo "node not idle after ${TIMEOUT}s (state: '${st:-none}')"
                slurm_env sinfo -N -l 2>&1 || true
                echo "--- $LOG/slurmctld.log"; tail -n 15 "$LOG/slurmctld.log" 2>/dev/null || true
                echo "--- $LOG/slurmd.log"; tail -n 15 "$LOG/slurmd.log" 2>/dev/null || true
            } >&2
            die "timed out waiting for the node to be idle"
        fi
        sleep 0.2
    done
}

all_up() {
    local d
    for d in munged mariadbd slurmdbd slurmctld slurmd; do alive "$d" || return 1; done
    [[ "$(readlink "$ETC_CONF" 2>/dev/null)" == "$CONF" ]] || return 1
    case "$(node_state)" in idle|mixed|allocated|completing) return 0 ;; esac
    return 1
}

usage_text() {
    cat <<EOF
SLURM cluster '$CLUSTER_NAME' is up: one node, partition '$PARTITION' (default), accounting on.
  state dir : $STATE   (logs in $LOG)
  config    : $ETC_CONF -> $CONF
  try       : sinfo; srun -p $PARTITION hostname; sbatch --wrap 'sleep 1'; squeue; sacct
  submitit  : submitit.AutoExecutor(folder=...) with
              executor.update_parameters(slurm_partition="$PARTITION", timeout_min=5)
  stop      : $0 stop   (add --purge to delete $STATE)
EOF
}

cmd_start() {
    need_root_debian
    local t0; t0=$(now)
    install_packages
    if all_up; then
        log "already running (state dir $STATE)"
        usage_text
        return 0
    fi
    # Anything half-up from an earlier run: stop it, then start cleanly.
    local d any=0
    for d in munged mariadbd slurmdbd slurmctld slurmd; do alive "$d" && any=1; done
    if (( any )); then
        log "cluster partly up; restarting it"
        cmd_stop
    fi
    write_configs
    link_etc_conf
    start_munged
    start_mariadb
    start_slurmdbd
    start_slurmctld
    start_slurmd
    wait_idle
    cancel_leftover_jobs
    log "up in $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s"
    usage_text
}

stop_group() { # stop_group NAME...: SIGTERM to all, wait up to 10 s, then SIGKILL
    local name pid i left
    local -a pids=()
    for name in "$@"; do
        pid="$(pid_of "$name")" || continue
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
    done
    (( ${#pids[@]} )) || return 0
    for (( i = 0; i < 100; i++ )); do
        left=0
        for pid in "${pids[@]}"; do running "$pid" && left=1; done
        (( left )) || return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if running "$pid"; then
            log "pid $pid ($*) did not stop after 10 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    sleep 0.2
}

cmd_stop() {
    need_root_debian
    if alive slurmctld; then
        # Cancel jobs so no job steps outlive the daemons.
        local jobs
        jobs="$(slurm_env squeue -h -o '%A' 2>/dev/null | tr '\n' ' ' || true)"
        if [[ -n "${jobs// /}" ]]; then
            # shellcheck disable=SC2086
            slurm_env scancel $jobs 2>/dev/null || true
            wait_for 15 jobs-gone sh -c "[ -z \"\$(SLURM_CONF='$CONF' squeue -h -o %A)\" ]" \
                || log "some jobs are still listed after scancel"
        fi
    fi
    # slurmctld still reports to slurmdbd while it shuts down; slurmdbd to MariaDB.
    stop_group slurmd slurmctld
    stop_group slurmdbd
    stop_group mariadbd munged
    rm -f "$RUN"/*.pid "$MUNGE_DIR/munged.pid" 2>/dev/null || true
    # Put /etc/slurm/slurm.conf back the way it was.
    if [[ "$(readlink "$ETC_CONF" 2>/dev/null)" == "$CONF" ]]; then
        rm -f "$ETC_CONF"
        [[ -e "$ETC_CONF.o2o-backup" ]] && mv "$ETC_CONF.o2o-backup" "$ETC_CONF"
    fi
    if [[ "${1:-}" == "--purge" ]]; then
        case "$STATE" in /|/tmp|/root|/home|"") die "refusing to delete '$STATE'" ;; esac
        rm -rf "$STATE"
        log "stopped; removed $STATE"
    else
        log "stopped (state kept in $STATE; '$0 stop --purge' removes it)"
    fi
}

cmd_status() {
    local d rc=0 pid
    for d in munged mariadbd slurmdbd slurmctld slurmd; do
        if pid="$(pid_of "$d")"; then
            printf '%-10s running (pid %s)\n' "$d" "$pid"
        else
            printf '%-10s stopped\n' "$d"; rc=1
        fi
    done
    echo "state dir: $STATE"
    if (( rc == 0 )); then
        slurm_env sinfo -N -l || rc=1
    fi
    return "$rc"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) shift; cmd_stop "${1:-}" ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop [--purge]|status   (state dir: \${O2O_SLURM_DIR:-/tmp/o2o-slurm})" >&2; exit 2 ;;
esac
