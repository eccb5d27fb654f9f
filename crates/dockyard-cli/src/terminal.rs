//! Asking the user at a terminal: a line, or a secret without echo.
//! The terminal's settings are restored after the answer, and also when
//! Ctrl-C ends dockyard during the prompt.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;

/// The terminal settings a secret prompt changed, to put back on a signal.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Print `prompt` on stderr and read one line from stdin (without its end).
pub fn ask(prompt: &str) -> std::io::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    read_line()
}

fn read_line() -> std::io::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// As [`ask`], with the terminal's echo off while the user types.
pub fn ask_secret(prompt: &str) -> std::io::Result<String> {
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a valid fd.
    let mut original: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut original) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut silent = original;
    silent.c_lflag &= !libc::ECHO;
    silent.c_lflag |= libc::ECHONL;
    if let Ok(mut saved) = SAVED.lock() {
        *saved = Some(original);
    }
    // SAFETY: a valid fd and a termios read from it.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &silent) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The prompt only once echo is off: an answer typed (or pasted) the
    // moment it appears is never shown.
    eprint!("{prompt}");
    let answer = std::io::stderr().flush().and_then(|_| read_line());
    restore();
    answer
}

/// Put back what a secret prompt changed (called on Ctrl-C too).
pub fn restore() {
    if let Ok(mut saved) = SAVED.lock() {
        if let Some(original) = saved.take() {
            // SAFETY: the settings were read from this fd.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &original) };
        }
    }
}
