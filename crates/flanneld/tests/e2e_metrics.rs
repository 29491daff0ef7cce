//! `/metrics` of real flanneld processes (root): a 3-host vxlan cluster in network
//! namespaces with a real etcd. The text parses as Prometheus text; `flannel_peers` is 2 and
//! becomes 3 when a fourth host joins; a peer route deleted by hand is repaired and counted in
//! `flannel_kernel_repairs_total{kind="route"}`; the lease expiry is in the future.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flannel_testkit::privileged::require_root;
use flannel_testkit::topology::{log_tails, wait_until, Flanneld, Host, Lab, HEALTHZ_PORT};

const BIN: &str = env!("CARGO_BIN_EXE_flanneld");
const VXLAN: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#;
const READY: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

/// The scrape of `host`'s `/metrics`, parsed.
fn scrape(host: &Host) -> anyhow::Result<prometheus_parse::Scrape> {
    let (status, body) = host.http_get(HEALTHZ_PORT, "/metrics")?;
    anyhow::ensure!(status == 200, "/metrics answered {status}: {body}");
    Ok(prometheus_parse::Scrape::parse(
        body.lines().map(|l| Ok(l.to_owned())),
    )?)
}

/// The value of the first sample `name` whose labels include `labels` (0 when absent).
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map_or(0.0, |x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn peers(host: &Host) -> f64 {
    scrape(host).map_or(-1.0, |s| {
        value(&s, "flannel_peers", &[("backend", "vxlan")])
    })
}

#[test]
fn metrics_follow_peers_repairs_and_the_lease() {
    if !require_root("metrics_follow_peers_repairs_and_the_lease") {
        return;
    }
    let lab = Lab::new("metrics").expect("lab");
    let etcd = lab.start_etcd().expect("etcd");
    etcd.put_config(VXLAN).expect("config");
    // Dropped in reverse order: the processes before their hosts.
    let mut hosts = Vec::new();
    let mut joined = Vec::new();
    let mut daemons: Vec<Flanneld> = Vec::new();
    for n in 1..=3 {
        let h = lab.add_host(n).expect("host");
        daemons.push(h.start_flanneld(BIN, &[]).expect("flanneld"));
        hosts.push(h);
    }
    for d in &mut daemons {
        d.wait_ready(READY).expect("ready");
    }
    let logs = |d: &[Flanneld]| log_tails(d, 40);
    let h1 = &hosts[0];
    assert!(
        wait_until(SETTLE, POLL, || Ok(peers(h1) == 2.0)),
        "flannel_peers should be 2 on h1 (is {}){}",
        peers(h1),
        logs(&daemons)
    );
    let s = scrape(h1).expect("scrape");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let expiry = value(&s, "flannel_lease_expiry_timestamp_seconds", &[]);
    assert!(expiry > now, "lease expiry {expiry} should be after {now}");
    assert!(value(&s, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(value(&s, "flannel_lease_events_total", &[("type", "added")]) >= 2.0);

    // A fourth host joins.
    let h4 = lab.add_host(4).expect("host 4");
    daemons.push(h4.start_flanneld(BIN, &[]).expect("flanneld 4"));
    joined.push(h4);
    daemons[3].wait_ready(READY).expect("h4 ready");
    assert!(
        wait_until(SETTLE, POLL, || Ok(peers(h1) == 3.0)),
        "flannel_peers should become 3 on h1 (is {}){}",
        peers(h1),
        logs(&daemons)
    );

    // A peer route deleted by hand is put back, and counted as a repair.
    let repairs = |h: &Host| {
        scrape(h).map_or(-1.0, |s| {
            value(&s, "flannel_kernel_repairs_total", &[("kind", "route")])
        })
    };
    let before = repairs(h1);
    let h2_subnet = hosts[1].subnet().expect("h2 subnet").cidr();
    h1.exec(&["ip", "route", "del", &h2_subnet, "dev", "flannel.1"])
        .expect("deleting the route");
    assert!(
        wait_until(SETTLE, POLL, || Ok(repairs(h1) > before)),
        "flannel_kernel_repairs_total{{kind=\"route\"}} should rise above {before} (is {}){}",
        repairs(h1),
        logs(&daemons)
    );
    let routes = h1
        .exec(&["ip", "route", "show", "dev", "flannel.1"])
        .expect("routes");
    assert!(routes.contains(&h2_subnet), "route back: {routes}");
    let s = scrape(h1).expect("scrape");
    assert!(
        value(
            &s,
            "flannel_kernel_ops_total",
            &[("op", "replace_route"), ("result", "ok")]
        ) >= 4.0,
        "three peers' routes and the repair"
    );
}
