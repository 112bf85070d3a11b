//! The reload task against a stand-in GeoServer on 127.0.0.1: coalescing, retries, readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::geoserver::StandInGeoServer;
use crate::support::logs;
use crate::support::node::{free_port, wait_until_async};
use gscluster::reload::{self, GeoServer, Readiness, ReloadHandle, ReloadSettings, ReloadStats};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const LIMIT: Duration = Duration::from_secs(10);
/// The credentials the stand-in accepts; anything else gets 401.
const USER: &str = "admin";
const PASSWORD: &str = "geoserver";

/// A stand-in GeoServer for the reload client alone: no data directory behind it.
fn geoserver() -> StandInGeoServer {
    StandInGeoServer::start_without_data_dir(USER, PASSWORD)
}

fn fast() -> ReloadSettings {
    ReloadSettings {
        quiet: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        reference_wait: Duration::from_secs(30),
        recheck: Duration::from_millis(20),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        drain: Duration::ZERO,
        max_share: 100,
    }
}

struct Task {
    handle: ReloadHandle,
    stats: watch::Receiver<ReloadStats>,
    shutdown: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl Task {
    fn start(
        gs: Option<GeoServer>,
        settings: ReloadSettings,
        ready: impl Fn() -> Readiness + Send + 'static,
    ) -> Task {
        logs::capture();
        let (handle, rx) = reload::channel();
        let (stats_tx, stats) = watch::channel(ReloadStats::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = reload::Reloader {
            gs,
            settings,
            ready,
            files: None,
            turn: reload::Turn::unlimited(),
            per_object: None,
            convergence: None,
        };
        let join = tokio::spawn(reload::run(task, rx, stats_tx, shutdown_rx));
        Task {
            handle,
            stats,
            shutdown,
            join,
        }
    }

    fn stats(&self) -> ReloadStats {
        self.stats.borrow().clone()
    }

    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(LIMIT, self.join)
            .await
            .expect("the task ends on shutdown")
            .unwrap();
    }
}

fn always_ready() -> Readiness {
    Readiness::Ready
}

fn client(server_url: &str) -> GeoServer {
    GeoServer::new(server_url, USER, PASSWORD)
}

#[tokio::test]
async fn burst_of_50_notifies_makes_exactly_one_reload() {
    let server = geoserver();
    let settings = ReloadSettings {
        quiet: Duration::from_millis(300),
        ..fast()
    };
    let task = Task::start(Some(client(&server.url())), settings, always_ready);
    for _ in 0..50 {
        task.handle.notify();
    }
    wait_until_async("one successful reload", LIMIT, || {
        task.stats().reloads_ok == 1
    })
    .await;
    let seen = server.reload_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/geoserver/rest/reload");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Basic YWRtaW46Z2Vvc2VydmVy")
    );
    // Negative check: nothing else is owed, so nothing else comes.
    tokio::time::sleep(settings.quiet * 3).await;
    assert_eq!(server.reload_request_count(), 1);
    let stats = task.stats();
    assert_eq!(stats.last_result.as_deref(), Some("ok"));
    assert!(stats.last_at_unix_ms.is_some());
    task.stop().await;
}

#[tokio::test]
async fn notifies_during_a_running_reload_make_exactly_one_more() {
    let server = geoserver();
    server.set_delay(Duration::from_millis(300));
    let task = Task::start(Some(client(&server.url())), fast(), always_ready);
    task.handle.notify();
    wait_until_async("the first reload to start", LIMIT, || {
        server.reload_request_count() == 1
    })
    .await;
    for _ in 0..20 {
        task.handle.notify();
        tokio::task::yield_now().await;
    }
    wait_until_async("two successful reloads", LIMIT, || {
        task.stats().reloads_ok == 2
    })
    .await;
    tokio::time::sleep(fast().quiet * 3).await;
    assert_eq!(server.reload_request_count(), 2);
    task.stop().await;
}

#[tokio::test]
async fn a_reload_failing_with_500_twice_is_retried_then_succeeds() {
    let server = geoserver();
    server.answer_next(&[500, 500]);
    let task = Task::start(Some(client(&server.url())), fast(), always_ready);
    task.handle.notify();
    wait_until_async("a successful reload", LIMIT, || {
        task.stats().reloads_ok == 1
    })
    .await;
    assert_eq!(server.reload_request_count(), 3);
    let stats = task.stats();
    assert_eq!(stats.reloads_failed, 2);
    assert_eq!(stats.consecutive_failures, 0);
    let url = format!("reload of {}/rest/reload", server.url());
    assert!(logs::logged(&[
        &url,
        "failed (attempt 2): HTTP 500: java.lang.RuntimeException"
    ]));
    assert!(logs::logged(&[&url, "succeeded after 2 failed attempt(s)"]));
    task.stop().await;
}

#[tokio::test]
async fn wrong_credentials_are_reported_as_unauthorized_and_retried() {
    let server = geoserver();
    let gs = GeoServer::new(server.url(), USER, "not-the-password");
    let task = Task::start(Some(gs), fast(), always_ready);
    task.handle.notify();
    wait_until_async("two failed reloads", LIMIT, || {
        task.stats().reloads_failed >= 2
    })
    .await;
    let last = task.stats().last_result.unwrap();
    assert!(last.starts_with("HTTP 401"), "{last}");
    assert!(
        last.contains("check [geoserver] user and password"),
        "{last}"
    );
    assert!(!last.contains("not-the-password"));
    assert!(!logs::logged(&["not-the-password"]));
    task.stop().await;
}

#[tokio::test]
async fn geoserver_down_then_up_gets_the_reload() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/geoserver");
    let task = Task::start(Some(client(&url)), fast(), always_ready);
    task.handle.notify();
    wait_until_async("two refused attempts", LIMIT, || {
        task.stats().reloads_failed >= 2
    })
    .await;
    assert_eq!(
        task.stats().last_result.as_deref(),
        Some("connection refused")
    );
    assert!(logs::logged(&[
        &url,
        "failed (attempt 2): connection refused; retrying in"
    ]));
    let server = StandInGeoServer::start_on(port, None, USER, PASSWORD);
    wait_until_async("the reload once GeoServer is up", LIMIT, || {
        task.stats().reloads_ok == 1
    })
    .await;
    assert_eq!(server.reload_request_count(), 1);
    task.stop().await;
}

#[tokio::test]
async fn readiness_wait_holds_the_reload_until_ready() {
    let server = geoserver();
    let resolved = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&resolved);
    let task = Task::start(Some(client(&server.url())), fast(), move || {
        if flag.load(Ordering::SeqCst) {
            Readiness::Ready
        } else {
            Readiness::Wait("layer.xml refers to missing featuretype id FT-held".into())
        }
    });
    task.handle.notify();
    wait_until_async("the hold to be logged", LIMIT, || {
        logs::logged(&["held back", "FT-held"])
    })
    .await;
    // Several rechecks later it is still held.
    tokio::time::sleep(fast().recheck * 5).await;
    assert_eq!(server.reload_request_count(), 0);
    resolved.store(true, Ordering::SeqCst);
    wait_until_async("the reload once references resolve", LIMIT, || {
        task.stats().reloads_ok == 1
    })
    .await;
    assert_eq!(server.reload_request_count(), 1);
    task.stop().await;
}

#[tokio::test]
async fn the_reference_wait_bound_releases_the_reload_with_a_warning() {
    let server = geoserver();
    let settings = ReloadSettings {
        reference_wait: Duration::from_millis(400),
        ..fast()
    };
    let task = Task::start(Some(client(&server.url())), settings, || {
        Readiness::Wait("layer.xml refers to missing featuretype id FT-bound".into())
    });
    let notified = Instant::now();
    task.handle.notify();
    wait_until_async("the reload despite the missing reference", LIMIT, || {
        task.stats().reloads_ok == 1
    })
    .await;
    assert!(notified.elapsed() >= settings.quiet + settings.reference_wait);
    assert!(logs::logged(&[
        "WARN",
        "still do not resolve after 400 ms",
        "FT-bound"
    ]));
    task.stop().await;
}

#[tokio::test]
async fn without_a_geoserver_url_nothing_is_reloaded_and_shutdown_still_works() {
    let task = Task::start(None, fast(), always_ready);
    for _ in 0..5 {
        task.handle.notify(); // must neither block nor panic
    }
    wait_until_async("the start-up notice", LIMIT, || {
        logs::logged(&["no [geoserver] url configured"])
    })
    .await;
    assert_eq!(task.stats(), ReloadStats::default());
    task.stop().await;
}

#[tokio::test]
async fn shutdown_abandons_a_running_reload() {
    let server = geoserver();
    server.set_delay(Duration::from_secs(5));
    // The short client timeout only bounds how long the test runtime waits for the abandoned
    // blocking thread when it is dropped; the task itself must not wait for it.
    let gs = client(&server.url()).with_timeout(Duration::from_secs(2));
    let task = Task::start(Some(gs), fast(), always_ready);
    task.handle.notify();
    wait_until_async("the reload to start", LIMIT, || {
        server.reload_request_count() == 1
    })
    .await;
    let stopping = Instant::now();
    task.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "shutdown waited for GeoServer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_probe_says_when_geoserver_is_not_reachable_and_when_it_answers() {
    let port = free_port();
    let down = GeoServer::new(format!("http://127.0.0.1:{port}/geoserver"), USER, PASSWORD);
    let task = Task::start(Some(down), fast(), || Readiness::Ready);
    wait_until_async("the unreachable warning", LIMIT, || {
        logs::logged(&[&port.to_string(), "not reachable", "reloads wait"])
    })
    .await;
    task.stop().await;
    let server = geoserver();
    let up = GeoServer::new(server.url(), USER, PASSWORD);
    let task = Task::start(Some(up), fast(), || Readiness::Ready);
    wait_until_async("the answers line", LIMIT, || {
        logs::logged(&[&server.url(), "answers"])
    })
    .await;
    task.stop().await;
    assert_eq!(server.reload_request_count(), 0, "a probe is not a reload");
}
