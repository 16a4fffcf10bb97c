//! What the server fixtures share ([`crate::tls_servers`], [`crate::replication`], and tests
//! that run server programs themselves): the
//! service user a server runs as when the tests run as root, where PostgreSQL's programs
//! are, throw-away directories, free ports and the servers' logs.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// The unprivileged user a server runs as when the tests run as root.
#[derive(Debug, Clone)]
pub struct ServiceUser {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

impl ServiceUser {
    /// `name` from /etc/passwd when this process is root; `None` (run as ourselves)
    /// otherwise.
    pub fn when_root(name: &str) -> anyhow::Result<Option<ServiceUser>> {
        use std::os::unix::fs::MetadataExt as _;
        // /proc/self belongs to the process's effective user.
        if std::fs::metadata("/proc/self")?.uid() != 0 {
            return Ok(None);
        }
        let passwd = std::fs::read_to_string("/etc/passwd")?;
        let entry = passwd
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&name) && fields.len() >= 6)
            .with_context(|| {
                format!("running as root, and there is no user {name} to run its server as")
            })?;
        Ok(Some(ServiceUser {
            uid: entry[2].parse()?,
            gid: entry[3].parse()?,
            home: entry[5].to_owned(),
        }))
    }

    /// Gives `dir` and everything in it to this user.
    pub fn own(&self, dir: &Path) -> anyhow::Result<()> {
        std::os::unix::fs::chown(dir, Some(self.uid), Some(self.gid))?;
        if dir.is_dir() {
            for entry in std::fs::read_dir(dir)? {
                self.own(&entry?.path())?;
            }
        }
        Ok(())
    }
}

/// A PostgreSQL server program: `CHUKAN_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout; not on PATH), else PATH.
pub fn pg_bin(program: &str) -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("CHUKAN_TEST_PG_BIN") {
        return Ok(Path::new(&dir).join(program));
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .max_by_key(|(version, _)| *version);
    Ok(match newest {
        Some((_, dir)) => dir.join("bin").join(program),
        None => PathBuf::from(program),
    })
}

pub fn fresh_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `N` distinct free ports on 127.0.0.1, held until all are found so they differ.
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

pub fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))?)
}

pub fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The last lines of a server's log, for an error message.
pub fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
