//! Header rewriting toward the upstream and back: whatever headers arrive, no hop-by-hop header
//! (nor one that `Connection` names) is forwarded, except `Upgrade` for a WebSocket handshake;
//! the request id is kept only when sane; the head size counts every header.
#![no_main]
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use gogate::proxy::headers::{
    copy_end_to_end, head_size, request_host, request_id, strip_response_hop_by_hop,
};
use libfuzzer_sys::fuzz_target;

const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
];

fuzz_target!(|pairs: Vec<(String, Vec<u8>)>| {
    let mut src = HeaderMap::new();
    for (k, v) in pairs.iter().take(64) {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_bytes(v)) {
            src.append(n, v);
        }
    }
    let listed: Vec<String> = src
        .get_all("connection")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for websocket in [false, true] {
        let mut dst = HeaderMap::new();
        copy_end_to_end(&src, &mut dst, websocket, true);
        for (name, _) in dst.iter() {
            let n = name.as_str();
            if websocket && (n == "upgrade" || n == "connection") {
                continue;
            }
            assert!(!HOP.contains(&n) && n != "upgrade", "hop-by-hop {n} forwarded");
            assert!(!listed.iter().any(|l| l == n), "{n} is named in Connection");
            assert!(n != "host" && n != "x-forwarded-for" && n != "x-request-id");
        }
    }
    let mut resp = src.clone();
    strip_response_hop_by_hop(&mut resp);
    for (name, _) in resp.iter() {
        let n = name.as_str();
        assert!(!HOP.contains(&n) && n != "upgrade", "hop-by-hop {n} in a response");
        assert!(!listed.iter().any(|l| l == n), "{n} is named in Connection");
    }
    let id = request_id(&src);
    assert!(!id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()));
    let size = head_size("GET", 1, &src);
    assert!(size >= src.iter().map(|(k, v)| k.as_str().len() + v.len()).sum::<usize>());
    if let Some(h) = request_host(&src, None) {
        assert!(!h.contains(':') || h.starts_with('['), "port left in host {h:?}");
    }
});
