//! Live listener moves on reload (DESIGN B3: "new listeners start, old ones drain"): a changed
//! `server.httpListenAddr` or `server.listenAddr` starts the new listener, then the old one stops
//! accepting while what runs on it finishes; enabling and disabling work the same way; a new
//! address that cannot be bound fails the reload and changes nothing.
mod common;
use common::config_file::*;
use common::*;

use gogate_actors::reload::Reload;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start(dir: &TempDir, text: &str) -> (TestGateway, PathBuf) {
    let path = dir.path("gogate.yaml");
    write_config(&path, text);
    (gateway_from_file(&path).await, path)
}

async fn reload(gw: &TestGateway) -> Resp {
    gw.admin_send("POST", "/reload").await
}

/// Reloads, expecting success with nothing needing a restart.
async fn reload_live(gw: &TestGateway) {
    let r = reload(gw).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["restart_required"],
        serde_json::json!([]),
        "{}",
        r.body
    );
}

async fn get(addr: &str, path: &str) -> Resp {
    fetch(awc::Client::default().get(format!("http://{addr}{path}"))).await
}

async fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_err()
}

/// A TCP backend that echoes every byte back.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("local addr");
    actix_rt::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            actix_rt::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn echo(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.expect("write");
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("echo read");
    assert_eq!(back, msg);
}

#[actix_rt::test]
async fn l7_move_serves_on_the_new_port_and_drains_the_old_one() {
    let slow = Upstream::new("slow")
        .delay(Duration::from_millis(500))
        .start()
        .await;
    let dir = TempDir::new();
    let yaml = backends_yaml(&[&slow.addr_str()], "");
    let (gw, path) = start(&dir, &yaml).await;
    let old = gw.http.expect("http listener");

    // A slow request in flight on the old listener when the reload moves it.
    let in_flight = actix_rt::spawn(async move { get(&old.to_string(), "/slow").await });
    eventually("the slow request reached the upstream", || async {
        slow.hits() == 1
    })
    .await;
    let new = dead_addr();
    write_raw(&path, &with_server(&yaml, &[("httpListenAddr", &new)]));
    reload_live(&gw).await;

    assert_eq!(get(&new, "/").await.status, 200);
    eventually("the old port refuses new connections", || refused(old)).await;
    let r = in_flight.await.expect("request task");
    assert_eq!(r.status, 200, "{}", r.body);
    let info = gw.admin_get("/config").await.json();
    assert_eq!(
        info["config"]["server"]["httpListenAddr"],
        new.as_str(),
        "{info}"
    );
    // The shutdown drains the listener current now, the moved one.
    gw.stop().await;
    let new: SocketAddr = new.parse().expect("socket address");
    // (actix-server drops the listening socket on its accept thread, just after the stop.)
    eventually("the moved listener closes on shutdown", || refused(new)).await;
}

#[actix_rt::test]
async fn l4_move_proxies_on_the_new_port_and_keeps_open_sessions() {
    let backend = echo_backend().await;
    let dir = TempDir::new();
    let yaml = backends_yaml(&[&backend.to_string()], "");
    let (gw, path) = start(&dir, &yaml).await;
    let old = gw.tcp.expect("tcp listener");
    let mut session = TcpStream::connect(old).await.expect("connect old");
    echo(&mut session, b"before").await;

    let new = dead_addr();
    write_raw(&path, &with_server(&yaml, &[("listenAddr", &new)]));
    reload_live(&gw).await;

    let mut fresh = TcpStream::connect(&new).await.expect("connect new");
    echo(&mut fresh, b"new port").await;
    eventually("the old port refuses new connections", || refused(old)).await;
    // The session opened before the move still works until it closes.
    echo(&mut session, b"after").await;
    drop(session);
    drop(fresh);
    gw.stop().await;
}

#[actix_rt::test]
async fn listeners_can_be_enabled_and_disabled() {
    let a = Upstream::new("a").start().await;
    let dir = TempDir::new();
    let yaml = backends_yaml(&[&a.addr_str()], "  httpListenAddr: \"\"\n");
    let (gw, path) = start(&dir, &yaml).await;
    assert!(gw.http.is_none());
    let tcp = gw.tcp.expect("tcp listener");

    // One reload enables L7 and disables L4.
    let http = dead_addr();
    let text = with_server(&yaml, &[("httpListenAddr", &http), ("listenAddr", "")]);
    write_raw(&path, &text);
    reload_live(&gw).await;
    assert_eq!(get(&http, "/").await.status, 200);
    eventually("the disabled L4 listener is closed", || refused(tcp)).await;
    gw.stop().await;
}

#[actix_rt::test]
async fn a_busy_port_fails_the_reload_and_changes_nothing() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let dir = TempDir::new();
    let (gw, path) = start(&dir, &backends_yaml(&[&a.addr_str()], "")).await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind busy port");
    let busy_addr = busy.local_addr().expect("local addr").to_string();
    let text = with_server(
        &backends_yaml(&[&b.addr_str()], ""),
        &[("httpListenAddr", &busy_addr)],
    );
    write_raw(&path, &text);
    let r = reload(&gw).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let err = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("server.httpListenAddr"), "{err}");
    assert!(err.contains(&busy_addr), "{err}");
    // Nothing changed: the old listener serves the old backends.
    let res = gw.get("/").await;
    assert_eq!(res.json()["backend"], "a", "{}", res.body);
    let info = gw.admin_get("/config").await.json();
    assert_eq!(info["generation"], 1, "{info}");
    assert_eq!(info["last_reload"]["result"], "failure", "{info}");
    drop(busy);
    gw.stop().await;
}

#[actix_rt::test]
async fn admin_and_metrics_listeners_move_when_separate() {
    let a = Upstream::new("a").start().await;
    let dir = TempDir::new();
    let yaml = backends_yaml(&[&a.addr_str()], "");
    let path = dir.path("gogate.yaml");
    let first = with_server(&yaml, &[("metrics.listenAddr", &dead_addr())]);
    write_raw(&path, &first);
    let gw = gateway_from_file(&path).await;
    assert_ne!(gw.admin, gw.metrics, "separate listeners");

    let (admin, metrics) = (dead_addr(), dead_addr());
    let moved = with_server(
        &yaml,
        &[
            ("admin.listenAddr", &admin),
            ("metrics.listenAddr", &metrics),
        ],
    );
    write_raw(&path, &moved);
    // Through the config actor: the watcher may move the admin listener before a POST /reload
    // sent to the old one would arrive.
    let handle = gw.gw.as_ref().expect("running").reload_handle();
    let outcome = handle
        .send(Reload { trigger: "test" })
        .await
        .expect("config actor alive")
        .expect("reload succeeds");
    assert!(outcome.restart_required.is_empty(), "{outcome:?}");
    assert_eq!(get(&admin, "/health").await.status, 200);
    assert_eq!(get(&metrics, "/metrics").await.status, 200);
    eventually("the old admin port refuses", || refused(gw.admin)).await;
    eventually("the old metrics port refuses", || refused(gw.metrics)).await;
    gw.stop().await;
    let admin: SocketAddr = admin.parse().expect("socket address");
    assert!(
        refused(admin).await,
        "the moved admin listener closes on shutdown"
    );
}
