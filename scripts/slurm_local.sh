#!/usr/bin/env bash
# A real single-node Slurm on this machine, to run the pipeline's Slurm profile against (tests/pipeline/test_slurm.py).
#
#   scripts/slurm_local.sh install   # apt-get the Debian packages (slurm-wlm 22.05, munge, slurmdbd, MariaDB)
#   scripts/slurm_local.sh start     # munged, MariaDB, slurmdbd, slurmctld, slurmd; prints sinfo (idempotent)
#   scripts/slurm_local.sh status    # which daemons run, sinfo; exit 0 when the cluster takes jobs, 3 when not
#   scripts/slurm_local.sh stop      # cancels this cluster's jobs, stops the daemons it started (idempotent)
#
# The node is declared as `slurmd -C` measures the machine (CPUs, sockets, cores, RealMemory), with no GPU. Partition
# `local` (the default, no time limit) takes the jobs; a job in partition `urgent` (higher PriorityTier) preempts them
# and Slurm requeues them (PreemptMode=REQUEUE), as a site that lends idle nodes to preemptible jobs does. slurmdbd
# with MariaDB gives `sacct`: the job list with each job's requested resources, kept after the jobs end. The account
# `sprint` holds root (associations are enforced, as on most sites). Memory is a consumable resource
# (CR_Core_Memory) but not enforced: no cgroups in containers (proctrack/linuxproc, task/none). State, pid files and
# logs live in /var/lib/slurm-local, /run/slurm-local and /var/log/slurm-local; the configuration in /etc/slurm (a
# configuration this script did not write is refused). MariaDB is a private instance on 127.0.0.1:$SLURM_LOCAL_DB_PORT
# (default 3316), not the system's.
set -euo pipefail

ME="slurm_local.sh"
CLUSTER=sprintlocal
PARTITION=local
ACCOUNT=sprint
STATE=/var/lib/slurm-local
RUN=/run/slurm-local
LOG=/var/log/slurm-local
CONF=/etc/slurm/slurm.conf
DBDCONF=/etc/slurm/slurmdbd.conf
DB_PORT="${SLURM_LOCAL_DB_PORT:-3316}"
MARKER="# written by scripts/slurm_local.sh"
PACKAGES="slurmctld slurmd slurm-client slurmdbd munge mariadb-server"
HOST="$(hostname -s)"

say() { echo "$ME: $*"; }
die() { echo "$ME: $1" >&2; exit "${2:-1}"; }

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

needs() {  # refuse in one line: what is missing and why it is needed
    [ "$(id -u)" -eq 0 ] || die "needs root: it writes /etc/slurm and runs munged, MariaDB, slurmdbd, slurmctld and slurmd as system daemons (run it with sudo)" 2
    local missing=()
    for bin in munged mungekey mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sbatch sacct sacctmgr sinfo; do
        command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("$bin")
    done
    [ ${#missing[@]} -eq 0 ] || die "needs the Debian packages $PACKAGES (missing: ${missing[*]}) to run a Slurm controller, node and accounting database here: run '$0 install' (apt-get)" 2
}

wait_for() {  # wait_for SECONDS DESCRIPTION LOGFILE COMMAND...
    local limit=$1 what=$2 logfile=$3; shift 3
    for _ in $(seq "$((limit * 2))"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    echo "$ME: $what did not come up within ${limit}s; last lines of $logfile:" >&2
    tail -n 20 "$logfile" >&2 2>/dev/null || true
    exit 1
}

# ----------------------------------------------------------------------------------------------- configuration

write_if_changed() {  # write_if_changed FILE MODE OWNER (content on stdin); refuses a file this script did not write
    local file=$1 mode=$2 owner=$3 tmp
    tmp="$(mktemp)"
    cat >"$tmp"
    if [ -e "$file" ] && ! grep -qF "$MARKER" "$file"; then
        rm -f "$tmp"
        die "$file exists and was not written by this script: this machine has its own Slurm configuration; not touching it" 2
    fi
    if [ -e "$file" ] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        return 0
    fi
    install -m "$mode" -o "$owner" -g "$owner" "$tmp" "$file"
    rm -f "$tmp"
    CHANGED+=("$file")
}
CHANGED=()

db_password() {
    [ -s "$STATE/db.pass" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/db.pass")
    cat "$STATE/db.pass"
}

write_config() {
    install -d -m 755 /etc/slurm "$STATE" "$RUN" "$LOG"
    install -d -m 755 -o slurm -g slurm "$STATE/slurmctld" "$RUN/slurm" "$LOG/slurm"
    install -d -m 755 "$STATE/slurmd"
    install -d -m 750 -o mysql -g mysql "$STATE/mariadb" "$RUN/mariadb"
    # The machine as slurmd measures it: "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105" (no GPUs: no Gres).
    local node
    node="$(slurmd -C | head -n 1)"
    case "$node" in NodeName=*RealMemory=*) ;; *) die "slurmd -C gave no node description: '$node'" ;; esac
    write_if_changed "$CONF" 644 root <<EOF
$MARKER (a single-node test cluster: $ME start|stop|status)
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurm/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurm/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No cgroups in containers: processes are tracked through /proc; memory is scheduled, not enforced.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
GresTypes=gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
KillWait=10
MinJobAge=300
# A job in \`urgent\` preempts the jobs of \`$PARTITION\` it needs room from; they are requeued (they start again from
# their batch script), as on sites that lend idle nodes to preemptible jobs.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
${node} State=UNKNOWN
PartitionName=$PARTITION Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=${HOST} MaxTime=INFINITE State=UP PriorityTier=2
EOF
    write_if_changed "$DBDCONF" 600 slurm <<EOF
$MARKER (accounting for the single-node test cluster)
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=$RUN/slurm/slurmdbd.pid
LogFile=$LOG/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(db_password)
StorageLoc=slurm_acct_db
EOF
}

# ----------------------------------------------------------------------------------------------- daemons

SQL() { mariadb --no-defaults --protocol=socket --socket="$RUN/mariadb/mysqld.sock" -u root "$@"; }

start_munge() {
    if alive /run/munge/munged.pid && munge -n </dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    install -d -m 755 -o munge -g munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged --force
    wait_for 10 munged /var/log/munge/munged.log sh -c 'munge -n </dev/null | unmunge'
}

start_mariadb() {
    if alive "$RUN/mariadb/mysqld.pid"; then return 0; fi
    if [ ! -d "$STATE/mariadb/mysql" ]; then
        mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mariadb" --auth-root-authentication-method=socket \
            --skip-test-db >"$LOG/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: see $LOG/mariadb-install.log"
    fi
    # A small private instance: 32 MB of buffer pool is plenty for a few thousand job records.
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$STATE/mariadb" --socket="$RUN/mariadb/mysqld.sock" \
        --pid-file="$RUN/mariadb/mysqld.pid" --bind-address=127.0.0.1 --port="$DB_PORT" --innodb-buffer-pool-size=32M \
        --performance-schema=OFF --log-error="$LOG/mariadb.log" </dev/null >/dev/null 2>&1 &
    wait_for 60 MariaDB "$LOG/mariadb.log" SQL -e 'SELECT 1'
    local pass
    pass="$(db_password)"
    SQL -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass'; ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

start_slurmdbd() {
    if alive "$RUN/slurm/slurmdbd.pid"; then return 0; fi
    /usr/sbin/slurmdbd
    wait_for 60 slurmdbd "$LOG/slurm/slurmdbd.log" sacctmgr -n list cluster
}

ensure_associations() {  # the cluster, the account `sprint` and root in it (as its default account)
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" ||
        sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="SPRINT pipeline tests" Organization=local >/dev/null
    sacctmgr -n -P list association user=root account="$ACCOUNT" format=user | grep -qx root ||
        sacctmgr -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
}

start_slurmctld() {
    if alive "$RUN/slurm/slurmctld.pid"; then return 0; fi
    /usr/sbin/slurmctld
    wait_for 60 slurmctld "$LOG/slurm/slurmctld.log" scontrol ping
}

node_usable() { sinfo -h -n "$HOST" -o %T | grep -qE '^(idle|mixed|allocated|completing)'; }

start_slurmd() {
    if ! alive "$RUN/slurmd.pid"; then
        /usr/sbin/slurmd
    fi
    wait_for 60 "slurmd (node $HOST idle)" "$LOG/slurmd.log" sh -c "sinfo -h -n $HOST -o %T | grep -qvE 'unk|down|drain|not_responding|inval'"
    node_usable || scontrol update NodeName="$HOST" State=RESUME
    wait_for 30 "node $HOST" "$LOG/slurmd.log" node_usable
}

stop_pid() {  # stop_pid PIDFILE NAME: SIGTERM the daemon this script started, wait for it
    local pidfile=$1 name=$2 pid
    alive "$pidfile" || return 0
    pid="$(cat "$pidfile")"
    kill "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || { say "stopped $name"; return 0; }; sleep 0.5; done
    die "$name (pid $pid) did not stop within 30s"
}

# ----------------------------------------------------------------------------------------------- verbs

report() {
    local ok=0 name pidfile
    for entry in "munged:/run/munge/munged.pid" "mariadbd:$RUN/mariadb/mysqld.pid" "slurmdbd:$RUN/slurm/slurmdbd.pid" \
                 "slurmctld:$RUN/slurm/slurmctld.pid" "slurmd:$RUN/slurmd.pid"; do
        name=${entry%%:*}; pidfile=${entry#*:}
        if alive "$pidfile"; then printf '%-10s running (pid %s)\n' "$name" "$(cat "$pidfile")"
        else printf '%-10s stopped\n' "$name"; ok=3; fi
    done
    if [ "$ok" -eq 0 ]; then
        sinfo -N -o '%N %P %T %c %m %G %l' | column -t
        node_usable || ok=3
    fi
    return "$ok"
}

case "${1:-}" in
    install)
        [ "$(id -u)" -eq 0 ] || die "needs root to install the Debian packages $PACKAGES (run it with sudo)" 2
        command -v apt-get >/dev/null || die "needs apt-get (Debian or Ubuntu) to install $PACKAGES" 2
        apt-cache show slurmctld >/dev/null 2>&1 || apt-get update -q >/dev/null ||
            die "apt-get update failed: the Debian package lists (for $PACKAGES) cannot be fetched here" 2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null ||
            die "apt-get install $PACKAGES failed (no package mirror reachable?)" 2
        say "installed: $(dpkg-query -W -f '${Package} ${Version}\n' slurmctld slurmdbd munge mariadb-server | tr '\n' ' ')"
        ;;
    start)
        needs
        write_config
        # A configuration written anew while the daemons run (this script changed): they read it again.
        if [ ${#CHANGED[@]} -gt 0 ] && alive "$RUN/slurm/slurmdbd.pid" && [[ " ${CHANGED[*]} " == *" $DBDCONF "* ]]; then
            stop_pid "$RUN/slurm/slurmdbd.pid" slurmdbd
        fi
        if [ ${#CHANGED[@]} -gt 0 ] && alive "$RUN/slurm/slurmctld.pid" && [[ " ${CHANGED[*]} " == *" $CONF "* ]]; then
            # Some settings (preemption, accounting flags) need a restart, not `scontrol reconfigure`; running jobs
            # survive it (state in StateSaveLocation, steps outlive slurmd).
            stop_pid "$RUN/slurmd.pid" slurmd
            stop_pid "$RUN/slurm/slurmctld.pid" slurmctld
            say "$CONF changed: restarting slurmctld and slurmd"
        fi
        start_munge
        start_mariadb
        start_slurmdbd
        ensure_associations
        start_slurmctld
        start_slurmd
        say "cluster $CLUSTER up: partition $PARTITION, account $ACCOUNT, node $HOST as slurmd -C measures it, no GPUs"
        report
        ;;
    stop)
        needs
        if alive "$RUN/slurm/slurmctld.pid"; then
            squeue -h -o %i | xargs -r scancel || true
            for _ in $(seq 60); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
        fi
        stop_pid "$RUN/slurmd.pid" slurmd
        stop_pid "$RUN/slurm/slurmctld.pid" slurmctld
        stop_pid "$RUN/slurm/slurmdbd.pid" slurmdbd
        stop_pid "$RUN/mariadb/mysqld.pid" mariadbd
        stop_pid /run/munge/munged.pid munged
        say "stopped (state kept in $STATE; jobs and accounting survive a restart)"
        ;;
    status)
        needs
        report
        ;;
    *)
        echo "usage: $0 install|start|stop|status" >&2
        exit 64
        ;;
esac
