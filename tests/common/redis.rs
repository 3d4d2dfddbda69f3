//! A real `redis-server` (Debian package `redis-server`) on a free loopback port, started by
//! the test and killed, by PID, when dropped. No persistence: every test starts empty.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    pub dir: super::config_file::TempDir,
    /// Extra server arguments (kept for restarts).
    extra: Vec<String>,
    /// `requirepass`, when set (the readiness check authenticates with it).
    password: Option<String>,
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl RedisServer {
    /// Starts a server and waits (bounded) until it answers PING.
    pub fn start() -> RedisServer {
        RedisServer::start_with(|_| Vec::new(), None)
    }

    /// Starts a server with extra arguments (made from its directory, e.g. for TLS files) and
    /// an optional `requirepass`.
    pub fn start_with(
        extra: impl FnOnce(&std::path::Path) -> Vec<String>,
        password: Option<&str>,
    ) -> RedisServer {
        let dir = super::config_file::TempDir::new();
        let mut extra = extra(&dir.0);
        if let Some(p) = password {
            extra.extend(["--requirepass".to_string(), p.to_string()]);
        }
        let mut s = RedisServer {
            port: free_port(),
            child: None,
            dir,
            extra,
            password: password.map(str::to_string),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.0.display().to_string();
        let mut args = vec![
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ];
        args.extend(self.extra.iter().map(String::as_str));
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).trim() == "PONG" {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not answer", self.port);
    }

    /// The store URL for a gateway config.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs `redis-cli` against this server; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(p) = &self.password {
            cmd.args(["--no-auth-warning", "-a", p]);
        }
        let out = cmd.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server after it saved its data to disk (`SHUTDOWN SAVE`), so a
    /// [`restart`](Self::restart) finds it again, as a persistent production store would.
    pub fn stop_saving(&mut self) {
        self.cli(&["SHUTDOWN", "SAVE"]);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (with what it saved, if anything).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts it again after [`stop_saving`](Self::stop_saving) (or [`stop`](Self::stop)).
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
