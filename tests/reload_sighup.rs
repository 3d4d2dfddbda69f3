//! `SIGHUP` reloads the running binary's configuration file (B3, B10). The child is killed by
//! its own handle if the test fails.
mod common;
use common::config_file::{pin_listeners, TempDir};

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Proc(Child, Arc<Mutex<String>>);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.1.lock().map(|s| s.contains(needle)).unwrap_or(false) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                self.out()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    fn out(&self) -> String {
        self.1.lock().map(|s| s.clone()).unwrap_or_default()
    }
    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill {sig} failed");
    }
}

#[test]
fn sighup_reloads_the_file() {
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    let cfg = |lb: &str| {
        pin_listeners(&format!(
            "server:\n  backends: [{{addr: \"127.0.0.1:9\"}}]\n  health: {{enabled: false}}\n  loadBalancer: {lb}\nlogging: {{format: json}}\n"
        ))
    };
    std::fs::write(&path, cfg("round_robin")).expect("write config");
    let bin =
        std::env::var("GOGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gogate").to_string());
    let mut child = Command::new(bin)
        .args(["-config", path.to_str().expect("utf-8 path")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gogate");
    let out = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let sink = Arc::clone(&out);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    let p = Proc(child, out);
    p.wait_for("\"msg\":\"gogate started\"");
    p.wait_for("watching the configuration directory");
    // Written in place (no rename), and the watcher may see it too: look for the signal's line.
    std::fs::write(&path, cfg("least_connections")).expect("rewrite config");
    p.signal("-HUP");
    p.wait_for("\"trigger\":\"sighup\"");
    let line = p
        .out()
        .lines()
        .find(|l| l.contains("\"trigger\":\"sighup\""))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(line.contains("configuration reloaded"), "{line}");
    p.signal("-TERM");
}
