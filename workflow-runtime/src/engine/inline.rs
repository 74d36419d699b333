//! Running a new execution's driver in the caller first.
//!
//! On a volatile store nothing has to be committed before an execution's first
//! steps start, so its driver's first turn runs where `start` was called, and a
//! short execution ends before `start` returns: no task is spawned, no worker
//! thread woken, and `wait` answers at once. A driver that has to wait (a step
//! that awaits, a timer) moves to a task of its own, as every driver does on a
//! durable store.
//!
//! The hand-off keeps every wake-up: whatever the first poll registered with
//! the caller-side waker is forwarded to the task's waker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// Forwards wake-ups registered during the first poll to the task that runs the
/// future afterwards.
#[derive(Default)]
struct Forward {
    task: AtomicWaker,
}

impl Wake for Forward {
    fn wake(self: Arc<Self>) {
        self.task.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.task.wake();
    }
}

/// Polls `fut` once here; if it is not done, spawns a task that runs it to the
/// end. Must be called inside a tokio runtime.
pub(crate) fn run_then_spawn<F>(mut fut: Pin<Box<F>>)
where
    F: Future<Output = ()> + Send + 'static,
{
    let forward = Arc::new(Forward::default());
    let waker = Waker::from(Arc::clone(&forward));
    if fut.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
        return;
    }
    tokio::spawn(Handed { fut, forward });
}

/// The rest of a future whose first poll ran in the caller.
struct Handed<F> {
    fut: Pin<Box<F>>,
    forward: Arc<Forward>,
}

impl<F: Future<Output = ()>> Future for Handed<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before polling: a wake-up of the first poll's waker that
        // comes after this poll reaches the task; one that came before it is
        // seen by this poll.
        self.forward.task.register(cx.waker());
        self.fut.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::sync::oneshot;

    use super::*;

    #[tokio::test]
    async fn a_future_that_is_ready_runs_to_the_end_in_the_caller() {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        run_then_spawn(Box::pin(async move { flag.store(true, Ordering::SeqCst) }));
        assert!(ran.load(Ordering::SeqCst), "it ran before the call returned");
    }

    #[tokio::test]
    async fn a_wake_up_registered_in_the_first_poll_reaches_the_task() {
        // A future that registers its waker once, in its first poll, and never
        // again: only the forwarding wakes the task that took it over.
        struct Once {
            shared: Arc<parking_lot::Mutex<(bool, Option<Waker>)>>,
            registered: bool,
        }
        impl Future for Once {
            type Output = ();
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                let mut s = self.shared.lock();
                if s.0 {
                    return Poll::Ready(());
                }
                if !self.registered {
                    s.1 = Some(cx.waker().clone());
                    drop(s);
                    self.registered = true;
                }
                Poll::Pending
            }
        }
        let shared = Arc::new(parking_lot::Mutex::new((false, None)));
        let (tx, rx) = oneshot::channel();
        let once = Once { shared: Arc::clone(&shared), registered: false };
        run_then_spawn(Box::pin(async move {
            once.await;
            let _ = tx.send(());
        }));
        // Let the task poll (and not register) before the wake-up.
        tokio::task::yield_now().await;
        let waker = {
            let mut s = shared.lock();
            s.0 = true;
            s.1.take().expect("the first poll registered a waker")
        };
        waker.wake();
        tokio::time::timeout(std::time::Duration::from_secs(5), rx)
            .await
            .expect("the task was woken through the first poll's waker")
            .expect("the future ran to the end");
    }
}
