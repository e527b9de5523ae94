//! Progress bars on stderr, hidden when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar counting `unit`s up to `len`, with elapsed time and rate.
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let template = format!("{{spinner}} {{elapsed_precise}} {{bar:30}} {{pos}}/{{len}} {unit} (eta {{eta}}) {{msg}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    bar
}

/// A bar counting tokens up to `max` (an upper bound: samples may stop early).
pub fn tokens_bar(max: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(max), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {bar:30} {pos}/{len} tokens ({per_sec})")
            .expect("static template"),
    );
    bar
}
