//! A PostgreSQL cluster and a RabbitMQ node of a test's own, serving TLS with a certificate
//! from a throw-away CA ([`crate::pki::TestCa`]), so tests can show that chukan verifies the
//! server and refuses plaintext. The machine's shared servers (5432, 5672) are never touched:
//! each fixture has its own directory, ports, node name and process, and stops them on drop.
//!
//! Tests run as root in CI, and neither server runs as root: the fixtures then run them as
//! the `postgres` and `rabbitmq` users (as their packages do); otherwise as the current user.

use std::{
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{
    pki::Issued,
    server_files::{ServiceUser, append, free_ports, fresh_dir, log_file, log_tail, pg_bin},
    wait_until,
};

/// Longest a fixture may take to start: they start in about 2 s (PostgreSQL) and 7 s
/// (RabbitMQ) here; the slack is for a loaded 2-core CI machine.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Starts per fixture: a port found free may be taken by another process before the server
/// binds it, and such a start is tried again on other ports.
const START_ATTEMPTS: usize = 3;

/// Whether a start failed because its port was taken meanwhile (PostgreSQL's and Erlang's
/// words for it, in the log tail the error carries).
fn lost_its_port(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("Address already in use") || text.contains("eaddrinuse")
}

/// What a server presents and whom it asks for a client certificate.
#[derive(Debug, Clone, Copy)]
pub struct ServerTls<'a> {
    /// The server's certificate and key.
    pub identity: &'a Issued,
    /// PEM CA file a client certificate must chain to; `None` = none asked for.
    pub client_ca_file: Option<&'a str>,
}

/// A PostgreSQL cluster of the test's own on 127.0.0.1: with TLS, it accepts TCP connections
/// over TLS only (`hostssl … trust`, `hostnossl … reject`); without, it has `ssl = off`.
/// The superuser is `postgres`, without a password.
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    user: Option<ServiceUser>,
    postmaster: Option<Child>,
}

impl PgCluster {
    /// Creates (initdb) and starts a cluster; `tls = None` serves plaintext only.
    pub async fn start(tls: Option<ServerTls<'_>>) -> anyhow::Result<PgCluster> {
        Self::start_sized(tls, 30).await
    }

    /// [`PgCluster::start`] with `max_connections` (3 of them reserved for the superuser):
    /// for many processes at once, each with its pool.
    pub async fn start_sized(
        tls: Option<ServerTls<'_>>,
        max_connections: u32,
    ) -> anyhow::Result<PgCluster> {
        let mut attempt = 1;
        loop {
            match Self::start_once(tls, max_connections).await {
                Err(error) if attempt < START_ATTEMPTS && lost_its_port(&error) => attempt += 1,
                result => return result,
            }
        }
    }

    async fn start_once(
        tls: Option<ServerTls<'_>>,
        max_connections: u32,
    ) -> anyhow::Result<PgCluster> {
        let user = ServiceUser::when_root("postgres")?;
        let dir = fresh_dir("chukan-pg")?;
        let port = free_ports::<1>()?[0];
        let mut cluster = PgCluster {
            dir,
            port,
            user,
            postmaster: None,
        };
        cluster.init(tls, max_connections).await?;
        cluster.postmaster = Some(
            cluster
                .command(pg_bin("postgres")?)
                .arg("-D")
                .arg(cluster.data_dir())
                .stdin(Stdio::null())
                .stdout(log_file(&cluster.dir, "postgres.log")?)
                .stderr(log_file(&cluster.dir, "postgres.log")?)
                .spawn()
                .context("starting postgres")?,
        );
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's URL for database `dbname` through `host` (`localhost`, the name in a
    /// server certificate, or `127.0.0.1`, which is not).
    pub fn url(&self, host: &str, dbname: &str) -> String {
        format!("postgres://postgres@{host}:{}/{dbname}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.dir);
        if let Some(user) = &self.user {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    async fn init(&self, tls: Option<ServerTls<'_>>, max_connections: u32) -> anyhow::Result<()> {
        // The directory belongs to the server's user before initdb writes into it.
        self.user.as_ref().map(|u| u.own(&self.dir)).transpose()?;
        let mut initdb = self.command(pg_bin("initdb")?);
        initdb
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null());
        let output = tokio::process::Command::from(initdb)
            .kill_on_drop(true)
            .output()
            .await
            .context("running initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }

        // Small and unsafe on purpose: a throw-away cluster that must start fast.
        let mut conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             shared_buffers = 16MB\nmax_connections = {max_connections}\n",
            port = self.port,
            dir = self.dir.display(),
        );
        let mut hba = String::from("local all all trust\n");
        match tls {
            Some(tls) => {
                let cert = self.dir.join("server.crt");
                let key = self.dir.join("server.key");
                std::fs::copy(&tls.identity.cert_file, &cert)?;
                std::fs::copy(&tls.identity.key_file, &key)?;
                // PostgreSQL refuses a key file others can read.
                std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
                conf.push_str(&format!(
                    "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                    cert.display(),
                    key.display()
                ));
                let mut client_cert = "";
                if let Some(ca) = tls.client_ca_file {
                    let ca_copy = self.dir.join("client-ca.crt");
                    std::fs::copy(ca, &ca_copy)?;
                    conf.push_str(&format!("ssl_ca_file = '{}'\n", ca_copy.display()));
                    client_cert = " clientcert=verify-ca";
                }
                hba.push_str(&format!(
                    "hostssl all all 127.0.0.1/32 trust{client_cert}\n\
                     hostnossl all all 0.0.0.0/0 reject\n"
                ));
            }
            None => {
                conf.push_str("ssl = off\n");
                hba.push_str("host all all 127.0.0.1/32 trust\n");
            }
        }
        let data = self.data_dir();
        append(&data.join("postgresql.conf"), &conf)?;
        std::fs::write(data.join("pg_hba.conf"), hba)?;
        self.user.as_ref().map(|u| u.own(&self.dir)).transpose()?;
        Ok(())
    }

    /// Ready when the postmaster writes `ready` into its pid file (what `pg_ctl -w` waits
    /// for); an exit before that is reported with the server's log.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let pid_file = self.data_dir().join("postmaster.pid");
        let mut exited = None;
        let postmaster = self
            .postmaster
            .as_mut()
            .context("postgres was not started")?;
        let ready = wait_until(START_DEADLINE, "PostgreSQL to accept connections", || {
            if let Ok(Some(status)) = postmaster.try_wait() {
                exited = Some(status);
            }
            let ready = exited.is_some()
                || std::fs::read_to_string(&pid_file)
                    .map(|pid| pid.lines().nth(7).is_some_and(|s| s.trim() == "ready"))
                    .unwrap_or(false);
            std::future::ready(ready)
        })
        .await;
        if let Some(status) = exited {
            bail!(
                "postgres exited ({status}) before it was ready:\n{}",
                log_tail(&self.dir.join("postgres.log"))
            );
        }
        ready.with_context(|| log_tail(&self.dir.join("postgres.log")))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut postmaster) = self.postmaster.take() {
            // Immediate: nothing in it is worth a checkpoint.
            let stopped = pg_bin("pg_ctl").ok().and_then(|pg_ctl| {
                self.command(pg_ctl)
                    .arg("stop")
                    .arg("-D")
                    .arg(self.data_dir())
                    .args(["-m", "immediate", "-w", "-t", "20"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .ok()
            });
            if !stopped.is_some_and(|s| s.success()) {
                let _ = postmaster.kill();
            }
            let _ = postmaster.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RabbitMQ node of the test's own whose only listener is AMQP over TLS on 127.0.0.1 (no
/// plaintext listener, no plugins), with RabbitMQ's default `guest` user and `/` vhost.
pub struct RabbitNode {
    dir: PathBuf,
    node: String,
    port: u16,
    user: Option<ServiceUser>,
    server: Option<Child>,
}

impl RabbitNode {
    /// Starts a node serving `tls` and waits (`rabbitmqctl wait`) until it runs.
    pub async fn start(tls: ServerTls<'_>) -> anyhow::Result<RabbitNode> {
        let mut attempt = 1;
        loop {
            match Self::start_once(tls).await {
                Err(error) if attempt < START_ATTEMPTS && lost_its_port(&error) => attempt += 1,
                result => return result,
            }
        }
    }

    async fn start_once(tls: ServerTls<'_>) -> anyhow::Result<RabbitNode> {
        let user = ServiceUser::when_root("rabbitmq")?;
        let dir = fresh_dir("chukan-rabbitmq")?;
        let [port, dist_port] = free_ports::<2>()?;
        let node = format!(
            "chukan-tls-{}@localhost",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut rabbit = RabbitNode {
            dir,
            node,
            port,
            user,
            server: None,
        };
        rabbit.configure(tls)?;
        let mut server = rabbit.command(rabbit_bin("rabbitmq-server")?);
        server
            .env("RABBITMQ_NODE_PORT", port.to_string())
            // Set explicitly: the default (node port + 20000) may be anybody's port.
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", rabbit.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", rabbit.dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", rabbit.dir.join("rabbitmq.conf"))
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                rabbit.dir.join("advanced.config"),
            )
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                rabbit.dir.join("enabled_plugins"),
            )
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log_file(&rabbit.dir, "rabbitmq-server.log")?)
            .stderr(log_file(&rabbit.dir, "rabbitmq-server.log")?);
        rabbit.server = Some(server.spawn().context("starting rabbitmq-server")?);

        let mut wait = rabbit.ctl()?;
        wait.args(["wait", "--timeout", "60"])
            .arg(rabbit.pid_file())
            .stdin(Stdio::null());
        let waited = tokio::time::timeout(
            START_DEADLINE,
            tokio::process::Command::from(wait)
                .kill_on_drop(true)
                .output(),
        )
        .await;
        match waited {
            Ok(Ok(output)) if output.status.success() => Ok(rabbit),
            Ok(Ok(output)) => bail!(
                "RabbitMQ node {} did not start: {}\n{}",
                rabbit.node,
                String::from_utf8_lossy(&output.stdout).trim(),
                log_tail(&rabbit.dir.join("rabbitmq-server.log"))
            ),
            Ok(Err(error)) => Err(error).context("running rabbitmqctl wait"),
            Err(_) => bail!(
                "RabbitMQ node {} did not start within {START_DEADLINE:?}",
                rabbit.node
            ),
        }
    }

    /// The port of its TLS listener (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The node's name (`chukan-tls-…@localhost`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `{scheme}://guest:guest@{host}:{port}/%2f`: `amqps` through `localhost` (the name in
    /// the server certificate) is the working URL.
    pub fn url(&self, scheme: &str, host: &str) -> String {
        format!("{scheme}://guest:guest@{host}:{}/%2f", self.port)
    }

    /// Runs `rabbitmqctl -n <node> <args>` against this node (as the server's user) and
    /// returns its standard output; a non-zero exit is an error with its messages.
    pub fn rabbitmqctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self
            .ctl()?
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running rabbitmqctl {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "rabbitmqctl {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("rabbitmq.pid")
    }

    fn configure(&self, tls: ServerTls<'_>) -> anyhow::Result<()> {
        let cert = self.dir.join("server.crt");
        let key = self.dir.join("server.key");
        std::fs::copy(&tls.identity.cert_file, &cert)?;
        std::fs::copy(&tls.identity.key_file, &key)?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        let mut conf = format!(
            "listeners.tcp = none\nlisteners.ssl.default = 127.0.0.1:{port}\n\
             ssl_options.certfile = {cert}\nssl_options.keyfile = {key}\n",
            port = self.port,
            cert = cert.display(),
            key = key.display(),
        );
        match tls.client_ca_file {
            Some(ca) => {
                let ca_copy = self.dir.join("client-ca.crt");
                std::fs::copy(ca, &ca_copy)?;
                conf.push_str(&format!(
                    "ssl_options.cacertfile = {}\nssl_options.verify = verify_peer\n\
                     ssl_options.fail_if_no_peer_cert = true\n",
                    ca_copy.display()
                ));
            }
            None => conf.push_str("ssl_options.verify = verify_none\n"),
        }
        std::fs::write(self.dir.join("rabbitmq.conf"), conf)?;
        std::fs::write(self.dir.join("enabled_plugins"), "[].\n")?;
        // Not the machine's /etc/rabbitmq/rabbitmq-env.conf: it names the shared node.
        std::fs::write(self.dir.join("rabbitmq-env.conf"), "")?;
        self.user.as_ref().map(|u| u.own(&self.dir)).transpose()?;
        Ok(())
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&self.dir)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_PID_FILE", self.pid_file())
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"));
        if let Some(user) = &self.user {
            // The Erlang cookie the server and rabbitmqctl share is in the user's home.
            command.uid(user.uid).gid(user.gid).env("HOME", &user.home);
        }
        command
    }

    fn ctl(&self) -> anyhow::Result<Command> {
        let mut ctl = self.command(rabbit_bin("rabbitmqctl")?);
        ctl.arg("-n").arg(&self.node);
        Ok(ctl)
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let beam = std::fs::read_to_string(self.pid_file()).ok();
            // `stop <pidfile>` returns once the node's OS process is gone; bounded by
            // coreutils' timeout so a wedged node cannot hang the test.
            let stopped = rabbit_bin("rabbitmqctl").ok().and_then(|ctl| {
                self.command("timeout")
                    .arg("30")
                    .arg(ctl)
                    .arg("-n")
                    .arg(&self.node)
                    .arg("stop")
                    .arg(self.pid_file())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .ok()
            });
            if !stopped.is_some_and(|s| s.success()) {
                if let Some(pid) = beam.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
                let _ = server.kill();
            }
            let _ = server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RabbitMQ program, without Debian's /usr/sbin wrapper (it switches to the shared
/// node's user and directory itself).
fn rabbit_bin(program: &str) -> anyhow::Result<PathBuf> {
    let packaged = Path::new("/usr/lib/rabbitmq/bin").join(program);
    Ok(if packaged.exists() {
        packaged
    } else {
        PathBuf::from(program)
    })
}
