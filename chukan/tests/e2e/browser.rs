//! A real browser for the console's tests: Debian's Chromium, headless, driven over
//! WebDriver by its own chromedriver process, at the 1024×768 of an old 接続端末.

use std::{path::PathBuf, process::Command, time::Duration};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};

use crate::helpers::{Proc, Stack, chukan, free_port, wait_http};

/// The console process beside a [`Stack`], and a browser on it.
pub struct Console {
    pub url: String,
    pub _proc: Proc,
    pub _driver: Proc,
    pub browser: Client,
    profile: PathBuf,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Where screenshots go: `CHUKAN_SCREENS_DIR` (scripts/update-screens sets docs/screens),
/// else the test target's scratch directory.
pub fn screens_dir() -> PathBuf {
    std::env::var_os("CHUKAN_SCREENS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screens"))
}

impl Console {
    /// Starts `chukan --target=console` on the stack's API, then chromedriver and a
    /// browser session.
    pub async fn start(stack: &Stack) -> Console {
        let port = free_port();
        let mut env = stack.env.clone();
        env.extend([
            ("CHUKAN__CONSOLE__PORT".to_string(), port.to_string()),
            ("CHUKAN__CONSOLE__API_URL".to_string(), stack.api.clone()),
            ("CHUKAN__METRICS__PORT".to_string(), free_port().to_string()),
        ]);
        let proc = Proc {
            name: "console",
            child: chukan(&env, &["--target=console"]).spawn().unwrap(),
        };
        let url = format!("http://127.0.0.1:{port}");
        wait_http(&stack.http, &format!("{url}/login"), "console").await;

        let driver_port = free_port();
        let driver = Proc {
            name: "chromedriver",
            child: Command::new("chromedriver")
                .arg(format!("--port={driver_port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("chromedriver (Debian chromium-driver; scripts/test installs it)"),
        };
        let driver_url = format!("http://127.0.0.1:{driver_port}");
        wait_http(&stack.http, &format!("{driver_url}/status"), "chromedriver").await;
        let profile = std::env::temp_dir().join(format!("chukan-chromium-{port}"));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                // As root Chromium needs --no-sandbox; the rest keep it off the closed
                // network (no update, sync or background calls) and the size fixed.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1024,768",
                    "--lang=ja", format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        let browser = ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&driver_url)
            .await
            .unwrap();
        Console {
            url,
            _proc: proc,
            _driver: driver,
            browser,
            profile,
        }
    }

    pub async fn go(&self, path: &str) {
        self.browser
            .goto(&format!("{}{path}", self.url))
            .await
            .unwrap();
    }

    pub async fn find(&self, css: &str) -> Element {
        self.browser.find(Locator::Css(css)).await.unwrap()
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// The text of the page's main part.
    pub async fn main_text(&self) -> String {
        self.find("main").await.text().await.unwrap()
    }

    /// Waits until an element matching `css` is on the page (after a form's navigation).
    pub async fn wait_for(&self, css: &str) -> Element {
        match self
            .browser
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!(
                "{css} never appeared ({e}); main: {}",
                self.main_text().await
            ),
        }
    }

    /// Waits until the element's text contains `what` (htmx polls and swaps it).
    pub async fn wait_text(&self, css: &str, what: &str) -> String {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(e) = self.browser.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
                && t.contains(what)
            {
                return t;
            }
            assert!(
                std::time::Instant::now() < until,
                "{css} never showed {what:?}; main: {}",
                self.main_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs in through the login form.
    pub async fn login(&self, tenant: &str, user: &str, password: &str) {
        self.go("/login").await;
        self.fill("#tenant", tenant).await;
        self.fill("#username", user).await;
        self.fill("#password", password).await;
        self.click("form.stacked button[type=submit]").await;
    }

    /// Saves a screenshot of the page as `<name>.png`, after checking the page fits the
    /// 1024-pixel width without scrolling sideways.
    pub async fn screenshot(&self, name: &str) {
        let widths = self
            .browser
            .execute(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
                vec![],
            )
            .await
            .unwrap();
        let (page, window) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
        assert!(
            page <= window,
            "{name}: the page is {page} px wide in a {window} px window"
        );
        let dir = screens_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.browser.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// The session cookie's value, to act as the browser from outside it.
    pub async fn session_cookie(&self) -> fantoccini::cookies::Cookie<'static> {
        self.browser
            .get_named_cookie("__Host-chukan-session")
            .await
            .unwrap()
    }
}
