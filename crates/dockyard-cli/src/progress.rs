//! Progress bars on a terminal; nothing when stderr is piped.

use std::io::IsTerminal;
use std::sync::Mutex;

use dockyard_image::progress::{Progress, Silent};
use indicatif::{ProgressBar, ProgressStyle};

struct Bars {
    current: Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn start(&self, what: &str, total: u64) {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        if let Ok(mut c) = self.current.lock() {
            *c = Some(bar);
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(c) = self.current.lock() {
            if let Some(b) = c.as_ref() {
                b.inc(n);
            }
        }
    }
    fn finish(&self) {
        if let Ok(mut c) = self.current.lock() {
            if let Some(b) = c.take() {
                b.finish();
            }
        }
    }
}

pub fn for_terminal() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars {
            current: Mutex::new(None),
        })
    } else {
        Box::new(Silent)
    }
}
