//! Progress bars on a terminal (one per blob in flight); nothing when
//! stderr is piped.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use dockyard::{Phase, Progress, Silent};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress for Bars {
    fn start(&self, id: &str, phase: Phase, total: u64) {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(format!("{:<8} {id}", phase.name()));
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(id.to_string(), bar);
        }
    }
    fn bytes(&self, id: &str, done: u64) {
        if let Ok(bars) = self.bars.lock() {
            if let Some(b) = bars.get(id) {
                b.set_position(done);
            }
        }
    }
    fn finish(&self, id: &str) {
        if let Ok(mut bars) = self.bars.lock() {
            if let Some(b) = bars.remove(id) {
                b.finish();
            }
        }
    }
}

pub fn for_terminal() -> std::sync::Arc<dyn Progress> {
    if std::io::stderr().is_terminal() {
        std::sync::Arc::new(Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        })
    } else {
        std::sync::Arc::new(Silent)
    }
}
