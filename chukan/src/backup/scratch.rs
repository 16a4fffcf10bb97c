//! A scratch cluster: the latest pgBackRest backup of one repository restored into a
//! directory of its own, recovered to a point in time and started where nothing can reach
//! it (no TCP listener, no archiving, its own socket directory and port), so it can neither
//! replicate, publish nor overwrite the repository's WAL.

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};

/// Written into the scratch directory so a later run may empty it: a directory without it
/// is not ours, and is never emptied.
const MARKER: &str = ".chukan-scratch";
/// How long a fast shutdown may take before the postmaster is stopped immediately.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Where and how to restore.
#[derive(Debug, Clone)]
pub struct ScratchPlan {
    pub stanza: String,
    pub repo: u8,
    pub pgbackrest_config: Option<PathBuf>,
    /// None = recover to the end of the archived WAL.
    pub target_time: Option<DateTime<Utc>>,
    pub dir: PathBuf,
    pub pg_bin: PathBuf,
    pub port: u16,
    pub recovery_deadline: Duration,
}

/// The OS user the server runs as: `postgres` when this process is root (PostgreSQL
/// refuses to run as root), else ourselves.
#[derive(Debug, Clone, Copy)]
struct ServerUser {
    uid: u32,
    gid: u32,
}

impl ServerUser {
    fn when_root() -> anyhow::Result<Option<ServerUser>> {
        use std::os::unix::fs::MetadataExt as _;
        // /proc/self belongs to the process's effective user.
        if std::fs::metadata("/proc/self")?.uid() != 0 {
            return Ok(None);
        }
        let passwd = std::fs::read_to_string("/etc/passwd")?;
        let fields = passwd
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&"postgres") && f.len() >= 6)
            .context(
                "running as root, and there is no OS user postgres to run the scratch cluster as",
            )?;
        Ok(Some(ServerUser {
            uid: fields[2].parse()?,
            gid: fields[3].parse()?,
        }))
    }

    fn own(self, path: &Path) -> anyhow::Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .with_context(|| format!("chown {}", path.display()))
    }
}

/// A started scratch cluster. [`ScratchCluster::stop`] ends it by its pid; dropping it
/// without stopping kills the postmaster.
pub struct ScratchCluster {
    plan: ScratchPlan,
    postmaster: Option<Child>,
    /// The last transaction replayed (the recovery point), or, when none was replayed after
    /// the backup, the backup's start; None when neither is known.
    pub recovered_to: Option<DateTime<Utc>>,
    pub restore_secs: f64,
}

impl ScratchCluster {
    /// Empties the directory (if it is an earlier scratch), restores, starts the server and
    /// waits until recovery has finished and it accepts writes-free work.
    pub async fn restore(plan: ScratchPlan, user: &str, dbname: &str) -> anyhow::Result<Self> {
        let started = Instant::now();
        let server_user = ServerUser::when_root()?;
        prepare_dir(&plan.dir, server_user)?;
        pgbackrest_restore(&plan, server_user).await?;
        let hba = plan.dir.join("scratch_hba.conf");
        // Trust only on the private socket: there is no TCP listener at all.
        std::fs::write(&hba, "local all all trust\n")?;
        if let Some(u) = server_user {
            u.own(&hba)?;
        }
        let log = std::fs::File::create(plan.dir.join("postgres.log"))?;
        if let Some(u) = server_user {
            u.own(&plan.dir.join("postgres.log"))?;
        }
        let mut postgres = Command::new(plan.pg_bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(data_dir(&plan.dir))
            .arg("-c")
            .arg(format!("port={}", plan.port))
            .args(["-c", "listen_addresses="])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", plan.dir.display()))
            .args(["-c", "unix_socket_permissions=0700"])
            .arg("-c")
            .arg(format!("hba_file={}", hba.display()))
            // Nothing restored may leave: no archiving, no waiting for a standby that is
            // not there, no TLS files that may not exist here.
            .args(["-c", "archive_mode=off"])
            .args(["-c", "synchronous_standby_names="])
            .args(["-c", "ssl=off"])
            .args(["-c", "primary_conninfo="])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .current_dir(&plan.dir);
        if let Some(u) = server_user {
            postgres.uid(u.uid).gid(u.gid);
        }
        let postmaster = postgres.spawn().context("starting the scratch postgres")?;
        let mut cluster = ScratchCluster {
            plan,
            postmaster: Some(postmaster),
            recovered_to: None,
            restore_secs: 0.0,
        };
        cluster.wait_recovered(user, dbname).await?;
        cluster.restore_secs = started.elapsed().as_secs_f64();
        Ok(cluster)
    }

    /// A libpq connection string to the scratch server's socket.
    pub fn connection_string(&self, user: &str, dbname: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            quote(&self.plan.dir.display().to_string()),
            self.plan.port,
            quote(user),
            quote(dbname)
        )
    }

    async fn wait_recovered(&mut self, user: &str, dbname: &str) -> anyhow::Result<()> {
        let until = Instant::now() + self.plan.recovery_deadline;
        let conn = self.connection_string(user, dbname);
        loop {
            if let Some(postmaster) = self.postmaster.as_mut()
                && let Ok(Some(status)) = postmaster.try_wait()
            {
                self.postmaster = None;
                bail!(
                    "スクラッチの PostgreSQL が復旧中に終了しました (the scratch server exited during recovery: {status}); \
                     次の手順: {} を確認してください\n{}",
                    self.plan.dir.join("postgres.log").display(),
                    log_tail(&self.plan.dir.join("postgres.log"))
                );
            }
            if let Ok((client, connection)) =
                tokio_postgres::connect(&conn, tokio_postgres::NoTls).await
            {
                tokio::spawn(connection);
                let row = client
                    .query_one(
                        "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()",
                        &[],
                    )
                    .await;
                if let Ok(row) = row
                    && !row.get::<_, bool>(0)
                {
                    self.recovered_to = row.get(1);
                    if self.recovered_to.is_none() {
                        // No commit replayed after the backup: its start is a safe lower bound.
                        self.recovered_to = backup_start(&data_dir(&self.plan.dir));
                    }
                    return Ok(());
                }
            }
            if Instant::now() >= until {
                bail!(
                    "復旧が {} 秒以内に終わりませんでした (recovery did not finish within the deadline); \
                     次の手順: {} を確認し、--recovery-deadline-secs を延ばしてください",
                    self.plan.recovery_deadline.as_secs(),
                    self.plan.dir.join("postgres.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the server by its pid (fast shutdown, then immediate), and removes the
    /// directory unless it is kept for inspection.
    pub fn stop(mut self, keep_dir: bool) -> anyhow::Result<()> {
        self.stop_postmaster();
        if !keep_dir {
            std::fs::remove_dir_all(&self.plan.dir)
                .with_context(|| format!("removing {}", self.plan.dir.display()))?;
        }
        Ok(())
    }

    fn stop_postmaster(&mut self) {
        let Some(mut postmaster) = self.postmaster.take() else {
            return;
        };
        let pid = postmaster.id().to_string();
        // SIGINT is PostgreSQL's fast shutdown; SIGQUIT its immediate one.
        for (signal, grace) in [("-INT", STOP_GRACE), ("-QUIT", Duration::from_secs(5))] {
            let _ = Command::new("kill").args([signal, &pid]).status();
            let until = Instant::now() + grace;
            while Instant::now() < until {
                if let Ok(Some(_)) = postmaster.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = postmaster.kill();
        let _ = postmaster.wait();
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        self.stop_postmaster();
    }
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// Creates the directory, or empties one an earlier run left; refuses anything else.
fn prepare_dir(dir: &Path, user: Option<ServerUser>) -> anyhow::Result<()> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<Result<Vec<_>, _>>()?;
        if !entries.is_empty() && !dir.join(MARKER).exists() {
            bail!(
                "{} は空でなく、以前のスクラッチでもありません (not empty and not an earlier scratch); \
                 次の手順: 空のディレクトリを指定してください",
                dir.display()
            );
        }
        for entry in entries.drain(..) {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
    } else {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(
        dir.join(MARKER),
        "restored by chukan backup; emptied by the next run\n",
    )?;
    std::fs::create_dir(data_dir(dir))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        // PostgreSQL refuses a data directory others can read.
        std::fs::set_permissions(data_dir(dir), std::fs::Permissions::from_mode(0o700))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if let Some(u) = user {
        u.own(dir)?;
        u.own(&dir.join(MARKER))?;
        u.own(&data_dir(dir))?;
    }
    Ok(())
}

/// `pgbackrest restore` of the repository's latest backup, as the server's user. WAL is
/// fetched from the same repository only (`restore_command` names it), so a lost repo1
/// cannot stall a restore from repo2.
async fn pgbackrest_restore(plan: &ScratchPlan, user: Option<ServerUser>) -> anyhow::Result<()> {
    let mut common = Vec::new();
    if let Some(config) = &plan.pgbackrest_config {
        common.push(format!("--config={}", config.display()));
    }
    common.push(format!("--stanza={}", plan.stanza));
    // archive-get checks that pg1-path is the server's data directory.
    let restore_command = format!(
        "restore_command=pgbackrest {} --repo={} --pg1-path={} archive-get %f \"%p\"",
        common.join(" "),
        plan.repo,
        data_dir(&plan.dir).display()
    );
    let mut command = Command::new("pgbackrest");
    command
        .args(&common)
        .arg(format!("--repo={}", plan.repo))
        .arg(format!("--pg1-path={}", data_dir(&plan.dir).display()))
        .arg("--archive-mode=off")
        .arg("--log-level-console=warn")
        .arg("--log-level-file=off")
        .arg(format!("--recovery-option={restore_command}"));
    match plan.target_time {
        Some(t) => {
            command.args([
                "--type=time",
                &format!("--target={}", t.format("%Y-%m-%d %H:%M:%S%.6f+00")),
                "--target-action=promote",
            ]);
        }
        // To the end of the archived WAL, then promote (PostgreSQL's default there).
        None => {
            command.arg("--type=default");
        }
    }
    command.arg("restore").stdin(Stdio::null());
    if let Some(u) = user {
        command.uid(u.uid).gid(u.gid);
    }
    let output = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .output()
        .await
        .context("running pgbackrest (apt-get install -y pgbackrest)")?;
    if !output.status.success() {
        bail!(
            "pgbackrest restore に失敗しました (pgbackrest restore failed, {}): {}; \
             次の手順: --stanza・--repo・--pgbackrest-config と暗号鍵を確認してください",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `START TIME` of the backup, from the `backup_label.old` recovery leaves behind (written
/// in the source's log time zone; only UTC/GMT is read, anything else is unknown).
fn backup_start(data: &Path) -> Option<DateTime<Utc>> {
    let label = std::fs::read_to_string(data.join("backup_label.old")).ok()?;
    let value = label.lines().find_map(|l| l.strip_prefix("START TIME: "))?;
    let (stamp, zone) = value.rsplit_once(' ')?;
    if zone != "UTC" && zone != "GMT" {
        return None;
    }
    let naive = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").ok()?;
    Some(naive.and_utc())
}

/// A libpq key-value string value, quoted.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
