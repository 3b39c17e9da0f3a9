//! A real headless Chromium driven through chromedriver's WebDriver API, for the
//! dashboard's tests and its screenshot.
//!
//! The browser never reaches the network: every host name resolves to nothing except
//! 127.0.0.1, and every other request goes to a proxy on a closed loopback port.
//! Background services (updates, sync, metrics) are off and the profile is fresh.
//!
//! Where Chromium or chromedriver is missing, [`Browser::start`] says so on the terminal
//! (past the test harness's capture) and returns `None`, unless
//! `CANHAZGPU_REQUIRE_BROWSER=1` is set (scripts/test.sh sets it after installing
//! them): then a missing browser fails the test.
//!
//! Also included by the unit tests in `src/web/tests.rs` (through `#[path]`), next to
//! `http.rs`, so it uses nothing but std, serde_json, base64 and tempfile.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::http;

pub const REQUIRE_ENV: &str = "CANHAZGPU_REQUIRE_BROWSER";

pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

/// Finds `names` on PATH.
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

impl Browser {
    /// A fresh browser for `test`, or `None` with a visible message when none can be had.
    pub fn start(test: &str) -> Option<Browser> {
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
        let driver = find_program(&["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let message = format!(
                "SKIPPED {test}: no headless browser (needs the Debian packages chromium and \
                 chromium-driver; scripts/test.sh installs them)"
            );
            assert!(
                std::env::var_os(REQUIRE_ENV).is_none_or(|v| v != "1"),
                "{message}, and {REQUIRE_ENV}=1 requires one"
            );
            // Straight to the terminal: the harness captures print! and eprint! only.
            let _ = writeln!(std::io::stderr(), "{message}");
            return None;
        };
        Some(Browser::launch(&chromium, &driver))
    }

    fn launch(chromium: &Path, driver_path: &Path) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port for chromedriver")
            .port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        browser.wait_until_ready();
        let args = browser_args(browser._profile.path());
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created = browser.call("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session from chromedriver: {created}"))
            .to_string();
        browser
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http::request(self.addr, "GET", "/status", None)
                .ok()
                .is_some_and(|r| r.json()["value"]["ready"] == true);
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One WebDriver command; returns its `value`, failing the test on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|body| body.to_string());
        let response = http::request(self.addr, method, path, body.as_deref())
            .unwrap_or_else(|e| panic!("chromedriver {method} {path}: {e}"));
        let value = response.json()["value"].take();
        assert!(
            response.status == 200,
            "chromedriver {method} {path} answered {}: {value}",
            response.status
        );
        value
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn set_window_size(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Loads `url` and waits for its load event.
    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `body` (a function body: `return ...;`) in the page and returns its value.
    pub fn eval(&self, body: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": body, "args": []})),
        )
    }

    /// Polls `body` until it returns something other than null or false.
    pub fn wait_for(&self, deadline: Duration, what: &str, body: &str) -> Value {
        let end = Instant::now() + deadline;
        loop {
            let value = self.eval(body);
            if !value.is_null() && value != false {
                return value;
            }
            assert!(
                Instant::now() < end,
                "timed out after {deadline:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Console messages and uncaught exceptions at level SEVERE since the last call.
    pub fn console_errors(&self) -> Vec<String> {
        let entries = self.session_call("POST", "/se/log", Some(json!({"type": "browser"})));
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// A Chrome DevTools command, through chromedriver.
    pub fn devtools(&self, command: &str, params: Value) -> Value {
        self.session_call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": command, "params": params})),
        )
    }

    /// Makes the page see `prefers-color-scheme: dark` (or light).
    pub fn prefer_dark(&self, dark: bool) {
        let value = if dark { "dark" } else { "light" };
        self.devtools(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": value}]}),
        );
    }

    /// Lays the page out as a phone of `width` CSS pixels would (`Some`), or as the
    /// window is again (`None`).
    pub fn emulate_phone(&self, width: Option<u32>) {
        match width {
            Some(width) => self.devtools(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": 844, "deviceScaleFactor": 1, "mobile": true}),
            ),
            None => self.devtools("Emulation.clearDeviceMetricsOverride", json!({})),
        };
    }

    /// Saves the whole page, beyond the window, as a PNG.
    pub fn screenshot(&self, path: &Path) {
        let shot = self.devtools(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let data = shot["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = http::request(self.addr, "DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Headless, sandbox off (tests run as root), and shut off from everything but loopback.
fn browser_args(profile: &Path) -> Vec<String> {
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-pings",
        "--metrics-recording-only",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--window-size=1280,900",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}
