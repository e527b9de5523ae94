//! The coordinator service config (defaults < file < environment, unknown keys refused) and
//! `config::run`: serve, stop, serve again on the same data folder and find the run going.

use std::path::Path;
use std::time::Duration;

use r1_coordinator::config::{CoordinatorConfig, run};
use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
fn layers_and_refusals() {
    // (file, variables, Ok((listen, generate_ms)) or Err(text in the error))
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Result<(&'a str, i64), &'a str>);
    let cases: &[Case] = &[
        ("", &[], Ok(("127.0.0.1:7070", 120_000))),
        ("listen = '0.0.0.0:1'\n[leases]\ngenerate_ms = 5", &[], Ok(("0.0.0.0:1", 5))),
        ("listen = '0.0.0.0:1'", &[("R1_COORDINATOR_LISTEN", "127.0.0.1:2")], Ok(("127.0.0.1:2", 120_000))),
        ("", &[("R1_COORDINATOR_LEASES__GENERATE_MS", "7")], Ok(("127.0.0.1:7070", 7))),
        ("", &[("R1_COORDINATOR", "http://x"), ("R1_LOG", "debug")], Ok(("127.0.0.1:7070", 120_000))),
        ("lisen = 'x'", &[], Err("lisen")),
        ("[leases]\nscore = 1", &[], Err("score")),
        ("[leases]\ntrain_ms = 0", &[], Err("`leases.train_ms` is 0")),
        ("watch_interval_ms = 0", &[], Err("`watch_interval_ms` is 0")),
        ("token = ' '", &[], Err("`token` is empty")),
        ("worker_gone_after_ms = 1", &[], Ok(("127.0.0.1:7070", 120_000))),
        ("worker_gone_after_ms = 0", &[], Err("`worker_gone_after_ms` is 0")),
        // The port is checked first, before any complaint about the token.
        ("listen = '10.0.0.1:99999'", &[], Err("`listen` is `10.0.0.1:99999`: port 99999 is out of range")),
        ("listen = '10.0.0.1:65535'", &[], Ok(("10.0.0.1:65535", 120_000))),
        ("listen = '10.0.0.1:65536'", &[], Err("port 65536 is out of range")),
        ("listen = '10.0.0.1'", &[], Err("it has no port")),
        ("listen = '10.0.0.1:http'", &[], Err("port `http` is not a number")),
        ("read_token = ''\npublic_read = false", &[], Err("`read_token` is empty")),
        ("read_token = 'r'", &[], Err("`read_token` is set but `public_read` is true")),
        ("public_read = false", &[], Err("`public_read` is false but there is no `token`")),
        ("public_read = false\nread_token = 'r'", &[], Ok(("127.0.0.1:7070", 120_000))),
        ("public_read = false\ntoken = 't'", &[], Ok(("127.0.0.1:7070", 120_000))),
    ];
    for (file, vars, expected) in cases {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", file)?;
            for (k, v) in *vars {
                jail.set_env(k, v);
            }
            let got = CoordinatorConfig::load(Some(Path::new("c.toml")));
            match (got, expected) {
                (Ok(c), Ok((listen, gen_ms))) => {
                    assert_eq!((c.listen.as_str(), c.leases.generate_ms), (*listen, *gen_ms), "{file}")
                }
                (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{file}: {e}"),
                (got, want) => panic!("{file} {vars:?}: expected {want:?}, got {got:?}"),
            }
            Ok(())
        });
    }
    let err = CoordinatorConfig::load(Some(Path::new("/nonexistent/c.toml"))).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/c.toml"), "{err}");
}

/// Serves `config` until the returned sender fires; returns the address it listens on.
async fn start(
    mut config: CoordinatorConfig,
) -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    // Take a free port, then hand it to the server.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.listen = probe.local_addr().unwrap().to_string();
    drop(probe);
    let addr = config.listen.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        run(config, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap()
    });
    (addr, stop, server)
}

async fn connect(addr: &str) -> RunServiceClient<tonic::transport::Channel> {
    for _ in 0..100 {
        if let Ok(c) = RunServiceClient::connect(format!("http://{addr}")).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the coordinator at {addr} did not come up");
}

#[tokio::test]
async fn a_served_run_survives_a_restart_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"prompt\": \"1+1\"}\n").unwrap();
    let config = CoordinatorConfig { data_dir: dir.path().join("state"), ..CoordinatorConfig::default() };
    let spec = format!(
        "name = 'keep'\nbase_model = 'm'\n[dataset]\npath = '{}'\n[[rewards]]\nname = 'f'\nverifier = 'format'\nweight = 1.0\n[algorithm]\nkind = 'grpo'\n[schedule]\ntotal_steps = 3",
        data.display()
    );

    let (addr, stop, server) = start(config.clone()).await;
    let mut client = connect(&addr).await;
    let submitted = client
        .submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec)) })
        .await
        .unwrap()
        .into_inner();
    stop.send(()).unwrap();
    server.await.unwrap();
    assert!(config.db_path().exists());

    let (addr, stop, server) = start(config).await;
    let mut client = connect(&addr).await;
    let again = client.get(pb::GetRunRequest { id: submitted.id }).await.unwrap().into_inner();
    assert_eq!((again.name.as_str(), again.state), ("keep", pb::RunState::Running as i32));
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_configured_token_is_required_on_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let config = CoordinatorConfig {
        data_dir: dir.path().join("state"),
        token: Some("s3cret".into()),
        ..CoordinatorConfig::default()
    };
    let (addr, stop, server) = start(config).await;
    let channel = loop {
        match tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    // (authorization header sent, expected: Ok or Err(text))
    let cases: &[(Option<&str>, Result<(), &str>)] = &[
        (None, Err("requires a bearer token")),
        (Some("Bearer s3cret"), Ok(())),
        (Some("Bearer s3cre"), Err("token is wrong")),
        (Some("Bearer s3cret "), Err("token is wrong")),
        (Some("Basic s3cret"), Err("requires a bearer token")),
    ];
    for (header, expected) in cases {
        let value = header.map(|h| h.parse::<tonic::metadata::MetadataValue<_>>().unwrap());
        let mut client = RunServiceClient::with_interceptor(channel.clone(), move |mut req: tonic::Request<()>| {
            if let Some(h) = &value {
                req.metadata_mut().insert("authorization", h.clone());
            }
            Ok(req)
        });
        match (client.list(pb::ListRunsRequest {}).await, expected) {
            (Ok(_), Ok(())) => {}
            (Err(status), Err(want)) => {
                assert_eq!(status.code(), tonic::Code::Unauthenticated);
                assert!(status.message().contains(want), "{}", status.message());
            }
            (got, want) => panic!("{header:?}: expected {want:?}, got {got:?}"),
        }
    }
    stop.send(()).unwrap();
    server.await.unwrap();
}

/// `GET path` over HTTP/1.1; returns the status line and the body.
async fn http_get(addr: &str, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
fn dashboard_settings_have_defaults_and_layers() {
    // (file, variables, (samples_per_step, worker_gone_after_ms))
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], (u32, i64));
    let cases: &[Case] = &[
        ("", &[], (2, 180_000)),
        ("samples_per_step = 0\nworker_gone_after_ms = 5000", &[], (0, 5_000)),
        ("samples_per_step = 8", &[("R1_COORDINATOR_SAMPLES_PER_STEP", "3")], (3, 180_000)),
    ];
    for (file, vars, want) in cases {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", file)?;
            for (k, v) in *vars {
                jail.set_env(k, v);
            }
            let c = CoordinatorConfig::load(Some(Path::new("c.toml"))).unwrap();
            assert_eq!((c.samples_per_step, c.worker_gone_after_ms), *want, "{file}");
            Ok(())
        });
    }
}

#[tokio::test]
async fn metrics_page_and_the_dashboard_api_show_each_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"prompt\": \"1+1\"}\n{\"prompt\": \"2+2\"}\n").unwrap();
    let config = CoordinatorConfig { data_dir: dir.path().join("state"), ..CoordinatorConfig::default() };
    let (addr, stop, server) = start(config).await;
    let mut client = connect(&addr).await;
    let spec = format!(
        "name = 'say \"hi\"'\nbase_model = 'm'\n[dataset]\npath = '{}'\n[[rewards]]\nname = 'f'\nverifier = 'format'\nweight = 1.0\n[algorithm]\nkind = 'grpo'\n[schedule]\ntotal_steps = 3",
        data.display()
    );
    client.submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec)) }).await.unwrap();
    let (status, body) = http_get(&addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let run = r#"run="1",name="say \"hi\"""#;
    for line in [
        "# TYPE r1_run_step gauge".to_string(),
        format!("r1_run_info{{{run},state=\"running\"}} 1"),
        format!("r1_run_step{{{run}}} 0"),
        format!("r1_run_queue_depth{{{run},stage=\"generate\"}} 0"),
        format!("r1_run_events_total{{{run},event=\"prompts_drawn\"}} 0"),
        "# TYPE r1_run_events_total counter".to_string(),
    ] {
        assert!(body.lines().any(|l| l == line), "missing `{line}` in\n{body}");
    }
    assert!(!body.contains("r1_run_eval_accuracy{"), "no evaluation has finished");
    let (status, page) = http_get(&addr, "/").await;
    assert!(status.contains("200"), "{status}");
    assert!(page.contains("/assets/app.js"), "the dashboard's page: {page}");
    let (status, body) = http_get(&addr, "/api/runs").await;
    assert!(status.contains("200"), "{status}");
    let runs: serde_json::Value = serde_json::from_str(&body).unwrap();
    let r = &runs["runs"][0];
    assert_eq!(
        (r["name"].as_str(), r["state"].as_str(), r["step"].as_u64(), r["total_steps"].as_u64()),
        (Some("say \"hi\""), Some("running"), Some(0), Some(3)),
        "{body}"
    );
    stop.send(()).unwrap();
    server.await.unwrap();
}

/// `GET path` with an `authorization` header; returns the status line.
async fn http_get_with(addr: &str, path: &str, authorization: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.lines().next().unwrap().to_string()
}

/// `public_read` (default true: Prometheus scrapers carry no token) and `read_token`: with
/// `public_read = false` every HTTP path with data (`/metrics`, `/api/...`) needs the call
/// token or the read token; the dashboard's page shell and assets stay public.
#[tokio::test]
async fn the_read_token_is_enforced_on_every_http_path() {
    // (token, public_read, read_token, header sent, expected status of every path)
    type Case<'a> = (Option<&'a str>, bool, Option<&'a str>, Option<&'a str>, &'a str);
    let cases: &[Case] = &[
        (Some("t"), true, None, None, "200"),
        (Some("t"), false, None, None, "401"),
        (Some("t"), false, None, Some("Bearer t"), "200"),
        (Some("t"), false, None, Some("Bearer x"), "401"),
        (Some("t"), false, Some("r"), Some("Bearer r"), "200"),
        (Some("t"), false, Some("r"), Some("Bearer t"), "200"),
        (Some("t"), false, Some("r"), Some("Bearer rr"), "401"),
        (Some("t"), false, Some("r"), Some("Basic r"), "401"),
        (None, false, Some("r"), None, "401"),
        (None, false, Some("r"), Some("Bearer r"), "200"),
    ];
    for (token, public_read, read_token, header, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = CoordinatorConfig {
            data_dir: dir.path().join("state"),
            token: token.map(str::to_string),
            public_read: *public_read,
            read_token: read_token.map(str::to_string),
            ..CoordinatorConfig::default()
        };
        let (addr, stop, server) = start(config).await;
        connect_any(&addr).await;
        for path in ["/", "/assets/app.js", "/metrics", "/api/runs", "/api/workers"] {
            let got = http_get_with(&addr, path, *header).await;
            // The page shell and its assets carry no run data and stay public, so a browser
            // can load them and send the token with its API calls.
            let want = match (*want, path) {
                (_, "/" | "/assets/app.js") => "200",
                (w, _) => w,
            };
            assert!(
                got.contains(want),
                "{token:?} public_read={public_read} read_token={read_token:?} {header:?} {path}: {got}"
            );
        }
        stop.send(()).unwrap();
        server.await.unwrap();
    }
}

/// Waits until something listens at `addr`.
async fn connect_any(addr: &str) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the coordinator at {addr} did not come up");
}

/// One data folder has one coordinator: a second is refused, naming the PID and host that
/// hold the folder, and the folder is free again once the first has stopped.
#[tokio::test]
async fn a_second_coordinator_on_a_data_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = CoordinatorConfig { data_dir: dir.path().join("state"), ..CoordinatorConfig::default() };
    let (addr, stop, server) = start(config.clone()).await;
    connect(&addr).await;
    let second =
        r1_coordinator::config::start(CoordinatorConfig { listen: "127.0.0.1:0".into(), ..config.clone() }).await;
    let err = second.err().expect("a second coordinator is refused").to_string();
    let pid = format!("pid {}", std::process::id());
    for text in
        ["is in use by another coordinator", &pid, "on host", &format!("listening on {addr}"), "coordinator.lock"]
    {
        assert!(err.contains(text), "`{text}` missing from: {err}");
    }
    stop.send(()).unwrap();
    server.await.unwrap();
    let (addr, stop, server) = start(config).await;
    connect(&addr).await;
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
fn limits_and_otlp_endpoint() {
    use r1_coordinator::service::WhenBusy;
    // (file, variables, Ok((max_message_bytes, max_concurrent_requests, when_busy, otlp)) or Err(text))
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Result<(usize, usize, WhenBusy, Option<&'a str>), &'a str>);
    let cases: &[Case] = &[
        ("", &[], Ok((256 << 20, 256, WhenBusy::Wait, None))),
        (
            "[limits]\nmax_message_bytes = 1048576\nmax_concurrent_requests = 8\nwhen_busy = 'reject'",
            &[],
            Ok((1 << 20, 8, WhenBusy::Reject, None)),
        ),
        (
            "[limits]\nmax_concurrent_requests = 8",
            &[
                ("R1_COORDINATOR_LIMITS__MAX_CONCURRENT_REQUESTS", "3"),
                ("R1_COORDINATOR_OTLP_ENDPOINT", "http://otel:4317"),
            ],
            Ok((256 << 20, 3, WhenBusy::Wait, Some("http://otel:4317"))),
        ),
        ("[limits]\nmax_concurrent_requests = 0", &[], Ok((256 << 20, 0, WhenBusy::Wait, None))),
        ("[limits]\nmax_message_bytes = 65535", &[], Err("`limits.max_message_bytes` is 65535")),
        ("[limits]\nwhen_busy = 'drop'", &[], Err("drop")),
        ("[limits]\nmax_requests = 1", &[], Err("max_requests")),
        ("otlp_endpoint = 'otel:4317'", &[], Err("`otlp_endpoint` is `otel:4317`")),
    ];
    for (file, vars, expected) in cases {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", file)?;
            for (k, v) in *vars {
                jail.set_env(k, v);
            }
            let got = CoordinatorConfig::load(Some(Path::new("c.toml")));
            match (got, expected) {
                (Ok(c), Ok((bytes, concurrent, busy, otlp))) => {
                    let l = &c.limits;
                    assert_eq!(
                        (l.max_message_bytes, l.max_concurrent_requests, l.when_busy, c.otlp_endpoint.as_deref()),
                        (*bytes, *concurrent, *busy, *otlp),
                        "{file}"
                    );
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{file}: {e}"),
                (got, _) => panic!("{file} {vars:?}: {got:?}"),
            }
            Ok(())
        });
    }
}
