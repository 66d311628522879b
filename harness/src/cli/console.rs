//! Standard output that goes quiet when its reader leaves.
//!
//! `println!` panics when stdout is a pipe whose reader has gone (`riptide check ... | head -1`
//! closes it after one line). Everything the subcommands print for scripts goes through
//! [`outln!`] instead: the first failed write (a broken pipe, usually) silences stdout for the
//! rest of the process, and the command carries on with its real work (checking, writing
//! results files) and exits with its usual code.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed: nobody is reading any more.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout, or nothing once stdout has failed.
pub fn write_stdout(text: std::fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    // Flushed at once: with a line-buffered stdout a broken pipe could otherwise surface only
    // at exit, and a reader like `head` wants its lines as they come.
    if out.write_fmt(text).and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `println!` that goes quiet instead of panicking when stdout is closed.
macro_rules! outln {
    () => {
        $crate::cli::console::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::console::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that goes quiet instead of panicking when stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::console::write_stdout(format_args!($($arg)*))
    };
}

pub(crate) use out;
pub(crate) use outln;
