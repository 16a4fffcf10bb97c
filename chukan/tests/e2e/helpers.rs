//! Runs the real `chukan` binary as separate processes (nws-sim and --target=all), the way
//! an operator does, against a fresh database and RabbitMQ namespace.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use chukan_config::Settings;
use secrecy::ExposeSecret;

pub const BIN: &str = env!("CARGO_BIN_EXE_chukan");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process killed when the test ends, whatever happens.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
}

impl Proc {
    /// SIGTERM and wait for a clean exit (graceful shutdown); returns the exit status code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "could not signal {}",
            self.name
        );
        let until = std::time::Instant::now() + within;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two processes and the environment they share.
pub struct Stack {
    pub settings: Settings,
    pub env: Vec<(String, String)>,
    pub api: String,
    pub ops: String,
    pub nws: String,
    pub relay_in: String,
    pub nws_sim: Proc,
    pub chukan: Proc,
    pub http: reqwest::Client,
}

pub fn env_for(settings: &Settings, ports: (u16, u16, u16, u16)) -> Vec<(String, String)> {
    let (api, ops, relay, nws) = ports;
    let nws_signer = chukan_crypto::Signer::from_seed_base64(
        &settings.nws_sim.signing_kid,
        settings.nws_sim.signing_key.expose_secret(),
    )
    .unwrap();
    let pairs = [
        ("CHUKAN__DATABASE__URL", settings.database.url.clone()),
        ("CHUKAN__AMQP__URL", settings.amqp.url.clone()),
        ("CHUKAN__AMQP__NAMESPACE", settings.amqp.namespace.clone()),
        // Long enough to restart nws-sim inside the retry window in the link-cut test.
        (
            "CHUKAN__AMQP__RETRY_DELAYS_MS",
            "300,600,1200,2400,4800".into(),
        ),
        ("CHUKAN__AMQP__OUTBOX_POLL_MS", "100".into()),
        // Throw-away namespaces: cheap classic queues that delete themselves when idle.
        ("CHUKAN__AMQP__QUEUE_TYPE", "classic".into()),
        ("CHUKAN__AMQP__QUEUE_EXPIRES_MS", "300000".into()),
        ("CHUKAN__SERVER__PORT", api.to_string()),
        ("CHUKAN__SERVER__WORKERS", "2".into()),
        ("CHUKAN__METRICS__PORT", ops.to_string()),
        ("CHUKAN__RELAY__INBOUND_PORT", relay.to_string()),
        ("CHUKAN__RELAY__NWS_URL", format!("http://127.0.0.1:{nws}")),
        (
            "CHUKAN__RELAY__NWS_PUBLIC_KEYS",
            format!("{}={}", nws_signer.kid(), nws_signer.public_key_base64()),
        ),
        ("CHUKAN__NWS_SIM__PORT", nws.to_string()),
        (
            "CHUKAN__NWS_SIM__DATABASE_URL",
            settings.nws_sim.database_url.clone(),
        ),
        (
            "CHUKAN__NWS_SIM__DELIVERY_RETRY_MS",
            "100,200,400,800".into(),
        ),
        ("CHUKAN__CALENDAR__ENFORCE_SERVICE_HOURS", "false".into()),
        ("CHUKAN__TELEMETRY__LOG_LEVEL", "warn".into()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

pub fn chukan(env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().cloned())
        .stdin(Stdio::null());
    if std::env::var("TEST_LOG").is_err() {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    cmd
}

/// Runs a one-shot subcommand and returns its stdout parsed as JSON (or Null).
pub fn run_json(env: &[(String, String)], args: &[&str]) -> serde_json::Value {
    let out = chukan(env, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chukan {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Waits until `url` answers 2xx: true, or false as soon as `proc` has exited (e.g. its port
/// was taken). Panics after 60 s.
pub async fn wait_ready(http: &reqwest::Client, url: &str, proc: &mut Proc) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if matches!(http.get(url).send().await, Ok(r) if r.status().is_success()) {
            return true;
        }
        if matches!(proc.child.try_wait(), Ok(Some(_))) {
            return false;
        }
        assert!(
            std::time::Instant::now() < until,
            "{} not ready at {url} within 60 s",
            proc.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn wait_http(http: &reqwest::Client, url: &str, what: &str) {
    chukan_testkit::wait_until(Duration::from_secs(60), what, || async {
        matches!(http.get(url).send().await, Ok(r) if r.status().is_success())
    })
    .await
    .unwrap();
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(&[]).await
    }

    /// Like [`Stack::start`], with extra `CHUKAN__…` settings for every process.
    ///
    /// Ports are picked free and released before the processes bind them, so another test
    /// may take one in between: a process that exits before it is ready is started again on
    /// fresh ports (a few times), instead of the test waiting for it in vain.
    pub async fn start_with(extra: &[(&str, &str)]) -> Stack {
        let settings = chukan_testkit::test_settings();
        let http = reqwest::Client::new();
        let mut migrated = false;
        for _attempt in 0..4 {
            let ports = (free_port(), free_port(), free_port(), free_port());
            let mut env = env_for(&settings, ports);
            env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            if !migrated {
                run_json(&env, &["migrate"]);
                migrated = true;
            }
            let mut nws_sim = Proc {
                name: "nws-sim",
                child: chukan(&env, &["nws-sim"]).spawn().unwrap(),
            };
            let nws = format!("http://127.0.0.1:{}", ports.3);
            if !wait_ready(&http, &format!("{nws}/v1/keys"), &mut nws_sim).await {
                continue;
            }
            let mut chukan_proc = Proc {
                name: "chukan",
                child: chukan(&env, &["--target=all"]).spawn().unwrap(),
            };
            let ops = format!("http://127.0.0.1:{}", ports.1);
            if !wait_ready(&http, &format!("{ops}/readyz"), &mut chukan_proc).await {
                continue;
            }
            return Stack {
                settings,
                env,
                api: format!("http://127.0.0.1:{}", ports.0),
                ops,
                nws,
                relay_in: format!("http://127.0.0.1:{}", ports.2),
                nws_sim,
                chukan: chukan_proc,
                http,
            };
        }
        panic!("the stack did not start in four attempts (run with TEST_LOG=1 to see why)");
    }

    /// Starts nws-sim again (after a cut), on the same port and database.
    pub async fn restart_nws_sim(&mut self) {
        self.nws_sim = Proc {
            name: "nws-sim",
            child: chukan(&self.env, &["nws-sim"]).spawn().unwrap(),
        };
        wait_http(&self.http, &format!("{}/v1/keys", self.nws), "nws-sim back").await;
    }

    /// The operations port's /metrics page.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.ops))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// An acquisition's status as its tenant sees it.
    pub async fn acquisition(&self, token: &str, id: &str) -> serde_json::Value {
        self.http
            .get(format!("{}/v1/codes/acquisitions/{id}", self.api))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// One Prometheus sample from the operations port (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// Sum of every labelled sample of a metric, and how many samples there were.
    pub async fn metric_total(&self, name: &str) -> (f64, usize) {
        let text = self.metrics_text().await;
        let values: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
            .collect();
        (values.iter().sum(), values.len())
    }

    /// Registers a tenant, its system client and its NWS registration; returns a token.
    pub async fn tenant(&self, org: &str, name: &str) -> String {
        run_json(
            &self.env,
            &[
                "admin",
                "create-tenant",
                "--org",
                org,
                "--name",
                name,
                "--population",
                "100000",
            ],
        );
        let client = run_json(
            &self.env,
            &["admin", "create-client", "--tenant", org, "--name", "e2e"],
        );
        let relay = chukan_crypto::Signer::from_seed_base64(
            &self.settings.relay.signing_kid,
            self.settings.relay.signing_key.expose_secret(),
        )
        .unwrap();
        let res = self
            .http
            .post(format!("{}/v1/organizations", self.nws))
            .json(&serde_json::json!({
                "org_code": org, "name": name, "endpoint_url": self.relay_in,
                "keys": [{ "kid": relay.kid(), "public_key": relay.public_key_base64() }]
            }))
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "register at nws-sim: {}",
            res.status()
        );
        let token: serde_json::Value = self
            .http
            .post(format!("{}/v1/auth/token", self.api))
            .json(&serde_json::json!({
                "grant_type": "client_credentials",
                "client_id": client["client_id"], "client_secret": client["client_secret"]
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["access_token"].as_str().unwrap().to_string();
        // Provision learns the tenant from admin's tenant.changed event, on its own time:
        // the tenant is ready for work once its replica quota answers.
        let quota = format!("{}/v1/replica-quota", self.api);
        chukan_testkit::wait_until(
            Duration::from_secs(30),
            "provision knows the tenant",
            || {
                let req = self.http.get(&quota).bearer_auth(&token);
                async move { matches!(req.send().await, Ok(r) if r.status().is_success()) }
            },
        )
        .await
        .unwrap();
        token
    }
}

impl Stack {
    /// A system client of `org` working for `department` (its tokens carry it); returns a
    /// token.
    pub async fn department_token(&self, org: &str, department: &str) -> String {
        let client = run_json(
            &self.env,
            &[
                "admin",
                "create-client",
                "--tenant",
                org,
                "--name",
                "e2e-dept",
                "--department",
                department,
            ],
        );
        let token: serde_json::Value = self
            .http
            .post(format!("{}/v1/auth/token", self.api))
            .json(&serde_json::json!({
                "grant_type": "client_credentials",
                "client_id": client["client_id"], "client_secret": client["client_secret"]
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        token["access_token"].as_str().unwrap().to_string()
    }

    /// Deliveries the process has handled on one of its queues (`…chukan_mq_consumed_total`).
    pub async fn consumed(&self, queue: &str) -> f64 {
        let name = format!("{}{queue}", self.settings.amqp.namespace);
        let text = self.metrics_text().await;
        text.lines()
            .filter(|l| {
                l.starts_with("chukan_mq_consumed_total{") && l.contains(&format!("\"{name}\""))
            })
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }
}

impl Stack {
    /// Starts `chukan --target=all` again (after a kill), on the same ports and database.
    pub async fn restart_chukan(&mut self) {
        self.chukan = Proc {
            name: "chukan",
            child: chukan(&self.env, &["--target=all"]).spawn().unwrap(),
        };
        wait_http(&self.http, &format!("{}/readyz", self.ops), "chukan back").await;
    }
}

/// The password of the staff user [`Stack::staff_token`] creates (`staff1`).
pub const STAFF_PASSWORD: &str = "e2e-staff-password";

impl Stack {
    /// A business-staff user (業務担当者) of `org` signed in with a password; returns a token.
    pub async fn staff_token(&self, org: &str) -> String {
        const PASSWORD: &str = STAFF_PASSWORD;
        let mut env = self.env.clone();
        env.push(("CHUKAN_NEW_PASSWORD".into(), PASSWORD.into()));
        run_json(
            &env,
            &[
                "admin",
                "create-user",
                "--tenant",
                org,
                "--login",
                "staff1",
                "--name",
                "業務職員",
                "--role",
                "business_staff",
            ],
        );
        let token: serde_json::Value = self
            .http
            .post(format!("{}/v1/auth/token", self.api))
            .json(&serde_json::json!({
                "grant_type": "password", "tenant": org, "username": "staff1", "password": PASSWORD
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        token["access_token"].as_str().unwrap().to_string()
    }
}
