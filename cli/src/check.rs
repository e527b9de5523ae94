//! `--check` on the service commands (`serve coordinator|actor|learner`, `reward work|serve`):
//! load the config exactly as the service would (file < `R1_*` variables < flags), check every
//! value, print what the service would do, and exit 0, without opening a port, a database or
//! a model. A bad value fails with the flag (and variable) that set it. The Helm chart's
//! tests run every command the chart renders through it (cli/tests/chart.rs).

use anyhow::{Result, bail};

use crate::backend::DeviceKind;

/// A coordinator or weight-service URL given to `flag`.
pub fn url(flag: &str, url: &str) -> Result<()> {
    if let Err(e) = r1_proto::client::endpoint(&r1_proto::client::ClientConfig::new(url)) {
        bail!("{flag}: {e}");
    }
    Ok(())
}

/// A `host:port` address given to `flag` (a port in range; the host is not resolved).
pub fn addr(flag: &str, addr: &str) -> Result<()> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        bail!("{flag} is `{addr}`, which has no port; use host:port, e.g. 0.0.0.0:8081");
    };
    if host.is_empty() {
        bail!("{flag} is `{addr}`, which has no host; use host:port, e.g. 0.0.0.0:8081");
    }
    match port.parse::<u64>() {
        Ok(p) if p > u16::MAX as u64 => {
            bail!("{flag} is `{addr}`: port {p} is out of range; use a port from 1 to 65535")
        }
        Ok(_) => Ok(()),
        Err(_) => bail!("{flag} is `{addr}`: port `{port}` is not a number; use host:port, e.g. 0.0.0.0:8081"),
    }
}

/// The bearer token (`--token`/`R1_TOKEN`) an HTTP header must carry.
pub fn token(token: Option<&str>) -> Result<()> {
    if r1_proto::client::BearerToken::new(token).is_err() {
        bail!("--token/R1_TOKEN has characters an HTTP header cannot carry; use visible ASCII characters only");
    }
    Ok(())
}

/// An OTLP endpoint given to `flag`.
pub fn otlp(flag: &str, endpoint: Option<&str>) -> Result<()> {
    match endpoint {
        Some(e) if !(e.starts_with("http://") || e.starts_with("https://")) => {
            bail!("{flag}: `{e}` has no http:// or https:// scheme; use http://host:4317")
        }
        _ => Ok(()),
    }
}

/// What `--device` needs of this build: a note, not a failure, since the CUDA image's r1ctl
/// (built with `--features cuda`) is the one that runs a `--device cuda` command.
pub fn device(device: DeviceKind) -> String {
    match device.missing() {
        None => format!("device {}", device.name()),
        Some((what, build)) => format!("device {} (this r1ctl has no {what}: build it with `{build}`)", device.name()),
    }
}

/// Prints the verdict of a check.
pub fn ok(what: &str, summary: &str) {
    println!("{what}: config ok; {summary}");
}
