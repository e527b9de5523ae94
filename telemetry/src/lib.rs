//! r1-telemetry: the one tracing setup every r1 binary uses.
//!
//! [`init`] installs the global subscriber once, at the top of `main`:
//! - **logs** to stderr (colored only on a terminal), filtered by `R1_LOG` (`R1_LOG=info,r1_coordinator=debug`), else by
//!   [`TelemetryConfig::log_filter`];
//! - **spans over OTLP/gRPC** to a collector (Jaeger, Tempo, the OpenTelemetry Collector) when
//!   an endpoint is known: [`TelemetryConfig::otlp_endpoint`], which [`TelemetryConfig::from_env`]
//!   reads from `OTEL_EXPORTER_OTLP_ENDPOINT`, or later from a service's own config through
//!   [`enable_otlp`] (the coordinator's `otlp_endpoint`). Spans are exported in batches on a
//!   thread and a small runtime of their own, so a binary needs no async `main`, and filtered by
//!   [`TelemetryConfig::otlp_filter`] independently of the logs: `R1_LOG=warn` keeps stderr
//!   quiet while every `info` span still reaches the collector.
//!
//! The [`Guard`] that [`init`] returns flushes the spans still buffered when it is dropped; keep
//! it alive until `main` returns.
//!
//! Not covered: metrics over OTLP (Prometheus `/metrics` pages serve them), logs over OTLP, and
//! trace context propagated between processes (each process's spans are their own trace; a
//! sample is followed across processes by its `run` and `group` attributes).

pub mod prometheus;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing::Subscriber;
use tracing::span;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::registry::{LookupSpan, Registry};
use tracing_subscriber::util::SubscriberInitExt;

/// What [`init`] sets up. Defaults in one place: [`TelemetryConfig::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// `service.name` of the exported spans (`r1ctl`, `r1-coordinator`).
    pub service_name: String,
    /// Log filter when `R1_LOG` is unset, in `EnvFilter` syntax.
    pub log_filter: String,
    /// OTLP/gRPC collector (`http://collector:4317`); `None` exports nothing.
    pub otlp_endpoint: Option<String>,
    /// Which spans are exported, in `Targets` syntax (`info`, `info,r1_reward=debug`). The
    /// transport's own crates (h2, hyper, tonic, tower, opentelemetry) are never exported.
    pub otlp_filter: String,
}

impl TelemetryConfig {
    /// Logs at `warn`, `info` spans exported, no endpoint.
    pub fn new(service_name: impl Into<String>) -> Self {
        TelemetryConfig {
            service_name: service_name.into(),
            log_filter: "warn".into(),
            otlp_endpoint: None,
            otlp_filter: "info".into(),
        }
    }

    /// [`TelemetryConfig::new`] with `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME` and
    /// `R1_OTLP_FILTER` when they are set and not empty.
    pub fn from_env(service_name: impl Into<String>) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut cfg = TelemetryConfig::new(service_name);
        cfg.otlp_endpoint = var("OTEL_EXPORTER_OTLP_ENDPOINT");
        if let Some(name) = var("OTEL_SERVICE_NAME") {
            cfg.service_name = name;
        }
        if let Some(filter) = var("R1_OTLP_FILTER") {
            cfg.otlp_filter = filter;
        }
        cfg
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("R1_LOG is not a valid filter ({0}); use e.g. R1_LOG=info or R1_LOG=warn,r1_coordinator=debug")]
    LogFilter(String),
    #[error("the OTLP filter `{filter}` is not valid ({reason}); use e.g. `info` or `info,r1_reward=debug`")]
    OtlpFilter { filter: String, reason: String },
    #[error("the OTLP endpoint `{endpoint}` is not usable ({reason}); use http://host:4317")]
    Endpoint { endpoint: String, reason: String },
    #[error("a tracing subscriber is already installed; call r1_telemetry::init once, at the top of main")]
    AlreadyInitialized,
    #[error("r1_telemetry::init has not run; call it at the top of main before enable_otlp")]
    NotInitialized,
    #[error("cannot start the span export runtime: {0}")]
    Runtime(std::io::Error),
}

/// Spans exported over OTLP are built by this layer once an endpoint is known.
type Otel = tracing_opentelemetry::OpenTelemetryLayer<Registry, Tracer>;

/// The process-wide state behind [`init`] and [`enable_otlp`].
struct State {
    service_name: String,
    otel: Arc<OnceLock<Otel>>,
    provider: Mutex<Option<SdkTracerProvider>>,
    endpoint: Mutex<Option<String>>,
    runtime: OnceLock<tokio::runtime::Runtime>,
}

static STATE: OnceLock<State> = OnceLock::new();

/// Flushes and stops span export when dropped.
#[must_use = "dropping the guard stops span export; keep it until main returns"]
pub struct Guard {
    _private: (),
}

impl Guard {
    /// Exports every finished span now, waiting for the collector's answer.
    pub fn flush(&self) {
        if let Some(provider) = STATE.get().and_then(|s| s.provider.lock().expect("telemetry lock").clone())
            && let Err(e) = provider.force_flush()
        {
            eprintln!("r1-telemetry: cannot flush spans: {e}");
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = STATE.get().and_then(|s| s.provider.lock().expect("telemetry lock").take())
            && let Err(e) = provider.shutdown()
        {
            eprintln!("r1-telemetry: cannot flush spans at exit: {e}");
        }
    }
}

/// Installs the global subscriber: logs to stderr and, when `cfg.otlp_endpoint` is set, span
/// export. Call once, at the top of `main`.
pub fn init(cfg: &TelemetryConfig) -> Result<Guard, TelemetryError> {
    let log_filter = match std::env::var("R1_LOG") {
        Ok(text) if !text.trim().is_empty() => {
            EnvFilter::try_new(text).map_err(|e| TelemetryError::LogFilter(e.to_string()))?
        }
        _ => EnvFilter::try_new(&cfg.log_filter).map_err(|e| TelemetryError::LogFilter(e.to_string()))?,
    };
    let targets = otlp_targets(&cfg.otlp_filter)?;
    let otel = Arc::new(OnceLock::new());
    let state = State {
        service_name: cfg.service_name.clone(),
        otel: otel.clone(),
        provider: Mutex::new(None),
        endpoint: Mutex::new(None),
        runtime: OnceLock::new(),
    };
    if STATE.set(state).is_err() {
        return Err(TelemetryError::AlreadyInitialized);
    }
    let slot = Slot { otel: otel.clone() }.with_filter(SlotFilter { otel, targets });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(log_filter);
    Registry::default().with(slot).with(logs).try_init().map_err(|_| TelemetryError::AlreadyInitialized)?;
    if let Some(endpoint) = &cfg.otlp_endpoint {
        enable_otlp(endpoint)?;
    }
    Ok(Guard { _private: () })
}

/// Starts exporting spans to `endpoint` (OTLP over gRPC) from now on; spans begun before are
/// not exported. For services whose own config names the collector. Returns false when export
/// already goes to that endpoint; another endpoint than the first is an error.
pub fn enable_otlp(endpoint: &str) -> Result<bool, TelemetryError> {
    let state = STATE.get().ok_or(TelemetryError::NotInitialized)?;
    let mut current = state.endpoint.lock().expect("telemetry lock");
    if let Some(first) = current.as_deref() {
        if first == endpoint {
            return Ok(false);
        }
        return Err(TelemetryError::Endpoint {
            endpoint: endpoint.into(),
            reason: format!("spans already go to {first}; configure one collector"),
        });
    }
    let bad = |reason: String| TelemetryError::Endpoint { endpoint: endpoint.into(), reason };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(bad("no http:// or https:// scheme".into()));
    }
    let runtime = match state.runtime.get() {
        Some(rt) => rt,
        None => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("r1-otlp")
                .enable_all()
                .build()
                .map_err(TelemetryError::Runtime)?;
            state.runtime.get_or_init(|| rt)
        }
    };
    // The exporter's channel is made on the export runtime, which drives its connection; the
    // batch processor's own thread only waits for answers.
    let exporter = {
        let _entered = runtime.enter();
        SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| bad(e.to_string()))?
    };
    let resource = Resource::builder()
        .with_service_name(state.service_name.clone())
        .with_attribute(KeyValue::new("process.pid", i64::from(std::process::id())))
        .build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let tracer = provider.tracer("r1");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_tracked_inactivity(false);
    if state.otel.set(layer).is_err() {
        return Err(bad("span export is already set up".into()));
    }
    *state.provider.lock().expect("telemetry lock") = Some(provider);
    *current = Some(endpoint.into());
    // Callsites asked before now were told "never" by the export filter; ask them again.
    tracing::callsite::rebuild_interest_cache();
    Ok(true)
}

/// The export filter: the configured targets, minus the crates that carry the export itself
/// (their spans would feed back into the exporter).
fn otlp_targets(filter: &str) -> Result<Targets, TelemetryError> {
    let quiet = ",h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off";
    format!("{filter}{quiet}").parse().map_err(|e: tracing_subscriber::filter::ParseError| TelemetryError::OtlpFilter {
        filter: filter.into(),
        reason: e.to_string(),
    })
}

/// Forwards to the OpenTelemetry layer once [`enable_otlp`] has made it.
struct Slot {
    otel: Arc<OnceLock<Otel>>,
}

impl Layer<Registry> for Slot {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(otel) = self.otel.get() {
            otel.on_new_span(attrs, id, ctx);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, Registry>) {
        if let Some(otel) = self.otel.get() {
            otel.on_record(id, values, ctx);
        }
    }

    fn on_follows_from(&self, id: &span::Id, follows: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(otel) = self.otel.get() {
            otel.on_follows_from(id, follows, ctx);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, Registry>) {
        if let Some(otel) = self.otel.get() {
            otel.on_event(event, ctx);
        }
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(otel) = self.otel.get() {
            otel.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(otel) = self.otel.get() {
            otel.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, Registry>) {
        if let Some(otel) = self.otel.get() {
            otel.on_close(id, ctx);
        }
    }

    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: forwarded as is; the layer lives in a OnceLock that is never reset.
        self.otel.get().and_then(|otel| unsafe { otel.downcast_raw(id) })
    }
}

/// Lets a span or event through to [`Slot`] only while export is on and its target is wanted.
struct SlotFilter {
    otel: Arc<OnceLock<Otel>>,
    targets: Targets,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for SlotFilter {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
        self.otel.get().is_some() && self.targets.would_enable(meta.target(), meta.level())
    }

    fn callsite_enabled(&self, meta: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        if self.otel.get().is_some() && self.targets.would_enable(meta.target(), meta.level()) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        if self.otel.get().is_some() {
            Filter::<S>::max_level_hint(&self.targets)
        } else {
            Some(tracing::level_filters::LevelFilter::OFF)
        }
    }
}
