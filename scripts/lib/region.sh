# Small PostgreSQL clusters and RabbitMQ nodes of the region drill's own (scripts/region-drill),
# on their own ports and directories, started and stopped by pid. Sourced after infra.sh.
#
# Each cluster lives in $DRILL/pg/<name> (data/, postgres.log); each node in $DRILL/rabbit/<name>.
# As root, servers run as their Debian users (postgres, rabbitmq), as the packages' own do.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_rabbit() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq "$@"
  else
    "$@"
  fi
}

# Waits up to $2 seconds for `$1` (a command) to succeed.
wait_for() { # command seconds what
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    eval "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "region-drill: $3 did not happen within $2 s" >&2
  return 1
}

pg_dir() { echo "$DRILL/pg/$1"; }
pg_url() { echo "postgres://postgres@127.0.0.1:$1/${2:-chukan}"; }
pg_sql() { # port sql  (the postgres database; -At output)
  psql -h 127.0.0.1 -p "$1" -U postgres -d "${3:-postgres}" -XAtqc "$2"
}

# A new primary: initdb with checksums, settings for streaming to a physical standby; with a
# pgBackRest stanza, its WAL is archived to every repository of $(backup_conf stanza).
pg_init_primary() { # name port [stanza]
  local dir
  dir=$(pg_dir "$1")
  rm -rf "$dir" && mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    --data-checksums >"$dir/initdb.log" 2>&1
  cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 120
shared_buffers = 32MB
wal_level = replica
max_wal_senders = 10
wal_keep_size = '512MB'
hot_standby = on
hot_standby_feedback = on
log_min_messages = warning
CONF
  if [ -n "${3:-}" ]; then
    cat >>"$dir/data/postgresql.conf" <<CONF
archive_mode = on
archive_command = 'pgbackrest --config=$(backup_conf "$3") --stanza=$3 archive-push %p'
CONF
  fi
  pg_start "$1" "$2"
}

# pgBackRest for a cell's cluster: repo1 in its own region, repo2 in the other's, each
# encrypted with its own passphrase (the other region holds repo2's in escrow). Without
# repo1 ("lost"), what an operator leaves after losing the local repository.
backup_conf() { echo "$DRILL/backup/$1/pgbackrest.conf"; }
backup_configure() { # stanza pg_name port [lost]
  local dir conf pg
  dir="$DRILL/backup/$1"
  conf=$(backup_conf "$1")
  pg=$(pg_dir "$2")
  mkdir -p "$dir"/{repo1,repo2,log,lock}
  {
    echo "[global]"
    if [ "${4:-}" != lost ]; then
      printf 'repo1-path=%s/repo1\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=%s\nrepo1-retention-full=2\n' \
        "$dir" "drill-$1-local-pass"
    fi
    printf 'repo2-path=%s/repo2\nrepo2-cipher-type=aes-256-cbc\nrepo2-cipher-pass=%s\nrepo2-retention-full=2\n' \
      "$dir" "drill-$1-peer-pass"
    printf 'log-path=%s/log\nlock-path=%s/lock\nlog-level-console=warn\nlog-level-file=off\nstart-fast=y\n\n' "$dir" "$dir"
    printf '[%s]\npg1-path=%s/data\npg1-port=%s\npg1-socket-path=%s\n' "$1" "$pg" "$3" "$pg"
  } >"$conf"
  [ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
  return 0
}
pgbackrest_run() { # stanza args...
  local stanza=$1
  shift
  as_pg pgbackrest --config="$(backup_conf "$stanza")" --stanza="$stanza" "$@"
}

# Starts the cluster in pg_dir(name) on port (every role of node: primary or standby).
pg_start() { # name port
  local dir
  dir=$(pg_dir "$1")
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "-p $2 -c cluster_name=$1" \
    -w -t 60 start >/dev/null
  head -1 "$dir/data/postmaster.pid" >"$dir/pid"
}

# Stops it: "fast" (clean) or "immediate" (as a lost machine: nothing flushed, no goodbye).
pg_stop() { # name mode
  local dir
  dir=$(pg_dir "$1")
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m "${2:-fast}" -w -t 60 stop >/dev/null 2>&1 || {
    local pid
    pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  }
}

# A physical standby of the cluster on $from, named (application_name) $app: a fresh base
# backup (-R writes primary_conninfo and standby.signal), then started on its own port.
# The copied postgresql.auto.conf may carry the source's fence or synchronous standby names:
# both are reset, the standby's own roles come from the cell's settings.
pg_standby() { # name port from_port app_name
  local dir
  dir=$(pg_dir "$1")
  pg_stop "$1" fast
  rm -rf "$dir" && mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$3" -U postgres -D "$dir/data" -R -X stream \
    -c fast -d "application_name=$4" >"$dir/basebackup.log" 2>&1
  sed -i "/^synchronous_standby_names/d; /^default_transaction_read_only/d; s|unix_socket_directories = .*|unix_socket_directories = '$dir'|" \
    "$dir/data/postgresql.auto.conf" "$dir/data/postgresql.conf"
  pg_start "$1" "$2"
}

# Brings a lost primary back the way an operator (CloudNativePG) must: as a standby of the
# cell's new primary, so it can never accept writes again, whatever it has that the new one
# does not. Nothing is copied: it comes up read-only and is re-seeded afterwards.
pg_return_fenced() { # name port new_primary_port app_name
  local dir
  dir=$(pg_dir "$1")
  as_pg touch "$dir/data/standby.signal"
  sed -i "/^primary_conninfo/d" "$dir/data/postgresql.auto.conf"
  echo "primary_conninfo = 'application_name=$4 host=127.0.0.1 port=$3 user=postgres'" |
    as_pg tee -a "$dir/data/postgresql.auto.conf" >/dev/null
  pg_start "$1" "$2"
}

rabbit_dir() { echo "$DRILL/rabbit/$1"; }

# A RabbitMQ node of the drill's own: its name, ports, plugins file and data dir.
rabbit_start() { # name port
  local dir node
  dir=$(rabbit_dir "$1")
  node="drill-$1@localhost"
  mkdir -p "$dir"
  printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "$2" >"$dir/rabbitmq.conf"
  echo '[].' >"$dir/enabled_plugins"
  : >"$dir/rabbitmq-env.conf"
  [ "$(id -u)" = 0 ] && chown -R rabbitmq: "$dir"
  (
    cd "$dir"
    as_rabbit env RABBITMQ_NODENAME="$node" RABBITMQ_NODE_PORT="$2" RABBITMQ_DIST_PORT=$(($2 + 1)) \
      RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
      RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
      RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
      ERL_EPMD_ADDRESS=127.0.0.1 nohup rabbitmq-server >"$dir/server.log" 2>&1 &
  )
  timeout 90 bash -c "$(declare -f as_rabbit); as_rabbit env RABBITMQ_NODENAME='$node' \
    RABBITMQ_CONF_ENV_FILE='$dir/rabbitmq-env.conf' rabbitmqctl -n '$node' wait --timeout 80 '$dir/rabbitmq.pid'" \
    >/dev/null 2>&1 || {
    echo "region-drill: RabbitMQ node $node did not start; see $dir/server.log" >&2
    return 1
  }
}

rabbitctl() { # name args...
  local name=$1
  shift
  as_rabbit env RABBITMQ_NODENAME="drill-$name@localhost" \
    RABBITMQ_CONF_ENV_FILE="$(rabbit_dir "$name")/rabbitmq-env.conf" \
    timeout 60 rabbitmqctl -q -n "drill-$name@localhost" "$@"
}

rabbit_vhost() { # name vhost
  rabbitctl "$1" add_vhost "$2" >/dev/null 2>&1 || true
  rabbitctl "$1" set_permissions -p "$2" guest '.*' '.*' '.*' >/dev/null
}

# Kills the node as a lost machine would: the beam process and everything it started.
rabbit_kill() { # name
  local pidfile
  pidfile="$(rabbit_dir "$1")/rabbitmq.pid"
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  pkill -KILL -P "$pid" 2>/dev/null || true
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

rabbit_stop() { # name
  [ -f "$(rabbit_dir "$1")/rabbitmq.pid" ] || return 0
  rabbitctl "$1" stop >/dev/null 2>&1 || rabbit_kill "$1"
  rm -f "$(rabbit_dir "$1")/rabbitmq.pid"
}

# The faked clock of `region-drill --hours`: Debian's libfaketimeMT preloaded into chukan and
# nws-sim, reading an offset from a file (FAKETIME_TIMESTAMP_FILE, re-read on every call with
# FAKETIME_NO_CACHE) so the drill can move the clock of running processes. Monotonic time
# stays real, or tokio's timers would hang. PostgreSQL and RabbitMQ keep the real clock.
faketime_lib() { dpkg -L libfaketime | grep '/libfaketimeMT\.so\.1$' | head -n 1; }
fake_clock_env() { # file → the env assignments that put a process on the faked clock
  echo LD_PRELOAD="$(faketime_lib)" FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_NO_CACHE=1 \
    FAKETIME_TIMESTAMP_FILE="$1"
}
# Sets the faked clock to `when` (anything `date -d` reads) now: an offset in whole seconds
# from the real clock. FAKE_CLOCK_REAL is the real second that `when` fell on.
fake_clock_set() { # file when
  FAKE_CLOCK_REAL=$(date +%s)
  echo "+$(($(date -d "$2" +%s) - FAKE_CLOCK_REAL))" >"$1.new"
  mv "$1.new" "$1"
}
fake_date() { # file [date args...]  (date on the faked clock)
  local file=$1
  shift
  # shellcheck disable=SC2046
  env $(fake_clock_env "$file") date "$@"
}
