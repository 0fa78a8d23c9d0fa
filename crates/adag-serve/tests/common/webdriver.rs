//! A minimal W3C WebDriver client for headless Chromium through chromedriver, over the raw
//! HTTP client of `common`. Only what the viewer tests need: navigate, run JS, find and click
//! elements, type, pointer actions (with Ctrl held), wheel, and screenshots.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::request;

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_exe(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    for c in candidates {
        let p = Path::new(c);
        if p.is_absolute() {
            if p.is_file() {
                return Some(p.to_path_buf());
            }
        } else if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                if dir.join(c).is_file() {
                    return Some(dir.join(c));
                }
            }
        }
    }
    None
}

/// One headless Chromium, driven through its own chromedriver.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

/// Serialises browser tests: three agents share two cores, and one Chromium at a time is plenty.
pub static BROWSER_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Browser {
    /// Starts Chromium, or says why it cannot. On CI (`CI=true`) a missing browser is a failure,
    /// so that the browser tests cannot be skipped silently there.
    pub fn launch() -> Option<Browser> {
        match Self::try_launch() {
            Ok(b) => Some(b),
            Err(reason) => {
                if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                    panic!("browser tests need Chromium on CI: {reason}");
                }
                eprintln!("skipping browser test: {reason}");
                None
            }
        }
    }

    fn try_launch() -> Result<Browser, String> {
        let chromium = find_exe(
            "ADAG_CHROMIUM",
            &[
                "/usr/bin/chromium",
                "/usr/bin/chromium-browser",
                "chromium",
                "google-chrome",
            ],
        )
        .ok_or("no Chromium (install the `chromium` package or set ADAG_CHROMIUM)")?;
        let driver_exe = find_exe(
            "ADAG_CHROMEDRIVER",
            &["/usr/bin/chromedriver", "chromedriver"],
        )
        .ok_or("no chromedriver (install `chromium-driver` or set ADAG_CHROMEDRIVER)")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let driver = Command::new(&driver_exe)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", driver_exe.display()))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let t0 = Instant::now();
        loop {
            if std::net::TcpStream::connect(addr).is_ok() {
                let s = request(addr, "GET /status HTTP/1.1", b"");
                if s.status == 200 && s.json()["value"]["ready"] == json!(true) {
                    break;
                }
            }
            if t0.elapsed() > Duration::from_secs(20) {
                return Err("chromedriver did not become ready".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1400,900",
            "--force-device-scale-factor=1",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", b._profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "accept",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let r = b.raw("POST", "/session", Some(caps));
        let session = r["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("cannot start a session: {r}"))?;
        b.session = session.to_string();
        b.set_viewport(1400, 900);
        Ok(b)
    }

    /// Resizes the window so that the page's viewport is `w` × `h` CSS pixels.
    pub fn set_viewport(&self, w: i64, h: i64) {
        let inner = self.exec("return [innerWidth, innerHeight];", vec![]);
        let rect = self.cmd("GET", "/window/rect", None);
        let dw = rect["width"].as_i64().unwrap_or(w) - inner[0].as_i64().unwrap_or(w);
        let dh = rect["height"].as_i64().unwrap_or(h) - inner[1].as_i64().unwrap_or(h);
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": w + dw, "height": h + dh})),
        );
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|v| v.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        );
        let r = request(self.addr, &head, body.as_bytes());
        serde_json::from_slice(&r.body).unwrap_or_else(|_| json!({"value": {"error": r.text()}}))
    }

    /// A session command; panics with WebDriver's message on error.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let t0 = Instant::now();
        let r = self.raw(method, &format!("/session/{}{path}", self.session), body);
        if std::env::var_os("ADAG_WEBDRIVER_TRACE").is_some() {
            eprintln!("webdriver {method} {path}: {:?}", t0.elapsed());
        }
        if let Some(e) = r["value"]["error"].as_str() {
            panic!("WebDriver {method} {path}: {e}: {}", r["value"]["message"]);
        }
        r["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Polls the JS expression until it is truthy; returns its value.
    pub fn wait_for(&self, expr: &str, timeout: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.exec(&format!("return ({expr});"), vec![]);
            let truthy =
                !matches!(v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return v;
            }
            if t0.elapsed() > timeout {
                let status = self.exec("return document.getElementById('status') && document.getElementById('status').textContent;", vec![]);
                panic!("timed out waiting for `{expr}` (status: {status})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT_KEY].as_str().unwrap().to_string()
    }

    /// A real click on the element (WebDriver scrolls it into view and clicks its centre).
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.cmd("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Moves the mouse to viewport (x, y) and clicks, holding Ctrl when `ctrl`.
    pub fn click_at(&self, x: f64, y: f64, ctrl: bool) {
        let (x, y) = (x.round() as i64, y.round() as i64);
        let mut actions = vec![
            json!({"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pause", "duration": 0},
                        {"type": "pointerMove", "x": x, "y": y, "origin": "viewport"},
                        {"type": "pointerDown", "button": 0},
                        {"type": "pointerUp", "button": 0},
                        {"type": "pause", "duration": 0}]}),
        ];
        if ctrl {
            actions.push(json!({"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": "\u{E009}"}, {"type": "pause", "duration": 0},
                {"type": "pause", "duration": 0}, {"type": "pause", "duration": 0},
                {"type": "keyUp", "value": "\u{E009}"}]}));
        }
        self.cmd("POST", "/actions", Some(json!({ "actions": actions })));
        self.cmd("DELETE", "/actions", None);
    }

    pub fn move_to(&self, x: f64, y: f64) {
        self.cmd("POST", "/actions", Some(json!({"actions": [{"type": "pointer", "id": "mouse",
            "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "x": x.round() as i64, "y": y.round() as i64, "origin": "viewport"}]}]})));
    }

    pub fn drag(&self, from: (f64, f64), to: (f64, f64)) {
        self.cmd("POST", "/actions", Some(json!({"actions": [{"type": "pointer", "id": "mouse",
            "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "x": from.0 as i64, "y": from.1 as i64, "origin": "viewport"},
                        {"type": "pointerDown", "button": 0},
                        {"type": "pointerMove", "x": ((from.0 + to.0) / 2.0) as i64, "y": ((from.1 + to.1) / 2.0) as i64, "origin": "viewport", "duration": 50},
                        {"type": "pointerMove", "x": to.0 as i64, "y": to.1 as i64, "origin": "viewport", "duration": 50},
                        {"type": "pointerUp", "button": 0}]}]})));
        self.cmd("DELETE", "/actions", None);
    }

    pub fn wheel(&self, x: f64, y: f64, delta_y: i64) {
        self.cmd("POST", "/actions", Some(json!({"actions": [{"type": "wheel", "id": "wheel",
            "actions": [{"type": "scroll", "x": x as i64, "y": y as i64, "deltaX": 0, "deltaY": delta_y, "origin": "viewport"}]}]})));
    }

    /// Saves a PNG screenshot of the page.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
