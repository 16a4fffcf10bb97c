//! A primary and a physical streaming standby of the test's own (ADR 0006's "standby of the
//! peer" on one machine): `initdb --data-checksums`, `pg_basebackup -R -X stream -c fast`,
//! the standby connecting with `application_name` = its name. The machine's shared server is
//! never touched; each node has its own directory and port and is stopped on drop, by pid.
//!
//! As in [`crate::tls_servers`], the servers run as the `postgres` user when the tests run as
//! root (PostgreSQL refuses to run as root).

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{
    server_files::{ServiceUser, append, free_ports, fresh_dir, log_tail, pg_bin},
    wait_until,
};

/// Longest a node may take to start or stop (about a second here; slack for a loaded CI).
const DEADLINE: Duration = Duration::from_secs(60);

/// A primary (wal_level replica) and its streaming standby, both on 127.0.0.1, superuser
/// `postgres` without a password (trust).
pub struct PrimaryStandby {
    dir: PathBuf,
    user: Option<ServiceUser>,
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
        let user = ServiceUser::when_root("postgres")?;
        let dir = fresh_dir("chukan-replication")?;
        let [primary_port, standby_port] = free_ports::<2>()?;
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
        let command = self.command(pg_bin("postgres")?);
        self.standby.start(command).await
    }

    async fn start_primary(&mut self) -> anyhow::Result<()> {
        let command = self.command(pg_bin("postgres")?);
        self.primary.start(command).await
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.dir);
        if let Some(user) = &self.user {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    fn own_dir(&self) -> anyhow::Result<()> {
        self.user.as_ref().map(|u| u.own(&self.dir)).transpose()?;
        Ok(())
    }

    async fn init_primary(&self) -> anyhow::Result<()> {
        let mut initdb = self.command(pg_bin("initdb")?);
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
        let mut backup = self.command(pg_bin("pg_basebackup")?);
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
