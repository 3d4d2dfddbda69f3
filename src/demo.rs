//! `gogate demo`: two built-in HTTP echo backends (`demo-1` on 127.0.0.1:9001, `demo-2` on
//! :9002) so a new user sees the gateway balance traffic with no other program. Each answers
//! every path with JSON describing the request it received.

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Map, Value};
use std::net::SocketAddr;

async fn echo(req: HttpRequest, name: web::Data<String>) -> HttpResponse {
    let mut headers = Map::new();
    for (k, v) in req.headers() {
        headers.insert(
            k.as_str().to_string(),
            Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        );
    }
    HttpResponse::Ok()
        .insert_header(("X-Demo-Backend", name.as_str()))
        .json(json!({
            "backend": name.as_str(),
            "method": req.method().as_str(),
            "path": req.path(),
            "query": req.query_string(),
            "headers": headers,
        }))
}

/// Starts one echo backend named `name` on `addr` (inside an actix system).
pub fn start_backend(name: &str, addr: SocketAddr) -> std::io::Result<(ServerHandle, SocketAddr)> {
    let name = name.to_string();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(name.clone()))
            .default_service(web::to(echo))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok((handle, bound))
}

/// What the demo prints once it runs.
pub fn banner(
    http: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
) -> String {
    let port = |a: Option<SocketAddr>, d: u16| a.map(|a| a.port()).unwrap_or(d);
    format!(
        "\ngogate demo is running: two echo backends (demo-1 on 127.0.0.1:9001, demo-2 on 127.0.0.1:9002)\n\
         behind the gateway. Try:\n\n\
         \x20 curl localhost:{h}/hello           # L7: alternates demo-1, demo-2\n\
         \x20 curl localhost:{t}/                # L4 (TCP) to the same backends\n\
         \x20 curl localhost:{a}/backends        # admin API: backends and their state\n\
         \x20 curl localhost:{a}/stats           # admin API: counters and latency\n\
         \x20 curl -X POST localhost:{a}/backends/127.0.0.1:9001/drain   # take demo-1 out of rotation\n\
         \x20 curl localhost:{m}/metrics         # Prometheus metrics\n\
         \x20 curl 'localhost:{a}/explain?path=/hello'   # where a request would go, and why\n\n\
         Operator console: http://localhost:{a}/ui\n\n\
         Press Ctrl-C to stop.\n",
        h = port(http, 8081),
        t = port(tcp, 8080),
        a = port(admin, 9090),
        m = port(metrics, 9091),
    )
}
