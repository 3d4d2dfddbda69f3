//! The command line of DESIGN B1, with the Go-style single-dash flags of the original
//! (`-config FILE`) as well as `--config`, `-c` and `--config=FILE`. Exit codes: 0 clean stop,
//! 1 config or bind error, 2 usage error.

use crate::gateway::{Gateway, GatewayOptions};
use gogate_actors::logging::build_logger;
use gogate_config::{default_config, load_file, Config};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage:
  gogate [-config FILE]              run (FILE or $GOGATE_CONFIG; else the embedded default)
  gogate demo [-config FILE]         run with two built-in echo backends on 127.0.0.1:9001/9002
  gogate validate -config FILE       check FILE; prints 'configuration OK' or the errors
  gogate explain -config FILE [--method M] [--host H] [--path P] [--header N:V]... [--client IP]
                                     where that request would go and why (JSON, as GET /explain)
  gogate healthcheck [--url URL]     GET the admin /health (default http://127.0.0.1:9090/health)
  gogate version                     print the version
flags: -config/--config/-c FILE, -h/--help";

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run {
        config: Option<PathBuf>,
        demo: bool,
    },
    Validate {
        config: Option<PathBuf>,
    },
    /// `explain`: the request as `(name, value)` pairs of `GET /explain`'s query.
    Explain {
        config: Option<PathBuf>,
        request: Vec<(String, String)>,
    },
    Healthcheck {
        url: String,
    },
    Version,
    Help,
}

/// Parses arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter().peekable();
    let sub = match it.peek().map(|s| s.as_str()) {
        Some("demo") | Some("validate") | Some("version") | Some("healthcheck") | Some("run")
        | Some("explain") => it.next().map(|s| s.as_str()),
        _ => None,
    };
    let mut config = None;
    let mut url = None;
    let mut request = Vec::new();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("flag {name} needs a value"))
        };
        match flag {
            "-config" | "--config" | "-c" => config = Some(PathBuf::from(value(flag)?)),
            "--url" | "-url" => url = Some(value(flag)?),
            "--method" | "--host" | "--path" | "--header" | "--client"
                if sub == Some("explain") =>
            {
                request.push((flag[2..].to_string(), value(flag)?))
            }
            "-h" | "--help" | "-help" | "help" => return Ok(Command::Help),
            "--version" | "-version" | "-v" => return Ok(Command::Version),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match sub {
        Some("version") => Ok(Command::Version),
        Some("validate") => Ok(Command::Validate { config }),
        Some("explain") => Ok(Command::Explain { config, request }),
        Some("healthcheck") => Ok(Command::Healthcheck {
            url: url.unwrap_or_else(|| "http://127.0.0.1:9090/health".into()),
        }),
        Some("demo") => Ok(Command::Run { config, demo: true }),
        _ if url.is_some() => Err("--url belongs to 'gogate healthcheck'".into()),
        _ => Ok(Command::Run {
            config,
            demo: false,
        }),
    }
}

/// Runs the command line; returns the process exit code.
pub fn run(args: &[String]) -> i32 {
    let cmd = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gogate: {e}\n{USAGE}");
            return 2;
        }
    };
    match cmd {
        Command::Help => {
            println!("{USAGE}");
            0
        }
        Command::Version => {
            println!("gogate {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::Healthcheck { url } => healthcheck(&url),
        Command::Validate { config } => {
            let Some(path) = config.or_else(env_config) else {
                eprintln!("gogate: validate needs -config FILE\n{USAGE}");
                return 2;
            };
            // The files a configuration names (TLS certificates and keys) are checked too.
            let checked = load_file(&path).and_then(|c| match c.server.tls.enabled {
                true => gogate_config::tls::load(&c.server.tls, Some(&path)).map(|_| c),
                false => Ok(c),
            });
            match checked {
                Ok(_) => {
                    println!("configuration OK");
                    0
                }
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            }
        }
        Command::Explain { config, request } => explain(config.or_else(env_config), &request),
        Command::Run { config, demo } => {
            let path = config.or_else(env_config);
            let cfg = match &path {
                Some(p) => match load_file(p) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{e}");
                        return 1;
                    }
                },
                None => default_config(),
            };
            serve(cfg, path, demo)
        }
    }
}

/// `gogate explain`: prints the explanation as JSON (exit 0 whatever the request's fate), or
/// the configuration's errors (1), or a usage error (2).
fn explain(config: Option<PathBuf>, request: &[(String, String)]) -> i32 {
    let Some(path) = config else {
        eprintln!("gogate: explain needs -config FILE\n{USAGE}");
        return 2;
    };
    let req = match crate::explain::ExplainRequest::from_pairs(request.iter().map(|(k, v)| (k, v)))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gogate: explain: {e}\n{USAGE}");
            return 2;
        }
    };
    match crate::explain::offline::explain_file(&path, &req) {
        Ok(answer) => match serde_json::to_string_pretty(&answer) {
            Ok(text) => {
                println!("{text}");
                0
            }
            Err(e) => {
                eprintln!("gogate: explain: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn env_config() -> Option<PathBuf> {
    std::env::var_os("GOGATE_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn serve(cfg: Config, path: Option<PathBuf>, demo: bool) -> i32 {
    let mut logging = build_logger(&cfg.logging);
    let log = logging.logger.clone();
    let level = logging.level.clone();
    let code = actix_rt::System::new().block_on(async move {
        let mut demo_servers = Vec::new();
        if demo {
            for (name, port) in [("demo-1", 9001), ("demo-2", 9002)] {
                match crate::demo::start_backend(name, SocketAddr::from(([127, 0, 0, 1], port))) {
                    Ok((h, _)) => demo_servers.push(h),
                    Err(e) => {
                        eprintln!(
                            "gogate: cannot start demo backend {name} on 127.0.0.1:{port}: {e}"
                        );
                        return 1;
                    }
                }
            }
        }
        let opts = GatewayOptions {
            config: cfg,
            file: path,
            log: log.clone(),
            workers: None,
            env_admin_token: std::env::var("GOGATE_ADMIN_TOKEN").ok(),
            resolver: None,
        };
        let gw = match Gateway::start(opts).await {
            Ok(gw) => gw,
            Err(e) => {
                eprintln!("gogate: {e}");
                return 1;
            }
        };
        crate::reload::on_sighup(gw.reload_handle(), level, log.clone());
        if demo {
            eprintln!(
                "{}",
                crate::demo::banner(gw.http_addr, gw.tcp_addr, gw.admin_addr, gw.metrics_addr)
            );
        }
        wait_for_signal().await;
        // A second signal during the drain exits at once.
        actix_rt::spawn(async {
            wait_for_signal().await;
            eprintln!("gogate: second signal, exiting immediately");
            std::process::exit(1);
        });
        gw.shutdown().await;
        for h in demo_servers {
            h.stop(false).await;
        }
        0
    });
    // Flush buffered log lines before exiting.
    drop(logging.logger);
    logging.guard.take();
    code
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `gogate healthcheck`: 0 when `url` answers 200 within 3 s, else 1. Plain std networking, so
/// it works in images without curl.
pub fn healthcheck(url: &str) -> i32 {
    match probe(url) {
        Ok(200) => 0,
        Ok(code) => {
            eprintln!("gogate healthcheck: {url} answered {code}");
            1
        }
        Err(e) => {
            eprintln!("gogate healthcheck: {url}: {e}");
            1
        }
    }
}

fn probe(url: &str) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {authority}"))?;
    let timeout = Duration::from_secs(3);
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: gogate-healthcheck\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "not an HTTP response".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn config_flag_spellings() {
        let want = Ok(Command::Run {
            config: Some("x.yaml".into()),
            demo: false,
        });
        assert_eq!(p(&["-config", "x.yaml"]), want);
        assert_eq!(p(&["--config", "x.yaml"]), want);
        assert_eq!(p(&["-c", "x.yaml"]), want);
        assert_eq!(p(&["--config=x.yaml"]), want);
        assert_eq!(
            p(&[]),
            Ok(Command::Run {
                config: None,
                demo: false
            })
        );
    }

    #[test]
    fn subcommands() {
        assert_eq!(
            p(&["demo"]),
            Ok(Command::Run {
                config: None,
                demo: true
            })
        );
        assert_eq!(
            p(&["validate", "-config", "a"]),
            Ok(Command::Validate {
                config: Some("a".into())
            })
        );
        assert_eq!(p(&["version"]), Ok(Command::Version));
        assert_eq!(p(&["--version"]), Ok(Command::Version));
        assert_eq!(
            p(&["healthcheck", "--url", "http://x/h"]),
            Ok(Command::Healthcheck {
                url: "http://x/h".into()
            })
        );
    }

    #[test]
    fn explain_takes_the_request_flags_in_order() {
        assert_eq!(
            p(&[
                "explain",
                "-config",
                "a.yaml",
                "--method",
                "POST",
                "--path",
                "/x",
                "--header",
                "A:1",
                "--header=B:2"
            ]),
            Ok(Command::Explain {
                config: Some("a.yaml".into()),
                request: vec![
                    ("method".into(), "POST".into()),
                    ("path".into(), "/x".into()),
                    ("header".into(), "A:1".into()),
                    ("header".into(), "B:2".into()),
                ],
            })
        );
        assert!(
            p(&["--path", "/x"]).is_err(),
            "request flags belong to explain"
        );
    }

    #[test]
    fn usage_errors() {
        assert!(p(&["-config"]).is_err());
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["--url", "x"]).is_err());
    }
}
