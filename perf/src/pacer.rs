//! Microsecond-accurate sleeping for the open-loop schedule.
//!
//! tokio's timer wheel has a resolution of one millisecond: at 5,000 rps the
//! intended send times are 200 µs apart, so sleeping on it would send
//! requests in bursts and add up to a millisecond of schedule error to every
//! latency sample measured from the intended time. A `timerfd` (an hrtimer)
//! registered with the runtime's epoll wakes within microseconds instead.

use std::{
    fs::File,
    io::{self, Read},
    os::fd::{FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use tokio::io::unix::AsyncFd;

pub struct Pacer {
    fd: AsyncFd<File>,
}

impl Pacer {
    pub fn new() -> io::Result<Pacer> {
        // Timer slack (default 50 µs) delays hrtimer-based wake-ups of this
        // thread, epoll_wait timeouts included; 1 ns is the minimum.
        // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects
        // only the calling thread.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
        // SAFETY: timerfd_create has no pointer arguments; the result is
        // checked before use.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else
        // owns; OwnedFd closes it on drop.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        let file = File::from(owned);
        // SAFETY: the File owns the descriptor, never replaces it, and is
        // moved into the AsyncFd, so the fd stays open and the same for the
        // AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register(file) }?;
        Ok(Pacer { fd })
    }

    /// Sleep until `deadline` (returns at once if it has passed). The
    /// timer is armed `spin` early and the rest is spent yielding to the
    /// runtime (which keeps polling sockets meanwhile): waking a halted
    /// (v)CPU from a timer costs tens of microseconds, spinning does not.
    pub async fn sleep_until(&self, deadline: Instant, spin: Duration) -> io::Result<()> {
        let now = Instant::now();
        if let Some(wait) = deadline
            .checked_duration_since(now)
            .and_then(|d| d.checked_sub(spin))
            .filter(|d| *d >= Duration::from_micros(2))
        {
            self.arm(wait)?;
            loop {
                let mut guard = self.fd.readable().await?;
                let mut expirations = [0u8; 8];
                match guard.try_io(|f| f.get_ref().read(&mut expirations)) {
                    Ok(Ok(_)) => {
                        // The one-shot timer is disarmed now and re-armed only
                        // by the next call, so no expiry can be missed by
                        // clearing; it saves a read that would hit EAGAIN.
                        guard.clear_ready();
                        break;
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => continue,
                }
            }
        }
        while Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    fn arm(&self, wait: Duration) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the fd is a live timerfd owned by `self`; `spec` is a valid
        // itimerspec and the old-value pointer may be null.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.get_ref().as_raw_fd(),
                0,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
