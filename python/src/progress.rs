//! Progress as a Python callback: `callback(event, blob, phase, bytes)`
//! with event "start" (bytes = total, 0 if unknown), "bytes" (done so
//! far, throttled by the library) and "finish". A callback that raises is
//! reported once on stderr and then not called again.

use std::sync::atomic::{AtomicBool, Ordering};

use dockyard::{Phase, Progress};
use pyo3::prelude::*;

pub struct PyProgress {
    callback: Py<PyAny>,
    broken: AtomicBool,
}

impl PyProgress {
    pub fn new(callback: Py<PyAny>) -> PyProgress {
        PyProgress {
            callback,
            broken: AtomicBool::new(false),
        }
    }

    fn call(&self, event: &str, id: &str, phase: Option<Phase>, n: u64) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        Python::attach(|py| {
            let phase = phase.map(Phase::name);
            if let Err(e) = self.callback.call1(py, (event, id, phase, n)) {
                self.broken.store(true, Ordering::Relaxed);
                e.print(py);
            }
        });
    }
}

impl Progress for PyProgress {
    fn start(&self, id: &str, phase: Phase, total: u64) {
        self.call("start", id, Some(phase), total);
    }
    fn bytes(&self, id: &str, done: u64) {
        self.call("bytes", id, None, done);
    }
    fn finish(&self, id: &str) {
        self.call("finish", id, None, 0);
    }
}
