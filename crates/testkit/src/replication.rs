//! A primary and a physical streaming standby of the test's own (ADR 0006's "standby of the
//! peer" on one machine): `initdb --data-checksums`, `pg_basebackup -R -X stream -c fast`,
//! the standby connecting with `application_name` = its name. The machine's shared server is
//! never touched; each node has its own directory and port and is stopped on drop, by pid.
//!
//! As in [`crate::tls_servers`], the servers run as the `postgres` user when the tests run as
//! root (PostgreSQL refuses to run as root). Its helpers are private to that fixture, so the
//! few this one needs are repeated here rather than widened.

use std::{
    net::TcpListener,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::wait_until;

/// Longest a node may take to start or stop (about a second here; slack for a loaded CI).
const DEADLINE: Duration = Duration::from_secs(60);

/// A primary (wal_level replica) and its streaming standby, both on 127.0.0.1, superuser
/// `postgres` without a password (trust).
pub struct PrimaryStandby {
    dir: PathBuf,
    user: Option<(u32, u32)>,
    standby_name: String,
    primary: Node,
    standby: Node,
}

/// One postmaster: its data directory, port and process.
struct Node {
    data: PathBuf,
    port: u16,
    log: PathBuf,
    postmaster: Option<Child>,
}

impl PrimaryStandby {
    /// Creates and starts the primary, takes a base backup of it for the standby named
    /// `standby_name` (its application_name) and starts the standby, streaming.
    pub async fn start(standby_name: &str) -> anyhow::Result<PrimaryStandby> {
        let user = postgres_user_when_root()?;
        let dir = std::env::temp_dir().join(format!(
            "chukan-replication-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&dir)?;
        let [primary_port, standby_port] = free_ports()?;
        let mut pair = PrimaryStandby {
            primary: Node::new(&dir, "primary", primary_port),
            standby: Node::new(&dir, "standby", standby_port),
            dir,
            user,
            standby_name: standby_name.to_owned(),
        };
        pair.own_dir()?;
        pair.init_primary().await?;
        pair.start_primary().await?;
        pair.base_backup().await?;
        pair.start_standby().await?;
        Ok(pair)
    }

    /// The superuser's URL of the primary's database `dbname`.
    pub fn primary_url(&self, dbname: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{dbname}",
            self.primary.port
        )
    }

    /// The superuser's URL of the standby's database `dbname` (read-only).
    pub fn standby_url(&self, dbname: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{dbname}",
            self.standby.port
        )
    }

    /// The standby's application_name.
    pub fn standby_name(&self) -> &str {
        &self.standby_name
    }

    /// Stops the standby (fast shutdown: its walsender on the primary goes at once) and
    /// waits until it has exited.
    pub async fn stop_standby(&mut self) -> anyhow::Result<()> {
        self.standby.stop("-INT").await
    }

    /// Starts the standby (again) from its data directory; it resumes streaming.
    pub async fn start_standby(&mut self) -> anyhow::Result<()> {
        let command = self.command(pg_bin("postgres"));
        self.standby.start(command).await
    }

    async fn start_primary(&mut self) -> anyhow::Result<()> {
        let command = self.command(pg_bin("postgres"));
        self.primary.start(command).await
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.dir);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn own_dir(&self) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.user {
            own(&self.dir, uid, gid)?;
        }
        Ok(())
    }

    async fn init_primary(&self) -> anyhow::Result<()> {
        let mut initdb = self.command(pg_bin("initdb"));
        initdb
            .arg("-D")
            .arg(&self.primary.data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--data-checksums",
            ])
            .stdin(Stdio::null());
        run(initdb, "initdb").await?;
        // fsync off keeps a throw-away cluster fast; synchronous_commit stays on (the
        // default): synchronous replication is what the tests are about.
        append(
            &self.primary.data.join("postgresql.conf"),
            &format!(
                "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
                 fsync = off\nfull_page_writes = off\nshared_buffers = 16MB\nmax_connections = 40\n\
                 wal_level = replica\nmax_wal_senders = 5\nwal_keep_size = 64MB\nhot_standby = on\n\
                 ssl = off\n",
                port = self.primary.port,
                dir = self.dir.display(),
            ),
        )?;
        std::fs::write(
            self.primary.data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n",
        )?;
        self.own_dir()
    }

    async fn base_backup(&self) -> anyhow::Result<()> {
        let mut backup = self.command(pg_bin("pg_basebackup"));
        backup
            .arg("-D")
            .arg(&self.standby.data)
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.primary.port.to_string())
            .args([
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ])
            .stdin(Stdio::null());
        run(backup, "pg_basebackup").await?;
        // Read after postgresql.conf (copied from the primary): the standby's own port and
        // socket directory, and a primary_conninfo that names it.
        append(
            &self.standby.data.join("postgresql.auto.conf"),
            &format!(
                "\nport = {}\nprimary_conninfo = 'host=127.0.0.1 port={} user=postgres \
                 application_name={}'\n",
                self.standby.port,
                self.primary.port,
                self.standby_name.replace(['\'', ' ', '\\'], "_"),
            ),
        )?;
        self.own_dir()
    }
}

impl Drop for PrimaryStandby {
    fn drop(&mut self) {
        self.standby.kill_now();
        self.primary.kill_now();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Node {
    fn new(dir: &Path, name: &str, port: u16) -> Node {
        Node {
            data: dir.join(name),
            port,
            log: dir.join(format!("{name}.log")),
            postmaster: None,
        }
    }

    async fn start(&mut self, mut command: Command) -> anyhow::Result<()> {
        let log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
        };
        let child = command
            .arg("-D")
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(log()?)
            .stderr(log()?)
            .spawn()
            .context("starting postgres")?;
        self.postmaster = Some(child);
        self.wait_ready().await
    }

    /// Ready when the postmaster writes `ready` (a primary) or `standby` (a hot standby that
    /// accepts connections) into its pid file, as `pg_ctl -w` waits for.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let pid_file = self.data.join("postmaster.pid");
        let mut exited = None;
        let postmaster = self
            .postmaster
            .as_mut()
            .context("postgres was not started")?;
        let ready = wait_until(DEADLINE, "PostgreSQL to accept connections", || {
            if let Ok(Some(status)) = postmaster.try_wait() {
                exited = Some(status);
            }
            let ready = exited.is_some()
                || std::fs::read_to_string(&pid_file)
                    .map(|pid| {
                        pid.lines()
                            .nth(7)
                            .is_some_and(|s| matches!(s.trim(), "ready" | "standby"))
                    })
                    .unwrap_or(false);
            std::future::ready(ready)
        })
        .await;
        if let Some(status) = exited {
            self.postmaster = None;
            bail!(
                "postgres exited ({status}) before it was ready:\n{}",
                log_tail(&self.log)
            );
        }
        ready.with_context(|| log_tail(&self.log))
    }

    /// Signals the postmaster (`-INT` fast, `-QUIT` immediate shutdown) and waits for it to
    /// exit; killed if it has not within the deadline.
    async fn stop(&mut self, signal: &str) -> anyhow::Result<()> {
        let Some(mut postmaster) = self.postmaster.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .arg(signal)
            .arg(postmaster.id().to_string())
            .status();
        let mut exited = false;
        let stopped = wait_until(DEADLINE, "PostgreSQL to stop", || {
            exited = exited || matches!(postmaster.try_wait(), Ok(Some(_)));
            std::future::ready(exited)
        })
        .await;
        if stopped.is_err() {
            let _ = postmaster.kill();
            let _ = postmaster.wait();
        }
        stopped
    }

    /// Immediate shutdown by pid, for drop: nothing in it is worth a checkpoint.
    fn kill_now(&mut self) {
        let Some(mut postmaster) = self.postmaster.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-QUIT")
            .arg(postmaster.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if matches!(postmaster.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = postmaster.kill();
        let _ = postmaster.wait();
    }
}

/// Runs a setup program to its end; its stderr is the error when it fails.
async fn run(command: Command, what: &str) -> anyhow::Result<()> {
    let output = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::from(command)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("{what} did not finish within {DEADLINE:?}"))?
    .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The `postgres` user's uid and gid when this process is root; `None` (run as ourselves)
/// otherwise.
fn postgres_user_when_root() -> anyhow::Result<Option<(u32, u32)>> {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self belongs to the process's effective user.
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let entry = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"postgres") && fields.len() >= 6)
        .context("running as root, and there is no user postgres to run PostgreSQL as")?;
    Ok(Some((entry[2].parse()?, entry[3].parse()?)))
}

fn own(path: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            own(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// The newest `/usr/lib/postgresql/<version>/bin/<program>` (Debian's layout, not on PATH),
/// or `CHUKAN_TEST_PG_BIN`'s, else the program from PATH.
fn pg_bin(program: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("CHUKAN_TEST_PG_BIN") {
        return Path::new(&dir).join(program);
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .max_by_key(|(version, _)| *version)
        .map_or_else(
            || PathBuf::from(program),
            |(_, dir)| dir.join("bin").join(program),
        )
}

/// Two distinct free ports on 127.0.0.1.
fn free_ports() -> anyhow::Result<[u16; 2]> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok([a.local_addr()?.port(), b.local_addr()?.port()])
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
