// SPDX-License-Identifier: MIT OR Apache-2.0
//! The `conntrack-guard` binary: parses the command line and hands over to
//! the library.
//!
//! `main` is the C entry point (`#![no_main]`), so std's runtime start-up
//! does not run. Most of that start-up serves the "has overflowed its
//! stack" message: it asks glibc for the main thread's stack bounds
//! (`pthread_getattr_np`, which scans /proc/self/maps with sscanf), which
//! was 94k of the 515k instructions `apply` took at boot (callgrind, issue
//! 19's "apply <= sysctl -p"). Without it a stack overflow is a plain
//! SIGSEGV. The two parts that matter are done here:
//! - descriptors 0, 1 and 2 are made valid (`/dev/null` for a closed one),
//!   so no file this process opens can land on stdout or stderr;
//! - SIGPIPE is ignored, so a closed pipe is a write error that
//!   [`conntrack_guard::report::output`] handles, not a silent death.
//!
//! `std::env::args_os` needs no start-up on Linux: glibc hands argv to
//! std's `.init_array` hook.
// The test harness of this target brings its own main.
#![cfg_attr(not(test), no_main)]
#![deny(unsafe_code)]

#[cfg(not(test))]
mod entry {
    use std::ffi::{c_char, c_int, OsString};
    use std::os::fd::{BorrowedFd, IntoRawFd};

    use nix::errno::Errno;
    use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
    use nix::libc::{poll, pollfd, POLLNVAL};
    use nix::sys::signal::{signal, SigHandler, Signal};
    use nix::sys::stat::Mode;

    /// The process entry point, called by glibc's `__libc_start_main`.
    #[allow(unsafe_code)]
    #[no_mangle]
    extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
        // One poll(2) tells which of 0, 1 and 2 are closed (POLLNVAL), as
        // std's own start-up asks; fcntl on each is the fallback.
        let mut fds = [0, 1, 2].map(|fd| pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        // SAFETY: poll reads and writes the three structs, only during the call.
        let polled = unsafe { poll(fds.as_mut_ptr(), 3, 0) } >= 0;
        for p in fds {
            let closed = if polled {
                p.revents & POLLNVAL != 0
            } else {
                // SAFETY: only asks the kernel about the number; a closed one
                // gives EBADF, and the borrow ends with the call.
                let borrowed = unsafe { BorrowedFd::borrow_raw(p.fd) };
                fcntl(borrowed, FcntlArg::F_GETFD) == Err(Errno::EBADF)
            };
            if closed {
                // The lowest free descriptor is this one, kept open for good
                // and inherited by children (no O_CLOEXEC), as std's start-up did.
                if let Ok(null) = open("/dev/null", OFlag::O_RDWR, Mode::empty()) {
                    let _ = null.into_raw_fd();
                }
            }
        }
        // SAFETY: SIG_IGN installs no handler code; nothing else in this
        // process has touched SIGPIPE yet (no threads exist).
        let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        // process::exit flushes std's stdout buffer before exiting.
        std::process::exit(conntrack_guard::cli::run(&args))
    }
}
