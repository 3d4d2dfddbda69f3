//! The upstream response-head parser and its framing decision: any bytes give a head, "need
//! more", or an error, never a panic; and what it decides is consistent: a bodyless answer
//! (HEAD, 1xx, 204, 304) has no body framing, a 204 forwards no Content-Length, hop-by-hop
//! headers are never forwarded, and the head is re-parsed identically when more bytes follow.
#![no_main]
use actix_web::http::Method;
use gogate::fuzzing::response_head;
use libfuzzer_sys::fuzz_target;

const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
];

fuzz_target!(|input: (bool, &[u8])| {
    let (head_request, bytes) = input;
    let method = if head_request { Method::HEAD } else { Method::GET };
    let Ok(Some(parsed)) = response_head(&method, bytes) else {
        return;
    };
    assert!(parsed.len <= bytes.len());
    let bodyless = head_request
        || (100..200).contains(&parsed.status)
        || parsed.status == 204
        || parsed.status == 304;
    if bodyless {
        assert_eq!(parsed.framing, "none", "{parsed:?}");
    }
    if parsed.status == 204 {
        assert!(!parsed.headers.iter().any(|h| h == "content-length"), "{parsed:?}");
    }
    for h in &parsed.headers {
        assert!(!HOP.contains(&h.as_str()), "{h} forwarded: {parsed:?}");
    }
    // Bytes after the head (a body) do not change how the head parses.
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(b"trailing body bytes");
    let again = response_head(&method, &longer).expect("still parses");
    assert_eq!(again, Some(parsed));
});
