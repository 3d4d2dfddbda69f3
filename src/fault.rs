//! Test-only fault hooks (feature `fault-injection`, never in a shipped build): the proof that a
//! panic while serving costs one request, not the worker or the process. A request to
//! [`PANIC_PATH`] panics in the handler; one to [`PANIC_BODY_PATH`] is proxied and its response
//! body panics on its first poll.

/// A request to this path panics in the proxy handler.
pub const PANIC_PATH: &str = "/__gogate_fault/panic";
/// A request to this path panics while its response body streams.
pub const PANIC_BODY_PATH: &str = "/__gogate_fault/panic-body";

/// Called at the start of every proxied request.
pub fn on_request(path: &str) {
    if path == PANIC_PATH {
        panic!("injected fault: panic in the request handler");
    }
}

/// Whether this request's response body should panic.
pub fn body_panics(path: &str) -> bool {
    path == PANIC_BODY_PATH
}
