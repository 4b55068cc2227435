//! A shard-local, one-shot broadcast signal (drain, listener stop).
//!
//! Shard-local (`!Send`): it is fired and awaited on the same shard thread,
//! so it needs neither atomics nor locks. Each waiting future owns one slot
//! and frees it on drop, so a future polled many times (inside `select!`)
//! does not accumulate wakers.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

#[derive(Default)]
struct Inner {
    fired: Cell<bool>,
    slots: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

#[derive(Clone, Default)]
pub struct Signal(Rc<Inner>);

impl Signal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fire(&self) {
        if self.0.fired.replace(true) {
            return;
        }
        let wakers: Vec<Waker> = self
            .0
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.0.fired.get()
    }

    /// Resolves once [`Signal::fire`] has been called (immediately if it was).
    pub fn wait(&self) -> Wait {
        Wait {
            inner: self.0.clone(),
            slot: None,
        }
    }
}

pub struct Wait {
    inner: Rc<Inner>,
    slot: Option<usize>,
}

impl Future for Wait {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.fired.get() {
            return Poll::Ready(());
        }
        let waker = cx.waker().clone();
        match self.slot {
            Some(i) => self.inner.slots.borrow_mut()[i] = Some(waker),
            None => {
                let i = match self.inner.free.borrow_mut().pop() {
                    Some(i) => {
                        self.inner.slots.borrow_mut()[i] = Some(waker);
                        i
                    }
                    None => {
                        let mut slots = self.inner.slots.borrow_mut();
                        slots.push(Some(waker));
                        slots.len() - 1
                    }
                };
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            if let Some(s) = self.inner.slots.borrow_mut().get_mut(i) {
                *s = None;
            }
            self.inner.free.borrow_mut().push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_all_waiters_and_reuses_slots() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = Signal::new();
            let a = monoio::spawn({
                let s = s.clone();
                async move { s.wait().await }
            });
            let b = monoio::spawn({
                let s = s.clone();
                async move { s.wait().await }
            });
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            s.fire();
            a.await;
            b.await;
            s.wait().await; // already fired
            assert!(s.0.free.borrow().len() == 2);
        });
    }
}
