# shellcheck shell=bash
# A Prometheus for the development stack of scripts/dev-up: scrapes chukan's ops listener
# (127.0.0.1:9090/metrics) with the recording and alerting rules of monitoring/rules loaded,
# and listens on 127.0.0.1:19490 (its UI, and the data source for the dashboards of
# monitoring/dashboards/out/ in a Grafana you run yourself). Pid, log, configuration and data
# live under .dev/ (git-ignored).
#
#   source scripts/lib/prometheus-dev.sh
#   dev_prometheus_start     start it (or keep the one already running); idempotent
#   dev_prometheus_stop      stop it (only the process of .dev/prometheus.pid)
#
# Environment: DEV_PROMETHEUS_PORT (default 19490, clear of scripts/fuzz-api's ports),
# DEV_OPS_PORT (chukan's ops port, default 9090), DEV_CONSOLE_OPS_PORT (the console's ops
# port, scraped too when set). The server binary comes from ensure_prom_tools
# (scripts/lib/tools.sh): Debian's package unpacked under tools/, nothing installed
# system-wide.

# shellcheck source=scripts/lib/tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"

_DEV_PROM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

_dev_prom_log() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

# True while .dev/prometheus.pid names a running Prometheus started from tools/ (a reused
# pid of another program does not count).
dev_prometheus_running() {
  local pidfile="$_DEV_PROM_ROOT/.dev/prometheus.pid" pid exe
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [[ "$exe" == "$_DEV_PROM_ROOT/tools/prometheus/"* ]]
}

dev_prometheus_start() {
  local dev="$_DEV_PROM_ROOT/.dev"
  local port=${DEV_PROMETHEUS_PORT:-19490}
  local ops=${DEV_OPS_PORT:-9090}
  mkdir -p "$dev/prometheus"
  if dev_prometheus_running; then
    _dev_prom_log "Prometheus already running (pid $(cat "$dev/prometheus.pid")) at http://127.0.0.1:$port"
    return 0
  fi
  ensure_prom_tools || return 1
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "dev_prometheus_start: port $port is in use by something else; set DEV_PROMETHEUS_PORT" >&2
    return 1
  fi

  local rules
  {
    echo "# written by dev_prometheus_start (scripts/lib/prometheus-dev.sh); rewritten on each start"
    echo "global:"
    echo "  scrape_interval: 5s"
    echo "  evaluation_interval: 15s"
    echo "rule_files:"
    for rules in "$_DEV_PROM_ROOT"/monitoring/rules/*.yaml; do echo "  - '$rules'"; done
    echo "scrape_configs:"
    echo "  - job_name: chukan"
    echo "    static_configs:"
    if [ -n "${DEV_CONSOLE_OPS_PORT:-}" ]; then
      # The staff console's ops port: the same chukan_http_* series, service="console".
      echo "      - targets: ['127.0.0.1:$ops', '127.0.0.1:$DEV_CONSOLE_OPS_PORT']"
    else
      echo "      - targets: ['127.0.0.1:$ops']"
    fi
  } >"$dev/prometheus.yml"
  "$PROMTOOL" check config "$dev/prometheus.yml" >/dev/null || {
    echo "dev_prometheus_start: promtool rejects $dev/prometheus.yml" >&2
    return 1
  }

  _dev_prom_log "starting Prometheus on http://127.0.0.1:$port (scraping 127.0.0.1:$ops; log: .dev/prometheus.log)"
  nohup "$PROMETHEUS" \
    --config.file="$dev/prometheus.yml" \
    --storage.tsdb.path="$dev/prometheus" \
    --storage.tsdb.retention.time=7d \
    --web.listen-address="127.0.0.1:$port" \
    >>"$dev/prometheus.log" 2>&1 &
  echo $! >"$dev/prometheus.pid"

  local i
  for ((i = 0; i < 300; i++)); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/-/ready" 2>/dev/null && return 0
    dev_prometheus_running || break
    sleep 0.1
  done
  echo "dev_prometheus_start: Prometheus did not become ready; last log lines:" >&2
  tail -n 20 "$dev/prometheus.log" >&2
  return 1
}

dev_prometheus_stop() {
  local pidfile="$_DEV_PROM_ROOT/.dev/prometheus.pid" pid i
  if dev_prometheus_running; then
    pid=$(cat "$pidfile")
    _dev_prom_log "stopping Prometheus (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
  return 0
}
