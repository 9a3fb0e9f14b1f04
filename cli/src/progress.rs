//! Live progress: on a terminal one line per running step (indicatif); otherwise plain lines.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use baton_core::audit::AuditRecord;
use baton_core::engine::RunState;
use baton_core::ids::RunId;
use baton_runtime::Observer;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shows each step as it runs, retries, skips, waits and ends.
pub struct Progress {
    tty: bool,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress {
    /// Progress on stderr.
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Self { tty, multi, bars: Mutex::new(HashMap::new()) }
    }

    fn line(&self, node: &str, symbol: &str, text: &str, done: bool) {
        if !self.tty {
            eprintln!("{symbol} {node}: {text}");
            return;
        }
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let bar = bars.entry(node.to_owned()).or_insert_with(|| {
            let b = self.multi.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<28} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(node.to_owned());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        if done {
            bar.set_style(
                ProgressStyle::with_template("{prefix:<30} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(format!("{symbol} {node}"));
            bar.finish_with_message(text.to_owned());
        } else {
            bar.set_message(format!("{symbol} {text}"));
        }
    }
}

impl Observer for Progress {
    fn on_records(&self, run_id: &RunId, _state: &RunState, records: &[AuditRecord]) {
        for r in records {
            let node = r.node.clone().unwrap_or_else(|| "run".into());
            match r.decision.as_str() {
                "start_run" => {
                    if !self.tty {
                        eprintln!("▶ run {run_id}: {}", r.reason);
                    } else {
                        let _ = self.multi.println(format!("▶ run {run_id}"));
                    }
                }
                "dispatch" => self.line(&node, "…", &format!("running (attempt {})", r.attempt.unwrap_or(1)), false),
                "retry" => self.line(&node, "↻", &r.reason, false),
                "sleep" => self.line(&node, "⏲", &r.reason, false),
                "open_task" | "escalate_loop" => self.line(&node, "⏸", &r.reason, false),
                "escalate" => self.line(&node, "⇪", &r.reason, false),
                "iterate" => self.line(&node, "⟳", &r.reason, false),
                "fall_back" => self.line(&node, "↪", &r.reason, false),
                "succeed_step" | "fell_back" => self.line(&node, "✓", &r.reason, true),
                "skip" => self.line(&node, "↷", &format!("skipped: {}", r.reason), true),
                "fail_step" => self.line(&node, "✗", &r.reason, true),
                "cancel_step" => self.line(&node, "⊘", &r.reason, true),
                "complete_run" => {
                    if self.tty {
                        let _ = self.multi.println(format!("■ run {run_id}: {}", r.reason));
                    } else {
                        eprintln!("■ run {run_id}: {}", r.reason);
                    }
                }
                _ => {}
            }
        }
    }
}
