# Shared by dev-up and test: make sure PostgreSQL and RabbitMQ are installed and running.
# Idempotent; installs with apt-get only what is missing (a fresh Debian machine).

log() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# The staff console's browser tests drive Debian's Chromium through its ChromeDriver.
ensure_chromium() {
  # A Japanese font, or every screen (and screenshot) shows boxes for its text.
  apt_install chromium chromium-driver fonts-ipafont-gothic
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do port_open "$1" && return 0; sleep 0.1; done
  echo "port $1 did not open within $2 s" >&2
  return 1
}

ensure_tools() {
  apt_install curl jq ca-certificates
}

ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then apt_install postgresql; fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if ! port_open 5432; then
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_port 5432 30
  fi
  # Local development and tests connect over TCP without a password, as on the CI machine.
  if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    log "allowing trust auth for postgres on 127.0.0.1 (development only) in $hba"
    sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null
  fi
}

ensure_rabbitmq() {
  if ! command -v rabbitmq-server >/dev/null 2>&1; then apt_install rabbitmq-server; fi
  if ! port_open 5672; then
    log "starting RabbitMQ"
    local pidfile=/var/lib/rabbitmq/chukan-rabbitmq.pid
    RABBITMQ_PID_FILE=$pidfile rabbitmq-server -detached
    rabbitmqctl wait --timeout 60 "$pidfile" >/dev/null
    wait_port 5672 60
  fi
}

ensure_vhost() { # name
  timeout 60 rabbitmqctl -q add_vhost "$1" >/dev/null 2>&1 || true
  timeout 60 rabbitmqctl -q set_permissions -p "$1" guest '.*' '.*' '.*' >/dev/null
}
