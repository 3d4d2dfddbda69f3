//! Reloads that say what changed (DESIGN B11): `POST /reload` returns the diff, the log line
//! carries it, `GET /reloads` keeps the last 20 with time, trigger, result, error and diff —
//! with clients sending requests all along, and whichever of the file watcher and the API
//! applies a change first.
mod common;
use common::config_file::*;
use common::*;

use serde_json::Value;

fn yaml(a: &str, b: &str, weight_b: u32, extra_route: &str, level: &str) -> String {
    format!(
        "server:\n  backends: [{{addr: \"{a}\"}}, {{addr: \"{b}\", weight: {weight_b}}}]\n  health: {{enabled: false}}\n\
         upstreams:\n  api:\n    backends: [{{addr: \"{a}\"}}]\n\
         routes:\n  - name: api\n    match: {{pathPrefix: /api}}\n    upstreams: [{{name: api}}]\n{extra_route}\
         logging: {{level: {level}}}\n"
    )
}

/// The record of the reload that produced `generation` (the API's or the watcher's).
async fn record_of(gw: &TestGateway, generation: u64) -> Value {
    let list = gw.admin_get("/reloads").await.json();
    list.as_array()
        .expect("a list")
        .iter()
        .rev() // oldest first: the first record reaching the generation made the change
        .find(|r| r["generation"] == generation && r["result"] == "success")
        .cloned()
        .unwrap_or_else(|| panic!("no record of generation {generation}: {list:#}"))
}

#[actix_rt::test]
async fn a_reload_reports_its_diff_in_the_answer_the_log_and_the_history() {
    let a = Upstream::new("a").start().await;
    let b = Upstream::new("b").start().await;
    let dir = TempDir::new();
    let file = dir.path("gogate.yaml");
    write_config(&file, &yaml(&a.addr_str(), &b.addr_str(), 1, "", "info"));
    let gw = gateway_from_file(&file).await;

    // Keep-alive clients send requests through every reload; none may fail.
    let stop = std::rc::Rc::new(std::cell::Cell::new(false));
    let load = {
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (url, stop) = (gw.url("/api/x"), stop.clone());
            tasks.push(actix_rt::spawn(async move {
                let client = awc::Client::default();
                let mut n = 0;
                while !stop.get() && n < 5000 {
                    let r = fetch(client.get(&url)).await;
                    assert_eq!(r.status, 200, "{r:?}");
                    n += 1;
                }
                n
            }));
        }
        tasks
    };

    let extra = "  - name: web\n    match: {pathPrefix: /web}\n    upstreams: [{name: default}]\n";
    write_config(
        &file,
        &yaml(&a.addr_str(), &b.addr_str(), 3, extra, "debug"),
    );
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{r:?}");
    let answer = r.json();
    let generation = answer["generation"].as_u64().expect("generation");
    assert_eq!(generation, 2, "{answer}");
    let rec = record_of(&gw, generation).await;
    let diff = &rec["diff"];
    assert_eq!(
        diff["routes"]["added"],
        serde_json::json!(["web"]),
        "{rec:#}"
    );
    assert_eq!(diff["routes"]["removed"], serde_json::json!([]));
    assert_eq!(
        diff["backends"]["weights"][0]["addr"],
        b.addr_str().as_str()
    );
    assert_eq!(diff["backends"]["weights"][0]["from"], 1);
    assert_eq!(diff["backends"]["weights"][0]["to"], 3);
    assert_eq!(diff["settings"], serde_json::json!(["logging.level"]));
    assert!(
        rec["trigger"] == "api" || rec["trigger"] == "watch",
        "{rec:#}"
    );
    assert!(rec["time"].is_string() && rec["error"].is_null(), "{rec:#}");
    // The API's answer carries the same diff, unless the watcher applied the file first (then
    // the API's reload found nothing new and says so).
    if answer["changed"] == true {
        assert_eq!(&answer["diff"], diff, "{answer:#}");
    } else {
        assert_eq!(
            answer["diff"]["routes"]["added"],
            serde_json::json!([]),
            "{answer:#}"
        );
    }
    // The log line of that reload carries the diff too.
    let lines = gw.logs.with_msg("configuration reloaded");
    let line = lines
        .iter()
        .find(|l| l["generation"] == generation && l["changed"] == true)
        .unwrap_or_else(|| panic!("no log line for generation {generation}: {lines:?}"));
    let logged: Value =
        serde_json::from_str(line["diff"].as_str().expect("diff field")).expect("JSON");
    assert_eq!(&logged, diff);
    assert!(
        line["summary"]
            .as_str()
            .is_some_and(|s| s.contains("routes +web")),
        "{line}"
    );

    // A bad file: 400, the history records the failure with its error and no diff.
    write_raw(&file, "server:\n  backends: [{addr: nope}]\n");
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 400, "{r:?}");
    let list = gw.admin_get("/reloads").await.json();
    let newest = &list[0];
    assert_eq!(newest["result"], "failure", "{list:#}");
    assert!(
        newest["error"].as_str().is_some_and(|e| e.contains("nope")),
        "{newest}"
    );
    assert!(newest["diff"].is_null());
    assert_eq!(
        newest["generation"], generation,
        "the old configuration serves"
    );
    let cfg = gw.admin_get("/config").await.json();
    assert_eq!(cfg["last_reload"]["result"], "failure");
    assert!(cfg["last_reload"]["trigger"].is_string());

    stop.set(true);
    for t in load {
        assert!(t.await.expect("client task") > 0);
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn the_watcher_s_reload_is_recorded_with_its_trigger() {
    let a = Upstream::new("a").start().await;
    let b = Upstream::new("b").start().await;
    let dir = TempDir::new();
    let file = dir.path("gogate.yaml");
    write_config(&file, &yaml(&a.addr_str(), &b.addr_str(), 1, "", "info"));
    let gw = gateway_from_file(&file).await;
    // Other files written next to the config are not reloads.
    for i in 0..5 {
        std::fs::write(dir.path(&format!("other-{i}.log")), "noise").expect("write");
    }
    write_config(&file, &yaml(&b.addr_str(), &a.addr_str(), 1, "", "info"));
    eventually("the watcher applies the edit", || async {
        let list = gw.admin_get("/reloads").await.json();
        list.as_array().is_some_and(|l| {
            l.iter()
                .any(|r| r["trigger"] == "watch" && r["generation"] == 2)
        })
    })
    .await;
    let rec = record_of(&gw, 2).await;
    assert_eq!(rec["trigger"], "watch");
    // The same two addresses, swapped: a's weight is unchanged, api's backend moved from a to b.
    let added: Vec<&str> = rec["diff"]["backends"]["added"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|b| b["upstream"].as_str())
        .collect();
    assert_eq!(added, ["api"], "{rec:#}");
    let list = gw.admin_get("/reloads").await.json();
    assert!(
        list.as_array()
            .is_some_and(|l| l.iter().all(|r| r["result"] == "success")),
        "the noise files caused no failed reload: {list:#}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn the_history_keeps_the_last_twenty_newest_first() {
    let a = Upstream::new("a").start().await;
    let b = Upstream::new("b").start().await;
    let dir = TempDir::new();
    let file = dir.path("gogate.yaml");
    write_config(&file, &yaml(&a.addr_str(), &b.addr_str(), 1, "", "info"));
    let gw = gateway_from_file(&file).await;
    for w in 2..=26 {
        write_config(&file, &yaml(&a.addr_str(), &b.addr_str(), w, "", "info"));
        assert_eq!(gw.admin_send("POST", "/reload").await.status, 200);
    }
    let list = gw.admin_get("/reloads").await.json();
    let list = list.as_array().expect("list");
    assert_eq!(list.len(), 20, "{list:#?}");
    let gens: Vec<u64> = list
        .iter()
        .filter_map(|r| r["generation"].as_u64())
        .collect();
    assert!(
        gens.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {gens:?}"
    );
    assert_eq!(gens[0], 26);
    gw.stop().await;
}
