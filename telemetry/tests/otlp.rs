//! Spans reach an OTLP collector: a tiny in-process collector (the OTLP `TraceService` over
//! tonic) receives what `r1_telemetry` exports once `enable_otlp` names it, including the
//! coordinator's `rpc` spans with their method and run and a worker's `score_group` span with
//! its run and group; spans begun before export was enabled are not sent.
//!
//! One test: the subscriber is global to the test binary.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use r1_coordinator::lease::LeaseTtl;
use r1_coordinator::runs::Coordinator;
use r1_coordinator::service::{Auth, Runs, serve};
use r1_coordinator::store::SystemClock;
use r1_proto::client::{self, ClientConfig};
use r1_proto::v1 as pb;
use r1_telemetry::{TelemetryConfig, TelemetryError};

#[derive(Clone, Default)]
struct Collector {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.requests.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// One exported span: its name, its attributes as text, and its resource's attributes.
#[derive(Debug)]
struct Exported {
    name: String,
    attributes: HashMap<String, String>,
    resource: HashMap<String, String>,
}

fn text(kv: &[KeyValue]) -> HashMap<String, String> {
    kv.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn spans(collector: &Collector) -> Vec<Exported> {
    let mut all = vec![];
    for request in collector.requests.lock().unwrap().iter() {
        for rs in &request.resource_spans {
            let resource = rs.resource.as_ref().map(|r| text(&r.attributes)).unwrap_or_default();
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    all.push(Exported {
                        name: span.name.clone(),
                        attributes: text(&span.attributes),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_with_names_and_attributes() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    // Logs only, as `r1ctl` starts when no endpoint is in the environment.
    let guard = r1_telemetry::init(&TelemetryConfig::new("r1-test")).unwrap();
    assert!(matches!(r1_telemetry::init(&TelemetryConfig::new("again")), Err(TelemetryError::AlreadyInitialized)));
    tracing::info_span!("before_export", run = 1u64).in_scope(|| tracing::info!("not exported"));

    // A service's config names the collector.
    assert!(matches!(r1_telemetry::enable_otlp("collector:4317"), Err(TelemetryError::Endpoint { .. })));
    assert!(r1_telemetry::enable_otlp(&endpoint).unwrap());
    assert!(!r1_telemetry::enable_otlp(&endpoint).unwrap(), "the same endpoint again changes nothing");
    let other = r1_telemetry::enable_otlp("http://127.0.0.1:1").unwrap_err();
    assert!(other.to_string().contains("configure one collector"), "{other}");

    // A coordinator serves a Submit and a Get; a reward worker scores a group.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": \"2\"}\n").unwrap();
    let core = Coordinator::open(&dir.path().join("r1.db"), Arc::new(SystemClock), LeaseTtl::default()).unwrap();
    let coordinator = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = ClientConfig::new(format!("http://{}", coordinator.local_addr().unwrap()));
    tokio::spawn(serve(
        coordinator,
        Runs::new(Arc::new(core), Duration::from_millis(20)),
        Auth::open(),
        std::future::pending(),
    ));
    let mut runs = client::run_client(client::connect(&cfg).await.unwrap(), cfg.max_message_bytes);
    let spec = format!(
        "name = 'otel'\nbase_model = 'm'\n[dataset]\npath = '{}'\nfields = {{prompt = 'q', answer = 'a'}}\n[[rewards]]\nname = 'acc'\nverifier = 'math'\nweight = 1.0\n[algorithm]\nkind = 'grpo'\n[schedule]\ntotal_steps = 5",
        data.display()
    );
    let run = runs
        .submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec)) })
        .await
        .unwrap()
        .into_inner()
        .id;
    runs.get(pb::GetRunRequest { id: run }).await.unwrap();
    tracing::info_span!("score_group", run, group = 7u64, lease = 3u64).in_scope(|| {
        tracing::debug_span!("below_the_export_filter").in_scope(|| {});
    });

    // Dropping the guard flushes what is still buffered.
    tokio::task::spawn_blocking(move || drop(guard)).await.unwrap();
    let spans = spans(&collector);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let find =
        |name: &str| spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no span {name} in {names:?}"));

    // (span name, attributes it must carry)
    let run = run.to_string();
    let cases: [(&str, Vec<(&str, &str)>); 3] = [
        (
            "r1.v1.RunService/Submit",
            vec![("rpc.system", "grpc"), ("rpc.service", "r1.v1.RunService"), ("rpc.method", "Submit"), ("run", &run)],
        ),
        ("r1.v1.RunService/Get", vec![("rpc.method", "Get"), ("path", "/r1.v1.RunService/Get"), ("run", &run)]),
        ("score_group", vec![("run", &run), ("group", "7"), ("lease", "3")]),
    ];
    for (name, attributes) in cases {
        let span = find(name);
        for (key, value) in attributes {
            assert_eq!(
                span.attributes.get(key).map(String::as_str),
                Some(value),
                "{name}.{key} in {:?}",
                span.attributes
            );
        }
        assert_eq!(span.resource.get("service.name").map(String::as_str), Some("r1-test"), "{name}");
    }
    for absent in ["before_export", "below_the_export_filter"] {
        assert!(!names.contains(&absent), "{absent} was exported: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("TraceService")), "the export's own calls are not exported: {names:?}");
}
