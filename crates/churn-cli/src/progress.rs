//! Progress bars, on a terminal only: a person watching `churn run` or `churn demo` sees
//! which step is running and how far the run is; schedulers (stderr not a terminal) and
//! `--json` get none, so their logs stay plain lines.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over a pipeline run's steps; draws nothing off a terminal or under `--json`.
pub struct StepBar {
    bar: Option<ProgressBar>,
}

impl StepBar {
    /// A bar labelled `what` (the run's date), when stderr is a terminal and not `json`.
    pub fn new(json: bool, what: &str) -> StepBar {
        if json || !std::io::stderr().is_terminal() {
            return StepBar { bar: None };
        }
        // Hidden until the first step, when it knows its length.
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        let style = ProgressStyle::with_template(
            "{spinner} {prefix} [{elapsed_precise}] {bar:30} {pos}/{len} steps: {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("run {what}"));
        StepBar { bar: Some(bar) }
    }
}

impl churn_pipeline::RunObserver for StepBar {
    fn step_started(&self, index: usize, total: usize, step: &str) {
        if let Some(bar) = &self.bar {
            let first = bar.length() == Some(0);
            bar.set_length(total as u64);
            bar.set_position(index as u64);
            bar.set_message(step.to_string());
            if first {
                bar.set_draw_target(ProgressDrawTarget::stderr());
                bar.enable_steady_tick(Duration::from_millis(200));
            }
        }
    }

    fn run_ended(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
