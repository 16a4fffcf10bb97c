//! CPU seconds per process group while a phase runs, from /proc: every process's utime+stime
//! is sampled every 250 ms and charged to a group (the server under test, PostgreSQL backends
//! by database, RabbitMQ, the load generator, …), so a report says where the time went rather
//! than only how long the phase took. Processes that exit during the phase keep their last
//! sample; processes born during it count from zero.
//!
//! PostgreSQL backends are told apart by database: from `pg_stat_activity` when the caller
//! gives a connection (it holds the database and backend type whatever
//! `update_process_title` says), else from the process title Debian's PostgreSQL sets
//! ("postgres: 15/main: user db host(port) state").

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// Linux reports process CPU times in USER_HZ ticks, 100 per second on every mainstream arch.
const TICKS_PER_SECOND: f64 = 100.0;

/// Groups the meter names on its own, whatever the caller's rules.
pub mod group {
    pub const PG_BACKGROUND: &str = "postgres: background (checkpointer, walwriter, …)";
    pub const PG_AUTOVACUUM: &str = "postgres: autovacuum";
    pub const PG_POSTMASTER: &str = "postgres: postmaster";
    pub const PG_OTHER_DATABASES: &str = "postgres: sessions of other databases";
    pub const RABBITMQ: &str = "rabbitmq";
    pub const OTHER: &str = "other (not part of the benchmark)";
}

/// Client backends of `database` (and of `user`, when given) are charged to `group`; the
/// first matching rule wins.
#[derive(Debug, Clone)]
pub struct DbRule {
    pub database: String,
    pub user: Option<String>,
    pub group: String,
}

/// Anything else the caller recognises from (pid, comm), e.g. a batch process of the server's
/// binary; `None` leaves the process to the built-in rules.
pub type Recognise = Box<dyn Fn(u32, &str) -> Option<String> + Send + Sync>;

/// How processes are grouped. Order of precedence: `pids`, `recognise`, PostgreSQL
/// (backends by `databases`, then background, autovacuum, other databases), RabbitMQ, other.
#[derive(Default)]
pub struct Groups {
    /// Processes known by pid (the servers under test, the generator itself, its own
    /// PostgreSQL session) → group.
    pub pids: Vec<(u32, String)>,
    pub databases: Vec<DbRule>,
    pub recognise: Option<Recognise>,
    /// A superuser session to read `pg_stat_activity` through; the process title otherwise.
    pub activity: Option<Arc<tokio_postgres::Client>>,
}

/// What a PostgreSQL process is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PgProcess {
    Postmaster,
    Autovacuum,
    Backend { database: String, user: String },
    Background,
}

impl Groups {
    fn classify(&self, pid: u32, comm: &str, activity: &HashMap<u32, PgProcess>) -> String {
        if let Some((_, g)) = self.pids.iter().find(|(p, _)| *p == pid) {
            return g.clone();
        }
        if let Some(g) = self.recognise.as_ref().and_then(|f| f(pid, comm)) {
            return g;
        }
        match comm {
            "postgres" => {
                let what = activity
                    .get(&pid)
                    .cloned()
                    .unwrap_or_else(|| from_title(pid));
                self.postgres_group(what)
            }
            "beam.smp" | "erl_child_setup" | "epmd" | "inet_gethost" => group::RABBITMQ.into(),
            _ => group::OTHER.into(),
        }
    }

    fn postgres_group(&self, what: PgProcess) -> String {
        match what {
            PgProcess::Postmaster => group::PG_POSTMASTER.into(),
            PgProcess::Autovacuum => group::PG_AUTOVACUUM.into(),
            PgProcess::Background => group::PG_BACKGROUND.into(),
            PgProcess::Backend { database, user } => self
                .databases
                .iter()
                .find(|r| r.database == database && r.user.as_ref().is_none_or(|u| *u == user))
                .map(|r| r.group.clone())
                .unwrap_or_else(|| group::PG_OTHER_DATABASES.into()),
        }
    }
}

/// A PostgreSQL process from its title; a process without the "postgres: " prefix is the
/// postmaster (its command line is the binary's path and options).
fn from_title(pid: u32) -> PgProcess {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
    let Some(title) = cmd.strip_prefix("postgres: ") else {
        return PgProcess::Postmaster;
    };
    // Debian titles carry the cluster first: "15/main: user db host(port) state".
    let title = match title.split_once(": ") {
        Some((cluster, rest)) if cluster.contains('/') => rest,
        _ => title,
    };
    let words: Vec<&str> = title.split_whitespace().collect();
    match words.as_slice() {
        ["autovacuum", "worker", ..] => PgProcess::Autovacuum,
        [user, database, host, ..] if host.contains('(') || *host == "[local]" => {
            PgProcess::Backend {
                database: (*database).into(),
                user: (*user).into(),
            }
        }
        _ => PgProcess::Background,
    }
}

/// Every process `pg_stat_activity` lists (the postmaster is not among them).
async fn read_activity(client: &tokio_postgres::Client) -> HashMap<u32, PgProcess> {
    let Ok(rows) = client
        .query(
            "SELECT pid, coalesce(datname, ''), coalesce(usename, ''), coalesce(backend_type, '')
             FROM pg_stat_activity",
            &[],
        )
        .await
    else {
        return HashMap::new();
    };
    rows.iter()
        .map(|r| {
            let (pid, database, user, kind): (i32, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let what = match kind.as_str() {
                "autovacuum worker" => PgProcess::Autovacuum,
                // Parallel workers work for a session of their database.
                "client backend" | "parallel worker" => PgProcess::Backend { database, user },
                _ => PgProcess::Background,
            };
            (pid as u32, what)
        })
        .collect()
}

/// CPU seconds used during a phase, by group, and the whole machine's busy and idle time.
#[derive(Debug, Default, Clone)]
pub struct CpuReport {
    pub groups: HashMap<String, f64>,
    /// Whole machine, all cores, from /proc/stat.
    pub busy: f64,
    pub idle: f64,
    pub wall: f64,
}

impl CpuReport {
    /// CPU seconds of the named groups together.
    pub fn sum(&self, groups: &[&str]) -> f64 {
        groups
            .iter()
            .filter_map(|g| self.groups.get(*g))
            .copied()
            .sum()
    }

    pub fn to_json(&self) -> Value {
        let mut groups: Vec<(&String, &f64)> = self.groups.iter().collect();
        groups.sort_by(|a, b| b.1.total_cmp(a.1));
        let total = self.busy + self.idle;
        let share = |s: f64| {
            if total > 0.0 {
                (s / total * 1000.0).round() / 10.0
            } else {
                0.0
            }
        };
        json!({
            "wall_s": round3(self.wall),
            "machine_busy_s": round3(self.busy),
            "machine_idle_s": round3(self.idle),
            "busy_percent_of_all_cores": share(self.busy),
            "by_process_group": groups.iter().map(|(g, s)| json!({
                "group": g, "cpu_s": round3(**s), "percent_of_all_cores": share(**s),
            })).collect::<Vec<_>>(),
        })
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A running phase; [`CpuMeter::finish`] ends it.
pub struct CpuMeter {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<CpuReport>,
}

struct Seen {
    group: String,
    first: u64,
    last: u64,
}

impl CpuMeter {
    pub fn start(groups: Arc<Groups>) -> CpuMeter {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let machine0 = machine_ticks();
            let mut seen: HashMap<u32, Seen> = HashMap::new();
            let mut first_round = true;
            loop {
                let mut fresh = Vec::new();
                for (pid, comm, ticks) in processes() {
                    match seen.get_mut(&pid) {
                        Some(s) => s.last = ticks,
                        None => fresh.push((pid, comm, ticks)),
                    }
                }
                // One look at pg_stat_activity per round, and only when a PostgreSQL process
                // is new: the look-up is itself a query the server runs.
                let activity = match &groups.activity {
                    Some(client) if fresh.iter().any(|(_, c, _)| c == "postgres") => {
                        read_activity(client).await
                    }
                    _ => HashMap::new(),
                };
                for (pid, comm, ticks) in fresh {
                    let group = groups.classify(pid, &comm, &activity);
                    // Born during the phase: all its time counts.
                    let first = if first_round { ticks } else { 0 };
                    seen.insert(
                        pid,
                        Seen {
                            group,
                            first,
                            last: ticks,
                        },
                    );
                }
                first_round = false;
                if *stopped.borrow() {
                    break;
                }
                tokio::select! {
                    _ = stopped.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
            let machine1 = machine_ticks();
            let mut by_group: HashMap<String, f64> = HashMap::new();
            for s in seen.values() {
                *by_group.entry(s.group.clone()).or_default() +=
                    s.last.saturating_sub(s.first) as f64 / TICKS_PER_SECOND;
            }
            by_group.retain(|_, v| *v > 0.0);
            CpuReport {
                groups: by_group,
                busy: machine1.0.saturating_sub(machine0.0) as f64 / TICKS_PER_SECOND,
                idle: machine1.1.saturating_sub(machine0.1) as f64 / TICKS_PER_SECOND,
                wall: started.elapsed().as_secs_f64(),
            }
        });
        CpuMeter { stop, task }
    }

    /// Takes a last sample and ends the phase.
    pub async fn finish(self) -> anyhow::Result<CpuReport> {
        let _ = self.stop.send(true);
        Ok(self.task.await?)
    }
}

/// (pid, comm, utime+stime ticks) of every process now.
fn processes() -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let (comm, ticks) = proc_ticks(pid)?;
            Some((pid, comm, ticks))
        })
        .collect()
}

/// (busy, idle) ticks of the whole machine, all cores.
fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(cpu) = stat.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let busy: u64 = v.iter().take(8).sum::<u64>().saturating_sub(idle);
    (busy, idle)
}

/// (comm, utime+stime ticks) of a process.
fn proc_ticks(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // After the comm: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(database: &str, user: &str) -> PgProcess {
        PgProcess::Backend {
            database: database.into(),
            user: user.into(),
        }
    }

    #[test]
    fn backends_go_to_the_first_rule_of_their_database_and_user() {
        let groups = Groups {
            databases: vec![
                DbRule {
                    database: "a".into(),
                    user: Some("postgres".into()),
                    group: "a as postgres".into(),
                },
                DbRule {
                    database: "a".into(),
                    user: None,
                    group: "a".into(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            groups.postgres_group(backend("a", "postgres")),
            "a as postgres"
        );
        assert_eq!(groups.postgres_group(backend("a", "app")), "a");
        assert_eq!(
            groups.postgres_group(backend("b", "app")),
            group::PG_OTHER_DATABASES
        );
        assert_eq!(
            groups.postgres_group(PgProcess::Background),
            group::PG_BACKGROUND
        );
    }

    #[test]
    fn pids_come_before_everything_else() {
        let groups = Groups {
            pids: vec![(7, "mine".into())],
            recognise: Some(Box::new(|_, comm| {
                (comm == "batch").then(|| "batch".to_string())
            })),
            ..Default::default()
        };
        let none = HashMap::new();
        assert_eq!(groups.classify(7, "postgres", &none), "mine");
        assert_eq!(groups.classify(8, "batch", &none), "batch");
        assert_eq!(groups.classify(9, "beam.smp", &none), group::RABBITMQ);
        assert_eq!(groups.classify(10, "bash", &none), group::OTHER);
        let activity = HashMap::from([(11, backend("x", "u"))]);
        assert_eq!(
            groups.classify(11, "postgres", &activity),
            group::PG_OTHER_DATABASES
        );
    }

    #[test]
    fn this_process_is_among_the_processes_read() {
        let me = std::process::id();
        assert!(
            processes().iter().any(|(pid, _, _)| *pid == me),
            "pid {me} not read from /proc"
        );
        let (busy, idle) = machine_ticks();
        assert!(busy + idle > 0, "nothing read from /proc/stat");
    }
}
