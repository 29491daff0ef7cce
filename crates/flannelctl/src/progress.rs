//! The progress line: one line rewritten in place (`\r`) on a terminal, one line per step
//! otherwise. With `--json` it goes to stderr, so stdout holds only the JSON document.

use std::io::{IsTerminal, Write};

use flannel_lab::render::progress_line;
use flannel_lab::Progress;

/// Shows [`Progress`] on stdout, or on stderr in JSON mode.
pub struct TermProgress {
    to_stderr: bool,
    tty: bool,
    /// A progress line is on screen without a newline.
    open: bool,
}

impl TermProgress {
    /// Progress on stdout (stderr when `json`).
    pub fn new(json: bool) -> TermProgress {
        let tty = if json {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        TermProgress {
            to_stderr: json,
            tty,
            open: false,
        }
    }

    fn write(&mut self, text: &str) {
        let _ = if self.to_stderr {
            let mut e = std::io::stderr().lock();
            e.write_all(text.as_bytes()).and_then(|()| e.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes()).and_then(|()| o.flush())
        };
    }

    /// Erases an open progress line (terminal only), so what follows starts on a clean line.
    pub fn clear(&mut self) {
        if self.open {
            self.write("\r\x1b[2K");
            self.open = false;
        }
    }
}

impl Progress for TermProgress {
    fn step(&mut self, index: usize, total: usize, what: &str) {
        let line = progress_line(index, total, what);
        if self.tty {
            self.write(&format!("\r\x1b[2K{line}"));
            self.open = true;
        } else {
            self.write(&format!("{line}\n"));
        }
    }

    fn note(&mut self, text: &str) {
        self.clear();
        self.write(&format!("{text}\n"));
    }
}
