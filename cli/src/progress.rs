//! Progress bars on stderr, hidden when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar counting tokens up to `max` (an upper bound: samples may stop early).
pub fn tokens_bar(max: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(max), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {bar:30} {pos}/{len} tokens ({per_sec})")
            .expect("static template"),
    );
    bar
}
