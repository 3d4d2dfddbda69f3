//! Smoke: the kit itself works end to end.
mod common;
use common::*;

#[actix_rt::test]
async fn proxies_to_the_default_upstream() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let r = gw.get("/x").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["backend"], "a");
    gw.stop().await;
}
