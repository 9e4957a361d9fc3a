//! The HTML report in a real browser: headless Chromium driven through chromedriver's W3C
//! WebDriver HTTP API (Debian's `chromium` and `chromium-driver`, installed by `.ci/run`).
//!
//! The HTTP client is the few lines below over `std::net::TcpStream`: one local peer, plain
//! HTTP/1.1, `Connection: close`, JSON bodies. No TLS, redirects, pooling or chunked uploads
//! are needed, so a client crate (even `ureq` without TLS pulls `url`/`idna`) would only add
//! build time on CI.
//!
//! Without chromium or chromedriver the trial fails when `CI` is set and is reported ignored,
//! with the reason, otherwise.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Completion, Failed, Trial};
use serde_json::{json, Value};

use crate::support::{fixture_target_dir, json_lines, missing_privileges, tests_by_name, text};

pub fn trials() -> Vec<Trial> {
    vec![Trial::ignorable_test("html_report_in_headless_chromium", || {
        if let Some(reason) = missing_privileges() {
            return Ok(Completion::ignored_with(reason));
        }
        match browser_tools() {
            Ok((chromium, driver)) => report_in_browser(&chromium, &driver).map(|()| Completion::Completed),
            Err(why) if std::env::var_os("CI").is_some() => Err(format!("CI is set but {why}").into()),
            Err(why) => {
                eprintln!("html_report_in_headless_chromium skipped: {why}");
                Ok(Completion::ignored_with(why))
            }
        }
    })]
}

/// The browser and its driver, found on PATH.
fn browser_tools() -> Result<(PathBuf, PathBuf), String> {
    let find = |names: &[&str]| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path).flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.is_file())
    };
    let chromium = find(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find(&["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Ok((c, d)),
        (c, d) => Err(format!(
            "the browser test needs chromium and chromedriver on PATH (missing: {}); install Debian's \
             `chromium` and `chromium-driver`",
            [c.is_none().then_some("chromium"), d.is_none().then_some("chromedriver")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// One HTTP/1.1 request to the driver on localhost; the response's JSON body.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect to chromedriver: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| format!("{method} {path}: {e}"))?;
    // chromedriver keeps the connection open whatever we ask: read the head, then exactly
    // Content-Length bytes.
    let mut resp = Vec::new();
    let mut buf = [0u8; 16384];
    let (head, body) = loop {
        if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&resp[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("{method} {path}: no Content-Length in {head:?}"))?;
            while resp.len() < end + 4 + length {
                let n = s.read(&mut buf).map_err(|e| format!("{method} {path}: {e}"))?;
                if n == 0 {
                    return Err(format!("{method} {path}: the response ended early"));
                }
                resp.extend_from_slice(&buf[..n]);
            }
            break (head, String::from_utf8_lossy(&resp[end + 4..end + 4 + length]).into_owned());
        }
        let n = s.read(&mut buf).map_err(|e| format!("{method} {path}: {e}"))?;
        if n == 0 {
            return Err(format!("{method} {path}: no HTTP response"));
        }
        resp.extend_from_slice(&buf[..n]);
    };
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{method} {path}: {e}: {body}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{method} {path}: {}: {}", head.lines().next().unwrap_or(""), v["value"]));
    }
    Ok(v["value"].clone())
}

/// chromedriver, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(9515)
}

struct Session {
    port: u16,
    id: String,
}

impl Session {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        http(self.port, method, &format!("/session/{}{path}", self.id), body.as_ref())
    }

    fn script(&self, script: &str, args: Value) -> Result<Value, String> {
        self.call("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    fn click(&self, element: &Value) -> Result<(), String> {
        let id = element[ELEMENT_KEY].as_str().ok_or_else(|| format!("not an element: {element}"))?;
        self.call("POST", &format!("/element/{id}/click"), Some(json!({}))).map(drop)
    }

    fn find(&self, css: &str) -> Result<Value, String> {
        self.call("POST", "/element", Some(json!({ "using": "css selector", "value": css })))
    }
}

/// The W3C WebDriver key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn report_in_browser(chromium: &Path, chromedriver: &Path) -> Result<(), Failed> {
    let html = fixture_target_dir().join("browser-report.html");
    let out = crate::timeline::run_with_timelines(&html);
    let tests = tests_by_name(&json_lines(&out));
    if tests.len() != 3 || !html.is_file() {
        return Err(format!("the report run failed:\n{}\n{}", text(&out.stdout), text(&out.stderr)).into());
    }

    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", chromedriver.display()))?;
    let _driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !http(port, "GET", "/status", None).is_ok_and(|v| v["ready"] == true) {
        if Instant::now() > deadline {
            return Err("chromedriver did not become ready in 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let caps = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"],
        },
        "goog:loggingPrefs": { "browser": "ALL" },
    }}});
    let created = http(port, "POST", "/session", Some(&caps))?;
    let s = Session { port, id: created["sessionId"].as_str().ok_or("no session id")?.to_owned() };
    let result = drive(&s, &html, &tests).and_then(|()| attempts_in_browser(&s));
    let _ = s.call("DELETE", "", None);
    result
}

fn drive(s: &Session, html: &Path, tests: &std::collections::BTreeMap<String, Value>) -> Result<(), Failed> {
    s.call("POST", "/url", Some(json!({ "url": format!("file://{}", html.display()) })))?;

    // Every test is a row.
    let names = |s: &Session| -> Result<Vec<String>, String> {
        let v = s.script(
            "return Array.from(document.querySelectorAll('#rows tr td.name')).map(td => td.lastChild.textContent)",
            json!([]),
        )?;
        Ok(v.as_array().into_iter().flatten().filter_map(|n| n.as_str().map(str::to_owned)).collect())
    };
    let mut shown = names(s)?;
    shown.sort();
    let want: Vec<String> = tests.keys().cloned().collect();
    if shown != want {
        return Err(format!("the table shows {shown:?}, the run had {want:?}").into());
    }

    // Sorting by peak memory: ascending, then descending on a second click.
    let mem = |n: &String| tests[n]["peaks"]["memory_bytes"].as_u64().unwrap_or(0);
    let header = s.find("th[data-col=mem]")?;
    for (click, ascending) in [(1, true), (2, false)] {
        s.click(&header)?;
        let order = names(s)?;
        let values: Vec<u64> = order.iter().map(mem).collect();
        let sorted = values.windows(2).all(|w| if ascending { w[0] <= w[1] } else { w[0] >= w[1] });
        if !sorted || order.len() != want.len() {
            return Err(
                format!("after click {click} on peak memory the order is {order:?} ({values:?})").into()
            );
        }
    }

    // The hog's row opens its chart, with the OOM mark where it was killed.
    let hog = "limits::oom_hog_256m";
    let row = s.script(
        "return Array.from(document.querySelectorAll('#rows tr')).find(tr => tr.querySelector('td.name').lastChild.textContent === arguments[0])",
        json!([hog]),
    )?;
    s.click(&row)?;
    let mark = s.script(
        "const m = document.querySelector('#chart line.mark-oom'); \
         return m && { at: Number(m.dataset.atMs), x: Number(m.getAttribute('x1')), \
                       visible: !document.getElementById('detail').hidden, \
                       title: document.getElementById('detail-title').textContent }",
        json!([]),
    )?;
    let tl = &tests[hog]["timeline"];
    let at = tl["marks"][0]["at_ms"].as_f64().unwrap_or(-1.0);
    let duration = tests[hog]["duration_ms"].as_f64().unwrap_or(0.0);
    // The chart's time axis: 0 to the longest of duration, last point and mark (whole ms), over
    // the plot's 700 px starting at x = 60.
    let last_t = tl["t_ms"].as_array().and_then(|a| a.last()).and_then(Value::as_f64).unwrap_or(0.0);
    let tmax = duration.floor().max(last_t.floor()).max(at.floor()).max(1.0);
    let want_x = 60.0 + at.floor() / tmax * 700.0;
    let ok = mark["visible"] == true
        && mark["title"].as_str().is_some_and(|t| t.ends_with(hog))
        && (mark["at"].as_f64().unwrap_or(-1.0) - at).abs() <= 1.0
        && (mark["x"].as_f64().unwrap_or(-1.0) - want_x).abs() <= 2.0;
    if !ok {
        return Err(
            format!("OOM mark {mark} (want at {at} ms, x {want_x:.1}; the hog ran {duration} ms)").into()
        );
    }

    // A screenshot for CI, then: no console errors.
    let png = s.call("GET", "/screenshot", None)?;
    let shot = fixture_target_dir().parent().unwrap_or(Path::new(".")).join("cvtest-report.png");
    std::fs::write(&shot, base64_decode(png.as_str().unwrap_or(""))?)
        .map_err(|e| format!("cannot write {}: {e}", shot.display()))?;
    no_console_errors(s)
}

fn no_console_errors(s: &Session) -> Result<(), Failed> {
    let logs = s.call("POST", "/se/log", Some(json!({ "type": "browser" })))?;
    let errors: Vec<&Value> =
        logs.as_array().into_iter().flatten().filter(|l| l["level"] == "SEVERE").collect();
    if !errors.is_empty() {
        return Err(format!("console errors: {errors:?}").into());
    }
    Ok(())
}

/// A retried test's report: its row opens a chart per attempt, the last one first; the first
/// attempt's button draws that attempt's own curve.
fn attempts_in_browser(s: &Session) -> Result<(), Failed> {
    let html = fixture_target_dir().join("browser-attempts.html");
    let _ = std::fs::remove_file(&html);
    let (out, _) = crate::runner_features::run_with_markers(&[
        "--retries",
        "1",
        "--html",
        html.to_str().unwrap_or_default(),
        "retry::flaky_fails_first_attempt",
    ])?;
    if !html.is_file() {
        return Err(format!("the retried run wrote no report:\n{}", text(&out.stderr)).into());
    }
    s.call("POST", "/url", Some(json!({ "url": format!("file://{}", html.display()) })))?;
    let row = s.find("#rows tr")?;
    s.click(&row)?;
    let state = |s: &Session| {
        s.script(
            "return { buttons: Array.from(document.querySelectorAll('#detail-attempts button')).map(b => b.textContent), \
                      current: (document.querySelector('#detail-attempts button.current') || {}).dataset?.attempt, \
                      mem: (document.querySelector('#chart polyline.mem') || { getAttribute: () => null }).getAttribute('points') }",
            json!([]),
        )
    };
    let last = state(s)?;
    let buttons = last["buttons"].as_array().map_or(0, Vec::len);
    let labels = last["buttons"].to_string();
    // (The passing attempt may end before its first sample: only the failing one, which
    // allocates for a while first, surely has a curve.)
    if buttons != 2 || last["current"] != "2" || !labels.contains("FAIL") {
        return Err(format!("a retried test's detail: {last}").into());
    }
    let first = s.find("#detail-attempts button[data-attempt='1']")?;
    s.click(&first)?;
    let shown = state(s)?;
    if shown["current"] != "1" || shown["mem"].is_null() || shown["mem"] == last["mem"] {
        return Err(format!("after clicking attempt 1: {shown} (attempt 2 drew {})", last["mem"]).into());
    }
    no_console_errors(s)
}

/// Standard base64 (the screenshot).
fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()) {
        acc = (acc << 6) | u32::from(value(c).ok_or_else(|| format!("not base64: {c:?}"))?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}
