//! The end-of-run report of `r1ctl up`: curves of several runs' `metrics.jsonl` drawn into
//! one PNG (eval pass@1, format rate and response length over steps, and optionally a series
//! the caller adds, such as the length on the hardest task), and a Markdown table of where
//! each run started and ended.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;

/// One run's metrics, as `metrics.jsonl` holds them.
#[derive(Clone, Debug)]
pub struct Curves {
    pub label: String,
    pub lines: Vec<serde_json::Value>,
    /// The `metrics.jsonl` they were read from (the run's folder is its parent).
    pub source: PathBuf,
}

/// The key of the series [`plot`] draws in its fourth panel.
pub const HARD_LENGTH: &str = "hard_response_len";

impl Curves {
    pub fn read(label: &str, metrics: &Path) -> Result<Curves> {
        let text = std::fs::read_to_string(metrics).with_context(|| format!("cannot read {}", metrics.display()))?;
        let lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{} line {}", metrics.display(), i + 1)))
            .collect::<Result<_>>()?;
        Ok(Curves { label: label.into(), lines, source: metrics.to_path_buf() })
    }

    /// Adds `key` = value to the line of each point's step (a new line if the step has none).
    pub fn add_series(&mut self, key: &str, points: &[(f64, f64)]) {
        for &(step, v) in points {
            let line = self.lines.iter_mut().find(|l| l.get("step").and_then(|s| s.as_f64()) == Some(step));
            match line.and_then(|l| l.as_object_mut()) {
                Some(obj) => {
                    obj.insert(key.into(), v.into());
                }
                None => self.lines.push(serde_json::json!({ "step": step, key: v })),
            }
        }
    }

    /// (step, value) of every line that has `key`.
    pub fn series(&self, key: &str) -> Vec<(f64, f64)> {
        self.lines.iter().filter_map(|l| Some((l.get("step")?.as_f64()?, l.get(key)?.as_f64()?))).collect()
    }

    pub fn first(&self, key: &str) -> Option<f64> {
        self.series(key).first().map(|p| p.1)
    }

    pub fn last(&self, key: &str) -> Option<f64> {
        self.series(key).last().map(|p| p.1)
    }
}

const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

/// Draws the three panels into `out` (PNG, 500 pixels wide each, 450 high), and a fourth of
/// the [`HARD_LENGTH`] series titled `hard` when given.
pub fn plot(runs: &[Curves], hard: Option<&str>, out: &Path) -> Result<()> {
    // Registering twice is harmless; the font must be known before any text is drawn.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let mut specs = vec![
        ("eval_accuracy", "eval pass@1", Some(1.0)),
        ("format_rate", "format rate (training samples)", Some(1.0)),
        ("response_len_mean", "response length (tokens)", None),
    ];
    if let Some(title) = hard {
        specs.push((HARD_LENGTH, title, None));
    }
    let root = BitMapBackend::new(out, (500 * specs.len() as u32, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, specs.len()));
    for (area, (key, title, top)) in panels.iter().zip(specs) {
        let series: Vec<Vec<(f64, f64)>> = runs.iter().map(|r| r.series(key)).collect();
        let max_x = series.iter().flatten().map(|p| p.0).fold(1.0, f64::max);
        let max_y = top.unwrap_or_else(|| series.iter().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.1);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
        chart.configure_mesh().x_desc("step").label_style(("sans-serif", 13)).draw()?;
        for (i, (run, points)) in runs.iter().zip(series).enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(run.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
    }
    root.present().with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

fn pct(x: Option<f64>) -> String {
    x.map_or("—".into(), |v| format!("{:.1}%", v * 100.0))
}

/// A Markdown table: one row per run, eval pass@1 at its first and last evaluation, the
/// format rate and response length of its first and last steps.
pub fn table(runs: &[Curves]) -> String {
    let mut s = String::from(
        "| run | steps | eval pass@1 start | eval pass@1 end | format rate first → last step | response length first → last |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let steps = r.lines.iter().filter_map(|l| l.get("step")?.as_u64()).max().unwrap_or(0);
        let len = |x: Option<f64>| x.map_or("—".into(), |v| format!("{v:.0}"));
        s.push_str(&format!(
            "| {} | {steps} | {} | {} | {} → {} | {} → {} |\n",
            r.label,
            pct(r.first("eval_accuracy")),
            pct(r.last("eval_accuracy")),
            pct(r.first("format_rate")),
            pct(r.last("format_rate")),
            len(r.first("response_len_mean")),
            len(r.last("response_len_mean")),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, text: &str) -> Curves {
        Curves {
            label: label.into(),
            lines: text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
            source: PathBuf::new(),
        }
    }

    #[test]
    fn table_and_plot_from_metrics() {
        let a = run(
            "R1-Zero",
            "{\"step\":0,\"eval_accuracy\":0.25}\n\
             {\"step\":1,\"format_rate\":0.5,\"response_len_mean\":30.0}\n\
             {\"step\":2,\"format_rate\":0.9,\"response_len_mean\":41.0,\"eval_accuracy\":0.5}\n",
        );
        let b = run("SFT", "{\"step\":1,\"loss\":2.0}\n");
        let t = table(&[a.clone(), b.clone()]);
        let want = "| R1-Zero | 2 | 25.0% | 50.0% | 50.0% → 90.0% | 30 → 41 |\n| SFT | 1 | — | — | — → — | — → — |\n";
        assert!(t.ends_with(want), "{t}");
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("curves.png");
        plot(&[a.clone(), b.clone()], None, &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 10_000, "a plot with curves and text, not an empty image: {} bytes", bytes.len());
        // An added series lands on its step's line, or on a new line for a step without one,
        // and gets a fourth panel.
        let mut c = a.clone();
        c.add_series(HARD_LENGTH, &[(1.0, 30.0), (3.0, 44.0)]);
        assert_eq!(c.series(HARD_LENGTH), vec![(1.0, 30.0), (3.0, 44.0)]);
        assert_eq!(c.series("format_rate"), a.series("format_rate"));
        plot(&[c], Some("hard"), &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        assert_eq!(width, 2000, "four panels of 500 pixels");
    }
}
